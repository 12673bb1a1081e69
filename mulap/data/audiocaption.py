"""The seed's audiocaption format: (audio, caption) pairs for pre-training.

    <data_dir>/audio/...            audio files (npy 16 kHz, or wav/flac/ogg/mp3 at any rate)
    <data_dir>/dataset_train.json   [{"audio_id", "caption", "audio_path"}, ...]
    <data_dir>/dataset_val.json
    <data_dir>/dataset_test.json

A record may also carry `captions`, a list of other phrasings of the same clip (optional; the
seed's records have none). Training then takes one phrasing per clip and epoch
(`caption_for`: every phrasing once in as many epochs, in an order drawn per clip), so the text
side sees many ways to say the same thing; validation and test always use `caption`. With
`dataset_config.augment.enabled` the training chunks are augmented (mulap.audio.augment).

Records are validated when the split is opened (every error names the file and the
record); audio is decoded lazily. With `on_bad_sample: skip` a bad record or a clip that
fails to decode is skipped and counted (the collate function reports the count per batch,
the training module logs it) - never dropped silently.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mulap.audio.augment import Augment, augment_rng, augmented_chunks
from mulap.audio.chunks import chunk_samples, chunk_with_mask
from mulap.audio.io import AudioError, load_audio
from mulap.infra.files import is_file
from mulap.infra.text_files import DatasetError, read_json

log = logging.getLogger(__name__)

SPLIT_FILES = {"train": "dataset_train.json", "val": "dataset_val.json", "test": "dataset_test.json"}
FIELDS = ("audio_id", "caption", "audio_path")


_CAPTION_STREAM = 2  # caption draws apart from the crops' (seed, epoch, index) and the augmentation's


@dataclass(frozen=True)
class Pair:
    audio_id: str
    caption: str
    audio_path: Path
    captions: tuple[str, ...] = ()  # every phrasing, `caption` first (empty: `caption` alone)

    @property
    def phrasings(self) -> tuple[str, ...]:
        return self.captions or (self.caption,)


def caption_for(phrasings: tuple[str, ...], seed: int, epoch: int, *position: int) -> str:
    """The phrasing the item at `position` (its index; shards: shard and place) trains on in `epoch`: a
    per-item random order of its phrasings, one per epoch, so n phrasings are all used in any n
    consecutive epochs; the same in every run of the seed."""
    if len(phrasings) == 1:
        return phrasings[0]
    order = np.random.default_rng([int(seed), _CAPTION_STREAM, *(int(p) for p in position)]).permutation(len(phrasings))
    return phrasings[int(order[int(epoch) % len(phrasings)])]


@dataclass
class Skipped:
    """Marks an item that could not be used (on_bad_sample: skip)."""

    where: str
    reason: str


def read_split(
    data_dir: str | Path, split: str, audio_dir: str = "audio", on_bad: str = "error"
) -> tuple[list[Pair], list[Skipped]]:
    """Parse and validate one split file. Returns the usable pairs and the skipped records."""
    if on_bad not in ("error", "skip"):
        raise DatasetError(f"on_bad_sample must be 'error' or 'skip', got {on_bad!r}")
    data_dir = Path(data_dir)
    if split not in SPLIT_FILES:
        raise DatasetError(f"unknown split {split!r} (train, val, test)")
    path = data_dir / SPLIT_FILES[split]
    if not path.is_file():
        raise DatasetError(f"{path}: split file not found (expected {', '.join(SPLIT_FILES.values())} in {data_dir})")
    records = read_json(path)
    if not isinstance(records, list):
        raise DatasetError(f"{path}: expected a JSON list of records, got {type(records).__name__}")
    audio_root = (data_dir / audio_dir).resolve()
    pairs: list[Pair] = []
    skipped: list[Skipped] = []
    seen: dict[str, int] = {}
    for i, rec in enumerate(records):
        where = f"{path}, record {i}" + (
            f" (audio_id {rec.get('audio_id')!r})" if isinstance(rec, dict) and "audio_id" in rec else ""
        )
        try:
            pairs.append(_check_record(rec, audio_root, seen, i))
        except DatasetError as exc:
            if on_bad == "error":
                raise DatasetError(f"{where}: {exc}") from None
            skipped.append(Skipped(where, str(exc)))
            log.warning("skipping %s: %s", where, exc)
    return pairs, skipped


def _check_record(rec, audio_root: Path, seen: dict[str, int], i: int) -> Pair:
    if not isinstance(rec, dict):
        raise DatasetError(f"expected an object with fields {list(FIELDS)}, got {type(rec).__name__}")
    missing = [f for f in FIELDS if f not in rec]
    if missing:
        raise DatasetError(f"missing field(s) {missing}")
    caption = rec["caption"]
    if not isinstance(caption, str) or not caption.strip():
        raise DatasetError("empty caption")
    if not isinstance(rec["audio_path"], str) or not rec["audio_path"] or "\x00" in rec["audio_path"]:
        raise DatasetError("audio_path must be a non-empty string without NUL characters")
    audio_path = (audio_root / rec["audio_path"]).resolve()
    if not audio_path.is_relative_to(audio_root):
        raise DatasetError(f"audio_path {rec['audio_path']!r} escapes the audio folder {audio_root}")
    if not is_file(audio_path):
        raise DatasetError(f"audio file not found: {audio_path}")
    audio_id = str(rec["audio_id"])
    if audio_id in seen:
        raise DatasetError(f"duplicate audio_id {audio_id!r}: first at record {seen[audio_id]}")
    seen[audio_id] = i
    return Pair(audio_id, caption.strip(), audio_path, _phrasings(rec, caption.strip()))


def _phrasings(rec: dict, caption: str) -> tuple[str, ...]:
    """The record's optional `captions` list, `caption` first, duplicates removed ((): none given)."""
    if "captions" not in rec or rec["captions"] is None:
        return ()
    given = rec["captions"]
    if not isinstance(given, list) or not given:
        raise DatasetError(f"captions must be a non-empty list of strings (other phrasings of the clip), got {given!r:.60}")
    for j, c in enumerate(given):
        if not isinstance(c, str) or not c.strip():
            raise DatasetError(f"captions[{j}] is empty or not a string")
    return tuple(dict.fromkeys([caption] + [c.strip() for c in given]))


