"""Real scores from the music21 corpus, reduced to note lists.

`select_pieces` picks a deterministic selection of pieces per collection (Bach chorales,
Palestrina, Monteverdi, trecento songs, Classical string quartets, fiddle tunes from
Ryan's Mammoth Collection and O'Neill's, Scottish airs, German and Chinese folk songs
of the Essen collection...). `parse_piece` turns one into a `Piece`: per part an array
[n_notes, 3] of (onset in quarter notes, duration in quarter notes, MIDI pitch), plus
metre, bar lines, an estimated key and the score's metadata. Parsing is slow (0.05-3 s
per score), so results are cached as JSON under a user cache folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mulap.infra.extras import require

PARSER_VERSION = 3  # bump when the note extraction changes (invalidates the cache)


@dataclass(frozen=True)
class Collection:
    """A group of corpus files with shared metadata (what a caption may say about them)."""

    name: str
    pattern: str  # regex on the corpus-relative path
    composer: str | None  # None: read from the score's metadata (or unknown)
    era: str  # Baroque, Renaissance, medieval, Classical, Romantic, traditional
    kind: str  # chorale, sacred polyphony, madrigal, fiddle tune, folk song, ...
    origin: str | None = None  # Irish, German, Chinese, Scottish, American ...
    multi_tune: bool = False  # abc files holding many tunes (X: numbers)
    group_by_dir: bool = False  # movements of one work share a split


COLLECTIONS: dict[str, Collection] = {
    c.name: c
    for c in (
        Collection("bach_chorales", r"^bach/bwv[\d.]+\.mxl$", "Johann Sebastian Bach", "Baroque", "chorale", "German"),
        Collection(
            "palestrina",
            r"^palestrina/.+\.krn$",
            "Giovanni Pierluigi da Palestrina",
            "Renaissance",
            "sacred polyphony",
            "Italian",
        ),
        Collection(
            "monteverdi", r"^monteverdi/madrigal\.[\d.]+\.mxl$", "Claudio Monteverdi", "late Renaissance", "madrigal", "Italian"
        ),
        Collection("trecento", r"^trecento/.+\.xml$", None, "medieval", "song", "Italian"),
        Collection(
            "string_quartets",
            r"^(mozart|haydn)/.+\.mxl$|^beethoven/opus18no\d/movement\d\.mxl$",
            None,
            "Classical",
            "string quartet movement",
            None,
            group_by_dir=True,
        ),
        Collection("fiddle_tunes", r"^ryansMammoth/.+\.abc$", None, "traditional", "fiddle tune", "American"),
        Collection("irish_tunes", r"^oneills1850/.+\.abc$", None, "traditional", "dance tune", "Irish", multi_tune=True),
        Collection("scottish_airs", r"^airdsAirs/.+\.abc$", None, "traditional", "air", "Scottish", multi_tune=True),
        Collection(
            "german_folk",
            r"^essenFolksong/(altdeu|ballad|boehme|dva|erk|fink|kinder)\d*\.abc$",
            None,
            "traditional",
            "folk song",
            "German",
            multi_tune=True,
        ),
        Collection("chinese_folk", r"^essenFolksong/han\d\.abc$", None, "traditional", "folk song", "Chinese", multi_tune=True),
    )
}

_COMPOSER_BY_DIR = {"mozart": "Wolfgang Amadeus Mozart", "haydn": "Joseph Haydn", "beethoven": "Ludwig van Beethoven"}


@dataclass(frozen=True)
class PieceRef:
    """One score of the corpus: a file, and the tune number inside multi-tune abc files."""

    collection: str
    path: str  # corpus-relative, e.g. 'bach/bwv250.mxl'
    number: int | None = None

    @property
    def piece_id(self) -> str:
        stem = self.path.rsplit(".", 1)[0]
        return stem if self.number is None else f"{stem}#{self.number}"

    @property
    def group(self) -> str:
        """Split unit: movements of one work stay together."""
        if COLLECTIONS[self.collection].group_by_dir:
            return self.path.rsplit("/", 1)[0]
        return self.piece_id


@dataclass
class Piece:
    """A parsed score. Times are in quarter notes (ql); pitches are MIDI numbers."""

    ref: PieceRef
    title: str
    composer: str | None
    time_signature: str  # e.g. '6/8'
    bar_ql: float
    beat_ql: float
    beats_per_bar: int
    measure_offsets: np.ndarray  # [n_bars] bar-line offsets in ql
    tonic: int  # pitch class 0-11 (estimated from the notes)
    mode: str  # 'major' | 'minor'
    parts: list[np.ndarray] = field(default_factory=list)  # each [n, 3]: onset, dur, midi; top part first

    @property
    def length_ql(self) -> float:
        return float(max(float((p[:, 0] + p[:, 1]).max()) for p in self.parts))

    @property
    def collection(self) -> Collection:
        return COLLECTIONS[self.ref.collection]

    def to_json(self) -> dict:
        return {
            "collection": self.ref.collection,
            "path": self.ref.path,
            "number": self.ref.number,
            "title": self.title,
            "composer": self.composer,
            "time_signature": self.time_signature,
            "bar_ql": self.bar_ql,
            "beat_ql": self.beat_ql,
            "beats_per_bar": self.beats_per_bar,
            "measure_offsets": [round(float(x), 6) for x in self.measure_offsets],
            "tonic": self.tonic,
            "mode": self.mode,
            "parts": [[[round(float(a), 6), round(float(b), 6), int(c)] for a, b, c in p] for p in self.parts],
        }

    @classmethod
    def from_json(cls, d: dict) -> Piece:
        return cls(
            ref=PieceRef(d["collection"], d["path"], d["number"]),
            title=d["title"],
            composer=d["composer"],
            time_signature=d["time_signature"],
            bar_ql=float(d["bar_ql"]),
            beat_ql=float(d["beat_ql"]),
            beats_per_bar=int(d["beats_per_bar"]),
            measure_offsets=np.asarray(d["measure_offsets"], dtype=np.float64),
            tonic=int(d["tonic"]),
            mode=d["mode"],
            parts=[np.asarray(p, dtype=np.float64).reshape(-1, 3) for p in d["parts"]],
        )


# ----------------------------------------------------------------------------- selection


def corpus_root() -> Path:
    """Folder of the music21 corpus (inside the music21 package)."""
    common = require("demo", "music21.common")

    return Path(common.getCorpusFilePath())


def _tune_numbers(path: Path) -> list[int]:
    """X: reference numbers of the tunes in a multi-tune abc file."""
    text = path.read_text(encoding="latin-1")
    return sorted({int(x) for x in re.findall(r"^X:\s*(\d+)", text, flags=re.M)})


def list_candidates(collection: str) -> list[PieceRef]:
    """Every score of a collection in the installed corpus, in a stable order."""
    coll = COLLECTIONS[collection]
    root = corpus_root()
    rx = re.compile(coll.pattern)
    rels = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    refs: list[PieceRef] = []
    for rel in rels:
        if not rx.match(rel):
            continue
        if coll.multi_tune:
            refs.extend(PieceRef(collection, rel, n) for n in _tune_numbers(root / rel))
        else:
            refs.append(PieceRef(collection, rel))
    return refs


def select_pieces(counts: dict[str, int], seed: int, spare: float = 0.25) -> dict[str, list[PieceRef]]:
    """Pick `counts[c]` pieces (plus spares for scores that fail to parse) per collection.

    Deterministic in (counts, seed, installed corpus). Returned lists are in pick order.
    """
    out: dict[str, list[PieceRef]] = {}
    for name in sorted(counts):
        k = counts[name]
        if k <= 0:
            continue
        cands = list_candidates(name)
        if not cands:
            raise FileNotFoundError(f"music21 corpus holds no score of collection {name!r} ({COLLECTIONS[name].pattern})")
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        n = min(len(cands), k + max(2, int(np.ceil(k * spare))))
        idx = rng.choice(len(cands), size=n, replace=False)
        out[name] = [cands[i] for i in idx]
    return out


# ----------------------------------------------------------------------------- parsing

_KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def estimate_key(parts: list[np.ndarray]) -> tuple[int, str]:
    """Krumhansl-Kessler key estimate from duration-weighted pitch classes -> (tonic pc, mode)."""
    hist = np.zeros(12)
    for p in parts:
        np.add.at(hist, p[:, 2].astype(int) % 12, p[:, 1])
    best = (-2.0, 0, "major")
    for tonic in range(12):
        for mode, prof in (("major", _KK_MAJOR), ("minor", _KK_MINOR)):
            r = float(np.corrcoef(hist, np.roll(prof, tonic))[0, 1])
            if r > best[0] + 1e-12:
                best = (r, tonic, mode)
    return best[1], best[2]


def _part_notes(part) -> np.ndarray:
    """music21 part -> [n, 3] (onset ql, duration ql, midi), ties merged, grace notes dropped."""
    require("demo", "music21")
    from music21 import chord, harmony, note

    rows: list[tuple[float, float, int]] = []
    open_ties: dict[int, int] = {}  # midi -> row index of the note a tie continues
    for el in part.flatten().notes:
        if isinstance(el, harmony.Harmony):  # chord symbols are annotations, not sounding notes
            continue
        ql = float(el.quarterLength)
        if ql <= 0:
            continue
        onset = float(el.offset)
        if isinstance(el, chord.Chord):
            items = [(n.pitch.midi, n.tie) for n in el.notes] if el.notes else []
        elif isinstance(el, note.Note):
            items = [(el.pitch.midi, el.tie)]
        else:
            continue
        for midi, tie in items:
            ttype = tie.type if tie is not None else None
            if ttype in ("stop", "continue") and midi in open_ties:
                i = open_ties[midi]
                rows[i] = (rows[i][0], onset + ql - rows[i][0], midi)
                if ttype == "stop":
                    del open_ties[midi]
                continue
            rows.append((onset, ql, int(midi)))
            if ttype == "start":
                open_ties[midi] = len(rows) - 1
    if not rows:
        return np.zeros((0, 3))
    arr = np.asarray(rows, dtype=np.float64)
    return arr[np.lexsort((arr[:, 2], arr[:, 0]))]


def parse_piece(ref: PieceRef) -> Piece:
    """Parse one corpus score (slow) into a Piece. Raises ValueError when it holds no usable music."""
    require("demo", "music21")
    from music21 import corpus, meter, stream

    root = corpus_root()
    if ref.number is not None:
        s = corpus.parse(str(root / ref.path), number=ref.number)
    else:
        s = corpus.parse(str(root / ref.path))
    if isinstance(s, stream.Opus):
        s = s.scores[0]
    parts_m21 = list(s.parts) if len(s.parts) else [s]
    parts = [p for p in (_part_notes(pm) for pm in parts_m21) if len(p)]
    if not parts:
        raise ValueError(f"{ref.path}: no pitched notes")
    # top part first, bottom last (by mean pitch), so arrangements can pick melody and bass
    parts.sort(key=lambda p: -float(np.average(p[:, 2], weights=p[:, 1])))
    tss = list(s.recurse().getElementsByClass(meter.TimeSignature))
    ts = tss[0] if tss else meter.TimeSignature("4/4")
    bar_ql = float(ts.barDuration.quarterLength)
    beat_ql = float(ts.beatDuration.quarterLength)
    beats = int(ts.beatCount)
    measures = list(parts_m21[0].getElementsByClass(stream.Measure))
    offsets = np.asarray(sorted({float(m.offset) for m in measures}), dtype=np.float64)
    if len(offsets) < 2:  # no bar lines in the source: a regular grid from 0
        end = max(float((p[:, 0] + p[:, 1]).max()) for p in parts)
        offsets = np.arange(0.0, end, bar_ql)
    md = s.metadata
    title = (md.title if md is not None and md.title else "") or Path(ref.path).stem
    composer = COLLECTIONS[ref.collection].composer
    top_dir = ref.path.split("/", 1)[0]
    if composer is None:
        composer = _COMPOSER_BY_DIR.get(top_dir)
    if composer is None and md is not None and md.composer and md.composer.strip().lower() not in ("", "unknown", "anonymous"):
        composer = md.composer.strip()
    tonic, mode = estimate_key(parts)
    return Piece(
        ref=ref,
        title=str(title).strip(),
        composer=composer,
        time_signature=ts.ratioString,
        bar_ql=bar_ql,
        beat_ql=beat_ql,
        beats_per_bar=beats,
        measure_offsets=offsets,
        tonic=tonic,
        mode=mode,
        parts=parts,
    )


def default_cache_dir() -> Path:
    """$MULAP_CACHE/demo_scores, else $XDG_CACHE_HOME (or ~/.cache)/mulap/demo_scores."""
    if os.environ.get("MULAP_CACHE"):
        return Path(os.environ["MULAP_CACHE"]) / "demo_scores"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mulap" / "demo_scores"


def _cache_file(cache_dir: Path, ref: PieceRef) -> Path:
    music21 = require("demo", "music21")
    key = f"{PARSER_VERSION}|{music21.__version__}|{ref.collection}|{ref.path}|{ref.number}"
    return cache_dir / f"{hashlib.sha1(key.encode()).hexdigest()}.json"


def load_or_parse(ref: PieceRef, cache_dir: Path | None) -> tuple[PieceRef, dict | None, str | None]:
    """Worker job: the piece as JSON (from cache, else parsed and cached), or an error message."""
    path = _cache_file(cache_dir, ref) if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            return ref, json.loads(path.read_text()), None
        except (OSError, ValueError):
            pass  # unreadable cache entry: parse again
    try:
        d = parse_piece(ref).to_json()
    except Exception as exc:  # noqa: BLE001 - music21 raises many types on odd scores; the piece is skipped
        return ref, None, f"{ref.path}{'' if ref.number is None else f' #{ref.number}'}: {type(exc).__name__}: {exc}"
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(d))
            tmp.replace(path)
        except OSError:
            pass  # a read-only cache only costs time
    return ref, d, None


def usable(piece: Piece, min_notes: int = 16, min_bars: int = 4) -> bool:
    """Enough music to cut 10-30 s clips from (looping is allowed, but not a 3-note fragment)."""
    n = sum(len(p) for p in piece.parts)
    return n >= min_notes and piece.length_ql >= min_bars * piece.bar_ql and piece.bar_ql > 0
