"""Tiny hand-made datasets in the exact layouts their publishers ship (for the loader tests).

Each builder writes short audio clips and the publisher's annotation files under `root`
and returns `root`. Formats follow the real files byte for byte where it matters:
MTT's quoted tab-separated annotations_final.csv and sota-music-tagging-models' .npy
split lists; MTG-Jamendo's split-0 TSVs with tags continuing tab-separated; Emomusic's
static_annotations.csv + songs_info.csv; FMA's tracks.csv with two header rows and the
`track_id` index row; NSynth's examples.json keyed by note_str.
"""

from __future__ import annotations

import csv
import json
import zlib
from pathlib import Path

import numpy as np

from mulap.audio.io import write_audio


def _clip(path: Path, seconds: float = 0.5, sr: int = 22050, seed: int = 0, channels: int = 1) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.3 * np.sin(2 * np.pi * (220 + 20 * seed) * t) + 0.01 * rng.standard_normal(len(t))
    if channels == 2:  # soundfile writes (time, channels)
        import soundfile as sf

        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), np.stack([wave, wave * 0.5], 1).astype(np.float32), sr)
        return
    write_audio(path, wave.astype(np.float32), sr)


# ------------------------------------------------------------------ MagnaTagATune

MTT_TAGS = ["no voice", "singer", "guitar", "classical", "slow", "techno", "strings", "drums", "piano", "ambient"]
# (clip_id, mp3_path, tags)
MTT_CLIPS = [
    (2, "f/american_bach_soloists-j_s__bach_solo_cantatas-01-bwv54__i_aria-0-29.mp3", ["classical", "strings", "slow"]),
    (6, "f/american_bach_soloists-j_s__bach_solo_cantatas-01-bwv54__i_aria-30-59.mp3", ["classical", "singer"]),
    (10, "0/tilopa-turkishauch-05-seri-117-146.mp3", ["techno", "drums"]),
    (11, "0/tilopa-turkishauch-05-seri-146-175.mp3", []),  # no top tag: not in the split
    (15, "3/jacob_heringman-josquin_des_prez_lute_arrangements-07-mille_regretz-0-29.mp3", ["guitar", "classical", "slow"]),
    (21, "c/strojovna_07-mirny_gain-04-vlk-30-59.mp3", ["techno", "ambient"]),
    (22, "c/strojovna_07-mirny_gain-04-vlk-59-88.mp3", ["ambient", "piano", "slow"]),
    (30, "d/kiss_of_the_spider_woman-live_at_the_gods-02-heal-30-59.mp3", ["guitar", "drums", "singer"]),
    (31, "e/paul_beier-alessandro_piccinini-11-toccata_xiii-0-29.mp3", ["guitar", "classical"]),
    (40, "b/magnatune_compilation-rock-07-yoga_fire-0-29.mp3", ["drums", "guitar", "no voice"]),
]
MTT_MISSING = "0/tilopa-turkishauch-05-seri-117-146.mp3"  # listed in the split, audio absent


