"""One run per experiment: a lock file holding (pid, host, start time, command) for the whole run.

The lock is an ``flock`` on ``run.lock`` (released by the kernel however the process ends, kill -9 included)
plus the holder's record in the file. A second run is refused with a message naming the holder. A lock
left by a process that is gone - its pid is dead on this host, or nobody holds the flock and the pid was
reused - is taken over with a notice. A record from another host is never taken over automatically:
the message says how to clear it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

from mulap.infra.files import pid_alive, write_error

log = logging.getLogger(__name__)
LOCK_NAME = "run.lock"


class RunLockError(ValueError):
    """Another run holds the experiment; the message names it."""


def launcher_rank_zero() -> bool:
    """True in the process that owns an experiment's files: global rank 0, on node 0. Known before the
    Trainer exists, from the variables the launchers set (Lightning's, torchrun, SLURM)."""
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "JSM_NAMESPACE_RANK"):
        if os.environ.get(var, "0") not in ("", "0"):
            return False
    return os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", "0")) in ("", "0")


def _read_record(fd: int) -> dict | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 65536)
    if not raw.strip():
        return None
    try:
        rec = json.loads(raw)
    except ValueError:
        return {"pid": None, "host": "?", "started": "?", "command": raw[:200].decode(errors="replace")}
    return rec if isinstance(rec, dict) else None


def _describe(rec: dict) -> str:
    return f"pid {rec.get('pid')} on host {rec.get('host')}, started {rec.get('started')}" + (
        f" ({rec.get('command')})" if rec.get("command") else ""
    )


@contextlib.contextmanager
def run_lock(path: str | Path, what: str, enabled: bool = True):
    """Hold `path` for the duration of the block; `what` names the experiment in messages.
    With `enabled` False (processes other than rank 0) nothing is done."""
    if not enabled:
        yield None
        return
    path = Path(path)
    fd = _acquire(path, what)
    try:
        yield path
    finally:
        _release(path, fd)


def _open_locked(path: Path) -> tuple[int, bool | None]:
    """(fd, whether we hold the flock: True, False when another process does, None when flock is unsupported)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked: bool | None = True
        except BlockingIOError:
            locked = False
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                os.close(fd)
                raise
            locked = None
        try:  # the previous holder may have removed the file between our open and flock: use the current one
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd, locked
        os.close(fd)


def _acquire(path: Path, what: str) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, locked = _open_locked(path)
    except OSError as exc:
        raise write_error(exc, path) from None
    try:
        holder = _read_record(fd)
        host = socket.gethostname()
        if holder is not None:
            same_host = holder.get("host") == host
            pid = holder.get("pid")
            alive = same_host and isinstance(pid, int) and pid_alive(pid)
            if not same_host:  # this host cannot tell whether that process still runs
                raise RunLockError(
                    f"{what} is in use by another run: {_describe(holder)}; lock file {path} "
                    "(if that run is over, delete the file)"
                )
            if alive and locked is not True:
                raise RunLockError(f"{what} is in use by another run: {_describe(holder)}; lock file {path}")
            log.warning("%s: taking over a stale lock (%s; that process is gone)", what, _describe(holder))
        record = {
            "pid": os.getpid(),
            "host": host,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv)[:500],
        }
        data = (json.dumps(record) + "\n").encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        raise write_error(exc, path) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _release(path: Path, fd: int) -> None:
    try:
        if os.fstat(fd).st_ino == os.stat(path).st_ino:
            os.unlink(path)
    except OSError:
        pass
    finally:
        os.close(fd)
