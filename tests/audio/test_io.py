"""Audio loading: formats, rates, channels, errors; chunking."""

import sys

import numpy as np
import pytest
import soundfile as sf
import soxr

from mulap.audio.chunks import chunk_with_mask, cut_chunks
from mulap.audio.io import AudioError, iter_blocks, load_audio, write_audio
from tests.helpers import tone, write_with_pyav


@pytest.mark.parametrize("suffix,sr", [(".npy", 16000), (".wav", 44100), (".flac", 22050), (".ogg", 48000), (".mp3", 44100)])
def test_formats_and_rates_load_as_16k_mono(tmp_path, suffix, sr):
    seconds = 2.0
    wave = tone(seconds, 440.0, sr)
    stereo = np.stack([wave, wave], axis=1)
    path = tmp_path / f"x{suffix}"
    if suffix == ".npy":
        np.save(path, stereo)
    else:
        sf.write(str(path), stereo, sr)
    out = load_audio(path)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) - 16000 * seconds) < 16000 * 0.08  # mp3 adds encoder padding
    spec = np.abs(np.fft.rfft(out[4000:12000]))
    peak_hz = np.argmax(spec) * 16000 / 8000
    assert abs(peak_hz - 440) < 10


def test_write_then_read_roundtrip(tmp_path):
    wave = tone(1.0, 220.0)
    write_audio(tmp_path / "a.flac", wave)
    assert np.allclose(load_audio(tmp_path / "a.flac"), wave, atol=1e-4)
    assert not list(tmp_path.glob(".*tmp*"))


@pytest.mark.parametrize("case", ["missing", "corrupt", "empty", "nan"])
def test_bad_audio_names_the_file(tmp_path, case):
    path = tmp_path / ("bad.wav" if case in ("missing", "corrupt") else "bad.npy")
    if case == "corrupt":
        path.write_bytes(b"RIFF\x00\x00garbage" * 10)
    elif case == "empty":
        np.save(path, np.zeros(0, dtype=np.float32))
    elif case == "nan":
        np.save(path, np.array([0.1, np.nan, 0.2], dtype=np.float32))
    with pytest.raises(AudioError) as err:
        load_audio(path)
    assert str(path) in str(err.value)


def test_chunking_pads_and_masks_short_clips():
    wave = np.arange(48000 * 2 + 100, dtype=np.float32)
    chunks, mask = chunk_with_mask(wave, 48000, 6)
    assert chunks.shape == (6, 48000) and mask.tolist() == [True, True, True, False, False, False]
    assert chunks[2, 99] == wave[-1] and chunks[2, 100:].sum() == 0
    assert np.array_equal(chunks[:2].reshape(-1), wave[:96000])
    short = cut_chunks(np.ones(1000, np.float32), 48000)
    assert short.shape == (1, 48000)
    long_chunks, long_mask = chunk_with_mask(np.ones(48000 * 10, np.float32), 48000, 6)
    assert long_mask.all() and long_chunks.shape == (6, 48000)


# ------------------------------------------------------------------ streaming (issue 11, item 9)


def _reference(path, sr_out=16000):
    """One-shot decode, written independently of mulap: soundfile, channel mean, soxr.resample."""
    wave, sr = sf.read(str(path), dtype="float32", always_2d=True)
    mono = wave.mean(axis=1).astype(np.float32)
    return soxr.resample(mono, sr, sr_out, quality="HQ") if sr != sr_out else mono


@pytest.mark.parametrize("suffix,sr,channels", [(".wav", 44100, 2), (".flac", 22050, 1), (".mp3", 48000, 2), (".wav", 16000, 1)])
def test_streamed_blocks_equal_a_one_shot_decode(tmp_path, suffix, sr, channels):
    wave = tone(7.3, 330.0, sr) + 0.01 * np.random.default_rng(0).standard_normal(int(7.3 * sr)).astype(np.float32)
    path = tmp_path / f"x{suffix}"
    sf.write(str(path), np.stack([wave, 0.5 * wave], 1) if channels == 2 else wave, sr)
    blocks = list(iter_blocks(path, block_seconds=0.7))  # many blocks, none aligned with the output rate
    assert len(blocks) >= 10 and all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    streamed = np.concatenate(blocks)
    ref = _reference(path)
    assert len(streamed) == len(ref)
    np.testing.assert_allclose(streamed, ref, atol=2e-5)
    np.testing.assert_allclose(load_audio(path), ref, atol=2e-5)


def test_streamed_npy_in_channels_first_layout_at_another_rate(tmp_path):
    wave = tone(5.0, 440.0, 8000)
    np.save(tmp_path / "x.npy", np.stack([wave, 0.5 * wave]))  # (channels, time)
    streamed = np.concatenate(list(iter_blocks(tmp_path / "x.npy", npy_rate=8000, block_seconds=0.3)))
    np.testing.assert_allclose(streamed, soxr.resample(0.75 * wave, 8000, 16000, quality="HQ"), atol=2e-5)


