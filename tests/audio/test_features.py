"""MelFrontEnd against an independent numpy computation (librosa is not installed).

The reference below frames the signal by hand, takes np.fft.rfft per frame, and evaluates each
triangular filter with np.interp between its three corner frequencies: none of that code is
shared with mulap.audio.features. Tolerances: mel power within 1e-5 of the largest value
(float32 STFT vs float64), dB within 0.01 dB, log10 within 1e-4.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
import torch

from mulap.audio.features import MelFrontEnd, hz_to_mel, mel_filterbank, mel_to_hz

SR, N_FFT, HOP, N_MELS = 16000, 512, 256, 96


# ----------------------------------------------------------------------------- references
def ref_hz_to_mel(f: float, scale: str) -> float:
    if scale == "htk":
        return 2595.0 / math.log(10.0) * math.log1p(f / 700.0)
    # Slaney: 3 bands per 200 Hz up to 1 kHz, then 27 bands per factor 6.4
    return 3.0 * f / 200.0 if f < 1000.0 else 15.0 + 27.0 * math.log(f / 1000.0) / math.log(6.4)


def ref_mel_to_hz(m: float, scale: str) -> float:
    if scale == "htk":
        return 700.0 * math.expm1(m * math.log(10.0) / 2595.0)
    return 200.0 * m / 3.0 if m < 15.0 else 1000.0 * 6.4 ** ((m - 15.0) / 27.0)


def ref_filterbank(scale: str, norm: str | None, f_min: float = 0.0, f_max: float = 8000.0) -> np.ndarray:
    lo, hi = ref_hz_to_mel(f_min, scale), ref_hz_to_mel(f_max, scale)
    corners = [ref_mel_to_hz(lo + (hi - lo) * i / (N_MELS + 1), scale) for i in range(N_MELS + 2)]
    bins = np.arange(N_FFT // 2 + 1) * SR / N_FFT
    fb = np.zeros((N_MELS, len(bins)))
    for i in range(N_MELS):
        a, b, c = corners[i : i + 3]
        fb[i] = np.interp(bins, [a, b, c], [0.0, 1.0, 0.0], left=0.0, right=0.0)
        if norm == "slaney":
            fb[i] *= 2.0 / (c - a)
    return fb


def ref_mel(wave: np.ndarray, fb: np.ndarray) -> np.ndarray:
    """[T] -> mel power [n_mels, frames] with a centred, reflect-padded, periodic-Hann STFT."""
    padded = np.pad(wave.astype(np.float64), N_FFT // 2, mode="reflect")
    n_frames = 1 + (len(padded) - N_FFT) // HOP
    window = scipy.signal.get_window("hann", N_FFT, fftbins=True)
    frames = np.stack([padded[i * HOP : i * HOP + N_FFT] * window for i in range(n_frames)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # [frames, bins]
    return fb @ power.T


def test_mel_formulas_known_values() -> None:
    assert hz_to_mel(1000.0, "slaney") == pytest.approx(15.0)
    assert hz_to_mel(6400.0, "slaney") == pytest.approx(15.0 + 27.0)
    assert hz_to_mel(700.0, "htk") == pytest.approx(2595.0 * math.log10(2.0))
    f = np.array([0.0, 300.0, 999.0, 1000.0, 4000.0, 8000.0])
    for scale in ("htk", "slaney"):
        np.testing.assert_allclose(mel_to_hz(hz_to_mel(f, scale), scale), f, atol=1e-9)
        np.testing.assert_allclose(hz_to_mel(f, scale), [ref_hz_to_mel(x, scale) for x in f], rtol=1e-12)


@pytest.mark.parametrize("scale,norm", [("htk", None), ("slaney", "slaney"), ("htk", "slaney"), ("slaney", None)])
def test_filterbank_matches_independent_triangles(scale: str, norm: str | None) -> None:
    ours = mel_filterbank(SR, N_FFT, N_MELS, 0.0, 8000.0, scale, norm)
    ref = ref_filterbank(scale, norm)
    assert ours.shape == (N_MELS, N_FFT // 2 + 1)
    np.testing.assert_allclose(ours, ref, atol=1e-10 * max(1.0, ref.max()))
    assert (ours.sum(axis=1) > 0).all(), "every mel band must cover at least one FFT bin"


def test_filterbank_rejects_bad_range() -> None:
    with pytest.raises(ValueError, match="f_max"):
        mel_filterbank(SR, N_FFT, N_MELS, 0.0, 9000.0)
    with pytest.raises(ValueError, match="mel_scale"):
        mel_filterbank(SR, N_FFT, N_MELS, scale="bark")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def waves() -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(48000) / SR
    tone = 0.3 * np.sin(2 * np.pi * 440.0 * t) + 0.1 * np.sin(2 * np.pi * 3150.0 * t)
    return np.stack([tone, 0.05 * rng.standard_normal(48000), tone * np.linspace(0, 1, 48000)]).astype(np.float32)


def test_power_spectrogram_matches_scipy_stft(waves: np.ndarray) -> None:
    fe = MelFrontEnd(compression="none")
    ours = fe.power_spectrogram(torch.from_numpy(waves)).numpy()
    padded = np.pad(waves.astype(np.float64), ((0, 0), (N_FFT // 2, N_FFT // 2)), mode="reflect")
    _, _, z = scipy.signal.stft(
        padded, window="hann", nperseg=N_FFT, noverlap=N_FFT - HOP, boundary=None, padded=False, scaling="spectrum"
    )
    # scipy's 'spectrum' scaling divides by sum(window); undo it to get the raw |STFT|^2
    ref = np.abs(z * scipy.signal.get_window("hann", N_FFT).sum()) ** 2
    assert ours.shape == ref.shape == (3, N_FFT // 2 + 1, 188)
    np.testing.assert_allclose(ours, ref, atol=1e-5 * ref.max())


@pytest.mark.parametrize("scale,norm", [("htk", None), ("slaney", "slaney")])
def test_mel_db_matches_numpy(waves: np.ndarray, scale: str, norm: str | None) -> None:
    fe = MelFrontEnd(mel_scale=scale, mel_norm=norm, compression="db", top_db=80.0)  # type: ignore[arg-type]
    ours = fe(torch.from_numpy(waves)).numpy()
    assert ours.shape == (3, N_MELS, fe.num_frames(48000)) == (3, 96, 188)
    fb = ref_filterbank(scale, norm)
    for i, w in enumerate(waves):
        mel = ref_mel(w, fb)
        np.testing.assert_allclose(fe(torch.from_numpy(w)[None]).numpy()[0], ours[i], atol=1e-4)
        db = 10 * np.log10(np.maximum(mel, 1e-10))
        db = np.maximum(db, db.max() - 80.0)
        # compare where the value is well above float32 noise (quiet bins differ in relative terms)
        loud = mel > 1e-6 * mel.max()
        np.testing.assert_allclose(ours[i][loud], db[loud], atol=0.01)
        assert ours[i].min() >= ours[i].max() - 80.0 - 1e-4


def test_mel_log10_matches_numpy(waves: np.ndarray) -> None:
    fe = MelFrontEnd(mel_scale="slaney", mel_norm="slaney", compression="log10")
    ours = fe(torch.from_numpy(waves)).numpy()
    fb = ref_filterbank("slaney", "slaney")
    for i, w in enumerate(waves):
        ref = np.log10(1.0 + 10000.0 * ref_mel(w, fb))
        np.testing.assert_allclose(ours[i], ref, atol=1e-4 * max(1.0, ref.max()))


def test_top_db_floor_is_per_example(waves: np.ndarray) -> None:
    """A quiet chunk's dB values must not depend on a loud chunk sharing its batch."""
    fe = MelFrontEnd()
    quiet = torch.from_numpy(waves[1:2] * 1e-3)
    loud = torch.from_numpy(waves[0:1])
    alone = fe(quiet)
    together = fe(torch.cat([loud, quiet]))[1:]
    torch.testing.assert_close(together, alone)


def test_center_false_frame_count() -> None:
    fe = MelFrontEnd(center=False)
    out = fe(torch.zeros(2, 48000))
    assert out.shape == (2, 96, (48000 - 512) // 256 + 1) == (2, 96, fe.num_frames(48000))


def test_buffers_follow_module_and_stay_out_of_state_dict() -> None:
    fe = MelFrontEnd().double()
    assert fe.state_dict() == {}  # rebuilt from settings, never saved
    out = fe(torch.randn(1, 4000, dtype=torch.float64))
    assert out.dtype == torch.float64 and torch.isfinite(out).all()


def test_bad_input_errors() -> None:
    fe = MelFrontEnd()
    with pytest.raises(ValueError, match=r"\[N, T\]"):
        fe(torch.zeros(1, 2, 48000))
    with pytest.raises(ValueError, match="shorter"):
        fe(torch.zeros(1, 100))
    with pytest.raises(ValueError, match="compression"):
        MelFrontEnd(compression="log")  # type: ignore[arg-type]
