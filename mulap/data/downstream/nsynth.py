"""NSynth (`nsynth_clf`, instrument family), read as published (magenta.tensorflow.org/datasets/nsynth).

Publisher layout (the json/wav release):

    <raw>/nsynth-{train,valid,test}/examples.json   {"<note_str>": {"note_str": ..., "instrument_family": 0,
                                                     "instrument_family_str": "bass", "pitch": 22,
                                                     "velocity": 50, "sample_rate": 16000, ...}, ...}
    <raw>/nsynth-{train,valid,test}/audio/<note_str>.wav   4 s, 16 kHz, mono

Label: `instrument_family`, 11 classes in the publisher's fixed order (index = the
integer in the json). A family absent from a split keeps its index. Note that the
valid and test splits hold no synth_lead notes.
"""

from __future__ import annotations

from pathlib import Path

from mulap.infra.text_files import FirstSeen, read_json, where

from .base import DatasetFormatError, RawDataset, Record, require_dir

FAMILIES = ["bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed", "string", "synth_lead", "vocal"]
SPLIT_DIRS = {"train": "nsynth-train", "valid": "nsynth-valid", "test": "nsynth-test"}


def read_examples(path: Path) -> list[tuple[str, int]]:
    """examples.json -> [(note_str, instrument_family)] in file order, checked against FAMILIES."""
    data = read_json(path, unique_keys=True)
    if not isinstance(data, dict):
        raise DatasetFormatError(path, f"expected an object keyed by note_str, got {type(data).__name__}")
    out = []
    for key, rec in data.items():
        if not isinstance(rec, dict):
            raise DatasetFormatError(path, "record is not an object", record=key)
        note = rec.get("note_str", key)
        if note != key:
            raise DatasetFormatError(path, f"note_str {note!r} differs from its key", record=key)
        fam = rec.get("instrument_family")
        if isinstance(fam, bool) or not isinstance(fam, int) or not 0 <= fam < len(FAMILIES):
            raise DatasetFormatError(path, f"instrument_family {fam!r} is not an integer 0..{len(FAMILIES) - 1}", record=key)
        fam_str = rec.get("instrument_family_str")
        if fam_str is not None and fam_str != FAMILIES[fam]:
            raise DatasetFormatError(
                path,
                f"instrument_family {fam} is {FAMILIES[fam]!r} in NSynth's order, but instrument_family_str says {fam_str!r}",
                record=key,
            )
        out.append((key, fam))
    return out


def _split_root(raw: Path) -> Path:
    """<raw> itself, or the folder below it that holds the nsynth-* split folders."""
    if any((raw / d).is_dir() for d in SPLIT_DIRS.values()):
        return raw
    hits = sorted(p.parent for p in raw.rglob("nsynth-train") if p.is_dir())
    return hits[0] if hits else raw


def load_nsynth(raw_dir: str | Path) -> RawDataset:
    """Read the three NSynth splits; target = instrument_family index."""
    raw = _split_root(require_dir(Path(raw_dir), "NSynth folder"))
    records = []
    seen = FirstSeen("note_str")  # a note in two splits
    for split, name in SPLIT_DIRS.items():
        sdir = require_dir(raw / name, f"NSynth split folder {name}")
        path = sdir / "examples.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: NSynth examples.json not found")
        for note, fam in read_examples(path):
            seen.add(note, path, record=note)
            records.append(
                Record(id=note, split=split, audio=sdir / "audio" / f"{note}.wav", target=fam, origin=where(path, record=note))
            )
    ds = RawDataset(
        name="nsynth",
        task_type="multiclass",
        label_names=list(FAMILIES),
        records=records,
        source={"split": "nsynth-{train,valid,test}/examples.json", "label": "instrument_family", "audio_root": str(raw)},
    )
    ds.validate()
    return ds


__all__ = ["load_nsynth", "read_examples", "FAMILIES"]
