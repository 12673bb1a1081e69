"""Captions for rendered pieces, written from the metadata in varied natural English.

Like real captions they are weakly aligned: each attribute (work and composer, era or
genre, instruments, texture, tempo, dynamics, key, metre, mood) appears only some of
the time, phrasings vary across several sentence shapes and a tag-list form, and a
small share carries noise (a wrong tempo or instrument word, or an irrelevant remark).
"""

from __future__ import annotations

import re

import numpy as np

from .arrange import Arrangement, Performance, instrument_words
from .scores import Piece

TEMPO_WORDS = {
    "slow": ("slow", "slowly paced", "unhurried", "stately", "adagio", "largo", "leisurely"),
    "moderate": ("moderate tempo", "medium tempo", "andante", "walking pace", "moderato", "mid-tempo"),
    "fast": ("fast", "quick", "lively", "allegro", "upbeat", "brisk", "presto", "up-tempo"),
}
DYN_WORDS = {
    "pp": ("very quiet", "pianissimo", "very soft", "hushed"),
    "p": ("soft", "quiet", "gentle", "delicate"),
    "mf": ("moderately loud", "medium volume", "mezzo-forte", "balanced"),
    "f": ("loud", "strong", "forte", "powerful"),
    "ff": ("very loud", "fortissimo", "intense", "blasting"),
}
METRE_WORDS = {
    "4/4": ("in 4/4", "in common time", "with four beats to the bar"),
    "3/4": ("in 3/4", "in triple metre", "in waltz time", "with three beats per bar"),
    "6/8": ("in 6/8", "in compound duple metre", "with a lilting 6/8 feel"),
    "2/4": ("in 2/4", "in duple metre", "with two beats to a bar"),
    "2/2": ("in cut time", "alla breve", "in 2/2"),
    "3/2": ("in 3/2", "in slow triple metre"),
    "4/2": ("in 4/2", "in long, slow bars"),
    "9/8": ("in 9/8", "with a slip-jig lilt"),
}
TEXTURE_WORDS = {
    "solo": ("solo", "a single unaccompanied line", "one instrument alone"),
    "accompanied": ("a melody with accompaniment", "an accompanied tune", "melody over chords"),
    "duet": ("a duet", "two voices", "two-part writing"),
    "trio": ("a trio", "three-part texture", "three voices"),
    "quartet": ("four-part harmony", "a quartet texture", "four voices"),
    "ensemble": ("a full ensemble", "dense polyphony", "many interweaving voices"),
    "band": ("a full band", "a band with a rhythm section", "a groove with drums"),
}
REGISTER_WORDS = {
    "low": ("in a low register", "deep and dark in range", "low-pitched"),
    "high": ("in a high register", "high-pitched", "bright and high"),
    "middle": (),
}
TEMPO_ADJ = {
    "slow": ("slow", "unhurried", "stately", "leisurely"),
    "moderate": ("mid-tempo", "moderately paced", "steady"),
    "fast": ("fast", "quick", "lively", "upbeat", "brisk"),
}
TEMPO_CLAUSES = {
    "slow": ("at a slow tempo", "slowly", "at a stately pace", "in an unhurried way", "adagio"),
    "moderate": ("at a moderate tempo", "at a walking pace", "at medium tempo", "andante"),
    "fast": ("at a fast tempo", "quickly", "at a lively pace", "briskly", "allegro"),
}
TEMPO_IS = {
    "slow": ("slow", "relaxed", "unhurried", "adagio"),
    "moderate": ("moderate", "medium", "andante", "steady"),
    "fast": ("fast", "quick", "brisk", "allegro"),
}
# arrangement nouns that read well before "of <work>"
STYLE_VERSIONS = {
    "rock": ("a rock arrangement", "a rock version", "a hard rock cover"),
    "pop": ("a pop arrangement", "a light pop version", "a pop cover"),
    "electronic": ("an electronic dance remix", "an EDM version", "a techno remix"),
    "hiphop": ("a hip hop remix", "a lo-fi hip hop flip", "a boom bap version"),
    "world_plucked": ("a world music arrangement", "an East Asian sounding version"),
    "world_winds": ("a world music arrangement", "a version for ethnic winds and percussion"),
    "experimental": ("an experimental deconstruction", "an ambient reworking", "a glitchy sound collage"),
}
# stand-alone descriptions of an arrangement
STYLE_PHRASES = {
    "rock": ("rock music with distorted guitars", "a hard rock instrumental", "a guitar-driven rock track"),
    "pop": ("a light pop track", "a pop song instrumental", "easy-going pop"),
    "electronic": ("an electronic dance track", "electronic music with a four-on-the-floor beat", "club music"),
    "hiphop": ("a hip hop beat", "a laid-back hip hop instrumental", "a lo-fi hip hop groove"),
    "world_plucked": ("world music", "folk music with plucked strings and hand drums"),
    "world_winds": ("world music", "an exotic wind melody over hand percussion"),
    "experimental": ("an experimental soundscape", "ambient, glitchy textures", "an abstract sound collage"),
}
MOODS = {
    ("major", "fast"): ("happy", "cheerful", "joyful", "bright"),
    ("major", "moderate"): ("pleasant", "warm", "content", "friendly"),
    ("major", "slow"): ("peaceful", "calm", "serene", "tender"),
    ("minor", "fast"): ("dramatic", "tense", "urgent", "restless"),
    ("minor", "moderate"): ("wistful", "pensive", "bittersweet"),
    ("minor", "slow"): ("sad", "melancholic", "mournful", "sombre"),
}
NOISE_REMARKS = (
    "Recorded in a large hall.",
    "Nice background music for studying.",
    "The recording sounds a bit synthetic.",
    "Could be from a video game soundtrack.",
    "My grandmother loved this one.",
    "Good for a quiet evening.",
    "Sounds like a MIDI file.",
    "Heard this at a wedding once.",
    "The audio quality is fine.",
)
_KIND_RX = re.compile(
    r"\b(reel|jig|hornpipe|waltz|polka|march|strathspey|schottische|clog|quickstep|slide|fling|air|song)s?\b", re.I
)


