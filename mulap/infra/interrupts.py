"""Ctrl-C (SIGINT) and SIGTERM: which signal stopped a command, a stop that waits for a file's commit, and the
CLI's SIGTERM handler.

A library call interrupted by Ctrl-C raises KeyboardInterrupt, as Python does; `Interrupted` is a KeyboardInterrupt
that also says which signal it was and what the interrupted work kept (pre-training raises it for both signals).
The CLI turns every one of them into one line and the exit status of the signal (130, 143).

Lightning handles both signals itself while it trains: Ctrl-C ends `fit` with `sys.exit(1)` (a SystemExit whose
context is the KeyboardInterrupt), SIGTERM sets `trainer.received_sigterm` and stops at the end of the batch with a
`SIGTERMException` (a SystemExit). `signal_of` reads all of these.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Work stopped by `signum`; `detail` says where it stopped and what it kept (e.g. "at global step 12;
    kept checkpoints/step.ckpt (global step 12)")."""

    def __init__(self, signum: int, detail: str = ""):
        super().__init__(signum, detail)
        self.signum, self.detail = int(signum), detail

    def __str__(self) -> str:
        return f"interrupted ({signal_name(self.signum)})" + (f" {self.detail}" if self.detail else "")


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def exit_status(signum: int) -> int:
    """What a shell reports for a process stopped by `signum`: 128 + the signal's number (130, 143)."""
    return 128 + int(signum)


def signal_of(exc: BaseException) -> int | None:
    """The signal that `exc` stands for, or None when it is an ordinary error."""
    if isinstance(exc, Interrupted):
        return exc.signum
    if isinstance(exc, KeyboardInterrupt):
        return signal.SIGINT
    if isinstance(exc, SystemExit):
        if type(exc).__name__ == "SIGTERMException":  # lightning.pytorch.utilities.exceptions (not imported here)
            return signal.SIGTERM
        if exc.code == 1 and isinstance(exc.__context__, KeyboardInterrupt):  # Lightning's exit after Ctrl-C
            return signal_of(exc.__context__)
    return None


# -- a commit that a signal does not tear ----------------------------------------------------------
_held: list[int] = []  # signals that arrived during `signals_deferred` (read by fault-injection tests)


def held_signals() -> tuple[int, ...]:
    return tuple(_held)


@contextlib.contextmanager
def signals_deferred():
    """SIGINT and SIGTERM arriving inside the block wait until it is done, then go to the handlers that were
    there before (Python's KeyboardInterrupt, Lightning's graceful stop, the CLI's handler). For writes that must
    finish once begun: a checkpoint's temp file, rename and rotation. Only the main thread receives signals; in
    any other thread the block runs as it is. SIGKILL cannot be deferred (the atomic rename covers it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    previous = {s: h for s, h in previous.items() if h is not None}  # None: set outside Python, cannot be restored
    start = len(_held)

    def hold(signum, _frame):
        _held.append(signum)

    for s in previous:
        signal.signal(s, hold)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        arrived = list(dict.fromkeys(_held[start:]))
        del _held[start:]
        for s in arrived:  # delivered now: the previous handler runs inside raise_signal
            signal.raise_signal(s)


# -- the CLI's handler -----------------------------------------------------------------------------
_received: list[int] = []


def received() -> int | None:
    """The stop signal the CLI's handler saw in this process (None: none)."""
    return _received[-1] if _received else None


def _on_sigterm(signum, _frame) -> None:
    _received.append(signum)
    if signal.getsignal(signal.SIGTERM) is not _on_sigterm:
        # called by the handler Lightning installs while it trains (it calls the one it found): Lightning
        # stops at the end of the current batch and saves interrupted.ckpt; raising here would stop mid-step
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def cli_handlers():
    """While a CLI command runs: SIGTERM raises `Interrupted` (Python's default ends the process at once, nothing
    said, nothing cleaned up); SIGINT keeps Python's KeyboardInterrupt. The previous handler comes back afterwards
    (a command run in-process, e.g. by the tests). Main thread only, as `signal.signal` requires."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    _received.clear()
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


# -- data-loader workers ---------------------------------------------------------------------------
def _exit_quietly(_signum, _frame) -> None:
    os._exit(0)


def worker_exits_on_sigterm(worker_id: int = 0, rank: int | None = None) -> None:
    """A data loader's `worker_init_fn`: a SIGTERM ends the worker with exit status 0, as torch's own handler does
    only when the worker's parent sends it. A SIGTERM sent to the whole process group (a scheduler, `timeout`,
    systemd) is the main process's to handle; a worker it killed would make the main process fail with "DataLoader
    worker (pid N) is killed by signal: Terminated" (at any moment, from torch's SIGCHLD handler) instead of
    stopping cleanly. (Ignoring SIGTERM instead would hang the exit: multiprocessing ends daemonic workers with it.)
    With `rank`, it also seeds the worker as Lightning does for a loader without a worker_init_fn
    (`seed_everything(workers=True)`)."""
    signal.signal(signal.SIGTERM, _exit_quietly)
    if rank is not None and int(os.environ.get("PL_SEED_WORKERS", 0)):
        from lightning.fabric.utilities.seed import pl_worker_init_function

        pl_worker_init_function(worker_id, rank=rank)
