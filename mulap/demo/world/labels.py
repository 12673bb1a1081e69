"""Ground-truth labels of a rendition, and the annotator noise real datasets carry.

Tags (MagnaTagATune and MTG-Jamendo vocabularies), the FMA top genre and Emomusic
arousal/valence are all derived from what was actually rendered: instruments, drums,
tempo, dynamics, register, mode, texture, and the collection/style (a genre proxy).
`noisy` then drops true tags and adds rare false ones, as crowd and uploader tags do.
"""

from __future__ import annotations

import numpy as np

from .arrange import DYNAMICS
from .world import Rendition

CLASSICAL_STYLES = {
    "string_quartet",
    "string_orchestra",
    "choir",
    "church_organ",
    "piano",
    "harpsichord",
    "brass",
    "woodwinds",
    "recorder_consort",
    "mallets",
    "harp",
}
FOLK_STYLES = {"fiddle_band", "whistle_folk", "accordion_folk", "banjo_folk", "classical_guitar"}
CLASSICAL_COLLECTIONS = {"bach_chorales", "palestrina", "monteverdi", "trecento", "string_quartets"}
FOLK_COLLECTIONS = {"fiddle_tunes", "irish_tunes", "scottish_airs", "german_folk", "chinese_folk"}
VOCAL_PROGRAMS = {52, 53, 54, 85, 91}

# MagnaTagATune-style tag vocabulary (column order of annotations_final.csv)
MTT_TAGS: tuple[str, ...] = (
    "no voice",
    "singer",
    "duet",
    "plucking",
    "hard rock",
    "world",
    "harpsichord",
    "sitar",
    "chorus",
    "female",
    "classical",
    "strings",
    "drums",
    "electronic",
    "rock",
    "fast",
    "piano",
    "ambient",
    "beat",
    "violin",
    "vocal",
    "synth",
    "indian",
    "choral",
    "slow",
    "loud",
    "quiet",
    "flute",
    "soft",
    "pop",
    "solo",
    "classic",
    "choir",
    "voice",
    "new age",
    "dance",
    "beats",
    "harp",
    "cello",
    "no vocals",
    "weird",
    "country",
    "metal",
    "techno",
    "instrumental",
    "organ",
    "guitar",
    "baroque",
    "folk",
    "medieval",
    "irish",
    "celtic",
    "oriental",
    "bass",
    "trumpet",
    "brass",
    "clarinet",
    "oboe",
    "sax",
    "accordion",
    "banjo",
    "fiddle",
    "marimba",
    "happy",
    "sad",
    "calm",
    "dark",
    "hip hop",
    "electro",
    "viola",
    "horns",
    "bagpipes",
    "eastern",
    "no singer",
    "strange",
)

JAMENDO_GENRES = (
    "classical",
    "baroque",
    "folk",
    "rock",
    "pop",
    "electronic",
    "hiphop",
    "world",
    "experimental",
    "ambient",
    "newage",
    "country",
    "celtic",
    "techno",
    "dance",
    "orchestral",
    "soundtrack",
    "chillout",
    "easylistening",
    "medieval",
    "choir",
)
JAMENDO_INSTRUMENTS = (
    "piano",
    "guitar",
    "acousticguitar",
    "electricguitar",
    "classicalguitar",
    "violin",
    "strings",
    "cello",
    "drums",
    "bass",
    "synthesizer",
    "voice",
    "flute",
    "organ",
    "accordion",
    "harp",
    "brass",
    "keyboard",
    "electricpiano",
    "drummachine",
    "computer",
    "pad",
    "viola",
)
JAMENDO_MOODS = (
    "happy",
    "sad",
    "relaxing",
    "calm",
    "energetic",
    "dark",
    "melancholic",
    "epic",
    "romantic",
    "dramatic",
    "upbeat",
    "meditative",
    "film",
    "emotional",
    "fun",
    "peaceful",
)


def _programs(r: Rendition) -> set[int]:
    return set(r.arr.instrument_programs)


