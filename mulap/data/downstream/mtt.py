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

import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from mulap.infra.text_files import FirstSeen, csv_rows, text_lines, where

from .base import DatasetFormatError, RawDataset, Record, audio_root, find_file, require_dir

SPLIT_DIRS = ("split/mtat", "split", ".")
SPLIT_NAMES = {"train": "train", "valid": "valid", "test": "test"}
HEX = "0123456789abcdef"
_DIGITS = re.compile(r"^[0-9]+$")


class Annotations(NamedTuple):
    """annotations_final.csv: clip_ids [N], mp3_paths [N], tag_names [T], labels [N, T] uint8, lines [N] (1-based)."""

    clip_ids: list[str]
    mp3_paths: list[str]
    tags: list[str]
    labels: np.ndarray
    lines: list[int]


def read_annotations(path: Path) -> Annotations:
    """Parse annotations_final.csv (tab-separated, fields double-quoted); errors name the file and line."""
    rows_in = csv_rows(path, delimiter="\t")
    try:
        _, header = next(rows_in)
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
    lines: list[int] = []
    seen = FirstSeen("clip_id")
    for line, row in rows_in:
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise DatasetFormatError(path, f"{len(row)} fields, header has {len(header)}", line=line)
        cid = row[0].strip()
        if not _DIGITS.match(cid):
            raise DatasetFormatError(path, f"clip_id {cid!r} is not an integer", line=line)
        values = [v.strip() for v in row[1:-1]]
        if any(v not in ("0", "1") for v in values):
            raise DatasetFormatError(path, "tag values must be 0 or 1", line=line)
        seen.add(cid, path, line=line)
        clip_ids.append(cid)
        paths.append(row[-1].strip())
        rows.append([int(v) for v in values])
        lines.append(line)
    labels = np.asarray(rows, dtype=np.uint8).reshape(len(rows), len(tags))
    return Annotations(clip_ids, paths, tags, labels, lines)


def _load_string_array(path: Path) -> list[str]:
    """A 1-D string .npy (no pickles: an object array is refused) or a text file, one entry per line."""
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise DatasetFormatError(path, f"not a plain string array ({exc}); object arrays are not loaded for safety") from None
        except Exception as exc:  # noqa: BLE001 - any other failure to load means: not a readable .npy
            raise DatasetFormatError(path, f"cannot be read as .npy ({type(exc).__name__}: {exc})") from None
        if arr.ndim != 1 or arr.dtype.kind not in "US":
            raise DatasetFormatError(path, f"expected a 1-D string array, got dtype {arr.dtype} shape {arr.shape}")
        if arr.dtype.kind == "U" and arr.size:  # UCS-4 code units: numpy does not check they are characters
            order = arr.dtype.byteorder if arr.dtype.byteorder in "<>" else "="
            # numpy's stubs take a literal byte order; `order` is '<', '>' or '='
            codes = np.frombuffer(np.ascontiguousarray(arr).tobytes(), dtype=np.dtype("u4").newbyteorder(order))  # type: ignore[arg-type]
            bad = np.flatnonzero((codes > 0x10FFFF) | ((codes >= 0xD800) & (codes <= 0xDFFF)))
            if len(bad):
                raise DatasetFormatError(
                    path,
                    f"entry holds code point 0x{int(codes[bad[0]]):x}, which is not a character",
                    record=str(int(bad[0]) // (arr.dtype.itemsize // 4)),
                )
        out = []
        for n, x in enumerate(arr.tolist()):
            if isinstance(x, bytes):
                try:
                    x = x.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DatasetFormatError(
                        path, f"entry is not UTF-8 (byte 0x{x[exc.start]:02x} at offset {exc.start})", record=str(n)
                    ) from None
            out.append(str(x))
        return out
    return [ln for _, ln in text_lines(path) if ln.strip()]


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
    ann = read_annotations(ann_path)
    clip_ids, mp3_paths, tags, labels = ann.clip_ids, ann.mp3_paths, ann.tags, ann.labels
    tag_index = {t: i for i, t in enumerate(tags)}
    found = find_split_files(raw)

    entries: list[tuple[str, int, str]] = []  # (split, annotation row, where it was listed)
    if found is not None:
        files, tags_file = found
        top = _load_string_array(tags_file)
        missing = [t for t in top if t not in tag_index]
        if missing:
            raise DatasetFormatError(tags_file, f"tags not among the columns of {ann_path}: {missing[:5]}")
        listed = FirstSeen("annotation row")
        for split, f in files.items():
            for n, entry in enumerate(_load_string_array(f)):
                parts = entry.split("\t")
                if len(parts) != 2 or not _DIGITS.match(parts[0].strip()):
                    raise DatasetFormatError(f, f"entry {entry!r} is not '<index>\\t<mp3_path>'", record=str(n))
                ix, rel = int(parts[0]), parts[1].strip()
                if ix >= len(clip_ids):
                    raise DatasetFormatError(f, f"index {ix} beyond the {len(clip_ids)} rows of {ann_path}", record=str(n))
                if mp3_paths[ix] != rel:
                    raise DatasetFormatError(
                        f,
                        f"row {ix} of {ann_path} is {mp3_paths[ix]!r}, not {rel!r}: split and annotations disagree",
                        record=str(n),
                    )
                listed.add(str(ix), f, record=str(n))
                entries.append((split, ix, where(f, record=str(n))))
        split_source = f"sota-music-tagging-models split lists in {files['train'].parent}"
    else:
        counts = labels.sum(axis=0)
        n_top = min(50, len(tags))
        # as sota-music-tagging-models' split script: np.argsort(counts)[::-1] (descending count)
        order = np.argsort(counts, kind="stable")[::-1][:n_top]
        top = [tags[i] for i in order]
        top_cols = np.asarray(order, dtype=np.int64)
        for ix, rel in enumerate(mp3_paths):
            folder = rel.split("/")[0]
            if len(folder) != 1 or folder not in HEX:
                raise DatasetFormatError(ann_path, f"mp3_path {rel!r} is not in a 0..f folder", line=ann.lines[ix])
            if labels[ix, top_cols].sum() == 0:
                continue  # the published split leaves out clips without a top tag
            h = HEX.index(folder)
            entries.append(("train" if h < 12 else "valid" if h == 12 else "test", ix, where(ann_path, line=ann.lines[ix])))
        split_source = "derived (no split lists found): top-N tags by count, folders 0-b train, c valid, d-f test"

    cols = np.asarray([tag_index[t] for t in top], dtype=np.int64)
    root = audio_root([raw, raw / "mp3"], [mp3_paths[ix] for _, ix, _ in entries])
    records = [
        Record(
            id=clip_ids[ix], split=split, audio=root / mp3_paths[ix], target=labels[ix, cols].astype(np.float32), origin=origin
        )
        for split, ix, origin in entries
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
