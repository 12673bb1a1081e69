"""Timbre sources of the demo world, and the cheap per-clip variation soundfonts alone don't give.

Every clip the world renders (corpus clips, downstream tracks, NSynth-layout notes) goes through one
soundfont chosen per clip among the world's sources, then through a per-clip `Timbre`: mild pitch
jitter (channel tuning), tempo jitter (arrangements), sometimes a detuned second layer, a smooth random
EQ with optional high- and low-pass, sometimes a synthetic room reverb, and a gain. Everything is drawn
from the world's seed and the clip's file name (`draw_timbre`), carried by the render job (so any worker
renders the same bytes) and recorded per clip in world.json.

Soundfonts the world may use (WORLD_SOURCES): TimGM6mb (the copy shipped in pretty_midi) and the
OPL-3 FM bank (Debian `opl3-soundfont`). Reserved, and refused for the world (`check_world_soundfont`):
csound's GM bank (sf_GMbank.sf2, Debian `csound-soundfont`: the held-out test `mulap demo` reports,
rendered by `mulap data nsynth-soundfont`), FluidR3 (`fluid-soundfont-*`, `fluidr3mono-*`) and MuseScore
General (`musescore-general-*`), kept for independent checks of what the world never heard.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

OPL3_PATH = "/usr/share/sounds/sf2/OPL-3_FM_128M.sf2"


@dataclass(frozen=True)
class Source:
    """One soundfont the world may render through."""

    name: str
    description: str
    path: str | None  # None: TimGM6mb inside the installed pretty_midi
    install: str  # how to get it when it is missing


WORLD_SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            "timgm6mb", "TimGM6mb, a small sampled General MIDI bank (shipped in pretty_midi)", None, "pip install 'mulap[demo]'"
        ),
        Source(
            "opl3",
            "OPL-3 FM General MIDI bank (frequency-modulation synthesis, no samples)",
            OPL3_PATH,
            "Debian: apt-get install opl3-soundfont (install.sh does it when run as root)",
        ),
    )
}

# File names (lower case, any folder) of soundfonts the world must never use: csound's GM bank is the demo's
# held-out test; FluidR3 and MuseScore General are kept unseen for checks by others.
RESERVED_PATTERNS: tuple[str, ...] = ("sf_gmbank", "fluidr3", "fluid_r3", "fluid-soundfont", "musescore")


class ReservedSoundfontError(ValueError):
    """A soundfont kept for testing was about to be used to build the demo world."""


def is_reserved(path: str | Path) -> bool:
    """Whether `path` (or the file it links to) is one of the reserved test soundfonts."""
    p = Path(path)
    names = {p.name.lower()}
    try:
        names.add(p.resolve().name.lower())  # default-GM.sf2 is a link to whichever bank is installed
    except OSError:
        pass
    return any(pat in name for name in names for pat in RESERVED_PATTERNS)


def check_world_soundfont(path: str | Path) -> Path:
    """`path` if the world may render through it; ReservedSoundfontError for a reserved test soundfont."""
    if is_reserved(path):
        raise ReservedSoundfontError(
            f"{path}: reserved for testing what the demo world never heard "
            "(csound GM bank, FluidR3, MuseScore General); the world never renders through it"
        )
    return Path(path)


def source_path(name: str) -> Path | None:
    """The file of a world source, or None when it is not installed."""
    src = WORLD_SOURCES[name]
    if src.path is None:
        from .gm import soundfont_path

        return check_world_soundfont(soundfont_path())
    p = Path(src.path)
    return check_world_soundfont(p) if p.is_file() else None


def available_sources(names: tuple[str, ...] | None = None) -> dict[str, str]:
    """name -> soundfont file of the world sources installed here (TimGM6mb always). A missing one is said
    once, on one line, with how to install it."""
    out: dict[str, str] = {}
    for name in names or tuple(WORLD_SOURCES):
        if name not in WORLD_SOURCES:
            raise ValueError(f"unknown timbre source {name!r}; the world's sources are {', '.join(WORLD_SOURCES)}")
        path = source_path(name)
        if path is None:
            log.warning(
                "demo world: soundfont %s (%s) is not installed: rendering without it (%s)",
                WORLD_SOURCES[name].path,
                name,
                WORLD_SOURCES[name].install,
            )
            continue
        out[name] = str(path)
    if not out:
        raise FileNotFoundError("no soundfont for the demo world: the demo extra (pretty_midi: TimGM6mb) or opl3-soundfont")
    return out


def source_info(sources: dict[str, str]) -> dict[str, dict]:
    """What world.json says about each source used: description and file (name and size)."""
    return {
        name: {"description": WORLD_SOURCES[name].description, "file": os.path.basename(path), "bytes": os.path.getsize(path)}
        for name, path in sources.items()
    }


# -- the per-clip variation --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Timbre:
    """How one clip sounds beyond its notes: which soundfont, and the variation on top of it."""

    source: str  # a WORLD_SOURCES name
    soundfont: str  # its file
    tuning_cents: float  # whole-clip pitch offset (every channel)
    tempo: float  # note-time factor: > 1 plays faster (arrangements; 1 for single notes)
    layer_cents: float  # 0: one rendering; else a second one detuned by this much is mixed in ...
    layer_db: float  # ... at this level relative to the first
    eq: tuple[tuple[float, float], ...]  # (Hz, dB) points of a smooth EQ curve (log-frequency interpolation)
    highpass_hz: float  # 0: none; else 12 dB/octave below
    lowpass_hz: float  # 0: none; else 12 dB/octave above
    reverb_mix: float  # 0: dry; else the wet share of a synthetic room ...
    reverb_seconds: float  # ... with this RT60
    reverb_seed: int  # the room's noise
    gain_db: float  # added to the clip's loudness target

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("soundfont")  # the file is said once per source (world.json "timbre"/"sources")
        d["eq"] = [list(p) for p in self.eq]
        return d

    @property
    def plain(self) -> bool:
        return not (self.layer_cents or self.reverb_mix or self.highpass_hz or self.lowpass_hz or any(g for _, g in self.eq))


EQ_FREQS = (80.0, 200.0, 500.0, 1200.0, 3000.0, 6500.0)
PLAIN_SHARE = 0.2  # clips with the soundfont's own sound: no EQ, filter, layer or room


def draw_timbre(rng: np.random.Generator, sources: dict[str, str], note: bool = False) -> Timbre:
    """A random timbre among `sources` (name -> file). `note`: a single NSynth-style note (no tempo
    change, a high-pass kept below its fundamental by the renderer). The draws do not depend on how
    many sources there are: only the source changes when one is not installed."""
    names = sorted(sources)
    u = rng.random(12)
    name = names[min(len(names) - 1, int(u[5] * len(names)))]
    tuning = float(rng.uniform(-15.0, 15.0))
    tempo = 1.0 if note else float(rng.uniform(0.96, 1.04))
    eq_gains = rng.uniform(-6.0, 6.0, len(EQ_FREQS))
    layer_cents = float(rng.uniform(6.0, 16.0) * rng.choice([-1.0, 1.0]))
    layer_db = float(rng.uniform(-9.0, -3.0))
    hp, lp = float(rng.uniform(60.0, 250.0)), float(rng.uniform(2500.0, 7000.0))
    mix, rt60 = float(rng.uniform(0.1, 0.4)), float(rng.uniform(0.3, 2.0))
    room = int(rng.integers(2**31 - 1))
    gain = float(rng.uniform(-3.0, 3.0))
    if u[0] < PLAIN_SHARE:
        return Timbre(name, sources[name], round(tuning, 2), round(tempo, 4), 0.0, 0.0, (), 0.0, 0.0, 0.0, 0.0, 0, round(gain, 2))
    return Timbre(
        name,
        sources[name],
        round(tuning, 2),
        round(tempo, 4),
        round(layer_cents, 2) if u[1] < 0.3 else 0.0,
        round(layer_db, 2) if u[1] < 0.3 else 0.0,
        tuple((f, round(float(g), 2)) for f, g in zip(EQ_FREQS, eq_gains)),
        round(hp, 1) if u[2] < 0.3 else 0.0,
        round(lp, 1) if u[3] < 0.3 else 0.0,
        round(mix, 3) if u[4] < 0.5 else 0.0,
        round(rt60, 3) if u[4] < 0.5 else 0.0,
        room if u[4] < 0.5 else 0,
        round(gain, 2),
    )


def eq_curve_db(freqs: np.ndarray, timbre: Timbre, min_highpass: float | None = None) -> np.ndarray:
    """The timbre's EQ + filters in dB at `freqs` (Hz). `min_highpass`: cap the high-pass there (a note's
    fundamental must not be filtered away)."""
    db = np.zeros_like(freqs, dtype=np.float64)
    if timbre.eq:
        pts = np.array(timbre.eq, dtype=np.float64)
        db += np.interp(np.log(np.maximum(freqs, 1.0)), np.log(pts[:, 0]), pts[:, 1])
    f = np.maximum(freqs, 1.0)
    if timbre.highpass_hz:
        fc = timbre.highpass_hz if min_highpass is None else min(timbre.highpass_hz, min_highpass)
        db -= 10 * np.log10(1 + (fc / f) ** 4)
    if timbre.lowpass_hz:
        db -= 10 * np.log10(1 + (f / timbre.lowpass_hz) ** 4)
    return db


def room_response(timbre: Timbre, sample_rate: int, channels: int) -> np.ndarray:
    """[L, channels] impulse responses of the synthetic room: exponentially decaying noise after a short
    pre-delay, unit energy, one independent tail per channel."""
    rng = np.random.default_rng(timbre.reverb_seed)
    n = int(min(3.0, 1.2 * timbre.reverb_seconds) * sample_rate)
    delay = int(rng.uniform(0.005, 0.03) * sample_rate)
    t = np.arange(n) / sample_rate
    env = 10 ** (-3.0 * t / timbre.reverb_seconds)  # -60 dB at RT60
    ir = np.zeros((delay + n, channels))
    ir[delay:] = rng.standard_normal((n, channels)) * env[:, None]
    return (ir / np.sqrt((ir**2).sum(axis=0, keepdims=True) + 1e-12)).astype(np.float32)


def apply_effects(wave: np.ndarray, sample_rate: int, timbre: Timbre, min_highpass: float | None = None) -> np.ndarray:
    """[T] or [T, C] through the timbre's EQ curve (zero phase) and room, in one pass in the frequency domain:
    out = EQ(x) * sqrt(1 - mix) + EQ(x) * room * sqrt(mix) * g, g matching the room's energy to the dry signal's
    (Parseval). The room's tail is cut at T (a clip is an excerpt). `min_highpass`: see `eq_curve_db`."""
    has_eq = bool(timbre.eq or timbre.highpass_hz or timbre.lowpass_hz)
    if not (has_eq or timbre.reverb_mix):
        return wave
    from scipy import fft

    x = wave if wave.ndim == 2 else wave[:, None]
    ir = room_response(timbre, sample_rate, x.shape[1]) if timbre.reverb_mix else None
    n = fft.next_fast_len(len(x) + (len(ir) - 1 if ir is not None else 0), real=True)
    spec = fft.rfft(x, n, axis=0)
    if has_eq:
        spec *= (10 ** (eq_curve_db(fft.rfftfreq(n, 1.0 / sample_rate), timbre, min_highpass) / 20.0))[:, None].astype(np.float32)
    if ir is not None:
        wet = spec * fft.rfft(ir, n, axis=0)
        g = np.sqrt((np.abs(spec) ** 2).sum() / max(float((np.abs(wet) ** 2).sum()), 1e-20))
        spec = spec * np.float32(np.sqrt(1 - timbre.reverb_mix)) + wet * np.float32(np.sqrt(timbre.reverb_mix) * g)
    out = fft.irfft(spec, n, axis=0)[: len(x)].astype(np.float32)
    return out if wave.ndim == 2 else out[:, 0]
