"""Text prompts for zero-shot classification and tagging: default prompt ensembles per class, and
users' prompt files.

A prompts file (YAML or JSON) maps each class name to one text or a list of texts; the class's
embedding is the mean of its texts' embeddings (a prompt ensemble, as CLIP/CLAP do). Emomusic's
regression is scored by contrasting two ensembles per dimension:

    arousal: {high: ["energetic music", ...], low: ["calm music", ...]}
    valence: {high: ["happy music", ...],     low: ["sad music", ...]}

The defaults are written from the class names: a table of synonyms (NSynth's `keyboard` is piano,
keyboard, harpsichord; `reed` is clarinet, oboe, saxophone; Jamendo's `genre---hiphop` is hip hop,
rap) and phrasings chosen by the kind of label (instrument, genre, mood, tempo, voice).
`mulap zeroshot ... --write-prompts FILE` writes them out to start your own file from.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

TEMPLATES = {
    "instrument": ("{w}", "the sound of a {w}", "a {w} playing", "music played on a {w}", "a recording of a {w}"),
    "note": ("a {w}", "a single note played on a {w}", "the sound of a {w}", "a {w} note", "a {w} playing one note"),
    "genre": ("{w}", "{w} music", "a {w} track", "a piece of {w} music", "a {w} song"),
    "mood": ("{w} music", "a {w} piece", "music that sounds {w}", "a {w} track"),
    "attribute": ("{w} music", "a {w} piece", "{w}", "a {w} recording"),
    "voice": ("{w}", "music with {w}", "a song with {w}", "a recording of {w}"),
    "phrase": ("{w}",),
}

# label (lower case, Jamendo prefix removed) -> (kind, synonyms)
VOCABULARY: dict[str, tuple[str, tuple[str, ...]]] = {
    # NSynth instrument families
    "bass": ("instrument", ("bass", "bass guitar", "double bass", "synth bass")),
    "brass": ("instrument", ("trumpet", "trombone", "french horn", "tuba", "brass instrument")),
    "flute": ("instrument", ("flute", "piccolo", "recorder", "pan flute")),
    "guitar": ("instrument", ("guitar", "acoustic guitar", "electric guitar", "classical guitar")),
    "keyboard": ("instrument", ("piano", "keyboard", "harpsichord", "electric piano")),
    "mallet": ("instrument", ("marimba", "xylophone", "vibraphone", "glockenspiel")),
    "organ": ("instrument", ("organ", "church organ", "electric organ", "accordion")),
    "reed": ("instrument", ("clarinet", "oboe", "saxophone", "bassoon")),
    "string": ("instrument", ("violin", "cello", "viola", "string instrument")),
    "synth_lead": ("instrument", ("synth lead", "lead synthesizer", "sawtooth synth", "synthesizer")),
    "vocal": ("voice", ("a singing voice", "vocals", "a choir", "a singer")),
    # instruments in tag vocabularies (MTT, Jamendo)
    "piano": ("instrument", ("piano", "grand piano")),
    "harpsichord": ("instrument", ("harpsichord",)),
    "violin": ("instrument", ("violin", "fiddle")),
    "fiddle": ("instrument", ("fiddle", "violin")),
    "viola": ("instrument", ("viola",)),
    "cello": ("instrument", ("cello",)),
    "harp": ("instrument", ("harp",)),
    "strings": ("instrument", ("strings", "string section", "string orchestra")),
    "sitar": ("instrument", ("sitar",)),
    "banjo": ("instrument", ("banjo",)),
    "accordion": ("instrument", ("accordion",)),
    "trumpet": ("instrument", ("trumpet",)),
    "horns": ("instrument", ("horns", "french horn")),
    "clarinet": ("instrument", ("clarinet",)),
    "oboe": ("instrument", ("oboe",)),
    "sax": ("instrument", ("saxophone", "sax")),
    "saxophone": ("instrument", ("saxophone",)),
    "marimba": ("instrument", ("marimba",)),
    "bagpipes": ("instrument", ("bagpipes", "bagpipe")),
    "drums": ("instrument", ("drums", "drum kit", "percussion")),
    "synth": ("instrument", ("synthesizer", "synth")),
    "synthesizer": ("instrument", ("synthesizer", "synth")),
    "acousticguitar": ("instrument", ("acoustic guitar",)),
    "electricguitar": ("instrument", ("electric guitar", "distorted guitar")),
    "classicalguitar": ("instrument", ("classical guitar", "nylon string guitar")),
    "keyboard_": ("instrument", ("keyboard",)),
    "electricpiano": ("instrument", ("electric piano", "rhodes piano")),
    "drummachine": ("instrument", ("drum machine", "electronic beats")),
    "computer": ("instrument", ("computer", "electronic sounds")),
    "pad": ("instrument", ("synth pad", "ambient pad")),
    "beat": ("attribute", ("beat", "steady beat")),
    "beats": ("attribute", ("beats", "drum beats")),
    # voice
    "voice": ("voice", ("voice", "a singing voice")),
    "vocals": ("voice", ("vocals", "singing")),
    "singing": ("voice", ("singing",)),
    "singer": ("voice", ("a singer",)),
    "male": ("voice", ("a male singer", "a man singing")),
    "female": ("voice", ("a female singer", "a woman singing")),
    "man": ("voice", ("a man singing",)),
    "woman": ("voice", ("a woman singing",)),
    "male vocal": ("voice", ("male vocals",)),
    "female vocal": ("voice", ("female vocals",)),
    "male voice": ("voice", ("a male voice",)),
    "female voice": ("voice", ("a female voice",)),
    "choir": ("voice", ("a choir", "choral singing")),
    "choral": ("voice", ("choral singing", "a choir")),
    "chorus": ("voice", ("a chorus of voices",)),
    "opera": ("voice", ("opera singing",)),
    "duet": ("voice", ("a duet",)),
    "no voice": ("phrase", ("an instrumental piece", "music without vocals", "no singing")),
    "no vocals": ("phrase", ("an instrumental piece", "music without vocals")),
    "no vocal": ("phrase", ("music without vocals",)),
    "no singer": ("phrase", ("an instrumental piece with no singer",)),
    "instrumental": ("phrase", ("an instrumental piece", "instrumental music")),
    # genres and styles
    "classical": ("genre", ("classical", "classical music")),
    "classic": ("genre", ("classical",)),
    "baroque": ("genre", ("baroque", "bach")),
    "medieval": ("genre", ("medieval", "early music", "renaissance")),
    "folk": ("genre", ("folk", "traditional folk")),
    "irish": ("genre", ("irish folk", "irish")),
    "celtic": ("genre", ("celtic", "celtic folk")),
    "country": ("genre", ("country", "bluegrass")),
    "rock": ("genre", ("rock", "guitar rock")),
    "hard rock": ("genre", ("hard rock",)),
    "metal": ("genre", ("metal", "heavy metal")),
    "pop": ("genre", ("pop", "pop song")),
    "electronic": ("genre", ("electronic", "electronic dance")),
    "electro": ("genre", ("electro",)),
    "techno": ("genre", ("techno",)),
    "dance": ("genre", ("dance", "club")),
    "hip hop": ("genre", ("hip hop", "rap")),
    "hiphop": ("genre", ("hip hop", "rap")),
    "hip-hop": ("genre", ("hip hop", "rap")),
    "world": ("genre", ("world music", "ethnic")),
    "international": ("genre", ("world music", "international")),
    "indian": ("genre", ("indian", "indian classical")),
    "oriental": ("genre", ("oriental", "east asian")),
    "eastern": ("genre", ("eastern", "asian")),
    "experimental": ("genre", ("experimental", "avant-garde")),
    "ambient": ("genre", ("ambient",)),
    "new age": ("genre", ("new age",)),
    "newage": ("genre", ("new age",)),
    "weird": ("attribute", ("weird", "strange")),
    "strange": ("attribute", ("strange", "weird")),
    "orchestral": ("genre", ("orchestral", "orchestra")),
    "soundtrack": ("genre", ("soundtrack", "film score")),
    "chillout": ("genre", ("chillout", "chill")),
    "easylistening": ("genre", ("easy listening",)),
    "jazz": ("genre", ("jazz",)),
    "blues": ("genre", ("blues",)),
    "reggae": ("genre", ("reggae",)),
    # tempo, loudness, texture
    "fast": ("attribute", ("fast", "quick", "up-tempo")),
    "slow": ("attribute", ("slow", "unhurried")),
    "loud": ("attribute", ("loud", "powerful")),
    "quiet": ("attribute", ("quiet", "soft")),
    "soft": ("attribute", ("soft", "gentle")),
    "solo": ("attribute", ("solo", "a single instrument")),
    # moods
    "happy": ("mood", ("happy", "cheerful")),
    "sad": ("mood", ("sad", "sorrowful")),
    "calm": ("mood", ("calm", "peaceful")),
    "dark": ("mood", ("dark", "gloomy")),
    "relaxing": ("mood", ("relaxing", "calm")),
    "energetic": ("mood", ("energetic", "lively")),
    "melancholic": ("mood", ("melancholic", "sad")),
    "epic": ("mood", ("epic", "grand")),
    "romantic": ("mood", ("romantic", "tender")),
    "dramatic": ("mood", ("dramatic",)),
    "upbeat": ("mood", ("upbeat", "lively")),
    "meditative": ("mood", ("meditative", "calm")),
    "film": ("genre", ("film music", "soundtrack")),
    "emotional": ("mood", ("emotional", "moving")),
    "fun": ("mood", ("fun", "playful")),
    "peaceful": ("mood", ("peaceful", "calm")),
}
# FMA's genre names and NSynth-style task kinds
TASK_KIND = {"nsynth_clf": "note", "fma_clf": "genre"}

EMOMUSIC_PROMPTS = {
    "arousal": {
        "high": ["energetic music", "intense, exciting music", "loud and fast music", "lively, powerful music"],
        "low": ["calm music", "relaxing, quiet music", "slow and soft music", "peaceful, gentle music"],
    },
    "valence": {
        "high": ["happy music", "cheerful, joyful music", "bright, uplifting music in a major key", "playful music"],
        "low": ["sad music", "melancholic, gloomy music", "dark, sorrowful music in a minor key", "mournful music"],
    },
}


def _key(label: str) -> tuple[str, str | None]:
    """(vocabulary key, the kind a Jamendo prefix implies)."""
    kind = None
    if "---" in label:
        prefix, label = label.split("---", 1)
        kind = {"genre": "genre", "instrument": "instrument", "mood/theme": "mood"}.get(prefix)
    key = label.strip().lower().replace("_", " ") if label.lower() != "synth_lead" else "synth_lead"
    if key == "keyboard" and kind == "instrument":
        key = "keyboard_"
    return key, kind


def with_articles(text: str) -> str:
    """'a' before a vowel sound becomes 'an' ("an organ", "an electric guitar"; "a ukulele" stays)."""
    return re.sub(r"\b([Aa]) (?=(?!eu|uni|use|usu|uku|one\b|once)[aeiou]|hour|honest)", r"\1n ", text)


def class_words(task: str, label: str) -> tuple[str, tuple[str, ...]]:
    """(the kind of phrasing, the words) of a task's class: its synonyms in VOCABULARY, else its own name."""
    key, prefix_kind = _key(label)
    kind, words = VOCABULARY.get(key, VOCABULARY.get(key.replace(" ", ""), (None, (key,))))
    kind = TASK_KIND.get(task, prefix_kind or kind or "attribute") if kind != "phrase" else "phrase"
    if task == "nsynth_clf" and VOCABULARY.get(key, ("",))[0] == "voice":
        kind = "voice"
    return kind, words


