"""Emomusic / "1000 songs for emotional analysis of music" (`emomusic_reg`), read as published.

Publisher layout (cvml.unige.ch/databases/emoMusic: clips_45sec.tar.gz + annotations.tar.gz):

    <raw>/clips_45seconds/<song_id>.mp3          (song_id without zero padding)
    <raw>/static_annotations.csv                 song_id, mean_arousal, std_arousal,
                                                 mean_valence, std_valence (scale 1-9)
    <raw>/songs_info.csv                         song_id, file_name, Artist, Song title,
                                                 start/end of the segment, Genre,
                                                 Mediaeval 2013 set (development|evaluation)

(the csv files may also sit one level down, e.g. in `annotations/`). 744 songs.

Split: the one of jukemir (p-lambda/jukemir, `iter_emomusic`): the MediaEval 2013
"evaluation" songs are the test set; the "development" songs are split 80/20 into
train/valid by artist, `["train"]*8 + ["valid"]*2` indexed by
sha1(normalised artist name) mod 10, where the name is lower-cased and reduced to ASCII
letters and single spaces. If jukemir's own metadata file (`emomusic.json` or
`emomusic.json.gz`, {"0002": {"split": ...}, ...}) is present, its splits are used
instead. Targets are (mean_arousal, mean_valence) on the original 1-9 scale; the train
mean and standard deviation (jukemir z-scores with them) are in `source["target_stats"]`.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import re
import zlib
from pathlib import Path

import numpy as np

from mulap.infra.text_files import FirstSeen, csv_rows, decode_text, read_bytes, read_json, where

from .base import DatasetFormatError, RawDataset, Record, Skipped, find_file, require_dir

LABELS = ["arousal", "valence"]
_RATIOS = ["train"] * 8 + ["valid"] * 2
_DIGITS = re.compile(r"^[0-9]+$")


def normalise_artist(artist: str) -> str:
    """jukemir's artist key: lower-case ASCII letters and single spaces."""
    kept = "".join(c for c in artist.lower() if ord(c) < 128 and (c.isalpha() or c.isspace()))
    return " ".join(kept.split())


def artist_split(artist: str) -> str:
    """train or valid for a development-set artist (jukemir's 80/20 hash rule)."""
    digest = int(hashlib.sha1(normalise_artist(artist).encode("utf-8")).hexdigest(), 16)
    return _RATIOS[digest % len(_RATIOS)]


def _read_csv(path: Path, required: list[str]) -> list[tuple[int, dict[str, str]]]:
    """Comma-separated file with a header -> [(line number, {column: stripped value})]."""
    rows_in = csv_rows(path)
    try:
        _, header = next(rows_in)
    except StopIteration:
        raise DatasetFormatError(path, "empty file, expected a header row") from None
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        raise DatasetFormatError(path, f"missing column(s) {missing}; header is {header}", line=1)
    rows = []
    for line, row in rows_in:
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise DatasetFormatError(path, f"{len(row)} fields, header has {len(header)}", line=line)
        rows.append((line, {k: v.strip() for k, v in zip(header, row)}))
    return rows


def _song_id(path: Path, value: str, line: int) -> int:
    """song_id as an integer; some exports write 2.0."""
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not (math.isfinite(number) and number >= 0 and number.is_integer()):
        raise DatasetFormatError(path, f"song_id {value!r} is not a non-negative integer", line=line)
    return int(number)


def _jukemir_splits(raw: Path) -> tuple[dict[int, str], Path] | None:
    for name in ("emomusic.json", "emomusic.json.gz"):
        hits = [raw / name] if (raw / name).is_file() else sorted(raw.rglob(name))
        if hits:
            path = hits[0]
            if path.suffix == ".gz":
                try:
                    data = gzip.decompress(read_bytes(path))
                except (OSError, EOFError, zlib.error) as exc:
                    raise DatasetFormatError(path, f"not a readable gzip file ({exc})") from None
                meta = read_json(path, decode_text(data, path))
            else:
                meta = read_json(path)
            if not isinstance(meta, dict):
                raise DatasetFormatError(
                    path, f"not jukemir's emomusic metadata: expected an object keyed by song id, got {type(meta).__name__}"
                )
            splits = {}
            for uid, m in meta.items():
                if not _DIGITS.match(uid) or not isinstance(m, dict) or "split" not in m:
                    raise DatasetFormatError(
                        path, 'not jukemir\'s emomusic metadata: expected {"<song id>": {"split": ...}}', record=uid
                    )
                splits[int(uid)] = str(m["split"])
            return splits, path
    return None


