"""Tar shards in the WebDataset layout, for pre-training on corpora too large for one file per clip.

    <out>/train-000000.tar ...   members <key>.flac (or <key>.npy) + <key>.json, in key order;
    <out>/val-000000.tar ...     key = the record's position in its split (8 digits); the JSON holds
    <out>/test-000000.tar ...    {"audio_id", "caption", "split", "source"} (+ "captions", the record's
                                 phrasings, when it has several); audio is 16 kHz mono
    <out>/shards.json            the index: per split the shards in order, each with its sample
                                 count, size in bytes, largest member and longest clip
                                 (max_member_bytes, max_audio_samples: the most a reader reads and
                                 decodes for one sample), plus the records skipped on the way in

`write_shards` (`mulap data shard`) converts the seed's audiocaption layout; webdataset writes the
tars and opens `pipe:` / http(s) URLs, fsspec opens other URLs (s3://, gs://, ... with their
package installed).

Reading (`ShardDataset`) streams the shards without random access. Each epoch is a plan that
depends only on the index's sample counts, the seed, the epoch and the geometry (ranks, workers,
batch size): the shards are put in a seeded random order, the concatenated sample sequence is cut
into equal contiguous ranges per rank and, within a rank, per dataloader worker (a shard on a
boundary is read in part by both neighbours), each worker shuffles its range through a buffer and
cuts it into batches. Every sample is sent once per epoch, and every rank yields the same number
of batches (a rank with fewer samples makes its batches one sample smaller), so DDP never waits on
a rank that ran dry. Because the plan is known in advance, a resumed run skips exactly the batches
the checkpoint says were consumed: shards they used up are not opened again and no sample of the
epoch is repeated.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
import shlex
import shutil
import tarfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from mulap.audio.augment import Augment, augment_rng
from mulap.audio.chunks import chunk_samples
from mulap.audio.io import AudioError, iter_blocks, load_audio
from mulap.data.audiocaption import SPLIT_FILES, DatasetError, Skipped, caption_for, clip_item, read_split
from mulap.infra.extras import require
from mulap.infra.files import unlink_quietly, write_error, write_json
from mulap.infra.paths import is_url
from mulap.infra.text_files import DatasetFormatError, decode_text, read_json

log = logging.getLogger(__name__)

INDEX = "shards.json"
INDEX_FORMAT = "mulap-shards/1"
AUDIO_FORMATS = ("flac", "npy")
_WRITTEN_NAME = re.compile(r"^(train|val|test)-\d{6}\.tar$")  # the names `mulap data shard` writes
# the names an index may list: plain file names that no shell, URL or path reads as anything else
# (no separators, quotes, spaces or leading '-' / '.'); every name `mulap data shard` writes is one
SHARD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\.tar")
MIN_SAMPLE_BYTES = 1024  # a sample is at least two members, each with a 512-byte tar header
MAX_SPLIT_SAMPLES = 10**8
MAX_MEMBER_BYTES = 2**30  # the most one member may take in memory, read or decoded, whatever an index says
_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


# our __len__ is exact: every worker yields the batches the plan gives it
warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")


class ShardError(DatasetError):
    """A problem with a shard set: the message names the index or shard and what is wrong."""


def parse_size(text: str | int) -> int:
    """'500MB' -> 500_000_000, '64MiB' -> 67_108_864, '1000' -> 1000 (bytes)."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    if not m or m.group(2).upper() not in _UNITS:
        raise ValueError(f"shard size {text!r}: expected a number of bytes with an optional unit (e.g. 500MB, 64MiB)")
    size = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    if size < 1:
        raise ValueError(f"shard size {text!r} must be positive")
    return size


# -- writing -------------------------------------------------------------------------------------
def _encode(job: tuple) -> tuple:
    """Worker: (key, audio_id, phrasings, split, path, fmt, sample_rate) -> (key, json bytes, audio bytes | None, error,
    audio samples)."""
    key, audio_id, phrasings, split, path, fmt, sample_rate = job
    try:
        wave = load_audio(path, sample_rate)
    except AudioError as exc:
        return key, None, None, str(exc), 0
    buf = io.BytesIO()
    if fmt == "npy":
        np.save(buf, wave)
    else:
        import soundfile as sf

        sf.write(buf, np.clip(wave, -1.0, 1.0), sample_rate, format="FLAC", subtype="PCM_16")
    meta = {"audio_id": audio_id, "caption": phrasings[0], "split": split, "source": str(path)}
    if len(phrasings) > 1:  # the record's other phrasings (audiocaption `captions`)
        meta["captions"] = list(phrasings)
    return key, json.dumps(meta, ensure_ascii=False).encode("utf-8"), buf.getvalue(), None, len(wave)


def _previous_outputs(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.name == INDEX or _WRITTEN_NAME.match(p.name) or p.name.startswith(".shard-tmp"))


