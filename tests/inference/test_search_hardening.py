"""mulap search on folders it did not make and with files someone tampered with (issue 17): the index never
leaks into the music, a tampered index is one line, its root is not trusted, the request is checked before
any indexing, an interrupted indexing resumes, a full disk is one WriteError, --like ranks from 1."""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

import mulap
import mulap.inference.extract
from mulap.cli import main
from mulap.inference import search
from mulap.infra.files import WRITER_HOST
from tests.helpers import tone

W0 = ["training.num_workers=0"]


def _music(folder, n=3, seconds=2.0):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        sf.write(folder / f"song{i}.wav", tone(seconds + i, 110.0 * (i + 1), bright=i % 2 == 0), 16000)
    return sorted(folder.glob("*.wav"))


@pytest.fixture(scope="module")
def random_model():
    return mulap.load("random", device="cpu")


def _extract_spy(monkeypatch):
    """Every path mulap.inference.extract.extract is asked to embed (search and model.embed_files both go through it)."""
    seen = []
    real = mulap.inference.extract.extract

    def spy(model, paths, *a, **kw):
        seen.extend(str(p) for p in paths)
        return real(model, paths, *a, **kw)

    monkeypatch.setattr(mulap.inference.extract, "extract", spy)
    return seen


# -- 3: the index never leaks into the music ----------------------------------------------------------------
def _killed_write_leftovers(folder):
    """What writes killed between their steps leave next to the index: temporary folders (complete or not) and the
    set-aside previous index, as mulap named them before writers were named (`..mulap-index.tmp-<8 hex>`) and as it
    names them now (`.mulap-index.tmp-<host>-<pid>-<8 hex>`)."""
    index, host = folder / ".mulap-index", WRITER_HOST
    for name in (
        "..mulap-index.tmp-1a2b3c4d",
        "..mulap-index.old-5e6f7a8b",
        f".mulap-index.tmp-{host}-1-0badc0de",
        f".mulap-index.old-{host}-1-0badc0df",
    ):
        shutil.copytree(index, folder / name)
    (folder / "..mulap-index.tmp-9c9c9c9c").mkdir()
    np.save(folder / "..mulap-index.tmp-9c9c9c9c" / "chunks.npy", np.zeros((3, 8), np.float16))


@pytest.mark.parametrize("leftovers", [False, True], ids=["after-search", "killed-write-leftovers"])
def test_embed_tag_and_search_see_exactly_the_audio_files_after_a_search(tmp_path, capsys, leftovers):
    folder = tmp_path / "music"
    audio = [str(p) for p in _music(folder)]
    assert main(["search", "random", str(folder), "--like", audio[0], "--json", *W0]) == 0
    capsys.readouterr()
    assert (folder / ".mulap-index" / "index.json").is_file()
    if leftovers:
        _killed_write_leftovers(folder)
    out = tmp_path / "emb.npz"
    assert main(["embed", "random", str(folder), "-o", str(out), *W0]) == 0
    assert np.load(out)["files"].tolist() == audio
    tags = tmp_path / "tags.csv"
    assert main(["tag", str(folder), "-o", str(tags)]) == 0
    with open(tags, newline="") as fh:
        assert sorted({row["file"] for row in csv.DictReader(fh)}) == audio
    capsys.readouterr()
    assert main(["search", "random", str(folder), "--like", audio[0], "--json", "--top", "10", *W0]) == 0
    captured = capsys.readouterr()
    assert sorted(h["file"] for h in json.loads(captured.out)) == audio[1:]
    assert "not audio by their suffix" not in captured.err  # not even its own index.json
    assert "3 file(s) (0 added" in captured.err


