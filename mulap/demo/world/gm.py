"""General MIDI facts used by the demo world: instrument names, NSynth families, ranges.

The NSynth family of a GM program follows the GM program groups (piano -> keyboard,
chromatic percussion -> mallet, pipe -> flute, ...), the way NSynth names its 11
instrument families. Ranges are the comfortable MIDI-pitch span of each instrument,
used to place parts and NSynth notes where the soundfont sample sounds natural.
"""

from __future__ import annotations

from pathlib import Path

# NSynth's instrument_family ids (the real dataset's numbering).
NSYNTH_FAMILIES: tuple[str, ...] = (
    "bass",
    "brass",
    "flute",
    "guitar",
    "keyboard",
    "mallet",
    "organ",
    "reed",
    "string",
    "synth_lead",
    "vocal",
)
NSYNTH_SOURCES: tuple[str, ...] = ("acoustic", "electronic", "synthetic")
NSYNTH_QUALITIES: tuple[str, ...] = (
    "bright",
    "dark",
    "distortion",
    "fast_decay",
    "long_release",
    "multiphonic",
    "nonlinear_env",
    "percussive",
    "reverb",
    "tempo-synced",
)

# Plain English names, as a caption writer or a tagger would say them.
PROGRAM_NAMES: dict[int, str] = {
    0: "piano",
    1: "piano",
    2: "electric grand piano",
    3: "honky-tonk piano",
    4: "electric piano",
    5: "electric piano",
    6: "harpsichord",
    7: "clavinet",
    8: "celesta",
    9: "glockenspiel",
    10: "music box",
    11: "vibraphone",
    12: "marimba",
    13: "xylophone",
    14: "tubular bells",
    15: "dulcimer",
    16: "organ",
    17: "percussive organ",
    18: "rock organ",
    19: "church organ",
    20: "reed organ",
    21: "accordion",
    22: "harmonica",
    23: "bandoneon",
    24: "classical guitar",
    25: "acoustic guitar",
    26: "jazz guitar",
    27: "electric guitar",
    28: "muted guitar",
    29: "overdriven guitar",
    30: "distorted guitar",
    31: "guitar harmonics",
    32: "double bass",
    33: "bass guitar",
    34: "bass guitar",
    35: "fretless bass",
    36: "slap bass",
    37: "slap bass",
    38: "synth bass",
    39: "synth bass",
    40: "violin",
    41: "viola",
    42: "cello",
    43: "double bass",
    44: "tremolo strings",
    45: "pizzicato strings",
    46: "harp",
    48: "string ensemble",
    49: "strings",
    50: "synth strings",
    51: "synth strings",
    52: "choir",
    53: "voices",
    54: "synth voice",
    56: "trumpet",
    57: "trombone",
    58: "tuba",
    59: "muted trumpet",
    60: "french horn",
    61: "brass section",
    62: "synth brass",
    63: "synth brass",
    64: "soprano saxophone",
    65: "alto saxophone",
    66: "tenor saxophone",
    67: "baritone saxophone",
    68: "oboe",
    69: "english horn",
    70: "bassoon",
    71: "clarinet",
    72: "piccolo",
    73: "flute",
    74: "recorder",
    75: "pan flute",
    76: "blown bottle",
    77: "shakuhachi",
    78: "whistle",
    79: "ocarina",
    80: "square lead synth",
    81: "sawtooth synth",
    82: "calliope synth",
    83: "chiff synth",
    84: "charang synth",
    85: "voice synth",
    86: "fifths synth",
    87: "bass and lead synth",
    88: "fantasia pad",
    89: "warm pad",
    90: "polysynth",
    91: "space voice pad",
    92: "bowed glass pad",
    93: "metallic pad",
    94: "halo pad",
    95: "sweep pad",
    96: "ice rain effect",
    97: "soundtrack pad",
    98: "crystal effect",
    99: "atmosphere pad",
    100: "brightness pad",
    101: "goblin effect",
    102: "echo drops",
    103: "sci-fi effect",
    104: "sitar",
    105: "banjo",
    106: "shamisen",
    107: "koto",
    108: "kalimba",
    109: "bagpipe",
    110: "fiddle",
    111: "shehnai",
    112: "tinkle bell",
    114: "steel drums",
}

# GM program -> NSynth instrument family. GM groups, with the voice-like programs
# (choir, voice oohs, synth voice, voice lead, choir pad) as 'vocal' and the fiddle as 'string'.
PROGRAM_FAMILY: dict[int, str] = {}
for _p in range(0, 8):
    PROGRAM_FAMILY[_p] = "keyboard"
