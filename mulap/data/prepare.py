"""Publisher layout -> the prepared form every downstream step reads.

`prepare(task, raw_dir, out_dir)` reads a dataset with its loader (mulap.data.tasks),
decodes every clip once to 16 kHz mono float32 and writes

    <out_dir>/audio/<id>.npy     [T] float32 at 16 kHz (the seed's audio convention)
    <out_dir>/manifest.jsonl     one clip per line: {"id", "split", "audio", "target", "num_samples", "crc32", "source"}
                                 audio relative to <out_dir>; target: multilabel -> multi-hot list of 0/1,
                                 multiclass -> class index, regression -> [arousal, valence]
    <out_dir>/dataset.json       {"format_version", "task", "task_type", "label_names", "sample_rate",
                                  "source", "raw_dir", "counts", "skipped": [{"file", "reason"}], ...}

Every file is written under a temporary name and renamed, so an interrupted run never
leaves a half file; a second run reuses the clips already decoded, and datasets prepared
from the same raw folder side by side (the MTG-Jamendo subsets) share their decoded clips
through hard links. Clips whose audio is
missing or unreadable are not in the manifest: each is listed by file name with the
reason in `dataset.json["skipped"]` and in the returned report.

`load_prepared(root)` reads it back as a `PreparedDataset`; `targets(ds, split)` stacks
the targets of one split.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from mulap.audio.io import SAMPLE_RATE, AudioError, load_audio, write_audio
from mulap.data.downstream.csv import CSV_PREFIX, dataset_folder, load_csv_labels
from mulap.data.tasks import SPLITS, TASK_TYPES, RawDataset, Record, get_task
from mulap.infra.files import atomic_write_text, is_file
from mulap.infra.text_files import DatasetError, DatasetFormatError, read_json, text_lines

FORMAT_VERSION = 1
MANIFEST = "manifest.jsonl"
DATASET_JSON = "dataset.json"
AUDIO_DIR = "audio"


# ---------------------------------------------------------------- prepared form (read side)


@dataclass(frozen=True)
class Item:
    """One prepared clip. audio_path: absolute path of its [T] float32 16 kHz .npy."""

    id: str
    split: str
    audio_path: Path
    target: np.ndarray
    num_samples: int


@dataclass
class PreparedDataset:
    """A prepared dataset: the items of all splits plus the task description from dataset.json."""

    root: Path
    task: str
    task_type: str
    label_names: list[str]
    items: list[Item]
    meta: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> list[Item]:
        """The items of one split, in manifest order."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return [it for it in self.items if it.split == name]


def targets(ds: PreparedDataset, split: str) -> np.ndarray:
    """Stacked targets of `split`.

    multilabel -> [N, K] float32 multi-hot; multiclass -> [N] int64 class index;
    regression -> [N, D] float32 (Emomusic: D = 2, arousal then valence, 1-9 scale).
    """
    items = ds.split(split)
    k = len(ds.label_names)
    if ds.task_type == "multiclass":
        return np.asarray([int(it.target) for it in items], dtype=np.int64)
    if not items:
        return np.zeros((0, k), dtype=np.float32)
    return np.stack([np.asarray(it.target, dtype=np.float32) for it in items])


def _parse_target(task_type: str, value: Any, k: int) -> np.ndarray:
    if task_type == "multiclass":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < k:
            raise ValueError(f"class index {value!r} outside 0..{k - 1}")
        return np.asarray(value, dtype=np.int64)
    arr = np.asarray(value, dtype=np.float32)
    if arr.shape != (k,):
        raise ValueError(f"target of shape {arr.shape}, expected ({k},)")
    if task_type == "multilabel" and not np.isin(arr, (0.0, 1.0)).all():
        raise ValueError("multi-hot target holds values other than 0/1")
    return arr