def test_an_index_inside_the_music_under_another_name_is_not_music(tmp_path, capsys):
    folder = tmp_path / "music"
    audio = [str(p) for p in _music(folder)]
    assert main(["search", "random", str(folder), "--like", audio[0], "--index", str(folder / "idx"), *W0]) == 0
    capsys.readouterr()
    out = tmp_path / "emb.npz"
    assert main(["embed", "random", str(folder), "-o", str(out), *W0]) == 0
    assert np.load(out)["files"].tolist() == audio
    capsys.readouterr()
    # searched again through the index folder itself: its music folder is the one holding it
    assert main(["search", "random", str(folder / "idx"), "--like", audio[0], "--json", *W0]) == 0
    assert sorted(h["file"] for h in json.loads(capsys.readouterr().out)) == audio[1:]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temp_folders_of_killed_writers_are_removed_live_and_unknown_ones_left(tmp_path, random_model):
    folder = tmp_path / "music"
    _music(folder)
    dead, live = _dead_pid(), os.getppid()
    names = {
        "dead": f".mulap-index.tmp-{WRITER_HOST}-{dead}-0badc0de",
        "dead_old": f".mulap-index.old-{WRITER_HOST}-{dead}-0badc0df",
        "live": f".mulap-index.tmp-{WRITER_HOST}-{live}-0badc0e0",
        "other_host": f".mulap-index.tmp-elsewhere-{dead}-0badc0e1",
        "unknown": "..mulap-index.tmp-1a2b3c4d",
    }  # named before writers were: its writer is unknown
    for name in names.values():
        (folder / name).mkdir()
        np.save(folder / name / "chunks.npy", np.zeros((2, 4), np.float16))
    index, _ = search.build_or_update(random_model, folder, num_workers=0, progress=False)
    left = {p.name for p in folder.iterdir() if ".mulap-index." in p.name}
    assert left == {names["live"], names["other_host"], names["unknown"]}
    assert [f["path"] for f in index.files] == ["song0.wav", "song1.wav", "song2.wav"]
    # killed between its two renames: the set-aside index comes back instead of being thrown away
    aside = folder / f".mulap-index.old-{WRITER_HOST}-{dead}-0badc0e2"
    os.rename(folder / ".mulap-index", aside)
    _, counts = search.build_or_update(random_model, folder, num_workers=0, progress=False)
    assert counts["kept"] == 3 and counts["added"] == 0 and not aside.exists()


def test_an_index_folder_that_would_replace_other_files_is_refused(tmp_path, random_model):
    folder = tmp_path / "music"
    _music(folder)
    for bad in (folder, tmp_path):  # the music folder itself, or a folder holding it
        with pytest.raises(search.SearchError, match="cannot be the music folder or hold it"):
            search.build_or_update(random_model, folder, index_folder=bad, num_workers=0, progress=False)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "thesis.tex").write_text("years of work")
    with pytest.raises(search.SearchError, match="holds files and no mulap index"):
        search.build_or_update(random_model, folder, index_folder=docs, rebuild=True, num_workers=0, progress=False)
    assert (docs / "thesis.tex").read_text() == "years of work" and sorted(p.name for p in folder.iterdir()) == [
        "song0.wav",
        "song1.wav",
        "song2.wav",
    ]


# -- 4b: a tampered index is one line naming the file -------------------------------------------------------
def _tamper_json(folder, edit):
    path = folder / "index.json"
    meta = json.loads(path.read_text())
    path.write_text(json.dumps(edit(meta)))


def _set_file(key, value):
    def edit(meta):
        meta["files"][1][key] = value
        return meta

    return edit