def tune_kind(piece: Piece) -> str:
    """'reel', 'jig', ... from a folk tune's title, else the collection's kind."""
    coll = piece.collection
    if coll.era == "traditional":
        m = _KIND_RX.search(piece.title or "")
        if m:
            return m.group(1).lower()
    return coll.kind


def _surname(composer: str) -> str:
    parts = composer.replace(".", " ").split()
    if len(parts) >= 2 and parts[-2].lower() in ("van", "da", "de", "di"):
        return parts[-1] if parts[-2].lower() == "da" else " ".join(parts[-2:]).title().replace("Van ", "van ")
    return parts[-1] if parts else composer


def work_phrase(rng: np.random.Generator, piece: Piece) -> str:
    """How a listener names the music: 'a Bach chorale', 'an Irish reel', ..."""
    coll = piece.collection
    kind = tune_kind(piece)
    comp = piece.composer
    sur = _surname(comp) if comp else None
    options: list[str] = []
    name = coll.name
    if name == "bach_chorales":
        options = [
            "a Bach chorale",
            "a chorale harmonisation by J. S. Bach",
            "a Lutheran chorale",
            "a four-part chorale by Bach",
            "a Baroque chorale",
        ]
    elif name == "palestrina":
        options = [
            "a mass movement by Palestrina",
            "Renaissance sacred polyphony by Palestrina",
            "Renaissance church music",
            "a polyphonic mass section",
        ]
    elif name == "monteverdi":
        options = ["a Monteverdi madrigal", "an Italian madrigal by Claudio Monteverdi", "a late Renaissance madrigal"]
    elif name == "trecento":
        options = ["a medieval Italian song", "a piece of fourteenth-century music", "medieval polyphony"]
        if sur:
            options += [f"a medieval song by {comp}", f"a ballata by {sur}"]
    elif name == "string_quartets":
        options = [
            f"music from a string quartet by {sur}",
            f"a Classical-era quartet movement by {comp}",
            f"a movement by {sur}",
            "Classical-era chamber music",
        ]
    elif name == "fiddle_tunes":
        options = [
            "an old-time fiddle tune",
            f"a traditional {kind}",
            f"a {kind} from Ryan's Mammoth Collection",
            f"an American {kind}",
        ]
    elif name == "irish_tunes":
        options = [f"an Irish {kind}", "a traditional Irish tune", "a tune from O'Neill's Music of Ireland", "an Irish folk tune"]
    elif name == "scottish_airs":
        options = ["a Scottish air", "a traditional Scottish tune", "an old Scottish melody"]
    elif name == "german_folk":
        options = ["a German folk song", "a traditional German melody", "a folk song"]
    elif name == "chinese_folk":
        options = ["a Chinese folk song", "a traditional Chinese melody", "a folk tune from China"]
    else:
        options = [f"a {kind}"]
    return str(options[int(rng.integers(len(options)))])


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def instruments_phrase(rng: np.random.Generator, arr: Arrangement, style: str) -> str:
    """'a string quartet', 'solo flute', 'whistle with acoustic guitar', 'distorted guitar, bass guitar and drums'."""
    words = instrument_words(arr)
    if style == "string_quartet" and arr.texture in ("quartet", "ensemble", "trio"):
        return str(rng.choice(["a string quartet", "strings", "violins, viola and cello"]))
    if style == "choir":
        return str(rng.choice(["a choir", "voices", "a vocal ensemble", "a choir singing wordless vowels"]))
    if style == "church_organ":
        return str(rng.choice(["a church organ", "pipe organ", "the organ"]))
    if arr.texture == "solo":
        w = words[0]
        return str(rng.choice([f"solo {w}", f"a {w} alone", f"a single {w}"]))
    if arr.texture == "accompanied" and len(words) >= 2:
        return f"{words[0]} with {_join(words[1:])} accompaniment"
    if len(words) == 1:
        return str(
            rng.choice(
                [
                    f"{words[0]}s" if not words[0].endswith(("s", "x")) else words[0],
                    f"several {words[0]} parts",
                    f"a {words[0]} ensemble",
                ]
            )
        )
    return _join(words)