def mtt_tags(r: Rendition) -> set[str]:
    """True MTT-vocabulary tags of a rendition (before annotator noise)."""
    a, p, s = r.arr, r.perf, r.perf.style
    progs = _programs(r)
    coll = r.piece.ref.collection
    t: set[str] = set()
    if s in CLASSICAL_STYLES and coll in CLASSICAL_COLLECTIONS:
        t |= {"classical", "classic"}
    elif s in CLASSICAL_STYLES:
        t.add("classical")
    if coll == "bach_chorales" and s in CLASSICAL_STYLES:
        t.add("baroque")
    if coll in ("trecento", "palestrina") and s in CLASSICAL_STYLES:
        t.add("medieval")
    if s in FOLK_STYLES or (coll in FOLK_COLLECTIONS and s in CLASSICAL_STYLES and a.texture in ("solo", "accompanied")):
        t.add("folk")
    if coll in ("irish_tunes", "scottish_airs") and s in FOLK_STYLES | {"harp"}:
        t |= {"irish", "celtic"} if coll == "irish_tunes" else {"celtic"}
    if s == "banjo_folk" or (s == "fiddle_band" and coll == "fiddle_tunes"):
        t.add("country")
    if s == "rock":
        t |= {"rock", "hard rock"} if p.dynamics == "ff" else {"rock"}
        if p.dynamics == "ff":
            t.add("metal")
    if s == "pop":
        t.add("pop")
    if s == "electronic":
        t |= {"electronic", "techno", "dance", "electro"}
    if s == "hiphop":
        t |= {"hip hop", "beats"}
    if s in ("world_plucked", "world_winds"):
        t |= {"world", "oriental", "eastern"}
        if 104 in progs:
            t.add("indian")
    if s == "experimental":
        t |= {"weird", "ambient", "strange", "new age"}
    if s == "string_orchestra" and p.tempo_class == "slow" and p.dynamics in ("pp", "p"):
        t.add("ambient")
    # instruments
    inst = {
        0: "piano",
        1: "piano",
        6: "harpsichord",
        19: "organ",
        16: "organ",
        40: "violin",
        110: "fiddle",
        42: "cello",
        41: "viola",
        46: "harp",
        104: "sitar",
        105: "banjo",
        21: "accordion",
        23: "accordion",
        56: "trumpet",
        60: "horns",
        71: "clarinet",
        68: "oboe",
        109: "bagpipes",
        12: "marimba",
    }
    for prog, tag in inst.items():
        if prog in progs:
            t.add(tag)
    if 110 in progs:
        t.add("violin")
    if progs & {40, 41, 42, 43, 44, 45, 48, 49, 50, 51, 110}:
        t.add("strings")
    if progs & set(range(24, 32)):
        t.add("guitar")
    if progs & set(range(72, 80)):
        t.add("flute")
    if progs & set(range(56, 64)):
        t.add("brass")
    if progs & set(range(64, 68)):
        t.add("sax")
    if progs & set(range(80, 104)) or progs & {38, 39}:
        t.add("synth")
    if progs & set(range(32, 40)):
        t.add("bass")
    if a.has_drums:
        t.add("drums")
        if p.tempo_class != "slow":
            t.add("beat")
    if progs & VOCAL_PROGRAMS:
        t |= {"vocal", "voice", "choir", "chorus"} if s == "choir" else {"vocal", "voice"}
        if s == "choir":
            t.add("choral")
    else:
        t |= {"no voice", "no vocals", "instrumental", "no singer"}
    # tempo, dynamics, texture, mood
    if p.tempo_class == "fast":
        t.add("fast")
    if p.tempo_class == "slow":
        t.add("slow")
    if p.dynamics in ("f", "ff"):
        t.add("loud")
    if p.dynamics in ("pp", "p"):
        t |= {"quiet", "soft"}
    if a.texture == "solo":
        t.add("solo")
    if a.texture == "duet":
        t.add("duet")
    if a.key_mode == "major" and p.tempo_class == "fast":
        t.add("happy")
    if a.key_mode == "minor" and p.tempo_class == "slow":
        t.add("sad")
    if p.tempo_class == "slow" and p.dynamics in ("pp", "p"):
        t.add("calm")
    if a.key_mode == "minor" and a.register == "low":
        t.add("dark")
    return {x for x in t if x in MTT_TAGS}