TAMPERED = {
    "n_chunks-x": ("index.json", lambda f: _tamper_json(f, _set_file("n_chunks", "x")), r"files\[1\]\.n_chunks is 'x'"),
    "list-at-top": ("index.json", lambda f: _tamper_json(f, lambda m: [m]), "expected a JSON object, found a list"),
    "missing-files": (
        "index.json",
        lambda f: _tamper_json(f, lambda m: {k: v for k, v in m.items() if k != "files"}),
        "missing key 'files'",
    ),
    "entry-a-string": (
        "index.json",
        lambda f: _tamper_json(f, lambda m: {**m, "files": ["song0.wav", *m["files"][1:]]}),
        r"files\[0\] is a string, expected an object",
    ),
    "negative-offset": ("index.json", lambda f: _tamper_json(f, _set_file("offset", -1)), r"files\[1\]\.offset is -1"),
    "offset-elsewhere": ("index.json", lambda f: _tamper_json(f, _set_file("offset", 0)), r"files\[1\]\.offset is 0, expected"),
    "failed-not-a-list": ("index.json", lambda f: _tamper_json(f, lambda m: {**m, "failed": {}}), "'failed' is a object"),
    "not-json": ("index.json", lambda f: (f / "index.json").write_text("{"), "not a readable mulap index"),
    "tracks-1d": ("tracks.npy", lambda f: np.save(f / "tracks.npy", np.zeros(3, np.float32)), "expected a 2-D array"),
    "tracks-rows": (
        "tracks.npy",
        lambda f: np.save(f / "tracks.npy", np.zeros((2, 1506), np.float32)),
        r"shape \[2, 1506\] does not match index.json",
    ),
    "tracks-dtype": ("tracks.npy", lambda f: np.save(f / "tracks.npy", np.zeros((3, 1506), np.float64)), "dtype float64"),
    "chunks-width": ("chunks.npy", lambda f: np.save(f / "chunks.npy", np.zeros((6, 7), np.float16)), "does not match"),
    "chunks-garbage": ("chunks.npy", lambda f: (f / "chunks.npy").write_bytes(b"\x93NUMPY garbage"), "not a readable .npy"),
    "chunks-object": (
        "chunks.npy",
        lambda f: np.save(f / "chunks.npy", np.array([{}], dtype=object), allow_pickle=True),
        "not a readable .npy",
    ),
}


@pytest.fixture(scope="module")
def built_index(tmp_path_factory, random_model):
    folder = tmp_path_factory.mktemp("indexed") / "music"
    _music(folder)
    search.build_or_update(random_model, folder, num_workers=0, progress=False)
    return folder


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_a_tampered_index_is_one_searcherror_naming_the_file(built_index, tmp_path, case):
    name, tamper, message = TAMPERED[case]
    folder = tmp_path / "music"
    shutil.copytree(built_index, folder)
    assert search.read_index(folder / ".mulap-index") is not None
    tamper(folder / ".mulap-index")
    with pytest.raises(search.SearchError, match=message) as err:
        search.read_index(folder / ".mulap-index")
    assert str(err.value).startswith(f"{folder / '.mulap-index' / name}: ") and "\n" not in str(err.value)


def test_a_tampered_index_through_the_command(built_index, tmp_path, capsys):
    folder = tmp_path / "music"
    shutil.copytree(built_index, folder)
    TAMPERED["n_chunks-x"][1](folder / ".mulap-index")
    assert main(["search", "random", str(folder), "--like", str(folder / "song0.wav"), *W0]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"mulap search: error: {folder / '.mulap-index' / 'index.json'}: files[1].n_chunks is 'x', expected a "
        "whole number >= 0; delete the index folder or pass --rebuild"
    ]
    assert main(["search", "random", str(folder), "--like", str(folder / "song0.wav"), "--rebuild", *W0]) == 0


# -- 5d: the root an index records is not trusted -----------------------------------------------------------
def test_a_tampered_root_never_makes_search_read_other_files(tmp_path, capsys, monkeypatch):
    music, elsewhere = tmp_path / "music", tmp_path / "private"
    audio = [str(p) for p in _music(music)]
    secret = _music(elsewhere, n=2)
    assert main(["search", "random", str(music), "--like", audio[0], *W0]) == 0
    _tamper_json(music / ".mulap-index", lambda m: {**m, "root": str(elsewhere)})
    seen = _extract_spy(monkeypatch)
    capsys.readouterr()
    assert main(["search", "random", str(music / ".mulap-index"), "--like", audio[0], "--json", *W0]) == 0
    assert sorted(h["file"] for h in json.loads(capsys.readouterr().out)) == audio[1:]
    assert seen == [audio[0]]  # the query file only: nothing re-indexed, nothing read under `private`
    # an index kept outside its music folder, given directly: refused (its root is only a claim) ...
    shutil.copytree(music / ".mulap-index", tmp_path / "kept")
    _tamper_json(tmp_path / "kept", lambda m: {**m, "root": str(elsewhere)})
    assert main(["search", "random", str(tmp_path / "kept"), "--like", audio[0], *W0]) == 2
    assert "is an index kept outside the music folder" in capsys.readouterr().err
    # ... and searched with the music folder named, it indexes that folder whatever it says
    assert main(["search", "random", str(music), "--index", str(tmp_path / "kept"), "--like", audio[0], "--json", *W0]) == 0
    assert sorted(h["file"] for h in json.loads(capsys.readouterr().out)) == audio[1:]
    assert not any(str(s) in seen for s in secret)