# ------------------------------------------------------------------ what is really wrong (issue 11, item 7)


def _encoded(tmp_path, suffix, seconds=10.0, sr=44100):
    path = tmp_path / f"full{suffix}"
    sf.write(str(path), tone(seconds, 440.0, sr), sr)
    return path


@pytest.mark.parametrize("suffix", [".mp3", ".wav"])
def test_truncated_file_is_refused_as_truncated(tmp_path, suffix):
    full = _encoded(tmp_path, suffix)
    assert abs(len(load_audio(full)) / 16000 - 10.0) < 0.1  # the intact file is fine
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 6])  # what an interrupted download leaves
    with pytest.raises(AudioError, match=r"truncated: 1\.\d+ s decoded of the 10\.00 s") as err:
        load_audio(cut)
    assert err.value.path == str(cut)
    with pytest.raises(AudioError, match="truncated"):  # the streamed reader says the same, at the end
        list(iter_blocks(cut))


def test_truncated_flac_is_damaged_or_truncated(tmp_path):
    full = _encoded(tmp_path, ".flac")
    cut = tmp_path / "cut.flac"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 3])
    with pytest.raises(AudioError, match=r"damaged or truncated FLAC|truncated: "):
        load_audio(cut)


@pytest.mark.parametrize("suffix", [".mp3", ".wav", ".flac", ".npy"])
def test_empty_and_text_files_say_so(tmp_path, suffix):
    empty = tmp_path / f"empty{suffix}"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty file \(0 bytes\)"):
        load_audio(empty)
    text = tmp_path / f"text{suffix}"
    text.write_text("<!DOCTYPE html><html><body>404 Not Found</body></html>\n")
    with pytest.raises(AudioError, match=r"not audio: a text file \(starts with '<!DOCTYPE html>") as err:
        load_audio(text)
    assert "pipe" not in str(err.value) and str(text) in str(err.value)


def test_unknown_binary_npy_behind_wav_and_m4a_are_named(tmp_path):
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(bytes(range(7, 200)) * 20)
    with pytest.raises(AudioError, match=r"not audio: unknown format \(first bytes 07 08 09"):
        load_audio(junk)
    np.save(tmp_path / "arr.npy", np.zeros(100, np.float32))
    (tmp_path / "arr.npy").rename(tmp_path / "arr.wav")
    with pytest.raises(AudioError, match=r"NumPy array behind a \.wav suffix"):
        load_audio(tmp_path / "arr.wav")
    m4a = tmp_path / "song.mp3"
    m4a.write_bytes(b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00" + bytes(200))
    with pytest.raises(AudioError, match=r"damaged MP4/M4A file: "):  # read as m4a (PyAV), not as mp3
        load_audio(m4a)


@pytest.mark.parametrize(
    "dtype,values,expected",
    [
        ("int16", [16384, -32768, 32767], [0.5, -1.0, 32767 / 32768]),
        ("int32", [2**30, -(2**31)], [0.5, -1.0]),
        ("int8", [64, -128], [0.5, -1.0]),
        ("uint8", [192, 0, 128], [0.5, -1.0, 0.0]),  # 8-bit WAV convention: offset binary
        ("uint16", [49152, 0], [0.5, -1.0]),
    ],
)
def test_integer_npy_is_scaled_by_its_dtype_range(tmp_path, dtype, values, expected):
    np.save(tmp_path / "x.npy", np.asarray(values * 100, dtype=dtype))
    np.testing.assert_allclose(load_audio(tmp_path / "x.npy")[: len(values)], expected, rtol=1e-6)


@pytest.mark.parametrize("dtype", ["int64", "uint32", "uint64", "bool", "complex64"])
def test_integer_npy_without_a_pcm_scale_is_refused(tmp_path, dtype):
    np.save(tmp_path / "x.npy", np.ones(100, dtype=dtype))
    with pytest.raises(AudioError, match=rf"{dtype}.*(no audio scale|not audio)"):
        load_audio(tmp_path / "x.npy")


def test_truncated_and_object_npy(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros(1000, np.float32))
    data = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "x.npy").write_bytes(data[:500])
    with pytest.raises(AudioError, match=r"truncated \.npy: shape \(1000,\) needs 4128 bytes, the file has 500"):
        load_audio(tmp_path / "x.npy")
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(AudioError, match="Python objects"):
        load_audio(tmp_path / "o.npy")


# ------------------------------------------------------------------ m4a / AAC / ALAC through PyAV (issue 17, item 7f)


