"""The offline demo world (mulap.data.demo): formats, determinism, splits, and that the
audio is sampled-instrument music whose labels agree with what it sounds like."""
from __future__ import annotations

import csv
import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from scipy.ndimage import maximum_filter1d

from mulap.audio.io import load_audio
from mulap.data.demo import SIZES, build_demo
from mulap.data.demo.gm import NOT_AT_KEY_PITCH, PROGRAM_FAMILY
from mulap.data.demo.render import render_note

SR = 16000


def _annotation_files(root: Path) -> list[Path]:
    """Every non-audio file the builder writes (json, csv, tsv, npy split lists, gz)."""
    audio_dirs = {"audio", "mp3", "fma_small", "clips_45seconds"}
    out = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and not (set(p.relative_to(root).parts) & audio_dirs):
            out.append(p)
    return out


# ----------------------------------------------------------------------------- formats

def test_audiocaption_json_parses_and_every_audio_path_exists(demo_world):
    root = demo_world / "audiocaption"
    ids = set()
    for name in ("dataset_train.json", "dataset_val.json", "dataset_test.json"):
        rows = json.loads((root / name).read_text())
        assert isinstance(rows, list) and rows, name
        for r in rows:
            assert set(r) == {"audio_id", "caption", "audio_path"}
            assert r["audio_id"] not in ids
            ids.add(r["audio_id"])
            assert isinstance(r["caption"], str) and 3 <= len(r["caption"].split()) <= 60, r["caption"]
            assert (root / "audio" / r["audio_path"]).is_file(), r["audio_path"]
    wave = np.load(root / "audio" / rows[0]["audio_path"])
    assert wave.dtype == np.float32 and wave.ndim == 1 and len(wave) == 10 * SR  # small: 10 s clips
    assert 0.005 < float(np.sqrt(np.mean(wave**2))) and float(np.abs(wave).max()) <= 1.0