# -- 6: the request is checked before any indexing ----------------------------------------------------------
def test_the_request_is_refused_before_anything_is_embedded(tiny_mulap, tmp_path, capsys, monkeypatch):
    save_dir, pid = tiny_mulap
    folder = tmp_path / "music"
    audio = _music(folder)
    seen = _extract_spy(monkeypatch)
    text = tmp_path / "notes.mp3"
    text.write_text("not audio\n")
    missing = tmp_path / "nope.mp3"
    cases = [
        (["search", pid, str(folder), "   ", f"env.save_dir={save_dir}"], "the query is empty"),
        (["search", "supervised_mtt", str(folder), "calm piano"], "supervised_mtt has no joint audio-text space"),
        (["search", "random", str(folder), "--like", str(missing)], f"{missing}: file not found"),
        (["search", "random", str(folder), "--like", str(tmp_path)], f"{tmp_path}: not a regular file"),
        (["search", "random", str(folder), "--like", str(text)], f"{text}: not audio: a text file"),
    ]
    for argv, message in cases:
        assert main([*argv, *W0]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"mulap search: error: {message}"), err
        assert not any(str(a) in seen for a in audio), argv  # no file of the folder was embedded
        assert not (folder / ".mulap-index").exists()
    assert err == [
        f"mulap search: error: {text}: not audio: a text file (starts with 'not audio') (1 of 1 file(s) could not be read)"
    ]
    # 7d: the path is said once
    assert main(["search", "random", str(folder), "--like", str(missing), *W0]) == 2
    assert capsys.readouterr().err == f"mulap search: error: {missing}: file not found\n"


# -- 4: saved as it goes, resumed after an interruption -----------------------------------------------------
def test_an_interrupted_first_indexing_resumes_where_it_was_saved(tmp_path, random_model, monkeypatch):
    folder = tmp_path / "music"
    _music(folder, n=7, seconds=1.0)
    monkeypatch.setattr(search, "BLOCK_FILES", 2)
    monkeypatch.setattr(search, "SAVE_SECONDS", 0.0, raising=False)  # save after every block
    monkeypatch.setattr(search, "SAVE_COST", 0.0, raising=False)
    real, embedded = search._embed_block, []

    def interrupted(model, space, root, block, *a):
        if len(embedded) == 4:  # the third block: Ctrl-C inside its extraction
            raise KeyboardInterrupt
        embedded.extend(block)
        return real(model, space, root, block, *a)

    monkeypatch.setattr(search, "_embed_block", interrupted)
    with pytest.raises(KeyboardInterrupt):
        search.build_or_update(random_model, folder, num_workers=0, progress=False)
    saved = search.read_index(folder / ".mulap-index", folder)
    assert [f["path"] for f in saved.files] == ["song0.wav", "song1.wav", "song2.wav", "song3.wav"]
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == [".mulap-index"]  # no half index
    embedded.clear()
    monkeypatch.setattr(search, "_embed_block", lambda *a: (embedded.extend(a[3]), real(*a))[1])
    index, counts = search.build_or_update(random_model, folder, num_workers=0, progress=False)
    assert embedded == ["song4.wav", "song5.wav", "song6.wav"]
    assert counts == {"kept": 4, "added": 3, "changed": 0, "removed": 0, "failed": 0}
    whole, _ = search.build_or_update(random_model, folder, index_folder=tmp_path / "whole", num_workers=0, progress=False)
    assert index.files == whole.files
    np.testing.assert_allclose(np.asarray(index.tracks), np.asarray(whole.tracks), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(index.chunks), np.asarray(whole.chunks))


