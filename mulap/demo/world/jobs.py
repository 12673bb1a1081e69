"""Render jobs: self-contained, picklable work items that write audio files.

Planning (which piece, which style, which labels, which timbre) happens in the main process; a
job carries the already-realized notes and its `Timbre`, so worker processes need no score and
any worker produces the same bytes. `run_job` renders through the timbre's soundfont (with its
tuning, tempo and detuned layer), applies its EQ and room, normalises loudness, cuts the track
into its output clips, converts rate/channels and writes each file (atomically). It returns what
the render cost (`JobCost`), per source.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import soxr
from tqdm.auto import tqdm

from ...audio.io import write_audio
from .arrange import DYN_RMS_DB, Arrangement, Performance
from .render import SAMPLE_RATE, normalize, render_notes
from .timbre import Timbre, apply_effects, check_world_soundfont


@dataclass(frozen=True)
class ClipOut:
    """One file cut from a rendered track: [start_s, end_s) of the track."""

    path: str
    start_s: float
    end_s: float


@dataclass
class RenderJob:
    """Render an arrangement once and write one or more clips of it."""

    notes: np.ndarray  # [n, 5] start s, end s, channel, key, velocity
    programs: dict[int, int]
    volumes: dict[int, int]
    pans: dict[int, int]
    duration_s: float
    rms_db: float
    outputs: tuple[ClipOut, ...]
    stereo: bool = False
    sample_rate: int = SAMPLE_RATE
    timbre: Timbre | None = None  # None: TimGM6mb, dry (the world assigns every job one)

    @property
    def cost(self) -> float:
        return self.duration_s * (2.0 if self.stereo else 1.0)

    @property
    def paths(self) -> list[str]:
        return [o.path for o in self.outputs]


@dataclass
class NoteJob:
    """One NSynth-style note: 4 s, held 3 s, 16 kHz 16-bit wav."""

    program: int
    pitch: int
    velocity: int
    path: str
    soundfont: str | None = None  # None: TimGM6mb; a held-out test soundfont for build_nsynth_with_soundfont
    timbre: Timbre | None = None  # the world's notes: source and variation (its soundfont replaces `soundfont`)

    @property
    def cost(self) -> float:
        return 4.0

    @property
    def paths(self) -> list[str]:
        return [self.path]


@dataclass(frozen=True)
class JobCost:
    """What one job cost: audio written (s), synthesis and effects wall time (s), through which source."""

    source: str
    audio_s: float
    synth_s: float
    effects_s: float


def render_job(
    arr: Arrangement,
    perf: Performance,
    outputs: list[ClipOut],
    stereo: bool = False,
    sample_rate: int = SAMPLE_RATE,
    level_jitter_db: float = 0.0,
) -> RenderJob:
    """A job rendering `arr` (loudness from the performance's dynamics) into `outputs`."""
    return RenderJob(
        arr.notes,
        dict(arr.programs),
        dict(arr.volumes),
        dict(arr.pans),
        arr.duration_s,
        DYN_RMS_DB[perf.dynamics] + level_jitter_db,
        tuple(outputs),
        stereo,
        sample_rate,
    )


def with_timbre(job: RenderJob | NoteJob, timbre: Timbre) -> RenderJob | NoteJob:
    """The job rendered through `timbre` (a world source: a reserved test soundfont is refused)."""
    check_world_soundfont(timbre.soundfont)
    return replace(job, timbre=timbre)


def _rendered(
    notes: np.ndarray, programs: dict[int, int], duration_s: float, volumes, pans, soundfont: str | None, timbre: Timbre | None
) -> np.ndarray:
    """[T, 2]: the notes through the timbre's soundfont, tuning and tempo, plus its detuned layer."""
    if timbre is None:
        return render_notes(notes, programs, duration_s, volumes, pans, soundfont=soundfont)
    if timbre.tempo != 1.0:
        notes = np.array(notes, dtype=np.float64, copy=True)
        notes[:, :2] /= timbre.tempo
    out = render_notes(notes, programs, duration_s, volumes, pans, soundfont=timbre.soundfont, tuning_cents=timbre.tuning_cents)
    if timbre.layer_cents:
        layer = render_notes(
            notes,
            programs,
            duration_s,
            volumes,
            pans,
            soundfont=timbre.soundfont,
            tuning_cents=timbre.tuning_cents + timbre.layer_cents,
        )
        out = out + layer * np.float32(10 ** (timbre.layer_db / 20.0))
    return out


def run_job(job: RenderJob | NoteJob) -> JobCost:
    """Execute a job; returns its cost (audio seconds written, render and effect seconds, source)."""
    timbre = job.timbre
    if timbre is not None:
        check_world_soundfont(timbre.soundfont)
    source = (
        timbre.source if timbre is not None else (job.soundfont if isinstance(job, NoteJob) and job.soundfont else "timgm6mb")
    )
    t0 = time.perf_counter()
    if isinstance(job, NoteJob):
        notes = np.array([[0.0, 3.0, 0, job.pitch, job.velocity]], dtype=np.float64)
        wave = _rendered(notes, {0: int(job.program)}, 4.0, None, None, job.soundfont, timbre).mean(axis=1)
        t1 = time.perf_counter()
        if timbre is not None:
            dry_rms = float(np.sqrt(np.mean(wave**2)))
            f0 = 440.0 * 2 ** ((job.pitch - 69) / 12)
            wave = apply_effects(wave, SAMPLE_RATE, timbre, min_highpass=0.7 * f0)
            # the note keeps its velocity's loudness (the soundfont's), moved by the timbre's gain, never clipped
            rms = float(np.sqrt(np.mean(wave**2)))
            gain = 10 ** (timbre.gain_db / 20.0) * (dry_rms / rms if rms > 1e-9 else 1.0)
            peak = float(np.abs(wave).max()) * gain
            wave = (wave * (gain * min(1.0, 0.98 / peak) if peak > 0 else gain)).astype(np.float32)
        wave = np.ascontiguousarray(wave, dtype=np.float32)
        write_audio(job.path, wave, SAMPLE_RATE)
        return JobCost(source, len(wave) / SAMPLE_RATE, t1 - t0, time.perf_counter() - t1)
    stereo = _rendered(job.notes, job.programs, job.duration_s, job.volumes, job.pans, None, timbre)
    t1 = time.perf_counter()
    if timbre is not None:
        stereo = apply_effects(stereo, SAMPLE_RATE, timbre)
    stereo = normalize(stereo, job.rms_db + (timbre.gain_db if timbre is not None else 0.0))
    t2 = time.perf_counter()
    total = 0.0
    for out in job.outputs:
        a = int(round(out.start_s * SAMPLE_RATE))
        b = int(round(out.end_s * SAMPLE_RATE))
        clip = stereo[a:b]
        wave = clip if job.stereo else clip.mean(axis=1)
        if job.sample_rate != SAMPLE_RATE:
            wave = soxr.resample(wave, SAMPLE_RATE, job.sample_rate, quality="HQ")
        write_audio(out.path, np.ascontiguousarray(wave, dtype=np.float32), job.sample_rate)
        total += (b - a) / SAMPLE_RATE
    return JobCost(source, total, t1 - t0, t2 - t1)


@contextlib.contextmanager
def worker_pool(workers: int):
    """A pool of `workers` processes (forked on Linux), closed and joined at the end; None for one worker, when
    the work runs in this process."""
    if workers <= 1:
        yield None
        return
    method = "fork" if "fork" in mp.get_all_start_methods() and sys.platform.startswith("linux") else "spawn"
    pool = mp.get_context(method).Pool(workers)
    try:
        yield pool
    finally:
        pool.close()
        pool.join()


def run_jobs(
    jobs: Sequence[RenderJob | NoteJob], pool, desc: str, progress: bool, chunksize: int = 1, unit: str = "job"
) -> Iterator[JobCost]:
    """Render every job, in the pool when there is one, under one progress bar; yields each JobCost as it ends."""
    it = pool.imap_unordered(run_job, jobs, chunksize=chunksize) if pool else map(run_job, jobs)
    with tqdm(total=len(jobs), desc=desc, disable=not progress, unit=unit) as bar:
        for cost in it:
            bar.update(1)
            yield cost
