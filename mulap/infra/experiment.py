"""The experiment folder: the one place that knows `<save_dir>/experiments/<id>` and how its checkpoints are read.

    <save_dir>/experiments/<id>/
      config.yaml              the run's whole configuration (paths recorded absolute)
      checkpoints/             last.ckpt, last.prev.ckpt, step.ckpt, interrupted.ckpt (full states), best.ckpt (weights)
      backbone.safetensors     the best backbone (transfer), backbone_last.safetensors
      logs/, runs.log, downstream/<id>/, zeroshot/<task>/

Reading needs torch only (no Lightning): inference loads a model's best weights through `best_checkpoint`.
Writing checkpoints is training's (mulap.training.checkpoints).
"""

from __future__ import annotations

import logging
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mulap.infra.config import ConfigError
from mulap.infra.files import unlink_quietly

log = logging.getLogger(__name__)

LAST, PREV, STEP, INTERRUPTED, BEST = "last.ckpt", "last.prev.ckpt", "step.ckpt", "interrupted.ckpt", "best.ckpt"
ROTATE = {LAST: PREV}  # writing the key first keeps the file it replaces under the value's name
_PREFERENCE = {LAST: 0, STEP: 1, INTERRUPTED: 2, PREV: 3}  # ties in training progress: the epoch-end state first


def experiments_root(save_dir: str | Path) -> Path:
    """``<save_dir>/experiments``: where every pre-training run has its folder."""
    return Path(save_dir) / "experiments"


def experiment_dir(save_dir: str | Path, pretrain_id: str) -> Path:
    """``<save_dir>/experiments/<pretrain_id>``."""
    return experiments_root(save_dir) / pretrain_id


def run_dir(save_dir: str | Path, pretrain_id: str) -> Path:
    """The folder a run with this id writes to: `experiment_dir`, once the id is checked to be one folder name
    (``../x`` or ``a/b`` would put the experiment elsewhere, where nothing finds it by its id)."""
    if not pretrain_id or pretrain_id in (".", "..") or "/" in pretrain_id or os.sep in pretrain_id or "\0" in pretrain_id:
        raise ConfigError(f"pretrain_id {pretrain_id!r}: use a plain name (letters, digits, '-', '_', '.'), not a path")
    return experiment_dir(save_dir, pretrain_id)


def backbone_file(save_dir: str | Path, pretrain_id: str) -> Path:
    """The best backbone of a pre-training run, for transfer."""
    return experiment_dir(save_dir, pretrain_id) / "backbone.safetensors"


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
    passed_over: list[str] = []
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
        instead = (
            f"using {chosen.name} instead: other weights than the best by val/loss" if chosen else "no intact checkpoint is left"
        )
        log.warning("%s: passed over %s; %s", folder, "; ".join(passed_over), instead)