def test_downstream_layouts_read_as_their_publishers_ship_them(demo_world):
    raw = demo_world / "raw"
    # MTT: quoted tab-separated annotations; split lists point at rows and existing mp3s
    with open(raw / "mtt/annotations_final.csv", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    assert rows[0][0] == "clip_id" and rows[0][-1] == "mp3_path"
    assert (raw / "mtt/annotations_final.csv").read_text().startswith('"clip_id"\t"')
    tags = list(np.load(raw / "mtt/split/mtat/tags.npy"))
    binary = np.load(raw / "mtt/split/mtat/binary.npy")
    assert binary.shape == (len(rows) - 1, len(tags))
    for split in ("train", "valid", "test"):
        lst = np.load(raw / f"mtt/split/mtat/{split}.npy")
        assert len(lst) > 0
        for entry in lst:
            ix, path = str(entry).split("\t")
            row = rows[int(ix) + 1]
            assert row[-1] == path and (raw / "mtt/mp3" / path).is_file()
            on = {rows[0][j] for j in range(1, len(row) - 1) if row[j] == "1"}
            assert {t for t, b in zip(tags, binary[int(ix)]) if b} == on & set(tags)
    # Jamendo: header, ids, tags after DURATION, category files hold only their category
    for variant, prefix in (("autotagging_top50tags", ""), ("autotagging_genre", "genre---"),
                            ("autotagging_instrument", "instrument---"), ("autotagging_moodtheme", "mood/theme---")):
        for split in ("train", "validation", "test"):
            lines = (raw / f"jamendo/data/splits/split-0/{variant}-{split}.tsv").read_text().splitlines()
            assert lines[0] == "TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS"
            for line in lines[1:]:
                f = line.split("\t")
                assert f[0] == f"track_{int(f[0][6:]):07d}" and f[3] == f"{int(f[0][6:]) % 100:02d}/{int(f[0][6:])}.mp3"
                assert len(f) >= 6 and all(t.startswith(prefix) and "---" in t for t in f[5:])
                assert (raw / "jamendo/audio" / f[3]).is_file()
    # FMA: two header rows + index row; 8 balanced genres; the 6 broken clips are short
    df = pd.read_csv(raw / "fma/fma_metadata/tracks.csv", index_col=0, header=[0, 1])
    assert df.index.name == "track_id"
    small = df[df[("set", "subset")] == "small"]
    assert set(small[("set", "split")]) == {"training", "validation", "test"}
    counts = small.drop(index=[98565, 98567, 98569, 99134, 108925, 133297])[("track", "genre_top")].value_counts()
    assert len(counts) == 8 and counts.min() == counts.max()
    for tid in small.index:
        path = raw / "fma/fma_small" / f"{tid:06d}"[:3] / f"{tid:06d}.mp3"
        dur = sf.info(str(path)).duration
        assert (dur < 1.0) == (tid in (98565, 98567, 98569, 99134, 108925, 133297)), (tid, dur)
    assert (df[("set", "subset")] != "small").any()  # metadata of the larger subsets, as in the real file
    # Emomusic: 1-9 scale, one clip per song, jukemir metadata agrees with songs_info
    static = pd.read_csv(raw / "emomusic/annotations/static_annotations.csv")
    assert list(static.columns) == ["song_id", "mean_arousal", "std_arousal", "mean_valence", "std_valence"]
    assert static[["mean_arousal", "mean_valence"]].stack().between(1, 9).all()
    info = pd.read_csv(raw / "emomusic/annotations/songs_info.csv")
    meta = json.loads(gzip.decompress((raw / "emomusic/emomusic.json.gz").read_bytes()))
    assert sorted(int(u) for u in meta) == sorted(static.song_id) == sorted(info.song_id)
    for _, r in info.iterrows():
        assert (meta[str(r.song_id).zfill(4)]["split"] == "test") == (r["Mediaeval 2013 set"] == "evaluation")
        assert (raw / "emomusic/clips_45seconds" / f"{r.song_id}.mp3").is_file()
    # NSynth: examples.json keyed by note_str, 4 s 16 kHz 16-bit wavs
    for split in ("train", "valid", "test"):
        ex = json.loads((raw / f"nsynth/nsynth-{split}/examples.json").read_text())
        for k, e in ex.items():
            assert k == e["note_str"] == f"{e['instrument_str']}-{e['pitch']:03d}-{e['velocity']:03d}"
            info = sf.info(str(raw / f"nsynth/nsynth-{split}/audio/{k}.wav"))
            assert (info.samplerate, info.frames, info.subtype) == (SR, 4 * SR, "PCM_16")


# ----------------------------------------------------------------------------- determinism and splits

def test_same_seed_gives_byte_identical_files(demo_world, tmp_path):
    again = tmp_path / "again"
    build_demo(again, size="small", seed=0, progress=False)
    a, b = _annotation_files(demo_world), _annotation_files(again)
    assert [p.relative_to(demo_world) for p in a] == [p.relative_to(again) for p in b]
    for p, q in zip(a, b):
        assert p.read_bytes() == q.read_bytes(), p.relative_to(demo_world)
    annotations = {p.relative_to(demo_world) for p in a}

    def audio_digests(root: Path) -> dict[Path, str]:
        return {p.relative_to(root): hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
                if p.suffix in (".npy", ".wav", ".mp3") and p.relative_to(root) not in annotations}

    da, db = audio_digests(demo_world), audio_digests(again)
    assert da.keys() == db.keys() and len(da) > 100
    differ = [str(k) for k in da if da[k] != db[k]]
    assert not differ, f"{len(differ)} audio files differ, e.g. {differ[:3]}"


def test_no_piece_and_no_note_source_in_two_splits(demo_world):
    world = json.loads((demo_world / "world.json").read_text())
    raw = demo_world / "raw"
    split_of_piece: dict[str, dict[str, set]] = {}

    def note(dataset: str, piece: str, split: str) -> None:
        split_of_piece.setdefault(dataset, {}).setdefault(piece, set()).add(split)

    for split, name in (("train", "dataset_train.json"), ("valid", "dataset_val.json"), ("test", "dataset_test.json")):
        for r in json.loads((demo_world / "audiocaption" / name).read_text()):
            note("corpus", world["corpus"][r["audio_id"]]["piece_id"], split)
    with open(raw / "mtt/annotations_final.csv", newline="") as fh:
        clip_ids = [r[0] for r in list(csv.reader(fh, delimiter="\t"))[1:]]
    for split in ("train", "valid", "test"):
        for entry in np.load(raw / f"mtt/split/mtat/{split}.npy"):
            note("mtt", world["mtt"][clip_ids[int(str(entry).split("\t")[0])]], split)
        for line in (raw / f"jamendo/data/splits/split-0/autotagging-{'validation' if split == 'valid' else split}.tsv").read_text().splitlines()[1:]:
            note("jamendo", world["jamendo"][str(int(line.split("\t")[0][6:]))], split)
    df = pd.read_csv(raw / "fma/fma_metadata/tracks.csv", index_col=0, header=[0, 1])
    for tid, s in df[("set", "split")].items():
        if str(tid) in world["fma"]:
            note("fma", world["fma"][str(tid)], s)
    meta = json.loads(gzip.decompress((raw / "emomusic/emomusic.json.gz").read_bytes()))
    for uid, m in meta.items():
        note("emomusic", world["emomusic"][str(int(uid))], m["split"])
    assert set(split_of_piece) == {"corpus", "mtt", "jamendo", "fma", "emomusic"}
    for dataset, pieces in split_of_piece.items():
        crossing = {p: s for p, s in pieces.items() if len(s) > 1}
        assert not crossing, f"{dataset}: pieces in several splits: {crossing}"
    # movements of one work share a split too (the piece group)
    for pid, p in world["pieces"].items():
        assert all(q["split"] == p["split"] for q in world["pieces"].values() if q["group"] == p["group"])
    # NSynth: an instrument (note source) lives in one split; synth_lead only in train, as in the real data
    inst = {s: {e["instrument_str"] for e in json.loads((raw / f"nsynth/nsynth-{s}/examples.json").read_text()).values()}
            for s in ("train", "valid", "test")}
    assert not (inst["train"] & inst["valid"]) and not (inst["train"] & inst["test"]) and not (inst["valid"] & inst["test"])
    fams = {s: {i.split("_")[0] if not i.startswith("synth_lead") else "synth_lead" for i in v} for s, v in inst.items()}
    assert "synth_lead" in fams["train"] and "synth_lead" not in fams["valid"] | fams["test"]


def test_sizes_and_bad_size():
    assert set(SIZES) >= {"small", "default"}
    with pytest.raises(ValueError, match="unknown demo size"):
        build_demo("/nonexistent-never-created", size="huge")


# ----------------------------------------------------------------------------- the sound

def _harmonic_envelope(x: np.ndarray, pitch: int, n_harmonics: int = 12) -> np.ndarray:
    """The spectral envelope sampled at the harmonics of `pitch`: dB of partials 1..K re the strongest."""
    seg = x[int(0.1 * SR): int(1.1 * SR)] * np.hanning(SR)
    mag = np.abs(np.fft.rfft(seg))  # 1 Hz bins
    f0 = 440 * 2 ** ((pitch - 69) / 12)
    h = np.array([mag[int(round(k * f0)) - 3: int(round(k * f0)) + 4].max() for k in range(1, n_harmonics + 1)])
    db = 20 * np.log10(h + 1e-9)
    return np.maximum(db - db.max(), -60.0)


@pytest.mark.parametrize("a,b", [(73, 33), (56, 42)])  # flute vs bass guitar, trumpet vs cello
def test_instrument_families_differ_clearly_in_spectral_envelope(a, b):
    """Two families playing the same notes: their envelopes differ far more than notes of one
    instrument do, and the sound is not a bare sine (several strong harmonics)."""
    pitches = (48, 52, 55)
    env_a = [_harmonic_envelope(render_note(a, p, 100), p) for p in pitches]
    env_b = [_harmonic_envelope(render_note(b, p, 100), p) for p in pitches]
    within = max(np.abs(u - v).mean() for group in (env_a, env_b) for u in group for v in group)
    between = np.abs(np.mean(env_a, 0) - np.mean(env_b, 0)).mean()
    assert between > 3.0 * within and between > 8.0, (between, within)
    for env in env_a + env_b:
        assert (env > -30).sum() >= 3  # at least three partials within 30 dB of the strongest


def _pitch_check(x: np.ndarray, pitch: int, n_harmonics: int = 4) -> tuple[float, float]:
    """(cents from the label to the harmonic-product-spectrum f0 found within +-7 semitones of it,
    cents from the strongest partial to the nearest harmonic of the label).

    The search window keeps octave ambiguity (a weak fundamental) out of the question while a
    note a semitone, a tone or a fifth away from its label is still caught.
    """
    seg = x[int(0.05 * SR): int(1.55 * SR)]
    n = 1 << 16
    mag = np.abs(np.fft.rfft(seg * np.hanning(len(seg)), n))
    mag[: int(20 * n / SR)] = 0  # ignore the DC offset of some samples
    ref = 440 * 2 ** ((pitch - 69) / 12)
    lo, hi = (int(ref * 2 ** (d / 12) * n / SR) for d in (-7, 7))
    cand = np.arange(lo, hi + 1)
    log_hps = np.zeros(len(cand))
    for h in range(1, n_harmonics + 1):
        if h * ref > 7800:
            break
        # max over +-h bins tolerates slight inharmonicity
        near = maximum_filter1d(mag, size=2 * h + 1)
        log_hps += np.log(near[np.minimum(cand * h, len(mag) - 1)] + 1e-9)
    f0 = cand[int(np.argmax(log_hps))] * SR / n
    fpk = int(np.argmax(mag)) * SR / n
    k = max(1, round(fpk / ref))
    return float(1200 * np.log2(f0 / ref)), float(abs(1200 * np.log2(fpk / (k * ref))))


def test_every_nsynth_note_sounds_at_its_labelled_pitch(demo_world):
    raw = demo_world / "raw/nsynth"
    n = 0
    for split in ("train", "valid", "test"):
        for k, e in json.loads((raw / f"nsynth-{split}/examples.json").read_text()).items():
            x = load_audio(raw / f"nsynth-{split}/audio/{k}.wav")
            offset, partial = _pitch_check(x, e["pitch"])
            assert abs(offset) < 100, f"{k}: energy peaks {offset} cents from the labelled pitch"
            assert partial < 70, f"{k}: strongest partial is {partial:.0f} cents off the labelled harmonics"
            n += 1
    assert n >= 30


def test_pitch_check_rejects_a_wrong_label():
    x = render_note(40, 60, 100)  # violin C4
    assert abs(_pitch_check(x, 60)[0]) < 100
    assert abs(_pitch_check(x, 62)[0]) >= 100  # labelled a tone too high: the comb moves back to C
    assert abs(_pitch_check(x, 57)[0]) >= 100


def test_nsynth_programs_are_tuned():
    """Every program eligible for NSynth sounds at its key at the edges and centre of its range."""
    from mulap.data.demo.gm import program_range

    for prog in sorted(p for p in PROGRAM_FAMILY if p not in NOT_AT_KEY_PITCH)[::3]:
        lo, hi = program_range(prog)
        for pitch in (lo, (lo + hi) // 2):
            offset, partial = _pitch_check(render_note(prog, pitch, 100), pitch)
            assert abs(offset) < 100 and partial < 70, (prog, pitch, offset, partial)
