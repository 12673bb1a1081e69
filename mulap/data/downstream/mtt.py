"""MagnaTagATune (`mtt_tagging`), read as published.

Publisher layout (mirdata / the MIREX release):

    <raw>/annotations_final.csv   tab-separated, every field double-quoted:
                                  "clip_id", 188 tag columns ("0"/"1"), "mp3_path"
    <raw>/<0..f>/<name>.mp3       (the unzipped mp3.zip.00x; a `mp3/` level is also accepted)

The standard top-50 split is the one of minzwon/sota-music-tagging-models,
`split/mtat/`: `train.npy`, `valid.npy`, `test.npy` are 1-D string arrays of
"<index>\\t<mp3_path>" (index = 0-based data row of annotations_final.csv, the row of
`binary.npy`), 15,244 / 1,529 / 4,332 clips, and `tags.npy` holds the 50 tag names in
the column order of `binary.npy` (most frequent first; `top50_tags.txt` has the same
list). The split files are looked for in `<raw>/split/mtat/`, `<raw>/split/` and `<raw>/`;
plain-text lists (`train.txt`, one "<index>\\t<mp3_path>" per line) are accepted too.

Without split files the split is derived with the rule that produced them: the 50
most frequent tags, clips with at least one of them, folders 0-b train, c valid,
d-f test (their extra filter, clips shorter than 29.1 s, needs the audio and is left
to decoding). `RawDataset.source["split"]` says which was used.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .base import DatasetFormatError, RawDataset, Record, audio_root, find_file, require_dir

SPLIT_DIRS = ("split/mtat", "split", ".")
SPLIT_NAMES = {"train": "train", "valid": "valid", "test": "test"}
HEX = "0123456789abcdef"


def read_annotations(path: Path) -> tuple[list[str], list[str], list[str], np.ndarray]:
    """annotations_final.csv -> (clip_ids [N], mp3_paths [N], tag_names [T], labels [N, T] uint8)."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        try:
            header = next(reader)
        except StopIteration:
            raise DatasetFormatError(path, "empty file, expected a header row") from None
        header = [h.strip() for h in header]
        if len(header) < 3 or header[0] != "clip_id" or header[-1] != "mp3_path":
            raise DatasetFormatError(
                path, f"header must be clip_id, <tags...>, mp3_path (tab-separated); got {header[:2]}...{header[-1:]}", line=1
            )
        tags = header[1:-1]
        clip_ids: list[str] = []
        paths: list[str] = []
        rows: list[list[int]] = []
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise DatasetFormatError(path, f"{len(row)} fields, header has {len(header)}", line=line)
            cid = row[0].strip()
            if not cid.isdigit():
                raise DatasetFormatError(path, f"clip_id {cid!r} is not an integer", line=line)
            try:
                values = [int(v) for v in row[1:-1]]
            except ValueError:
                raise DatasetFormatError(path, "tag values must be 0 or 1", line=line) from None
            if any(v not in (0, 1) for v in values):
                raise DatasetFormatError(path, "tag values must be 0 or 1", line=line)
            clip_ids.append(cid)
            paths.append(row[-1].strip())
            rows.append(values)
    labels = np.asarray(rows, dtype=np.uint8).reshape(len(rows), len(tags))
    return clip_ids, paths, tags, labels


def _load_string_array(path: Path) -> list[str]:
    """A 1-D string .npy (no pickles: an object array is refused) or a text file, one entry per line."""
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise DatasetFormatError(path, f"not a plain string array ({exc}); object arrays are not loaded for safety") from None
        except Exception as exc:
            raise DatasetFormatError(path, f"cannot be read as .npy ({type(exc).__name__}: {exc})") from None
        if arr.ndim != 1 or arr.dtype.kind not in "US":
            raise DatasetFormatError(path, f"expected a 1-D string array, got dtype {arr.dtype} shape {arr.shape}")
        return [x.decode() if isinstance(x, bytes) else str(x) for x in arr.tolist()]
    with open(path, encoding="utf-8") as fh:
        return [ln.rstrip("\n").rstrip("\r") for ln in fh if ln.strip()]


