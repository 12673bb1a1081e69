"""Your own task: labelled audio listed in a CSV, prepared like the five built-in tasks.

    mulap prepare csv labels.csv audio/ --name guitars      # -> <data_root>/datasets/csv_guitars
    mulap downstream supervised_mtt csv:guitars
    mulap eval supervised_mtt <downstream_id>

labels.csv (UTF-8, a header row; other columns are ignored):

    file      the audio file, relative to audio_dir (or absolute); any format `mulap embed` reads
    label     single-label classification: one class name per file            (multiclass, accuracy)
    tags      or multi-label tagging: tag names separated by ';' (empty = none) (multilabel, ROC-AUC macro)
    split     optional: train, valid (or val/validation) or test per file; without the column,
              files are split 80/10/10 at random, seeded by env.seed (each split gets at least one
              file when there are three or more)

Label names are the sorted distinct labels/tags. Errors name the CSV and its line (1-based, the
header is line 1): a missing column, an empty label, an unknown split, a file listed twice, and
every listed audio file that does not exist (all of them, not just the first).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from mulap.data.downstream.base import SPLITS, DatasetFormatError, RawDataset, Record, multi_hot
from mulap.infra.files import is_file
from mulap.infra.text_files import csv_rows

CSV_PREFIX = "csv:"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_SPLIT_NAMES = {"train": "train", "valid": "valid", "val": "valid", "validation": "valid", "test": "test"}
PRIMARY_METRIC = {"multiclass": "accuracy", "multilabel": "roc_auc_macro"}
SPLIT_SHARES = (0.8, 0.1, 0.1)


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise ValueError(f"dataset name {name!r}: use letters, digits, '_' and '-' (it names the task csv:{name} and a folder)")
    return name


def dataset_folder(name: str) -> str:
    """The prepared dataset's folder name under <data_root>/datasets/."""
    return f"csv_{check_name(name)}"


def file_id(rel: str) -> str:
    """A prepared clip id (a safe file name) from the file's path as written in the CSV."""
    text = re.sub(r"[^A-Za-z0-9._+-]+", "_", rel.replace("\\", "/").replace("/", "__")).strip("._-+")
    return text or "clip"


def _rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """(column names, [(line, {column: value})]) of the non-blank records; encoding and CSV errors name the
    line (mulap.infra.text_files, as every other metadata reader)."""
    rows_in = csv_rows(path)
    header = next(rows_in, None)
    columns = [c.strip() for c in header[1]] if header else []
    rows = []
    for line, fields in rows_in:
        clean = {c: (fields[i].strip() if i < len(fields) else "") for i, c in enumerate(columns)}
        if any(clean.values()):  # blank lines are not records
            rows.append((line, clean))
    return columns, rows


def load_csv_labels(labels_csv: str | Path, audio_dir: str | Path, seed: int = 0) -> RawDataset:
    """Read labels.csv (see the module docstring) into a RawDataset whose records point into audio_dir."""
    path, root = Path(labels_csv), Path(audio_dir)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: labels CSV not found")
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: audio folder not found")
    columns, rows = _rows(path)
    if "file" not in columns:
        raise DatasetFormatError(
            path,
            f"no 'file' column (columns: {', '.join(columns) or 'none'}); the header needs "
            "file and label (single-label) or file and tags (multi-label, ';' between tags)",
        )
    if ("label" in columns) == ("tags" in columns):
        raise DatasetFormatError(
            path,
            "needs exactly one of the columns 'label' (single-label) and 'tags' (multi-label, "
            f"';' between tags); columns: {', '.join(columns)}",
        )
    if not rows:
        raise DatasetFormatError(path, "no rows below the header")
    multilabel = "tags" in columns
    has_split = "split" in columns
    entries: list[tuple[str, Path, list[str], str | None]] = []
    seen: dict[str, int] = {}  # file -> its line
    missing: list[str] = []
    for line, row in rows:
        rel = row.get("file", "")
        if not rel:
            raise DatasetFormatError(path, "empty file name", line=line)
        if rel in seen:
            raise DatasetFormatError(path, f"file {rel!r} listed twice (first on line {seen[rel]})", line=line)
        seen[rel] = line
        if multilabel:
            labels = [t.strip() for t in row.get("tags", "").split(";") if t.strip()]
        else:
            label = row.get("label", "")
            if not label:
                raise DatasetFormatError(path, f"empty label for {rel!r}", line=line)
            labels = [label]
        split = None
        if has_split:
            split = _SPLIT_NAMES.get(row.get("split", "").lower())
            if split is None:
                raise DatasetFormatError(path, f"split {row.get('split')!r} for {rel!r}: use train, valid or test", line=line)
        audio = Path(rel) if Path(rel).is_absolute() else root / rel
        if not is_file(audio):  # False, not an OSError, for a name the OS refuses (e.g. too long)
            missing.append(f"line {line}: {audio}")
        entries.append((rel, audio, labels, split))
    if missing:
        shown = "; ".join(missing[:10]) + (f"; and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise FileNotFoundError(f"{path}: {len(missing)} of {len(entries)} listed audio file(s) not found: {shown}")
    label_names = sorted({lab for _, _, labels, _ in entries for lab in labels})
    if multilabel and not label_names:
        raise DatasetFormatError(path, "every 'tags' cell is empty: no tag to learn")
    splits = [e[3] for e in entries] if has_split else random_split(len(entries), seed)
    ids = _unique_ids([e[0] for e in entries])
    index = {name: i for i, name in enumerate(label_names)}
    records = []
    for (_rel, audio, labels, _), split, cid in zip(entries, splits, ids):
        assert split is not None  # from the split column (checked above) or random_split
        target = multi_hot([index[t] for t in labels], len(label_names)) if multilabel else index[labels[0]]
        records.append(Record(id=cid, split=split, audio=audio, target=target))
    ds = RawDataset(
        name=f"csv:{path.stem}",
        task_type="multilabel" if multilabel else "multiclass",
        label_names=label_names,
        records=records,
        source={
            "labels_csv": str(path.resolve()),
            "audio_dir": str(root.resolve()),
            "split": "split column" if has_split else f"seeded 80/10/10 (seed {seed})",
        },
    )
    counts = ds.counts()
    for split in ("train", "valid"):
        if counts[split] == 0:
            raise DatasetFormatError(
                path,
                f"no {split} files: a probe needs train and valid files"
                + (" (check the split column)" if has_split else " (list at least 3 files)"),
            )
    ds.validate()
    return ds


def random_split(n: int, seed: int) -> list[str]:
    """A seeded 80/10/10 assignment of n files to train/valid/test (>= 1 each when n >= 3)."""
    order = np.random.default_rng(seed).permutation(n)
    n_valid = max(1, round(n * SPLIT_SHARES[1])) if n >= 3 else (1 if n == 2 else 0)
    n_test = max(1, round(n * SPLIT_SHARES[2])) if n >= 3 else 0
    out = ["train"] * n
    for k, i in enumerate(order):
        if k < n_valid:
            out[i] = "valid"
        elif k < n_valid + n_test:
            out[i] = "test"
    return out


def _unique_ids(rels: list[str]) -> list[str]:
    ids, used = [], set()
    for rel in rels:
        base = cid = file_id(rel)
        k = 2
        while cid in used:
            cid, k = f"{base}-{k}", k + 1
        used.add(cid)
        ids.append(cid)
    return ids


__all__ = ["load_csv_labels", "check_name", "dataset_folder", "CSV_PREFIX", "PRIMARY_METRIC", "SPLITS"]
