"""Cutting waveforms into the model's fixed-length chunks."""

from __future__ import annotations

import numpy as np

CHUNK_SECONDS = 3.0


def chunk_samples(sample_rate: int = 16_000, seconds: float = CHUNK_SECONDS) -> int:
    return int(round(sample_rate * seconds))


def cut_chunks(wave: np.ndarray, chunk_len: int, max_chunks: int | None = None, pad_last: bool = True) -> np.ndarray:
    """[T] -> [C, chunk_len] non-overlapping chunks.

    The last partial chunk is zero-padded when `pad_last` (and when it is the only
    one, so a clip shorter than one chunk still yields a chunk); otherwise dropped.
    At most `max_chunks` chunks are kept (the start of the clip).
    """
    n_full = len(wave) // chunk_len
    rest = len(wave) - n_full * chunk_len
    n = n_full + (1 if rest and (pad_last or n_full == 0) else 0)
    if max_chunks is not None:
        n = min(n, max_chunks)
    out = np.zeros((n, chunk_len), dtype=np.float32)
    take = min(len(wave), n * chunk_len)
    out.reshape(-1)[:take] = wave[:take]
    return out


def chunk_with_mask(wave: np.ndarray, chunk_len: int, max_chunks: int) -> tuple[np.ndarray, np.ndarray]:
    """[T] -> ([max_chunks, chunk_len] zero-padded chunks, [max_chunks] bool mask of real chunks).

    Clips shorter than `max_chunks` chunks are padded with empty chunks marked False
    (the original crashed on them); longer clips are cut at `max_chunks`.
    """
    chunks = cut_chunks(wave, chunk_len, max_chunks)
    out = np.zeros((max_chunks, chunk_len), dtype=np.float32)
    out[: len(chunks)] = chunks
    mask = np.zeros(max_chunks, dtype=bool)
    mask[: len(chunks)] = True
    return out, mask


def random_crop(wave: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A random [length] window of `wave` (zero-padded when shorter)."""
    if len(wave) <= length:
        out = np.zeros(length, dtype=np.float32)
        out[: len(wave)] = wave
        return out
    start = int(rng.integers(0, len(wave) - length + 1))
    return wave[start : start + length]
