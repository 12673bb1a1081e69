"""Backbone embeddings of many clips: every 3 s chunk, decoded block by block in reader workers and
batched across clips, in one process. Several processes (Lightning DDP) are the caller's choice:
`mulap.training.extract_ddp`."""

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm.auto import tqdm

from mulap.audio.chunks import cut_chunks
from mulap.audio.io import AudioError, iter_blocks
from mulap.audio.scan import AUDIO_SUFFIXES, audio_suffixes, list_audio  # noqa: F401 (the folder scan: mulap.audio.scan)
from mulap.infra.interrupts import worker_exits_on_sigterm
from mulap.models.musicnn import Musicnn

log = logging.getLogger(__name__)


def fingerprint(model: torch.nn.Module) -> str:
    """A hash of every parameter and buffer (names, shapes and values)."""
    h = hashlib.sha1()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# -- extraction ----------------------------------------------------------------------------
PIECE_CHUNKS = 16  # chunks a reader worker hands over at a time (48 s of audio, 3 MB)


def stream_chunks(path: Path, chunk_len: int, sample_rate: int, piece_chunks: int = PIECE_CHUNKS):
    """A file's non-overlapping chunks as they are decoded: yields [n <= piece_chunks, chunk_len]
    arrays. Same chunks as `cut_chunks(load_audio(path), chunk_len, pad_last=False)` (a trailing
    partial chunk is dropped unless it is the only one), with memory bounded by the read block."""
    rest = np.zeros(0, np.float32)
    emitted = 0
    for block in iter_blocks(path, sample_rate):
        rest = np.concatenate([rest, block]) if len(rest) else block
        n_full = len(rest) // chunk_len
        for start in range(0, n_full, piece_chunks):
            stop = min(n_full, start + piece_chunks)
            yield rest[start * chunk_len : stop * chunk_len].reshape(stop - start, chunk_len).copy()
        emitted += n_full
        rest = rest[n_full * chunk_len :].copy()
    if emitted == 0 and len(rest):
        yield cut_chunks(rest, chunk_len, pad_last=True)


class _StreamedChunks(IterableDataset):
    """Items (clip index, chunks [n, S] or None, error or None, last piece of the clip?): each clip
    is decoded block by block, so a long file never sits in memory whole. Worker k of W reads
    clips k, k + W, ...; a clip's pieces come in order."""

    def __init__(self, paths: list[Path], chunk_len: int, sample_rate: int):
        self.paths, self.chunk_len, self.sample_rate = paths, chunk_len, sample_rate

    def __iter__(self):
        info = get_worker_info()
        mine = range(len(self.paths)) if info is None else range(info.id, len(self.paths), info.num_workers)
        for i in mine:
            try:
                for chunks in stream_chunks(self.paths[i], self.chunk_len, self.sample_rate):
                    yield i, chunks, None, False
            except AudioError as exc:
                yield i, None, exc.reason, True  # the pieces already sent are dropped by the consumer
                continue
            yield i, None, None, True


def _collate(items):
    return items


@torch.inference_mode()
def embed_chunk_batch(model: Musicnn, chunks: list[np.ndarray], device: torch.device, precision: str) -> np.ndarray:
    """The chunks of several clips ([n_i, S] each) in one forward -> features [sum n_i, D] float32."""
    x = torch.from_numpy(np.concatenate(chunks)).to(device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        return model(x).float().cpu().numpy()


@torch.inference_mode()
def extract(
    model: Musicnn,
    paths: list[Path],
    batch_chunks: int = 64,
    num_workers: int = 2,
    desc: str = "embedding",
    progress: bool = True,
    device: str | torch.device | None = None,
    precision: str = "32",
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Embed every chunk of every clip. Returns (features [N_chunks, D] float32, track index [N_chunks],
    failures [(path, reason)]), in clip order. Clips are decoded block by block in parallel workers and
    embedded as they are read (memory stays bounded whatever a file's duration); chunks are batched
    across clips. A clip that fails midway (damaged, truncated) contributes no chunk.


    precision: ``"32"`` (float32) or ``"bf16"`` (bfloat16 autocast for the convolutions/GEMMs; the
    mel front end stays float32). bf16 is ~1.5-2x faster on CPUs with AVX512-BF16/AMX; features
    differ from float32 by ~0.5% of their scale."""
    if precision not in ("32", "bf16"):
        raise ValueError(f"precision must be '32' or 'bf16', got {precision!r}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model = model.to(device).eval()
    chunk_len = model.config.chunk_samples
    loader = DataLoader(
        _StreamedChunks(paths, chunk_len, model.config.sample_rate),
        batch_size=None,
        num_workers=min(num_workers, len(paths)),
        collate_fn=_collate,
        worker_init_fn=worker_exits_on_sigterm,
    )
    per_clip: dict[int, list[np.ndarray]] = {}
    failed: dict[int, str] = {}
    pending: list[tuple[int, np.ndarray]] = []

    def flush():
        if pending:
            out = embed_chunk_batch(model, [c for _, c in pending], device, precision)
            start = 0
            for i, c in pending:
                per_clip.setdefault(i, []).append(out[start : start + len(c)])
                start += len(c)
            pending.clear()

    bar = tqdm(total=len(paths), desc=desc, unit="clip", disable=not progress)
    n_pending = 0
    for i, chunks, error, last in loader:
        if error is not None:
            failed[i] = error
        elif chunks is not None:
            pending.append((i, chunks))
            n_pending += len(chunks)
            if n_pending >= batch_chunks:
                flush()
                n_pending = 0
        if last:
            bar.update(1)
    flush()
    bar.close()
    done = [i for i in sorted(per_clip) if i not in failed]
    features = np.concatenate([np.concatenate(per_clip[i]) for i in done]) if done else np.zeros((0, model.out_dim), np.float32)
    track_index = (
        np.concatenate([np.full(sum(len(f) for f in per_clip[i]), i, dtype=np.int64) for i in done])
        if done
        else np.zeros(0, np.int64)
    )
    failures = [(str(paths[i]), failed[i]) for i in sorted(failed)]
    return features, track_index, failures


class DeviceError(ValueError, RuntimeError):
    """The config asks for a device this machine lacks: a RuntimeError (as it was), and a ValueError, so that the
    CLI says it in one line."""


def extraction_settings(cfg) -> tuple[torch.device, str]:
    """Where and in what precision to extract embeddings, from the run config: `training.device`
    (auto = CUDA when present; gpu; cpu) and `training.precision` (bf16-mixed -> bf16 autocast,
    anything else float32)."""
    want = str(cfg.training.device)
    if want not in ("auto", "cpu", "gpu", "cuda"):
        raise ValueError(f"training.device must be auto, cpu or gpu for embedding extraction, got {want!r}")
    if want in ("gpu", "cuda") and not torch.cuda.is_available():
        raise DeviceError(f"training.device={want} but torch sees no CUDA device (use training.device=auto or cpu)")
    cuda = want in ("gpu", "cuda") or (want == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if cuda else "cpu"), "bf16" if str(cfg.training.precision).startswith("bf16") else "32"
