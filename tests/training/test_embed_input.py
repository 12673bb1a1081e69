"""Input side of embedding extraction (issue 11, items 8 and 9): long files are streamed block by
block and give the chunks of a whole-file decode; a file that fails midway contributes nothing;
concurrent writers of one cache entry never crash."""
from __future__ import annotations

import numpy as np
import soundfile as sf
import soxr
import torch

from mulap.audio.chunks import cut_chunks
from mulap.embed import extract, stream_chunks
from mulap.models.musicnn import Musicnn, MusicnnConfig
from tests.helpers import tone


def _reference_chunks(path, chunk_len=48000):
    """Whole-file decode written independently of mulap: soundfile, channel mean, one soxr call."""
    wave, sr = sf.read(str(path), dtype="float32", always_2d=True)
    mono = soxr.resample(wave.mean(axis=1), sr, 16000, quality="HQ") if sr != 16000 else wave.mean(axis=1)
    return cut_chunks(np.asarray(mono, np.float32), chunk_len, pad_last=False)


def _write(path, seconds, sr, channels=2, seed=0):
    rng = np.random.default_rng(seed)
    wave = tone(seconds, 220.0 * (seed + 1), sr) + 0.02 * rng.standard_normal(int(seconds * sr)).astype(np.float32)
    sf.write(str(path), np.stack([wave, 0.5 * wave], 1) if channels == 2 else wave, sr)
    return path


def test_stream_chunks_equal_the_chunks_of_a_whole_file_decode(tmp_path):
    path = _write(tmp_path / "long.wav", 65.0, 44100)  # three 30 s read blocks, 21 chunks
    pieces = list(stream_chunks(path, 48000, 16000, piece_chunks=8))
    # handed over block by block as read: the first 30 s block gives 9 chunks (8 + 1), not the whole file
    assert [len(p) for p in pieces][:2] == [8, 1] and sum(len(p) for p in pieces) == 21
    np.testing.assert_allclose(np.concatenate(pieces), _reference_chunks(path), atol=2e-5)
    short = _write(tmp_path / "short.flac", 1.0, 22050, channels=1)
    (only,) = stream_chunks(short, 48000, 16000)
    assert only.shape == (1, 48000) and np.abs(only[0, 17000:]).max() == 0  # the only chunk is zero-padded


def test_extract_streams_files_in_workers_and_drops_a_file_that_fails_midway(tmp_path):
    paths = [_write(tmp_path / "a.wav", 65.0, 44100, seed=0), _write(tmp_path / "b.flac", 4.0, 22050, 1, seed=1),
             tmp_path / "cut.wav", _write(tmp_path / "c.mp3", 7.0, 48000, seed=2)]
    full = _write(tmp_path / "full.wav", 60.0, 16000, channels=1, seed=3)
    paths[2].write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.7)])  # 42 of 60 s: fails after a block was sent
    torch.manual_seed(0)
    model = Musicnn(MusicnnConfig(timbral_channels=12)).eval()
    feats, track, failures = extract(model, paths, batch_chunks=8, num_workers=2, progress=False)
    assert failures == [(str(paths[2]), failures[0][1])] and "truncated: 42" in failures[0][1]
    refs = {i: _reference_chunks(paths[i]) for i in (0, 1, 3)}
    assert track.tolist() == [i for i in (0, 1, 3) for _ in range(len(refs[i]))]  # clip order, chunks in order
    with torch.inference_mode():
        expected = np.concatenate([model(torch.from_numpy(refs[i])).numpy() for i in (0, 1, 3)])
    np.testing.assert_allclose(feats, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
