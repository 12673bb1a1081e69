"""`mulap embed` as a command: every format libsndfile reads, files skipped by suffix counted, the output
name checked before any work, float32 parquet equal to the npz."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch

from mulap.audio.scan import AUDIO_SUFFIXES, list_audio
from mulap.cli import main
from tests.helpers import tone


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """The same tone as aiff, opus (48 kHz), caf, au and wav, plus files that are not audio."""
    root = tmp_path_factory.mktemp("formats")
    wave = tone(3.5, 220.0)
    sf.write(root / "a.aiff", wave, 16000)
    sf.write(
        root / "b.opus",
        np.interp(np.arange(0, len(wave), 1 / 3), np.arange(len(wave)), wave).astype(np.float32),
        48000,
        format="OGG",
        subtype="OPUS",
    )
    sf.write(root / "c.caf", wave, 16000)
    (root / "sub").mkdir()
    sf.write(root / "sub" / "d.au", wave, 16000)
    sf.write(root / "e.WAV", wave, 16000)
    (root / "notes.txt").write_text("x")
    (root / "cover.jpg").write_bytes(b"\xff\xd8")
    (root / "README").write_text("x")
    (root / ".hidden.wav").write_bytes(b"")
    return root


def test_libsndfile_formats_are_picked_up(folder, caplog):
    assert {".aiff", ".aif", ".opus", ".caf", ".au", ".flac", ".ogg", ".mp3", ".wav", ".npy"} <= set(AUDIO_SUFFIXES)
    assert ".mat" not in AUDIO_SUFFIXES and ".raw" not in AUDIO_SUFFIXES
    with caplog.at_level(logging.INFO, logger="mulap.audio.scan"):
        files = list_audio([str(folder)])
    assert [f.name for f in files] == ["a.aiff", "b.opus", "c.caf", "e.WAV", "d.au"]
    assert "skipped 3 file(s) that are not audio by their suffix (1 .jpg, 1 .txt, 1 no suffix)" in caplog.text


def test_embed_all_formats_to_float32_parquet_equal_to_npz(folder, tmp_path):
    npz, parquet = tmp_path / "e.npz", tmp_path / "e.parquet"
    for out in (npz, parquet):
        assert main(["embed", "random", str(folder), "-o", str(out), "training.num_workers=0"]) == 0
    d = np.load(npz)
    assert d["track_embeddings"].dtype == np.float32 and d["track_embeddings"].shape == (5, 1506)
    # the same tone in five containers (opus is lossy at 48 kHz): nearly the same embedding
    lossless = d["track_embeddings"][[0, 2, 3, 4]]
    np.testing.assert_allclose(lossless, lossless[:1].repeat(4, 0), rtol=1e-4, atol=1e-4)
    table = pq.read_table(parquet)
    assert str(table.schema.field("embedding").type) == "fixed_size_list<element: float>[1506]"
    rows = table.to_pydict()
    tracks = np.array([e for e, lvl in zip(rows["embedding"], rows["level"]) if lvl == "track"], dtype=np.float32)
    np.testing.assert_array_equal(tracks, d["track_embeddings"])
    chunks = np.array([e for e, lvl in zip(rows["embedding"], rows["level"]) if lvl == "chunk"], dtype=np.float32)
    np.testing.assert_array_equal(chunks, d["chunk_embeddings"])
    assert rows["chunk"][:2] == [-1, 0] and rows["file"][0] == str(folder / "a.aiff")


def test_output_name_is_checked_before_any_work(folder, tmp_path, capsys, monkeypatch):
    import mulap.inference.api

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the output name was checked")

    monkeypatch.setattr(mulap.inference.api, "load", no_model)
    assert main(["embed", "supervised_mtt", str(folder), "-o", str(tmp_path / "emb.csv")]) == 2
    assert "output " in capsys.readouterr().err and not (tmp_path / "emb.csv").exists()
    (tmp_path / "dir.npz").mkdir()
    assert main(["embed", "supervised_mtt", str(folder), "-o", str(tmp_path / "dir.npz")]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["embed", "supervised_mtt", str(tmp_path / "nothing_here"), "-o", str(tmp_path / "e.npz")]) == 2
    assert "no such audio file or folder" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_the_machine_lacks_is_one_line(folder, tmp_path, capsys):
    assert main(["embed", "random", str(folder), "-o", str(tmp_path / "e.npz"), "training.device=gpu"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "mulap embed: error: training.device=gpu but torch sees no CUDA device (use training.device=auto or cpu)"
    )


# -- a full disk while the output is written (issue 17, 4e) ---------------------------------------------
def _fills_the_disk(real, path_arg: int):
    """`real` (np.savez / pq.write_table) on a disk that fills up half way: part of the file, then ENOSPC, as on a
    real full disk (numpy: OSError 28 from write; pyarrow: OSError 28 'Error writing bytes to file')."""

    def write(*args, **kwargs):
        real(*args, **kwargs)
        path = Path(args[path_arg])
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    return write


@pytest.fixture
def one_file(tmp_path):
    sf.write(tmp_path / "a.wav", tone(3.5, 220.0), 16000)
    return tmp_path / "a.wav"


@pytest.mark.parametrize("suffix", [".npz", ".parquet"])
def test_a_full_disk_while_writing_the_output_is_one_line_and_leaves_no_temp_file(
    one_file, tmp_path, capsys, monkeypatch, suffix
):
    import pyarrow.parquet

    if suffix == ".npz":
        monkeypatch.setattr(np, "savez", _fills_the_disk(np.savez, 0))
    else:
        monkeypatch.setattr(pyarrow.parquet, "write_table", _fills_the_disk(pyarrow.parquet.write_table, 1))
    out = tmp_path / "out" / f"emb{suffix}"
    assert main(["embed", "random", str(one_file), "-o", str(out), "training.num_workers=0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"mulap embed: error: cannot write {out}: no space left on device (") and "needed)" in err[-1]
    assert not [line for line in err if "Traceback" in line]
    assert list(out.parent.iterdir()) == []  # neither the output nor a temp file


def test_a_real_full_disk_while_writing_the_output(one_file, tmp_path, capsys):
    """The same on a tmpfs filled up (root only; skipped elsewhere)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True).returncode != 0
    ):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        with open(disk / "filler", "wb", buffering=0) as fh:
            with contextlib.suppress(OSError):
                while True:
                    fh.write(b"x" * 4096)
        out = disk / "emb.npz"
        assert main(["embed", "random", str(one_file), "-o", str(out), "training.num_workers=0"]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith(f"mulap embed: error: cannot write {out}: no space left on device (0 B free, about ")
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_when_no_file_can_be_embedded_nothing_is_written_and_the_command_fails(tmp_path, capsys):
    (tmp_path / "music").mkdir()
    (tmp_path / "music" / "a.wav").write_text("<html>not audio</html>")
    (tmp_path / "music" / "b.flac").write_bytes(b"")
    out = tmp_path / "emb.npz"
    assert main(["embed", "random", str(tmp_path / "music"), "-o", str(out), "training.num_workers=0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"mulap embed: error: {tmp_path / 'music' / 'a.wav'}: not audio: a text file (starts with "
        f"'<html>not audio</html>'); none of the 2 file(s) could be embedded; nothing written to {out}"
    ), err
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "music"]
