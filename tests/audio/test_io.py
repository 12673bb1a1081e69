"""Audio loading: formats, rates, channels, errors; chunking."""
import numpy as np
import pytest
import soundfile as sf

from mulap.audio.chunks import chunk_with_mask, cut_chunks
from mulap.audio.io import AudioError, load_audio, write_audio
from tests.helpers import tone


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
    assert np.array_equal(chunks[:2].reshape(-1), wave[: 96000])
    short = cut_chunks(np.ones(1000, np.float32), 48000)
    assert short.shape == (1, 48000)
    long_chunks, long_mask = chunk_with_mask(np.ones(48000 * 10, np.float32), 48000, 6)
    assert long_mask.all() and long_chunks.shape == (6, 48000)