def write_shards(
    src: str | Path,
    out: str | Path,
    shard_size: int | str = "500MB",
    fmt: str = "flac",
    overwrite: bool = False,
    audio_dir: str = "audio",
    sample_rate: int = 16_000,
    num_workers: int = 2,
    progress: bool = True,
) -> dict:
    """Convert every split of an audiocaption folder into tar shards + shards.json; returns the index.

    Audio is decoded and resampled once (16 kHz mono). Records or clips that cannot be used are
    skipped, logged and listed in the index under "skipped". Each shard is written under a
    temporary name and renamed when complete; the index is written last, so an interrupted run
    leaves no index and is refused by readers. A write that fails (disk full, read-only, ...) is
    one WriteError naming the file, with the space free and about how much the run needs; the
    files of the run are removed, so the same command runs again once there is space.
    """
    TarWriter = require("shards", "webdataset.writer", "to write shards").TarWriter

    src, out = Path(src), Path(out)
    if fmt not in AUDIO_FORMATS:
        raise ValueError(f"--format must be one of {', '.join(AUDIO_FORMATS)}, got {fmt!r}")
    max_bytes = parse_size(shard_size)
    splits = [s for s, f in SPLIT_FILES.items() if (src / f).is_file()]
    if "train" not in splits:
        raise DatasetError(
            f"{src}: no {SPLIT_FILES['train']} (expected the audiocaption layout: "
            f"{', '.join(SPLIT_FILES.values())} and {audio_dir}/)"
        )
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(f"{out} is not empty; pass --overwrite to replace the shards in it")
        stale = _previous_outputs(out)
        others = sorted(p.name for p in out.iterdir() if p not in stale)
        if others:
            raise ValueError(
                f"{out} holds files that are not shards ({', '.join(others[:5])}); "
                "choose an empty folder (--overwrite only replaces shards and shards.json)"
            )
    else:
        stale = []
    read = {split: read_split(src, split, audio_dir, on_bad="skip") for split in splits}
    total = sum(len(pairs) for pairs, _ in read.values())

    index: dict[str, Any] = {
        "format": INDEX_FORMAT,
        "audio_format": fmt,
        "sample_rate": sample_rate,
        "source": str(src.resolve()),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "splits": {},
        "skipped": [],
    }
    written: list[Path] = []  # this run's files: removed if a write fails, so that the same command runs again
    target, done, payload = out, 0, 0  # the file being written; clips and bytes written so far
    writer: Any = None  # the open shard: webdataset's TarWriter
    current: dict[str, Any] | None = None
    ctx = get_context("fork") if num_workers > 0 else None
    pool = ctx.Pool(num_workers) if ctx else None
    try:
        for p in stale:
            target = p
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        target = out
        out.mkdir(parents=True, exist_ok=True)
        for split in splits:
            pairs, skipped = read[split]
            index["skipped"] += [{"split": split, "where": s.where, "reason": s.reason} for s in skipped]
            jobs = [(f"{i:08d}", p.audio_id, p.phrasings, split, p.audio_path, fmt, sample_rate) for i, p in enumerate(pairs)]
            results = pool.imap(_encode, jobs, chunksize=4) if pool else map(_encode, jobs)
            shards, writer, current = [], None, None

            # ruff: disable[B023] - close_current reads the loop's writer and shard as they are when it is called (late binding on purpose)
            def close_current():
                nonlocal payload
                assert current is not None  # called with a shard open
                writer.close()
                current.pop("file").close()
                final = out / current["name"]
                written.append(final)
                (out / f".shard-tmp-{current['name']}").replace(final)
                current["bytes"] = final.stat().st_size
                payload += current["bytes"] - current["payload"]  # the tar's padding: what a shard really takes
                shards.append(current)

            # ruff: enable[B023]

            t0 = time.time()
            for n, (key, meta, audio, error, length) in enumerate(results, 1):
                if error is not None:
                    log.warning("skipping %s record %s: %s", split, key, error)
                    index["skipped"].append(
                        {"split": split, "where": f"{SPLIT_FILES[split]}, record {int(key)}", "reason": error}
                    )
                    continue
                if current is None or current["payload"] >= max_bytes:
                    if current is not None:
                        close_current()
                    current = {
                        "name": f"{split}-{len(shards):06d}.tar",
                        "samples": 0,
                        "max_member_bytes": 0,
                        "max_audio_samples": 0,
                        "payload": 0,
                    }
                    target = out / current["name"]
                    written.append(out / f".shard-tmp-{current['name']}")
                    current["file"] = open(written[-1], "wb")
                    writer = TarWriter(current["file"], encoder=False, mtime=0.0)
                writer.write({"__key__": key, fmt: audio, "json": meta})
                current["samples"] += 1
                current["max_member_bytes"] = max(current["max_member_bytes"], len(audio), len(meta))  # readers' limits
                current["max_audio_samples"] = max(current["max_audio_samples"], length)
                current["payload"] += len(audio) + len(meta) + 1024  # two tar headers
                done, payload = done + 1, payload + len(audio) + len(meta) + 1024
                if progress and n % 500 == 0:
                    print(f"  {split}: {n}/{len(jobs)} clips ({n / (time.time() - t0):.1f}/s)", flush=True)
            if current is not None:
                close_current()
            for s in shards:
                del s["payload"]
            index["splits"][split] = {"samples": sum(s["samples"] for s in shards), "shards": shards}
            if progress:
                print(f"{split}: {index['splits'][split]['samples']} clips in {len(shards)} shard(s)", flush=True)
        target = out / INDEX
        write_json(target, index)
    except (OSError, KeyboardInterrupt) as exc:  # a full disk, a read-only folder, Ctrl-C: nothing left that looks
        _close_quietly(writer)  # like shards, so the same command runs again (first the tar stream, else it tries to
        if current is not None:  # write its buffer when garbage-collected; then the shard being written)
            _close_quietly(current.get("file"))
        for p in written:
            unlink_quietly(p)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise write_error(exc, target, round(payload / done * total) if done else None) from None
    finally:
        if pool:
            pool.terminate()
    return index


