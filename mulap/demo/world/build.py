"""`build_demo`: the whole offline demo world, deterministically, in one call.

Stages: select and parse real scores (cached; 2 worker processes) -> split pieces ->
plan every dataset in the main process (renditions, captions, labels; seeded per
purpose) -> give every render job a timbre (a soundfont among the world's sources and
per-clip variation, drawn from the seed and the clip's file name; mulap.demo.world.timbre)
-> render all audio in the worker pool (a progress bar) -> write annotation files ->
summary (with what each source cost to render). The same seed gives byte-identical
annotation files and audio (with the same soundfonts installed).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from mulap.infra.extras import require_all

from .corpus import corpus_metadata, plan_corpus, write_corpus
from .emomusic import plan_emomusic, write_emomusic
from .fma import plan_fma, write_fma
from .jamendo import plan_jamendo, write_jamendo
from .jobs import JobCost, NoteJob, run_jobs, with_timbre, worker_pool
from .mtt import plan_mtt, write_mtt
from .nsynth import plan_nsynth, write_nsynth
from .scores import COLLECTIONS, Piece, default_cache_dir, load_or_parse, select_pieces, usable
from .timbre import available_sources, draw_timbre, source_info
from .world import World, rng_for


@dataclass(frozen=True)
class SizeConfig:
    """How much of the world to build."""

    pieces: dict[str, int]  # scores per collection
    corpus_clips: int
    corpus_seconds: tuple[float, float]
    nsynth_notes_per_program: dict[str, int]
    nsynth_max_train_programs: int | None
    mtt_tracks: int
    mtt_clips_per_track: int
    mtt_clip_seconds: float
    mtt_top_n: int
    jamendo_tracks: int
    jamendo_seconds: tuple[float, float]
    jamendo_top_n: int
    fma_per_genre: int
    fma_seconds: float
    emomusic_clips: int
    emomusic_seconds: float


SIZES: dict[str, SizeConfig] = {
    "small": SizeConfig(
        pieces={
            "bach_chorales": 3,
            "palestrina": 2,
            "monteverdi": 1,
            "trecento": 1,
            "fiddle_tunes": 3,
            "irish_tunes": 2,
            "scottish_airs": 1,
            "german_folk": 2,
            "chinese_folk": 2,
        },
        corpus_clips=24,
        corpus_seconds=(10.0, 10.0),
        nsynth_notes_per_program={"train": 2, "valid": 1, "test": 1},
        nsynth_max_train_programs=1,
        mtt_tracks=8,
        mtt_clips_per_track=2,
        mtt_clip_seconds=5.0,
        mtt_top_n=20,
        jamendo_tracks=14,
        jamendo_seconds=(5.0, 7.0),
        jamendo_top_n=20,
        fma_per_genre=3,
        fma_seconds=5.0,
        emomusic_clips=12,
        emomusic_seconds=6.0,
    ),
    "default": SizeConfig(
        pieces={
            "bach_chorales": 70,
            "palestrina": 40,
            "monteverdi": 12,
            "trecento": 14,
            "string_quartets": 10,
            "fiddle_tunes": 60,
            "irish_tunes": 40,
            "scottish_airs": 24,
            "german_folk": 36,
            "chinese_folk": 26,
        },
        corpus_clips=800,
        corpus_seconds=(10.0, 30.0),
        # clip lengths are whole 3 s chunks: three backbones embed every chunk within the demo's time budget
        nsynth_notes_per_program={"train": 12, "valid": 12, "test": 110},
        nsynth_max_train_programs=None,
        mtt_tracks=130,
        mtt_clips_per_track=3,
        mtt_clip_seconds=9.0,
        mtt_top_n=50,
        jamendo_tracks=360,
        jamendo_seconds=(6.0, 12.0),
        jamendo_top_n=50,
        fma_per_genre=40,
        fma_seconds=9.0,
        emomusic_clips=320,
        emomusic_seconds=9.0,
    ),
    # configs/demo/gpu.yaml: five times the captioned corpus, larger test sets (more scores where
    # the music21 corpus has them; select_pieces takes what there is)
    "large": SizeConfig(
        pieces={
            "bach_chorales": 200,
            "palestrina": 120,
            "monteverdi": 30,
            "trecento": 40,
            "string_quartets": 25,
            "fiddle_tunes": 180,
            "irish_tunes": 120,
            "scottish_airs": 70,
            "german_folk": 110,
            "chinese_folk": 80,
        },
        corpus_clips=4000,
        corpus_seconds=(10.0, 30.0),
        nsynth_notes_per_program={"train": 24, "valid": 16, "test": 110},
        nsynth_max_train_programs=None,
        mtt_tracks=400,
        mtt_clips_per_track=3,
        mtt_clip_seconds=9.0,
        mtt_top_n=50,
        jamendo_tracks=1000,
        jamendo_seconds=(6.0, 12.0),
        jamendo_top_n=50,
        fma_per_genre=120,
        fma_seconds=9.0,
        emomusic_clips=800,
        emomusic_seconds=9.0,
    ),
}


@dataclass
class DemoSummary:
    """What was built: counts per split per dataset, audio amount, where everything is."""

    out: Path
    size: str
    seed: int
    clips: int  # audio files written
    hours: float  # audio written
    build_seconds: float
    splits: dict[str, dict[str, int]] = field(default_factory=dict)  # dataset -> split -> items
    paths: dict[str, Path] = field(default_factory=dict)  # dataset -> folder
    pieces: dict[str, int] = field(default_factory=dict)  # split -> scores
    skipped: list[str] = field(default_factory=list)  # scores that failed to parse
    # source -> {jobs, audio_s, synth_s, effects_s}: what rendering through each soundfont cost (wall seconds
    # summed over the worker processes; a process's first job through a source includes parsing it)
    render_costs: dict[str, dict[str, float]] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [
            f"demo world ({self.size}, seed {self.seed}) in {self.out}: {self.clips} audio files, "
            f"{self.hours:.2f} h of audio, built in {self.build_seconds:.0f} s",
            "  scores per split: " + ", ".join(f"{k} {v}" for k, v in self.pieces.items()),
        ]
        for name, counts in self.splits.items():
            lines.append(f"  {name:<12} " + "  ".join(f"{k} {v:>5}" for k, v in counts.items()) + f"   {self.paths[name]}")
        for name, c in self.render_costs.items():
            lines.append(
                f"  {name:<12} {int(c['jobs'])} render jobs, {c['audio_s'] / 3600:.2f} h of audio: synthesis "
                f"{c['synth_s']:.0f} s, effects {c['effects_s']:.0f} s "
                f"({1000 * c['synth_s'] / max(c['audio_s'], 1e-9):.1f} ms per second of audio)"
            )
        return "\n".join(lines)


PARTS = ("audiocaption", "nsynth", "mtt", "jamendo", "fma", "emomusic")
_MANAGED = {
    "audiocaption": "audiocaption",
    "nsynth": "raw/nsynth",
    "mtt": "raw/mtt",
    "jamendo": "raw/jamendo",
    "fma": "raw/fma",
    "emomusic": "raw/emomusic",
}


def _parse_job(args):
    ref, cache = args
    return load_or_parse(ref, cache)


def _load_pieces(counts: dict[str, int], seed: int, pool, cache: Path | None, progress: bool) -> tuple[list[Piece], list[str]]:
    """The first counts[c] usable scores of each collection's selection (spares parsed only when needed)."""
    from tqdm import tqdm

    selection = select_pieces(counts, seed)
    parsed: dict = {}
    skipped: list[str] = []
    bar = tqdm(total=sum(counts.values()), desc="scores", disable=not progress, unit="score")
    kept: dict[str, list[Piece]] = {name: [] for name in selection}
    pos = {name: 0 for name in selection}
    while True:
        # next batch: as many untried refs per collection as it still lacks
        todo = []
        for name in sorted(selection):
            need = counts[name] - len(kept[name])
            refs = selection[name][pos[name] : pos[name] + max(0, need)]
            pos[name] += len(refs)
            todo += refs
        if not todo:
            break
        args = [(r, cache) for r in todo]
        it = pool.imap(_parse_job, args) if pool else map(_parse_job, args)
        for ref, d, err in it:
            if err:
                skipped.append(err)
            else:
                parsed[ref] = Piece.from_json(d)
        for name in sorted(selection):
            kept[name] = [parsed[r] for r in selection[name][: pos[name]] if r in parsed and usable(parsed[r])]
            kept[name] = kept[name][: counts[name]]
        bar.n = sum(len(v) for v in kept.values())
        bar.refresh()
    bar.close()
    return [p for name in sorted(kept) for p in kept[name]], skipped


