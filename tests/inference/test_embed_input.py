"""Input side of embedding extraction (issue 11, items 8 and 9): long files are streamed block by
block and give the chunks of a whole-file decode; a file that fails midway contributes nothing;
concurrent writers of one cache entry never crash."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

import mulap.inference.cache as embed
from mulap.audio.chunks import cut_chunks
from mulap.inference.cache import cached_embeddings, read_cached
from mulap.inference.extract import extract, stream_chunks
from mulap.infra.files import WriteError
from mulap.models.musicnn import Musicnn, MusicnnConfig
from tests.helpers import tone


def _reference_chunks(path, chunk_len=48000):
    """Whole-file decode written independently of mulap: soundfile, channel mean, one soxr call."""
    wave, sr = sf.read(str(path), dtype="float32", always_2d=True)
    mono = soxr.resample(wave.mean(axis=1), sr, 16000, quality="HQ") if sr != 16000 else wave.mean(axis=1)
    return cut_chunks(np.asarray(mono, np.float32), chunk_len, pad_last=False)


def _write(path, seconds, sr, channels=2, seed=0):
    rng = np.random.default_rng(seed)
    wave = tone(seconds, 220.0 * (seed + 1), sr) + 0.02 * rng.standard_normal(int(seconds * sr)).astype(np.float32)
    sf.write(str(path), np.stack([wave, 0.5 * wave], 1) if channels == 2 else wave, sr)
    return path


def test_stream_chunks_equal_the_chunks_of_a_whole_file_decode(tmp_path):
    path = _write(tmp_path / "long.wav", 65.0, 44100)  # three 30 s read blocks, 21 chunks
    pieces = list(stream_chunks(path, 48000, 16000, piece_chunks=8))
    # handed over block by block as read: the first 30 s block gives 9 chunks (8 + 1), not the whole file
    assert [len(p) for p in pieces][:2] == [8, 1] and sum(len(p) for p in pieces) == 21
    np.testing.assert_allclose(np.concatenate(pieces), _reference_chunks(path), atol=2e-5)
    short = _write(tmp_path / "short.flac", 1.0, 22050, channels=1)
    (only,) = stream_chunks(short, 48000, 16000)
    assert only.shape == (1, 48000) and np.abs(only[0, 17000:]).max() == 0  # the only chunk is zero-padded


def test_extract_streams_files_in_workers_and_drops_a_file_that_fails_midway(tmp_path):
    paths = [
        _write(tmp_path / "a.wav", 65.0, 44100, seed=0),
        _write(tmp_path / "b.flac", 4.0, 22050, 1, seed=1),
        tmp_path / "cut.wav",
        _write(tmp_path / "c.mp3", 7.0, 48000, seed=2),
    ]
    full = _write(tmp_path / "full.wav", 60.0, 16000, channels=1, seed=3)
    paths[2].write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.7)])  # 42 of 60 s: fails after a block was sent
    torch.manual_seed(0)
    model = Musicnn(MusicnnConfig(timbral_channels=12)).eval()
    feats, track, failures = extract(model, paths, batch_chunks=8, num_workers=2, progress=False)
    assert failures == [(str(paths[2]), failures[0][1])] and "truncated: 42" in failures[0][1]
    refs = {i: _reference_chunks(paths[i]) for i in (0, 1, 3)}
    assert track.tolist() == [i for i in (0, 1, 3) for _ in range(len(refs[i]))]  # clip order, chunks in order
    with torch.inference_mode():
        expected = np.concatenate([model(torch.from_numpy(refs[i])).numpy() for i in (0, 1, 3)])
    np.testing.assert_allclose(feats, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


# ------------------------------------------------------------------ the cache writer (issue 11, item 8)

RACE_ROUNDS = int(os.environ.get("MULAP_RACE_ROUNDS", "8"))  # e.g. MULAP_RACE_ROUNDS=400 for a long run


def _clips(folder, n=3):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        np.save(folder / f"clip{i}.npy", tone(3.2, 200.0 + 50 * i))
    (folder / "manifest.jsonl").write_text("".join(f'{{"id": "clip{i}"}}\n' for i in range(n)))
    return folder


def _tiny_model():
    torch.manual_seed(0)
    return Musicnn(MusicnnConfig(timbral_channels=4, temporal_channels=2, backend_channels=4)).eval()


def test_two_processes_racing_on_one_cache_entry_never_crash(tmp_path):
    """Two real processes write the same entry in every round: even rounds meet at a barrier right
    before the rename (both hold a complete entry), odd rounds before extraction starts."""
    clips = _clips(tmp_path / "clips")
    work = tmp_path / "work"
    cmd = [sys.executable, "-m", "tests.inference.cache_race_child", str(work), str(RACE_ROUNDS), str(clips)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ) for _ in range(2)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    counts = Counter((("publish", "start")[r % 2], o) for res in results for r, o in enumerate(res["outcomes"]))
    print(f"cache race: {RACE_ROUNDS} rounds x 2 processes, outcomes {dict(sorted(counts.items()))}, 0 crashes")
    for r in range(RACE_ROUNDS):
        pair = sorted(res["outcomes"][r] for res in results)
        assert pair in (["placed", "theirs"], ["hit", "placed"]), pair  # exactly one entry written per round
        assert results[0]["sums"][r] == results[1]["sums"][r]  # both use the same features
        entries = list((work / str(r)).iterdir())
        assert len(entries) == 1 and not entries[0].name.startswith("."), entries  # no temp folder left behind
        entry = read_cached(work / str(r), entries[0].name)
        assert entry.ids == ["clip0", "clip1", "clip2"] and float(entry.features.astype("float64").sum()) == results[0]["sums"][r]
        if r % 2 == 0:  # the barrier sits right before the rename: a real race every time
            assert pair == ["placed", "theirs"]


def test_an_entry_for_other_tracks_is_replaced(tmp_path):
    clips = _clips(tmp_path / "clips")
    paths = sorted(clips.glob("*.npy"))
    model = _tiny_model()
    first = cached_embeddings(
        model, ["a", "b", "c"], paths, clips / "manifest.jsonl", tmp_path / "cache", num_workers=0, progress=False
    )
    again = cached_embeddings(
        model, ["clip0", "clip1", "clip2"], paths, clips / "manifest.jsonl", tmp_path / "cache", num_workers=0, progress=False
    )
    assert again.computed and again.key == first.key
    assert read_cached(tmp_path / "cache", first.key).ids == ["clip0", "clip1", "clip2"]
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [first.key]


def test_temp_folders_of_killed_cache_writers_are_removed_live_and_other_host_ones_left(tmp_path):
    """Like the search index's (tests/inference/test_search_hardening.py): a temp folder whose writer is a dead process of
    this host is removed when an entry is stored; a live writer's, and one of another host (its pid cannot be
    checked here), stay."""
    from mulap.infra.files import WRITER_HOST

    clips = _clips(tmp_path / "clips")
    paths = sorted(clips.glob("*.npy"))
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dead, live = proc.pid, os.getppid()
    cache = tmp_path / "cache"
    names = {
        "dead": f".0123abcd.tmp-{WRITER_HOST}-{dead}-0badc0de",
        "dead_old": f".0123abcd.old-{WRITER_HOST}-{dead}-0badc0df",
        "live": f".0123abcd.tmp-{WRITER_HOST}-{live}-0badc0e0",
        "other_host": f".0123abcd.tmp-elsewhere-{dead}-0badc0e1",
    }
    for name in names.values():
        (cache / name).mkdir(parents=True)
        np.save(cache / name / "features.npy", np.zeros((2, 4), np.float32))
    got = cached_embeddings(
        _tiny_model(), ["clip0", "clip1", "clip2"], paths, clips / "manifest.jsonl", cache, num_workers=0, progress=False
    )
    assert got.computed
    assert sorted(p.name for p in cache.iterdir()) == sorted([got.key, names["live"], names["other_host"]])


def _small_tmpfs(path):
    """A 64 kB tmpfs at `path` when we may mount one (root), else None."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return None
    path.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)], capture_output=True)
    return path if done.returncode == 0 else None


