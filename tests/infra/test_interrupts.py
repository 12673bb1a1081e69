"""Ctrl-C and SIGTERM (issue 17, "Interrupts"). A real `python -m mulap` process (tests/infra/interrupt_worker.py) stops at
a chosen point - a training step, inside a checkpoint write, an embedding batch of `embed` or of `search`'s indexing -
and the test signals its process group. The process ends with one line that says what was kept and gives the
command that continues, with the signal's exit status (130 SIGINT, 143 SIGTERM); the same command then finishes.
Also in-process: a deferred signal waits for a checkpoint's commit; a library call still raises KeyboardInterrupt."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mulap.cli import main
from mulap.infra import experiment
from mulap.training import checkpoints as ck
from tests.helpers import TINY_MODEL, make_tone_corpus, tone
from tests.training.crash_trials import state_problems

ROOT = Path(__file__).resolve().parents[2]
PRETRAIN = [
    "training.batch_size=2",
    "training.num_workers=0",
    "training.lr=3e-3",
    "training.warmup_ratio=0.0",
    "training.epochs=1",
    "training.log_every_n_steps=1",
    "dataset_config.max_len_seconds=6",
    "model_config.audio.max_chunks=2",
    *TINY_MODEL,
]  # 8 clips: 4 steps


def interrupt(tmp_path: Path, hook: str, args: list[str], sig: int) -> tuple[int, str]:
    """Run `python -m mulap ARGS` until `hook` is reached, send `sig` to its process group; (exit status, stderr)."""
    ready, err = tmp_path / f"ready-{time.monotonic_ns()}", tmp_path / f"stderr-{time.monotonic_ns()}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with open(err, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.infra.interrupt_worker", hook, str(ready), *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=fh,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 180
            while not ready.exists():
                assert proc.poll() is None, f"ended before {hook}: {err.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"{hook} not reached"
                time.sleep(0.02)
            os.killpg(proc.pid, sig)
            rc = proc.wait(timeout=180)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return rc, err.read_text()


def last_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    return [line for line in stderr.replace("\r", "\n").splitlines() if line.strip()][-1]


def same_command(args: list[str]) -> str:
    return "mulap " + shlex.join(args)


# -- pretrain -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_tone_corpus(tmp_path_factory.mktemp("tones"))


@pytest.mark.slow
@pytest.mark.parametrize(
    "hook,sig,extra,stopped,kept",
    [
        ("step:2", signal.SIGINT, ["training.progress_bar=false"], 2, "interrupted.ckpt"),
        # the second checkpoint write (step.ckpt of step 2), part way through torch.save: it is finished first
        ("write:2", signal.SIGINT, ["training.progress_bar=false", "training.checkpoint_every_n_steps=1"], 2, "step.ckpt"),
        # Lightning's graceful stop: the step under way is finished (with the progress bar on)
        ("step:2", signal.SIGTERM, ["training.progress_bar=true"], 3, "interrupted.ckpt"),
    ],
    ids=["SIGINT-at-a-step", "SIGINT-inside-a-checkpoint-write", "SIGTERM-at-a-step"],
)
def test_interrupted_pretraining_says_what_it_kept_and_the_same_command_resumes(
    corpus, tmp_path, hook, sig, extra, stopped, kept
):
    args = ["pretrain", "--pretrain_id", "r1", f"env.save_dir={tmp_path}", f"dataset_config.data_dir={corpus}", *PRETRAIN, *extra]
    rc, err = interrupt(tmp_path, hook, args, sig)
    name = signal.Signals(sig).name
    assert rc == 128 + sig, err[-3000:]
    assert last_line(err) == (
        f"mulap pretrain: interrupted ({name}) at global step {stopped}; kept checkpoints/{kept} "
        f"(global step {stopped}); run the same command to resume: {same_command(args)}"
    )
    exp = tmp_path / "experiments" / "r1"
    assert (
        (exp / "runs.log")
        .read_text()
        .splitlines()[-1]
        .endswith(f"stopped at global step {stopped}: interrupted ({name}); kept checkpoints/{kept} (global step {stopped})")
    )
    ckpts = exp / "checkpoints"
    assert not list(ckpts.glob(".*")), "a temp file was left"
    assert (
        experiment.verify_integrity(ckpts / kept) is None and experiment.inspect_checkpoint(ckpts / kept).global_step == stopped
    )
    assert not (exp / "run.lock").exists()

    assert main(args) == 0  # the same command
    log = (exp / "runs.log").read_text()
    assert f"resume from checkpoints/{kept} (global step {stopped})" in log.splitlines()[-2]
    assert log.splitlines()[-1].split(" ", 2)[2] == "finished at global step 4 (1 epochs)"
    assert state_problems(exp) == []


def test_pretraining_without_an_id_is_resumed_with_the_id_it_made(corpus, tmp_path, monkeypatch, capsys):
    """The time-stamped default id would start a new experiment: the command given back names it."""
    import mulap.training.pretrain as pretrain
    from mulap.infra.interrupts import Interrupted

    def stopped(cfg, pretrain_id, extra_callbacks=()):
        raise Interrupted(signal.SIGINT, "at global step 1; kept checkpoints/interrupted.ckpt (global step 1)")

    monkeypatch.setattr(pretrain, "run_pretraining", stopped)
    args = ["pretrain", f"env.save_dir={tmp_path}", f"dataset_config.data_dir={corpus}", *PRETRAIN]
    assert main(args) == 130
    line = capsys.readouterr().err.strip().splitlines()[-1]
    pid = line.split("--pretrain_id ")[1].split(" ")[0]
    assert line.endswith(same_command(["pretrain", "--pretrain_id", pid, *args[1:]])) and len(pid) == len("20250101-120000")


def test_a_library_run_still_raises_keyboard_interrupt_and_gets_ctrl_c_back(corpus, tmp_path):
    """run_pretraining is stopped by a real SIGINT at a step: a KeyboardInterrupt (not Lightning's SystemExit(1)), with
    the signal and what was kept; Lightning's "ignore Ctrl-C from now on" does not outlive the run."""
    import lightning as L

    from mulap.infra.config import load_config
    from mulap.infra.interrupts import Interrupted
    from mulap.training.pretrain import run_pretraining

    class CtrlC(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.global_step == 1:
                os.kill(os.getpid(), signal.SIGINT)

    cfg = load_config(
        None, [f"env.save_dir={tmp_path}", f"dataset_config.data_dir={corpus}", *PRETRAIN, "training.progress_bar=false"]
    )
    with pytest.raises(KeyboardInterrupt) as stop:
        run_pretraining(cfg, "lib", extra_callbacks=[CtrlC()])
    assert isinstance(stop.value, Interrupted) and stop.value.signum == signal.SIGINT
    assert str(stop.value) == "interrupted (SIGINT) at global step 1; kept checkpoints/interrupted.ckpt (global step 1)"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# -- a checkpoint write holds signals back until its commit --------------------------------------------
def test_a_signal_inside_a_checkpoint_write_is_delivered_after_the_commit(tmp_path, monkeypatch):
    """Ctrl-C part way through torch.save tore the write ("RuntimeError: unexpected pos"); now the file is finished,
    renamed into place, and the KeyboardInterrupt comes right after."""
    real_write, calls = ck._ErrorRecordingWriter.write, [0]

    def write(self, data):
        calls[0] += 1
        if calls[0] == 2:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)  # where the handler would raise
        return real_write(self, data)

    monkeypatch.setattr(ck._ErrorRecordingWriter, "write", write)
    state = {"state_dict": {"w": torch.arange(100_000.0)}, "optimizer_states": [], "loops": {}, "global_step": 3}
    io = ck.AtomicCheckpointIO()
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint(state, tmp_path / "last.ckpt")
    assert calls[0] > 2 and sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    with zipfile.ZipFile(tmp_path / "last.ckpt") as zf:
        assert zf.testzip() is None
    assert torch.equal(torch.load(tmp_path / "last.ckpt", weights_only=True)["state_dict"]["w"], state["state_dict"]["w"])
    assert io.committed == {"last.ckpt": 3}
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_deferred_signals_reach_the_handler_that_was_there():
    from mulap.infra.interrupts import signals_deferred

    seen = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)
            assert seen == []
        assert seen == [signal.SIGTERM]  # once, after the block
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- embed and search ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def music(tmp_path_factory):
    """Five 10 s tones (15 chunks)."""
    folder = tmp_path_factory.mktemp("music")
    for i in range(5):
        np.save(folder / f"song{i}.npy", tone(10.0, 150.0 + 40 * i))
    return folder


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_embed_writes_nothing_and_the_same_command_writes_it(music, tmp_path, sig):
    out = tmp_path / "out" / "emb.npz"
    args = ["embed", "random", str(music), "-o", str(out), "--batch_size", "4", "training.num_workers=2"]
    rc, err = interrupt(tmp_path, "embed:2", args, sig)
    assert rc == 128 + sig, err[-3000:]
    assert last_line(err) == (
        f"mulap embed: interrupted ({signal.Signals(sig).name}); nothing written to {out} (the "
        f"output is written only at the end); run the same command to start again: "
        f"{same_command(args)}"
    )
    assert not out.exists() and (not out.parent.exists() or not list(out.parent.iterdir()))
    assert main(args) == 0
    assert np.load(out)["track_embeddings"].shape[0] == 5


