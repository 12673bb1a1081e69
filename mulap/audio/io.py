"""Audio loading: any supported file -> 16 kHz mono float32, whole (`load_audio`) or streamed in
blocks (`iter_blocks`, memory bounded whatever the duration).

`.npy` (the seed's format: a 16 kHz array; float, or integer PCM scaled by its dtype's range),
whatever libsndfile reads (wav, flac, ogg, mp3, ...) and, through PyAV (the optional `m4a` extra: its
wheels ship FFmpeg's decoders), the containers libsndfile cannot read: MP4/M4A (AAC, ALAC), AAC in
ADTS, ALAC/AAC in CAF; at any rate and channel count. Resampling uses soxr (its streaming resampler
gives the same samples as a one-shot call). Every failure raises
`AudioError` naming the file and saying what is really wrong: missing, empty (0 bytes), not audio
(text or an unknown format behind an audio suffix), damaged, truncated (far fewer samples than the
header declares), NaN/inf samples, a dtype with no audio scale.
"""

from __future__ import annotations

import importlib.util
import io
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16_000
BLOCK_SECONDS = 30.0  # streamed reads take this much source audio at a time
TRUNCATED_FRACTION = 0.9  # decoded/declared below this (and > 0.1 s missing) = truncated

# integer PCM in .npy -> float in [-1, 1): (offset, scale) per dtype; unsigned types are offset binary
# (8-bit WAV's convention). int64 / uint32 / uint64 have no PCM convention: refused.
INT_PCM = {"i1": (0, 2**7), "i2": (0, 2**15), "i4": (0, 2**31), "u1": (2**7, 2**7), "u2": (2**15, 2**15)}


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
        return wave.mean(axis=1) if wave.shape[1] > 1 else wave[:, 0]
    raise ValueError(f"expected a 1-D or 2-D (time, channels) array, got shape {wave.shape}")


