"""The seed's audiocaption format: reading, batching, and every kind of bad input."""

import json

import numpy as np
import pytest

from mulap.data.audiocaption import AudioCaptionDataset, Collate, DatasetError, Skipped, read_split
from mulap.models.text import load_tokenizer
from tests.helpers import make_audiocaption


@pytest.fixture()
def ds_dir(tmp_path):
    return make_audiocaption(tmp_path / "ac", n_train=6, n_val=2)


def test_reads_mixed_formats_and_batches(ds_dir):
    ds = AudioCaptionDataset(ds_dir, "train", max_len_seconds=9)
    items = [ds[i] for i in range(len(ds))]
    assert all(it["chunks"].shape == (3, 48000) for it in items)
    assert {int(it["chunk_mask"].sum()) for it in items} >= {1, 2, 3}
    batch = Collate(load_tokenizer("minilm"), 16)(items)
    assert batch["waveforms"].shape == (6, 3, 48000)
    assert batch["input_ids"].shape[0] == 6 and batch["input_ids"].shape[1] <= 16
    assert not batch["maskable"][:, 0].any()  # [CLS] is never an MLM target


def _rewrite(ds_dir, fn):
    path = ds_dir / "dataset_train.json"
    recs = json.loads(path.read_text())
    fn(recs)
    path.write_text(json.dumps(recs))


BAD_RECORDS = {
    "missing_field": (lambda r: r[2].pop("caption"), "missing field"),
    "empty_caption": (lambda r: r[2].update(caption="   "), "empty caption"),
    "escape": (lambda r: r[2].update(audio_path="../../etc/passwd"), "escapes the audio folder"),
    "missing_audio": (lambda r: r[2].update(audio_path="nope.wav"), "not found"),
    "captions_not_a_list": (lambda r: r[2].update(captions="a string"), "captions must be a non-empty list"),
    "captions_empty_phrasing": (lambda r: r[2].update(captions=["fine", " "]), "captions[1] is empty"),
}


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_bad_records_error_names_file_and_record(ds_dir, case):
    fn, words = BAD_RECORDS[case]
    _rewrite(ds_dir, fn)
    with pytest.raises(DatasetError) as err:
        read_split(ds_dir, "train")
    msg = str(err.value)
    assert "dataset_train.json" in msg and "record 2" in msg and words in msg
    pairs, skipped = read_split(ds_dir, "train", on_bad="skip")
    assert len(pairs) == 5 and len(skipped) == 1 and words in skipped[0].reason


def test_malformed_json_names_line(ds_dir):
    (ds_dir / "dataset_val.json").write_text('[\n {"audio_id": "a",\n "caption": }\n]')
    with pytest.raises(DatasetError, match=r"dataset_val.json, line 3: invalid JSON"):
        read_split(ds_dir, "val")


@pytest.mark.parametrize("case", ["corrupt", "zero_length", "nan"])
def test_bad_audio_error_or_counted_skip(ds_dir, case):
    recs = json.loads((ds_dir / "dataset_train.json").read_text())
    target = ds_dir / "audio" / recs[0]["audio_path"]
    target.unlink()
    target = target.with_suffix(".npy")
    recs[0]["audio_path"] = target.name
    (ds_dir / "dataset_train.json").write_text(json.dumps(recs))
    if case == "corrupt":
        target.write_bytes(b"not an npy file")
    else:
        np.save(target, np.zeros(0, np.float32) if case == "zero_length" else np.full(100, np.nan, np.float32))
    ds = AudioCaptionDataset(ds_dir, "train")
    with pytest.raises(DatasetError) as err:
        ds[0]
    assert str(target) in str(err.value) and recs[0]["audio_id"] in str(err.value)
    ds_skip = AudioCaptionDataset(ds_dir, "train", on_bad_sample="skip")
    items = [ds_skip[i] for i in range(len(ds_skip))]
    assert isinstance(items[0], Skipped)
    batch = Collate(load_tokenizer("minilm"))(items)
    assert batch["n_skipped"] == 1 and batch["waveforms"].shape[0] == len(items) - 1


