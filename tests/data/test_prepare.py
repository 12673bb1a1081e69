"""prepare(): publisher layout -> 16 kHz arrays + manifest, idempotent, every skipped file reported."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mulap.audio.io import load_audio
from mulap.data.prepare import load_prepared, prepare, targets
from mulap.data.tasks import DatasetFormatError
from tests.data import publisher_layouts as pl


def test_prepare_mtt_decodes_reports_missing_and_reuses(tmp_path):
    raw = pl.build_mtt(tmp_path / "raw")
    out = tmp_path / "prepared"
    rep = prepare("mtt_tagging", raw, out, num_workers=2, progress=False)
    # the split lists name 9 clips; one mp3 is absent: reported by name, counted, not in the manifest
    assert rep.decoded == 8 and rep.reused == 0
    assert [s["file"] for s in rep.skipped] == [str(raw / pl.MTT_MISSING)]
    assert "not found" in rep.skipped[0]["reason"]
    assert sum(rep.counts.values()) == 8
    assert pl.MTT_MISSING in rep.summary()

    ds = load_prepared(out)
    assert ds.task == "mtt_tagging" and ds.task_type == "multilabel" and len(ds.label_names) == 6
    assert len(ds.items) == 8 and "10" not in {it.id for it in ds.items}
    for it in ds.items:
        wave = np.load(it.audio_path)
        assert wave.dtype == np.float32 and wave.ndim == 1
        assert len(wave) == it.num_samples == 8000  # 0.5 s at 22.05 kHz -> 16 kHz
    # the array equals an independent decode of the source mp3
    first = ds.items[0]
    meta = json.loads((out / "dataset.json").read_text())
    src = raw / [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()][0]["source"]
    np.testing.assert_allclose(np.load(first.audio_path), load_audio(src), atol=1e-6)
    assert meta["skipped"] == rep.skipped and meta["counts"] == rep.counts and meta["sample_rate"] == 16000

    y = targets(ds, "test")
    assert y.shape == (rep.counts["test"], 6) and y.dtype == np.float32 and set(np.unique(y)) <= {0.0, 1.0}

    # second run: nothing decoded again, same manifest
    before = (out / "manifest.jsonl").read_text()
    rep2 = prepare("mtt_tagging", raw, out, num_workers=1, progress=False)
    assert rep2.decoded == 0 and rep2.reused == 8
    assert (out / "manifest.jsonl").read_text() == before
    assert not [p for p in out.rglob(".*")]  # no temporary file left


def test_prepare_every_task_type(tmp_path):
    pl.build_nsynth(tmp_path / "nsynth")
    pl.build_emomusic(tmp_path / "emomusic", missing_audio=5)
    pl.build_fma(tmp_path / "fma")
    pl.build_jamendo(tmp_path / "jamendo")

    rep = prepare("nsynth_clf", tmp_path / "nsynth", tmp_path / "p_nsynth", progress=False)
    ds = load_prepared(tmp_path / "p_nsynth")
    y = targets(ds, "test")
    assert y.dtype == np.int64 and y.tolist() == [3, 10, 0]
    assert len(ds.label_names) == 11 and rep.counts == {"train": 5, "valid": 2, "test": 3}
    assert all(it.num_samples == 4000 for it in ds.items)

    rep = prepare("emomusic_reg", tmp_path / "emomusic", tmp_path / "p_emo", progress=False)
    ds = load_prepared(tmp_path / "p_emo")
    assert any(s["file"].endswith("clips_45seconds/5.mp3") for s in rep.skipped)  # missing clip reported
    assert any("999" in s["file"] for s in rep.skipped)  # songs_info row without annotation
    y = targets(ds, "test")
    assert y.shape == (2, 2) and y.dtype == np.float32 and (y >= 1).all() and (y <= 9).all()

    rep = prepare("fma_clf", tmp_path / "fma", tmp_path / "p_fma", progress=False)
    assert rep.counts == {"train": 3, "valid": 2, "test": 2}
    assert any("099134" in s["file"] for s in rep.skipped)
    # stereo 44.1 kHz mp3 -> mono 16 kHz
    assert all(abs(it.num_samples - 8000) < 50 for it in load_prepared(tmp_path / "p_fma").items)

    rep = prepare("jamendo_moodtheme", tmp_path / "jamendo", tmp_path / "p_mood", progress=False)
    ds = load_prepared(tmp_path / "p_mood")
    assert all(n.startswith("mood/theme---") for n in ds.label_names)
    assert targets(ds, "train").shape[1] == len(ds.label_names)


def test_load_prepared_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="mulap prepare"):
        load_prepared(tmp_path)
    pl.build_nsynth(tmp_path / "raw")
    out = tmp_path / "p"
    prepare("nsynth_clf", tmp_path / "raw", out, progress=False)
    man = out / "manifest.jsonl"
    lines = man.read_text().splitlines()
    lines[2] = lines[2][:-5]
    man.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetFormatError, match=r"manifest\.jsonl, line 3"):
        load_prepared(out)
    lines[2] = json.dumps({"id": "x", "split": "train", "audio": "audio/x.npy", "target": 11})
    man.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetFormatError, match=r"line 3: class index 11"):
        load_prepared(out)
    with pytest.raises(ValueError, match="unknown downstream task"):
        prepare("gtzan", tmp_path / "raw", out, progress=False)


def test_prepare_reads_every_demo_dataset(request, tmp_path):
    from mulap.data.tasks import TASKS
    from tests.data.test_downstream import demo_raw

    raw = demo_raw(request)
    for task in ("mtt_tagging", "jamendo_tagging", "emomusic_reg", "fma_clf", "nsynth_clf"):
        spec = TASKS[task]
        rep = prepare(task, raw / spec.raw_name, tmp_path / spec.dataset, num_workers=2, progress=False)
        assert all(n > 0 for n in rep.counts.values()), (task, rep.counts)
        ds = load_prepared(tmp_path / spec.dataset, check_files=True)
        assert ds.task_type == spec.task_type
        for split in ("train", "valid", "test"):
            assert len(targets(ds, split)) == rep.counts[split]
        # nothing unreadable in the demo except what the publisher itself ships broken
        unexpected = [s for s in rep.skipped if "known-broken" not in s["reason"]]
        assert not unexpected, (task, unexpected[:3])


def test_jamendo_subsets_share_decoded_clips(tmp_path):
    raw = pl.build_jamendo(tmp_path / "raw")
    rep1 = prepare("jamendo_tagging", raw, tmp_path / "datasets/jamendo", progress=False)
    rep2 = prepare("jamendo_genre", raw, tmp_path / "datasets/jamendo_genre", progress=False)
    assert rep1.decoded == 7
    assert rep2.decoded == 0 and rep2.reused == sum(rep2.counts.values()) > 0
    a = tmp_path / "datasets/jamendo/audio/track_0000215.npy"
    b = tmp_path / "datasets/jamendo_genre/audio/track_0000215.npy"
    assert a.stat().st_ino == b.stat().st_ino  # a hard link, not a second decode
    np.testing.assert_array_equal(np.load(a), np.load(b))


def test_the_manifest_changes_with_the_audio_so_cached_embeddings_never_cross_datasets(tmp_path):
    """One task rendered through two soundfonts has the same ids, labels and lengths: the manifests differ only by
    each clip's crc32, which keeps the embedding cache from serving one dataset's features for the other (it did:
    the cache key is made of the manifest)."""
    from mulap.inference.cache import cache_key

    a, b = pl.build_nsynth(tmp_path / "raw_a"), pl.build_nsynth(tmp_path / "raw_b")
    for i, wav in enumerate(sorted((b / "nsynth-test" / "audio").glob("*.wav"))):
        pl._clip(wav, seconds=0.25, sr=16000, seed=100 + i)  # other sounds, same files, same lengths
    prepare("nsynth_clf", a, tmp_path / "a")
    prepare("nsynth_clf", b, tmp_path / "b")
    man_a, man_b = (tmp_path / "a" / "manifest.jsonl"), (tmp_path / "b" / "manifest.jsonl")
    rows_a = [json.loads(line) for line in man_a.read_text().splitlines()]
    rows_b = [json.loads(line) for line in man_b.read_text().splitlines()]
    assert [{k: v for k, v in r.items() if k != "crc32"} for r in rows_a] == [
        {k: v for k, v in r.items() if k != "crc32"} for r in rows_b
    ]
    differ = {r["id"] for r, s in zip(rows_a, rows_b, strict=True) if r["crc32"] != s["crc32"]}
    assert differ == {r["id"] for r in rows_b if r["split"] == "test"}
    assert cache_key("model", man_a, 48000, 16000) != cache_key("model", man_b, 48000, 16000)
    before = man_a.read_bytes()
    prepare("nsynth_clf", a, tmp_path / "a")  # prepared again, clips reused: the same manifest, the same cache entry
    assert man_a.read_bytes() == before
