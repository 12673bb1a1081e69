"""MagnaTagATune in its published layout, with the sota-music-tagging-models split.

<out>/raw/mtt/annotations_final.csv   tab-separated, every field quoted:
    "clip_id" "<tag 1>" ... "<tag K>" "mp3_path"; values "0"/"1"
<out>/raw/mtt/clip_info_final.csv     "clip_id" "track_number" "title" "artist" "album" "url"
    "segmentStart" "segmentEnd" "original_url" "mp3_path"
<out>/raw/mtt/mp3/<0-f>/<artist>-<album>-<NN>-<title>-<start>-<end>.mp3   16 kHz mono
<out>/raw/mtt/split/mtat/{train,valid,test}.npy   arrays of "<row index>\t<mp3_path>" (row index
    into annotations_final.csv's data rows), only clips with at least one top-N tag
<out>/raw/mtt/split/mtat/tags.npy   the top-N tags by frequency;  binary.npy  [rows, N] 0/1
(split/mtat/ as in the sota-music-tagging-models repository.) Consecutive clips of
one rendered track share a folder and a split; tags are per clip, with annotator noise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .corpus import CORPUS_STYLE_WEIGHTS
from .jobs import ClipOut, RenderJob, render_job
from .labels import MTT_TAGS, noisy_mtt
from .world import SPLITS, PieceDrawer, World, perform_any, rng_for, split_sizes

# MTT is mostly classical, with rock/electronic/world/new-age
MTT_STYLE_WEIGHTS = dict(CORPUS_STYLE_WEIGHTS, harpsichord=1.0, rock=0.9, electronic=0.8, world_plucked=0.8)
_ARTISTS = {
    "string_quartet": "american_string_quartet",
    "string_orchestra": "london_chamber_strings",
    "choir": "vox_cantorum",
    "church_organ": "st_marys_organists",
    "piano": "jeff_wahl",
    "harpsichord": "hanneke_van_proosdij",
    "brass": "the_brass_consort",
    "woodwinds": "wind_quintet_of_vienna",
    "recorder_consort": "consort_of_recorders",
    "mallets": "mallet_works",
    "harp": "elizabeth_harp",
    "classical_guitar": "jacob_heringman",
    "fiddle_band": "the_fiddlers_three",
    "whistle_folk": "tin_whistle_john",
    "accordion_folk": "accordion_club",
    "banjo_folk": "old_time_pickers",
    "world_plucked": "shiva_sound",
    "world_winds": "jade_wind_ensemble",
    "rock": "electric_frankenstein",
    "pop": "the_daydreams",
    "electronic": "dj_markitos",
    "hiphop": "beat_lab",
    "experimental": "strange_noises",
}


def slug(text: str) -> str:
    """MTT-style file name part: lower case, runs of other characters -> '_'."""
    s = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return s or "untitled"


@dataclass
class MttClip:
    clip_id: int
    split: str
    tags: list[str]
    mp3_path: str
    track_number: int
    title: str
    artist: str
    album: str
    start: int
    end: int
    piece_id: str


def plan_mtt(
    world: World, root: Path, n_tracks: int, clips_per_track: int, clip_s: float
) -> tuple[list[MttClip], list[RenderJob]]:
    """Clips (rows of annotations_final.csv, in clip_id order) and one render job per track."""
    tracks = []
    for split, n in split_sizes(world, n_tracks).items():
        rng = rng_for(world.seed, "mtt", split)
        drawer = PieceDrawer(world.pool(split), rng)
        for _ in range(n):
            r = perform_any(rng, drawer.next(), MTT_STYLE_WEIGHTS, clips_per_track * clip_s)
            tags = [noisy_mtt(rng, r) for _ in range(clips_per_track)]
            tracks.append((split, r, tags))
    rng = rng_for(world.seed, "mtt", "ids")
    order = rng.permutation(len(tracks))
    clips: list[MttClip] = []
    jobs: list[RenderJob] = []
    clip_id = 2
    track_no: dict[str, int] = {}
    for ti in order:
        split, r, tags = tracks[int(ti)]
        artist = _ARTISTS[r.perf.style]
        album = slug(r.piece.ref.collection)
        track_no[album + artist] = track_no.get(album + artist, 0) + 1
        tn = track_no[album + artist]
        title = slug(r.piece.title)[:40]
        folder = "0123456789abcdef"[int(rng.integers(16))]
        outs = []
        for c in range(clips_per_track):
            a, b = c * clip_s, (c + 1) * clip_s
            path = f"{folder}/{artist}-{album}-{tn:02d}-{title}-{int(a)}-{int(b) - 1}.mp3"
            clips.append(
                MttClip(clip_id, split, tags[c], path, tn, r.piece.title, artist, album, int(a), int(b) - 1, r.piece.ref.piece_id)
            )
            outs.append(ClipOut(str(root / "mp3" / path), a, b))
            clip_id += int(rng.integers(1, 5))
        jobs.append(render_job(r.arr, r.perf, outs, level_jitter_db=float(rng.normal(0, 1.5))))
    return clips, jobs


def top_tags(clips: list[MttClip], n: int) -> list[str]:
    """The n most frequent tags (ties broken by vocabulary order), as the standard split does."""
    counts = {t: 0 for t in MTT_TAGS}
    for c in clips:
        for t in c.tags:
            counts[t] += 1
    ranked = sorted((t for t in MTT_TAGS if counts[t] > 0), key=lambda t: (-counts[t], MTT_TAGS.index(t)))
    return ranked[:n]


def _q(x: object) -> str:
    return f'"{x}"'


def write_mtt(root: Path, clips: list[MttClip], top_n: int) -> dict[str, int]:
    """annotations_final.csv, clip_info_final.csv and split/*.npy; returns listed clips per split."""
    root.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(_q(x) for x in ("clip_id", *MTT_TAGS, "mp3_path"))]
    for c in clips:
        on = set(c.tags)
        lines.append("\t".join([_q(c.clip_id)] + [_q(int(t in on)) for t in MTT_TAGS] + [_q(c.mp3_path)]))
    (root / "annotations_final.csv").write_text("\n".join(lines) + "\n")
    info = [
        "\t".join(
            _q(x)
            for x in (
                "clip_id",
                "track_number",
                "title",
                "artist",
                "album",
                "url",
                "segmentStart",
                "segmentEnd",
                "original_url",
                "mp3_path",
            )
        )
    ]
    for c in clips:
        url = f"http://www.magnatune.com/artists/albums/{c.artist.replace('_', '')}-{c.album.replace('_', '')}/"
        info.append(
            "\t".join(
                _q(x)
                for x in (
                    c.clip_id,
                    c.track_number,
                    c.title.replace('"', "'"),
                    c.artist,
                    c.album,
                    url,
                    c.start,
                    c.end,
                    url + "lofi/" + c.mp3_path,
                    c.mp3_path,
                )
            )
        )
    (root / "clip_info_final.csv").write_text("\n".join(info) + "\n")
    tags = top_tags(clips, top_n)
    split_dir = root / "split" / "mtat"
    split_dir.mkdir(parents=True, exist_ok=True)
    binary = np.array([[int(t in c.tags) for t in tags] for c in clips], dtype=np.int64).reshape(len(clips), len(tags))
    np.save(split_dir / "tags.npy", np.array(tags))
    np.save(split_dir / "binary.npy", binary)
    counts = {}
    for split in SPLITS:
        rows = [f"{i}\t{c.mp3_path}" for i, c in enumerate(clips) if c.split == split and binary[i].any()]
        np.save(split_dir / f"{split}.npy", np.array(rows, dtype=str))
        counts[split] = len(rows)
    return counts