for _p in range(8, 16):
    PROGRAM_FAMILY[_p] = "mallet"
for _p in range(16, 24):
    PROGRAM_FAMILY[_p] = "organ"
for _p in range(24, 32):
    PROGRAM_FAMILY[_p] = "guitar"
for _p in range(32, 40):
    PROGRAM_FAMILY[_p] = "bass"
for _p in (40, 41, 42, 43, 44, 45, 46, 48, 49, 50, 51, 110):
    PROGRAM_FAMILY[_p] = "string"
for _p in (52, 53, 54, 85, 91):
    PROGRAM_FAMILY[_p] = "vocal"
for _p in range(56, 64):
    PROGRAM_FAMILY[_p] = "brass"
for _p in range(64, 72):
    PROGRAM_FAMILY[_p] = "reed"
for _p in range(72, 80):
    PROGRAM_FAMILY[_p] = "flute"
for _p in (80, 81, 82, 83, 84, 86, 87):
    PROGRAM_FAMILY[_p] = "synth_lead"

_SYNTHETIC = {38, 39, 50, 51, 54, 62, 63, *range(80, 104)}
_ELECTRONIC = {2, 4, 5, 7, 16, 17, 18, 26, 27, 28, 29, 30, 31, 33, 34, 35, 36, 37}


def program_source(program: int) -> str:
    """NSynth's instrument_source of a GM program: acoustic, electronic or synthetic."""
    if program in _SYNTHETIC:
        return "synthetic"
    if program in _ELECTRONIC:
        return "electronic"
    return "acoustic"


# Comfortable MIDI pitch range per family (lo, hi), with per-program exceptions.
FAMILY_RANGE: dict[str, tuple[int, int]] = {
    "bass": (28, 55),
    "brass": (48, 79),
    "flute": (60, 93),
    "guitar": (40, 76),
    "keyboard": (36, 88),
    "mallet": (60, 91),
    "organ": (36, 84),
    "reed": (52, 84),
    "string": (48, 88),
    "synth_lead": (48, 84),
    "vocal": (48, 76),
}
PROGRAM_RANGE: dict[int, tuple[int, int]] = {
    42: (36, 69),
    43: (28, 55),
    41: (48, 76),
    57: (40, 70),
    58: (28, 55),
    60: (41, 72),
    67: (36, 64),
    66: (44, 75),
    70: (34, 65),
    72: (74, 96),
    46: (36, 84),
    32: (28, 55),
    0: (36, 88),
    19: (36, 84),
    9: (72, 96),
    8: (60, 96),
    6: (41, 84),
    24: (40, 76),
    25: (40, 76),
}


# GM programs whose TimGM6mb sample does not sound at the key's pitch: drawbar organs with
# 16' or 5 1/3' stops (sub-octave / fifth strongest), guitar harmonics (two octaves up), the
# fifths lead, and a mistuned whistle. Fine inside arrangements, but not as labelled notes.
NOT_AT_KEY_PITCH: frozenset[int] = frozenset({16, 17, 18, 31, 78, 86})
# Single keys of the soundfont that are silent or mistuned (found by rendering every key of
# every NSynth-eligible program and checking its pitch): alto sax E4, square lead F#4.
BAD_KEYS: frozenset[tuple[int, int]] = frozenset({(65, 64), (80, 66)})


def program_range(program: int) -> tuple[int, int]:
    """Comfortable (lo, hi) MIDI pitches of a GM program."""
    if program in PROGRAM_RANGE:
        return PROGRAM_RANGE[program]
    family = PROGRAM_FAMILY.get(program, "")  # "": no family, the default range
    return FAMILY_RANGE.get(family, (48, 84))


def program_name(program: int) -> str:
    """Plain English name of a GM program (drum kit is -1)."""
    if program < 0:
        return "drums"
    return PROGRAM_NAMES.get(program, f"instrument {program}")


def soundfont_path() -> Path:
    """The General MIDI soundfont TimGM6mb.sf2 shipped inside the pretty_midi package."""
    from mulap.infra.extras import require

    path = Path(str(require("demo", "pretty_midi", "for its TimGM6mb.sf2 soundfont").__file__)).parent / "TimGM6mb.sf2"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the TimGM6mb.sf2 soundfont is missing from the pretty_midi package")
    return path
