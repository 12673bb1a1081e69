"""Audio augmentation for pre-training: every chunk of a training clip gets its own random gain, EQ,
mild noise and time shift (`dataset_config.augment`, off by default; on in the demo's settings).

The draws are a function of (run seed, epoch, the item's position) only (`augment_rng`), like the random
crops: they change from epoch to epoch, do not depend on the number of loader workers, and a resumed run
draws exactly what the uninterrupted one would.

Per real chunk (padding chunks stay empty), in this order:
- time shift: the chunk is cut `k` samples later or earlier than its place in the window, |k| up to
  `shift_seconds` (from the clip's neighbouring audio; silence beyond the clip's ends);
- EQ: a smooth random curve, up to +-`eq_db` dB at six points from 60 Hz to 7 kHz, interpolated over
  log frequency (zero phase, in the frequency domain);
- gain: up to +-`gain_db` dB;
- noise: with probability `noise_prob`, white noise at an SNR drawn from `noise_snr_db` relative to the chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EQ_FREQS = (60.0, 180.0, 500.0, 1400.0, 3500.0, 7000.0)
_STREAM = 4  # keeps these draws apart from the crops' and the captions' (see mulap.data.audiocaption)


@dataclass(frozen=True)
class Augment:
    gain_db: float = 6.0
    eq_db: float = 6.0
    noise_prob: float = 0.5
    noise_snr_db: tuple[float, float] = (20.0, 40.0)
    shift_seconds: float = 0.25
    sample_rate: int = 16_000

    @classmethod
    def from_config(cls, dataset_config) -> Augment | None:
        """The augmentation of a config's `dataset_config.augment` section (None when it is off or absent)."""
        a = dataset_config.get("augment") if hasattr(dataset_config, "get") else None
        if not a or not a.get("enabled", False):
            return None
        lo, hi = (float(v) for v in a.get("noise_snr_db", (20.0, 40.0)))
        return cls(
            float(a.get("gain_db", 6.0)),
            float(a.get("eq_db", 6.0)),
            float(a.get("noise_prob", 0.5)),
            (lo, hi),
            float(a.get("shift_seconds", 0.25)),
            int(dataset_config.get("sample_rate", 16_000)),
        )


def augment_rng(seed: int, epoch: int, *position: int) -> np.random.Generator:
    """The augmentation's random stream of one item: (seed, epoch, position...) -> always the same draws."""
    return np.random.default_rng([int(seed), int(epoch), _STREAM, *(int(p) for p in position)])


def _segment(wave: np.ndarray, start: int, length: int) -> np.ndarray:
    """wave[start:start+length], zero-padded where it runs past either end."""
    out = np.zeros(length, dtype=np.float32)
    a, b = max(start, 0), min(start + length, len(wave))
    if b > a:
        out[a - start : b - start] = wave[a:b]
    return out


def eq_gain(n: int, sample_rate: int, gains_db: np.ndarray) -> np.ndarray:
    """Linear gains of the rfft bins of an n-sample signal for an EQ curve given at EQ_FREQS."""
    f = np.maximum(np.fft.rfftfreq(n, 1.0 / sample_rate), EQ_FREQS[0])
    return 10 ** (np.interp(np.log(f), np.log(EQ_FREQS), gains_db) / 20.0)


def augment_chunk(chunk: np.ndarray, aug: Augment, rng: np.random.Generator) -> np.ndarray:
    """EQ, gain and (maybe) noise on one [S] chunk; a fixed number of draws whatever the outcome."""
    gains = rng.uniform(-aug.eq_db, aug.eq_db, len(EQ_FREQS))
    gain_db = rng.uniform(-aug.gain_db, aug.gain_db)
    noisy, snr_db = rng.random() < aug.noise_prob, rng.uniform(*aug.noise_snr_db)
    noise = rng.standard_normal(len(chunk))
    x = chunk
    if aug.eq_db > 0:
        x = np.fft.irfft(np.fft.rfft(x) * eq_gain(len(x), aug.sample_rate, gains), len(x))
    x = x * 10 ** (gain_db / 20.0)
    if noisy:
        rms = float(np.sqrt(np.mean(x**2)))
        x = x + noise * (rms / 10 ** (snr_db / 20.0))
    return x.astype(np.float32)


def augmented_chunks(
    wave: np.ndarray, start: int, chunk_len: int, n_real: int, max_chunks: int, aug: Augment, rng: np.random.Generator
) -> np.ndarray:
    """[max_chunks, chunk_len]: the window of `wave` starting at `start`, chunk i cut at start + i*chunk_len
    shifted by its own draw and augmented; the chunks past `n_real` stay zero (padding)."""
    out = np.zeros((max_chunks, chunk_len), dtype=np.float32)
    reach = int(round(aug.shift_seconds * aug.sample_rate))
    for i in range(n_real):
        k = int(rng.integers(-reach, reach + 1)) if reach else 0
        out[i] = augment_chunk(_segment(wave, start + i * chunk_len + k, chunk_len), aug, rng)
    return out
