"""Issue 11, failures 1-6, each as reproduced there, on tiny in-process pre-training runs (8 clips, 4 steps an epoch):
a corrupt newest checkpoint, writes that fail (disk full on a real tmpfs, read-only, injected ENOSPC), two runs on
one experiment, resume history and data order, and config / dataset mistakes refused before anything is written."""

import contextlib
import csv
import errno
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning as L
import pytest
import torch

from mulap.cli import main
from mulap.infra import experiment
from mulap.infra.config import load_config
from mulap.training import checkpoints as ck
from mulap.training.locks import RunLockError
from mulap.training.pretrain import run_pretraining
from tests.helpers import TINY_MODEL, make_tone_corpus

SETTINGS = [
    "training.batch_size=2",
    "training.num_workers=0",
    "training.progress_bar=false",
    "training.lr=3e-3",
    "training.warmup_ratio=0.0",
    "training.deterministic=true",
    "training.log_every_n_steps=1",
    "dataset_config.max_len_seconds=6",
    "model_config.audio.max_chunks=2",
    *TINY_MODEL,
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_tone_corpus(tmp_path_factory.mktemp("tones"))


def args(corpus: Path, save: Path, pid: str, *extra: str) -> list[str]:
    return ["pretrain", "--pretrain_id", pid, f"env.save_dir={save}", f"dataset_config.data_dir={corpus}", *SETTINGS, *extra]


def cfg_for(corpus: Path, save: Path, *extra: str):
    return load_config(None, [f"env.save_dir={save}", f"dataset_config.data_dir={corpus}", *SETTINGS, *extra])


def step_of(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


class Record(L.Callback):
    """Records (epoch, batch, step, clips) of every training step; raises at `fail_at` (a global step)."""

    def __init__(self, fail_at: int | None = None):
        self.seen, self.fail_at = [], fail_at

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == self.fail_at:
            raise RuntimeError("injected failure")
        self.seen.append(
            (
                trainer.current_epoch,
                batch_idx,
                trainer.global_step,
                tuple(batch["audio_ids"]),
                tuple(batch["captions"]),
                hashlib.sha1(batch["waveforms"].numpy().tobytes()).hexdigest(),
            )
        )


# -- 1. a corrupt newest checkpoint ----------------------------------------------------------------------
def test_truncated_last_ckpt_resumes_from_the_newest_intact_state(corpus, tmp_path, capsys):
    exp = tmp_path / "experiments" / "c"
    assert main(args(corpus, tmp_path, "c", "training.epochs=1", "training.checkpoint_every_n_steps=1")) == 0
    assert step_of(exp / "checkpoints" / "last.ckpt") == 4 and step_of(exp / "checkpoints" / "step.ckpt") == 3
    with open(exp / "checkpoints" / "last.ckpt", "r+b") as fh:
        fh.truncate((exp / "checkpoints" / "last.ckpt").stat().st_size // 2)
    assert main(args(corpus, tmp_path, "c", "training.epochs=2")) == 0
    resume_line = (exp / "runs.log").read_text().splitlines()[-2]
    assert "resume from checkpoints/step.ckpt (global step 3)" in resume_line
    assert "last.ckpt: unreadable" in resume_line and "moved to last.ckpt.corrupt" in resume_line
    assert step_of(exp / "checkpoints" / "last.ckpt") == 8
    assert not (exp / "checkpoints" / "interrupted.ckpt").exists()
    best = torch.load(experiment.best_checkpoint(exp), map_location="cpu", weights_only=True)
    assert best.keys() >= {"state_dict", "epoch", "global_step", "hyper_parameters"} and "optimizer_states" not in best
    assert all(k.startswith("model.") for k in best["state_dict"])


def test_a_run_that_fails_before_its_first_step_writes_no_checkpoint(corpus, tmp_path):
    with pytest.raises(RuntimeError, match="injected"):
        run_pretraining(cfg_for(corpus, tmp_path, "training.epochs=1"), "f", extra_callbacks=[Record(fail_at=0)])
    exp = tmp_path / "experiments" / "f"
    assert not list(exp.glob("checkpoints/*"))
    assert "stopped at global step 0: RuntimeError: injected failure" in (exp / "runs.log").read_text()
    assert not (exp / "run.lock").exists()
    run_pretraining(cfg_for(corpus, tmp_path, "training.epochs=1"), "f")  # the next run starts afresh
    assert " start;" in (exp / "runs.log").read_text().splitlines()[-2]


def test_interrupted_ckpt_holds_what_was_trained_and_never_replaces_a_newer_state(corpus, tmp_path):
    run_pretraining(cfg_for(corpus, tmp_path, "training.epochs=1"), "i")
    ckpts = tmp_path / "experiments" / "i" / "checkpoints"
    last = (ckpts / "last.ckpt").read_bytes()
    # fails at the first batch after resuming: nothing new trained, so no interrupted.ckpt
    with pytest.raises(RuntimeError):
        run_pretraining(cfg_for(corpus, tmp_path, "training.epochs=2"), "i", extra_callbacks=[Record(fail_at=4)])
    assert not (ckpts / "interrupted.ckpt").exists() and (ckpts / "last.ckpt").read_bytes() == last
    # fails after two more steps: interrupted.ckpt holds step 6, and the next run resumes from it
    with pytest.raises(RuntimeError):
        run_pretraining(cfg_for(corpus, tmp_path, "training.epochs=2"), "i", extra_callbacks=[Record(fail_at=6)])
    assert step_of(ckpts / "interrupted.ckpt") == 6 and (ckpts / "last.ckpt").read_bytes() == last
    run_pretraining(cfg_for(corpus, tmp_path, "training.epochs=2"), "i")
    assert "resume from checkpoints/interrupted.ckpt (global step 6)" in (ckpts.parent / "runs.log").read_text()
    assert step_of(ckpts / "last.ckpt") == 8 and step_of(ckpts / "last.prev.ckpt") == 4
    assert not (ckpts / "interrupted.ckpt").exists()  # superseded by last.ckpt


# -- 5. resume keeps the history and the epoch's order ----------------------------------------------------
@pytest.fixture(scope="module")
def phrased_corpus(corpus, tmp_path_factory):
    """The tone corpus with three phrasings per training clip (the audiocaption `captions` list)."""
    root = tmp_path_factory.mktemp("phrased") / "tones"
    shutil.copytree(corpus, root)
    path = root / "dataset_train.json"
    recs = json.loads(path.read_text())
    for r in recs:
        r["captions"] = [r["caption"], f"{r['caption']}, again", f"once more: {r['caption']}"]
    path.write_text(json.dumps(recs))
    return root


@pytest.mark.parametrize("variant", ["plain", "augmented_and_phrased"])
def test_mid_epoch_resume_replays_the_uninterrupted_run_exactly(corpus, phrased_corpus, tmp_path, variant):
    # augmentation and phrasings are drawn per (seed, epoch, index) too: a resumed run sees the same audio and captions
    extra = ["training.epochs=2"] + (["dataset_config.augment.enabled=true"] if variant != "plain" else [])
    data = corpus if variant == "plain" else phrased_corpus
    ref = Record()
    run_pretraining(cfg_for(data, tmp_path, *extra), "ref", extra_callbacks=[ref])
    first, second = Record(fail_at=5), Record()
    with pytest.raises(RuntimeError):
        run_pretraining(cfg_for(data, tmp_path, *extra), "cut", extra_callbacks=[first])
    run_pretraining(cfg_for(data, tmp_path, *extra), "cut", extra_callbacks=[second])
    assert second.seen[0][:3] == (1, 1, 5)  # epoch 1, its second batch
    assert first.seen + second.seen == ref.seen  # same clips, captions and audio in the same order, batch by batch
    if variant != "plain":  # the phrasings did change from epoch to epoch
        by_epoch = [{c for e, *_, caps, _ in ref.seen if e == epoch for c in caps} for epoch in (0, 1)]
        assert by_epoch[0] != by_epoch[1]
    a = torch.load(tmp_path / "experiments/ref/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "experiments/cut/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the logs keep both runs: every training step of both is in metrics.csv, two TensorBoard event files
    exp = tmp_path / "experiments" / "cut"
    with open(exp / "logs" / "csv" / "metrics.csv", newline="") as fh:
        steps = {int(r["step"]) for r in csv.DictReader(fh) if r.get("train/loss_step")}
    assert steps == set(range(8))
    assert len(list((exp / "logs" / "tb").glob("events.*"))) == 2


# -- 6. mistakes refused before anything is written -------------------------------------------------------
@pytest.mark.parametrize(
    "override,words",
    [
        ("training.epochs=0", "training.epochs must be greater than or equal to 1"),
        ("training.epochs=abc", "training.epochs must be a valid integer"),
        ("training.lr=nan", "training.lr must be a finite number"),
        ("training.batch_size=-4", "training.batch_size must be greater than or equal to 1"),
        ("training.precision=16", "training.precision must be '32-true', 'bf16-mixed'"),
    ],
)
def test_bad_config_values_leave_nothing_behind(corpus, tmp_path, capsys, override, words):
    assert main(args(corpus, tmp_path, "bad", override)) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1
    assert not (tmp_path / "experiments").exists()


def test_a_dataset_that_fails_validation_leaves_nothing_behind(corpus, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(corpus, broken)
    (broken / "audio" / "tone001.npy").unlink()
    save = tmp_path / "save"
    assert main(args(broken, save, "bad")) == 2
    err = capsys.readouterr().err
    assert "tone001.npy" in err and "dataset_train.json" in err
    assert not save.exists()


# -- issue 17, 5: what else a user can get wrong is one line, and nothing is written -----------------------
def test_an_audio_file_that_fails_in_a_loader_worker_is_one_line(corpus, tmp_path, capsys):
    """A clip that passes the split's check but cannot be decoded, read by a data-loader worker: torch re-raises
    the worker's DatasetError with the worker's whole traceback in its message; the CLI says the message alone."""
    broken = tmp_path / "broken"
    shutil.copytree(corpus, broken)
    (broken / "audio" / "tone003.npy").write_bytes((corpus / "audio" / "tone003.npy").read_bytes()[:300])
    save = tmp_path / "save"
    assert main(args(broken, save, "w", "training.num_workers=2", "training.epochs=1")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("mulap pretrain: error: record audio_id 'tone003': ") and "tone003.npy: truncated" in err[-1]
    assert not [line for line in err if "Traceback" in line or "DataLoader worker" in line]
    assert (
        (save / "experiments" / "w" / "runs.log")
        .read_text()
        .splitlines()[-1]
        .split(" ", 2)[2]
        .startswith("stopped at global step 0: DatasetError: record audio_id 'tone003'")
    )


def test_a_yaml_error_is_one_line(corpus, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("training: [1, 2\n")
    assert main(["pretrain", "--config", str(bad), "--pretrain_id", "y", f"env.save_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mulap pretrain: error: {bad}: not valid YAML") and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "tagged",
    [
        'training: !!python/object/apply:os.system ["touch {marker}"]\n',
        "training:\n  epochs: !!python/name:os.system\n",
        "training: !!python/object/new:pathlib.Path ['{marker}']\n",
    ],
)
def test_yaml_tags_that_would_run_code_are_refused(tmp_path, capsys, tagged):
    """Config files are read with a safe loader (OmegaConf's, on yaml.SafeLoader): a Python tag is one line naming
    the file, and nothing it names runs."""
    marker = tmp_path / "PWNED"
    bad = tmp_path / "tagged.yaml"
    bad.write_text(tagged.format(marker=marker))
    assert main(["pretrain", "--config", str(bad), "--pretrain_id", "t", f"env.save_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mulap pretrain: error: {bad}: not valid YAML") and "python/" in err
    assert len(err.splitlines()) == 1
    assert not marker.exists() and not (tmp_path / "experiments").exists()


@pytest.mark.parametrize("pid", ["../elsewhere", "a/b", ".."])
def test_a_pretrain_id_that_is_a_path_is_refused(corpus, tmp_path, capsys, pid):
    save = tmp_path / "save"
    assert main(args(corpus, save, pid, "training.epochs=1")) == 2
    assert capsys.readouterr().err.strip() == (
        f"mulap pretrain: error: pretrain_id {pid!r}: use a plain name (letters, digits, '-', '_', '.'), not a path"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_the_machine_lacks_is_refused_before_a_run_is_recorded(corpus, tmp_path, capsys):
    assert main(args(corpus, tmp_path, "gpu", "training.device=gpu")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mulap pretrain: error: training.device/devices/strategy/precision: ") and len(err.splitlines()) == 1
    assert not (tmp_path / "experiments" / "gpu" / "runs.log").exists()


# -- 4. one run per experiment ------------------------------------------------------------------------------
HOLDER = textwrap.dedent("""
    import sys, time
    from mulap.training.locks import run_lock
    with run_lock(sys.argv[1], "x"):
        print("held", flush=True)
        time.sleep(120)
""")


@contextlib.contextmanager
def held(lock: Path):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_a_second_pretraining_on_a_running_experiment_is_refused(corpus, tmp_path, capsys):
    assert main(args(corpus, tmp_path, "busy", "training.epochs=1")) == 0
    exp = tmp_path / "experiments" / "busy"
    before = {p: p.read_bytes() for p in (exp / "runs.log", exp / "logs/csv/metrics.csv", exp / "checkpoints/last.ckpt")}
    capsys.readouterr()
    with held(exp / "run.lock") as pid:
        assert main(args(corpus, tmp_path, "busy", "training.epochs=2")) == 2
    err = capsys.readouterr().err.strip()
    assert f"experiment 'busy' is in use by another run: pid {pid}" in err and len(err.splitlines()) == 1
    assert all(p.read_bytes() == data for p, data in before.items())


def test_a_second_downstream_run_on_the_same_id_is_refused(demo_world, tmp_path):
    from mulap.data.prepare import prepare
    from mulap.training.downstream import run_downstream

    prepare("nsynth_clf", demo_world / "raw" / "nsynth", tmp_path / "data" / "datasets" / "nsynth", num_workers=1, progress=False)
    over = [f"env.data_root={tmp_path / 'data'}", f"env.save_dir={tmp_path}", "training.num_workers=0", "downstream.epochs=1"]
    out = tmp_path / "experiments" / "random" / "downstream" / "probe"
    with held(out / "run.lock") as pid:
        with pytest.raises(RunLockError, match=f"pid {pid}"):
            run_downstream("random", "nsynth_clf", "probe", overrides=over, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["run.lock"]  # nothing written but the (killed) holder's lock
    run_downstream("random", "nsynth_clf", "probe", overrides=over, progress=False)
    assert (out / "probe.safetensors").is_file() and not (out / "run.lock").exists()


# -- 3. disk full, read-only ------------------------------------------------------------------------------
def test_injected_disk_full_is_one_line_and_the_next_run_resumes(corpus, tmp_path, capsys, monkeypatch):
    real_save, calls = torch.save, {"n": 0}

    def fills_the_disk(obj, f, *a, **k):  # the 3rd checkpoint write runs out of space half way
        calls["n"] += 1
        if calls["n"] != 3:
            return real_save(obj, f, *a, **k)
        buf = io.BytesIO()
        real_save(obj, buf)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck.torch, "save", fills_the_disk)
    cli = args(corpus, tmp_path, "full", "training.epochs=1", "training.checkpoint_every_n_steps=1")
    assert main(cli) == 2
    err = capsys.readouterr().err.strip()
    ckpts = tmp_path / "experiments" / "full" / "checkpoints"
    assert f"cannot write {ckpts / 'step.ckpt'}: no space left on device" in err and "needed" in err
    assert len(err.splitlines()) == 1
    assert sorted(p.name for p in ckpts.iterdir()) == ["step.ckpt"] and step_of(ckpts / "step.ckpt") == 2
    monkeypatch.setattr(ck.torch, "save", real_save)
    assert main(cli) == 0
    assert "resume from checkpoints/step.ckpt (global step 2)" in (ckpts.parent / "runs.log").read_text()


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 20 MB tmpfs (a real full disk); skipped where mounting is not allowed."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mnt)], capture_output=True).returncode != 0
    ):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_real_disk_full_then_read_only_then_freed(corpus, small_tmpfs, capsys):
    """A 13.6 MB full state on a 20 MB tmpfs: the second step.ckpt does not fit next to the first."""
    cli = args(corpus, small_tmpfs, "disk", "training.epochs=1", "training.checkpoint_every_n_steps=1")
    assert main(cli) == 2
    err = capsys.readouterr().err.strip()
    ckpts = small_tmpfs / "experiments" / "disk" / "checkpoints"
    assert "no space left on device" in err and str(ckpts) in err and "MB free, about 1" in err and len(err.splitlines()) == 1
    left = sorted(p.name for p in ckpts.iterdir())
    assert left == ["step.ckpt"] and step_of(ckpts / "step.ckpt") == 1  # the intact first one; no partial, no interrupted
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    assert main(cli) == 2
    err = capsys.readouterr().err.strip()
    assert "read-only file system" in err and str(small_tmpfs) in err and len(err.splitlines()) == 1
    subprocess.run(["mount", "-o", "remount,rw,size=200m", str(small_tmpfs)], check=True)  # space freed
    assert main(cli) == 0
    assert "resume from checkpoints/step.ckpt (global step 1)" in (ckpts.parent / "runs.log").read_text()
    assert step_of(ckpts / "last.ckpt") == 4
