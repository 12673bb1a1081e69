"""Run by tests/infra/test_interrupts.py: `python -m mulap ARGS...` with one point where the process waits for a signal.

    python -m tests.infra.interrupt_worker HOOK READY_FILE ARGS...

HOOK: none | step:K (pre-training, at the start of the training step at global step K) | write:J (inside the J-th
checkpoint write, torch.save part way through the file) | embed:J (before the J-th batch of chunks goes through the
backbone, in `mulap embed` and `mulap search`) | index-write:J (inside `mulap search`'s J-th write of its index,
tracks.npy written, the rest not) | output (inside `mulap embed -o`'s write of its output, the temp file written,
not yet renamed); hooks may be joined by commas, and block:B makes `mulap search` index B files per block.
There the process creates READY_FILE and waits, up to 120 s, for the test to signal its process group. The wait
ends when the signal's handler raises (KeyboardInterrupt) or when the signal has been noted for later (Lightning's
SIGTERM flag; a checkpoint write holding signals back until its commit), and the work goes on from there. The same
fault-injection idea as tests/training/resume_worker.py (which kills with SIGKILL), but with signals a process can
handle.
"""

from __future__ import annotations

import os
import runpy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def _held() -> bool:
    try:
        from mulap.infra.interrupts import held_signals
    except ImportError:  # a mulap without deferred signals: the signal's handler raises in the wait
        return False
    return bool(held_signals())


def wait_for_signal(ready: Path, noted=lambda: False) -> None:
    ready.write_text(str(os.getpid()))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if noted() or _held():
            return
        time.sleep(0.005)
    print("interrupt_worker: no signal came", file=sys.stderr, flush=True)
    os._exit(3)


def arm(hook: str, ready: Path) -> None:
    kind, _, arg = hook.partition(":")
    if kind == "step":
        from mulap.training.pretrain import PretrainModule

        step, real = int(arg), PretrainModule.training_step

        def training_step(self, batch, batch_idx):
            if self.trainer.global_step == step:
                wait_for_signal(ready, lambda: self.trainer.received_sigterm)
            return real(self, batch, batch_idx)

        PretrainModule.training_step = training_step
    elif kind == "write":
        from mulap.training import checkpoints

        nth, saves, writes = int(arg), [0], [0]
        write_temp, write = checkpoints.AtomicCheckpointIO._write_temp, checkpoints._ErrorRecordingWriter.write

        def counting_write_temp(self, checkpoint, tmp):
            saves[0], writes[0] = saves[0] + 1, 0
            return write_temp(self, checkpoint, tmp)

        def waiting_write(self, data):
            n = write(self, data)
            writes[0] += 1
            if saves[0] == nth and writes[0] == 3:  # a few records of the archive are on disk, the rest is not
                wait_for_signal(ready)
            return n

        checkpoints.AtomicCheckpointIO._write_temp = counting_write_temp
        checkpoints._ErrorRecordingWriter.write = waiting_write
    elif kind == "embed":
        import mulap.inference.extract

        nth, calls, real = int(arg), [0], mulap.inference.extract.embed_chunk_batch

        def embed_chunk_batch(*args, **kwargs):
            calls[0] += 1
            if calls[0] == nth:
                wait_for_signal(ready)
            return real(*args, **kwargs)

        mulap.inference.extract.embed_chunk_batch = embed_chunk_batch
    elif kind == "index-write":
        import mulap.inference.search

        nth, writes = int(arg), [0]
        write_folder, write_rows = mulap.inference.search._write_folder, mulap.inference.search._write_rows

        def counting_write_folder(*args, **kwargs):
            writes[0] += 1
            return write_folder(*args, **kwargs)

        def waiting_write_rows(path, *args, **kwargs):
            write_rows(path, *args, **kwargs)
            if writes[0] == nth and Path(path).name == "tracks.npy":
                wait_for_signal(ready)

        mulap.inference.search._write_folder = counting_write_folder
        mulap.inference.search._write_rows = waiting_write_rows
    elif kind == "output":
        import mulap.inference.embeddings_file

        savez = mulap.inference.embeddings_file.np.savez  # numpy's, patched for this process only

        def waiting_savez(file, *args, **kwargs):
            savez(file, *args, **kwargs)
            if Path(file).name.startswith("."):  # write_embeddings' temp file (not the cache's arrays)
                wait_for_signal(ready)

        mulap.inference.embeddings_file.np.savez = waiting_savez
    elif kind == "block":  # search indexes BLOCK_FILES files per block: small blocks, so a test sees them kept
        import mulap.inference.search

        mulap.inference.search.BLOCK_FILES = int(arg)
    elif kind != "none":
        sys.exit(f"interrupt_worker: unknown hook {hook!r}")


if __name__ == "__main__":
    hook, ready, *args = sys.argv[1:]
    for one in hook.split(","):
        arm(one, Path(ready))
    sys.argv = [sys.argv[0], *args]
    runpy.run_module("mulap", run_name="__main__", alter_sys=True)
