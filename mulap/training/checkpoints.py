"""Checkpoints you can trust: atomic writes, one rotated previous state, a verified resume, the best weights.

An experiment's ``checkpoints/`` folder:

    last.ckpt         the full resume state (weights, optimizer, schedulers, loops, data order), every epoch
    last.prev.ckpt    the full state before that: an atomic rotation keeps one previous state as a fallback
    step.ckpt         the full state every ``training.checkpoint_every_n_steps`` optimizer steps (optional)
    interrupted.ckpt  the full state when a run stopped on an exception or Ctrl-C, only if it trained past
                      every other checkpoint
    best.ckpt         weights only (Lightning's save_weights_only format) of the lowest ``val/loss``

Every write goes to ``.<name>.tmp`` in the same folder, is fsynced, then renamed over the target (and the
folder fsynced), so a file under a ``.ckpt`` name is always complete. A resume opens every candidate,
checks the CRC of every record of the newest one, falls back to the newest one that is intact, and moves
a damaged file aside (``<name>.corrupt``) so that nothing trusts it later.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint

from mulap.infra.experiment import BEST, INTERRUPTED, LAST, ROTATE, STEP, inspect_checkpoint
from mulap.infra.files import fsync_dir, is_write_problem, unlink_quietly, write_error
from mulap.infra.interrupts import signals_deferred

log = logging.getLogger(__name__)


def temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def checkpoint_nbytes(obj: Any, _seen: set | None = None) -> int:
    """About how many bytes `obj` takes on disk: the sizes of its tensors' storages, each counted once
    (tied weights share one)."""
    seen = set() if _seen is None else _seen
    if isinstance(obj, torch.Tensor):
        storage = obj.untyped_storage()
        if storage.data_ptr() in seen:
            return 0
        seen.add(storage.data_ptr())
        return storage.nbytes()
    if isinstance(obj, dict):
        return sum(checkpoint_nbytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(checkpoint_nbytes(v, seen) for v in obj)
    return 0


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, atomic on every filesystem: temp file in the destination folder, fsync,
    rename (Lightning's own writer goes through fsspec, which on another filesystem than the temp folder's is a
    copy that a crash leaves half-written). Writing ``last.ckpt`` first keeps the previous one as ``last.prev.ckpt``.
    A write that fails (disk full, read-only, permission denied) leaves no partial file and raises a WriteError
    naming the path (and, for a full disk, about how much space a checkpoint needs). Ctrl-C or SIGTERM during a
    write waits for its commit (the write, the rotation and the rename), then stops the run as usual."""

    def __init__(self) -> None:
        super().__init__()
        self.committed: dict[str, int] = {}  # file name -> global step of the full training states written

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        tmp = temp_path(path)
        # a signal raising inside torch.save tore the file ("unexpected pos"): it is delivered after the commit
        with signals_deferred():
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._write_temp(checkpoint, tmp)
                self._rotate(path)
                self._commit(tmp, path)
            except OSError as exc:
                unlink_quietly(tmp)
                raise write_error(exc, path, checkpoint_nbytes(checkpoint)) from None
            if "optimizer_states" in checkpoint and "loops" in checkpoint:
                self.committed[path.name] = int(checkpoint.get("global_step", 0))

    # the three steps are methods so that fault-injection tests can stop a process between or inside them
    def _write_temp(self, checkpoint: dict[str, Any], tmp: Path) -> None:
        with open(tmp, "wb", buffering=0) as raw:
            sink = _ErrorRecordingWriter(raw)
            try:
                # torch writes to any object with write() and flush(); its annotation asks for IO[bytes]
                torch.save(checkpoint, sink)  # type: ignore[arg-type]
            except RuntimeError:
                # torch reports a failed write as "unexpected pos ..." or "iostream error": give the OS's reason
                if sink.error is not None:
                    raise sink.error from None
                raise
            os.fsync(raw.fileno())

    def _rotate(self, path: Path) -> None:
        """``last.ckpt`` -> ``last.prev.ckpt`` without a moment where neither name holds a complete state:
        a hard link under a temp name, renamed over the previous one (a plain rename where links are not possible)."""
        if path.name not in ROTATE or not path.is_file():
            return
        prev = path.with_name(ROTATE[path.name])
        link = temp_path(prev)
        unlink_quietly(link)
        try:
            os.link(path, link)
        except OSError:
            os.replace(path, prev)
            return
        os.replace(link, prev)

    def _commit(self, tmp: Path, path: Path) -> None:
        os.replace(tmp, path)
        fsync_dir(path.parent)