def write_mtt_annotations(path: Path, clips=MTT_CLIPS, tags=MTT_TAGS, extra_line: str | None = None) -> None:
    """annotations_final.csv exactly as published: tab-separated, every field double-quoted."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter="\t", quoting=csv.QUOTE_ALL, lineterminator="\n")
        w.writerow(["clip_id", *tags, "mp3_path"])
        for cid, rel, ts in clips:
            w.writerow([str(cid), *("1" if t in ts else "0" for t in tags), rel])
        if extra_line is not None:
            fh.write(extra_line + "\n")


def build_mtt(root: Path, with_split: bool = True, mp3_level: bool = False) -> Path:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    write_mtt_annotations(root / "annotations_final.csv")
    audio = root / "mp3" if mp3_level else root
    for i, (_, rel, _) in enumerate(MTT_CLIPS):
        if rel != MTT_MISSING:
            _clip(audio / rel, seed=i)
    if with_split:
        # the top tags by count, and the folder rule (0-b train, c valid, d-f test), as in the published files
        top = ["classical", "guitar", "slow", "drums", "techno", "ambient"]
        d = root / "split" / "mtat"
        d.mkdir(parents=True)
        lists = {"train": [], "valid": [], "test": []}
        for ix, (_, rel, ts) in enumerate(MTT_CLIPS):
            if not set(ts) & set(top) and rel != MTT_MISSING:
                continue
            h = int(rel[0], 16)
            lists["train" if h < 12 else "valid" if h == 12 else "test"].append(f"{ix}\t{rel}")
        for name, entries in lists.items():
            np.save(d / f"{name}.npy", np.asarray(entries))
        np.save(d / "tags.npy", np.asarray(top))
    return root


# ------------------------------------------------------------------ MTG-Jamendo

JAMENDO_HEADER = "TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS"
JAMENDO_ROWS = {
    "train": [
        ("track_0000215", "artist_000014", "album_000031", "15/215.mp3", "151.4", ["genre---metal"]),
        (
            "track_1048592",
            "artist_424343",
            "album_123552",
            "92/1048592.mp3",
            "238.2",
            [
                "genre---alternative",
                "genre---electronic",
                "instrument---bass",
                "instrument---drummachine",
                "instrument---drums",
                "instrument---electricguitar",
                "instrument---synthesizer",
                "instrument---voice",
                "mood/theme---energetic",
            ],
        ),
        (
            "track_1048681",
            "artist_359617",
            "album_123563",
            "81/1048681.mp3",
            "189.3",
            ["genre---hiphop", "instrument---computer", "instrument---piano", "mood/theme---emotional"],
        ),
    ],
    "validation": [
        ("track_0786434", "artist_368880", "album_092222", "34/786434.mp3", "460.8", ["genre---electronic", "genre---house"]),
        (
            "track_0131600",
            "artist_338036",
            "album_018552",
            "00/131600.mp3",
            "107.0",
            ["genre---instrumentalpop", "genre---pop", "instrument---guitar"],
        ),
    ],
    "test": [
        (
            "track_1267124",
            "artist_366613",
            "album_151421",
            "24/1267124.mp3",
            "161.8",
            ["genre---classical", "genre---soundtrack", "instrument---piano", "mood/theme---emotional", "mood/theme---relaxing"],
        ),
        ("track_0003524", "artist_000530", "album_000552", "24/3524.mp3", "266.1", ["genre---metal", "mood/theme---melodic"]),
    ],
}
CATEGORY_PREFIX = {"genre": "genre---", "instrument": "instrument---", "moodtheme": "mood/theme---"}


def build_jamendo(root: Path, split_dir: str = "data/splits/split-0", audio_dir: str = "") -> Path:
    root = Path(root)
    sdir = root / split_dir
    sdir.mkdir(parents=True, exist_ok=True)
    for split, rows in JAMENDO_ROWS.items():
        lines = [JAMENDO_HEADER] + ["\t".join([*r[:5], *r[5]]) for r in rows]
        (sdir / f"autotagging_top50tags-{split}.tsv").write_text("\n".join(lines) + "\n")
        for cat, prefix in CATEGORY_PREFIX.items():
            sub = [(*r[:5], [t for t in r[5] if t.startswith(prefix)]) for r in rows]
            lines = [JAMENDO_HEADER] + ["\t".join([*r[:5], *r[5]]) for r in sub if r[5]]
            (sdir / f"autotagging_{cat}-{split}.tsv").write_text("\n".join(lines) + "\n")
    for i, rows in enumerate(JAMENDO_ROWS.values()):
        for j, r in enumerate(rows):
            _clip(root / audio_dir / r[3], seed=10 * i + j, sr=44100, channels=2)
    return root


# ------------------------------------------------------------------ Emomusic

# song_id, artist, mediaeval set, arousal, valence
EMO_SONGS = [
    (2, "Kevin MacLeod", "development", 3.1, 3.0),
    (3, "Kevin MacLeod", "development", 4.2, 5.1),
    (4, "Drunken Sailor Band", "development", 6.5, 6.0),
    (5, "The Black Dots", "development", 5.0, 4.4),
    (7, "Jahzzar", "development", 7.8, 6.9),
    (10, "Árvore Café", "development", 2.2, 3.3),
    (1001, "Josh Woodward", "evaluation", 5.5, 5.0),
    (1002, "Broke For Free", "evaluation", 4.0, 6.2),
]


def build_emomusic(root: Path, missing_audio: int | None = None) -> Path:
    root = Path(root)
    ann = root / "annotations"
    ann.mkdir(parents=True, exist_ok=True)
    with open(ann / "static_annotations.csv", "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["song_id", "mean_arousal", "std_arousal", "mean_valence", "std_valence"])
        for sid, _, _, a, v in EMO_SONGS:
            w.writerow([sid, a, 0.9, v, 1.1])
    with open(ann / "songs_info.csv", "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(
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
        )
        for sid, artist, mset, _, _ in EMO_SONGS:
            w.writerow([sid, f"{sid}.mp3", artist, f"Song {sid}", "0.30", "1.15", "Rock", mset])
        w.writerow([999, "999.mp3", "Nobody", "No annotation", "0.0", "0.45", "Pop", "development"])
    for i, (sid, *_rest) in enumerate(EMO_SONGS):
        if sid != missing_audio:
            _clip(root / "clips_45seconds" / f"{sid}.mp3", seed=i, sr=44100)
    return root


# ------------------------------------------------------------------ FMA

# track_id, subset, split, genre_top
FMA_TRACKS = [
    (2, "small", "training", "Hip-Hop"),
    (5, "small", "training", "Hip-Hop"),
    (10, "small", "training", "Pop"),
    (140, "small", "validation", "Folk"),
    (141, "small", "validation", "Folk"),
    (148, "small", "test", "Experimental"),
    (182, "small", "test", "Rock"),
    (3, "medium", "training", "Hip-Hop"),  # not in fma_small
    (20, "large", "training", None),
    (99134, "small", "test", "Rock"),  # one of the six known-broken clips
]


def fma_tracks_csv(rows=FMA_TRACKS, bad_split: bool = False) -> str:
    """tracks.csv text: two header rows, then the index-name row, as pandas' to_csv writes it."""
    cols = [
        ("album", "comments"),
        ("album", "title"),
        ("artist", "name"),
        ("set", "split"),
        ("set", "subset"),
        ("track", "genre_top"),
        ("track", "title"),
    ]
    out = [",".join([""] + [c[0] for c in cols]), ",".join([""] + [c[1] for c in cols]), "track_id" + "," * len(cols)]
    for tid, subset, split, genre in rows:
        split = "trainning" if bad_split and tid == 5 else split
        vals = ["0", '"Album, with a comma"', "AWOL", split, subset, genre or "", f"Track {tid}"]
        out.append(",".join([str(tid), *vals]))
    return "\n".join(out) + "\n"


