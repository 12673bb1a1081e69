"""FMA (the small subset) in its published layout.

<out>/raw/fma/fma_metadata/tracks.csv   two header rows (column groups album/artist/set/track and
    their fields, e.g. ('set','split'), ('set','subset'), ('track','genre_top')) then the
    'track_id' index row; read with pandas.read_csv(path, index_col=0, header=[0, 1])
<out>/raw/fma/fma_metadata/genres.csv
<out>/raw/fma/fma_small/<id[:3]>/<id:06d>.mp3   22.05 kHz mono (real: 44.1 kHz stereo)
Eight balanced top genres. Like the real metadata, tracks.csv also lists tracks of the
medium/large subsets (no audio in fma_small, some without genre_top), and holds the six
known-broken fma_small clips (98565, 98567, 98569, 99134, 108925, 133297) whose mp3s are
well under a second long.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .arrange import FMA_GENRES, STYLES
from .jobs import ClipOut, RenderJob, render_job
from .world import SPLITS, PieceDrawer, World, perform, rng_for, split_sizes

FMA_SPLIT_NAMES = {"train": "training", "valid": "validation", "test": "test"}
FMA_SAMPLE_RATE = 22_050
BROKEN_IDS = (98565, 98567, 98569, 99134, 108925, 133297)
GENRE_IDS = {
    "Electronic": 15,
    "Experimental": 38,
    "Folk": 17,
    "Hip-Hop": 21,
    "Instrumental": 1235,
    "International": 2,
    "Pop": 10,
    "Rock": 12,
}
GENRE_STYLES = {g: tuple(sorted(s.name for s in STYLES.values() if s.genre == g and not s.captions_only)) for g in FMA_GENRES}

_COLUMNS = (
    [
        ("album", c)
        for c in (
            "comments",
            "date_created",
            "date_released",
            "engineer",
            "favorites",
            "id",
            "information",
            "listens",
            "producer",
            "tags",
            "title",
            "tracks",
            "type",
        )
    ]
    + [
        ("artist", c)
        for c in (
            "active_year_begin",
            "active_year_end",
            "associated_labels",
            "bio",
            "comments",
            "date_created",
            "favorites",
            "id",
            "latitude",
            "location",
            "longitude",
            "members",
            "name",
            "related_projects",
            "tags",
            "website",
            "wikipedia_page",
        )
    ]
    + [("set", "split"), ("set", "subset")]
    + [
        ("track", c)
        for c in (
            "bit_rate",
            "comments",
            "composer",
            "date_created",
            "date_recorded",
            "duration",
            "favorites",
            "genre_top",
            "genres",
            "genres_all",
            "information",
            "interest",
            "language_code",
            "license",
            "listens",
            "lyricist",
            "number",
            "publisher",
            "tags",
            "title",
        )
    ]
)


@dataclass
class FmaTrack:
    track_id: int
    split: str  # train | valid | test
    subset: str  # small | medium | large
    genre: str | None
    duration: float
    title: str
    artist: str
    piece_id: str | None
    has_audio: bool

    @property
    def path(self) -> str:
        tid = f"{self.track_id:06d}"
        return f"{tid[:3]}/{tid}.mp3"


def plan_fma(world: World, root: Path, per_genre: int, seconds: float) -> tuple[list[FmaTrack], list[RenderJob]]:
    """Balanced genres per split (+ the 6 broken clips and some non-small metadata rows)."""
    rng_ids = rng_for(world.seed, "fma", "ids")
    sizes = split_sizes(world, per_genre * len(FMA_GENRES))
    per_split = {s: max(1, int(round(n / len(FMA_GENRES)))) if n else 0 for s, n in sizes.items()}
    n_small = sum(per_split.values()) * len(FMA_GENRES)
    n_other = max(4, n_small // 8)
    pool_ids = np.setdiff1d(np.arange(2, 155_000), np.array(BROKEN_IDS))
    ids = [int(x) for x in rng_ids.choice(pool_ids, size=n_small + n_other, replace=False)]
    tracks: list[FmaTrack] = []
    jobs: list[RenderJob] = []
    groups = sorted({p.ref.group for p in world.pieces.values()})
    k = 0
    for split in SPLITS:
        rng = rng_for(world.seed, "fma", split)
        drawer = PieceDrawer(world.pool(split), rng) if per_split[split] else None
        for genre in FMA_GENRES:
            for _ in range(per_split[split]):
                assert drawer is not None  # this split has tracks
                style = GENRE_STYLES[genre][int(rng.integers(len(GENRE_STYLES[genre])))]
                piece = drawer.preferring(STYLES[style].prefers)
                r = perform(rng, piece, style, seconds)
                artist = f"{style.replace('_', ' ').title()} {1 + groups.index(r.piece.ref.group)}"
                t = FmaTrack(ids[k], split, "small", genre, seconds, r.piece.title, artist, r.piece.ref.piece_id, True)
                tracks.append(t)
                jobs.append(
                    render_job(
                        r.arr,
                        r.perf,
                        [ClipOut(str(root / "fma_small" / t.path), 0.0, seconds)],
                        stereo=False,
                        sample_rate=FMA_SAMPLE_RATE,
                        level_jitter_db=float(rng.normal(0, 2.0)),
                    )
                )
                k += 1
    # the six known-broken clips: listed as fma_small training tracks, audio under a second
    rng = rng_for(world.seed, "fma", "broken")
    train_pool = world.pool("train")
    for tid in BROKEN_IDS:
        genre = FMA_GENRES[int(rng.integers(len(FMA_GENRES)))]
        style = GENRE_STYLES[genre][0]
        piece = train_pool[int(rng.integers(len(train_pool)))]
        dur = round(float(rng.uniform(0.2, 0.9)), 2)
        r = perform(rng, piece, style, dur)
        t = FmaTrack(tid, "train", "small", genre, 30.0, r.piece.title, "Unknown Artist", r.piece.ref.piece_id, True)
        tracks.append(t)
        jobs.append(
            render_job(
                r.arr, r.perf, [ClipOut(str(root / "fma_small" / t.path), 0.0, dur)], stereo=False, sample_rate=FMA_SAMPLE_RATE
            )
        )
    # metadata-only rows of the larger subsets
    for j in range(n_other):
        subset = "medium" if j % 2 == 0 else "large"
        genre_top = FMA_GENRES[int(rng.integers(len(FMA_GENRES)))] if j % 3 else None
        split = ("train", "train", "train", "valid", "test")[j % 5]
        tracks.append(
            FmaTrack(
                ids[k + j], split, subset, genre_top, float(rng.integers(60, 400)), f"Track {j}", f"Other Artist {j}", None, False
            )
        )
    return sorted(tracks, key=lambda t: t.track_id), jobs


def write_fma(root: Path, tracks: list[FmaTrack]) -> dict[str, int]:
    """tracks.csv (two header rows + index row, as pandas writes a MultiIndex frame) and genres.csv."""
    meta = root / "fma_metadata"
    meta.mkdir(parents=True, exist_ok=True)
    (root / "fma_small").mkdir(parents=True, exist_ok=True)
    rows = []
    for t in tracks:
        gid = GENRE_IDS.get(t.genre) if t.genre else None
        genres = f"[{gid}]" if gid else "[]"
        v: dict[tuple[str, str], str | int] = {c: "" for c in _COLUMNS}
        v.update(
            {
                ("album", "id"): 1000 + t.track_id % 977,
                ("album", "title"): f"Album {t.track_id % 977}",
                ("album", "type"): "Album",
                ("album", "tracks"): 10,
                ("album", "listens"): 100 + t.track_id % 500,
                ("album", "date_created"): "2009-01-05 13:20:00",
                ("album", "tags"): "[]",
                ("album", "favorites"): 0,
                ("album", "comments"): 0,
                ("artist", "id"): 100 + t.track_id % 601,
                ("artist", "name"): t.artist,
                ("artist", "tags"): "[]",
                ("artist", "comments"): 0,
                ("artist", "favorites"): 1,
                ("artist", "date_created"): "2008-11-26 01:42:32",
                ("set", "split"): FMA_SPLIT_NAMES[t.split],
                ("set", "subset"): t.subset,
                ("track", "bit_rate"): 256000,
                ("track", "comments"): 0,
                ("track", "date_created"): "2009-01-05 13:20:00",
                ("track", "duration"): int(round(t.duration)),
                ("track", "favorites"): 0,
                ("track", "genre_top"): t.genre or "",
                ("track", "genres"): genres,
                ("track", "genres_all"): genres,
                ("track", "interest"): 500 + t.track_id % 4000,
                ("track", "language_code"): "en",
                ("track", "license"): "Attribution-NonCommercial-ShareAlike 3.0 International",
                ("track", "listens"): 300 + t.track_id % 2000,
                ("track", "number"): 1 + t.track_id % 12,
                ("track", "tags"): "[]",
                ("track", "title"): t.title,
            }
        )
        rows.append([v[c] for c in _COLUMNS])
    df = pd.DataFrame(
        rows, columns=pd.MultiIndex.from_tuples(_COLUMNS), index=pd.Index([t.track_id for t in tracks], name="track_id")
    )
    df.to_csv(meta / "tracks.csv", lineterminator="\n")
    g = pd.DataFrame(
        {
            "genre_id": list(GENRE_IDS.values()),
            "#tracks": [sum(1 for t in tracks if t.genre == n) for n in GENRE_IDS],
            "parent": 0,
            "title": list(GENRE_IDS),
            "top_level": list(GENRE_IDS.values()),
        }
    )
    g.sort_values("genre_id").to_csv(meta / "genres.csv", index=False, lineterminator="\n")
    return {s: sum(1 for t in tracks if t.subset == "small" and t.split == s) for s in SPLITS}
