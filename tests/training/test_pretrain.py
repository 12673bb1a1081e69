"""One-batch-scale CPU runs of pre-training: loss goes down, the folder is written, resume, DDP."""

import csv
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mulap.cli import main
from mulap.data.audiocaption import AudioCaptionDataset, Collate
from mulap.infra.config import load_config
from mulap.models.mulap import MuLaP
from mulap.models.text import load_tokenizer
from mulap.training.pretrain import run_pretraining
from tests.helpers import TINY_MODEL, make_audiocaption

BASE = [
    "training.batch_size=4",
    "training.num_workers=0",
    "training.progress_bar=false",
    "training.lr=3e-3",
    "training.warmup_ratio=0.0",
    "dataset_config.max_len_seconds=9",
    "model_config.audio.max_chunks=3",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_audiocaption(tmp_path_factory.mktemp("ac"), n_train=12, n_val=4)


def _metrics(exp: Path) -> list[dict]:
    with open(exp / "logs" / "csv" / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def _val_losses(exp: Path) -> list[float]:
    return [float(r["val/loss"]) for r in _metrics(exp) if r.get("val/loss")]


def test_tiny_pretraining_lowers_loss_and_writes_experiment(corpus, tmp_path, capsys):
    args = [
        "pretrain",
        "--pretrain_id",
        "tiny",
        f"env.save_dir={tmp_path}",
        f"dataset_config.data_dir={corpus}",
        "training.epochs=6",
        *BASE,
        *TINY_MODEL,
        # 18 steps cannot teach audio-text matching; MLM can learn in that time, so it leads the sum here
        "model_config.objectives.mlm.weight=1.0",
        # the tiny text branch is random: train it at the full rate (the default 0.1 suits pretrained BERT)
        "model_config.text.lr_scale=1.0",
    ]
    assert main(args) == 0
    assert "pretrain_id: tiny" in capsys.readouterr().out
    exp = tmp_path / "experiments" / "tiny"
    for name in (
        "config.yaml",
        "checkpoints/last.ckpt",
        "checkpoints/last.prev.ckpt",
        "checkpoints/best.ckpt",
        "backbone.safetensors",
        "backbone_last.safetensors",
        "logs/csv/metrics.csv",
    ):
        assert (exp / name).is_file(), name
    assert not (exp / "run.lock").exists()
    # the best epoch's weights only, in Lightning's save_weights_only format; last.ckpt is the full resume state
    best = torch.load(exp / "checkpoints" / "best.ckpt", weights_only=True)
    assert {"state_dict", "epoch", "global_step", "hyper_parameters"} <= best.keys() and "optimizer_states" not in best
    assert best["state_dict"] and all(k.startswith("model.") for k in best["state_dict"])
    last = torch.load(exp / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 18 and {"optimizer_states", "lr_schedulers", "loops"} <= last.keys()
    assert torch.load(exp / "checkpoints" / "last.prev.ckpt", weights_only=True)["global_step"] == 15
    assert list((exp / "logs" / "tb").glob("events.*"))
    losses = _val_losses(exp)
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]
    mlm = [float(r["val/mlm"]) for r in _metrics(exp) if r.get("val/mlm")]
    assert mlm[-1] < mlm[0] - 0.3  # fixed validation masks: the same tokens are scored every epoch
    cols = _metrics(exp)[0].keys()
    for term in ("train/mlm_epoch", "train/atm_epoch", "train/mam_epoch", "val/atm_acc", "val/mlm_acc"):
        assert term in cols, term
    from mulap.models.backbone import load_backbone

    assert load_backbone(exp / "backbone.safetensors").out_dim > 0


def test_resume_continues_at_saved_step_with_same_optimizer_state(corpus, tmp_path):
    over = [f"env.save_dir={tmp_path}", f"dataset_config.data_dir={corpus}", *BASE, *TINY_MODEL]
    cfg = load_config(None, over + ["training.epochs=1"])
    exp = run_pretraining(cfg, "r")
    ckpt = torch.load(exp / "checkpoints" / "last.ckpt", weights_only=True)
    step = ckpt["global_step"]
    assert step == 3

    seen = {}

    class Probe:  # records what the resumed trainer starts from
        def __init__(self):
            import lightning as L

            class _CB(L.Callback):
                def on_train_start(self, trainer, module):
                    seen["step"] = trainer.global_step
                    opt = trainer.optimizers[0].state_dict()
                    seen["exp_avg"] = {k: v["exp_avg"].clone() for k, v in opt["state"].items()}
                    seen["lr_step"] = trainer.lr_scheduler_configs[0].scheduler.last_epoch

            self.cb = _CB()

    probe = Probe()
    cfg2 = load_config(exp / "config.yaml", ["training.epochs=2"])
    run_pretraining(cfg2, "r", extra_callbacks=[probe.cb])
    assert seen["step"] == step
    saved = ckpt["optimizer_states"][0]["state"]
    assert saved and set(seen["exp_avg"]) == set(saved)
    for k, v in saved.items():
        assert torch.equal(seen["exp_avg"][k], v["exp_avg"])
    assert seen["lr_step"] == ckpt["lr_schedulers"][0]["last_epoch"]
    assert torch.load(exp / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 6
    assert "resume from" in (exp / "runs.log").read_text()
    assert load_config(exp / "config.yaml").training.epochs == 2


def test_nothing_masked_gives_zero_terms_not_nan(corpus):
    cfg = load_config(
        None,
        TINY_MODEL
        + [
            "model_config.objectives.mlm.prob=0.0",
            "model_config.objectives.mam.prob=0.0",
            "model_config.objectives.contrastive.enabled=true",
            "model_config.objectives.atm.negatives=hard",
        ],
    )
    model = MuLaP(cfg.model_config)
    ds = AudioCaptionDataset(corpus, "val", max_len_seconds=9)
    batch = Collate(load_tokenizer(None))([ds[0], ds[1]])
    out = model.pretraining_losses(batch, mask_id=103)
    assert out["mlm"].item() == 0.0 and out["mam"].item() == 0.0
    assert torch.isfinite(out["loss"]) and out["loss"] > 0
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


DDP_SCRIPT = Path(__file__).with_name("ddp_worker.py")


@pytest.mark.slow
def test_ddp_two_cpu_processes_end_with_equal_parameters(corpus, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(DDP_SCRIPT), str(corpus), str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sums = sorted(tmp_path.glob("params_rank*.pt"))
    assert len(sums) == 2
    a, b = (torch.load(p, weights_only=True) for p in sums)
    assert a["step"] == b["step"] > 0
    assert set(a["params"]) == set(b["params"])
    for k in a["params"]:
        assert torch.equal(a["params"][k], b["params"][k]), k


def test_a_collapsed_cross_encoder_is_reported_after_the_first_validation(corpus, tmp_path, monkeypatch, caplog):
    """The collapse warning reads this validation's val/fused_spread (callback_metrics already holds the epoch's
    reduced value in on_validation_epoch_end): with the threshold raised above any spread, a one-epoch run warns
    once and names the setting to lower."""
    from mulap.training import pretrain

    monkeypatch.setattr(pretrain, "COLLAPSED_SPREAD", 1e9)
    args = [
        "pretrain",
        "--pretrain_id",
        "collapse",
        f"env.save_dir={tmp_path}",
        f"dataset_config.data_dir={corpus}",
        "training.epochs=1",
        *BASE,
        *TINY_MODEL,
    ]
    with caplog.at_level("WARNING", logger="mulap.training.pretrain"):
        assert main(args) == 0
    warned = [r.getMessage() for r in caplog.records if "fused_spread" in r.getMessage()]
    assert len(warned) == 1 and "has collapsed" in warned[0] and "coattention.lr_scale" in warned[0], warned


def test_a_frozen_backbone_comes_out_of_pretraining_unchanged(corpus, tmp_path):
    """`audio.freeze_backbone=true` (e.g. a locked supervised backbone): the saved backbone equals the one it
    started from, BatchNorm running statistics included (Lightning restores each module's own train/eval mode
    after the sanity validation, so the backbone must be in eval mode from construction)."""
    from safetensors.torch import load_file

    from mulap.models.backbone import save_backbone
    from mulap.models.musicnn import Musicnn, MusicnnConfig

    torch.manual_seed(1)
    start = save_backbone(
        Musicnn(MusicnnConfig(timbral_channels=8, temporal_channels=4, backend_channels=8)), tmp_path / "start.safetensors"
    )
    args = [
        "pretrain",
        "--pretrain_id",
        "locked",
        f"env.save_dir={tmp_path}",
        f"dataset_config.data_dir={corpus}",
        "training.epochs=1",
        *BASE,
        *TINY_MODEL,
        f"model_config.audio.init={start}",
        "model_config.audio.freeze_backbone=true",
    ]
    assert main(args) == 0
    before, after = load_file(str(start)), load_file(str(tmp_path / "experiments" / "locked" / "backbone.safetensors"))
    assert before.keys() == after.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert not changed, changed