def load_prepared(root: str | Path, check_files: bool = False) -> PreparedDataset:
    """Read a prepared dataset folder (see the module docstring).

    Raises FileNotFoundError when `root` was never prepared, DatasetFormatError naming
    the file and line for a corrupt dataset.json / manifest.jsonl. With `check_files`,
    also checks that every audio file exists.
    """
    root = Path(root)
    meta_path, man_path = root / DATASET_JSON, root / MANIFEST
    if not meta_path.is_file() or not man_path.is_file():
        raise FileNotFoundError(
            f"{root}: not a prepared dataset ({DATASET_JSON} and {MANIFEST} missing); run `mulap prepare <task> <raw_dir>` first"
        )
    meta = read_json(meta_path)
    if not isinstance(meta, dict):
        raise DatasetFormatError(meta_path, f"expected a JSON object, got {type(meta).__name__}")
    for key in ("format_version", "task", "task_type", "label_names"):
        if key not in meta:
            raise DatasetFormatError(meta_path, f"missing key {key!r}")
    if meta["format_version"] != FORMAT_VERSION:
        raise DatasetFormatError(meta_path, f"format_version {meta['format_version']} is not {FORMAT_VERSION}; prepare it again")
    if meta["task_type"] not in TASK_TYPES:
        raise DatasetFormatError(meta_path, f"unknown task_type {meta['task_type']!r}")
    if meta.get("sample_rate", SAMPLE_RATE) != SAMPLE_RATE:
        raise DatasetFormatError(meta_path, f"sample_rate {meta.get('sample_rate')} is not {SAMPLE_RATE}")
    task_type, labels = meta["task_type"], list(meta["label_names"])
    items: list[Item] = []
    seen: dict[str, int] = {}
    for n, line in text_lines(man_path):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            cid, split, audio = str(rec["id"]), rec["split"], rec["audio"]
            if split not in SPLITS:
                raise ValueError(f"split {split!r} not in {SPLITS}")
            if not isinstance(audio, str) or not audio:
                raise ValueError(f"audio {audio!r} is not a file name")
            if cid in seen:
                raise ValueError(f"id {cid!r} appears twice (first at line {seen[cid]})")
            target = _parse_target(task_type, rec["target"], len(labels))
            num = int(rec.get("num_samples", -1))
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise DatasetFormatError(man_path, what, line=n) from None
        seen[cid] = n
        path = root / audio
        if check_files and not is_file(path):
            raise DatasetFormatError(man_path, f"audio file {path} is missing", line=n)
        items.append(Item(cid, split, path, target, num))
    return PreparedDataset(root=root, task=meta["task"], task_type=task_type, label_names=labels, items=items, meta=meta)


# ---------------------------------------------------------------- prepare (write side)


@dataclass
class PrepareReport:
    """What a `prepare` run did. skipped: [{"file", "reason"}] for every clip left out."""

    task: str
    out_dir: Path
    counts: dict[str, int]
    decoded: int
    reused: int
    skipped: list[dict[str, str]]
    seconds: float
    audio_hours: float

    def summary(self) -> str:
        """A few human-readable lines (what the CLI prints)."""
        lines = [
            f"{self.task}: {sum(self.counts.values())} clips -> {self.out_dir}",
            "  " + ", ".join(f"{s} {n}" for s, n in self.counts.items()) + f"; {self.audio_hours:.2f} h of audio",
            f"  decoded {self.decoded}, reused {self.reused}, skipped {len(self.skipped)} in {self.seconds:.1f} s",
        ]
        lines += [f"  skipped {s['file']}: {s['reason']}" for s in self.skipped]
        return "\n".join(lines)


def _existing_samples(path: Path) -> int | None:
    """Length of an already-written clip, or None when absent or not a usable [T] float32 array."""
    if not path.is_file():
        return None
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception:  # noqa: BLE001 - any failure to open means: not a usable clip (decoded again)
        return None
    if arr.ndim != 1 or arr.dtype != np.float32 or arr.size == 0:
        return None
    return int(arr.shape[0])


def _sibling_audio_dirs(out: Path, raw: Path) -> list[Path]:
    """audio/ folders of other datasets prepared from the same raw folder next to `out`.

    The MTG-Jamendo subsets share their tracks: a clip decoded for one is hard-linked
    (or copied) into the others instead of being decoded again.
    """
    found: list[Path] = []
    if not out.parent.is_dir():
        return found
    for d in sorted(out.parent.iterdir()):
        meta = d / DATASET_JSON
        if d.resolve() == out.resolve() or not meta.is_file() or not (d / AUDIO_DIR).is_dir():
            continue
        try:
            same = read_json(meta).get("raw_dir") == str(raw.resolve())
        except (OSError, DatasetError, AttributeError):
            continue  # not a dataset we can share with
        if same:
            found.append(d / AUDIO_DIR)
    return found


