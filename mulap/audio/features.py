"""Mel-spectrogram front-end in plain torch (no torchaudio), batched and device-agnostic.

Two variants matter here:
* the MuLaP default (torchaudio's ``MelSpectrogram`` + ``AmplitudeToDB``): HTK mel scale, no
  filter normalisation, power 2, dB with ``top_db`` 80;
* the published musicnn checkpoints (librosa ``melspectrogram`` defaults of 2019): Slaney mel
  scale, Slaney area normalisation, power 2, ``log10(1 + 10000·mel)``.
Both use a centred STFT with reflect padding, a periodic Hann window, n_fft 512, hop 256.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn

MelScale = Literal["htk", "slaney"]
MelNorm = Literal["slaney"] | None
Compression = Literal["db", "log10", "none"]

# Slaney's Auditory Toolbox scale: linear below 1 kHz, logarithmic above.
_SLANEY_F_SP = 200.0 / 3.0
_SLANEY_MIN_LOG_HZ = 1000.0
_SLANEY_MIN_LOG_MEL = _SLANEY_MIN_LOG_HZ / _SLANEY_F_SP
_SLANEY_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(freqs: float | np.ndarray, scale: MelScale = "htk") -> np.ndarray:
    """Frequencies in Hz -> mels on the HTK (2595·log10(1+f/700)) or Slaney scale."""
    freqs = np.asarray(freqs, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + freqs / 700.0)
    if scale == "slaney":
        mels = freqs / _SLANEY_F_SP
        log_region = freqs >= _SLANEY_MIN_LOG_HZ
        return np.where(
            log_region,
            _SLANEY_MIN_LOG_MEL + np.log(np.maximum(freqs, _SLANEY_MIN_LOG_HZ) / _SLANEY_MIN_LOG_HZ) / _SLANEY_LOGSTEP,
            mels,
        )
    raise ValueError(f"mel_scale must be 'htk' or 'slaney', got {scale!r}")


def mel_to_hz(mels: np.ndarray, scale: MelScale = "htk") -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    mels = np.asarray(mels, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    if scale == "slaney":
        return np.where(
            mels >= _SLANEY_MIN_LOG_MEL,
            _SLANEY_MIN_LOG_HZ * np.exp(_SLANEY_LOGSTEP * (mels - _SLANEY_MIN_LOG_MEL)),
            _SLANEY_F_SP * mels,
        )
    raise ValueError(f"mel_scale must be 'htk' or 'slaney', got {scale!r}")


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    scale: MelScale = "htk",
    norm: MelNorm = None,
) -> np.ndarray:
    """Triangular mel filters ``[n_mels, n_fft // 2 + 1]`` (float64).

    Filter i rises from edge i to edge i+1 and falls to edge i+2, the n_mels+2 edges being
    equally spaced in mels between f_min and f_max (as librosa and torchaudio build them).
    ``norm='slaney'`` scales each filter by 2 / (its bandwidth in Hz) (constant area).
    """
    f_max = sample_rate / 2.0 if f_max is None else float(f_max)
    if not 0.0 <= f_min < f_max <= sample_rate / 2.0:
        raise ValueError(f"need 0 <= f_min < f_max <= sample_rate/2, got f_min={f_min}, f_max={f_max}")
    if norm not in (None, "slaney"):
        raise ValueError(f"mel_norm must be None or 'slaney', got {norm!r}")
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min, scale), hz_to_mel(f_max, scale), n_mels + 2), scale)
    widths = np.diff(edges)  # [n_mels + 1]
    # distance of every FFT bin from every edge: [n_mels + 2, n_bins]
    ramps = edges[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    if norm == "slaney":
        weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights


class MelFrontEnd(nn.Module):
    """Waveform ``[N, T]`` (or ``[T]``) -> compressed mel spectrogram ``[N, n_mels, frames]``.

    All rows are transformed in one batched STFT; the module runs on whatever device its input
    is on (the window and filterbank are non-persistent buffers, rebuilt from the settings, so
    they never enter checkpoints). With ``center=True`` a chunk of T samples gives
    ``T // hop_length + 1`` frames (188 for 3 s at 16 kHz).
    """

    filterbank: torch.Tensor  # buffers (registered in __init__)
    window: torch.Tensor

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 512,
        hop_length: int = 256,
        n_mels: int = 96,
        f_min: float = 0.0,
        f_max: float | None = 8000.0,
        power: float = 2.0,
        mel_scale: MelScale = "htk",
        mel_norm: MelNorm = None,
        compression: Compression = "db",
        top_db: float | None = 80.0,
        center: bool = True,
        pad_mode: str = "reflect",
    ) -> None:
        super().__init__()
        if compression not in ("db", "log10", "none"):
            raise ValueError(f"compression must be 'db', 'log10' or 'none', got {compression!r}")
        if power <= 0:
            raise ValueError(f"power must be positive, got {power}")
        self.sample_rate, self.n_fft, self.hop_length, self.n_mels = sample_rate, n_fft, hop_length, n_mels
        self.power, self.compression, self.top_db = float(power), compression, top_db
        self.center, self.pad_mode = center, pad_mode
        fb = mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max, mel_scale, mel_norm)
        self.register_buffer("filterbank", torch.from_numpy(fb).float(), persistent=False)  # [n_mels, n_bins]
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a waveform of ``num_samples``."""
        if self.center:
            return num_samples // self.hop_length + 1
        return (num_samples - self.n_fft) // self.hop_length + 1

    def power_spectrogram(self, wave: torch.Tensor) -> torch.Tensor:
        """``[N, T]`` -> ``|STFT|^power`` ``[N, n_fft//2+1, frames]`` in the buffers' dtype."""
        spec = torch.stft(
            wave.to(self.window.dtype),
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.n_fft,
            window=self.window,
            center=self.center,
            pad_mode=self.pad_mode,
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        mag = spec.abs()
        return mag.square() if self.power == 2.0 else mag.pow(self.power)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """``[N, T]`` float waveform -> ``[N, n_mels, frames]``."""
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)
        if wave.dim() != 2:
            raise ValueError(f"MelFrontEnd expects a [N, T] waveform, got shape {tuple(wave.shape)}")
        min_len = self.n_fft // 2 + 1 if self.center else self.n_fft
        if wave.shape[-1] < min_len:
            raise ValueError(f"waveform of {wave.shape[-1]} samples is shorter than {min_len} (n_fft={self.n_fft})")
        # The mel projection is a matmul: keep it out of any bf16/fp16 autocast (dB needs precision).
        with torch.autocast(device_type=wave.device.type, enabled=False):
            mel = torch.matmul(self.filterbank, self.power_spectrogram(wave))  # [N, n_mels, frames]
            return self.compress(mel)

    def compress(self, mel: torch.Tensor) -> torch.Tensor:
        """Apply the configured compression to a ``[N, n_mels, frames]`` mel power spectrogram."""
        if self.compression == "log10":
            return torch.log10(1.0 + 10000.0 * mel)
        if self.compression == "db":
            # torchaudio's amplitude_to_DB (ref 1, amin 1e-10), but the top_db floor is taken per
            # example: torchaudio would take one max over a whole 3-D batch, coupling the chunks.
            db = 10.0 * torch.log10(torch.clamp(mel, min=1e-10))
            if self.top_db is not None:
                floor = db.amax(dim=(-2, -1), keepdim=True) - self.top_db
                db = torch.maximum(db, floor)
            return db
        return mel
