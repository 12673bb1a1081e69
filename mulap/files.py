"""Atomic file writes: a temporary name in the same folder, then a rename, so a crash never
leaves a half-written config, manifest, report or results file."""
from __future__ import annotations

import json
import os
from pathlib import Path


def atomic_write_text(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    return path


def write_json(path: str | Path, obj) -> Path:
    """Pretty JSON; numpy scalars and other number-likes are written as floats."""
    return atomic_write_text(path, json.dumps(obj, indent=2, default=float))