def _link_or_copy(src: Path, dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.tmp{dest.suffix}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:  # another file system, or no hard links there
        shutil.copyfile(src, tmp)
    tmp.replace(dest)


def audio_crc32(path: Path) -> str:
    """CRC-32 of a prepared clip's samples (its .npy array), as 8 hex digits: the manifest records it, so the manifest
    (and the embedding cache's key, mulap.inference.cache.cache_key) changes whenever the audio does. Two datasets
    with the same ids, labels and lengths but other sounds (one task rendered through two soundfonts) then never
    share cached embeddings."""
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    return f"{zlib.crc32(np.ascontiguousarray(array).tobytes()):08x}"


def _decode_one(rec: Record, audio_dir: Path, siblings: Sequence[Path] = ()) -> tuple[str, int, str | None]:
    """-> ("reused"|"decoded"|"skipped", num_samples, reason)."""
    dest = audio_dir / f"{rec.id}.npy"
    n = _existing_samples(dest)
    if n is not None:
        return "reused", n, None
    for sib in siblings:
        src = sib / dest.name
        n = _existing_samples(src)
        if n is not None:
            _link_or_copy(src, dest)
            return "reused", n, None
    try:
        wave = load_audio(rec.audio, SAMPLE_RATE)
    except AudioError as exc:
        return "skipped", 0, exc.reason
    write_audio(dest, wave, SAMPLE_RATE)
    return "decoded", int(wave.shape[0]), None


def _target_json(task_type: str, target: Any) -> Any:
    if task_type == "multiclass":
        return int(target)
    if task_type == "multilabel":
        return [int(v) for v in np.asarray(target)]
    return [float(v) for v in np.asarray(target)]


def _relative_source(path: Path, raw: Path) -> str:
    try:
        return str(path.resolve().relative_to(raw.resolve()))
    except ValueError:
        return str(path)


def prepare(
    task: str,
    raw_dir: str | Path,
    out_dir: str | Path,
    num_workers: int = 2,
    progress: bool = True,
    dataset: RawDataset | None = None,
) -> PrepareReport:
    """Read `task`'s raw data in its publisher layout from `raw_dir` and write the prepared form to `out_dir`.

    num_workers: decoding threads (libsndfile and soxr release the GIL, so threads
    decode in parallel without copying arrays between processes). dataset: the records, when
    already read (`mulap prepare csv`; raw_dir is then the folder its sources are relative to).
    """
    start = time.perf_counter()
    raw = Path(raw_dir)
    ds: RawDataset = dataset if dataset is not None else get_task(task).loader(raw)
    spec = get_task(task).resolved(ds.task_type)
    out = Path(out_dir)
    audio_dir = out / AUDIO_DIR
    audio_dir.mkdir(parents=True, exist_ok=True)

    siblings = _sibling_audio_dirs(out, raw)

    def work(rec: Record) -> tuple[str, int, str | None]:
        return _decode_one(rec, audio_dir, siblings)

    bar = tqdm(total=len(ds.records), desc=f"prepare {task}", unit="clip", disable=not progress)
    outcomes = []
    try:
        if num_workers > 1:
            with ThreadPoolExecutor(max_workers=num_workers) as pool:
                for res in pool.map(work, ds.records):
                    outcomes.append(res)
                    bar.update(1)
        else:
            for rec in ds.records:
                outcomes.append(work(rec))
                bar.update(1)
    finally:
        bar.close()

    lines, skipped = [], [s.to_dict() for s in ds.skipped]
    counts = {s: 0 for s in SPLITS}
    decoded = reused = 0
    total_samples = 0
    for rec, (status, n, reason) in zip(ds.records, outcomes, strict=True):
        if status == "skipped":
            skipped.append({"file": str(rec.audio), "reason": reason or "unreadable"})
            continue
        decoded += status == "decoded"
        reused += status == "reused"
        counts[rec.split] += 1
        total_samples += n
        entry = {
            "id": rec.id,
            "split": rec.split,
            "audio": f"{AUDIO_DIR}/{rec.id}.npy",
            "target": _target_json(ds.task_type, rec.target),
            "num_samples": n,
            "crc32": audio_crc32(out / AUDIO_DIR / f"{rec.id}.npy"),
            "source": _relative_source(rec.audio, raw),
        }
        lines.append(json.dumps(entry, ensure_ascii=False))
    atomic_write_text(out / MANIFEST, "\n".join(lines) + ("\n" if lines else ""))
    meta = {
        "format_version": FORMAT_VERSION,
        "task": task,
        "dataset": ds.name,
        "task_type": ds.task_type,
        "label_names": ds.label_names,
        "sample_rate": SAMPLE_RATE,
        "primary_metric": spec.primary_metric,
        "higher_is_better": spec.higher_is_better,
        "raw_dir": str(raw.resolve()),
        "source": ds.source,
        "counts": counts,
        "skipped": skipped,
    }
    atomic_write_text(out / DATASET_JSON, json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    return PrepareReport(
        task=task,
        out_dir=out,
        counts=counts,
        decoded=decoded,
        reused=reused,
        skipped=skipped,
        seconds=time.perf_counter() - start,
        audio_hours=total_samples / SAMPLE_RATE / 3600.0,
    )


__all__ = ["prepare", "PrepareReport", "load_prepared", "PreparedDataset", "Item", "targets", "FORMAT_VERSION"]


def prepare_csv(
    labels_csv: str | Path,
    audio_dir: str | Path,
    name: str,
    data_root: str | Path,
    out_dir: str | Path | None = None,
    num_workers: int = 2,
    seed: int = 0,
    progress: bool = True,
):
    """`mulap prepare csv`: decode the listed files into <data_root>/datasets/csv_NAME (or out_dir); train on it
    with the task name csv:NAME. Returns prepare's PrepareReport."""
    out = Path(out_dir) if out_dir else Path(data_root) / "datasets" / dataset_folder(name)
    ds = load_csv_labels(labels_csv, audio_dir, seed)
    return prepare(f"{CSV_PREFIX}{name}", audio_dir, out, num_workers=num_workers, progress=progress, dataset=ds)
