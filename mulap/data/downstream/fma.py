"""FMA-small (`fma_clf`), read as published (github.com/mdeff/fma).

Publisher layout:

    <raw>/fma_metadata/tracks.csv       two header rows (('album','comments'), ...,
                                       ('set','split'), ('set','subset'), ('track','genre_top'), ...)
                                       then the index-name row `track_id,,,...`; read as
                                       pandas.read_csv(path, index_col=0, header=[0, 1])
    <raw>/fma_small/<id[:3]>/<id:06d>.mp3

The clips are the tracks with ('set','subset') == 'small' (8,000, 8 balanced genres),
the label ('track','genre_top'), the split ('set','split'): training / validation /
test -> train / valid / test. The original system read the validation tracks as its test
set; here test is the real test split. Six small-subset clips hold (almost) no audio
because of wrong duration metadata (mdeff/fma issues #8 and #41, and the wiki):
098565, 098567, 098569, 099134, 108925, 133297; they are left out and listed in `skipped`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from mulap.infra.text_files import DatasetError, check_utf8, csv_rows

from .base import DatasetFormatError, RawDataset, Record, Skipped, find_file, require_dir

KNOWN_BROKEN_SMALL = ("098565", "098567", "098569", "099134", "108925", "133297")
SPLIT_MAP = {"training": "train", "validation": "valid", "test": "test"}
COLUMNS = (("set", "subset"), ("set", "split"), ("track", "genre_top"))
HEADER_LINES = 3  # two header rows + the index-name row
_DIGITS = re.compile(r"^[0-9]{1,12}$")


def read_tracks(path: Path) -> pd.DataFrame:
    """tracks.csv -> DataFrame indexed by integer track_id with the three columns we use (as strings)."""
    check_utf8(path)  # pandas' own decoding error names neither the file nor the line
    try:
        df = pd.read_csv(path, index_col=0, header=[0, 1], dtype=str, encoding="utf-8", low_memory=False)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - pandas raises many types on malformed input; all mean "not a tracks.csv"
        raise DatasetFormatError(path, f"cannot be parsed as FMA tracks.csv ({type(exc).__name__}: {exc})") from None
    if not isinstance(df.columns, pd.MultiIndex) or df.columns.nlevels != 2:
        raise DatasetFormatError(path, "expected two header rows (e.g. 'set' over 'split')", line=1)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DatasetFormatError(path, f"missing column(s) {missing} in the two header rows", line=1)
    df = df[list(COLUMNS)]
    if df.columns.duplicated().any():
        raise DatasetFormatError(path, f"a column of {list(COLUMNS)} appears twice in the header rows", line=1)
    first: dict[int, int] = {}
    for pos, tid in enumerate(str(t).strip() for t in df.index):
        if not _DIGITS.match(tid):
            raise DatasetFormatError(
                path, f"track_id {df.index[pos]!r} is not an integer (at most 12 digits)", line=row_line(path, pos)
            )
        if int(tid) in first:
            raise DatasetFormatError(
                path, f"duplicate track_id {int(tid)}: first at line {row_line(path, first[int(tid)])}", line=row_line(path, pos)
            )
        first[int(tid)] = pos
    ids = np.asarray(list(first), dtype=np.int64)
    df.index = ids
    return df


def row_line(path: Path, pos: int) -> int | None:
    """The line (1-based) where data row `pos` of tracks.csv starts; fields may span lines, so the
    file is scanned (only when an error is reported)."""
    target = HEADER_LINES + pos  # 0-based csv record number
    try:
        n = 0
        for line, row in csv_rows(path):
            if not row:
                continue  # pandas skips blank lines
            if n == target:
                return line
            n += 1
    except DatasetError:
        return None
    return None


def load_fma(raw_dir: str | Path, subset: str = "small") -> RawDataset:
    """Read the FMA `subset` (default small) with its real train/validation/test split."""
    raw = require_dir(Path(raw_dir), "FMA folder")
    path = find_file(raw, "tracks.csv", ("fma_metadata/tracks.csv",), what="FMA fma_metadata/tracks.csv")
    df = read_tracks(path)
    audio_dir = raw / f"fma_{subset}"
    broken = set(KNOWN_BROKEN_SMALL) if subset == "small" else set()

    rows = []
    for pos, (tid, sub, split, genre) in enumerate(
        zip(df.index, df[("set", "subset")], df[("set", "split")], df[("track", "genre_top")])
    ):
        if sub != subset:
            continue
        if split not in SPLIT_MAP:
            raise DatasetFormatError(
                path, f"('set','split') is {split!r}, expected one of {sorted(SPLIT_MAP)}", line=row_line(path, pos)
            )
        if not isinstance(genre, str) or not genre:
            raise DatasetFormatError(
                path, f"track {tid} of subset {subset!r} has no ('track','genre_top')", line=row_line(path, pos)
            )
        rows.append((f"{int(tid):06d}", SPLIT_MAP[split], genre, pos))
    if not rows:
        raise DatasetFormatError(path, f"no track has ('set','subset') == {subset!r}")

    labels = sorted({g for _, _, g, _ in rows})
    index = {g: i for i, g in enumerate(labels)}
    records, skipped = [], []
    for tid, split, genre, pos in rows:
        audio = audio_dir / tid[:3] / f"{tid}.mp3"
        if tid in broken:
            skipped.append(Skipped(str(audio), "known-broken FMA-small clip (no usable audio; mdeff/fma#8, #41)"))
            continue
        records.append(Record(id=tid, split=split, audio=audio, target=index[genre], origin=f"{path}, data row {pos + 1}"))
    ds = RawDataset(
        name="fma",
        task_type="multiclass",
        label_names=labels,
        records=records,
        source={
            "metadata": str(path),
            "split": "('set','split') of tracks.csv: training/validation/test",
            "audio_root": str(audio_dir),
        },
        skipped=skipped,
    )
    ds.validate()
    return ds


__all__ = ["load_fma", "read_tracks", "KNOWN_BROKEN_SMALL"]
