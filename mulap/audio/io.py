"""Audio loading: any supported file -> 16 kHz mono float32.

`.npy` (the seed's format: a 16 kHz float array) and whatever libsndfile reads
(wav, flac, ogg, mp3, ...) at any rate and channel count. Resampling uses soxr.
Every failure raises `AudioError` naming the file and what is wrong.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16_000


class AudioError(ValueError):
    """A file that cannot be used as audio; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def to_mono(wave: np.ndarray) -> np.ndarray:
    """[T] or [T, channels] (soundfile's layout) -> [T] by averaging channels."""
    if wave.ndim == 1:
        return wave
    if wave.ndim == 2:
        return wave.mean(axis=1)
    raise ValueError(f"expected a 1-D or 2-D (time, channels) array, got shape {wave.shape}")


def resample(wave: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """[T] at orig_sr -> [T'] at target_sr (soxr, high quality)."""
    if orig_sr == target_sr:
        return wave
    return soxr.resample(wave, orig_sr, target_sr, quality="HQ")


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE, npy_rate: int = SAMPLE_RATE, data: bytes | None = None) -> np.ndarray:
    """Load `path` as a [T] float32 mono waveform at `sample_rate`.

    With `data` (the file's bytes, e.g. a member of a tar shard) nothing is opened: `path`
    only names the source in errors and gives the format by its suffix.

    `.npy` files carry no rate: they are taken to be at `npy_rate` (16 kHz, the
    seed's convention); 2-D arrays are treated as (time, channels) when the
    second axis is the short one, else (channels, time).
    Raises AudioError for a missing, unreadable, empty or non-finite file.
    """
    path = Path(path)
    if data is None and not path.is_file():
        raise AudioError(path, "file not found")
    source = io.BytesIO(data) if data is not None else path
    try:
        if path.suffix.lower() == ".npy":
            wave = np.load(source, allow_pickle=False)
            if wave.ndim == 2 and wave.shape[0] < wave.shape[1]:
                wave = wave.T  # (channels, time) -> (time, channels)
            sr = npy_rate
        else:
            wave, sr = sf.read(source if data is not None else str(path), dtype="float32", always_2d=False)
    except Exception as exc:  # soundfile/numpy raise many types for corrupt files
        raise AudioError(path, f"cannot be read as audio ({type(exc).__name__}: {exc})") from None
    if not np.issubdtype(np.asarray(wave).dtype, np.floating) and not np.issubdtype(np.asarray(wave).dtype, np.integer):
        raise AudioError(path, f"array of dtype {wave.dtype} is not audio")
    if wave.ndim not in (1, 2):
        raise AudioError(path, f"expected 1-D or 2-D audio, got shape {wave.shape}")
    wave = to_mono(np.asarray(wave, dtype=np.float32))
    if wave.size == 0:
        raise AudioError(path, "zero-length audio")
    if not np.isfinite(wave).all():
        raise AudioError(path, "contains NaN or infinite samples")
    wave = resample(wave, int(sr), sample_rate).astype(np.float32, copy=False)
    return np.ascontiguousarray(wave)


def write_audio(path: str | Path, wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write [T] float audio; the format follows the suffix (.npy, .wav, .flac, .ogg, .mp3).

    Written to a temporary name first, then renamed, so a crash never leaves a half file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    wave = np.asarray(wave, dtype=np.float32)
    if path.suffix.lower() == ".npy":
        with open(tmp, "wb") as fh:
            np.save(fh, wave)
    else:
        fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".mp3": "MP3"}.get(path.suffix.lower())
        if fmt is None:
            raise ValueError(f"{path}: unsupported audio suffix {path.suffix!r}")
        sf.write(str(tmp), np.clip(wave, -1.0, 1.0), sample_rate, format=fmt)
    tmp.replace(path)
