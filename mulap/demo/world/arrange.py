"""Arrangements: a real score + a style -> a timed list of MIDI notes for the renderer.

A `Style` says which General MIDI instruments play the melody, inner parts and bass,
whether a monophonic tune gets a generated accompaniment (chords estimated from the
melody, a bass line on the chord roots) and which drum pattern plays. A `Performance`
fixes every free choice for one rendition (tempo, dynamics, register, where the excerpt
starts, its length, a seed for instrument picks and human timing). `realize` turns
(piece, performance) into an `Arrangement`: notes [n, 5] = (start s, end s, channel,
MIDI key, velocity) plus the attributes that captions and labels are written from.
Everything is a pure function of its inputs, so labels and audio always agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .gm import PROGRAM_FAMILY, program_name, program_range
from .scores import Piece

DRUM_CHANNEL = 9
DYNAMICS: tuple[str, ...] = ("pp", "p", "mf", "f", "ff")
DYN_VELOCITY = {"pp": 36, "p": 54, "mf": 74, "f": 96, "ff": 114}
DYN_RMS_DB = {"pp": -33.0, "p": -28.5, "mf": -24.0, "f": -19.5, "ff": -16.0}
TEMPO_RANGES = {"slow": (46.0, 70.0), "moderate": (80.0, 108.0), "fast": (118.0, 160.0)}
PITCH_NAMES_MAJOR = ("C", "D flat", "D", "E flat", "E", "F", "F sharp", "G", "A flat", "A", "B flat", "B")
PITCH_NAMES_MINOR = ("C", "C sharp", "D", "E flat", "E", "F", "F sharp", "G", "G sharp", "A", "B flat", "B")


@dataclass(frozen=True)
class Style:
    """How a piece is orchestrated. Program tuples are GM programs to pick from."""

    name: str
    genre: str  # FMA-like top genre: Instrumental, Folk, Rock, Pop, Electronic, Hip-Hop, International, Experimental, Choral
    melody: tuple[int, ...]
    inner: tuple[int, ...] | None  # None: inner parts of a polyphonic score are dropped
    bass: tuple[int, ...] | None  # None: bottom part is dropped (or no generated bass)
    chords: tuple[int, ...] | None = None  # accompaniment instrument for monophonic tunes
    chord_pattern: str = "block"  # block | strum | arpeggio | pad | offbeat | power
    bass_pattern: str = "root"  # root | half | pulse8
    drums: str | None = None  # rock | pop | four | boom | hand
    accomp_prob: float = 0.0  # chance a monophonic tune is accompanied
    tempo: tuple[tuple[str, float], ...] = (("slow", 1.0), ("moderate", 1.0), ("fast", 1.0))
    dynamics: tuple[str, ...] = DYNAMICS
    legato: float = 0.92
    prefers: tuple[str, ...] = ()  # collections this style is usually heard with
    bpm: tuple[float, float] | None = None  # fixed beat-bpm range (dance styles)
    captions_only: bool = False  # heard in the captioned corpus only, never in a downstream dataset


_CLASSICAL_SOURCES = ("bach_chorales", "palestrina", "monteverdi", "trecento", "string_quartets")
_FOLK_SOURCES = ("fiddle_tunes", "irish_tunes", "scottish_airs", "german_folk")

STYLES: dict[str, Style] = {
    s.name: s
    for s in (
        Style(
            "string_quartet",
            "Instrumental",
            (40,),
            (40, 41),
            (42,),
            (45, 46),
            "arpeggio",
            accomp_prob=0.3,
            dynamics=("p", "mf", "f"),
            legato=0.95,
            prefers=("bach_chorales", "string_quartets", "monteverdi"),
        ),
        Style(
            "string_orchestra",
            "Instrumental",
            (48, 49),
            (48, 49),
            (48, 43),
            (48, 49),
            "pad",
            accomp_prob=0.6,
            tempo=(("slow", 2.0), ("moderate", 1.0)),
            dynamics=("pp", "p", "mf", "f"),
            legato=1.0,
            prefers=_CLASSICAL_SOURCES,
        ),
        Style(
            "choir",
            "Choral",
            (52, 53),
            (52, 53),
            (52, 53),
            (52, 53),
            "pad",
            accomp_prob=0.3,
            tempo=(("slow", 2.0), ("moderate", 1.0)),
            dynamics=("pp", "p", "mf", "f"),
            legato=1.0,
            prefers=("bach_chorales", "palestrina", "monteverdi", "trecento"),
        ),
        Style(
            "church_organ",
            "Instrumental",
            (19,),
            (19,),
            (19,),
            (19,),
            "pad",
            accomp_prob=0.5,
            tempo=(("slow", 2.0), ("moderate", 1.0)),
            dynamics=("mf", "f", "ff"),
            legato=0.98,
            prefers=("bach_chorales", "palestrina"),
        ),
        Style(
            "piano",
            "Instrumental",
            (0, 1),
            (0, 1),
            (0, 1),
            (0, 1),
            "block",
            accomp_prob=0.7,
            dynamics=DYNAMICS,
            legato=0.9,
            prefers=("string_quartets", "bach_chorales", "german_folk", "scottish_airs"),
        ),
        Style(
            "harpsichord",
            "Instrumental",
            (6,),
            (6,),
            (6,),
            (6,),
            "arpeggio",
            accomp_prob=0.5,
            dynamics=("mf", "f"),
            legato=0.85,
            prefers=("bach_chorales", "string_quartets"),
        ),
        Style(
            "brass",
            "Instrumental",
            (56, 60),
            (60, 57),
            (58, 57),
            (61,),
            "block",
            accomp_prob=0.4,
            tempo=(("slow", 1.0), ("moderate", 2.0), ("fast", 1.0)),
            dynamics=("mf", "f", "ff"),
            legato=0.9,
            prefers=("bach_chorales", "palestrina"),
        ),
        Style(
            "woodwinds",
            "Instrumental",
            (73, 68),
            (71, 68, 69),
            (70,),
            (46, 24),
            "arpeggio",
            accomp_prob=0.4,
            dynamics=("pp", "p", "mf", "f"),
            legato=0.93,
            prefers=("string_quartets", "bach_chorales", "scottish_airs"),
        ),
        Style(
            "recorder_consort",
            "Instrumental",
            (74,),
            (74,),
            (74, 70),
            None,
            accomp_prob=0.0,
            tempo=(("slow", 1.0), ("moderate", 2.0)),
            dynamics=("p", "mf"),
            legato=0.9,
            prefers=("palestrina", "trecento", "monteverdi"),
        ),
        Style(
            "mallets",
            "Instrumental",
            (12, 11, 13),
            (12, 11),
            (12,),
            (12, 11),
            "arpeggio",
            accomp_prob=0.5,
            dynamics=("p", "mf", "f"),
            legato=0.8,
            prefers=("german_folk", "bach_chorales"),
        ),
        Style(
            "harp",
            "Instrumental",
            (46,),
            (46,),
            (46,),
            (46,),
            "arpeggio",
            accomp_prob=0.7,
            tempo=(("slow", 2.0), ("moderate", 1.0)),
            dynamics=("pp", "p", "mf"),
            legato=0.9,
            prefers=("scottish_airs", "irish_tunes"),
        ),
        Style(
            "classical_guitar",
            "Folk",
            (24,),
            (24,),
            (24,),
            (24,),
            "arpeggio",
            accomp_prob=0.7,
            dynamics=("pp", "p", "mf"),
            legato=0.9,
            prefers=("german_folk", "scottish_airs", "trecento"),
        ),
        Style(
            "fiddle_band",
            "Folk",
            (110, 40),
            None,
            (32,),
            (25, 24),
            "strum",
            accomp_prob=0.7,
            tempo=(("moderate", 1.0), ("fast", 3.0)),
            dynamics=("mf", "f"),
            legato=0.85,
            prefers=("fiddle_tunes", "irish_tunes", "scottish_airs"),
        ),
        Style(
            "whistle_folk",
            "Folk",
            (79, 73, 74, 72),
            None,
            None,
            (25, 21),
            "strum",
            accomp_prob=0.6,
            tempo=(("moderate", 1.0), ("fast", 2.0)),
            dynamics=("p", "mf", "f"),
            legato=0.85,
            prefers=("irish_tunes", "fiddle_tunes", "scottish_airs"),
        ),
        Style(
            "accordion_folk",
            "Folk",
            (21, 23),
            (21,),
            (21,),
            (21,),
            "offbeat",
            "half",
            accomp_prob=0.8,
            dynamics=("mf", "f"),
            legato=0.88,
            prefers=("german_folk", "fiddle_tunes"),
        ),
        Style(
            "banjo_folk",
            "Folk",
            (105,),
            None,
            (32,),
            (25,),
            "strum",
            accomp_prob=0.6,
            tempo=(("moderate", 1.0), ("fast", 2.0)),
            dynamics=("mf", "f"),
            legato=0.7,
            prefers=("fiddle_tunes",),
        ),
        Style(
            "world_plucked",
            "International",
            (104, 107, 106),
            None,
            None,
            (108, 15),
            "arpeggio",
            drums="hand",
            accomp_prob=0.5,
            dynamics=("p", "mf", "f"),
            legato=0.8,
            prefers=("chinese_folk",),
        ),
        Style(
            "world_winds",
            "International",
            (111, 75, 77, 79),
            None,
            None,
            (108, 107),
            "arpeggio",
            drums="hand",
            accomp_prob=0.5,
            tempo=(("slow", 1.0), ("moderate", 2.0)),
            dynamics=("p", "mf", "f"),
            legato=0.92,
            prefers=("chinese_folk",),
        ),
        Style(
            "rock",
            "Rock",
            (30, 29),
            None,
            (34, 33),
            (30, 29),
            "power",
            "pulse8",
            drums="rock",
            accomp_prob=1.0,
            tempo=(("moderate", 1.0), ("fast", 2.0)),
            dynamics=("f", "ff"),
            legato=0.9,
            bpm=(100.0, 150.0),
            prefers=("fiddle_tunes", "irish_tunes", "german_folk"),
        ),
        Style(
            "pop",
            "Pop",
            (4, 0, 5, 81),
            None,
            (33,),
            (27, 0, 4),
            "block",
            "half",
            drums="pop",
            accomp_prob=1.0,
            tempo=(("moderate", 1.0),),
            dynamics=("mf", "f"),
            legato=0.9,
            bpm=(88.0, 112.0),
            prefers=("german_folk", "scottish_airs", "bach_chorales"),
        ),
        Style(
            "electronic",
            "Electronic",
            (81, 80, 87, 84),
            None,
            (38, 39),
            (89, 90, 95),
            "pad",
            "pulse8",
            drums="four",
            accomp_prob=1.0,
            tempo=(("fast", 1.0),),
            dynamics=("f", "ff"),
            legato=0.8,
            bpm=(120.0, 132.0),
            prefers=("fiddle_tunes", "german_folk", "bach_chorales"),
        ),
        Style(
            "hiphop",
            "Hip-Hop",
            (4, 11, 0, 5),
            None,
            (38, 33),
            (4, 89),
            "pad",
            "root",
            drums="boom",
            accomp_prob=1.0,
            tempo=(("slow", 1.0), ("moderate", 1.0)),
            dynamics=("mf", "f"),
            legato=0.85,
            bpm=(78.0, 96.0),
            prefers=("german_folk", "scottish_airs", "chinese_folk"),
        ),
        Style(
            "experimental",
            "Experimental",
            (96, 98, 99, 101, 102, 103, 92, 93),
            (97, 94, 88),
            (95, 91),
            (99, 94),
            "pad",
            accomp_prob=0.3,
            tempo=(("slow", 3.0), ("fast", 1.0)),
            dynamics=("pp", "p", "mf", "ff"),
            legato=1.3,
            prefers=("palestrina", "trecento", "string_quartets"),
        ),
        # One instrument alone, every melodic GM family about equally often (5-12 programs each): in the
        # other styles an instrument is mostly heard inside a mixture, so a caption's word for it rarely
        # meets its sound alone. The captioned corpus only (corpus.CAPTIONED_STYLE_WEIGHTS).
        Style("solo", "Instrumental", tuple(sorted(PROGRAM_FAMILY)), None, None, legato=0.95, captions_only=True),
    )
}

FMA_GENRES: tuple[str, ...] = ("Electronic", "Experimental", "Folk", "Hip-Hop", "Instrumental", "International", "Pop", "Rock")


@dataclass(frozen=True)
class Performance:
    """Every free choice of one rendition; `realize` is a pure function of (piece, performance)."""

    piece_id: str
    style: str
    seed: int
    tempo_class: str
    beat_bpm: float
    dynamics: str
    register_offset: int  # semitones from the instruments' range centres
    start_bar: int
    duration_s: float
    accompany: bool


@dataclass
class Arrangement:
    """Notes to render and the musical facts they carry."""

    notes: np.ndarray  # [n, 5]: start s, end s, channel, MIDI key, velocity
    programs: dict[int, int]  # channel -> GM program (-1: drum kit on channel 9)
    volumes: dict[int, int]  # channel -> CC7
    pans: dict[int, int]  # channel -> CC10
    duration_s: float
    roles: list[tuple[str, int]] = field(default_factory=list)  # (melody|inner|bass|chords|accomp_bass|drums, program)
    key_tonic: int = 0
    key_mode: str = "major"
    register: str = "middle"  # low | middle | high
    melody_median: float = 60.0
    n_parts: int = 1  # sounding voices of the score (generated accompaniment excluded)

    @property
    def instrument_programs(self) -> list[int]:
        """Distinct pitched programs, melody first."""
        seen: list[int] = []
        for _, p in self.roles:
            if p >= 0 and p not in seen:
                seen.append(p)
        return seen

    @property
    def has_drums(self) -> bool:
        return any(p < 0 for _, p in self.roles)

    @property
    def accompanied(self) -> bool:
        return any(r == "chords" for r, _ in self.roles)

    @property
    def texture(self) -> str:
        """solo | accompanied | duet | trio | quartet | ensemble | band."""
        if self.has_drums:
            return "band"
        if self.accompanied and self.n_parts == 1:
            return "accompanied"
        return {1: "solo", 2: "duet", 3: "trio", 4: "quartet"}.get(self.n_parts, "ensemble")

    @property
    def key_name(self) -> str:
        names = PITCH_NAMES_MAJOR if self.key_mode == "major" else PITCH_NAMES_MINOR
        return f"{names[self.key_tonic]} {self.key_mode}"


# ----------------------------------------------------------------------------- planning helpers


def choose_style(rng: np.random.Generator, piece: Piece, weights: dict[str, float]) -> str:
    """Style for a piece: dataset weights x3 where the style usually goes with this collection."""
    names = sorted(weights)
    w = np.array([weights[n] * (3.0 if piece.ref.collection in STYLES[n].prefers else 1.0) for n in names])
    return names[int(rng.choice(len(names), p=w / w.sum()))]


def plan_performance(
    rng: np.random.Generator, piece: Piece, style_name: str, duration_s: float, piece_id: str | None = None
) -> Performance:
    """Draw tempo, dynamics, register, excerpt start and accompaniment for one rendition."""
    style = STYLES[style_name]
    classes = [c for c, _ in style.tempo]
    cw = np.array([w for _, w in style.tempo])
    tempo_class = classes[int(rng.choice(len(classes), p=cw / cw.sum()))]
    if style.bpm is not None:
        bpm = float(rng.uniform(*style.bpm))
        tempo_class = "slow" if bpm < 76 else ("moderate" if bpm <= 114 else "fast")
    else:
        bpm = float(rng.uniform(*TEMPO_RANGES[tempo_class]))
    dyn = style.dynamics[int(rng.integers(len(style.dynamics)))]
    reg = int(rng.integers(-6, 7))
    span_ql = duration_s * bpm / 60.0 * piece.beat_ql
    bars = piece.measure_offsets
    ok = np.nonzero(bars <= max(0.0, piece.length_ql - span_ql))[0]
    start_bar = int(rng.choice(ok)) if len(ok) else 0
    mono = len(piece.parts) == 1
    accompany = bool(mono and style.chords is not None and rng.random() < style.accomp_prob)
    return Performance(
        piece_id or piece.ref.piece_id,
        style_name,
        int(rng.integers(2**31 - 1)),
        tempo_class,
        round(bpm, 2),
        dyn,
        reg,
        start_bar,
        float(duration_s),
        accompany,
    )


def _loop_length(piece: Piece) -> float:
    return float(np.ceil(piece.length_ql / piece.bar_ql - 1e-6) * piece.bar_ql)


def excerpt(piece: Piece, start_ql: float, span_ql: float) -> list[np.ndarray]:
    """Notes of each part sounding in [start, start+span) ql, looping the piece as needed; onsets from 0."""
    loop = _loop_length(piece)
    n_loops = int(np.ceil((start_ql + span_ql) / loop)) + 1
    out = []
    for p in piece.parts:
        reps = [p + np.array([k * loop, 0.0, 0.0]) for k in range(n_loops)]
        allp = np.concatenate(reps)
        keep = (allp[:, 0] >= start_ql - 1e-9) & (allp[:, 0] < start_ql + span_ql)
        q = allp[keep].copy()
        q[:, 0] -= start_ql
        q[:, 1] = np.minimum(q[:, 1], span_ql - q[:, 0])
        out.append(q)
    return out


def _bar_lines(piece: Piece, start_ql: float, span_ql: float) -> np.ndarray:
    """Bar-line positions inside the excerpt (ql from its start), following the looped score."""
    loop = _loop_length(piece)
    n_loops = int(np.ceil((start_ql + span_ql) / loop)) + 1
    bars = np.concatenate([piece.measure_offsets + k * loop for k in range(n_loops)])
    bars = np.unique(np.round(bars, 6))
    bars = bars[(bars >= start_ql - 1e-9) & (bars < start_ql + span_ql)] - start_ql
    if len(bars) == 0 or bars[0] > 1e-9:
        bars = np.concatenate([[0.0], bars])
    return bars


def _triads(tonic: int, mode: str) -> list[tuple[int, tuple[int, int, int], float]]:
    """Diatonic triads (root pc, chord pcs, prior bonus) of a key."""
    if mode == "major":
        degs = [(0, "M", 0.35), (7, "M", 0.25), (5, "M", 0.2), (9, "m", 0.1), (2, "m", 0.05), (4, "m", 0.0)]
    else:
        degs = [(0, "m", 0.35), (7, "M", 0.25), (5, "m", 0.2), (8, "M", 0.1), (3, "M", 0.05), (10, "M", 0.05)]
    out = []
    for off, q, bonus in degs:
        r = (tonic + off) % 12
        third = 4 if q == "M" else 3
        out.append((r, (r, (r + third) % 12, (r + 7) % 12), bonus))
    return out


def harmonize(
    melody: np.ndarray, windows: np.ndarray, end: float, tonic: int, mode: str
) -> list[tuple[float, float, int, tuple[int, int, int]]]:
    """One diatonic triad per window from the melody's duration-weighted pitch classes.

    melody: [n, 3] (onset, dur, midi) in ql. Returns (start, end, root pc, chord pcs) per window.
    """
    bounds = np.append(windows, end)
    triads = _triads(tonic, mode)
    out = []
    prev_root = tonic
    for a, b in zip(bounds[:-1], bounds[1:]):
        if b - a <= 1e-9:
            continue
        hist = np.zeros(12)
        on = melody[:, 0]
        off = melody[:, 0] + melody[:, 1]
        ov = np.clip(np.minimum(off, b) - np.maximum(on, a), 0, None)
        np.add.at(hist, melody[:, 2].astype(int) % 12, ov)
        starts = np.abs(on - a) < 1e-6
        np.add.at(hist, melody[starts, 2].astype(int) % 12, 0.5 * (b - a))  # the note on the downbeat counts more
        tot = hist.sum() or 1.0
        best = max(triads, key=lambda t: sum(hist[pc] for pc in t[1]) / tot + t[2] + (0.05 if t[0] == prev_root else 0.0))
        out.append((float(a), float(b), best[0], best[1]))
        prev_root = best[0]
    return out


def _place(pitch_median: float, center: float) -> int:
    """Octave shift (semitones) bringing a part's median nearest to an instrument's centre."""
    return int(12 * round((center - pitch_median) / 12.0))


def _drum_hits(
    pattern: str, bars: np.ndarray, end: float, beat_ql: float, beats_per_bar: int, vel: int, rng: np.random.Generator
) -> list[tuple[float, int, int]]:
    """(onset ql, GM drum key, velocity) of a drum pattern over the bar grid."""
    hits: list[tuple[float, int, int]] = []
    compound = abs(beat_ql - 1.5) < 1e-6
    sub = 3 if compound else 2
    bounds = np.append(bars, end)
    for bi, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        nb = max(1, int(round((b - a) / beat_ql)))
        for k in range(nb):
            t = a + k * beat_ql
            if t >= end:
                break
            back = (k % 2 == 1) if beats_per_bar % 2 == 0 or nb % 2 == 0 else (k == nb - 1 and k > 0)
            step = beat_ql / sub
            if pattern in ("rock", "pop"):
                if k % 2 == 0 or (pattern == "rock" and k == nb - 2 and nb >= 4):
                    hits.append((t, 36, vel))
                if back:
                    hits.append((t, 38, vel))
                    if pattern == "pop":
                        hits.append((t, 39, vel - 20))
                for s in range(sub):
                    hits.append((t + s * step, 42, vel - (18 if s else 8)))
                if pattern == "rock" and k == nb - 1 and nb >= 2:
                    hits.append((t + step * (sub - 1), 36, vel - 12))
            elif pattern == "four":
                hits.append((t, 36, vel))
                if back:
                    hits.append((t, 39, vel - 8))
                hits.append((t + step * (sub - 1), 46, vel - 20))
                for s in range(2 * sub):
                    hits.append((t + s * step / 2, 42, vel - 34))
            elif pattern == "boom":
                swing = step * 0.33
                if k == 0 or (k == 2 and nb >= 4):
                    hits.append((t, 36, vel))
                if k == 1:
                    hits.append((t + step + swing, 36, vel - 10))
                if back:
                    hits.append((t, 38, vel + 4))
                for s in range(sub):
                    hits.append((t + s * step + (swing if s % 2 else 0.0), 42, vel - (22 if s else 12)))
            elif pattern == "hand":
                hits.append((t, 64 if k == 0 else 63, vel - (0 if k == 0 else 10)))
                hits.append((t + step * (sub - 1), 62, vel - 16))
                if k % 2 == 1:
                    hits.append((t + step, 60, vel - 18))
                for s in range(2 * sub):
                    hits.append((t + s * step / 2, 70, vel - 40))
        if bi == 0 and pattern in ("rock", "pop") and a < end:
            hits.append((a, 49, vel))
    return [(t, key, int(np.clip(v + rng.normal(0, 4), 20, 127))) for t, key, v in hits if t < end]


def realize(piece: Piece, perf: Performance) -> Arrangement:
    """The notes of one rendition. Deterministic in (piece, perf)."""
    style = STYLES[perf.style]
    rng = np.random.default_rng(perf.seed)
    beat_s = 60.0 / perf.beat_bpm
    ql_s = beat_s / piece.beat_ql  # seconds per quarter note
    span_ql = perf.duration_s / ql_s
    bars_all = piece.measure_offsets
    start_ql = float(bars_all[min(perf.start_bar, len(bars_all) - 1)])
    parts = excerpt(piece, start_ql, span_ql)
    bars = _bar_lines(piece, start_ql, span_ql)

    # roles: melody = top part, bass = bottom part, inner = the rest (per style)
    roles: list[tuple[str, np.ndarray]] = [("melody", parts[0])]
    if len(parts) >= 2:
        if style.inner is not None:
            roles += [("inner", p) for p in parts[1:-1]]
        if style.bass is not None:
            roles.append(("bass", parts[-1]))
        elif style.inner is not None:
            roles.append(("inner", parts[-1]))
    melody_program = int(rng.choice(style.melody))
    programs_by_role = {
        "melody": melody_program,
        "inner": int(rng.choice(style.inner)) if style.inner else None,
        "bass": int(rng.choice(style.bass)) if style.bass else None,
        "chords": int(rng.choice(style.chords)) if style.chords else None,
    }
    # a second inner program for variety (e.g. violin II + viola)
    inner_alt = int(rng.choice(style.inner)) if style.inner else None

    # global transposition: the melody near its instrument's centre (+ register offset)
    mel = parts[0]
    mel_med = float(np.median(mel[:, 2])) if len(mel) else 60.0
    lo, hi = program_range(melody_program)
    target = (lo + hi) / 2.0 + perf.register_offset
    t = int(((round(target - mel_med) + 6) % 12) - 6)

    notes: list[tuple[float, float, int, int, int]] = []
    role_list: list[tuple[str, int]] = []
    programs: dict[int, int] = {}
    volumes: dict[int, int] = {}
    pans: dict[int, int] = {}
    base_vel = DYN_VELOCITY[perf.dynamics]
    legato = style.legato
    channels = [c for c in range(16) if c != DRUM_CHANNEL]
    exp = perf.style == "experimental"
    melody_median = mel_med + t
    inner_i = 0
    for _ri, (role, p) in enumerate(roles):
        if len(p) == 0 or len(channels) == 0:
            continue
        prog = programs_by_role[role]
        if role == "inner":
            prog = programs_by_role["inner"] if inner_i % 2 == 0 else inner_alt
            inner_i += 1
        if prog is None:
            continue
        ch = channels.pop(0)
        lo, hi = program_range(prog)
        med = float(np.median(p[:, 2])) + t
        shift = t + _place(med, (lo + hi) / 2.0 + perf.register_offset) if role != "melody" else t + _place(med, target)
        if role == "melody":
            melody_median = float(np.median(p[:, 2])) + shift
        # the bass never sounds above the melody's register after placement
        vel_off = {"melody": 6, "inner": -4, "bass": 0}[role]
        for on, du, midi in p:
            key = int(midi) + shift
            if exp and rng.random() < 0.25:
                continue  # sparse, fragmented texture
            if exp:
                key += int(rng.choice([-12, 0, 0, 12]))
            if not 12 <= key <= 115:
                continue
            st = on * ql_s + rng.normal(0, 0.008)
            en = st + max(0.06, du * ql_s * legato)
            v = int(np.clip(base_vel + vel_off + rng.normal(0, 6), 15, 127))
            notes.append((max(0.0, st), en, ch, key, v))
        programs[ch] = prog
        volumes[ch] = {"melody": 112, "inner": 92, "bass": 100}[role]
        pans[ch] = 64 if role != "inner" else (40 if inner_i % 2 else 88)
        role_list.append((role, prog))

    key_tonic = (piece.tonic + t) % 12
    if perf.accompany and channels:
        _accompany(
            notes,
            role_list,
            programs,
            volumes,
            pans,
            channels,
            style,
            programs_by_role,
            piece,
            bars,
            span_ql,
            ql_s,
            key_tonic,
            base_vel,
            rng,
        )
    if style.drums is not None:
        hits = _drum_hits(
            style.drums, bars, span_ql, piece.beat_ql, piece.beats_per_bar, int(np.clip(base_vel + 4, 30, 124)), rng
        )
        for on, key, v in hits:
            st = max(0.0, on * ql_s + rng.normal(0, 0.004))
            notes.append((st, st + 0.15, DRUM_CHANNEL, key, v))
        programs[DRUM_CHANNEL] = -1
        volumes[DRUM_CHANNEL] = 100
        pans[DRUM_CHANNEL] = 64
        role_list.append(("drums", -1))

    arr = np.asarray(notes, dtype=np.float64).reshape(-1, 5)
    arr = arr[np.lexsort((arr[:, 3], arr[:, 2], arr[:, 0]))]
    register = "low" if melody_median < 58 else ("high" if melody_median > 76 else "middle")
    n_parts = sum(1 for r, _ in role_list if r in ("melody", "inner", "bass"))
    return Arrangement(
        arr, programs, volumes, pans, perf.duration_s, role_list, key_tonic, piece.mode, register, melody_median, n_parts
    )


def _accompany(
    notes,
    role_list,
    programs,
    volumes,
    pans,
    channels,
    style,
    programs_by_role,
    piece,
    bars,
    span_ql,
    ql_s,
    key_tonic,
    base_vel,
    rng,
) -> None:
    """Generated chords (+ bass on the chord roots) under a monophonic tune."""
    mel_notes = [n for n in notes if n[2] == 0]
    if not mel_notes:
        return
    mel = np.array([[n[0] / ql_s, (n[1] - n[0]) / ql_s, n[3]] for n in mel_notes])
    half = piece.beats_per_bar >= 4 and abs(piece.beat_ql - 1.5) > 1e-6
    windows = []
    bounds = np.append(bars, span_ql)
    for a, b in zip(bounds[:-1], bounds[1:]):
        windows.append(a)
        if half and b - a > piece.bar_ql * 0.75:
            windows.append(a + (b - a) / 2)
    chords = harmonize(mel, np.asarray(windows), span_ql, key_tonic, piece.mode)
    cprog = programs_by_role["chords"]
    ch = channels.pop(0)
    programs[ch], volumes[ch], pans[ch] = cprog, 78, 84
    role_list.append(("chords", cprog))
    lo, hi = program_range(cprog)
    center = min(max(60, lo + 8), hi - 8)
    beat = piece.beat_ql
    sub = 3 if abs(beat - 1.5) < 1e-6 else 2
    pat = style.chord_pattern
    v0 = base_vel - 12
    bass_ch = None
    if style.bass is not None and channels:
        bass_ch = channels.pop(0)
        bprog = programs_by_role["bass"]
        programs[bass_ch], volumes[bass_ch], pans[bass_ch] = bprog, 96, 64
        role_list.append(("accomp_bass", bprog))
        blo, bhi = program_range(bprog)
    for a, b, root, pcs in chords:
        # voice the triad close to the centre
        tones = sorted(int(center - 6 + ((pc - (center - 6)) % 12)) for pc in pcs)
        if pat == "power":
            r = int(center - 12 + ((root - (center - 12)) % 12))
            tones = [r, r + 7, r + 12]
        t = a
        events: list[tuple[float, float, list[int], int]] = []  # (start ql, dur ql, keys, vel)
        if pat == "pad":
            events.append((a, b - a, tones, v0))
        elif pat == "arpeggio":
            seq = [tones[0], tones[2], tones[1] + 12, tones[2]]
            step = beat / sub
            i = 0
            while t < b - 1e-9:
                events.append((t, step * 1.8, [seq[i % len(seq)]], v0 - (0 if i % sub == 0 else 6)))
                t += step
                i += 1
        elif pat == "offbeat":
            k = 0
            while t < b - 1e-9:
                if k > 0:
                    events.append((t, beat * 0.5, tones, v0))
                t += beat
                k += 1
        else:  # block / strum / power: on every beat (+ off-beat strums)
            while t < b - 1e-9:
                events.append((t, beat * 0.9, tones, v0))
                if pat in ("strum", "power"):
                    events.append((t + beat / sub * (sub - 1), beat / sub * 0.9, tones, v0 - 14))
                t += beat
        for st, du, keys, v in events:
            if st >= span_ql:
                continue
            for j, key in enumerate(keys):
                off = 0.012 * j if pat in ("strum", "power") else 0.0
                s = st * ql_s + off + rng.normal(0, 0.006)
                notes.append((max(0.0, s), s + du * ql_s, ch, key, int(np.clip(v + rng.normal(0, 5), 15, 127))))
        if bass_ch is not None:
            bkey = int(blo + ((root - blo) % 12))  # lowest root the bass instrument plays well
            if style.bass_pattern == "pulse8":
                step = beat / sub
                t = a
                while t < b - 1e-9:
                    notes.append((t * ql_s, (t + step * 0.85) * ql_s, bass_ch, bkey, int(np.clip(base_vel - 4, 15, 127))))
                    t += step
            elif style.bass_pattern == "half":
                mid = a + (b - a) / 2
                notes.append((a * ql_s, (a + (mid - a) * 0.9) * ql_s, bass_ch, bkey, base_vel))
                notes.append(
                    (mid * ql_s, (mid + (b - mid) * 0.9) * ql_s, bass_ch, bkey + 7 if bkey + 7 <= bhi else bkey, base_vel - 6)
                )
            else:
                notes.append((a * ql_s, (a + (b - a) * 0.95) * ql_s, bass_ch, bkey, base_vel))


def instrument_words(arr: Arrangement) -> list[str]:
    """English names of the instruments heard, melody first, duplicates removed."""
    words: list[str] = []
    for _, p in arr.roles:
        w = program_name(p)
        if w not in words:
            words.append(w)
    return words


def family_of(program: int) -> str | None:
    """NSynth family of a program (None for drums and effects)."""
    return PROGRAM_FAMILY.get(program)
