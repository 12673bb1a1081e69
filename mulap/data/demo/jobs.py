"""Render jobs: self-contained, picklable work items that write audio files.

Planning (which piece, which style, which labels) happens in the main process; a job
carries the already-realized notes, so worker processes need no score and any worker
produces the same bytes. `run_job` renders, normalises loudness, cuts the track into its
output clips, converts rate/channels and writes each file (atomically).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr

from ...audio.io import write_audio
from .arrange import DYN_RMS_DB, Arrangement, Performance
from .render import SAMPLE_RATE, normalize, render_note, render_notes


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

    @property
    def cost(self) -> float:
        return self.duration_s * (2.0 if self.stereo else 1.0)


@dataclass
class NoteJob:
    """One NSynth-style note: 4 s, held 3 s, 16 kHz 16-bit wav."""

    program: int
    pitch: int
    velocity: int
    path: str
    soundfont: str | None = None  # None: the world's TimGM6mb

    @property
    def cost(self) -> float:
        return 4.0


def render_job(arr: Arrangement, perf: Performance, outputs: list[ClipOut], stereo: bool = False,
               sample_rate: int = SAMPLE_RATE, level_jitter_db: float = 0.0) -> RenderJob:
    """A job rendering `arr` (loudness from the performance's dynamics) into `outputs`."""
    return RenderJob(arr.notes, dict(arr.programs), dict(arr.volumes), dict(arr.pans), arr.duration_s,
                     DYN_RMS_DB[perf.dynamics] + level_jitter_db, tuple(outputs), stereo, sample_rate)


def run_job(job: RenderJob | NoteJob) -> float:
    """Execute a job; returns the seconds of audio written."""
    if isinstance(job, NoteJob):
        wave = render_note(job.program, job.pitch, job.velocity, soundfont=job.soundfont)
        write_audio(job.path, wave, SAMPLE_RATE)
        return len(wave) / SAMPLE_RATE
    stereo = render_notes(job.notes, job.programs, job.duration_s, job.volumes, job.pans)
    stereo = normalize(stereo, job.rms_db)
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
    return total