def _with_timbre(job, out: Path, seed: int, sources: dict[str, str], record: dict[str, dict]):
    """`job` with its timbre, drawn from (seed, its first file's path in the world): the same clip sounds the
    same in every build, whatever else is built. Every output file is recorded with it."""

    rels = [Path(p).relative_to(out).as_posix() for p in job.paths]
    timbre = draw_timbre(rng_for(seed, "timbre", rels[0]), sources, note=isinstance(job, NoteJob))
    for rel in rels:
        record[rel] = timbre.to_json()
    return with_timbre(job, timbre)


def _add_cost(costs: dict[str, dict[str, float]], c: JobCost) -> None:
    row = costs.setdefault(c.source, {"jobs": 0, "audio_s": 0.0, "synth_s": 0.0, "effects_s": 0.0})
    row["jobs"] += 1
    row["audio_s"] += c.audio_s
    row["synth_s"] += c.synth_s
    row["effects_s"] += c.effects_s


def build_demo(
    out: str | Path,
    size: str = "default",
    seed: int = 0,
    progress: bool = True,
    workers: int | None = None,
    cache_dir: str | Path | None = None,
    parts: tuple[str, ...] = PARTS,
) -> DemoSummary:
    """Build the demo world under `out` (replacing a previous build there) and return its summary.

    size: 'small' (tests; seconds) or 'default' (the demo; minutes). workers: processes for
    parsing and rendering (default: min(2, CPUs)). cache_dir: parsed-score cache (default
    $MULAP_CACHE/demo_scores or ~/.cache/mulap/demo_scores). parts: which datasets to build
    (default all of PARTS; e.g. ("audiocaption",) for the pre-training corpus alone). Every
    selected part is the same as in a full build with the same size and seed.
    """

    if size not in SIZES:
        raise ValueError(f"unknown demo size {size!r}; choose one of {sorted(SIZES)}")
    cfg = SIZES[size]
    unknown = set(cfg.pieces) - set(COLLECTIONS)
    if unknown:
        raise ValueError(f"size {size!r} names unknown collections {sorted(unknown)}")
    unknown_parts = set(parts) - set(PARTS)
    if unknown_parts or not parts:
        raise ValueError(f"unknown demo part(s) {sorted(unknown_parts)}; choose from {', '.join(PARTS)}")
    require_all("demo")  # before anything is removed or rendered
    t0 = time.time()
    out = Path(out)
    for rel in [_MANAGED[name] for name in parts] + ["world.json"]:
        p = out / rel
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    with worker_pool(workers) as pool:
        pieces, skipped = _load_pieces(cfg.pieces, seed, pool, cache, progress)
        world = World(pieces, seed)
        ac, raw = out / "audiocaption", out / "raw"
        paths = {
            "audiocaption": ac,
            "nsynth": raw / "nsynth",
            "mtt": raw / "mtt",
            "jamendo": raw / "jamendo",
            "fma": raw / "fma",
            "emomusic": raw / "emomusic",
        }
        corpus, j_corpus = plan_corpus(world, ac, cfg.corpus_clips, cfg.corpus_seconds)
        nsynth, j_nsynth = plan_nsynth(paths["nsynth"], seed, cfg.nsynth_notes_per_program, cfg.nsynth_max_train_programs)
        mtt, j_mtt = plan_mtt(world, paths["mtt"], cfg.mtt_tracks, cfg.mtt_clips_per_track, cfg.mtt_clip_seconds)
        jam, j_jam = plan_jamendo(world, paths["jamendo"], cfg.jamendo_tracks, cfg.jamendo_seconds)
        fma, j_fma = plan_fma(world, paths["fma"], cfg.fma_per_genre, cfg.fma_seconds)
        emo, j_emo = plan_emomusic(world, paths["emomusic"], cfg.emomusic_clips, cfg.emomusic_seconds)
        planned: dict[str, list] = {
            "audiocaption": j_corpus,
            "nsynth": j_nsynth,
            "mtt": j_mtt,
            "jamendo": j_jam,
            "fma": j_fma,
            "emomusic": j_emo,
        }
        sources = available_sources()
        timbres: dict[str, dict] = {}  # file (relative to out) -> its timbre, for world.json
        for name in PARTS:
            planned[name] = [_with_timbre(job, out, seed, sources, timbres) for job in planned[name]]
        # every part is planned (the seeded draws stay what a full build makes); only the chosen ones render
        jobs = [job for name in PARTS if name in parts for job in planned[name]]
        # longest first keeps both workers busy to the end; the order does not change any output
        order = sorted(range(len(jobs)), key=lambda i: (-jobs[i].cost, i))
        jobs = [jobs[i] for i in order]
        n_files = sum(len(j.outputs) if hasattr(j, "outputs") else 1 for j in jobs)
        seconds = 0.0
        costs: dict[str, dict[str, float]] = {}
        for c in run_jobs(jobs, pool, "rendering", progress):
            seconds += c.audio_s
            _add_cost(costs, c)
    writers = {
        "audiocaption": lambda: write_corpus(ac, corpus),
        "nsynth": lambda: write_nsynth(paths["nsynth"], nsynth),
        "mtt": lambda: write_mtt(paths["mtt"], mtt, cfg.mtt_top_n),
        "jamendo": lambda: write_jamendo(paths["jamendo"], jam, cfg.jamendo_top_n),
        "fma": lambda: write_fma(paths["fma"], fma),
        "emomusic": lambda: write_emomusic(paths["emomusic"], emo),
    }
    splits = {name: writers[name]() for name in PARTS if name in parts}
    paths = {name: paths[name] for name in splits}
    world_meta = {
        "seed": seed,
        "size": size,
        "pieces": {
            pid: {
                "split": world.split_of[pid],
                "collection": p.ref.collection,
                "group": p.ref.group,
                "title": p.title,
                "composer": p.composer,
                "time_signature": p.time_signature,
                "key": f"{p.tonic} {p.mode}",
            }
            for pid, p in sorted(world.pieces.items())
        },
        "corpus": corpus_metadata(corpus),
        "mtt": {str(c.clip_id): c.piece_id for c in mtt},
        "jamendo": {str(t.track_id): t.piece_id for t in jam},
        "fma": {str(t.track_id): t.piece_id for t in fma if t.piece_id is not None},
        "emomusic": {str(s.song_id): s.piece_id for s in emo},
        "timbre": {"sources": source_info(sources), "clips": timbres},
    }
    (out / "world.json").write_text(json.dumps(world_meta, indent=1, sort_keys=True) + "\n")
    summary = DemoSummary(
        out,
        size,
        seed,
        n_files,
        seconds / 3600.0,
        time.time() - t0,
        splits,
        paths,
        world.split_counts(),
        skipped,
        dict(sorted(costs.items())),
    )
    if progress:
        print(summary)
    return summary