def resample(wave: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """[T] at orig_sr -> [T'] at target_sr (soxr, high quality)."""
    if orig_sr == target_sr:
        return wave
    return soxr.resample(wave, orig_sr, target_sr, quality="HQ")


# ------------------------------------------------------------------ what is in a file


_MAGIC = [  # (offset, bytes, format name)
    (0, b"RIFF", "WAV"),
    (0, b"RIFX", "WAV"),
    (0, b"RF64", "WAV"),
    (0, b"FORM", "AIFF"),
    (0, b"fLaC", "FLAC"),
    (0, b"OggS", "Ogg"),
    (0, b"ID3", "MP3"),
    (4, b"ftyp", "MP4/M4A"),
    (0, b"caff", "CAF"),
    (0, b".snd", "AU"),
]


def sniff(head: bytes) -> str | None:
    """The audio container that `head` (a file's first bytes) starts like, or None."""
    for offset, magic, name in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return name
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # MPEG audio frame sync
        return "MP3" if (head[1] >> 1) & 3 else "AAC (ADTS)"
    return None


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    text = head.decode("utf-8", errors="replace")
    odd = sum(1 for c in text if c == "\ufffd" or (ord(c) < 32 and c not in "\t\n\r"))
    return odd <= max(1, len(text) // 50)  # allow a character cut at the end of `head`


def _not_audio(path: Path, head: bytes) -> str:
    if _looks_like_text(head):
        first = head.decode("utf-8", errors="replace").strip().splitlines()[0][:40] if head.strip() else ""
        return f"not audio: a text file (starts with {first!r})"
    return f"not audio: unknown format (first bytes {head[:8].hex(' ')})"


def _head(path: Path, n: int = 512) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def check_file(path: str | Path) -> None:
    """AudioError unless `path` is a non-empty regular file this process can open (nothing is decoded)."""
    path = Path(path)
    try:
        if not path.is_file():
            raise AudioError(path, "file not found" if not path.exists() else "not a regular file")
        with open(path, "rb"):  # readable? (libsndfile would call a permission problem a format problem)
            pass
        if path.stat().st_size == 0:
            raise AudioError(path, "empty file (0 bytes)")
    except OSError as exc:  # permission denied, a name too long for the file system, I/O error
        raise AudioError(path, f"cannot be read ({exc.strerror or exc})") from None


def _libsndfile_reason(exc: Exception) -> str:
    """libsndfile's message without its misleading parts (it says "File does not exist or is not a
    regular file (possibly a pipe?)" for an mp3 it cannot decode)."""
    text = getattr(exc, "error_string", None) or str(exc)
    if "does not exist or is not a regular file" in text:
        return "no decodable audio frames"
    return text.rstrip(".")


# ------------------------------------------------------------------ sources: [n, channels] float32 blocks


def _soundfile_source(path: Path, block_seconds: float, data: bytes | None = None) -> tuple[Iterator[np.ndarray], int]:
    """libsndfile's reader; files it refuses that PyAV may read (CAF with AAC, an m4a behind an ID3 tag) go to
    `_pyav_source`."""
    try:
        f = sf.SoundFile(io.BytesIO(data) if data is not None else str(path))
    except Exception as exc:  # noqa: BLE001 - soundfile raises LibsndfileError / RuntimeError / TypeError on bad files
        head = data[:512] if data is not None else _head(path)
        kind = sniff(head)
        if head.startswith(b"\x93NUMPY"):
            raise AudioError(path, f"a NumPy array behind a {path.suffix} suffix; name it .npy") from None
        if kind is None:
            raise AudioError(path, _not_audio(path, head)) from None
        if kind in PYAV_KINDS or path.suffix.lower() in PYAV_SUFFIXES:
            return _pyav_source(path, kind if kind in PYAV_KINDS else _SUFFIX_KIND[path.suffix.lower()], block_seconds, data)
        raise AudioError(path, f"damaged {kind} file: {_libsndfile_reason(exc)}") from None
    if f.samplerate <= 0 or f.channels <= 0:
        f.close()
        raise AudioError(path, f"damaged {f.format} header: {f.samplerate} Hz, {f.channels} channel(s)")
    return _soundfile_blocks(path, f, block_seconds), int(f.samplerate)


def _declared_frames(f: sf.SoundFile) -> int:
    """Frames the header declares. libsndfile shortens a WAV's length to the data present and only
    notes the header's size in its log ("data : 882000 (should be 146963)"); mp3 lengths come from
    the Xing/Info header when there is one."""
    m = re.search(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", f.extra_info, re.M) if f.format in ("WAV", "WAVEX") else None
    if m:
        declared, present = int(m.group(1)), int(m.group(2))
        if 0 < present < declared < 0xFFFFFF00:  # 0 / 0xFFFFFFFF: a streamed WAV with no length
            return int(round(f.frames * declared / present))
    return int(f.frames)


def _soundfile_blocks(path: Path, f: sf.SoundFile, block_seconds: float) -> Iterator[np.ndarray]:
    """Read with SoundFile.read until it returns nothing: sf.blocks would pad a truncated file with
    stale samples up to the header's length."""
    with f:
        declared = _declared_frames(f)
        n = max(1, int(block_seconds * f.samplerate))
        done = 0
        while True:
            try:
                block = f.read(n, dtype="float32", always_2d=True)
            except Exception as exc:  # noqa: BLE001 - libsndfile's read fails in its own ways on damaged data
                raise AudioError(
                    path,
                    f"damaged or truncated {f.format} audio data after {done / f.samplerate:.2f} s of the "
                    f"{declared / f.samplerate:.2f} s its header declares ({_libsndfile_reason(exc)})",
                ) from None
            if not len(block):
                break
            done += len(block)
            yield block
        missing = declared - done
        if missing > (1 - TRUNCATED_FRACTION) * declared and missing > 0.1 * f.samplerate:
            raise AudioError(
                path,
                f"truncated: {done / f.samplerate:.2f} s decoded of the {declared / f.samplerate:.2f} s "
                f"its {f.format} header declares (an incomplete download or copy?)",
            )


# PyAV (FFmpeg) reads what libsndfile cannot: these containers by their first bytes, and these suffixes
PYAV_KINDS = ("MP4/M4A", "AAC (ADTS)", "CAF")
PYAV_SUFFIXES = (".m4a", ".m4b", ".aac")
_SUFFIX_KIND = {".m4a": "MP4/M4A", ".m4b": "MP4/M4A", ".aac": "AAC"}
PYAV_MISSING = "PyAV is not installed (pip install av)"


def pyav_installed() -> bool:
    """Whether PyAV can be imported, without importing it."""
    if "av" in sys.modules:
        return sys.modules["av"] is not None
    return importlib.util.find_spec("av") is not None


def import_pyav():
    """The `av` module, or None when PyAV is not installed (it is the optional `m4a` extra)."""
    try:
        import av
    except ImportError:
        return None
    return av


def _pyav_source(path: Path, kind: str, block_seconds: float, data: bytes | None = None) -> tuple[Iterator[np.ndarray], int]:
    av = import_pyav()
    if av is None:
        raise AudioError(path, f"{kind} audio is not supported: {PYAV_MISSING}, or convert it to wav, flac, ogg or mp3")
    try:
        container = av.open(io.BytesIO(data) if data is not None else str(path), mode="r")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise AudioError(path, f"damaged {kind} file: {_ffmpeg_reason(exc)}") from None
    try:
        if not container.streams.audio:
            raise AudioError(path, f"no audio stream in this {kind} file")
        stream = container.streams.audio[0]
        sr = int(stream.codec_context.sample_rate or 0)
        if sr <= 0 or not stream.codec_context.channels:
            raise AudioError(path, f"damaged {kind} header: {sr} Hz, {stream.codec_context.channels} channel(s)")
    except BaseException:
        container.close()
        raise
    return _pyav_blocks(path, kind, container, stream, sr, block_seconds), sr


def _ffmpeg_reason(exc: Exception) -> str:
    """FFmpeg's message without the file name PyAV appends (the AudioError names the file already)."""
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).rstrip(".") or type(exc).__name__


_PCM_SCALE = {"s16": 2.0**15, "s32": 2.0**31, "s64": 2.0**63}


def _frame_samples(frame) -> np.ndarray:
    """A decoded PyAV frame -> [n, channels] float32 (planar or packed; float, signed or unsigned PCM)."""
    a = frame.to_ndarray()
    channels = len(frame.layout.channels)
    a = a.T if frame.format.is_planar else a.reshape(-1, channels)
    name = frame.format.name.rstrip("p")
    if name == "u8":
        return ((a.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    if name in _PCM_SCALE:
        return (a.astype(np.float64) / _PCM_SCALE[name]).astype(np.float32)
    return np.asarray(a, dtype=np.float32)


def _pyav_blocks(path: Path, kind: str, container, stream, sr: int, block_seconds: float) -> Iterator[np.ndarray]:
    """Decoded frames gathered into blocks of about `block_seconds`; damage and truncation said as libsndfile's are."""
    import av

    with container:
        if stream.duration and stream.time_base:
            declared = int(round(float(stream.duration * stream.time_base) * sr))
        else:  # an ADTS stream has no length: FFmpeg's estimate from the bit rate, or nothing
            declared = int(round((container.duration or 0) / av.time_base * sr))
        n = max(1, int(block_seconds * sr))
        pending: list[np.ndarray] = []
        have = done = 0
        frames = container.decode(stream)
        while True:
            try:
                frame = next(frames, None)
            except (av.FFmpegError, ValueError) as exc:
                raise AudioError(
                    path,
                    f"damaged or truncated {kind} audio data after {done / sr:.2f} s of the "
                    f"{declared / sr:.2f} s its header declares ({_ffmpeg_reason(exc)})",
                ) from None
            if frame is not None:
                if frame.sample_rate and frame.sample_rate != sr:
                    raise AudioError(
                        path, f"the sample rate changes midway ({sr} -> {frame.sample_rate} Hz at {done / sr:.2f} s)"
                    )
                samples = _frame_samples(frame)
                if pending and samples.shape[1] != pending[0].shape[1]:  # the channel count changed: a block each
                    yield np.concatenate(pending)
                    pending, have = [], 0
                pending.append(samples)
                have += len(samples)
                done += len(samples)
            if pending and (have >= n or frame is None):
                yield pending[0] if len(pending) == 1 else np.concatenate(pending)
                pending, have = [], 0
            if frame is None:
                break
        missing = declared - done
        if missing > (1 - TRUNCATED_FRACTION) * declared and missing > 0.1 * sr:
            raise AudioError(
                path,
                f"truncated: {done / sr:.2f} s decoded of the {declared / sr:.2f} s "
                f"its {kind} header declares (an incomplete download or copy?)",
            )


def _npy_header(path: Path, data: bytes | None = None) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) of a .npy file (or its bytes), with a clear error for anything else."""
    with io.BytesIO(data) if data is not None else open(path, "rb") as fh:
        head = fh.read(6)
        if head != b"\x93NUMPY":
            raise AudioError(path, _not_audio(path, head + fh.read(506)) + "; expected a .npy array")
        fh.seek(0)
        try:
            version = np.lib.format.read_magic(fh)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = reader(fh)
        except Exception as exc:  # noqa: BLE001 - numpy raises ValueError / SyntaxError / OverflowError on bad headers
            raise AudioError(path, f"damaged .npy header ({exc})") from None
        return tuple(shape), np.dtype(dtype), fh.tell()


def _npy_source(path: Path, block_seconds: float, npy_rate: int, data: bytes | None = None) -> tuple[Iterator[np.ndarray], int]:
    shape, dtype, offset = _npy_header(path, data)
    if dtype.hasobject:
        raise AudioError(path, "the .npy holds Python objects; not loaded (unsafe), save a float32 array")
    if len(shape) not in (1, 2):
        raise AudioError(path, f"expected 1-D or 2-D audio, got shape {shape}")
    kind = dtype.str[1:] if dtype.kind in "iu" else dtype.kind
    if dtype.kind in "iu" and kind not in INT_PCM:
        raise AudioError(path, f"{dtype} samples have no audio scale; save float32 in [-1, 1] or int16/int32 PCM")
    if dtype.kind not in "fiu":
        raise AudioError(path, f"array of dtype {dtype} is not audio")
    need = offset + int(np.prod(shape)) * dtype.itemsize
    size = len(data) if data is not None else path.stat().st_size
    if size < need:
        raise AudioError(path, f"truncated .npy: shape {shape} needs {need} bytes, the file has {size}")
    if not np.prod(shape):
        arr = np.zeros(shape, dtype)
    elif data is not None:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    else:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    if arr.ndim == 2 and arr.shape[0] < arr.shape[1]:
        arr = arr.T  # (channels, time) -> (time, channels)
    if arr.ndim == 1:
        arr = arr[:, None]
    offset_scale = INT_PCM.get(kind)
    n = max(1, int(block_seconds * npy_rate))

    def blocks() -> Iterator[np.ndarray]:
        for start in range(0, arr.shape[0], n):
            block = np.asarray(arr[start : start + n])
            if offset_scale is None:
                yield block.astype(np.float32)
            else:
                yield ((block.astype(np.float64) - offset_scale[0]) / offset_scale[1]).astype(np.float32)

    return blocks(), npy_rate


# ------------------------------------------------------------------ public readers


def iter_blocks(
    path: str | Path,
    sample_rate: int = SAMPLE_RATE,
    npy_rate: int = SAMPLE_RATE,
    block_seconds: float = BLOCK_SECONDS,
    data: bytes | None = None,
) -> Iterator[np.ndarray]:
    """Stream `path` as [n] float32 mono blocks at `sample_rate`: reads `block_seconds` of source at a
    time, down-mixes and resamples each block (soxr.ResampleStream), so memory stays bounded.

    `.npy` files carry no rate: they are taken to be at `npy_rate`; 2-D arrays are (time, channels)
    when the second axis is the short one, else (channels, time).
    Raises AudioError (see the module docstring). Some problems show only at the end (a truncated
    file) or midway (a NaN, a damaged frame), after blocks were yielded: a consumer that must not
    keep a partial file collects its results until the generator ends.
    """
    path = Path(path)
    if data is None:
        check_file(path)
    elif not data:
        raise AudioError(path, "empty file (0 bytes)")
    if path.suffix.lower() == ".npy":
        source, sr = _npy_source(path, block_seconds, npy_rate, data)
    else:
        kind = sniff(data[:512] if data is not None else _head(path))
        if kind in ("MP4/M4A", "AAC (ADTS)"):  # never libsndfile's: its mp3 decoder might take an ADTS stream
            source, sr = _pyav_source(path, kind, block_seconds, data)
        else:
            source, sr = _soundfile_source(path, block_seconds, data)
    stream = soxr.ResampleStream(sr, sample_rate, 1, dtype="float32", quality="HQ") if sr != sample_rate else None
    done = given = 0
    for block in source:
        mono = to_mono(block)
        if not np.isfinite(mono).all():
            at = (done + int(np.argmin(np.isfinite(mono)))) / sr
            raise AudioError(path, f"contains NaN or infinite samples (first at {at:.2f} s)")
        done += len(mono)
        out = stream.resample_chunk(mono) if stream is not None else mono
        if len(out):
            given += len(out)
            yield np.ascontiguousarray(out, dtype=np.float32)
    if done == 0:
        raise AudioError(path, "zero-length audio")
    tail = stream.resample_chunk(np.zeros(0, np.float32), last=True) if stream is not None else ()
    if len(tail):
        given += len(tail)
        yield np.ascontiguousarray(tail, dtype=np.float32)
    if given == 0:
        raise AudioError(path, f"too short: {done} sample(s) at {sr} Hz is less than one at {sample_rate} Hz")


def load_audio(
    path: str | Path, sample_rate: int = SAMPLE_RATE, npy_rate: int = SAMPLE_RATE, data: bytes | None = None
) -> np.ndarray:
    """Load `path` as a [T] float32 mono waveform at `sample_rate` (all of `iter_blocks`' blocks).

    With `data` (the file's bytes, e.g. a member of a tar shard) nothing is opened: `path` only names
    the source in errors and gives the format by its suffix.
    Raises AudioError for a missing, empty, non-audio, damaged, truncated or non-finite file.
    """
    blocks = list(iter_blocks(path, sample_rate, npy_rate, data=data))
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)


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
