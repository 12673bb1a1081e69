"""The offline demo world (mulap.demo.world): formats, determinism, splits, and that the
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
from mulap.demo.world import SIZES, build_demo, render, timbre
from mulap.demo.world.gm import NOT_AT_KEY_PITCH, PROGRAM_FAMILY, program_name
from mulap.demo.world.render import render_note, render_notes

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
            assert set(r) == {"audio_id", "caption", "captions", "audio_path"}
            # several phrasings of the clip, the seed's `caption` first
            assert r["captions"][0] == r["caption"] and len(set(r["captions"])) == len(r["captions"]) <= 5
            assert all(2 <= len(c.split()) <= 60 for c in r["captions"])  # tag lists can be short: "Oboe, moderate"
            assert r["audio_id"] not in ids
            ids.add(r["audio_id"])
            assert isinstance(r["caption"], str) and 2 <= len(r["caption"].split()) <= 60, r["caption"]
            assert (root / "audio" / r["audio_path"]).is_file(), r["audio_path"]
    phrased = [len(r["captions"]) for name in ("dataset_train.json",) for r in json.loads((root / name).read_text())]
    assert np.mean(phrased) >= 4  # most clips have five different phrasings
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
    for variant, prefix in (
        ("autotagging_top50tags", ""),
        ("autotagging_genre", "genre---"),
        ("autotagging_instrument", "instrument---"),
        ("autotagging_moodtheme", "mood/theme---"),
    ):
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
        return {
            p.relative_to(root): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.suffix in (".npy", ".wav", ".mp3") and p.relative_to(root) not in annotations
        }

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
        for line in (
            (raw / f"jamendo/data/splits/split-0/autotagging-{'validation' if split == 'valid' else split}.tsv")
            .read_text()
            .splitlines()[1:]
        ):
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
    for p in world["pieces"].values():
        assert all(q["split"] == p["split"] for q in world["pieces"].values() if q["group"] == p["group"])
    # NSynth: an instrument (note source) lives in one split; synth_lead only in train, as in the real data
    inst = {
        s: {e["instrument_str"] for e in json.loads((raw / f"nsynth/nsynth-{s}/examples.json").read_text()).values()}
        for s in ("train", "valid", "test")
    }
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
    seg = x[int(0.1 * SR) : int(1.1 * SR)] * np.hanning(SR)
    mag = np.abs(np.fft.rfft(seg))  # 1 Hz bins
    f0 = 440 * 2 ** ((pitch - 69) / 12)
    h = np.array([mag[int(round(k * f0)) - 3 : int(round(k * f0)) + 4].max() for k in range(1, n_harmonics + 1)])
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
    seg = x[int(0.05 * SR) : int(1.55 * SR)]
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
    from mulap.demo.world.gm import program_range

    for prog in sorted(p for p in PROGRAM_FAMILY if p not in NOT_AT_KEY_PITCH)[::3]:
        lo, hi = program_range(prog)
        for pitch in (lo, (lo + hi) // 2):
            offset, partial = _pitch_check(render_note(prog, pitch, 100), pitch)
            assert abs(offset) < 100 and partial < 70, (prog, pitch, offset, partial)


# ----------------------------------------------------------------------------- timbres

CSOUND = "/usr/share/sounds/sf2/sf_GMbank.sf2"


@pytest.fixture()
def second_source(tmp_path, monkeypatch) -> str:
    """The OPL-3 bank where it is installed; elsewhere a copy of TimGM6mb stands in for it (same name), so the
    mechanics are tested on every machine."""
    if Path(timbre.OPL3_PATH).is_file():
        return timbre.OPL3_PATH
    copy = tmp_path / "stand_in_for_opl3.sf2"
    copy.write_bytes(Path(render.soundfont_path()).read_bytes())
    monkeypatch.setitem(timbre.WORLD_SOURCES, "opl3", timbre.Source("opl3", "stand-in", str(copy), ""))
    return str(copy)


def test_a_world_is_rendered_through_several_soundfonts_recorded_per_clip_and_never_the_test_one(
    tmp_path, monkeypatch, second_source
):
    loaded = []  # every soundfont file a synthesizer is asked for while the world renders
    real = render._loaded

    def spy(rate, path):
        loaded.append(path)
        return real(rate, path)

    monkeypatch.setattr(render, "_loaded", spy)
    out = tmp_path / "world"
    build_demo(out, size="small", seed=0, progress=False, workers=1, parts=("audiocaption", "nsynth"))
    world = json.loads((out / "world.json").read_text())
    clips = world["timbre"]["clips"]
    written = [p.relative_to(out).as_posix() for p in sorted(out.rglob("*")) if p.suffix in (".npy", ".wav")]
    assert written and set(written) <= set(clips)  # every file written is recorded with its timbre
    for dataset in ("audiocaption/", "raw/nsynth/"):
        used = {clips[r]["source"] for r in written if r.startswith(dataset)}
        assert used == {"timgm6mb", "opl3"}, dataset  # both soundfonts, in the corpus and in the NSynth notes
    assert set(world["timbre"]["sources"]) == {"timgm6mb", "opl3"}
    # the variation beyond the soundfont is there and recorded too
    rec = [clips[r] for r in written]
    assert sum(t["reverb_mix"] > 0 for t in rec) and sum(t["layer_cents"] != 0 for t in rec) and sum(bool(t["eq"]) for t in rec)
    assert all(abs(t["tuning_cents"]) <= 15 and 0.96 <= t["tempo"] <= 1.04 for t in rec)
    # what the synthesizers loaded: the two world sources, never a reserved soundfont (csound's GM bank is the test)
    files = {str(Path(p).resolve()) for p in loaded}
    assert files == {str(Path(render.soundfont_path()).resolve()), str(Path(second_source).resolve())}
    assert not any(timbre.is_reserved(p) for p in files) and str(Path(CSOUND).resolve()) not in files


@pytest.mark.parametrize(
    "name",
    ["sf_GMbank.sf2", "FluidR3_GM.sf2", "FluidR3_GS.sf2", "FluidR3Mono_GM.sf3", "MuseScore_General.sf3", "MuseScore_General.sf2"],
)
def test_reserved_soundfonts_are_refused_for_the_world(tmp_path, monkeypatch, name):
    bank = tmp_path / name
    bank.write_bytes(b"RIFF")
    link = tmp_path / "default-GM.sf2"  # Debian's alternatives link to whichever bank is installed
    link.symlink_to(bank)
    for path in (bank, link):
        assert timbre.is_reserved(path)
        with pytest.raises(timbre.ReservedSoundfontError, match="reserved for testing"):
            timbre.check_world_soundfont(path)
    # a world source pointing at one is refused before anything is rendered ...
    monkeypatch.setitem(timbre.WORLD_SOURCES, "opl3", timbre.Source("opl3", "x", str(link), ""))
    with pytest.raises(timbre.ReservedSoundfontError):
        timbre.available_sources()
    with pytest.raises(timbre.ReservedSoundfontError):
        build_demo(tmp_path / "w", size="small", progress=False, workers=1, parts=("nsynth",))
    # ... and so is a render job that carries one
    from mulap.demo.world.jobs import NoteJob, run_job, with_timbre

    t = timbre.draw_timbre(np.random.default_rng(0), {"opl3": str(bank)}, note=True)
    with pytest.raises(timbre.ReservedSoundfontError):
        with_timbre(NoteJob(0, 60, 100, str(tmp_path / "n.wav")), t)
    with pytest.raises(timbre.ReservedSoundfontError):
        run_job(NoteJob(0, 60, 100, str(tmp_path / "n.wav"), timbre=t))
    assert not (tmp_path / "n.wav").exists()
    for allowed in ("TimGM6mb.sf2", "OPL-3_FM_128M.sf2"):
        assert not timbre.is_reserved(tmp_path / allowed)


def test_without_opl3_the_world_falls_back_to_timgm6mb_with_one_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(
        timbre.WORLD_SOURCES, "opl3", timbre.Source("opl3", "x", str(tmp_path / "absent.sf2"), "apt-get install opl3-soundfont")
    )
    with caplog.at_level("WARNING", logger="mulap.demo.world.timbre"):
        sources = timbre.available_sources()
    assert list(sources) == ["timgm6mb"]
    assert len(caplog.records) == 1 and "absent.sf2" in caplog.text and "opl3-soundfont" in caplog.text
    assert "\n" not in caplog.records[0].getMessage()


def test_a_reused_synthesizer_renders_what_a_fresh_one_does(second_source):
    """One synthesizer per soundfont and process, reset between renders: a render does not depend on what
    the process rendered before (so any worker writes the same bytes)."""
    chord = np.array([[0.0, 1.5, 0, 60, 100], [0.0, 1.5, 0, 64, 90], [0.2, 1.9, 1, 43, 110], [0.0, 0.2, 9, 36, 120]])
    other = np.array([[0.0, 2.0, 0, 72, 127], [0.5, 2.0, 2, 50, 80]])
    for bank in (None, second_source):
        render._loaded.cache_clear()
        fresh = render_notes(chord, {0: 40, 1: 33, 9: -1}, 2.0, {0: 100}, {1: 30}, soundfont=bank)
        render._loaded.cache_clear()
        render_notes(other, {0: 19, 2: 73}, 2.5, soundfont=bank, tuning_cents=12.0)  # leaves voices, tuning, volumes
        again = render_notes(chord, {0: 40, 1: 33, 9: -1}, 2.0, {0: 100}, {1: 30}, soundfont=bank)
        assert np.abs(fresh).max() > 0.01 and np.array_equal(fresh, again)


def test_timbre_draws_and_effects_do_what_they_say():
    sources = {"opl3": "o.sf2", "timgm6mb": "t.sf2"}
    draws = [timbre.draw_timbre(np.random.default_rng(i), sources) for i in range(200)]
    assert draws[5] == timbre.draw_timbre(np.random.default_rng(5), sources)  # a function of the stream
    assert 0.1 < np.mean([t.plain for t in draws]) < 0.35  # about a fifth keep the soundfont's own sound
    assert {t.source for t in draws} == set(sources)
    # only the source changes when a soundfont is missing
    one = [timbre.draw_timbre(np.random.default_rng(i), {"timgm6mb": "t.sf2"}) for i in range(200)]
    assert all(a.tuning_cents == b.tuning_cents and a.eq == b.eq for a, b in zip(draws, one))
    noise = np.random.default_rng(0).standard_normal(SR * 2).astype(np.float32)
    lp = timbre.Timbre("t", "t.sf2", 0, 1, 0, 0, (), 0.0, 3000.0, 0, 0, 0, 0)
    spec_in, spec_out = (np.abs(np.fft.rfft(x)) for x in (noise, timbre.apply_effects(noise, SR, lp)))
    f = np.fft.rfftfreq(len(noise), 1 / SR)
    band = lambda s, a, b: 20 * np.log10(s[(f > a) & (f < b)].mean())  # noqa: E731
    assert abs(band(spec_out, 200, 1000) - band(spec_in, 200, 1000)) < 0.5
    assert band(spec_in, 6000, 7500) - band(spec_out, 6000, 7500) > 12  # 12 dB/octave above 3 kHz
    click = np.zeros(SR, np.float32)
    click[100] = 1.0
    room = timbre.Timbre("t", "t.sf2", 0, 1, 0, 0, (), 0, 0, 0.3, 0.8, 7, 0)
    wet = timbre.apply_effects(click, SR, room)
    assert np.abs(wet[int(0.3 * SR) : int(0.5 * SR)]).max() > 1e-3  # a tail long after the click


def test_the_captioned_corpus_hears_every_family_alone_and_no_downstream_dataset_does(demo_world):
    """The corpus's `solo` renditions: one instrument alone, drawn from every melodic family; a style kept out of
    the downstream datasets (whose labels come from their styles)."""
    from mulap.demo.world import corpus, emomusic, fma, jamendo, mtt
    from mulap.demo.world.arrange import STYLES, family_of

    solo = STYLES["solo"]
    assert {family_of(p) for p in solo.melody} == set(PROGRAM_FAMILY.values())  # all 11 NSynth families
    assert solo.inner is None and solo.bass is None and solo.chords is None and solo.drums is None
    assert corpus.CAPTIONED_STYLE_WEIGHTS["solo"] > 0
    only = {s.name for s in STYLES.values() if s.captions_only}
    downstream = [corpus.CORPUS_STYLE_WEIGHTS, mtt.MTT_STYLE_WEIGHTS, jamendo.JAMENDO_STYLE_WEIGHTS, emomusic.EMO_STYLE_WEIGHTS]
    assert only == {"solo"} and not any(only & set(w) for w in downstream)
    assert not only & {s for styles in fma.GENRE_STYLES.values() for s in styles}
    # in the written world: a solo clip is one instrument, which one of its phrasings names
    world = json.loads((demo_world / "world.json").read_text())
    solos = {k: v for k, v in world["corpus"].items() if v["style"] == "solo"}
    assert solos and all(v["texture"] == "solo" and len(v["programs"]) == 1 for v in solos.values())
    rows = {
        r["audio_id"]: r
        for name in corpus.CORPUS_SPLIT_FILES.values()
        for r in json.loads((demo_world / "audiocaption" / name).read_text())
    }
    assert all(any(program_name(v["programs"][0]) in c for c in rows[k]["captions"]) for k, v in solos.items())
