"""Rendering MIDI notes to audio with a General MIDI soundfont (tinysoundfont).

`render_notes` plays an `Arrangement`'s notes [n, 5] = (start s, end s, channel, key,
velocity) through one synthesizer and returns [T, 2] float32 stereo at 16 kHz;
`render_note` plays one sustained note (NSynth style: held 3 s, 4 s in all).
Each process keeps one synthesizer per soundfont (parsing the 135 MB OPL-3 bank takes 0.24 s)
and resets it before every render: all voices ended and flushed, every channel back to its
defaults, so a render is byte-identical to one from a fresh synthesizer (tested) and the
same notes give the same samples whichever worker renders them, after whatever it rendered.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from mulap.infra.extras import require

from .gm import soundfont_path

SAMPLE_RATE = 16_000


@lru_cache(maxsize=4)
def _loaded(sample_rate: int, path: str):
    tinysoundfont = require("demo", "tinysoundfont")
    synth = tinysoundfont.Synth(samplerate=sample_rate)
    return synth, synth.sfload(Path(path).read_bytes())


def _synth(sample_rate: int, soundfont: str | None = None):
    """This process's synthesizer for `soundfont` (default: TimGM6mb), as good as new."""
    synth, sfid = _loaded(sample_rate, str(soundfont_path() if soundfont is None else soundfont))
    # tsf_reset ends every voice with a 10 ms release and drops the channels' state; rendering a second
    # of silence lets those voices finish, after which nothing of the previous render remains
    synth.soundfonts[sfid].reset()
    synth.generate(sample_rate)
    return synth, sfid


def render_notes(
    notes: np.ndarray,
    programs: dict[int, int],
    duration_s: float,
    volumes: dict[int, int] | None = None,
    pans: dict[int, int] | None = None,
    sample_rate: int = SAMPLE_RATE,
    tail_s: float = 0.0,
    soundfont: str | None = None,
    tuning_cents: float = 0.0,
) -> np.ndarray:
    """Notes [n, 5] (start s, end s, channel, key, velocity) -> [T, 2] float32, T = (duration+tail)*sr.

    programs: channel -> GM program; -1 selects the GM drum kit (bank 128).
    Notes still sounding at the end are cut (a clip is an excerpt).
    soundfont: the General MIDI .sf2 to play (default TimGM6mb; see timbre.WORLD_SOURCES).
    tuning_cents: every channel tuned by this much.
    """
    synth, sfid = _synth(sample_rate, soundfont)
    for ch in sorted(programs):
        prog = programs[ch]
        if prog < 0:
            synth.program_select(ch, sfid, 128, 0, is_drums=True)
        else:
            synth.program_select(ch, sfid, 0, int(prog))
        if tuning_cents:
            synth.set_tuning(ch, tuning_cents / 100.0)
        if volumes and ch in volumes:
            synth.control_change(ch, 7, int(volumes[ch]))
        if pans and ch in pans:
            synth.control_change(ch, 10, int(pans[ch]))
    total = int(round((duration_s + tail_s) * sample_rate))
    # events: (sample, order, channel, key, velocity); note-offs sort before note-ons at one instant
    ev: list[tuple[int, int, int, int, int]] = []
    for st, en, ch, key, vel in np.asarray(notes, dtype=np.float64).reshape(-1, 5):
        s0 = int(round(st * sample_rate))
        s1 = max(s0 + 1, int(round(en * sample_rate)))
        if s0 >= total:
            continue
        ev.append((s0, 1, int(ch), int(key), int(vel)))
        if s1 < total:
            ev.append((s1, 0, int(ch), int(key), 0))
    ev.sort()
    out = np.zeros((total, 2), dtype=np.float32)
    pos = 0
    for s, kind, ch, key, vel in ev:
        if s > pos:
            out[pos:s] = np.frombuffer(synth.generate(s - pos), dtype=np.float32).reshape(-1, 2)
            pos = s
        if kind == 1:
            synth.noteon(ch, key, max(1, min(127, vel)))
        else:
            synth.noteoff(ch, key)
    if total > pos:
        out[pos:] = np.frombuffer(synth.generate(total - pos), dtype=np.float32).reshape(-1, 2)
    return out


def render_note(
    program: int,
    pitch: int,
    velocity: int,
    hold_s: float = 3.0,
    total_s: float = 4.0,
    sample_rate: int = SAMPLE_RATE,
    soundfont: str | None = None,
    tuning_cents: float = 0.0,
) -> np.ndarray:
    """One note of a GM program, held hold_s then released -> [T] float32 mono, T = total_s*sr."""
    notes = np.array([[0.0, hold_s, 0, pitch, velocity]], dtype=np.float64)
    stereo = render_notes(
        notes, {0: int(program)}, total_s, sample_rate=sample_rate, soundfont=soundfont, tuning_cents=tuning_cents
    )
    return stereo.mean(axis=1).astype(np.float32)


def normalize(wave: np.ndarray, rms_db: float, peak: float = 0.98) -> np.ndarray:
    """Scale [T] or [T, C] audio to a target RMS (dBFS) over its non-silent part, never past `peak`."""
    mono = wave if wave.ndim == 1 else wave.mean(axis=1)
    frame = 1600
    n = len(mono) // frame
    if n == 0:
        return wave
    e = np.sqrt((mono[: n * frame].reshape(n, frame) ** 2).mean(axis=1) + 1e-12)
    active = e[e > e.max() * 0.05] if e.max() > 0 else e
    rms = float(np.sqrt(np.mean(active**2))) if len(active) else 0.0
    if rms <= 1e-9:
        return wave
    gain = 10 ** (rms_db / 20.0) / rms
    pk = float(np.abs(wave).max()) * gain
    if pk > peak:
        gain *= peak / pk
    return (wave * gain).astype(np.float32)
