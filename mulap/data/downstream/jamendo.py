"""MTG-Jamendo (`jamendo_tagging` and the genre / instrument / moodtheme subsets), read as published.

Publisher layout (github.com/MTG/mtg-jamendo-dataset, split-0):

    data/splits/split-0/autotagging_top50tags-{train,validation,test}.tsv
    data/splits/split-0/autotagging_{genre,instrument,moodtheme}-{train,validation,test}.tsv
    <audio>/<00..99>/<track number>.mp3          (raw_30s/audio; `.low.mp3` in audio-low)

Each TSV has the header TRACK_ID, ARTIST_ID, ALBUM_ID, PATH, DURATION, TAGS and one
row per track: `track_0000215  artist_000014  album_000031  15/215.mp3  151.4`
followed by one tab-separated field per tag (`genre---rock`, `instrument---piano`,
`mood/theme---happy`), as many as the track has. The TSVs are looked for in
`<raw>/data/splits/split-0/`, `<raw>/splits/split-0/`, `<raw>/split-0/` and `<raw>/`;
audio under `<raw>`, `<raw>/audio`, `<raw>/raw_30s/audio` or `<raw>/raw_30s`.
Label names are the tags found in the three files, sorted.
"""

from __future__ import annotations

import re
from pathlib import Path

from mulap.infra.files import is_file
from mulap.infra.text_files import FirstSeen, text_lines, where

from .base import DatasetFormatError, RawDataset, Record, audio_root, multi_hot, require_dir

SUBSETS = {
    "top50tags": "autotagging_top50tags",
    "genre": "autotagging_genre",
    "instrument": "autotagging_instrument",
    "moodtheme": "autotagging_moodtheme",
}
SPLIT_FILES = {"train": "train", "valid": "validation", "test": "test"}
SPLIT_DIRS = ("data/splits/split-0", "splits/split-0", "split-0", ".")
HEADER = ["TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH", "DURATION", "TAGS"]
_TRACK = re.compile(r"^track_[0-9]+$")


def read_tsv(path: Path) -> list[tuple[str, str, list[str], int]]:
    """One split TSV -> [(track_id, relative mp3 path, tags, line)] in file order."""
    out = []
    lines = text_lines(path)
    first = lines[0][1].split("\t") if lines else []
    if first[: len(HEADER)] != HEADER:
        raise DatasetFormatError(path, f"header must be {' '.join(HEADER)} (tab-separated), got {first}", line=1)
    for n, line in lines[1:]:
        if not line.strip():
            continue
        f = line.split("\t")
        if len(f) < 6:
            raise DatasetFormatError(
                path, f"{len(f)} fields; expected TRACK_ID ARTIST_ID ALBUM_ID PATH DURATION and at least one tag", line=n
            )
        if not _TRACK.match(f[0]):
            raise DatasetFormatError(path, f"TRACK_ID {f[0]!r} is not track_<number>", line=n)
        try:
            float(f[4])
        except ValueError:
            raise DatasetFormatError(path, f"DURATION {f[4]!r} is not a number", line=n) from None
        tags = [t.strip() for t in f[5:] if t.strip()]
        bad = [t for t in tags if "---" not in t]
        if bad or not tags:
            raise DatasetFormatError(path, f"tags must look like category---name, got {bad or 'none'}", line=n)
        out.append((f[0], f[3].strip(), tags, n))
    return out


def find_split_dir(raw: Path, prefix: str) -> Path:
    """The folder holding <prefix>-{train,validation,test}.tsv."""
    for sub in SPLIT_DIRS:
        d = raw / sub
        if all((d / f"{prefix}-{s}.tsv").is_file() for s in SPLIT_FILES.values()):
            return d
    hits = sorted(raw.rglob(f"{prefix}-train.tsv"))
    for h in hits:  # e.g. a checkout of the repository elsewhere below <raw>
        if "split-0" in h.parent.name and all((h.parent / f"{prefix}-{s}.tsv").is_file() for s in SPLIT_FILES.values()):
            return h.parent
    raise FileNotFoundError(
        f"{raw}: {prefix}-{{train,validation,test}}.tsv of split-0 not found (looked in {', '.join(SPLIT_DIRS)})"
    )


def _with_low(root: Path, rel: str) -> str:
    """The audio-low release names files <n>.low.mp3; use it when the full-quality file is absent."""
    if not is_file(root / rel) and rel.endswith(".mp3"):
        low = rel[: -len(".mp3")] + ".low.mp3"
        if is_file(root / low):
            return low
    return rel


def load_jamendo(raw_dir: str | Path, subset: str = "top50tags") -> RawDataset:
    """Read one MTG-Jamendo split-0 subset: top50tags, genre, instrument or moodtheme."""
    if subset not in SUBSETS:
        raise ValueError(f"unknown MTG-Jamendo subset {subset!r}; expected one of {sorted(SUBSETS)}")
    raw = require_dir(Path(raw_dir), "MTG-Jamendo folder")
    prefix = SUBSETS[subset]
    sdir = find_split_dir(raw, prefix)
    files = {split: sdir / f"{prefix}-{name}.tsv" for split, name in SPLIT_FILES.items()}
    rows = {split: read_tsv(path) for split, path in files.items()}
    seen = FirstSeen("TRACK_ID")  # a track in two rows, of one file or of two splits
    for split, rs in rows.items():
        for tid, _, _, line in rs:
            seen.add(tid, files[split], line=line)
    labels = sorted({t for rs in rows.values() for _, _, tags, _ in rs for t in tags})
    index = {t: i for i, t in enumerate(labels)}
    all_paths = [p for rs in rows.values() for _, p, _, _ in rs]
    root = audio_root([raw, raw / "audio", raw / "raw_30s" / "audio", raw / "raw_30s"], all_paths)
    records = [
        Record(
            id=tid,
            split=split,
            audio=root / _with_low(root, rel),
            target=multi_hot([index[t] for t in tags], len(labels)),
            origin=where(files[split], line=line),
        )
        for split, rs in rows.items()
        for tid, rel, tags, line in rs
    ]
    ds = RawDataset(
        name="jamendo" if subset == "top50tags" else f"jamendo_{subset}",
        task_type="multilabel",
        label_names=labels,
        records=records,
        source={"split": f"MTG-Jamendo split-0 {prefix}-*.tsv in {sdir}", "audio_root": str(root)},
    )
    ds.validate()
    return ds


__all__ = ["load_jamendo", "read_tsv", "SUBSETS"]
