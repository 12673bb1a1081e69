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
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint

from mulap.files import fsync_dir, is_write_problem, unlink_quietly, write_error
from mulap.interrupts import signals_deferred

log = logging.getLogger(__name__)

LAST, PREV, STEP, INTERRUPTED, BEST = "last.ckpt", "last.prev.ckpt", "step.ckpt", "interrupted.ckpt", "best.ckpt"
ROTATE = {LAST: PREV}  # writing the key first keeps the file it replaces under the value's name
_PREFERENCE = {LAST: 0, STEP: 1, INTERRUPTED: 2, PREV: 3}  # ties in training progress: the epoch-end state first


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
                torch.save(checkpoint, sink)
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


# -- reading ----------------------------------------------------------------------------------------
@dataclass
class CheckpointInfo:
    path: Path
    global_step: int = 0
    epoch: int = 0
    full_state: bool = False  # optimizer, schedulers and loops: a state a run can resume from
    problem: str | None = None  # why it cannot be used (None: usable)
    damaged: bool = False  # unreadable or failing its CRC check (moved aside on resume)

    @property
    def mtime(self) -> float:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return 0.0


def _short(exc: BaseException) -> str:
    """The first sentence of an error, for one-line reports."""
    text = str(exc).split("\n")[0].strip()
    if len(text) > 100 and ". " in text:
        text = text.split(". ")[0]
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def inspect_checkpoint(path: str | Path) -> CheckpointInfo:
    """Open a checkpoint cheaply (memory-mapped, weights_only) and read its step; never raises."""
    info = CheckpointInfo(Path(path))
    try:
        ckpt = torch.load(info.path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 - any failure to open means: not usable
        info.problem, info.damaged = f"unreadable ({_short(exc)})", True
        return info
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        info.problem = "not a Lightning checkpoint (no state_dict)"
        return info
    info.global_step, info.epoch = int(ckpt.get("global_step", 0)), int(ckpt.get("epoch", 0))
    info.full_state = "optimizer_states" in ckpt and "loops" in ckpt
    return info


def verify_integrity(path: str | Path) -> str | None:
    """Read every record of the checkpoint's zip archive and check its CRC-32; returns the problem or None.
    (torch.load does not check CRCs: a flipped bit in a tensor loads silently.)"""
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except Exception as exc:  # noqa: BLE001
        return _short(exc)
    return None if bad is None else f"CRC mismatch in record {bad}"


@dataclass
class Resume:
    """The checkpoint a run resumes from, and what was passed over on the way (newest first)."""
    info: CheckpointInfo
    passed_over: list[str] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.info.path

    def describe(self) -> str:
        text = f"resume from {self.path.parent.name}/{self.path.name} (global step {self.info.global_step})"
        return text + (f"; passed over: {'; '.join(self.passed_over)}" if self.passed_over else "")


def resume_checkpoint(exp_dir: str | Path, clean: bool = True, quiet: bool = False) -> Resume | None:
    """The newest intact full training state in ``<exp_dir>/checkpoints`` (any ``*.ckpt``: last, last.prev,
    step, interrupted, Lightning's ``-vN`` copies, earlier runs' ``epochNNN.ckpt``), or None to start afresh.

    "Newest" is training progress (global step), not file time, so an ``interrupted.ckpt`` that holds less
    training never wins over a later state. With `clean` (the process that owns the experiment), damaged files
    are renamed ``<name>.corrupt`` and temp files left by a killed write are removed. `quiet`: say nothing (the
    choice is logged when a run resumes, not when one stopped and says what the next will resume from).
    """
    folder = Path(exp_dir) / "checkpoints"
    if not folder.is_dir():
        return None
    if clean:
        for tmp in folder.glob(".*.tmp"):
            log.info("removing %s (left by an interrupted write)", tmp)
            unlink_quietly(tmp)
    infos = [inspect_checkpoint(p) for p in sorted(folder.glob("*.ckpt")) if p.is_file() and not p.name.startswith(".")]
    usable = [i for i in infos if i.problem is None and i.full_state and i.global_step > 0]
    usable.sort(key=lambda i: (i.global_step, i.mtime, -_PREFERENCE.get(i.path.name, 9)), reverse=True)
    chosen = None
    for info in usable:
        problem = verify_integrity(info.path)
        if problem is None:
            chosen = info
            break
        info.problem, info.damaged = f"damaged ({problem})", True
    notes = []
    for info in infos:
        if info is chosen or (info.problem is None and not info.full_state):  # weights-only files (best.ckpt)
            continue
        if info.problem is None and info.global_step == 0:
            info.problem = "global step 0: nothing trained"
        if info.problem is None:  # intact but older than the chosen one
            continue
        note = f"{info.path.name}: {info.problem}"
        if info.damaged and clean:
            aside = info.path.with_name(info.path.name + ".corrupt")
            try:
                os.replace(info.path, aside)
                note += f"; moved to {aside.name}"
            except OSError as exc:
                note += f"; could not move it aside ({_short(exc)})"
        notes.append(note)
    if chosen is None:
        if notes and not quiet:
            log.warning("no usable checkpoint in %s (%s): starting from scratch", folder, "; ".join(notes))
        return None
    resume = Resume(chosen, notes)
    if not quiet:
        (log.warning if notes else log.info)("%s", resume.describe())
    return resume


def best_checkpoint(exp_dir: str | Path) -> Path | None:
    """The best weights of an experiment: ``best.ckpt``; for runs made before it existed, the newest
    ``epochNNN*.ckpt`` (the best by val/loss then); then ``last.ckpt``; then the newest intact resume state.
    Every file returned opens with ``torch.load(path, weights_only=True)``, passes its CRC check and has the
    MuLaP weights under ``state_dict`` with the ``model.`` prefix. A candidate that does not (a damaged
    ``best.ckpt``) is passed over with a warning naming it, why, and the file used instead: other weights."""
    folder = Path(exp_dir) / "checkpoints"
    if not folder.is_dir():
        return None
    legacy = sorted(folder.glob("epoch*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    passed_over = []
    for path in (folder / BEST, *legacy, folder / LAST):
        if path.is_file():
            problem = inspect_checkpoint(path).problem or verify_integrity(path)
            if problem is None:
                _warn_passed_over(folder, passed_over, path)
                return path
            passed_over.append(f"{path.name} ({problem})")
    resume = resume_checkpoint(exp_dir, clean=False)
    _warn_passed_over(folder, passed_over, resume.path if resume else None)
    return resume.path if resume else None


def _warn_passed_over(folder: Path, passed_over: list[str], chosen: Path | None) -> None:
    if passed_over:
        instead = (f"using {chosen.name} instead: other weights than the best by val/loss" if chosen
                   else "no intact checkpoint is left")
        log.warning("%s: passed over %s; %s", folder, "; ".join(passed_over), instead)


# -- callbacks --------------------------------------------------------------------------------------
def _newest_saved_step(trainer, floor: int) -> int:
    """The global step of the newest full state on disk: the callbacks' record, and the writer's (a write that a
    signal interrupted is committed first, then the signal raises before the callback has noted it)."""
    committed = getattr(trainer.strategy.checkpoint_io, "committed", {})
    steps = [floor] + [step for name, step in committed.items() if name != INTERRUPTED]
    steps += [cb._last_global_step_saved for cb in trainer.checkpoint_callbacks
              if isinstance(cb, ModelCheckpoint) and not cb.save_weights_only]
    return max(steps)


class StepCheckpoint(ModelCheckpoint):
    """``step.ckpt`` every N optimizer steps, except on an epoch's last batch (``last.ckpt`` follows moments
    later, after validation; a state saved between the two would resume into an ambiguous place)."""

    def __init__(self, dirpath: Path, every_n_steps: int):
        super().__init__(dirpath=dirpath, filename=Path(STEP).stem, every_n_train_steps=every_n_steps, save_top_k=1,
                         monitor=None, enable_version_counter=False)

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
            log.info("no %s: global step %d holds no training beyond the checkpoints on disk (step %d)", INTERRUPTED, step, newest)
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
    callbacks = [
        ModelCheckpoint(dirpath=ckpt_dir, filename=Path(BEST).stem, monitor="val/loss", mode="min", save_top_k=1,
                        save_weights_only=True, enable_version_counter=False),
        ModelCheckpoint(dirpath=ckpt_dir, filename=Path(LAST).stem, monitor=None, save_top_k=1, every_n_epochs=1,
                        enable_version_counter=False),
    ]
    if every_n_steps:
        callbacks.append(StepCheckpoint(ckpt_dir, int(every_n_steps)))
    callbacks.append(InterruptedCheckpoint(ckpt_dir, resumed_step))
    return callbacks