# how reliably annotators mark a true tag (the rest default to 0.7)
_MTT_KEEP = {
    "no voice": 0.35,
    "no vocals": 0.3,
    "instrumental": 0.25,
    "no singer": 0.2,
    "classic": 0.4,
    "classical": 0.85,
    "drums": 0.8,
    "piano": 0.85,
    "guitar": 0.8,
    "fast": 0.75,
    "slow": 0.75,
    "happy": 0.4,
    "sad": 0.4,
    "calm": 0.4,
    "dark": 0.35,
    "strange": 0.5,
}


def noisy(
    rng: np.random.Generator,
    true: set[str],
    vocab: tuple[str, ...],
    keep: dict[str, float] | None = None,
    default_keep: float = 0.7,
    false_rate: float = 0.015,
) -> list[str]:
    """Annotated tags: each true tag kept with its probability, plus rare false tags; sorted by vocab order."""
    keep = keep or {}
    out = {t for t in sorted(true) if rng.random() < keep.get(t, default_keep)}
    for t in vocab:
        if t not in true and rng.random() < false_rate:
            out.add(t)
    return [t for t in vocab if t in out]


def noisy_mtt(rng: np.random.Generator, r: Rendition) -> list[str]:
    return noisy(rng, mtt_tags(r), MTT_TAGS, _MTT_KEEP, 0.7, 0.004)


def jamendo_tags(r: Rendition) -> set[str]:
    """True MTG-Jamendo tags ('genre---x', 'instrument---x', 'mood/theme---x')."""
    a, p, s = r.arr, r.perf, r.perf.style
    progs = _programs(r)
    coll = r.piece.ref.collection
    g: set[str] = set()
    if s in CLASSICAL_STYLES:
        g.add("classical")
        if coll == "bach_chorales":
            g.add("baroque")
        if coll in ("trecento", "palestrina"):
            g.add("medieval")
        if s in ("string_orchestra", "brass"):
            g.add("orchestral")
        if s == "choir":
            g.add("choir")
        if p.tempo_class == "slow" and p.dynamics in ("pp", "p"):
            g.add("easylistening")
    if s in FOLK_STYLES or (coll in FOLK_COLLECTIONS and s == "harp"):
        g.add("folk")
        if coll in ("irish_tunes", "scottish_airs"):
            g.add("celtic")
        if s == "banjo_folk":
            g.add("country")
    g |= {
        "rock": {"rock"},
        "pop": {"pop", "easylistening"},
        "electronic": {"electronic", "techno", "dance"},
        "hiphop": {"hiphop", "chillout"},
        "world_plucked": {"world"},
        "world_winds": {"world", "newage"},
        "experimental": {"experimental", "ambient", "soundtrack"},
    }.get(s, set())
    i: set[str] = set()
    if progs & {0, 1}:
        i |= {"piano", "keyboard"}
    if progs & {4, 5}:
        i |= {"electricpiano", "keyboard"}
    if progs & set(range(24, 32)):
        i.add("guitar")
        if progs & {25}:
            i.add("acousticguitar")
        if progs & {24}:
            i |= {"classicalguitar", "acousticguitar"}
        if progs & {26, 27, 28, 29, 30, 31}:
            i.add("electricguitar")
    if progs & {40, 110}:
        i.add("violin")
    if 41 in progs:
        i.add("viola")
    if 42 in progs:
        i.add("cello")
    if progs & {40, 41, 42, 43, 44, 45, 48, 49, 50, 51}:
        i.add("strings")
    if a.has_drums:
        i.add("drums")
        if s in ("electronic", "hiphop"):
            i |= {"drummachine", "computer"}
    if progs & set(range(32, 40)):
        i.add("bass")
    if progs & set(range(80, 104)) or progs & {38, 39}:
        i.add("synthesizer")
    if progs & set(range(88, 96)):
        i.add("pad")
    if progs & VOCAL_PROGRAMS:
        i.add("voice")
    if progs & set(range(72, 80)):
        i.add("flute")
    if progs & {16, 19, 20}:
        i.add("organ")
    if progs & {21, 23}:
        i.add("accordion")
    if 46 in progs:
        i.add("harp")
    if progs & set(range(56, 64)):
        i.add("brass")
    m: set[str] = set()
    fast, slow = p.tempo_class == "fast", p.tempo_class == "slow"
    loud, soft = p.dynamics in ("f", "ff"), p.dynamics in ("pp", "p")
    major = a.key_mode == "major"
    if major and fast:
        m |= {"happy", "fun", "upbeat"}
    if major and not fast and not loud:
        m |= {"peaceful"} if slow else {"happy"}
    if not major and slow:
        m |= {"sad", "melancholic", "emotional"}
    if fast and loud:
        m.add("energetic")
    if slow and soft:
        m |= {"relaxing", "calm", "meditative"}
    if not major and (a.register == "low" or s == "experimental"):
        m.add("dark")
    if loud and s in ("string_orchestra", "brass", "church_organ", "choir") and not major:
        m |= {"epic", "dramatic"}
    if major and slow and s in ("piano", "string_quartet", "string_orchestra", "harp"):
        m.add("romantic")
    if s in ("string_orchestra", "experimental"):
        m.add("film")
    return {f"genre---{x}" for x in g} | {f"instrument---{x}" for x in i} | {f"mood/theme---{x}" for x in m}


