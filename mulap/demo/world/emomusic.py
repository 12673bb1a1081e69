"""Emomusic ("1000 songs", MediaEval 2013) in its published layout, with the jukemir split.

<out>/raw/emomusic/clips_45seconds/<song_id>.mp3   (shorter than 45 s here; 22.05 kHz stereo)
<out>/raw/emomusic/annotations/static_annotations.csv
    song_id,mean_arousal,std_arousal,mean_valence,std_valence   (1-9 scale)
<out>/raw/emomusic/annotations/songs_info.csv
    song_id,file_name,Artist,Song title,start of the segment (min.sec),end of the segment (min.sec),Genre,
    Mediaeval 2013 set   ('development' | 'evaluation')
<out>/raw/emomusic/emomusic.json.gz   jukemir's dataset metadata ({uid: {"split", "clip", "y", "extra"}},
    uid = zero-padded song id, split train/valid/test, y = train-standardised [arousal, valence])
As in jukemir, test = the MediaEval evaluation set; train/valid are split by artist
(here one artist per piece, so no piece crosses splits).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .arrange import STYLES
from .corpus import CORPUS_STYLE_WEIGHTS
from .jobs import ClipOut, RenderJob, render_job
from .labels import emotion
from .world import SPLITS, PieceDrawer, World, perform_any, rng_for, split_sizes

EMO_SAMPLE_RATE = 22_050
EMO_STYLE_WEIGHTS = dict(CORPUS_STYLE_WEIGHTS, rock=1.2, pop=1.2, electronic=1.0, hiphop=0.8)
_GENRE_WORD = {
    "Instrumental": "Classical",
    "Choral": "Classical",
    "Folk": "Folk",
    "Rock": "Rock",
    "Pop": "Pop",
    "Electronic": "Electronic",
    "Hip-Hop": "Pop",
    "International": "Folk",
    "Experimental": "Electronic",
}


@dataclass
class EmoSong:
    song_id: int
    split: str
    arousal: float
    arousal_std: float
    valence: float
    valence_std: float
    duration: float
    artist: str
    title: str
    genre: str
    piece_id: str


def _minsec(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}.{s:02d}"


def plan_emomusic(world: World, root: Path, n_clips: int, seconds: float) -> tuple[list[EmoSong], list[RenderJob]]:
    songs: list[EmoSong] = []
    jobs: list[RenderJob] = []
    groups = sorted({p.ref.group for p in world.pieces.values()})
    pending = []
    for split, n in split_sizes(world, n_clips).items():
        rng = rng_for(world.seed, "emomusic", split)
        drawer = PieceDrawer(world.pool(split), rng)
        for _ in range(n):
            r = perform_any(rng, drawer.next(), EMO_STYLE_WEIGHTS, seconds)
            pending.append((split, r, emotion(rng, r)))
    rng = rng_for(world.seed, "emomusic", "ids")
    song_id = 2
    for i in rng.permutation(len(pending)):
        split, r, (a, sa, v, sv) = pending[int(i)]
        artist = f"Artist {1 + groups.index(r.piece.ref.group):03d}"
        s = EmoSong(
            song_id,
            split,
            a,
            sa,
            v,
            sv,
            seconds,
            artist,
            r.piece.title,
            _GENRE_WORD[STYLES[r.perf.style].genre],
            r.piece.ref.piece_id,
        )
        songs.append(s)
        jobs.append(
            render_job(
                r.arr,
                r.perf,
                [ClipOut(str(root / "clips_45seconds" / f"{song_id}.mp3"), 0.0, seconds)],
                stereo=True,
                sample_rate=EMO_SAMPLE_RATE,
                level_jitter_db=float(rng.normal(0, 1.0)),
            )
        )
        song_id += int(rng.integers(1, 4))
    return sorted(songs, key=lambda s: s.song_id), jobs


def _csv(rows: list[list[object]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def write_emomusic(root: Path, songs: list[EmoSong]) -> dict[str, int]:
    ann = root / "annotations"
    ann.mkdir(parents=True, exist_ok=True)
    (root / "clips_45seconds").mkdir(parents=True, exist_ok=True)
    static: list[list[object]] = [["song_id", "mean_arousal", "std_arousal", "mean_valence", "std_valence"]]
    info: list[list[object]] = [
        [
            "song_id",
            "file_name",
            "Artist",
            "Song title",
            "start of the segment (min.sec)",
            "end of the segment (min.sec)",
            "Genre",
            "Mediaeval 2013 set",
        ]
    ]
    for s in songs:
        static.append([s.song_id, s.arousal, s.arousal_std, s.valence, s.valence_std])
        info.append(
            [
                s.song_id,
                f"{s.song_id}.mp3",
                s.artist,
                s.title,
                "0.00",
                _minsec(s.duration),
                s.genre,
                "evaluation" if s.split == "test" else "development",
            ]
        )
    (ann / "static_annotations.csv").write_text(_csv(static))
    (ann / "songs_info.csv").write_text(_csv(info))
    # jukemir metadata: y standardised with the training songs' statistics
    tr = [s for s in songs if s.split == "train"]
    am, asd = float(np.mean([s.arousal for s in tr])), float(np.std([s.arousal for s in tr])) or 1.0
    vm, vsd = float(np.mean([s.valence for s in tr])), float(np.std([s.valence for s in tr])) or 1.0
    meta = {}
    for s, srow, irow in zip(songs, static[1:], info[1:]):
        uid = str(s.song_id).zfill(4)
        meta[uid] = {
            "split": s.split,
            "clip": {"audio_uid": [s.artist, s.title], "audio_duration": s.duration, "clip_idx": 0, "clip_offset": 0.0},
            "y": [round((s.arousal - am) / asd, 6), round((s.valence - vm) / vsd, 6)],
            "extra": {
                "songs_info": dict(zip(info[0], map(str, irow))),
                "static_annotations": dict(zip(static[0], map(str, srow))),
            },
        }
    data = json.dumps(meta, indent=2, sort_keys=True).encode()
    with open(root / "emomusic.json.gz", "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0, filename="") as gz:
        gz.write(data)  # mtime=0 and no name: the same bytes on every build
    return {sp: sum(1 for s in songs if s.split == sp) for sp in SPLITS}
