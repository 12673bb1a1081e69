"""Shared types of the downstream loaders.

A loader reads one dataset exactly as its publisher ships it and returns a
`RawDataset`: one `Record` per clip (id, split, absolute path of the source audio,
target) plus the label names and the task type. Loaders never decode audio and never
drop a clip silently: clips they leave out on purpose (e.g. FMA's known-broken files)
are listed in `RawDataset.skipped` with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mulap.infra.files import is_file
from mulap.infra.text_files import DatasetError, DatasetFormatError  # noqa: F401 (the readers raise it: one import for them)

SPLITS = ("train", "valid", "test")
TASK_TYPES = ("multilabel", "multiclass", "regression")

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")  # <id>.npy must be a valid file name


@dataclass(frozen=True)
class Skipped:
    """A clip left out, with the file concerned and why."""

    file: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"file": self.file, "reason": self.reason}


@dataclass(frozen=True)
class Record:
    """One clip of a raw dataset.

    target: multilabel -> [K] multi-hot float32; multiclass -> int class index;
    regression -> [D] float32 (Emomusic: arousal, valence on the 1-9 scale).
    """

    id: str
    split: str
    audio: Path
    target: Any
    origin: str | None = None  # where the clip was read: "file, line N" / "file, record 'k'"


@dataclass
class RawDataset:
    """What a loader returns: every clip it kept, the label space and what it left out."""

    name: str
    task_type: str
    label_names: list[str]
    records: list[Record]
    source: dict[str, Any] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Clips per split, always with the three split names."""
        out = {s: 0 for s in SPLITS}
        for r in self.records:
            out[r.split] += 1
        return out

    def validate(self) -> None:
        """Check the invariants every consumer relies on (raises DatasetError naming the clip's file and line)."""
        if self.task_type not in TASK_TYPES:
            raise DatasetError(f"{self.name}: unknown task type {self.task_type!r}")
        seen: dict[str, Record] = {}
        k = len(self.label_names)
        for r in self.records:
            at = f"{self.name}: clip {r.id!r}" + (f" ({r.origin})" if r.origin else "")
            if r.id in seen:
                first = seen[r.id].origin
                raise DatasetError(f"{at} appears twice" + (f"; first at {first}" if first else ""))
            seen[r.id] = r
            if r.split not in SPLITS:
                raise DatasetError(f"{at} has split {r.split!r}, expected one of {SPLITS}")
            if not _SAFE_ID.match(r.id):
                raise DatasetError(f"{at}: the id is not usable as a file name")
            if self.task_type == "multilabel" and np.asarray(r.target).shape != (k,):
                raise DatasetError(f"{at}: target shape {np.asarray(r.target).shape} != ({k},)")
            if self.task_type == "multiclass" and not (0 <= int(r.target) < k):
                raise DatasetError(f"{at}: class {r.target} outside 0..{k - 1}")
            if self.task_type == "regression" and np.asarray(r.target).shape != (k,):
                raise DatasetError(f"{at}: target shape {np.asarray(r.target).shape} != ({k},)")


def multi_hot(indices: Sequence[int], k: int) -> np.ndarray:
    """Label indices -> [k] float32 multi-hot vector."""
    out = np.zeros(k, dtype=np.float32)
    out[list(indices)] = 1.0
    return out


def require_dir(path: Path, what: str) -> Path:
    """`path` if it is a directory, else a clear FileNotFoundError."""
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: {what} not found (expected a directory)")
    return path


def find_file(root: Path, name: str, candidates: Sequence[str] = (), what: str | None = None) -> Path:
    """Locate `name` under `root`: first the given relative candidates, else a unique match anywhere below.

    Publishers' archives unpack with or without a top folder, so a file may sit at
    the root or one or two levels down; an ambiguous match is an error, not a guess.
    """
    for rel in (*candidates, name):
        p = root / rel
        if p.is_file():
            return p
    found = sorted(p for p in root.rglob(name) if p.is_file())
    if len(found) == 1:
        return found[0]
    if not found:
        raise FileNotFoundError(f"{root}: {what or name} not found (looked for {name!r} here and below)")
    raise FileNotFoundError(
        f"{root}: several files named {name!r} ({', '.join(str(p) for p in found[:5])}); pass the folder that holds the one to use"
    )


def audio_root(candidates: Sequence[Path], rel_paths: Sequence[str], probe: int = 50) -> Path:
    """The first candidate folder under which some of `rel_paths` exist (else the first existing folder).

    Publishers' audio archives unpack with or without an extra top folder; probing a
    few files finds the right level without listing the whole tree.
    """
    for root in candidates:
        if any(is_file(root / p) for p in rel_paths[:probe]):
            return root
    for root in candidates:
        if root.is_dir():
            return root
    return candidates[0]


LoaderFn = Callable[..., RawDataset]
