"""The folder scan (mulap.audio.scan): hidden and mulap-written folders are never music; m4a/AAC are read with
PyAV and counted at WARNING without it."""

from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pytest
import soundfile as sf

from mulap.audio.scan import audio_suffixes, list_audio, scan_folder
from tests.helpers import tone, write_with_pyav


def _wav(path, seconds=1.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(seconds, 220.0), 16000)
    return path


def _npy(path, shape=(4, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.zeros(shape, np.float32))


def test_hidden_and_mulap_folders_are_never_music(tmp_path, caplog):
    music = tmp_path / "music"
    want = [_wav(music / "a.wav"), _wav(music / "sub" / "b.wav")]
    _wav(music / ".hidden" / "c.wav")  # a hidden folder
    for leftover in (".mulap-index", ".mulap-index.tmp-1a2b3c4d", ".mulap-index.old-5e6f7a8b", ".x.npz.parts"):
        _npy(music / leftover / "chunks.npy")  # mulap's own folders (all hidden)
    named = music / "my-index"  # an index under a visible name (--index)
    _npy(named / "tracks.npy")
    _npy(named / "chunks.npy")
    (named / "index.json").write_text(json.dumps({"format": "mulap-index-1", "files": []}, indent=2))
    marked = music / "half-index"  # index.json alone, but mulap's
    marked.mkdir()
    (marked / "index.json").write_text(json.dumps({"format": "mulap-index-1", "files": []}, indent=2))
    _npy(marked / "x.npy")
    entry = music / "save" / "cache" / "embeddings" / "0123abcd"  # an embedding cache entry
    _npy(entry / "features.npy")
    _npy(entry / "track.npy", (4,))
    (entry / "meta.json").write_text("{}")
    (music / "notes.txt").write_text("x")
    with caplog.at_level(logging.DEBUG, logger="mulap.audio.scan"):
        assert list_audio([music]) == want
    assert "skipped 1 file(s) that are not audio by their suffix (1 .txt)" in caplog.text
    found = scan_folder(music)
    assert sorted(what for _, what in found.mulap_folders) == ["a search index", "a search index", "an embedding cache entry"]
    # an index folder given as the folder to read is not music either
    with pytest.raises(FileNotFoundError, match=r"no audio files under .*my-index is a search index, not music"):
        list_audio([named])
    assert list_audio([named / "tracks.npy"]) == [named / "tracks.npy"]  # a file named directly is read as asked


def test_an_index_under_a_visible_name_is_skipped_by_its_arrays_alone(tmp_path):
    music = tmp_path / "music"
    want = _wav(music / "a.wav")
    idx = music / "idx"
    for name in ("tracks.npy", "chunks.npy"):
        _npy(idx / name)
    (idx / "index.json").write_text("[]")  # tampered, but index.json + tracks.npy + chunks.npy: mulap's layout
    assert list_audio([music]) == [want]


def test_m4a_is_audio_with_pyav(tmp_path):
    pytest.importorskip("av")
    assert {".m4a", ".m4b", ".aac"} <= set(audio_suffixes())
    write_with_pyav(tmp_path / "song.m4a", tone(1.0, 440.0, 44100), 44100)
    _wav(tmp_path / "b.wav")
    assert [p.name for p in list_audio([tmp_path])] == ["b.wav", "song.m4a"]


def test_without_pyav_m4a_files_are_counted_and_named_at_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` raises ImportError: PyAV is absent
    assert ".m4a" not in audio_suffixes()
    for name in ("a.m4a", "b.m4a", "c.M4A", "d.aac"):
        (tmp_path / name).write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(100))
    wav = _wav(tmp_path / "x.wav")
    with caplog.at_level(logging.INFO, logger="mulap.audio.scan"):
        assert list_audio([tmp_path]) == [wav]
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warned] == [
        (  # the first three named
            f"1 .aac file(s), 3 .m4a file(s) not read ({tmp_path}/a.m4a, {tmp_path}/b.m4a, {tmp_path}/c.M4A, ... (+1 more)): "
            "PyAV is not installed (pip install av)"
        )
    ]
    assert "not audio by their suffix" not in caplog.text
    wav.unlink()
    (tmp_path / "a.m4a").unlink()
    with pytest.raises(FileNotFoundError) as err:
        list_audio([tmp_path])
    assert (
        f"1 .aac file(s), 2 .m4a file(s) not read ({tmp_path}/b.m4a, {tmp_path}/c.M4A, {tmp_path}/d.aac): "
        "PyAV is not installed (pip install av)"
    ) in str(err.value)