def like_search(music: Path, index: Path, *more: str) -> list[str]:
    """`mulap search random <music> --like song1 --index <index> ...`: the search every interrupt test runs."""
    return [
        "search",
        "random",
        str(music),
        "--like",
        str(music / "song1.npy"),
        "--index",
        str(index),
        *more,
        "training.num_workers=0",
    ]


def test_interrupted_search_indexing_keeps_the_finished_blocks_and_the_same_command_continues(music, tmp_path, capsys):
    index = tmp_path / "index"
    args = like_search(music, index, "--top", "2")
    # blocks of 2 files; the --like file is embedded first (call 1), then block 1 (call 2), Ctrl-C in block 2
    rc, err = interrupt(tmp_path, "embed:3,block:2", args, signal.SIGINT)
    assert rc == 130, err[-3000:]
    assert last_line(err) == (
        f"mulap search: interrupted (SIGINT) after 2 of 5 new or changed file(s); the index {index} "
        f"keeps them; run the same command to continue: {same_command(args)}"
    )
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr()
    assert f"index {index}: 5 file(s) (3 added, 0 changed, 0 removed, 2 unchanged)" in out.err  # the kept 2 not redone
    assert out.out.count(f"{music}/song") == 2  # --top 2


def test_search_interrupted_in_its_first_block_says_the_index_is_as_it_was(music, tmp_path):
    index = tmp_path / "index"
    args = like_search(music, index)
    rc, err = interrupt(tmp_path, "embed:2", args, signal.SIGTERM)
    assert rc == 143, err[-3000:]
    assert last_line(err) == (
        f"mulap search: interrupted (SIGTERM) before a new file was indexed; the index {index} is as "
        f"it was; run the same command to continue: {same_command(args)}"
    )


