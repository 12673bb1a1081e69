"""Run by the crash tests and tools/fault_injection.py: tiny pre-training that can die by SIGKILL at a chosen point.

    python resume_worker.py CORPUS SAVE_DIR PRETRAIN_ID FAULT [key=value ...]

FAULT: none | step:K (at the start of optimizer step K) | write:J:F (inside the J-th checkpoint write, the temp
file cut to the share F of its bytes) | rotate:J (between the hard link and the rename of the J-th rotation of
last.ckpt) | commit:J (the J-th checkpoint complete in its temp file, not yet renamed) | time:S (S seconds
after training started, wherever the run is). SIGKILL cannot be caught: nothing of mulap runs after it.
"""

import os
import signal
import sys
import threading
import time
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from mulap.infra.config import load_config
from mulap.training import checkpoints
from mulap.training.pretrain import run_pretraining
from tests.helpers import TINY_MODEL

SETTINGS = [
    "training.batch_size=2",
    "training.num_workers=0",
    "training.progress_bar=false",
    "training.lr=3e-3",
    "training.warmup_ratio=0.0",
    "training.epochs=2",
    "training.deterministic=true",
    "training.log_every_n_steps=1",
    "training.checkpoint_every_n_steps=1",
    "dataset_config.max_len_seconds=6",
    "model_config.audio.max_chunks=2",
    "model_config.objectives.contrastive.enabled=true",
]


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class KillAtStep(L.Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == self.step:
            die()


class KillAfter(L.Callback):
    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_train_start(self, trainer, module):
        threading.Timer(self.seconds, die).start()


class TimeTraining(L.Callback):
    """Prints how long training took and how many checkpoint files were written (the range of the kill points)."""

    def __init__(self):
        self.writes = 0
        save = checkpoints.AtomicCheckpointIO.save_checkpoint

        def counting(io, *args, **kwargs):
            save(io, *args, **kwargs)
            self.writes += 1

        checkpoints.AtomicCheckpointIO.save_checkpoint = counting

    def on_train_start(self, trainer, module):
        self.t0 = time.monotonic()

    def on_train_end(self, trainer, module):
        print(f"trained_in {time.monotonic() - self.t0:.2f} checkpoint_writes {self.writes}", flush=True)


def patch_io(kind: str, nth: int, share: float) -> None:
    """Die inside the nth checkpoint write (write, commit) or the nth rotation of last.ckpt (rotate)."""
    io, seen = checkpoints.AtomicCheckpointIO, {"n": 0}
    write_temp, rotate = io._write_temp, io._rotate

    def _write_temp(self, checkpoint, tmp):
        write_temp(self, checkpoint, tmp)
        seen["n"] += 1
        if seen["n"] == nth:
            if kind == "write":  # as if the process died with only part of the bytes written
                with open(tmp, "r+b") as fh:
                    fh.truncate(int(Path(tmp).stat().st_size * share))
            die()

    def _rotate(self, path):
        if path.name in checkpoints.ROTATE and path.is_file():
            seen["n"] += 1
            if seen["n"] == nth:
                os.link(path, checkpoints.temp_path(path.with_name(checkpoints.ROTATE[path.name])))
                die()
        rotate(self, path)

    if kind in ("write", "commit"):
        io._write_temp = _write_temp
    else:
        io._rotate = _rotate


def train(corpus, save_dir, pretrain_id: str, callbacks=(), extra=()) -> Path:
    """The worker's run (also called in-process by the tests: one intra-op thread, as in the worker, so the
    floating-point results are the same bit for bit)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = load_config(None, [f"env.save_dir={save_dir}", f"dataset_config.data_dir={corpus}", *SETTINGS, *TINY_MODEL, *extra])
        return run_pretraining(cfg, pretrain_id, extra_callbacks=list(callbacks))
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    corpus, save_dir, pretrain_id, fault, *extra = sys.argv[1:]
    callbacks = [TimeTraining()]
    kind, _, arg = fault.partition(":")
    if kind == "step":
        callbacks.append(KillAtStep(int(arg)))
    elif kind == "time":
        callbacks.append(KillAfter(float(arg)))
    elif kind in ("write", "rotate", "commit"):
        nth, _, share = arg.partition(":")
        patch_io(kind, int(nth), float(share or 0.5))
    train(corpus, save_dir, pretrain_id, callbacks, extra)
    print("finished", flush=True)