def ensemble(words, templates) -> list[str]:
    """Every template filled with every word, articles mended, each text once, in order."""
    return list(dict.fromkeys(with_articles(tpl.format(w=w)) for w in words for tpl in templates))


def default_prompts(task: str, label_names: list[str]) -> dict:
    """Default prompt ensembles for a task's classes (see the module docstring)."""
    if task == "emomusic_reg":
        return {k: {s: list(v) for s, v in d.items()} for k, d in EMOMUSIC_PROMPTS.items() if k in label_names}
    out = {}
    for label in label_names:
        kind, words = class_words(task, label)
        out[label] = ensemble(words, TEMPLATES[kind])
    return out


class PromptsError(ValueError):
    """A prompts file that does not fit the task; the message names the file and the classes."""


def read_prompts(path: str | Path, task_type: str, label_names: list[str]) -> dict:
    """A user's prompts file (YAML or JSON), checked against the task's classes."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise PromptsError(f"{path}: cannot read the prompts ({exc})") from None
    if not isinstance(data, dict):
        raise PromptsError(f"{path}: expected a mapping of class name -> text or list of texts")
    check_prompts(data, task_type, label_names, str(path))
    return data


def check_prompts(data: dict, task_type: str, label_names: list[str], where: str = "prompts") -> None:
    missing = [c for c in label_names if c not in data]
    unknown = [c for c in data if c not in label_names]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"no prompts for class(es) {missing}")
        if unknown:
            parts.append(f"unknown class(es) {unknown} (the task's classes: {label_names})")
        raise PromptsError(f"{where}: " + "; ".join(parts))
    for c, v in data.items():
        if task_type == "regression":
            if not isinstance(v, dict) or set(v) != {"high", "low"}:
                raise PromptsError(f"{where}: {c!r} needs 'high' and 'low' prompt lists (a contrast), got {v!r}")
            for side in ("high", "low"):
                _texts(v[side], f"{where}: {c}.{side}")
        else:
            _texts(v, f"{where}: {c}")


def _texts(v, where: str) -> list[str]:
    texts = [v] if isinstance(v, str) else v
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise PromptsError(f"{where}: expected a non-empty text or list of non-empty texts, got {v!r}")
    return texts


def as_lists(data: dict) -> dict:
    """Every entry as a list of texts (a single string becomes a one-item list)."""
    return {k: ({s: _texts(x, k) for s, x in v.items()} if isinstance(v, dict) else _texts(v, k)) for k, v in data.items()}