def test_ctrl_c_inside_the_final_index_write_finishes_it_and_says_the_index_keeps_the_files(music, tmp_path, capsys):
    """The last save of the index ran outside the deferred-signal blocks: a Ctrl-C part way through it threw the
    whole run's work away and said nothing of the index. Now the write is finished first, then the one line."""
    index = tmp_path / "index"
    args = like_search(music, index, "--top", "2")
    rc, err = interrupt(tmp_path, "index-write:1", args, signal.SIGINT)
    assert rc == 130, err[-3000:]
    assert last_line(err) == (
        f"mulap search: interrupted (SIGINT) after 5 of 5 new or changed file(s); the index {index} "
        f"keeps them; run the same command to continue: {same_command(args)}"
    )
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no .index.tmp-* / .old-*
    assert sorted(p.name for p in index.iterdir()) == ["chunks.npy", "index.json", "tracks.npy"]
    capsys.readouterr()
    assert main(args) == 0  # the same command: nothing to redo
    out = capsys.readouterr()
    assert f"index {index}: 5 file(s) (0 added, 0 changed, 0 removed, 5 unchanged)" in out.err
    assert out.out.count(f"{music}/song") == 2


def test_ctrl_c_while_embed_writes_its_output_leaves_no_temp_file_and_the_same_command_writes_it(music, tmp_path):
    out = tmp_path / "out" / "out.npz"
    args = ["embed", "random", str(music), "-o", str(out), "training.num_workers=0"]
    rc, err = interrupt(tmp_path, "output", args, signal.SIGINT)
    assert rc == 130, err[-3000:]
    assert last_line(err) == (
        f"mulap embed: interrupted (SIGINT); nothing written to {out} (the output is written only "
        f"at the end); run the same command to start again: {same_command(args)}"
    )
    assert list(out.parent.iterdir()) == []  # no .out.npz.tmp*
    assert main(args) == 0
    assert np.load(out)["track_embeddings"].shape[0] == 5 and [p.name for p in out.parent.iterdir()] == ["out.npz"]