def load_emomusic(raw_dir: str | Path) -> RawDataset:
    """Read Emomusic with the jukemir split (see the module docstring)."""
    raw = require_dir(Path(raw_dir), "Emomusic folder")
    static_path = find_file(raw, "static_annotations.csv", ("annotations/static_annotations.csv",))
    info_path = find_file(raw, "songs_info.csv", ("annotations/songs_info.csv",))
    clips = raw / "clips_45seconds"
    if not clips.is_dir():
        hits = sorted(p for p in raw.rglob("clips_45seconds") if p.is_dir())
        clips = hits[0] if hits else clips

    targets: dict[int, np.ndarray] = {}
    target_lines: dict[int, int] = {}
    seen = FirstSeen("song_id")
    for line, row in _read_csv(static_path, ["song_id", "mean_arousal", "mean_valence"]):
        sid = _song_id(static_path, row["song_id"], line)
        try:
            a, v = float(row["mean_arousal"]), float(row["mean_valence"])
        except ValueError:
            raise DatasetFormatError(static_path, "mean_arousal / mean_valence must be numbers", line=line) from None
        if not (1.0 <= a <= 9.0 and 1.0 <= v <= 9.0):
            raise DatasetFormatError(static_path, f"arousal {a} / valence {v} outside the 1-9 scale", line=line)
        seen.add(str(sid), static_path, line=line)
        targets[sid] = np.asarray([a, v], dtype=np.float32)
        target_lines[sid] = line

    info: dict[int, tuple[int, dict[str, str]]] = {}
    seen = FirstSeen("song_id")
    for line, row in _read_csv(info_path, ["song_id", "Artist", "Mediaeval 2013 set"]):
        sid = _song_id(info_path, row["song_id"], line)
        seen.add(str(sid), info_path, line=line)
        info[sid] = (line, row)

    given = _jukemir_splits(raw)
    records, skipped = [], []
    for sid, target in sorted(targets.items()):
        audio = clips / f"{sid}.mp3"
        if given is not None:
            split = given[0].get(sid)
            if split not in ("train", "valid", "test"):
                skipped.append(Skipped(str(audio), f"song {sid} has no train/valid/test split in {given[1].name}"))
                continue
        else:
            if sid not in info:
                raise DatasetFormatError(
                    static_path, f"song_id {sid} is not in {info_path}, which gives its split", line=target_lines[sid]
                )
            line, row = info[sid]
            mset = row["Mediaeval 2013 set"].lower()
            if mset == "evaluation":
                split = "test"
            elif mset == "development":
                split = artist_split(row["Artist"])
            else:
                raise DatasetFormatError(
                    info_path, f"'Mediaeval 2013 set' is {mset!r}, expected development or evaluation", line=line
                )
        records.append(
            Record(id=str(sid), split=split, audio=audio, target=target, origin=where(static_path, line=target_lines[sid]))
        )
    for sid in sorted(set(info) - set(targets)):
        skipped.append(Skipped(str(clips / f"{sid}.mp3"), f"song {sid} has no row in {static_path.name}"))

    train = np.stack([r.target for r in records if r.split == "train"]) if any(r.split == "train" for r in records) else None
    stats = None if train is None else {"mean": train.mean(0).tolist(), "std": train.std(0).tolist()}
    split_src = (
        f"jukemir metadata {given[1]}" if given else f"jukemir rule from {info_path.name} (MediaEval 2013 set + artist hash)"
    )
    ds = RawDataset(
        name="emomusic",
        task_type="regression",
        label_names=list(LABELS),
        records=records,
        source={
            "annotations": str(static_path),
            "split": split_src,
            "audio_root": str(clips),
            "target_stats": stats,
            "target_scale": "1-9 (mean_arousal, mean_valence)",
        },
        skipped=skipped,
    )
    ds.validate()
    return ds


__all__ = ["load_emomusic", "artist_split", "normalise_artist"]