def _sweep(seconds: float, sr: int) -> np.ndarray:
    """A chirp 200 Hz -> 3 kHz (nothing periodic: a lag that lines it up is the only one) with a slow swell."""
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * (200 * t + (3000 - 200) * t**2 / (2 * seconds))
    return (0.4 * np.sin(phase) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t))).astype(np.float32)


def _best_lag_correlation(x: np.ndarray, ref: np.ndarray, max_lag: int = 1100) -> tuple[float, int]:
    n = min(len(x), len(ref)) - max_lag
    return max((float(np.corrcoef(x[lag : lag + n], ref[:n])[0, 1]), lag) for lag in range(max_lag))


@pytest.mark.parametrize(
    "name,codec,fmt,sr,stereo",
    [
        ("aac.m4a", "aac", None, 44100, True),  # iTunes' AAC
        ("alac.m4a", "alac", None, 48000, True),  # Apple Lossless in m4a
        ("adts.aac", "aac", "adts", 16000, False),  # a raw AAC stream (ADTS frames), at 16 kHz: a whole-sample lag
        ("alac.caf", "alac", "caf", 44100, False),  # ALAC in CAF: libsndfile refuses FFmpeg's, PyAV reads it
    ],
)
def test_pyav_containers_decode_to_the_source(tmp_path, name, codec, fmt, sr, stereo):
    pytest.importorskip("av")
    seconds = 4.0
    wave = _sweep(seconds, sr)
    path = write_with_pyav(tmp_path / name, np.stack([wave, 0.5 * wave], 1) if stereo else wave, sr, codec, fmt)
    ref = soxr.resample(0.75 * wave if stereo else wave, sr, 16000, quality="HQ")  # channel mean, then 16 kHz
    out = load_audio(path)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) / 16000 - seconds) < 0.1  # AAC adds up to 2 frames of padding
    if codec == "alac":  # lossless: the samples themselves
        assert len(out) == len(ref)
        np.testing.assert_allclose(out, ref, atol=1e-4)
    else:
        corr, lag = _best_lag_correlation(out, ref)
        assert corr > 0.99 and lag in ((0, 1024) if fmt == "adts" else (0,)), (corr, lag)  # ADTS keeps the priming
        level = np.sqrt(np.mean(out[lag : lag + len(ref) - 1100] ** 2)) / np.sqrt(np.mean(ref[: len(ref) - 1100] ** 2))
        assert 0.95 < level < 1.05, level
    blocks = list(iter_blocks(path, block_seconds=0.5))  # streamed: bounded blocks, the same samples
    assert len(blocks) >= 8
    np.testing.assert_array_equal(np.concatenate(blocks), out)
    np.testing.assert_array_equal(load_audio(path, data=path.read_bytes()), out)  # a shard member's bytes


def test_truncated_and_damaged_m4a_are_named(tmp_path):
    pytest.importorskip("av")
    wave = _sweep(10.0, 44100)
    fast = write_with_pyav(tmp_path / "fast.m4a", wave, 44100, options={"movflags": "faststart"})  # index first
    late = write_with_pyav(tmp_path / "late.m4a", wave, 44100)  # FFmpeg's default: the index after the audio
    for full in (fast, late):
        assert abs(len(load_audio(full)) / 16000 - 10.0) < 0.1
    cut = tmp_path / "cut.m4a"
    cut.write_bytes(fast.read_bytes()[: fast.stat().st_size // 3])
    with pytest.raises(
        AudioError,
        match=r"damaged or truncated MP4/M4A audio data after [23]\.\d\d s of the 10\.00 s "
        r"its header declares",
    ) as err:
        load_audio(cut)
    assert err.value.path == str(cut)
    cut.write_bytes(late.read_bytes()[: late.stat().st_size // 3])  # no index at all
    with pytest.raises(AudioError, match=r"cut\.m4a: damaged MP4/M4A file: "):
        load_audio(cut)
    video = tmp_path / "silent.m4a"  # an MP4 box structure that holds no audio stream
    video.write_bytes(b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00" + bytes(200))
    with pytest.raises(AudioError, match=r"silent\.m4a: damaged MP4/M4A file"):
        load_audio(video)


def test_without_pyav_m4a_is_not_supported_and_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` raises ImportError
    m4a = tmp_path / "song.m4a"
    m4a.write_bytes(b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00" + bytes(200))
    with pytest.raises(
        AudioError,
        match=r"song\.m4a: MP4/M4A audio is not supported: PyAV is not installed "
        r"\(pip install av\), or convert it to wav, flac, ogg or mp3",
    ):
        load_audio(m4a)
    adts = tmp_path / "song.aac"
    adts.write_bytes(bytes([0xFF, 0xF1, 0x50, 0x80]) + bytes(300))
    with pytest.raises(AudioError, match=r"AAC \(ADTS\) audio is not supported: PyAV is not installed"):
        load_audio(adts)