def build_fma(root: Path) -> Path:
    root = Path(root)
    (root / "fma_metadata").mkdir(parents=True, exist_ok=True)
    (root / "fma_metadata" / "tracks.csv").write_text(fma_tracks_csv())
    for i, (tid, subset, _, _) in enumerate(FMA_TRACKS):
        if subset == "small":
            s = f"{tid:06d}"
            _clip(root / "fma_small" / s[:3] / f"{s}.mp3", seed=i, sr=44100, channels=2)
    return root


# ------------------------------------------------------------------ NSynth

FAMILIES = ["bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed", "string", "synth_lead", "vocal"]
NSYNTH = {
    "train": [
        ("bass_synthetic_033-022-050", 0, "synthetic"),
        ("keyboard_acoustic_004-060-025", 4, "acoustic"),
        ("synth_lead_synthetic_000-100-075", 9, "synthetic"),
        ("vocal_acoustic_000-055-127", 10, "acoustic"),
        ("guitar_electronic_022-071-100", 3, "electronic"),
    ],
    "valid": [("bass_synthetic_034-030-100", 0, "synthetic"), ("keyboard_electronic_001-021-127", 4, "electronic")],
    "test": [
        ("guitar_acoustic_010-040-050", 3, "acoustic"),
        ("vocal_synthetic_003-070-075", 10, "synthetic"),
        ("bass_electronic_018-045-127", 0, "electronic"),
    ],
}


def nsynth_record(note_str: str, fam: int, source: str) -> dict:
    inst = note_str.rsplit("-", 2)[0]
    pitch, vel = (int(x) for x in note_str.rsplit("-", 2)[1:])
    return {
        "note": zlib.crc32(note_str.encode()) % 300000,
        "note_str": note_str,
        "instrument": 1,
        "instrument_str": inst,
        "pitch": pitch,
        "velocity": vel,
        "sample_rate": 16000,
        "qualities": [0] * 10,
        "qualities_str": [],
        "instrument_family": fam,
        "instrument_family_str": FAMILIES[fam],
        "instrument_source": ["acoustic", "electronic", "synthetic"].index(source),
        "instrument_source_str": source,
    }


def build_nsynth(root: Path) -> Path:
    root = Path(root)
    for split, notes in NSYNTH.items():
        d = root / f"nsynth-{split}"
        (d / "audio").mkdir(parents=True, exist_ok=True)
        data = {n: nsynth_record(n, f, s) for n, f, s in notes}
        (d / "examples.json").write_text(json.dumps(data, indent=4))
        for i, (n, _, _) in enumerate(notes):
            _clip(d / "audio" / f"{n}.wav", seconds=0.25, sr=16000, seed=i)
    return root
