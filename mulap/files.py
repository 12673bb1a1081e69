"""Atomic file writes: a temporary name in the same folder, then a rename, so a crash never
leaves a half-written config, manifest, report or results file."""
from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path


class StorageError(OSError, ValueError):
    """A write the file system refused (disk full, read-only, permission denied), said in one line
    naming the path. An OSError (what it is) and a ValueError (so the CLI prints it as one line)."""

    def __init__(self, path: str | Path, exc: OSError, need_bytes: int | None = None):
        super().__init__(exc.errno, exc.strerror, str(path))
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            what = "disk full (no space left on device)"
            if need_bytes:
                what += f"; needs about {_mb(need_bytes)}, {_mb(_free_bytes(Path(path)))} free there"
        elif exc.errno == errno.EROFS:
            what = "read-only file system"
        elif exc.errno in (errno.EACCES, errno.EPERM):
            what = "permission denied"
        else:
            what = exc.strerror or str(exc)
        self.message = f"{path}: cannot write: {what}"

    def __str__(self) -> str:
        return self.message


def _mb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def _free_bytes(path: Path) -> int:
    for p in (path, *path.parents):  # the nearest folder that exists
        if p.exists():
            return shutil.disk_usage(p).free
    return 0


def is_file(path: str | Path) -> bool:
    """Path.is_file, but False (not an OSError) for a name the OS refuses, e.g. one longer than
    the file system allows - dataset metadata may hold any string as a file name."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


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