def test_saves_while_indexing_are_throttled(tmp_path, random_model, monkeypatch):
    folder = tmp_path / "music"
    _music(folder, n=6, seconds=1.0)
    monkeypatch.setattr(search, "BLOCK_FILES", 2)
    saves = []
    real = search._save
    monkeypatch.setattr(search, "_save", lambda *a: (saves.append(len(a[2].files)), real(*a))[1])
    search.build_or_update(random_model, folder, num_workers=0, progress=False)
    assert saves == [6]  # three quick blocks: well inside SAVE_SECONDS, so only the final save
    monkeypatch.setattr(search, "SAVE_SECONDS", 0.0)
    monkeypatch.setattr(search, "SAVE_COST", 0.0)
    saves.clear()
    search.build_or_update(random_model, folder, rebuild=True, num_workers=0, progress=False)
    assert saves == [2, 4, 6]


# -- 4e: a full disk while the index is written -------------------------------------------------------------
def test_a_full_disk_during_the_index_write_is_one_writeerror_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    import builtins

    folder = tmp_path / "music"
    audio = [str(p) for p in _music(folder)]
    assert main(["search", "random", str(folder), "--like", audio[0], *W0]) == 0
    before = (folder / ".mulap-index" / "index.json").read_text()
    sf.write(folder / "new.wav", tone(2.0, 500.0), 16000)
    real_open = builtins.open

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    def full_disk(file, mode="r", *a, **kw):
        fh = real_open(file, mode, *a, **kw)
        return Full(fh) if ".mulap-index.tmp-" in str(file) and str(file).endswith("chunks.npy") else fh

    monkeypatch.setattr(builtins, "open", full_disk)
    capsys.readouterr()
    assert main(["search", "random", str(folder), "--like", audio[0], *W0]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("mulap search")]  # (the rest: progress bars)
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith(
        f"mulap search: error: cannot write {folder / '.mulap-index' / 'chunks.npy'}: no space left on device ("
    ), err
    monkeypatch.setattr(builtins, "open", real_open)
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == [".mulap-index"]  # no temporary folder
    assert (folder / ".mulap-index" / "index.json").read_text() == before  # the previous index, intact


# -- 7a / 7d ------------------------------------------------------------------------------------------------
def test_like_results_are_ranked_from_one(tmp_path, random_model, capsys):
    folder = tmp_path / "music"
    audio = [str(p) for p in _music(folder, n=4)]
    index, _ = search.build_or_update(random_model, folder, num_workers=0, progress=False)
    hits = search.search_like(random_model, index, audio[2], top=3)
    assert [h.rank for h in hits] == [1, 2, 3] and audio[2] not in [h.file for h in hits]
    assert main(["search", "random", str(folder), "--like", audio[2], "--top", "2", "--index", str(tmp_path / "i"), *W0]) == 0
    table = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in table[2:]] == ["1", "2"]


def test_a_file_that_cannot_be_read_is_named_once(tmp_path, random_model, caplog):
    missing = tmp_path / "nope.mp3"
    with pytest.raises(mulap.AudioError if hasattr(mulap, "AudioError") else ValueError) as err:
        random_model.embed_files([missing], num_workers=0)
    assert str(err.value) == f"{missing}: file not found (1 of 1 file(s) could not be read)"
    folder = tmp_path / "music"
    _music(folder, n=1)
    (folder / "broken.wav").write_bytes(b"RIFF not really a wav")
    index, _ = search.build_or_update(random_model, folder, num_workers=0, progress=False)
    assert index.failed[0]["path"] == "broken.wav" and not index.failed[0]["reason"].startswith(str(folder))
    assert f"cannot index {folder / 'broken.wav'}: {index.failed[0]['reason']}" in caplog.text


def test_a_music_folder_with_someone_elses_index_json_is_searched_as_music(tmp_path, capsys):
    folder = tmp_path / "music"
    audio = [str(p) for p in _music(folder)]
    (folder / "index.json").write_text('{"albums": []}')  # a music player's, not mulap's
    assert main(["search", "random", str(folder), "--like", audio[0], "--json", *W0]) == 0
    assert sorted(h["file"] for h in json.loads(capsys.readouterr().out)) == audio[1:]
    assert (folder / ".mulap-index" / "index.json").is_file()