def test_a_full_disk_is_reported_as_such(tmp_path, monkeypatch):
    clips = _clips(tmp_path / "clips")
    paths = sorted(clips.glob("*.npy"))
    model = _tiny_model()
    small = _small_tmpfs(tmp_path / "small")
    try:
        if small is None:  # no tmpfs: the OS's answer to a full disk, injected

            def full(*args, **kwargs):
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr(embed.np, "save", full)
            root = tmp_path / "cache"
        else:
            with open(small / "filler", "wb", buffering=0) as fh:  # fill it up
                try:
                    while True:
                        fh.write(b"x" * 4096)
                except OSError:
                    pass
            root = small / "cache"
        with pytest.raises(WriteError) as err:
            cached_embeddings(
                model, ["clip0", "clip1", "clip2"], paths, clips / "manifest.jsonl", root, num_workers=0, progress=False
            )
        msg = str(err.value)
        assert "\n" not in msg  # the CLI prints it as one line, in the checkpoints' form
        assert msg.startswith(f"cannot write {root}") and "no space left on device" in msg and "needed" in msg
        assert not root.exists() or not [p for p in root.iterdir() if p.name.startswith(".")]  # no temp folder left
    finally:
        if small is not None:
            subprocess.run(["umount", str(small)], check=True)


# ------------------------------------------------------------------ verified entries (issue 17, 4d and 5b)
def _cut_features(entry):
    path = entry / "features.npy"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_a_feature_byte(entry):
    data = bytearray((entry / "features.npy").read_bytes())
    data[-5] ^= 0x40  # same size, same header: only the CRC-32 tells
    (entry / "features.npy").write_bytes(bytes(data))


