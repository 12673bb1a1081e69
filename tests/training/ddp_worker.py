"""Run by test_pretrain: 2-process DDP on CPU (gloo); each rank saves its parameters at the end."""

import sys
from pathlib import Path

import lightning as L
import torch

from mulap.infra.config import load_config
from mulap.training.pretrain import run_pretraining

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.helpers import TINY_MODEL


class SaveParams(L.Callback):
    def __init__(self, out: Path):
        self.out = out

    def on_train_end(self, trainer, module):
        params = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
        torch.save({"step": trainer.global_step, "params": params}, self.out / f"params_rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    corpus, out = Path(sys.argv[1]), Path(sys.argv[2])
    cfg = load_config(
        None,
        [
            f"env.save_dir={out}",
            f"dataset_config.data_dir={corpus}",
            "training.epochs=1",
            "training.batch_size=2",
            "training.num_workers=0",
            "training.progress_bar=false",
            "training.device=cpu",
            "training.devices=2",
            "training.strategy=ddp",
            "dataset_config.max_len_seconds=6",
            "model_config.audio.max_chunks=2",
            "model_config.objectives.contrastive.enabled=true",
            *TINY_MODEL,
        ],
    )  # gathered negatives
    run_pretraining(cfg, "ddp", extra_callbacks=[SaveParams(out)])
