"""Atomic file writes: a temporary name in the same folder, then a rename, so a crash never
leaves a half-written config, manifest, report or results file. Write failures (disk full,
read-only, permission denied) come out as one `WriteError` naming the path."""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
import socket
from pathlib import Path

# what a user can do something about: free space, fix permissions, pick another folder
_WRITE_PROBLEMS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


class WriteError(OSError):
    """A file could not be written; the message names the path and what happened (for a full disk,
    how much space is free and about how much was needed)."""

    def __init__(self, message: str, code: int | None = None, path: str | Path | None = None):
        super().__init__(message)
        self.errno, self.filename, self.message = code, None if path is None else str(path), message

    def __str__(self) -> str:
        return self.message


def is_write_problem(exc: BaseException) -> bool:
    """True for the OSErrors `write_error` describes (disk full, quota, read-only, permissions)."""
    return isinstance(exc, WriteError) or (isinstance(exc, OSError) and exc.errno in _WRITE_PROBLEMS)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def write_error(exc: OSError, path: str | Path, needed_bytes: int | None = None) -> WriteError:
    """`exc` (raised while writing `path`) as a one-line WriteError; a WriteError is returned as is."""
    if isinstance(exc, WriteError):
        return exc
    what = (_WRITE_PROBLEMS.get(exc.errno) if exc.errno is not None else None) or exc.strerror or str(exc)
    msg = f"cannot write {path}: {what}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        free = _free_bytes(Path(path))
        parts = [f"{human_bytes(free)} free"] if free is not None else []
        if needed_bytes:
            parts.append(f"about {human_bytes(needed_bytes)} needed")
        if parts:
            msg += f" ({', '.join(parts)})"
    return WriteError(msg, exc.errno, path)


def _free_bytes(path: Path) -> int | None:
    for folder in (path, *path.parents):
        if folder.is_dir():
            try:
                return shutil.disk_usage(folder).free
            except OSError:
                return None
    return None


def fsync_dir(folder: str | Path) -> None:
    """Make a rename in `folder` durable (a power cut after it cannot bring the old name back)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot fsync a directory; the rename itself is still atomic
        pass
    finally:
        os.close(fd)


def unlink_quietly(path: str | Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# -- temporary folders of one writer -------------------------------------------------------------
# `.<name>.<kind>-<host>-<pid>-<8 hex>`: the writer's host and pid let a later run tell a killed writer's
# leftover from a live one's (kind: tmp = being built, old = set aside while the new one is swapped in)
WRITER_HOST = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname() or "host")
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<host>[A-Za-z0-9._]+)-(?P<pid>\d+)-[0-9a-f]{8}$")


def writer_temp(path: str | Path, kind: str = "tmp") -> Path:
    """A hidden sibling of `path` that this process builds (kind ``tmp``) or sets aside (``old``) before a rename:
    ``.<name>.<kind>-<host>-<pid>-<random>``. The folder scan never reads hidden folders."""
    path = Path(path)
    return path.with_name(f".{path.name.lstrip('.')}.{kind}-{WRITER_HOST}-{os.getpid()}-{secrets.token_hex(4)}")


def dead_writer_temps(folder: str | Path, name: str | None = None) -> list[tuple[Path, str]]:
    """The `writer_temp` folders in `folder` (of the target `name`, or of any) whose writer is gone: a process
    of this host that no longer runs. Those of live processes and of other hosts (this host cannot tell) are
    not listed. Returns (path, kind), sorted by name."""
    try:
        entries = sorted(Path(folder).iterdir())
    except OSError:
        return []
    found = []
    for entry in entries:
        m = _TEMP.match(entry.name)
        if (
            m
            and (name is None or m["name"] == name.lstrip("."))
            and m["host"] == WRITER_HOST
            and not pid_alive(int(m["pid"]))
            and entry.is_dir()
            and not entry.is_symlink()
        ):
            found.append((entry, m["kind"]))
    return found


def remove_dead_temps(folder: str | Path, name: str | None = None) -> list[Path]:
    """Remove what `dead_writer_temps` lists; returns what was removed."""
    removed = []
    for entry, _ in dead_writer_temps(folder, name):
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (someone else's process counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def is_file(path: str | Path) -> bool:
    """Path.is_file, but False (not an OSError) for a name the OS refuses, e.g. one longer than
    the file system allows - dataset metadata may hold any string as a file name."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """`data` as the file `path`, whole or not at all. Created by open() like every file mulap writes, so it
    gets the umask's permissions (libraries that write through a temp file of their own, safetensors' save_file
    among them, leave it 0600: a shared model others cannot read)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except OSError as exc:
        unlink_quietly(tmp)
        raise write_error(exc, path, len(data)) from None
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj) -> Path:
    """Pretty JSON; numpy scalars and other number-likes are written as floats."""
    return atomic_write_text(path, json.dumps(obj, indent=2, default=float))