def _close_quietly(fh) -> None:
    try:
        if fh is not None:
            fh.close()
    except (OSError, ValueError):  # the close flushes, and the disk is full (or the file is closed already)
        pass


# -- the index -----------------------------------------------------------------------------------
def _join(base: str, name: str) -> str:
    return f"{base.rstrip('/')}/{name}" if is_url(base) else str(Path(base) / name)


def read_index(data_dir: str | Path) -> dict:
    """Read and check `<data_dir>/shards.json` (a local folder or an fsspec URL). The index is data
    someone else may have written: every field is checked here, before any shard is opened or any
    `pipe:` command runs, and a problem is one ShardError naming the index (and split and shard)."""
    where = _join(str(data_dir), INDEX)
    try:
        if is_url(str(data_dir)):
            import fsspec

            with fsspec.open(where, "rb") as fh:
                raw = fh.read()
        else:
            raw = Path(where).read_bytes()
    except FileNotFoundError:
        raise ShardError(f"{where}: no shard index (make one with `mulap data shard <audiocaption dir> {data_dir}`)") from None
    except OSError as exc:
        raise ShardError(f"{where}: cannot be read ({exc.strerror or exc})") from None
    try:
        index = read_json(where, decode_text(raw, where))
    except DatasetFormatError as exc:
        raise ShardError(str(exc)) from None
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        raise ShardError(f"{where}: not a mulap shard index (format {INDEX_FORMAT!r} expected)")
    if index.get("audio_format") not in AUDIO_FORMATS or not isinstance(index.get("splits"), dict):
        raise ShardError(f"{where}: audio_format must be one of {AUDIO_FORMATS} and splits a mapping")
    rate = index.get("sample_rate", 16_000)
    if not _count(rate) or not 1000 <= rate <= 1_000_000:
        raise ShardError(f"{where}: sample_rate must be a whole number of Hz from 1000 to 1000000, got {rate!r}")
    for split, entry in index["splits"].items():
        shards = entry.get("shards") if isinstance(entry, dict) else None
        if not isinstance(shards, list):
            raise ShardError(f"{where}: split {split!r} has no list of shards")
        names = set()
        for i, s in enumerate(shards):
            at = f"{where}: split {split!r}, shard {i}"
            if not isinstance(s, dict):
                raise ShardError(f"{at}: expected an object with name, samples and bytes, got {type(s).__name__}")
            name = s.get("name")
            if not isinstance(name, str) or not SHARD_NAME.fullmatch(name):
                raise ShardError(
                    f"{at}: name {name!r} is not a plain shard name (letters, digits, '.', '_' and '-', "
                    "starting with a letter or digit, ending in .tar)"
                )
            if name in names:
                raise ShardError(f"{at}: name {name!r} is listed twice")
            names.add(name)
            for key in ("samples", "bytes", *(k for k in ("max_member_bytes", "max_audio_samples") if k in s)):
                if not _count(s.get(key)):
                    raise ShardError(f"{at} ({name}): {key} must be a whole number >= 0, got {s.get(key)!r}")
            if s["samples"] * MIN_SAMPLE_BYTES > s["bytes"]:
                raise ShardError(
                    f"{at} ({name}): {s['samples']} samples cannot fit in {s['bytes']} bytes (each takes at "
                    f"least {MIN_SAMPLE_BYTES}: two tar headers)"
                )
            if s.get("max_member_bytes", 0) > s["bytes"]:
                raise ShardError(
                    f"{at} ({name}): max_member_bytes {s['max_member_bytes']} is more than the shard's {s['bytes']} bytes"
                )
        total = sum(s["samples"] for s in shards)
        if not _count(entry.get("samples")):
            raise ShardError(f"{where}: split {split!r}: samples must be a whole number >= 0, got {entry.get('samples')!r}")
        if entry["samples"] != total:
            raise ShardError(f"{where}: split {split!r} says {entry['samples']} samples but its shards add up to {total}")
        if total > MAX_SPLIT_SAMPLES:
            raise ShardError(
                f"{where}: split {split!r} has {total} samples, more than the {MAX_SPLIT_SAMPLES} a split may "
                "have (the epoch plan keeps about 110 bytes per sample in memory)"
            )
    return index