def subset_pairs(pairs: list[Pair], max_clips: int | None, seed: int) -> list[Pair]:
    """A random subset of `max_clips` pairs (all when None), same subset for the same seed, file order kept."""
    if max_clips is None or max_clips >= len(pairs):
        return pairs
    if max_clips < 1:
        raise ValueError(f"dataset_config.train_clips must be >= 1, got {max_clips}")
    keep = np.sort(np.random.default_rng(seed).permutation(len(pairs))[:max_clips])
    return [pairs[i] for i in keep]


def shuffle_captions(pairs: list[Pair], seed: int) -> list[Pair]:
    """Each clip gets the caption of another clip (a cyclic shift along a random order: nobody keeps
    its own). The control for what audio-text alignment adds: the captions' words are unchanged."""
    if len(pairs) < 2:
        return pairs
    order = np.random.default_rng(seed).permutation(len(pairs))
    donor = np.empty_like(order)
    donor[order] = np.roll(order, 1)
    return [replace(p, caption=pairs[int(donor[i])].caption, captions=pairs[int(donor[i])].captions) for i, p in enumerate(pairs)]


class AudioCaptionDataset(Dataset):
    """Items: {audio_id, caption, chunks [C, S] float32, chunk_mask [C] bool} or a `Skipped`.

    `max_clips` and `captions="shuffled"` are ablation controls (corpus size, caption alignment).
    `caption_variants`: one of a record's phrasings per epoch (`caption_for`) instead of `caption`;
    `augment`: per-chunk augmentation (mulap.audio.augment). Both are for training splits."""

    def __init__(
        self,
        data_dir: str | Path,
        split: str,
        sample_rate: int = 16_000,
        max_len_seconds: float = 20.0,
        chunk_seconds: float = 3.0,
        audio_dir: str = "audio",
        random_crop: bool = False,
        on_bad_sample: str = "error",
        max_clips: int | None = None,
        captions: str = "aligned",
        seed: int = 0,
        caption_variants: bool = False,
        augment: Augment | None = None,
    ):
        self.pairs, self.skipped_records = read_split(data_dir, split, audio_dir, on_bad_sample)
        if not self.pairs:
            raise DatasetError(f"{Path(data_dir) / SPLIT_FILES[split]}: no usable records")
        if captions not in ("aligned", "shuffled"):
            raise ValueError(f"dataset_config.captions must be 'aligned' or 'shuffled', got {captions!r}")
        self.pairs = subset_pairs(self.pairs, max_clips, seed)
        if captions == "shuffled":
            self.pairs = shuffle_captions(self.pairs, seed)
        self.sample_rate = sample_rate
        self.chunk_len = chunk_samples(sample_rate, chunk_seconds)
        self.max_chunks = max(1, int(max_len_seconds // chunk_seconds))
        self.random_crop = random_crop
        self.on_bad_sample = on_bad_sample
        self.caption_variants, self.augment = caption_variants, augment
        self.seed, self.epoch = int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        """Random crops, phrasings and augmentation are drawn from (seed, epoch, index): new every epoch, and
        the same in a resumed run."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int):
        pair = self.pairs[i]
        try:
            wave = load_audio(pair.audio_path, self.sample_rate)
        except AudioError as exc:
            msg = f"record audio_id {pair.audio_id!r}: {exc}"
            if self.on_bad_sample == "error":
                raise DatasetError(msg) from None
            log.warning("skipping %s", msg)
            return Skipped(str(pair.audio_path), str(exc))
        # a function of (seed, epoch, clip) only: crops change from epoch to epoch, do not depend on the
        # number of workers, and a resumed run draws the ones an uninterrupted run would
        rng = np.random.default_rng((self.seed, self.epoch, i)) if self.random_crop else None
        caption = caption_for(pair.phrasings, self.seed, self.epoch, i) if self.caption_variants else pair.caption
        aug_rng = augment_rng(self.seed, self.epoch, i) if self.augment is not None else None
        return clip_item(pair.audio_id, caption, wave, self.chunk_len, self.max_chunks, rng, self.augment, aug_rng)


def clip_item(
    audio_id: str,
    caption: str,
    wave: np.ndarray,
    chunk_len: int,
    max_chunks: int,
    crop_rng: np.random.Generator | None,
    augment: Augment | None = None,
    aug_rng: np.random.Generator | None = None,
) -> dict:
    """One training item from a decoded clip [T]: a random `max_chunks` window drawn with `crop_rng` (None:
    the start), cut into chunks [max_chunks, chunk_len] with a mask of the real ones [max_chunks]; with
    `augment`, each real chunk shifted and augmented with draws from `aug_rng`."""
    window = max_chunks * chunk_len
    start = 0
    if crop_rng is not None and len(wave) > window:
        start = int(crop_rng.integers(0, len(wave) - window + 1))  # as mulap.audio.chunks.random_crop draws it
    chunks, mask = chunk_with_mask(wave[start : start + window], chunk_len, max_chunks)
    if augment is not None:
        assert aug_rng is not None  # augment comes with its draws
        chunks = augmented_chunks(wave, start, chunk_len, int(mask.sum()), max_chunks, augment, aug_rng)
    return {"audio_id": audio_id, "caption": caption, "chunks": chunks, "chunk_mask": mask}


class Collate:
    """Batch items: waveforms trimmed to the longest clip's chunk count, captions tokenised with dynamic padding.

    Output: waveforms [B, C, S], chunk_mask [B, C], input_ids / attention_mask / maskable [B, L],
    audio_ids, captions, n_skipped (items dropped from this batch, counted by the caller).
    """

    def __init__(self, tokenizer, max_seq_length: int = 64):
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length

    def __call__(self, items: list) -> dict:
        good = [it for it in items if not isinstance(it, Skipped)]
        n_skipped = len(items) - len(good)
        if not good:
            return {"n_skipped": n_skipped, "empty": True}
        n_chunks = max(int(it["chunk_mask"].sum()) for it in good)
        waves = torch.from_numpy(np.stack([it["chunks"][:n_chunks] for it in good]))
        mask = torch.from_numpy(np.stack([it["chunk_mask"][:n_chunks] for it in good]))
        captions = [it["caption"] for it in good]
        enc = self.tokenizer(
            captions,
            padding=True,
            truncation=True,
            max_length=self.max_seq_length,
            return_special_tokens_mask=True,
            return_tensors="pt",
        )
        maskable = (enc["special_tokens_mask"] == 0) & (enc["attention_mask"] == 1)
        return {
            "waveforms": waves,
            "chunk_mask": mask,
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
            "maskable": maskable,
            "audio_ids": [it["audio_id"] for it in good],
            "captions": captions,
            "n_skipped": n_skipped,
            "empty": False,
        }