def mood_word(rng: np.random.Generator, mode: str, tempo_class: str) -> str:
    return str(rng.choice(MOODS[(mode, tempo_class)]))


def write_caption(rng: np.random.Generator, piece: Piece, perf: Performance, arr: Arrangement) -> str:
    """One caption; every attribute is optional and phrased one of several ways."""
    tempo_class = perf.tempo_class
    instruments = instruments_phrase(rng, arr, perf.style)
    # noise: occasionally a wrong tempo or instrument, as in crowd-sourced captions
    if rng.random() < 0.06:
        tempo_class = str(rng.choice([c for c in TEMPO_WORDS if c != tempo_class]))
    if rng.random() < 0.04:
        instruments = str(rng.choice(["piano", "a violin", "guitar", "a flute", "synthesizer"]))
    tempo = str(rng.choice(TEMPO_WORDS[tempo_class]))
    tempo_clause = str(rng.choice(TEMPO_CLAUSES[tempo_class]))
    tempo_adj = str(rng.choice(TEMPO_ADJ[tempo_class]))
    dyn = str(rng.choice(DYN_WORDS[perf.dynamics]))
    work = work_phrase(rng, piece)
    if perf.style in STYLE_PHRASES and rng.random() < 0.85:
        if rng.random() < 0.6:
            work = f"{rng.choice(STYLE_VERSIONS[perf.style])} of {work}"
        else:
            work = str(rng.choice(STYLE_PHRASES[perf.style]))
    key = arr.key_name if rng.random() < 0.6 else f"a {arr.key_mode} key"
    metre_opts = METRE_WORDS.get(piece.time_signature, (f"in {piece.time_signature}",))
    metre = str(rng.choice(metre_opts))
    mood = mood_word(rng, arr.key_mode, perf.tempo_class)
    texture = str(rng.choice(TEXTURE_WORDS[arr.texture]))
    reg_opts = REGISTER_WORDS[arr.register]
    register = str(rng.choice(reg_opts)) if reg_opts else ""
    era = piece.collection.era
    bpm = f"around {int(round(perf.beat_bpm))} bpm"

    use = lambda p: rng.random() < p  # noqa: E731 - a short local helper reads best here
    form = int(rng.choice(6, p=[0.26, 0.2, 0.18, 0.12, 0.14, 0.1]))
    if form == 0:
        s = f"{work} played by {instruments}" if use(0.5) else f"{work} performed on {instruments}"
        bits = []
        if use(0.7):
            bits.append(tempo_clause)
        if use(0.5):
            bits.append(f"{dyn} throughout" if use(0.5) else f"with {dyn} dynamics")
        s = s + (", " + ", ".join(bits) if bits else "") + "."
        extra = []
        if use(0.45):
            extra.append(f"It is in {key}" + (f", {metre}" if use(0.4) else "") + ".")
        if use(0.3):
            extra.append(f"The mood is {mood}.")
        text = " ".join([s] + extra)
    elif form == 1:
        adjs = [w for w, p in ((tempo_adj, 0.7), (mood, 0.6), (dyn, 0.3)) if use(p)]
        noun = era if perf.style not in STYLE_PHRASES and era != "traditional" else ("folk" if era == "traditional" else "")
        if perf.style in STYLE_PHRASES:
            noun = {
                "rock": "rock",
                "pop": "pop",
                "electronic": "electronic",
                "hiphop": "hip hop",
                "experimental": "experimental",
                "world_plucked": "world",
                "world_winds": "world",
            }[perf.style]
        head = ", ".join(adjs + [f"{noun} music" if noun else "music"])
        text = f"{head} for {instruments}" + (f" in {key}" if use(0.5) else "") + "."
        if use(0.35) and piece.composer:
            text += f" Composed by {piece.composer}."
    elif form == 2:
        verb = "plays" if instruments.startswith(("solo", "a ", "the ", "one")) else "play"
        text = f"{instruments} {verb} {work}"
        if use(0.6):
            text += f", {tempo}"
        if use(0.4):
            text += f" and {dyn}"
        text += "."
        if use(0.4):
            text += f" {texture.capitalize()}, {metre}."
        if use(0.25) and register:
            text += f" Mostly {register}."
    elif form == 3:
        tags = [instrument_words(arr)[0]]
        dyn_tag = {"pp": "very quiet", "p": "quiet", "mf": "medium loud", "f": "loud", "ff": "very loud"}[perf.dynamics]
        for w, p in (
            (tempo_class, 0.7),
            (dyn_tag, 0.5),
            (f"{arr.key_mode} key", 0.5),
            (piece.time_signature, 0.3),
            (mood, 0.5),
            (era if era != "traditional" else "folk", 0.6),
            (arr.texture, 0.4),
            ("drums" if arr.has_drums else "no drums", 0.3),
        ):
            if use(p):
                tags.append(w)
        if perf.style in STYLE_PHRASES:
            tags.insert(1, perf.style.replace("hiphop", "hip hop").replace("_", " "))
        text = ", ".join(tags)
    elif form == 4:
        text = f"This is {work}, arranged for {instruments}." if use(0.5) else f"This is {work} on {instruments}."
        if use(0.6):
            text += f" The tempo is {rng.choice(TEMPO_IS[tempo_class])}" + (f", {bpm}" if use(0.3) else "") + "."
        if use(0.45):
            text += f" The dynamics are {dyn}."
        if use(0.35):
            text += f" Written {metre} and in {key}."
    else:
        text = f"A {mood} piece with {texture}" + (f" and {instruments}" if use(0.7) else "")
        text += (f", {register}" if register and use(0.5) else "") + "."
        if use(0.5):
            text += f" Sounds like {work}."
    if rng.random() < 0.08:
        text += " " + str(rng.choice(NOISE_REMARKS))
    text = re.sub(r"\s+", " ", text).strip()
    return text[0].upper() + text[1:]