def _count(value) -> bool:
    """A JSON whole number >= 0 (not a bool, not 4.0)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def shard_location(data_dir: str | Path, name: str, template: str | None = None) -> str:
    """Where shard `name` is read from: `template` with {name} filled in (e.g.
    'pipe:aws s3 cp s3://bucket/corpus/{name} -'), else `<data_dir>/<name>`."""
    if not template:
        return _join(str(data_dir), name)
    # read_index only lets plain names through; quoting them as well keeps a command line safe
    # whatever calls this (a quoted plain name is the name itself)
    return template.format(name=shlex.quote(name) if template.startswith("pipe:") else name)


def verify_shards(index: dict, data_dir: str | Path, split: str, template: str | None = None) -> None:
    """Refuse a split whose shards are missing or differ in size from the index. Local files and
    fsspec URLs are checked here; `pipe:` and http(s) shards when they are read (their sample counts)."""
    if split not in index["splits"]:
        raise ShardError(f"{_join(str(data_dir), INDEX)}: no {split!r} split (has {', '.join(index['splits'])})")
    for s in index["splits"][split]["shards"]:
        loc = shard_location(data_dir, s["name"], template)
        if loc.startswith(("pipe:", "http://", "https://")):
            continue
        try:
            if is_url(loc):
                import fsspec

                fs, path = fsspec.core.url_to_fs(loc)
                size = fs.size(path)
            else:
                size = Path(loc).stat().st_size
        except FileNotFoundError:
            raise ShardError(f"{loc}: shard listed in the index {INDEX} is missing") from None
        if size != s["bytes"]:
            raise ShardError(
                f"{loc}: {size} bytes but the index {INDEX} says {s['bytes']}: the shards do not match "
                "their index (re-run `mulap data shard`)"
            )


def open_shard(location: str):
    """A readable binary stream: `pipe:` and http(s) through webdataset's gopen, other URLs through fsspec."""
    if location.startswith(("pipe:", "http://", "https://")):
        return require("shards", "webdataset.gopen", "to read shards").gopen(location, "rb")
    if is_url(location):
        import fsspec

        return fsspec.open(location, "rb").open()
    return open(location, "rb")


# -- the epoch plan (pure functions of counts) -----------------------------------------------------
Item = tuple[int, int]  # (shard number in the split, sample position in the shard)