def _one_row_short(entry):
    """An entry as written before meta.json recorded sizes and CRCs, track.npy one row short (an IndexError later)."""
    meta = json.loads((entry / "meta.json").read_text())
    meta.pop("files", None)
    (entry / "meta.json").write_text(json.dumps(meta))
    np.save(entry / "track.npy", np.load(entry / "track.npy")[:-1])


def _cut_meta(entry):
    text = (entry / "meta.json").read_text()
    (entry / "meta.json").write_text(text[: len(text) // 2])


DAMAGE = {
    "truncated": (_cut_features, "features.npy has "),
    "crc": (_flip_a_feature_byte, "features.npy: CRC-32 mismatch"),
    "rows": (_one_row_short, "do not match (one row per chunk)"),
    "meta": (_cut_meta, "meta.json is not readable JSON"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_cache_entry_is_named_moved_aside_and_computed_again(tmp_path, caplog, damage):
    clips = _clips(tmp_path / "clips")
    paths, model, ids = sorted(clips.glob("*.npy")), _tiny_model(), ["clip0", "clip1", "clip2"]
    cache = tmp_path / "cache"
    good = cached_embeddings(model, ids, paths, clips / "manifest.jsonl", cache, num_workers=0, progress=False)
    entry = cache / good.key
    damage_it, said = DAMAGE[damage]
    damage_it(entry)
    with caplog.at_level(logging.WARNING, logger="mulap.inference.cache"):
        again = cached_embeddings(model, ids, paths, clips / "manifest.jsonl", cache, num_workers=0, progress=False)
    assert again.computed, "a damaged entry was served"
    np.testing.assert_array_equal(again.features, good.features)
    np.testing.assert_array_equal(again.track, good.track)
    (aside,) = [p for p in cache.iterdir() if p.name != good.key]
    assert aside.name.startswith(f"{good.key}.corrupt-")
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith(f"cache entry {entry} is damaged (") and said in warning and aside.name in warning
    fresh = read_cached(cache, good.key)  # the entry written again reads, verified
    assert not fresh.computed and fresh.ids == ids and np.array_equal(fresh.features, good.features)


def test_an_entry_from_before_the_records_still_reads(tmp_path, caplog):
    clips = _clips(tmp_path / "clips")
    paths, model, ids = sorted(clips.glob("*.npy")), _tiny_model(), ["clip0", "clip1", "clip2"]
    good = cached_embeddings(model, ids, paths, clips / "manifest.jsonl", tmp_path / "cache", num_workers=0, progress=False)
    meta_path = tmp_path / "cache" / good.key / "meta.json"
    meta = json.loads(meta_path.read_text())
    assert set(meta["files"]) == {"features.npy", "track.npy"}
    assert meta["files"]["features.npy"]["shape"] == list(good.features.shape) and "crc32" in meta["files"]["track.npy"]
    meta.pop("files")
    meta_path.write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="mulap.inference.cache"):
        old = read_cached(tmp_path / "cache", good.key)
    assert not caplog.records and not old.computed and np.array_equal(old.features, good.features)