def find_split_files(raw: Path) -> tuple[dict[str, Path], Path] | None:
    """({split: list file}, tags file) from the first folder holding all of them, else None."""
    for sub in SPLIT_DIRS:
        d = raw / sub
        for ext in (".npy", ".txt"):
            files = {s: d / f"{s}{ext}" for s in SPLIT_NAMES}
            if all(p.is_file() for p in files.values()):
                for tag_name in ("tags.npy", "top50_tags.txt", "tags.txt"):
                    if (d / tag_name).is_file():
                        return files, d / tag_name
                raise FileNotFoundError(f"{d}: split lists found but no tags.npy / top50_tags.txt with their tag names")
    return None


def load_mtt(raw_dir: str | Path) -> RawDataset:
    """Read MagnaTagATune with the standard top-50 split (see the module docstring)."""
    raw = require_dir(Path(raw_dir), "MagnaTagATune folder")
    ann_path = find_file(raw, "annotations_final.csv", what="MagnaTagATune annotations_final.csv")
    clip_ids, mp3_paths, tags, labels = read_annotations(ann_path)
    tag_index = {t: i for i, t in enumerate(tags)}
    found = find_split_files(raw)

    entries: list[tuple[str, int]] = []  # (split, annotation row)
    if found is not None:
        files, tags_file = found
        top = _load_string_array(tags_file)
        missing = [t for t in top if t not in tag_index]
        if missing:
            raise DatasetFormatError(tags_file, f"tags not among the columns of {ann_path.name}: {missing[:5]}")
        for split, f in files.items():
            for n, entry in enumerate(_load_string_array(f)):
                parts = entry.split("\t")
                if len(parts) != 2 or not parts[0].strip().isdigit():
                    raise DatasetFormatError(f, f"entry {entry!r} is not '<index>\\t<mp3_path>'", record=str(n))
                ix, rel = int(parts[0]), parts[1].strip()
                if ix >= len(clip_ids):
                    raise DatasetFormatError(f, f"index {ix} beyond the {len(clip_ids)} rows of {ann_path.name}", record=str(n))
                if mp3_paths[ix] != rel:
                    raise DatasetFormatError(
                        f, f"row {ix} of {ann_path.name} is {mp3_paths[ix]!r}, not {rel!r}: split and annotations disagree", record=str(n)
                    )
                entries.append((split, ix))
        split_source = f"sota-music-tagging-models split lists in {files['train'].parent}"
    else:
        counts = labels.sum(axis=0)
        n_top = min(50, len(tags))
        # as sota-music-tagging-models' split script: np.argsort(counts)[::-1] (descending count)
        order = np.argsort(counts, kind="stable")[::-1][:n_top]
        top = [tags[i] for i in order]
        top_cols = np.asarray(order)
        for ix, rel in enumerate(mp3_paths):
            folder = rel.split("/")[0]
            if len(folder) != 1 or folder not in HEX:
                raise DatasetFormatError(ann_path, f"mp3_path {rel!r} is not in a 0..f folder", line=ix + 2)
            if labels[ix, top_cols].sum() == 0:
                continue  # the published split leaves out clips without a top tag
            h = HEX.index(folder)
            entries.append(("train" if h < 12 else "valid" if h == 12 else "test", ix))
        split_source = "derived (no split lists found): top-N tags by count, folders 0-b train, c valid, d-f test"

    cols = np.asarray([tag_index[t] for t in top])
    root = audio_root([raw, raw / "mp3"], [mp3_paths[ix] for _, ix in entries])
    records = [
        Record(id=clip_ids[ix], split=split, audio=root / mp3_paths[ix], target=labels[ix, cols].astype(np.float32))
        for split, ix in entries
    ]
    ds = RawDataset(
        name="mtt",
        task_type="multilabel",
        label_names=list(top),
        records=records,
        source={"annotations": str(ann_path), "split": split_source, "audio_root": str(root)},
    )
    ds.validate()
    return ds


__all__ = ["load_mtt", "read_annotations", "find_split_files"]
