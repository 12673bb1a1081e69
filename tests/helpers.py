"""Generated test material: small audiocaption datasets of synthetic harmonic tones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soxr

from mulap.audio.io import write_audio

# (suffix, sample rate, channels): the seed's npy plus what real users bring
FORMATS = [(".npy", 16000, 1), (".wav", 44100, 2), (".flac", 22050, 1), (".ogg", 48000, 2), (".mp3", 44100, 1), (".wav", 8000, 1)]

TINY_MODEL = [
    "model_config.text.pretrained=null",
    "model_config.text.hidden_size=32",
    "model_config.text.num_layers=2",
    "model_config.text.num_heads=2",
    "model_config.text.intermediate_size=64",
    "model_config.audio.hidden_size=32",
    "model_config.audio.num_layers=2",
    "model_config.audio.num_heads=2",
    "model_config.audio.intermediate_size=64",
    "model_config.coattention.t_biattention_id=[1,2]",
    "model_config.coattention.a_biattention_id=[0,1]",
    "model_config.coattention.hidden_size=32",
    "model_config.coattention.num_heads=2",
    "model_config.pooler.size=32",
    "model_config.audio.musicnn={timbral_channels: 8, temporal_channels: 4, backend_channels: 8}",
]


def tone(seconds: float, f0: float, sr: int = 16000, bright: bool = True, loud: bool = True) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    n_h = 8 if bright else 2
    wave = sum((0.6 / k) * np.sin(2 * np.pi * f0 * k * t) for k in range(1, n_h + 1))
    env = np.minimum(1.0, t * 20) * (0.8 if loud else 0.15)
    return (wave * env / n_h * 2).astype(np.float32)


def make_audiocaption(root: Path, n_train: int = 12, n_val: int = 4, seed: int = 0, lengths=(2.0, 4.0, 7.0, 10.0)) -> Path:
    """A seed-format dataset: mixed formats, rates, channel counts and clip lengths."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    k = 0
    for split, n in (("train", n_train), ("val", n_val), ("test", n_val)):
        records = []
        for _ in range(n):
            suffix, sr, ch = FORMATS[k % len(FORMATS)]
            bright, loud = bool(rng.integers(2)), bool(rng.integers(2))
            f0 = float(rng.choice([110.0, 220.0, 440.0]))
            wave = tone(lengths[k % len(lengths)], f0, 16000, bright, loud)
            if sr != 16000:
                wave = soxr.resample(wave, 16000, sr).astype(np.float32)
            if ch == 2:
                wave = np.stack([wave, wave * 0.9], axis=1)
            name = f"clip{k:03d}{suffix}"
            if suffix == ".npy":
                np.save(root / "audio" / name, wave)
            else:
                write_audio(root / "audio" / name, wave, sr) if ch == 1 else _write_stereo(root / "audio" / name, wave, sr)
            caption = (
                f"a {'bright' if bright else 'dull'} {'loud' if loud else 'soft'} tone, {'low' if f0 < 200 else 'high'} register"
            )
            records.append({"audio_id": f"clip{k:03d}", "caption": caption, "audio_path": name})
            k += 1
        (root / f"dataset_{split}.json").write_text(json.dumps(records, indent=1))
    return root


def _write_stereo(path: Path, wave: np.ndarray, sr: int) -> None:
    import soundfile as sf

    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".mp3": "MP3"}[path.suffix]
    sf.write(str(path), np.clip(wave, -1, 1), sr, format=fmt)


def make_tone_corpus(root: Path, n_train: int = 8, n_val: int = 2, seconds=(4.0, 5.0, 7.0)) -> Path:
    """A small seed-format dataset of 16 kHz .npy tones (fast to read: for tests that start many runs)."""
    root = Path(root)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    k = 0
    for split, n in (("train", n_train), ("val", n_val), ("test", n_val)):
        records = []
        for _ in range(n):
            np.save(root / "audio" / f"tone{k:03d}.npy", tone(seconds[k % len(seconds)], 110.0 * (1 + k % 4), bright=k % 2 == 0))
            records.append(
                {
                    "audio_id": f"tone{k:03d}",
                    "caption": f"a {'bright' if k % 2 == 0 else 'dull'} tone, pitch {k % 4}",
                    "audio_path": f"tone{k:03d}.npy",
                }
            )
            k += 1
        (root / f"dataset_{split}.json").write_text(json.dumps(records, indent=1))
    return root


def write_with_pyav(
    path: Path, wave: np.ndarray, sr: int, codec: str = "aac", fmt: str | None = None, options: dict | None = None
) -> Path:
    """Encode [T] or [T, channels] float audio with PyAV (FFmpeg): aac or alac, in m4a (by the suffix), ADTS
    (fmt="adts") or CAF; options e.g. {"movflags": "faststart"} (the index first, as iTunes writes it)."""
    import av

    wave = np.asarray(wave, dtype=np.float32)
    planes = wave[None] if wave.ndim == 1 else np.ascontiguousarray(wave.T)
    layout = "mono" if len(planes) == 1 else "stereo"
    with av.open(str(path), "w", format=fmt, options=options or {}) as out:
        stream = out.add_stream(codec, rate=sr, layout=layout)
        sample_fmt = stream.codec_context.codec.audio_formats[0].name  # fltp (aac), s32p / s16p (alac)
        step = stream.codec_context.frame_size or 4096
        for start in range(0, planes.shape[1], step):
            block = np.clip(planes[:, start : start + step], -1, 1)
            if sample_fmt == "s32p":
                block = (block * (2**31 - 1)).astype(np.int32)
            elif sample_fmt == "s16p":
                block = (block * (2**15 - 1)).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format=sample_fmt, layout=layout)
            frame.sample_rate, frame.pts = sr, start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return Path(path)
