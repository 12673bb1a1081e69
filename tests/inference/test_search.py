"""mulap search: the incremental index, rankings equal to brute force, the best moment, re-rank, errors."""

import json
import os
import time

import numpy as np
import pytest
import soundfile as sf

import mulap
from mulap.cli import main
from mulap.inference import search
from tests.helpers import tone


@pytest.fixture(scope="module")
def model(tiny_mulap):
    save_dir, pid = tiny_mulap
    return mulap.load(pid, save_dir=save_dir, device="cpu")


def _music(folder, n=5):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        sf.write(folder / f"song{i}.wav", tone(4.0 + 3 * i, 110.0 * (i + 1), bright=i % 2 == 0), 16000)
    return folder


def _brute_force(model, folder, query_vec):
    files = sorted(folder.glob("*.wav"))
    emb = model.embed_files(files, space="joint", num_workers=0)
    scores = emb @ query_vec
    return [str(files[i]) for i in np.argsort(-scores, kind="stable")], scores


def test_ranking_equals_brute_force_with_best_moment(model, tmp_path):
    folder = _music(tmp_path / "music")
    index, counts = search.build_or_update(model, folder, num_workers=0, progress=False)
    assert counts["added"] == 5 and (folder / ".mulap-index" / "index.json").is_file()
    q = "a bright loud tone, high register"
    hits = search.search_text(model, index, q, top=5)
    qv = model.embed_text([q])[0]
    order, scores = _brute_force(model, folder, qv)
    assert [h.file for h in hits] == order
    np.testing.assert_allclose([h.score for h in hits], np.sort(scores)[::-1], atol=1e-4)
    for h in hits:  # the moment is the file's best chunk by the same query (up to the index's float16 rounding)
        c, starts = model.embed_chunks(sf.read(h.file, dtype="float32")[0], 16000, space="joint")
        scores = c @ qv
        chosen = int(np.flatnonzero(starts == h.start)[0])
        assert scores[chosen] >= scores.max() - 2e-3 and h.end == h.start + 3.0


def test_index_updates_incrementally(model, tmp_path, monkeypatch):
    folder = _music(tmp_path / "music")
    search.build_or_update(model, folder, num_workers=0, progress=False)
    embedded = []
    real = search._embed_block

    def spy(m, space, root, block, *a):
        embedded.extend(block)
        return real(m, space, root, block, *a)

    monkeypatch.setattr(search, "_embed_block", spy)
    _, counts = search.build_or_update(model, folder, num_workers=0, progress=False)
    assert embedded == [] and counts["kept"] == 5
    sf.write(folder / "new.wav", tone(5.0, 330.0), 16000)  # add
    sf.write(folder / "song1.wav", tone(9.0, 660.0, bright=False), 16000)  # change (size + mtime)
    future = time.time() + 5
    os.utime(folder / "song1.wav", (future, future))
    (folder / "song3.wav").unlink()  # remove
    index, counts = search.build_or_update(model, folder, num_workers=0, progress=False)
    assert sorted(embedded) == ["new.wav", "song1.wav"]
    assert counts == {"kept": 3, "added": 1, "changed": 1, "removed": 1, "failed": 0}
    assert [f["path"] for f in index.files] == ["new.wav", "song0.wav", "song1.wav", "song2.wav", "song4.wav"]
    assert index.chunks.shape[0] == sum(f["n_chunks"] for f in index.files)
    qv = model.embed_text(["a dull soft tone"])[0]
    order, _ = _brute_force(model, folder, qv)
    assert [h.file for h in search.rank(index, qv, top=5)] == order  # rows still line up after the update


def test_rerank_and_json_and_like(model, tmp_path, capsys):
    folder = _music(tmp_path / "music")
    args = [
        "search",
        "tiny",
        str(folder),
        "a bright tone",
        "--top",
        "3",
        "--rerank",
        "4",
        "--json",
        f"env.save_dir={model.info['source'].rsplit('/experiments/', 1)[0]}",
        "training.num_workers=0",
    ]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 3 and set(out[0]) >= {"file", "score", "start", "end"}
    # the re-ranked scores are the cross-encoder's matching probabilities, highest first
    for h in out:  # on the transformer-length window (2 chunks here) that holds the best moment
        wave = sf.read(h["file"], dtype="float32")[0]
        n_chunks = len(wave) // 48000
        lo = max(0, min(int(h["start"] // 3), n_chunks - 2))
        window = wave[lo * 48000 : (lo + 2) * 48000]
        assert h["score"] == pytest.approx(float(model.match(window, ["a bright tone"], 16000)[0, 0]), abs=1e-4)
    assert [h["score"] for h in out] == sorted((h["score"] for h in out), reverse=True)
    index, _ = search.build_or_update(model, folder, num_workers=0, progress=False)
    like = search.search_like(model, index, folder / "song2.wav", top=4)
    assert str(folder / "song2.wav") not in [h.file for h in like] and len(like) == 4


def test_bad_input(model, tmp_path):
    folder = _music(tmp_path / "music", n=2)
    (folder / "broken.wav").write_bytes(b"RIFF not really a wav")
    index, counts = search.build_or_update(model, folder, num_workers=0, progress=False)
    assert counts["failed"] == 1 and index.failed[0]["path"] == "broken.wav" and len(index.files) == 2
    with pytest.raises(search.SearchError, match="empty"):
        search.search_text(model, index, "  ")
    (tmp_path / "empty").mkdir()
    with pytest.raises(search.SearchError, match="no audio files"):
        search.build_or_update(model, tmp_path / "empty", num_workers=0, progress=False)
    other = mulap.load("supervised_mtt", device="cpu")
    with pytest.raises(search.SearchError, match="built by another model.*--rebuild"):
        search.build_or_update(other, folder, num_workers=0, progress=False)
    idx2, _ = search.build_or_update(other, folder, index_folder=tmp_path / "idx2", num_workers=0, progress=False)
    assert idx2.space == "backbone"
    with pytest.raises(search.SearchError, match="no joint audio-text space"):
        search.search_text(other, idx2, "piano")
    assert len(search.search_like(other, idx2, folder / "song0.wav", top=5)) == 1