def _split_even(total: int, parts: int) -> list[int]:
    return [(i + 1) * total // parts - i * total // parts for i in range(parts)]


def stream_segments(
    counts: list[int], order: list[int], world_size: int, num_workers: int
) -> list[list[list[tuple[int, int, int]]]]:
    """Cut the samples of the shards, concatenated in `order`, into world_size x num_workers
    contiguous ranges of equal size (+-1). Returns segments[rank][worker] = [(shard, start, stop), ...]."""
    cum = np.concatenate([[0], np.cumsum([counts[s] for s in order])]).astype(np.int64)
    total = int(cum[-1])
    out, begin = [], 0
    for rank_n in _split_even(total, world_size):
        ranks = []
        for n in _split_even(rank_n, num_workers):
            lo, hi, segs = begin, begin + n, []
            j = int(np.searchsorted(cum, lo, side="right")) - 1
            while lo < hi:
                shard_hi = int(cum[j + 1])
                take = min(hi, shard_hi)
                if take > lo:
                    segs.append((order[j], lo - int(cum[j]), take - int(cum[j])))
                lo = take
                j += 1
            ranks.append(segs)
            begin += n
        out.append(ranks)
    return out


def batch_counts(sizes: list[list[int]], batch_size: int, where: str = "") -> list[list[int]]:
    """Batches per (rank, worker) so that every rank yields the same number T of batches of at most
    `batch_size` samples: T = max over ranks of sum ceil(n / batch_size); a rank below T splits some
    of its batches further (each batch keeps >= 1 sample)."""
    need = [[math.ceil(n / batch_size) for n in rank] for rank in sizes]
    total = max(sum(r) for r in need)
    for r, rank in enumerate(sizes):
        if sum(rank) < total:
            raise ShardError(
                f"{where}: {sum(rank)} sample(s) on rank {r} cannot fill the {total} batches every rank must "
                "yield; use fewer ranks or dataloader workers, or a smaller batch"
            )
        while sum(need[r]) < total:  # one more batch for the worker whose batches are fullest
            k = max((k for k in range(len(rank)) if need[r][k] < rank[k]), key=lambda k: rank[k] / max(need[r][k], 1))
            need[r][k] += 1
    return need


def buffer_shuffle(items: Iterable, size: int, rng: np.random.Generator) -> Iterator:
    """Streaming shuffle: hold `size` items, emit a random one as each new item arrives, then drain."""
    buf: list = []
    for item in items:
        if len(buf) < size:
            buf.append(item)
            continue
        i = int(rng.integers(len(buf)))
        buf[i], item = item, buf[i]
        yield item
    rng.shuffle(buf)
    yield from buf


def worker_plan(
    segments: list[tuple[int, int, int]], n_batches: int, buffer_size: int, rng: np.random.Generator | None
) -> list[list[Item]]:
    """The batches of one worker: its samples in stream order, buffer-shuffled when `rng` is given,
    cut into `n_batches` batches of equal size (+-1)."""
    stream = ((shard, pos) for shard, start, stop in segments for pos in range(start, stop))
    items = list(buffer_shuffle(stream, buffer_size, rng) if rng is not None else stream)
    out, i = [], 0
    for size in _split_even(len(items), n_batches) if n_batches else []:
        out.append(items[i : i + size])
        i += size
    return out


def consumed_per_worker(batches_done: int, per_worker: list[int]) -> list[int]:
    """How many batches of each worker a DataLoader has delivered after `batches_done`: it takes them
    round-robin over the workers, passing over those that ran out."""
    got = [0] * len(per_worker)
    left = batches_done
    while left > 0 and any(g < n for g, n in zip(got, per_worker)):
        for k, n in enumerate(per_worker):
            if left and got[k] < n:
                got[k] += 1
                left -= 1
    return got


@dataclass(frozen=True)
class Geometry:
    """What an epoch plan depends on besides the seed and the epoch."""

    samples: int
    world_size: int
    num_workers: int
    batch_size: int
    buffer_size: int
    shuffle: bool


# -- reading ---------------------------------------------------------------------------------------
class ShardDataset(IterableDataset):
    """Batches of items {audio_id, caption, chunks [C, S], chunk_mask [C]} (or `Skipped`) from one
    split's shards; iterate it through a DataLoader with batch_size=None and the Collate.

    rank / world_size: this process among the DDP ranks; num_workers: the DataLoader's workers
    (0 = read in the main process). `epoch` and `skip_batches` are set before each iteration
    (ShardLoader does it): the epoch picks the plan, skip_batches the batches a resumed run has
    already trained on."""

    def __init__(
        self,
        data_dir: str | Path,
        split: str,
        *,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        shuffle: bool = False,
        buffer_size: int = 500,
        seed: int = 0,
        sample_rate: int = 16_000,
        max_len_seconds: float = 20.0,
        chunk_seconds: float = 3.0,
        random_crop: bool = False,
        on_bad_sample: str = "error",
        shard_url: str | None = None,
        caption_variants: bool = False,
        augment: Augment | None = None,
    ):
        require("shards", "webdataset", "to read shards")  # here, not in the data loader's workers
        if on_bad_sample not in ("error", "skip"):
            raise DatasetError(f"on_bad_sample must be 'error' or 'skip', got {on_bad_sample!r}")
        if batch_size < 1 or buffer_size < 0:
            raise ValueError(f"batch_size must be >= 1 and shuffle_buffer >= 0, got {batch_size}, {buffer_size}")
        self.index = read_index(data_dir)
        verify_shards(self.index, data_dir, split, shard_url)
        self.data_dir, self.split, self.shard_url = str(data_dir), split, shard_url
        self.shards = self.index["splits"][split]["shards"]
        self.rank, self.seed = rank, seed
        self.geometry = Geometry(
            self.index["splits"][split]["samples"],
            world_size,
            max(1, num_workers),
            batch_size,
            buffer_size if shuffle else 0,
            shuffle,
        )
        if self.geometry.samples == 0:
            raise ShardError(f"{_join(self.data_dir, INDEX)}: split {split!r} has no samples")
        self.index_rate = int(self.index.get("sample_rate", 16_000))
        self.sample_rate = sample_rate
        self.chunk_len = chunk_samples(sample_rate, chunk_seconds)
        self.max_chunks = max(1, int(max_len_seconds // chunk_seconds))
        self.random_crop, self.on_bad_sample = random_crop, on_bad_sample
        self.caption_variants, self.augment = caption_variants, augment
        self.suffix = "." + self.index["audio_format"]
        sizes = [[sum(stop - start for _, start, stop in w) for w in r] for r in self._segments(0)]
        self.per_worker = batch_counts(sizes, batch_size, f"{_join(self.data_dir, INDEX)}, split {split!r}")
        self.epoch, self.skip_batches = 0, 0
        self.skipped_records: list[Skipped] = []  # the folder layout's records skipped at opening; here at `data shard`

    def __len__(self) -> int:
        """Batches per rank and epoch (the same on every rank and every epoch)."""
        return sum(self.per_worker[self.rank])

    def _segments(self, epoch: int):
        counts = [s["samples"] for s in self.shards]
        order = list(range(len(counts)))
        if self.geometry.shuffle:
            order = [int(i) for i in np.random.default_rng([self.seed, epoch, 1]).permutation(len(counts))]
        return stream_segments(counts, order, self.geometry.world_size, self.geometry.num_workers)

    def plan(self, epoch: int, rank: int, worker: int, segments=None) -> list[list[Item]]:
        """The batches (lists of (shard, position)) worker `worker` of rank `rank` yields in `epoch`
        (`segments`: that worker's `_segments(epoch)[rank][worker]`, when the caller has them)."""
        g = self.geometry
        rng = np.random.default_rng([self.seed, epoch, 2, rank, worker]) if g.shuffle else None
        if segments is None:
            segments = self._segments(epoch)[rank][worker]
        return worker_plan(segments, self.per_worker[rank][worker], g.buffer_size, rng)

    def __iter__(self) -> Iterator[list]:
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info else (0, 1)
        if n_workers != self.geometry.num_workers:
            raise RuntimeError(f"ShardDataset planned for {self.geometry.num_workers} dataloader worker(s), runs in {n_workers}")
        skip = consumed_per_worker(self.skip_batches, self.per_worker[self.rank])[worker]
        segments = self._segments(self.epoch)[self.rank][worker]
        batches = self.plan(self.epoch, self.rank, worker, segments)
        done = {item for b in batches[:skip] for item in b}
        reader = self._read(segments, done)
        pending: dict[Item, object] = {}
        for batch in batches[skip:]:
            while any(item not in pending for item in batch):
                item, value = next(reader)
                pending[item] = value
            yield [self._item(item, pending.pop(item)) for item in batch]
        for item, _ in reader:  # the end of the last shard: checked against the index
            raise RuntimeError(f"shard reader and plan disagree at {item}")

    # members of the shards, in stream order, raw (decoded only when their batch is formed)
    def _read(self, segments, done: set) -> Iterator[tuple[Item, object]]:
        for shard, start, stop in segments:
            if all((shard, p) in done for p in range(start, stop)):
                continue  # used up before the interruption: not opened again
            yield from self._read_shard(shard, start, stop, done)

    def _read_shard(self, shard: int, start: int, stop: int, done: set) -> Iterator[tuple[Item, object]]:
        entry = self.shards[shard]
        loc = shard_location(self.data_dir, entry["name"], self.shard_url)
        pos, error = 0, None
        try:
            with open_shard(loc) as stream:
                for key, files in _samples(_Bounded(stream, entry["bytes"]), *self._member_limit(entry)):
                    if pos >= stop:
                        if stop == entry["samples"]:
                            raise ShardError(
                                f"{loc}: more samples than the {entry['samples']} of the index {INDEX}: the shard "
                                "does not match its index (re-run `mulap data shard`)"
                            )
                        break
                    if pos >= start and (shard, pos) not in done:
                        yield (shard, pos), (f"{entry['name']}:{key}", files)
                    pos += 1
            if pos < stop:
                error = f"ends after {pos} of the {entry['samples']} samples of the index (truncated or corrupt)"
        except _Refused as exc:
            error = f"{exc}; the shard is not read further (its samples from {pos} on)"
        except (tarfile.TarError, OSError, EOFError) as exc:
            error = f"unreadable from sample {pos} on ({type(exc).__name__}: {exc})"
        missing = [p for p in range(max(pos, start), stop) if (shard, p) not in done] if error is not None else []
        if missing and error is not None:  # a corrupt shard: every sample of this range not read from it is a bad sample
            log.warning("shard %s: %s; %d sample(s) lost", loc, error, len(missing))
            for p in missing:
                yield (shard, p), (f"{entry['name']}: sample {p}", Skipped(loc, error))

    @staticmethod
    def _member_limit(entry: dict) -> tuple[int, str]:
        """The most bytes a member of shard `entry` may have, and where that limit comes from."""
        limit, limit_from = entry["bytes"], f"the shard's size in {INDEX}"
        if "max_member_bytes" in entry:  # indexes written before it was recorded have the shard size only
            limit, limit_from = entry["max_member_bytes"], f"the largest member {INDEX} records for the shard"
        if limit > MAX_MEMBER_BYTES:
            limit, limit_from = MAX_MEMBER_BYTES, "the most mulap reads into memory for one member"
        return limit, limit_from

    def _decode(self, where: str, data: bytes, entry: dict) -> np.ndarray:
        """The audio of a member as load_audio gives it, decoded block by block up to a limit: a few
        KB of FLAC can hold hours of silence (1 h is 181 KB)."""
        limit, limit_from = MAX_MEMBER_BYTES // 4, "the most mulap decodes for one member"  # float32 samples
        if "max_audio_samples" in entry:  # + a little for the resampler's rounding
            recorded = math.ceil(entry["max_audio_samples"] * self.sample_rate / self.index_rate) + 16
            if recorded < limit:
                limit, limit_from = recorded, f"the longest clip {INDEX} records for the shard"
        blocks, n = [], 0
        for block in iter_blocks(where, self.sample_rate, npy_rate=self.index_rate, data=data):
            n += len(block)
            if n > limit:
                raise DatasetError(
                    f"{where}: decodes to more than {limit:,} samples ({limit / self.sample_rate:.1f} s), "
                    f"over the limit of {limit_from}"
                )
            blocks.append(block)
        return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)

    def _item(self, item: Item, value) -> dict | Skipped:
        where, files = value
        try:
            if isinstance(files, Skipped):
                raise DatasetError(f"{where}: {files.reason}")
            bad = [f.reason for f in files.values() if isinstance(f, _BadMember)]
            if bad:
                raise DatasetError(f"{where}: {bad[0]}")
            if "json" not in files or self.suffix[1:] not in files:
                raise DatasetError(f"{where}: expected members .json and {self.suffix}, found {sorted(files)}")
            meta = read_json(f"{where}.json", decode_text(files["json"], f"{where}.json"))
            audio_id, caption, phrasings = _meta_fields(meta, f"{where}.json")
            wave = self._decode(where + self.suffix, files[self.suffix[1:]], self.shards[item[0]])
        except (DatasetError, AudioError) as exc:
            if self.on_bad_sample == "error":
                raise DatasetError(f"{exc} (dataset_config.on_bad_sample=skip counts and skips such samples)") from None
            log.warning("skipping %s", exc)
            return Skipped(where, str(exc))
        # crops from (seed, epoch, shard, position): repeatable, whatever the number of workers and ranks
        rng = np.random.default_rng([self.seed, self.epoch, 3, *item]) if self.random_crop else None
        if self.caption_variants:
            caption = caption_for(phrasings, self.seed, self.epoch, *item)
        aug_rng = augment_rng(self.seed, self.epoch, *item) if self.augment is not None else None
        return clip_item(audio_id, caption, wave, self.chunk_len, self.max_chunks, rng, self.augment, aug_rng)


class _Refused(Exception):
    """A shard whose bytes are not what its index describes; what follows in it is not read."""


class _Bounded:
    """A shard stream read up to the size its index gives it: a longer stream is refused, so no header
    in it can make tarfile read more than that."""

    def __init__(self, raw, size: int):
        self.raw, self.size, self.left = raw, size, size

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(self.left + 1 if n is None or n < 0 else min(n, self.left + 1))
        if len(data) > self.left:
            raise _Refused(f"the stream is longer than the {self.size} bytes {INDEX} gives the shard")
        self.left -= len(data)
        return data


@dataclass(frozen=True)
class _BadMember:
    """A member that was not read (its sample is a bad sample)."""

    reason: str


_META = re.compile(r"__[^/]*__($|/)")  # webdataset's own entries (e.g. __index__), not samples


def _meta_fields(meta, where: str) -> tuple[str, str, tuple[str, ...]]:
    """(audio_id, caption, phrasings) of a sample's JSON member: an object whose caption is text, audio_id text or
    a whole number (anything else would become a caption like 'None' without a word) and `captions`, when there,
    a list of texts (the record's phrasings)."""
    if not isinstance(meta, dict):
        raise DatasetError(f"{where}: expected a JSON object with audio_id and caption, got {type(meta).__name__}")
    audio_id, caption = meta.get("audio_id"), meta.get("caption")
    if isinstance(audio_id, bool) or not isinstance(audio_id, (str, int)) or not isinstance(caption, str):
        raise DatasetError(
            f"{where}: audio_id must be text or a whole number and caption text, got "
            f"audio_id={audio_id!r:.40}, caption={caption!r:.40}"
        )
    phrasings = meta.get("captions") or [caption]
    if not isinstance(phrasings, list) or not all(isinstance(c, str) for c in phrasings):
        raise DatasetError(f"{where}: captions must be a list of texts, got {phrasings!r:.40}")
    return str(audio_id), caption, tuple(phrasings)


def _samples(stream, limit: int, limit_from: str) -> Iterator[tuple[str, dict]]:
    """(key, {extension: bytes}) for consecutive members with the same key (the WebDataset layout).

    A member's tar header is checked before any of its data is read: one that is not a plain file
    (a link, device, sparse file...) or declares more than `limit` bytes is not read; its sample
    comes with a _BadMember, and the reading of the shard ends (`_Refused`), since skipping a
    member could mean reading (or waiting for) as many bytes as its header declares."""
    base_plus_ext = require("shards", "webdataset.tariterators", "to read shards").base_plus_ext

    key: str | None = None
    files: dict[str, bytes | _BadMember] = {}
    with tarfile.open(fileobj=stream, mode="r|") as tar:  # plain tar: no decompression bomb
        for member in tar:
            tar.members = []  # type: ignore[attr-defined]  # typeshed leaves out TarFile.members; a stream of many members: keep no list of them
            k, ext = base_plus_ext(member.name)
            if k is None or member.isdir() or _META.match(member.name):
                continue
            if k != key and key is not None:
                yield key, files
                files = {}
            key, ext = k, ext.lower()
            problem = None
            if not member.isreg() or member.issparse():
                kind = "sparse file" if member.issparse() else "link" if member.issym() or member.islnk() else "special file"
                problem = f"member {member.name} is a {kind}, not a plain file"
            elif member.size > limit:
                problem = (
                    f"member {member.name} is {member.size:,} bytes by its tar header, over the limit of {limit:,} ({limit_from})"
                )
            if problem:
                files[ext] = _BadMember(problem)
                yield key, files
                raise _Refused(problem)
            data = tar.extractfile(member)
            assert data is not None  # a regular file (checked above)
            files[ext] = data.read()
    if key is not None:
        yield key, files


class ShardLoader(DataLoader):
    """The DataLoader of a ShardDataset, with the state a resumed run needs: the epoch and how many of
    its batches were trained on, so that the resumed epoch continues after them.

    position: returns (epoch, batches trained on in that epoch), from the trainer's loop counters
    (unlike the batches handed out, they exclude the prefetched ones). resume: a `state_dict()` of the
    interrupted run. Lightning's own loader-state restore comes too late here (it runs after
    `estimated_stepping_batches` has already started the iterator), so the pre-training DataModule
    keeps this state in its own state_dict and passes it in."""

    dataset: ShardDataset

    def __init__(
        self,
        dataset: ShardDataset,
        collate_fn: Callable,
        num_workers: int,
        position: Callable[[], tuple[int, int]],
        resume: dict | None = None,
        worker_init_fn: Callable | None = None,
    ):
        super().__init__(
            dataset,
            batch_size=None,
            num_workers=num_workers,
            collate_fn=collate_fn,
            persistent_workers=False,
            worker_init_fn=worker_init_fn,
        )
        self.position = position
        self._resume = dict(resume) if resume else None

    def __iter__(self):
        epoch, skip = self.position()[0], 0
        if self._resume is not None:  # the first iteration of a resumed run: the checkpoint's epoch (the trainer's
            r, self._resume = self._resume, None  # counters may not be restored yet when Lightning starts it)
            epoch = int(r["epoch"])
            if r["geometry"] == self._geometry():
                skip = int(r["batches"])
                log.info("resuming epoch %d of the shards after batch %d of %d", epoch, skip, len(self.dataset))
            else:
                log.warning(
                    "the shard geometry changed since the checkpoint (%s -> %s): epoch %d restarts with a new plan, "
                    "so some of its samples may be seen twice this epoch",
                    r["geometry"],
                    self._geometry(),
                    epoch,
                )
        self.dataset.epoch, self.dataset.skip_batches = epoch, skip
        return super().__iter__()

    def _geometry(self) -> dict:
        return {**self.dataset.geometry.__dict__, "seed": self.dataset.seed}

    def state_dict(self) -> dict:
        epoch, batches = self.position()
        return {"epoch": int(epoch), "batches": int(batches), "geometry": self._geometry()}

    def load_state_dict(self, state: dict) -> None:
        self._resume = dict(state)


def trained_batches(trainer) -> tuple[int, int]:
    """(epoch, batches of it that a resumed fit will not redo), from the trainer's loop counters: a
    checkpoint written in on_train_batch_end counts the batch just trained (Lightning marks it completed
    on restart), any other one the completed batches."""
    progress = trainer.fit_loop.epoch_loop.batch_progress.current
    done = progress.processed if progress.processed == progress.completed + 1 else progress.completed
    return trainer.current_epoch, done


def shard_dataset(cfg, split: str, train: bool, rank: int = 0, world_size: int = 1) -> ShardDataset:
    """The ShardDataset of a pre-training config (dataset_config.format=shards)."""
    d, t = cfg.dataset_config, cfg.training
    for key, neutral in (("train_clips", None), ("captions", "aligned")):
        if train and d.get(key, neutral) != neutral:
            raise ValueError(f"dataset_config.{key} is not available with dataset_config.format=shards")
    return ShardDataset(
        d.data_dir,
        split,
        batch_size=int(t.batch_size),
        rank=rank,
        world_size=world_size,
        num_workers=int(t.num_workers),
        shuffle=train,
        buffer_size=int(d.get("shuffle_buffer", 500)),
        seed=int(cfg.env.seed),
        sample_rate=int(d.sample_rate),
        max_len_seconds=float(d.max_len_seconds),
        chunk_seconds=float(d.chunk_seconds),
        random_crop=train and bool(d.random_crop),
        on_bad_sample=d.on_bad_sample,
        shard_url=d.get("shard_url"),
        caption_variants=train and bool(d.get("caption_variants", True)),
        augment=Augment.from_config(d) if train else None,
    )
