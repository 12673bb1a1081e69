"""The seed's default run, `cd mulap/scripts && python pretrain.py`: default paths resolve against the project
root (not the current folder), and the example corpus is built there on first use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mulap.cli import main
from mulap.demo.example_corpus import default_data_dir, ensure_pretraining_corpus
from mulap.infra.config import load_config
from mulap.infra.paths import project_root
from tests.helpers import TINY_MODEL

ROOT = Path(__file__).resolve().parents[2]
QUICK = [
    "training.epochs=1",
    "training.limit_train_batches=1",
    "training.limit_val_batches=1",
    "training.batch_size=2",
    "training.num_workers=0",
    "dataset_config.max_len_seconds=3",
    "model_config.audio.max_chunks=1",
    *TINY_MODEL,
]


def _env(**extra) -> dict:
    env = dict(os.environ)
    env.update(extra)
    return env


def test_project_root_and_default_paths(tmp_path, monkeypatch):
    assert project_root() == ROOT  # the clone this package runs from (pyproject.toml / configs link)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MULAP_ROOT", raising=False)
    cfg = load_config(None, [])
    assert cfg.env.save_dir == str(ROOT / "save") and cfg.env.data_root == str(ROOT / "data")
    assert cfg.dataset_config.data_dir == str(ROOT / "data" / "datasets" / "audiocaption")
    # what the user writes means what a shell means: relative to the current folder
    cfg = load_config(None, ["env.save_dir=mine", "dataset_config.data_dir=corpus"])
    assert cfg.env.save_dir == "mine" and cfg.dataset_config.data_dir == "corpus"
    assert cfg.env.data_root == str(ROOT / "data")
    user = tmp_path / "user.yaml"
    user.write_text("env:\n  data_root: elsewhere\n")
    assert load_config(user, []).env.data_root == "elsewhere"
    monkeypatch.setenv("MULAP_ROOT", str(tmp_path / "home"))
    assert load_config(None, []).env.save_dir == str(tmp_path / "home" / "save")


def test_a_missing_corpus_that_is_not_the_default_stops_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MULAP_ROOT", str(tmp_path / "home"))
    missing = tmp_path / "nowhere"
    assert main(["pretrain", "--pretrain_id", "x", f"dataset_config.data_dir={missing}", *QUICK]) == 2
    err = capsys.readouterr().err
    assert f"{missing}: no pre-training corpus (dataset_train.json, dataset_val.json missing)" in err
    assert not missing.exists() and not (tmp_path / "home" / "save").exists()  # nothing built, Lightning never started
    # a default folder that already holds files is the user's: never overwritten, an error instead
    occupied = default_data_dir()
    occupied.mkdir(parents=True)
    (occupied / "notes.txt").write_text("mine")
    cfg = load_config(None, [])
    try:
        ensure_pretraining_corpus(cfg, progress=False)
        raise AssertionError("expected an error")
    except ValueError as exc:
        assert str(occupied) in str(exc)
    assert (occupied / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_seed_command_builds_the_example_corpus_and_trains(tmp_path):
    home = tmp_path / "home"
    cmd = [sys.executable, "pretrain.py", "--pretrain_id", "seed_default", *QUICK]
    out = subprocess.run(
        cmd, cwd=ROOT / "mulap" / "scripts", capture_output=True, text=True, timeout=600, env=_env(MULAP_ROOT=str(home))
    )
    assert out.returncode == 0, out.stderr
    corpus = home / "data" / "datasets" / "audiocaption"
    train = json.loads((corpus / "dataset_train.json").read_text())
    assert len(train) == 15 and all((corpus / "audio" / r["audio_path"]).is_file() for r in train)
    assert "holds no corpus: building the example corpus there" in out.stderr
    exp = home / "save" / "experiments" / "seed_default"
    assert (exp / "backbone.safetensors").is_file() and (exp / "config.yaml").is_file()
    assert not (ROOT / "mulap" / "scripts" / "save").exists() and not (ROOT / "mulap" / "scripts" / "data").exists()
    assert f"experiment: {exp}" in out.stdout
    # the console of a real Lightning run: every log line once, no tips or known chatter
    logged = [line for line in out.stderr.splitlines() if line.startswith(("INFO", "WARNING"))]
    assert logged and len(logged) == len(set(logged)), logged
    for noise in ("Tip", "LeafSpec", "ckpt_path=None", "no last checkpoint", "TPU available"):
        assert noise not in out.stderr, noise

    # a bare `mulap pretrain` from any folder finds the same corpus (not rebuilt) and the same save/
    again = subprocess.run(
        [sys.executable, "-m", "mulap", "pretrain", "--pretrain_id", "bare", *QUICK],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(MULAP_ROOT=str(home)),
    )
    assert again.returncode == 0, again.stderr
    assert "building the example corpus" not in again.stderr
    assert (home / "save" / "experiments" / "bare" / "backbone.safetensors").is_file()


def test_other_ranks_wait_for_rank_zero_to_build(tmp_path, monkeypatch):
    """Processes started together (torchrun): only rank 0 builds the example corpus; the others wait for it."""
    import threading

    from mulap.demo import example_corpus

    monkeypatch.setenv("MULAP_ROOT", str(tmp_path))
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr(
        example_corpus, "build_example_corpus", lambda *a, **k: (_ for _ in ()).throw(AssertionError("rank 1 built"))
    )
    target = default_data_dir()

    def rank_zero_builds():
        staging = tmp_path / "staging"
        staging.mkdir()
        for name in ("dataset_train.json", "dataset_val.json"):
            (staging / name).write_text("[]")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(target)

    timer = threading.Timer(0.5, rank_zero_builds)
    timer.start()
    try:
        assert ensure_pretraining_corpus(load_config(None, []), progress=False) == target
    finally:
        timer.cancel()
    with pytest.raises(ValueError, match="waited 0 s for rank 0"):
        example_corpus._wait_for(tmp_path / "never", timeout_s=0.1)