JAMENDO_VOCAB: tuple[str, ...] = tuple(
    [f"genre---{x}" for x in JAMENDO_GENRES]
    + [f"instrument---{x}" for x in JAMENDO_INSTRUMENTS]
    + [f"mood/theme---{x}" for x in JAMENDO_MOODS]
)


def noisy_jamendo(rng: np.random.Generator, r: Rendition) -> list[str]:
    """Uploader tags: genres mostly given, instruments and moods often missing; sorted alphabetically."""
    true = jamendo_tags(r)
    keep = {t: (0.85 if t.startswith("genre") else 0.6 if t.startswith("instrument") else 0.45) for t in true}
    tags = noisy(rng, true, JAMENDO_VOCAB, keep, 0.6, 0.004)
    if not tags and true:  # the dataset only lists tracks that carry at least one tag
        tags = [sorted(true)[0]]
    return sorted(tags)


def fma_genre(r: Rendition) -> str:
    """FMA top genre of a rendition (its style's genre)."""
    from .arrange import STYLES

    return STYLES[r.perf.style].genre


_BRIGHT = {
    72: 1.0,
    73: 0.6,
    78: 1.0,
    9: 1.0,
    13: 0.8,
    56: 0.8,
    80: 0.6,
    81: 0.7,
    40: 0.3,
    110: 0.5,
    105: 0.6,
    42: -0.6,
    19: -0.4,
    70: -0.7,
    58: -0.9,
    43: -0.9,
    32: -0.6,
    89: -0.5,
    94: -0.5,
    95: -0.4,
    99: -0.5,
    49: -0.3,
    52: -0.2,
    53: -0.3,
}


def emotion(rng: np.random.Generator, r: Rendition) -> tuple[float, float, float, float]:
    """(mean_arousal, std_arousal, mean_valence, std_valence) on the 1-9 scale.

    Arousal follows tempo, dynamics, drums and register; valence follows mode, tempo,
    register and instrument brightness; both with rater noise.
    """
    p, a = r.perf, r.arr
    tempo_z = (np.log(p.beat_bpm) - np.log(92.0)) / 0.33
    dyn_z = (DYNAMICS.index(p.dynamics) - 2) / 1.2
    reg_z = (a.melody_median - 67.0) / 9.0
    bright = float(np.mean([_BRIGHT.get(q, 0.0) for q in a.instrument_programs])) if a.instrument_programs else 0.0
    mode = 1.0 if a.key_mode == "major" else -1.0
    arousal = 5.0 + 1.0 * tempo_z + 0.9 * dyn_z + 0.6 * float(a.has_drums) + 0.25 * reg_z + rng.normal(0, 0.45)
    valence = 5.0 + 0.9 * mode + 0.5 * tempo_z + 0.35 * reg_z + 0.8 * bright + rng.normal(0, 0.5)
    arousal = float(np.clip(arousal, 1.0, 9.0))
    valence = float(np.clip(valence, 1.0, 9.0))
    return (round(arousal, 2), round(float(rng.uniform(0.5, 1.7)), 2), round(valence, 2), round(float(rng.uniform(0.5, 1.7)), 2))
