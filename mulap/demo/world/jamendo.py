"""MTG-Jamendo in its published layout (the mtg-jamendo-dataset repository + audio folders).

<out>/raw/jamendo/data/autotagging.tsv, autotagging_top50tags.tsv, autotagging_genre.tsv,
    autotagging_instrument.tsv, autotagging_moodtheme.tsv
<out>/raw/jamendo/data/splits/split-0/<same names>-{train,validation,test}.tsv
    header TRACK_ID ARTIST_ID ALBUM_ID PATH DURATION TAGS; one row per track, tags
    tab-separated after DURATION ('genre---rock', 'instrument---piano', 'mood/theme---happy')
<out>/raw/jamendo/audio/<NN>/<id>.mp3   NN = last two digits of the id; 22.05 kHz mono
    (the real files are 44.1 kHz stereo; mono keeps the build fast)
The category files keep only that category's tags and the tracks that have one; the
top-50 file keeps the N most frequent tags (N = 50 by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .corpus import CORPUS_STYLE_WEIGHTS
from .jobs import ClipOut, RenderJob, render_job
from .labels import noisy_jamendo
from .world import SPLITS, PieceDrawer, World, perform_any, rng_for, split_sizes

JAMENDO_SPLIT_NAMES = {"train": "train", "valid": "validation", "test": "test"}
JAMENDO_SAMPLE_RATE = 22_050
# Jamendo is mostly pop/rock/electronic with classical and world music
JAMENDO_STYLE_WEIGHTS = dict(
    CORPUS_STYLE_WEIGHTS, rock=2.0, pop=2.0, electronic=2.0, hiphop=1.5, experimental=1.0, world_plucked=1.0, world_winds=1.0
)
VARIANTS = {
    "autotagging": None,
    "autotagging_top50tags": "top",
    "autotagging_genre": "genre---",
    "autotagging_instrument": "instrument---",
    "autotagging_moodtheme": "mood/theme---",
}
HEADER = "TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS"


@dataclass
class JamendoTrack:
    track_id: int
    artist_id: int
    album_id: int
    split: str
    duration: float
    tags: list[str]
    piece_id: str

    @property
    def path(self) -> str:
        return f"{self.track_id % 100:02d}/{self.track_id}.mp3"

    def row(self, tags: list[str]) -> str:
        return "\t".join(
            [
                f"track_{self.track_id:07d}",
                f"artist_{self.artist_id:06d}",
                f"album_{self.album_id:06d}",
                self.path,
                f"{self.duration:.1f}",
                *tags,
            ]
        )


def plan_jamendo(
    world: World, root: Path, n_tracks: int, seconds: tuple[float, float]
) -> tuple[list[JamendoTrack], list[RenderJob]]:
    tracks: list[JamendoTrack] = []
    jobs: list[RenderJob] = []
    ids_rng = rng_for(world.seed, "jamendo", "ids")
    ids = sorted(int(x) for x in ids_rng.choice(1_400_000, size=n_tracks, replace=False) + 1000)
    ids = [ids[int(i)] for i in ids_rng.permutation(len(ids))]
    groups = sorted({p.ref.group for p in world.pieces.values()})
    k = 0
    for split, n in split_sizes(world, n_tracks).items():
        rng = rng_for(world.seed, "jamendo", split)
        drawer = PieceDrawer(world.pool(split), rng)
        for _ in range(n):
            dur = round(float(rng.uniform(*seconds)), 1)
            r = perform_any(rng, drawer.next(), JAMENDO_STYLE_WEIGHTS, dur)
            gi = groups.index(r.piece.ref.group)
            artist = 1000 + gi * 37  # one artist per piece: no artist crosses splits
            album = 5000 + gi * 53 + sorted(JAMENDO_STYLE_WEIGHTS).index(r.perf.style)
            t = JamendoTrack(ids[k], artist, album, split, dur, noisy_jamendo(rng, r), r.piece.ref.piece_id)
            tracks.append(t)
            jobs.append(
                render_job(
                    r.arr,
                    r.perf,
                    [ClipOut(str(root / "audio" / t.path), 0.0, dur)],
                    stereo=False,
                    sample_rate=JAMENDO_SAMPLE_RATE,
                    level_jitter_db=float(rng.normal(0, 2.0)),
                )
            )
            k += 1
    return tracks, jobs


def _variant_tags(tracks: list[JamendoTrack], kind: str | None, top_n: int) -> dict[int, list[str]]:
    if kind is None:
        return {t.track_id: t.tags for t in tracks}
    if kind == "top":
        counts: dict[str, int] = {}
        for t in tracks:
            for tag in t.tags:
                counts[tag] = counts.get(tag, 0) + 1
        keep = set(sorted(counts, key=lambda x: (-counts[x], x))[:top_n])
        return {t.track_id: [x for x in t.tags if x in keep] for t in tracks}
    return {t.track_id: [x for x in t.tags if x.startswith(kind)] for t in tracks}


def write_jamendo(root: Path, tracks: list[JamendoTrack], top_n: int) -> dict[str, int]:
    """All TSVs (full files and split-0); returns tracks per split of the top-N variant."""
    data = root / "data"
    split_dir = data / "splits" / "split-0"
    split_dir.mkdir(parents=True, exist_ok=True)
    ordered = sorted(tracks, key=lambda t: t.track_id)
    counts = {}
    for name, kind in VARIANTS.items():
        tags = _variant_tags(ordered, kind, top_n)
        rows = [t for t in ordered if tags[t.track_id]]
        (data / f"{name}.tsv").write_text("\n".join([HEADER] + [t.row(tags[t.track_id]) for t in rows]) + "\n")
        for split in SPLITS:
            part = [t for t in rows if t.split == split]
            (split_dir / f"{name}-{JAMENDO_SPLIT_NAMES[split]}.tsv").write_text(
                "\n".join([HEADER] + [t.row(tags[t.track_id]) for t in part]) + "\n"
            )
            if kind == "top":
                counts[split] = len(part)
    return counts
