"""Run by torchrun in test_multinode: `python -m mulap pretrain <args>` (the CLI's own entry point), with
one callback added that saves this rank's parameters when training ends, so the test can compare ranks."""

import sys
from pathlib import Path

import lightning as L
import torch

import mulap.training.pretrain as pretrain
from mulap.cli import main


class SaveParams(L.Callback):
    def __init__(self, out: Path):
        self.out = out

    def on_train_end(self, trainer, module):
        params = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
        torch.save(
            {"step": trainer.global_step, "world_size": trainer.world_size, "params": params},
            self.out / f"params_rank{trainer.global_rank}.pt",
        )


if __name__ == "__main__":
    out = Path(sys.argv[1])
    build = pretrain.build_trainer
    pretrain.build_trainer = lambda cfg, exp_dir, extra=(), *rest: build(cfg, exp_dir, [*extra, SaveParams(out)], *rest)
    sys.exit(main(sys.argv[2:]))