def test_train_clip_subset_is_seeded_and_keeps_file_order(ds_dir):
    full = [p.audio_id for p in AudioCaptionDataset(ds_dir, "train").pairs]
    a = [p.audio_id for p in AudioCaptionDataset(ds_dir, "train", max_clips=3, seed=1).pairs]
    b = [p.audio_id for p in AudioCaptionDataset(ds_dir, "train", max_clips=3, seed=1).pairs]
    c = [p.audio_id for p in AudioCaptionDataset(ds_dir, "train", max_clips=3, seed=2).pairs]
    assert a == b and len(a) == 3 and set(a) < set(full)
    assert a == [i for i in full if i in a]  # file order kept
    assert c != a  # another seed, another subset (6 choose 3 = 20 subsets; these two seeds differ)
    with pytest.raises(ValueError, match="train_clips"):
        AudioCaptionDataset(ds_dir, "train", max_clips=0)


def test_shuffled_captions_move_every_caption_to_another_clip(ds_dir):
    _rewrite(ds_dir, lambda recs: [r.update(caption=f"{r['caption']} number {k}") for k, r in enumerate(recs)])  # unique
    aligned = {p.audio_id: p.caption for p in AudioCaptionDataset(ds_dir, "train").pairs}
    shuffled = {p.audio_id: p.caption for p in AudioCaptionDataset(ds_dir, "train", captions="shuffled", seed=3).pairs}
    assert sorted(shuffled.values()) == sorted(aligned.values())  # same words, other clips
    assert all(shuffled[i] != aligned[i] for i in aligned)
    with pytest.raises(ValueError, match="captions"):
        AudioCaptionDataset(ds_dir, "train", captions="random")


# -- several phrasings per clip (the optional `captions` list) ---------------------------------------------
def _with_phrasings(ds_dir, n: int = 4) -> dict[str, list[str]]:
    """Gives every training record n phrasings (`caption` first); returns audio_id -> phrasings."""
    out = {}

    def add(recs):
        for r in recs:
            r["captions"] = [r["caption"]] + [f"{r['caption']}, said another way ({k})" for k in range(1, n)]
            out[r["audio_id"]] = r["captions"]

    _rewrite(ds_dir, add)
    return out


def test_training_draws_every_phrasing_over_epochs_deterministically(ds_dir):
    phrasings = _with_phrasings(ds_dir, 4)
    ds = AudioCaptionDataset(ds_dir, "train", seed=5, caption_variants=True)

    def drawn(ds, epochs):
        seen = {}
        for epoch in range(epochs):
            ds.set_epoch(epoch)
            for i in range(len(ds)):
                it = ds[i]
                seen.setdefault(it["audio_id"], []).append(it["caption"])
        return seen

    seen = drawn(ds, 4)
    for audio_id, caps in seen.items():
        assert sorted(caps) == sorted(phrasings[audio_id])  # 4 epochs: each phrasing exactly once
    assert len({tuple(c) for c in seen.values()}) > 1  # the order differs from clip to clip
    assert drawn(AudioCaptionDataset(ds_dir, "train", seed=5, caption_variants=True), 4) == seen  # the same run again
    assert drawn(AudioCaptionDataset(ds_dir, "train", seed=6, caption_variants=True), 4) != seen  # another seed
    # off, or a split read for validation: always the record's `caption`
    plain = drawn(AudioCaptionDataset(ds_dir, "train", seed=5), 3)
    assert all(caps == [phrasings[a][0]] * 3 for a, caps in plain.items())


def test_the_seed_format_without_captions_stays_valid(ds_dir):
    recs = json.loads((ds_dir / "dataset_train.json").read_text())
    assert all("captions" not in r for r in recs)
    ds = AudioCaptionDataset(ds_dir, "train", caption_variants=True)
    for epoch in range(3):
        ds.set_epoch(epoch)
        assert [ds[i]["caption"] for i in range(len(ds))] == [r["caption"] for r in recs]


def test_shuffled_control_moves_all_phrasings_of_a_clip_together(ds_dir):
    _rewrite(ds_dir, lambda recs: [r.update(caption=f"{r['caption']} number {k}") for k, r in enumerate(recs)])  # unique
    phrasings = _with_phrasings(ds_dir, 3)
    shuffled = AudioCaptionDataset(ds_dir, "train", captions="shuffled", seed=3).pairs
    for p in shuffled:
        assert list(p.captions) != phrasings[p.audio_id]  # another clip's ...
        assert list(p.captions) in phrasings.values() and p.captions[0] == p.caption  # ... whole set
