"""Checkpoint files without training: atomic writes and rotation, choosing what to resume from, the best weights,
the run lock and the metrics history (issue 11, failures 1, 2, 4 and 5 at the file level)."""

import csv
import errno
import io
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch

from mulap.infra import experiment
from mulap.infra.files import WriteError
from mulap.training import checkpoints as ck
from mulap.training.locks import RunLockError, launcher_rank_zero, run_lock
from mulap.training.loggers import HistoryCSVLogger


def full_state(step: int, fill: float = 0.0) -> dict:
    """The shape of a Lightning full checkpoint (what resume needs), small."""
    return {
        "epoch": step // 3,
        "global_step": step,
        "state_dict": {"model.w": torch.full((64, 64), fill + step)},
        "loops": {"fit_loop": {}},
        "optimizer_states": [{"state": {}}],
        "lr_schedulers": [],
        "callbacks": {},
    }


def weights_only(step: int) -> dict:
    return {"epoch": step // 3, "global_step": step, "state_dict": {"model.w": torch.zeros(4)}, "hyper_parameters": {}}


def save(path: Path, obj: dict, mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def truncate_half(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)


def flip_byte_in_tensor_data(path: Path) -> None:
    """Damage a tensor's bytes (not the archive's structure): torch.load would read this without complaint."""
    with zipfile.ZipFile(path) as zf:
        info = next(i for i in zf.infolist() if "/data/" in i.filename and i.file_size > 100)
    with open(path, "r+b") as fh:
        fh.seek(info.header_offset)
        header = fh.read(30)
        start = info.header_offset + 30 + int.from_bytes(header[26:28], "little") + int.from_bytes(header[28:30], "little")
        fh.seek(start + info.file_size // 2)
        b = fh.read(1)
        fh.seek(start + info.file_size // 2)
        fh.write(bytes([b[0] ^ 0xFF]))


# -- atomic writes ---------------------------------------------------------------------------------
def test_write_is_atomic_in_the_destination_folder_and_keeps_the_previous_last(tmp_path, monkeypatch):
    system_tmp = tmp_path / "systmp"
    system_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(system_tmp))
    writer = ck.AtomicCheckpointIO()
    folder = tmp_path / "ckpts"
    writer.save_checkpoint(full_state(3), folder / "last.ckpt")
    writer.save_checkpoint(full_state(6), folder / "last.ckpt")
    assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == 6
    assert torch.load(folder / "last.prev.ckpt", weights_only=True)["global_step"] == 3
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt", "last.prev.ckpt"]  # no temp file left
    assert list(system_tmp.iterdir()) == []  # nothing goes through the system temp folder
    # step.ckpt is replaced, not rotated
    writer.save_checkpoint(full_state(4), folder / "step.ckpt")
    writer.save_checkpoint(full_state(5), folder / "step.ckpt")
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt", "last.prev.ckpt", "step.ckpt"]


def test_a_failed_write_leaves_the_old_file_and_no_partial_one(tmp_path, monkeypatch):
    writer = ck.AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    writer.save_checkpoint(full_state(3), target)
    before = target.read_bytes()
    real_save = torch.save

    def disk_full(obj, f, *a, **k):  # half the bytes reach the disk, then ENOSPC, reported the way torch does
        buf = io.BytesIO()
        real_save(obj, buf)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        f.error = OSError(errno.ENOSPC, "No space left on device")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 5302528 vs 5302420")

    monkeypatch.setattr(ck.torch, "save", disk_full)
    with pytest.raises(WriteError) as err:
        writer.save_checkpoint(full_state(6), target)
    msg = str(err.value)
    assert str(target) in msg and "no space left on device" in msg and "needed" in msg and "\n" not in msg
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


@pytest.mark.parametrize("code,words", [(errno.EROFS, "read-only file system"), (errno.EACCES, "permission denied")])
def test_read_only_and_permission_denied_are_one_line_naming_the_path(tmp_path, monkeypatch, code, words):
    def refuse(obj, f, *a, **k):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(ck.torch, "save", refuse)
    with pytest.raises(WriteError, match=words) as err:
        ck.AtomicCheckpointIO().save_checkpoint(full_state(1), tmp_path / "step.ckpt")
    assert str(tmp_path / "step.ckpt") in str(err.value)
    assert list(tmp_path.iterdir()) == []


# -- choosing the resume state ----------------------------------------------------------------------
def test_resume_skips_a_truncated_newest_and_a_step0_interrupted_and_reads_vN_and_legacy_names(tmp_path):
    """Failure 1 of issue 11: a truncated last.ckpt and an interrupted.ckpt of untrained weights (newest by mtime)
    must not win over intact states; Lightning's -vN copies and earlier runs' epochNNN.ckpt count."""
    folder = tmp_path / "checkpoints"
    save(folder / "last.ckpt", full_state(12), 1000)
    truncate_half(folder / "last.ckpt")
    save(folder / "last-v1.ckpt", full_state(10), 900)
    save(folder / "step.ckpt", full_state(9), 950)
    save(folder / "epoch001.ckpt", full_state(6), 800)
    save(folder / "interrupted.ckpt", full_state(0), 2000)  # newest file, nothing trained
    save(folder / "best.ckpt", weights_only(6), 3000)  # weights only: never a resume state
    save(folder / ".step.ckpt.tmp", full_state(11))  # left by a killed write
    resume = experiment.resume_checkpoint(tmp_path)
    assert resume.path.name == "last-v1.ckpt" and resume.info.global_step == 10
    text = resume.describe()
    assert "last.ckpt: unreadable" in text and "moved to last.ckpt.corrupt" in text
    assert "interrupted.ckpt: global step 0" in text
    assert (folder / "last.ckpt.corrupt").is_file() and not (folder / "last.ckpt").exists()
    assert not (folder / ".step.ckpt.tmp").exists()


def test_resume_checks_crcs_and_falls_back_to_the_previous_state(tmp_path):
    folder = tmp_path / "checkpoints"
    save(folder / "last.ckpt", full_state(8))
    save(folder / "last.prev.ckpt", full_state(4))
    flip_byte_in_tensor_data(folder / "last.ckpt")
    assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == 8  # torch.load does not notice
    resume = experiment.resume_checkpoint(tmp_path)
    assert resume.path.name == "last.prev.ckpt"
    assert "last.ckpt: damaged (CRC mismatch" in resume.describe()


def test_resume_orders_by_training_progress_not_file_time(tmp_path):
    folder = tmp_path / "checkpoints"
    save(folder / "step.ckpt", full_state(7), 100)  # older file, more training
    save(folder / "last.ckpt", full_state(6), 200)
    assert experiment.resume_checkpoint(tmp_path).path.name == "step.ckpt"


def test_nothing_usable_means_a_fresh_start(tmp_path):
    assert experiment.resume_checkpoint(tmp_path) is None
    folder = tmp_path / "checkpoints"
    save(folder / "interrupted.ckpt", full_state(0))
    (folder / "last.ckpt").write_bytes(b"")
    assert experiment.resume_checkpoint(tmp_path) is None
    assert (folder / "last.ckpt.corrupt").exists()


class RunsCode:
    """A pickle payload: loading it with pickle's full power creates `marker` (a stand-in for any code)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_a_checkpoint_that_would_run_code_is_never_loaded(tmp_path):
    """Checkpoints are opened with torch.load(weights_only=True): a pickle that runs code on loading is refused
    (unreadable), passed over for resuming and for the best weights, and its code never runs."""
    marker = tmp_path / "PWNED"
    folder = tmp_path / "checkpoints"
    evil = {**full_state(8), "callbacks": {"x": RunsCode(marker)}}
    torch.load(save(tmp_path / "probe.ckpt", evil), weights_only=False)  # the payload is live: it runs when trusted
    assert marker.exists()
    marker.unlink()
    save(folder / "last.ckpt", evil)
    save(folder / "last.prev.ckpt", full_state(4))
    save(folder / "best.ckpt", {**weights_only(8), "hyper_parameters": {"x": RunsCode(marker)}})
    resume = experiment.resume_checkpoint(tmp_path)
    assert resume.path.name == "last.prev.ckpt" and "last.ckpt: unreadable (UnpicklingError" in resume.describe()
    assert experiment.best_checkpoint(tmp_path).name == "last.prev.ckpt"
    assert not marker.exists()


def test_best_checkpoint_prefers_best_then_legacy_names_then_last(tmp_path):
    folder = tmp_path / "checkpoints"
    assert experiment.best_checkpoint(tmp_path) is None
    save(folder / "last.ckpt", full_state(9))
    assert experiment.best_checkpoint(tmp_path).name == "last.ckpt"
    save(folder / "epoch001.ckpt", full_state(3), 100)
    save(folder / "epoch002-v1.ckpt", full_state(6), 200)
    assert experiment.best_checkpoint(tmp_path).name == "epoch002-v1.ckpt"
    save(folder / "best.ckpt", weights_only(6))
    assert experiment.best_checkpoint(tmp_path).name == "best.ckpt"
    truncate_half(folder / "best.ckpt")
    assert experiment.best_checkpoint(tmp_path).name == "epoch002-v1.ckpt"


@pytest.mark.parametrize("damage,why", [(truncate_half, "unreadable"), (flip_byte_in_tensor_data, "CRC mismatch")])
def test_a_damaged_best_checkpoint_is_passed_over_with_a_warning_naming_the_fallback(tmp_path, caplog, damage, why):
    """Issue 17, 5a: other weights than the best are never used without a word (a flipped bit loads silently)."""
    folder = tmp_path / "checkpoints"
    save(folder / "last.ckpt", full_state(9))
    save(folder / "best.ckpt", {**weights_only(6), "state_dict": {"model.w": torch.zeros(64, 64)}})
    assert experiment.best_checkpoint(tmp_path).name == "best.ckpt" and not caplog.records
    damage(folder / "best.ckpt")
    with caplog.at_level("WARNING", logger="mulap"):
        assert experiment.best_checkpoint(tmp_path).name == "last.ckpt"
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert str(folder) in warning and f"best.ckpt ({why}" in warning and "using last.ckpt instead" in warning
    (folder / "last.ckpt").unlink()
    caplog.clear()
    with caplog.at_level("WARNING", logger="mulap"):
        assert experiment.best_checkpoint(tmp_path) is None
    assert "no intact checkpoint is left" in caplog.records[-1].getMessage()


# -- the run lock -----------------------------------------------------------------------------------
HOLDER = textwrap.dedent("""
    import sys, time
    from mulap.training.locks import run_lock
    with run_lock(sys.argv[1], "experiment 'x'"):
        print("held", flush=True)
        time.sleep(60)
""")


def test_a_second_run_is_refused_naming_the_holder_and_a_dead_holder_is_taken_over(tmp_path, caplog):
    lock = tmp_path / "exp" / "run.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockError) as err:
            with run_lock(lock, "experiment 'x'"):
                pass
        msg = str(err.value)
        assert f"pid {holder.pid}" in msg and "host" in msg and "started" in msg and str(lock) in msg
    finally:
        holder.kill()
        holder.wait()
    # killed (-9): its record stays in the file, the kernel dropped its flock
    assert json.loads(lock.read_text())["pid"] == holder.pid
    with run_lock(lock, "experiment 'x'"):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert "stale lock" in caplog.text and str(holder.pid) in caplog.text
    assert not lock.exists()  # released


def test_a_record_with_a_dead_pid_is_stale_and_one_from_another_host_is_not(tmp_path):
    lock = tmp_path / "run.lock"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    lock.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "started": "then"}))
    with run_lock(lock, "x"):
        pass
    lock.write_text(json.dumps({"pid": 1, "host": "another-host", "started": "then"}))
    with pytest.raises(RunLockError, match="another-host.*delete the file"):
        with run_lock(lock, "x"):
            pass


@pytest.mark.parametrize(
    "env,owner",
    [
        ({}, True),
        ({"LOCAL_RANK": "1"}, False),
        ({"RANK": "0", "LOCAL_RANK": "0"}, True),
        ({"NODE_RANK": "1"}, False),
        ({"SLURM_PROCID": "3"}, False),
    ],
)
def test_only_the_first_process_of_a_ddp_run_owns_the_experiment(monkeypatch, env, owner):
    for var in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert launcher_rank_zero() is owner


# -- metrics history ----------------------------------------------------------------------------------
def _write_rows(root: Path, rows: list[dict]) -> None:
    logger = HistoryCSVLogger(root, name="", version="csv")
    for r in rows:
        logger.log_metrics(r, step=int(r.pop("_step")))
    logger.save()


def test_metrics_csv_is_appended_across_runs_and_widened_atomically(tmp_path):
    _write_rows(tmp_path, [{"_step": 0, "train/loss": 1.0}, {"_step": 1, "train/loss": 0.9}])
    _write_rows(tmp_path, [{"_step": 2, "train/loss": 0.8}, {"_step": 2, "val/loss": 0.7}])  # a resumed run, a new column
    with open(tmp_path / "csv" / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["step"] for r in rows] == ["0", "1", "2", "2"]
    assert [r["train/loss"] for r in rows] == ["1.0", "0.9", "0.8", ""] and rows[3]["val/loss"] == "0.7"
    assert not list((tmp_path / "csv").glob(".*tmp"))


def test_a_row_cut_by_a_kill_is_dropped_not_glued_to_the_next(tmp_path, caplog):
    _write_rows(tmp_path, [{"_step": 0, "train/loss": 1.0}])
    path = tmp_path / "csv" / "metrics.csv"
    with open(path, "a") as fh:
        fh.write("1,0.9")  # no newline: the process died here
    _write_rows(tmp_path, [{"_step": 1, "train/loss": 0.95}])
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows == [["step", "train/loss"], ["0", "1.0"], ["1", "0.95"]]
    assert "partial last row" in caplog.text
