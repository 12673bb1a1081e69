"""NSynth in its published layout: single notes of General MIDI instruments.

<out>/raw/nsynth/nsynth-{train,valid,test}/examples.json   {note_str: {note, note_str, pitch, velocity,
    instrument, instrument_str, instrument_family, instrument_family_str, instrument_source,
    instrument_source_str, qualities, qualities_str, sample_rate}}
<out>/raw/nsynth/nsynth-{split}/audio/<note_str>.wav      4 s, 16 kHz, 16-bit (held 3 s, released 1 s)

An NSynth "instrument" is one GM program; each program is in exactly one split (no note
source crosses splits). As in the real NSynth, synth_lead exists only in train. Programs
whose soundfont sample does not sound at the key's pitch (gm.NOT_AT_KEY_PITCH) are left out.
"""

from __future__ import annotations

import json
from pathlib import Path

from mulap.infra.extras import require

from .gm import (
    BAD_KEYS,
    NOT_AT_KEY_PITCH,
    NSYNTH_FAMILIES,
    NSYNTH_QUALITIES,
    NSYNTH_SOURCES,
    PROGRAM_FAMILY,
    program_range,
    program_source,
)
from .jobs import NoteJob
from .world import SPLITS, rng_for

VELOCITIES = (25, 50, 75, 100, 127)
TRAIN_ONLY_FAMILIES = ("synth_lead",)


def program_splits(seed: int, max_train_per_family: int | None = None) -> dict[str, list[int]]:
    """split -> GM programs. Per family: one program in test, one in valid, the rest in train."""
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    for fam in NSYNTH_FAMILIES:
        progs = sorted(p for p, f in PROGRAM_FAMILY.items() if f == fam and p not in NOT_AT_KEY_PITCH)
        order = [progs[i] for i in rng_for(seed, "nsynth-programs", fam).permutation(len(progs))]
        if fam in TRAIN_ONLY_FAMILIES or len(order) < 3:
            train, valid, test = order, [], []
        else:
            test, valid, train = order[:1], order[1:2], order[2:]
        if max_train_per_family is not None:
            train = train[:max_train_per_family]
        out["train"] += train
        out["valid"] += valid
        out["test"] += test
    return {s: sorted(v) for s, v in out.items()}


def _qualities(program: int, family: str, pitch: int) -> list[int]:
    q = dict.fromkeys(NSYNTH_QUALITIES, 0)
    q["bright"] = int(family in ("flute", "brass", "synth_lead") and pitch >= 72)
    q["dark"] = int(family == "bass" or pitch < 45)
    q["distortion"] = int(program in (29, 30, 84))
    q["fast_decay"] = int(family in ("mallet", "guitar") or program in (45, 105, 6, 7))
    q["long_release"] = int(family in ("organ", "vocal") or program in (48, 49, 50, 51))
    q["multiphonic"] = int(program == 86)
    q["percussive"] = int(family in ("mallet", "keyboard", "guitar") or program in (45, 46))
    return [q[k] for k in NSYNTH_QUALITIES]


def example(note_id: int, program: int, pitch: int, velocity: int) -> dict:
    """One examples.json record, with the real dataset's keys."""
    family = PROGRAM_FAMILY[program]
    source = program_source(program)
    inst_str = f"{family}_{source}_{program:03d}"
    quals = _qualities(program, family, pitch)
    return {
        "note": note_id,
        "note_str": f"{inst_str}-{pitch:03d}-{velocity:03d}",
        "pitch": pitch,
        "velocity": velocity,
        "instrument": program,
        "instrument_str": inst_str,
        "instrument_family": NSYNTH_FAMILIES.index(family),
        "instrument_family_str": family,
        "instrument_source": NSYNTH_SOURCES.index(source),
        "instrument_source_str": source,
        "qualities": quals,
        "qualities_str": [k for k, v in zip(NSYNTH_QUALITIES, quals) if v],
        "sample_rate": 16000,
    }


def plan_nsynth(
    root: Path, seed: int, notes_per_program: dict[str, int], max_train_per_family: int | None = None
) -> tuple[dict[str, dict[str, dict]], list[NoteJob]]:
    """split -> {note_str: example} and the note-rendering jobs."""
    records: dict[str, dict[str, dict]] = {s: {} for s in SPLITS}
    jobs: list[NoteJob] = []
    note_id = 0
    for split, progs in program_splits(seed, max_train_per_family).items():
        for prog in progs:
            rng = rng_for(seed, "nsynth-notes", prog)
            lo, hi = program_range(prog)
            cands = [(p, v) for p in range(lo, hi + 1) if (prog, p) not in BAD_KEYS for v in VELOCITIES]
            n = min(len(cands), notes_per_program[split])
            for i in sorted(rng.choice(len(cands), size=n, replace=False)):
                pitch, vel = cands[int(i)]
                ex = example(note_id, prog, pitch, vel)
                note_id += 1
                records[split][ex["note_str"]] = ex
                jobs.append(NoteJob(prog, pitch, vel, str(root / f"nsynth-{split}" / "audio" / f"{ex['note_str']}.wav")))
    return records, jobs


def write_nsynth(root: Path, records: dict[str, dict[str, dict]]) -> dict[str, int]:
    """Write nsynth-*/examples.json (keys sorted); returns notes per split."""
    counts = {}
    for split, recs in records.items():
        d = root / f"nsynth-{split}"
        (d / "audio").mkdir(parents=True, exist_ok=True)
        ordered = {k: recs[k] for k in sorted(recs)}
        (d / "examples.json").write_text(json.dumps(ordered, indent=4) + "\n")
        counts[split] = len(recs)
    return counts


def build_nsynth_with_soundfont(
    out: str | Path,
    soundfont: str | Path,
    seed: int = 0,
    test_notes_per_program: int = 12,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, int]:
    """NSynth-layout notes rendered through another General MIDI soundfont than the world's: a test of what
    transfers beyond the one soundfont the world (and so pre-training) ever used. Every melodic GM program of
    every family (its samples differ from TimGM6mb's), `test_notes_per_program` notes each in test, one each in
    train and valid (the loader wants the three splits). Returns notes per split."""
    import os

    from .jobs import run_jobs, worker_pool

    require("demo", "tinysoundfont")  # here, not in the pool's workers
    out, soundfont = Path(out), Path(soundfont)
    if not soundfont.is_file():
        raise FileNotFoundError(f"soundfont not found: {soundfont}")
    records: dict[str, dict[str, dict]] = {s: {} for s in SPLITS}
    jobs: list[NoteJob] = []
    note_id = 0
    want = {"train": 1, "valid": 1, "test": test_notes_per_program}
    for prog in sorted(PROGRAM_FAMILY):
        lo, hi = program_range(prog)
        cands = [(p, v) for p in range(lo, hi + 1) for v in VELOCITIES]
        picks = rng_for(seed, "nsynth-other-sf", prog).permutation(len(cands))
        taken = 0
        for split in ("test", "valid", "train"):
            for i in picks[taken : taken + want[split]]:
                pitch, vel = cands[int(i)]
                ex = example(note_id, prog, pitch, vel)
                note_id += 1
                records[split][ex["note_str"]] = ex
                jobs.append(
                    NoteJob(prog, pitch, vel, str(out / f"nsynth-{split}" / "audio" / f"{ex['note_str']}.wav"), str(soundfont))
                )
            taken += want[split]
    with worker_pool(workers if workers is not None else min(2, os.cpu_count() or 1)) as pool:
        for _ in run_jobs(jobs, pool, "rendering notes", progress, chunksize=8, unit="note"):
            pass
    return write_nsynth(out, records)
