"""Extraction over 2 processes (Lightning's predict loop, spawned on CPU) gives exactly the embeddings of
one process, merged in input order: `mulap embed ... training.devices=2` as a plain command, and the
frozen-probe embedding cache."""

import functools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from mulap.cli import main
from mulap.inference.cache import cached_embeddings, read_cached
from mulap.inference.extract import extract
from mulap.models.musicnn import Musicnn, MusicnnConfig
from mulap.training.extract_ddp import extract_distributed
from tests.helpers import make_audiocaption

ROOT = Path(__file__).resolve().parents[2]


def test_embed_command_on_two_processes_equals_one(tmp_path, capsys):
    audio = make_audiocaption(tmp_path / "ac", n_train=6, n_val=1) / "audio"
    (audio / "zz_broken.wav").write_bytes(b"RIFF not really")  # one failure, reported once, by rank 1
    one, two = tmp_path / "one.npz", tmp_path / "two.npz"
    common = ["training.device=cpu", "training.num_workers=0", "env.seed=3"]
    assert main(["embed", "random", str(audio), "-o", str(one), *common]) == 0
    assert "1 failed" in capsys.readouterr().out
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "mulap", "embed", "random", str(audio), "-o", str(two), *common, "training.devices=2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "1 failed" in proc.stdout and "MEMBER: 2/2" in proc.stderr
    a, b = np.load(one), np.load(two)
    assert a.files == b.files and len(a["files"]) == 8 and "zz_broken" not in " ".join(a["files"])
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert not list(tmp_path.glob(".two.npz.parts*"))


def test_embedding_cache_on_two_processes_equals_one(tmp_path):
    root = make_audiocaption(tmp_path / "ac", n_train=5, n_val=1)
    files = sorted((root / "audio").glob("clip*"))
    torch.manual_seed(0)
    model = Musicnn(MusicnnConfig.from_dict({"timbral_channels": 8, "temporal_channels": 4, "backend_channels": 8}))
    feats, track, failures = extract(model, files, num_workers=0, progress=False)
    manifest = root / "dataset_train.json"
    ids = [f.stem for f in files]
    emb = cached_embeddings(
        model,
        ids,
        files,
        manifest,
        tmp_path / "cache",
        num_workers=0,
        progress=False,
        extractor=functools.partial(extract_distributed, processes={"devices": 2, "num_nodes": 1, "strategy": "auto"}),
    )
    assert emb.computed and failures == []
    np.testing.assert_array_equal(emb.features, feats)
    np.testing.assert_array_equal(emb.track, track)
    again = read_cached(tmp_path / "cache", emb.key)  # the same entry a single process writes and reads
    np.testing.assert_array_equal(again.features, feats)
    assert again.ids == ids
