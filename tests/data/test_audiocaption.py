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