class _ErrorRecordingWriter:
    """The file object torch.save writes to; keeps the first OSError (ENOSPC, EIO, ...) that torch then hides."""

    def __init__(self, raw):
        self.raw, self.error = raw, None

    def write(self, data) -> int:
        try:
            return self.raw.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        self.raw.flush()


# -- callbacks --------------------------------------------------------------------------------------
def _newest_saved_step(trainer, floor: int) -> int:
    """The global step of the newest full state on disk: the callbacks' record, and the writer's (a write that a
    signal interrupted is committed first, then the signal raises before the callback has noted it)."""
    committed = getattr(trainer.strategy.checkpoint_io, "committed", {})
    steps = [floor] + [step for name, step in committed.items() if name != INTERRUPTED]
    steps += [
        cb._last_global_step_saved
        for cb in trainer.checkpoint_callbacks
        if isinstance(cb, ModelCheckpoint) and not cb.save_weights_only
    ]
    return max(steps)


class StepCheckpoint(ModelCheckpoint):
    """``step.ckpt`` every N optimizer steps, except on an epoch's last batch (``last.ckpt`` follows moments
    later, after validation; a state saved between the two would resume into an ambiguous place)."""

    def __init__(self, dirpath: Path, every_n_steps: int):
        super().__init__(
            dirpath=dirpath,
            filename=Path(STEP).stem,
            every_n_train_steps=every_n_steps,
            save_top_k=1,
            monitor=None,
            enable_version_counter=False,
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx + 1 >= trainer.num_training_batches:
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


class InterruptedCheckpoint(Checkpoint):
    """``interrupted.ckpt`` when a run stops on an exception (Ctrl-C included) - only if it trained past every
    checkpoint already on disk, so it never holds untrained weights and never replaces a newer state. A full
    disk or read-only folder is not written to again. A run that ends normally removes it once a newer
    state exists. (Not Lightning's OnExceptionCheckpoint: with one of those, ``fit(ckpt_path=None)`` quietly
    resumes from the newest-by-mtime "last" file; here the resume is chosen by `resume_checkpoint`.)"""

    def __init__(self, dirpath: Path, resumed_step: int = 0):
        super().__init__()
        self.ckpt_path = str(Path(dirpath) / INTERRUPTED)
        self.resumed_step = resumed_step
        self._saving = False

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        """Lightning adds one to the loggers' step count on a mid-epoch restart, as a checkpoint saved at a batch's
        end needs; a run stopped before its current batch was processed has already counted it."""
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        if self._saving and progress.processed == progress.completed < trainer.num_training_batches:
            state = checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]
            state["_batches_that_stepped"] = max(0, int(state["_batches_that_stepped"]) - 1)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        step, newest = trainer.global_step, _newest_saved_step(trainer, self.resumed_step)
        if step <= newest:
            log.info(
                "no %s: global step %d holds no training beyond the checkpoints on disk (step %d)", INTERRUPTED, step, newest
            )
            return
        if is_write_problem(exception):
            log.debug("no %s: the run stopped on a write error (%s)", INTERRUPTED, exception)  # the CLI's error line says it
            return
        self._saving = True
        try:
            trainer.save_checkpoint(self.ckpt_path, weights_only=False)
        except OSError as exc:  # report the original exception, not this one
            log.warning("could not save %s: %s", self.ckpt_path, exc)
            return
        finally:
            self._saving = False
        log.warning("saved %s at global step %d (resume with the same command)", self.ckpt_path, step)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        path = Path(self.ckpt_path)
        if trainer.is_global_zero and path.is_file():
            info = inspect_checkpoint(path)
            if info.problem or info.global_step <= _newest_saved_step(trainer, 0):
                trainer.strategy.remove_checkpoint(str(path))


def checkpoint_callbacks(ckpt_dir: Path, every_n_steps: int | None, resumed_step: int = 0) -> list:
    """best (weights only, lowest val/loss), last (full, every epoch; rotated), step (optional), interrupted.
    The best callback comes first: the full states written after it in the same epoch then record its
    updated best score, so a resumed run never overwrites best.ckpt with a worse epoch."""
    callbacks: list[Checkpoint] = [
        ModelCheckpoint(
            dirpath=ckpt_dir,
            filename=Path(BEST).stem,
            monitor="val/loss",
            mode="min",
            save_top_k=1,
            save_weights_only=True,
            enable_version_counter=False,
        ),
        ModelCheckpoint(
            dirpath=ckpt_dir, filename=Path(LAST).stem, monitor=None, save_top_k=1, every_n_epochs=1, enable_version_counter=False
        ),
    ]
    if every_n_steps:
        callbacks.append(StepCheckpoint(ckpt_dir, int(every_n_steps)))
    callbacks.append(InterruptedCheckpoint(ckpt_dir, resumed_step))
    return callbacks
