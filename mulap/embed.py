"""Backbone embeddings: which backbone, extracting every 3 s chunk of many clips, and the on-disk cache.

The frozen-probe protocol computes each chunk's embedding once: the cache key is made
of the backbone's weights (a hash of its state), the dataset's manifest and the audio
settings, so every probe on the same backbone and dataset shares one extraction, and a
changed checkpoint or manifest can never be served stale features. An entry is verified on
every read (sizes, shapes and CRC-32s kept in its meta.json); a damaged one is moved aside
and computed again, never served.
"""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import secrets
import shutil
import time
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm.auto import tqdm

from mulap.audio.chunks import cut_chunks
from mulap.audio.io import AudioError, iter_blocks
from mulap.audio.scan import AUDIO_SUFFIXES, audio_suffixes, list_audio  # noqa: F401 (the folder scan: mulap.audio.scan)
from mulap.files import fsync_dir, remove_dead_temps, unlink_quietly, write_error, writer_temp
from mulap.interrupts import worker_exits_on_sigterm
from mulap.models.backbone import SUPERVISED, build_backbone, load_backbone
from mulap.models.musicnn import Musicnn

log = logging.getLogger(__name__)
OUTPUT_SUFFIXES = (".npz", ".parquet")


# -- which backbone ------------------------------------------------------------------------
def experiment_backbone_file(save_dir: str | Path, pretrain_id: str) -> Path:
    return Path(save_dir) / "experiments" / pretrain_id / "backbone.safetensors"


def resolve_backbone(ref: str, save_dir: str | Path, seed: int = 0, like: Musicnn | None = None) -> tuple[Musicnn, str]:
    """A backbone from a reference; returns (model in eval mode, a short description).

    ref: a pre-training id (its best backbone), `random` (seeded; the architecture of
    `like` when given, so a random baseline matches a pre-trained one), `supervised_mtt`,
    `supervised_msd`, or a path to a backbone .safetensors file.
    """
    if ref == "random":
        torch.manual_seed(seed)
        model = Musicnn(like.config) if like is not None else build_backbone("random")
        desc = f"random(seed={seed})"
    elif ref in SUPERVISED:
        model, desc = build_backbone(ref), ref
    elif Path(ref).suffix == ".safetensors":
        model, desc = load_backbone(ref), str(ref)
    else:
        path = experiment_backbone_file(save_dir, ref)
        if not path.is_file():
            raise FileNotFoundError(f"no pre-trained backbone for {ref!r}: {path} does not exist "
                                    "(run `mulap pretrain` first, or use random / supervised_mtt / supervised_msd)")
        model, desc = load_backbone(path), f"mulap:{ref}"
    return model.eval(), desc


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


def extraction_processes(cfg) -> dict:
    """training.devices / num_nodes / strategy for extraction: several processes (Lightning's predict loop)
    when devices is a number > 1 or num_nodes > 1; `auto` keeps the single-process path."""
    devices = cfg.training.devices
    devices = int(devices) if isinstance(devices, int) or str(devices).isdigit() else 1
    return {"devices": devices, "num_nodes": int(cfg.training.num_nodes), "strategy": str(cfg.training.strategy)}


@torch.inference_mode()
def extract(model: Musicnn, paths: list[Path], batch_chunks: int = 64, num_workers: int = 2, desc: str = "embedding",
            progress: bool = True, device: str | torch.device | None = None,
            precision: str = "32", processes: dict | None = None, parts_dir: str | Path | None = None
            ) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]] | None:
    """Embed every chunk of every clip. Returns (features [N_chunks, D] float32, track index [N_chunks],
    failures [(path, reason)]), in clip order. Clips are decoded block by block in parallel workers and
    embedded as they are read (memory stays bounded whatever a file's duration); chunks are batched
    across clips. A clip that fails midway (damaged, truncated) contributes no chunk.

    processes: `extraction_processes(cfg)`; with more than one, the files are split over the ranks
    of Lightning's predict loop (mulap.training.distributed), each rank writes its part under
    `parts_dir` and rank 0 returns them merged in input order (other ranks return None).

    precision: ``"32"`` (float32) or ``"bf16"`` (bfloat16 autocast for the convolutions/GEMMs; the
    mel front end stays float32). bf16 is ~1.5-2x faster on CPUs with AVX512-BF16/AMX; features
    differ from float32 by ~0.5% of their scale."""
    if precision not in ("32", "bf16"):
        raise ValueError(f"precision must be '32' or 'bf16', got {precision!r}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if processes and processes["devices"] * processes["num_nodes"] > 1:
        from mulap.training.distributed import extract_distributed

        return extract_distributed(model, paths, batch_chunks, num_workers, device, precision, processes, parts_dir, progress)
    model = model.to(device).eval()
    chunk_len = model.config.chunk_samples
    loader = DataLoader(_StreamedChunks(paths, chunk_len, model.config.sample_rate), batch_size=None,
                        num_workers=min(num_workers, len(paths)), collate_fn=_collate, worker_init_fn=worker_exits_on_sigterm)
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
    track_index = (np.concatenate([np.full(sum(len(f) for f in per_clip[i]), i, dtype=np.int64) for i in done])
                   if done else np.zeros(0, np.int64))
    failures = [(str(paths[i]), failed[i]) for i in sorted(failed)]
    return features, track_index, failures


# -- the cache -----------------------------------------------------------------------------
@dataclass
class ChunkEmbeddings:
    """Chunk features of a dataset: features [N, D], track [N] (index into `ids`), ids (track ids)."""

    features: np.ndarray
    track: np.ndarray
    ids: list[str]
    key: str
    computed: bool  # False when read from the cache


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


def cache_key(backbone_hash: str, manifest: Path, chunk_samples: int, sample_rate: int, precision: str = "32") -> str:
    h = hashlib.sha1()
    h.update(backbone_hash.encode())
    h.update(manifest.read_bytes())
    h.update(f"{chunk_samples}/{sample_rate}".encode())
    if precision != "32":  # float32 keys stay what they were before precision was an option
        h.update(f"precision={precision}".encode())
    return h.hexdigest()[:20]


def embedding_cache_root(save_dir: str | Path) -> Path:
    """Where frozen-probe embeddings are cached: ``<save_dir>/cache/embeddings/<key>/``."""
    return Path(save_dir) / "cache" / "embeddings"


# -- reading an entry, verified ---------------------------------------------------------------------
ENTRY_ARRAYS = ("features.npy", "track.npy")


class _Damaged(Exception):
    """What is wrong with a cache entry (the message names the file)."""


def _crc32(fh, start: int = 0) -> int:
    crc, block = start, fh.read(1 << 22)
    while block:
        crc = zlib.crc32(block, crc)
        block = fh.read(1 << 22)
    return crc


def _npy_header(fh) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran order, dtype) from a .npy file's header; the file is left at the first data byte."""
    version = np.lib.format.read_magic(fh)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return read(fh)


def array_record(path: Path) -> dict:
    """What meta.json keeps of an entry's array file to verify it on reading: size in bytes, shape, dtype, CRC-32."""
    with open(path, "rb") as fh:
        shape, _, dtype = _npy_header(fh)
        fh.seek(0)
        return {"bytes": os.fstat(fh.fileno()).st_size, "shape": list(shape), "dtype": dtype.str, "crc32": _crc32(fh)}


def _load_array(folder_fd: int, name: str, record: dict | None) -> np.ndarray:
    """One array file of an entry, read once: its size against its .npy header and `record` (meta.json's), its
    CRC-32 against the record's; entries from before the records existed have the header's size checked."""
    try:
        fh = os.fdopen(os.open(name, os.O_RDONLY, dir_fd=folder_fd), "rb")
    except FileNotFoundError:
        raise _Damaged(f"{name} is missing") from None
    with fh:
        size = os.fstat(fh.fileno()).st_size
        try:
            shape, fortran, dtype = _npy_header(fh)
        except (ValueError, EOFError, SyntaxError, TypeError) as exc:
            raise _Damaged(f"{name} is not a readable .npy file ({exc})") from None
        if dtype.hasobject:  # would need pickle: never from a cache
            raise _Damaged(f"{name} holds Python objects, not numbers")
        offset, count = fh.tell(), int(np.prod(shape, dtype=np.int64))
        if size != offset + count * dtype.itemsize:
            raise _Damaged(f"{name} has {size} bytes, its header says {offset + count * dtype.itemsize} (truncated?)")
        if record is not None:
            if size != record.get("bytes") or list(shape) != record.get("shape") or dtype.str != record.get("dtype"):
                raise _Damaged(f"{name} ({size} bytes, shape {list(shape)}, {dtype.str}) is not the file meta.json "
                               f"records ({record.get('bytes')} bytes, shape {record.get('shape')}, {record.get('dtype')})")
        fh.seek(0)
        header = fh.read(offset)
        array = np.fromfile(fh, dtype=dtype, count=count)
        if len(array) != count:
            raise _Damaged(f"{name} ended early ({len(array)} of {count} values)")
        if record is not None and "crc32" in record:
            crc = zlib.crc32(memoryview(array).cast("B"), zlib.crc32(header))
            if crc != record["crc32"]:
                raise _Damaged(f"{name}: CRC-32 mismatch (the file changed after it was written)")
        return array.reshape(shape, order="F" if fortran else "C")


def _load_entry(folder_fd: int, key: str) -> ChunkEmbeddings:
    try:
        with os.fdopen(os.open("meta.json", os.O_RDONLY, dir_fd=folder_fd), "rb") as fh:
            meta = json.loads(fh.read().decode("utf-8"))
    except FileNotFoundError:
        raise _Damaged("meta.json is missing") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Damaged(f"meta.json is not readable JSON ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("ids"), list) or not all(isinstance(i, str) for i in meta["ids"]):
        raise _Damaged("meta.json has no list of track ids")
    records = meta.get("files") if isinstance(meta.get("files"), dict) else {}  # absent in entries before records
    features, track = (_load_array(folder_fd, name, records.get(name)) for name in ENTRY_ARRAYS)
    if features.ndim != 2 or track.ndim != 1 or len(features) != len(track):
        raise _Damaged(f"features.npy {list(features.shape)} and track.npy {list(track.shape)} do not match (one row per chunk)")
    if not np.issubdtype(track.dtype, np.integer) or (len(track) and not 0 <= track.min() <= track.max() < len(meta["ids"])):
        raise _Damaged(f"track.npy does not index the {len(meta['ids'])} tracks of meta.json")
    if "dim" in meta and features.shape[1] != meta["dim"]:
        raise _Damaged(f"features.npy has {features.shape[1]} dimensions, meta.json says {meta['dim']}")
    return ChunkEmbeddings(features, track, list(meta["ids"]), key, False)


def read_cached(cache_root: str | Path, key: str) -> ChunkEmbeddings | None:
    """The cache entry `key` as written by `cached_embeddings`, or None when there is none.

    Every read is verified (sizes, shapes, CRC-32s recorded in meta.json; entries written before those records
    have their sizes checked). A damaged entry (truncated or changed file, wrong row count, unreadable meta.json)
    is never served: it is named in a warning, moved aside as ``<key>.corrupt-<time>`` and None is returned, so it
    is computed again. The entry is read through one handle on its folder: a concurrent writer replacing the entry
    (a rename) cannot mix two entries' files, and an entry that vanished meanwhile reads as none, not as damaged."""
    folder = Path(cache_root) / key
    try:
        folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        return _load_entry(folder_fd, key)
    except _Damaged as exc:
        if not _same_folder(folder, folder_fd):  # moved away (and its files deleted) by another writer meanwhile
            return None
        _move_damaged(folder, str(exc))
        return None
    finally:
        os.close(folder_fd)


def _same_folder(path: Path, fd: int) -> bool:
    try:
        st, mine = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _move_damaged(folder: Path, problem: str) -> None:
    aside = folder.with_name(f"{folder.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    if aside.exists():
        aside = aside.with_name(f"{aside.name}-{os.getpid()}-{secrets.token_hex(2)}")
    try:
        os.rename(folder, aside)
    except FileNotFoundError:  # another process moved it first
        return
    except OSError as exc:
        log.warning("cache entry %s is damaged (%s) and could not be moved aside (%s); it is not used", folder, problem,
                    exc.strerror or exc)
        return
    log.warning("cache entry %s is damaged (%s); moved to %s, it is computed again", folder, problem, aside.name)


def cached_embeddings(model: Musicnn, ids: list[str], paths: list[Path], manifest: Path, cache_root: str | Path,
                      num_workers: int = 2, progress: bool = True, desc: str = "embedding",
                      device: torch.device | str | None = None, precision: str = "32",
                      processes: dict | None = None) -> ChunkEmbeddings | None:
    """Embeddings of `paths` (tracks `ids`), from `<cache_root>/<key>/` or computed once and stored there.
    The key covers the backbone weights, the dataset manifest, chunking and the precision.
    processes: see `extract` (the entry is the same whatever the number of processes)."""
    key = cache_key(fingerprint(model), manifest, model.config.chunk_samples, model.config.sample_rate, precision)
    folder = Path(cache_root) / key
    found = read_cached(cache_root, key)
    if found is not None:
        if found.ids == list(ids):
            return found
        log.warning("cache %s does not match the requested tracks; recomputing", folder)
    result = extract(model, paths, num_workers=num_workers, progress=progress, desc=desc, device=device,
                     precision=precision, processes=processes, parts_dir=Path(cache_root) / f".{key}.parts")
    if result is None:  # a rank other than 0 of an externally launched job: rank 0 writes the entry
        return None
    features, track, failures = result
    if failures:
        raise AudioError(failures[0][0], f"{failures[0][1]} ({len(failures)} clip(s) could not be embedded; re-run `mulap prepare`)")
    meta = {"ids": list(ids), "manifest": str(manifest), "dim": int(features.shape[1]), "precision": precision,
            "backbone_config": model.config.to_dict()}
    return _publish(folder, ChunkEmbeddings(features, track, list(ids), key, True), meta)


def _publish(folder: Path, mine: ChunkEmbeddings, meta: dict) -> ChunkEmbeddings:
    """Store `mine` as the cache entry `folder`, safe with other processes writing the same entry.

    Written into a temporary folder of this writer only (mulap.files.writer_temp), then renamed into place:
    a rename onto an existing entry is refused, so when another writer finished first, its complete
    entry is used and ours discarded; an entry for other tracks is moved aside and replaced.
    A full disk (or a read-only / forbidden folder) is a one-line WriteError naming the path.
    """
    remove_dead_temps(folder.parent)  # what killed writers left in the cache
    tmp = writer_temp(folder)
    need = mine.features.nbytes + mine.track.nbytes
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        np.save(tmp / "features.npy", mine.features)
        np.save(tmp / "track.npy", mine.track)
        meta = {**meta, "files": {name: array_record(tmp / name) for name in ENTRY_ARRAYS}}  # verified on reading
        (tmp / "meta.json").write_text(json.dumps(meta))
        for _ in range(10):
            try:
                os.rename(tmp, folder)  # atomic: a reader sees the whole entry or none
                return mine
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            theirs = read_cached(folder.parent, folder.name)
            if theirs is not None and theirs.ids == mine.ids:
                log.info("cache entry %s was completed by another process meanwhile; using it", folder)
                return replace(theirs, computed=True)
            aside = writer_temp(folder, "old")
            try:
                os.rename(folder, aside)  # an entry for other tracks: out of the way, then retry
            except FileNotFoundError:
                continue
            shutil.rmtree(aside, ignore_errors=True)
        raise RuntimeError(f"{folder}: could not store the cache entry: other processes keep replacing it")
    except OSError as exc:
        raise write_error(exc, folder, need) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already when it was renamed into place


# -- the `mulap embed` command -------------------------------------------------------------
def check_output_path(out: str | Path, suffixes: tuple[str, ...] = OUTPUT_SUFFIXES) -> Path:
    """Refuse an output name with another suffix before any work is done."""
    out = Path(out)
    if out.suffix.lower() not in suffixes:
        raise ValueError(f"output {out}: use a {' or '.join(suffixes)} file name")
    if out.is_dir():
        raise ValueError(f"output {out} is a folder; give a file name ({' or '.join(suffixes)})")
    return out


def embed_files(model_ref: str, inputs: list[str], out: str | Path, cfg, batch_size: int = 64) -> Path:
    """Chunk- and track-level (mean over chunks) embeddings of audio files -> .npz or .parquet (float32).
    The model comes from `mulap.load`, as in the Python API. The output name and the inputs are checked
    before the model is loaded."""
    from mulap.api import load

    out = check_output_path(out)
    files = list_audio(inputs)
    device, precision = extraction_settings(cfg)
    loaded = load(model_ref, save_dir=cfg.env.save_dir, device=device, seed=int(cfg.env.seed))
    model, desc = loaded.backbone, loaded.name
    result = extract(model, files, batch_chunks=batch_size, num_workers=int(cfg.training.num_workers), desc="embed",
                     device=device, precision=precision, processes=extraction_processes(cfg),
                     parts_dir=out.with_name(f".{out.name}.parts"))
    if result is None:  # not rank 0: rank 0 writes the output
        return out
    features, track, failures = result
    for path, reason in failures:
        log.error("skipped %s: %s", path, reason)
    ok = sorted(set(track.tolist()))
    if not ok:  # an empty output would look like a result
        first = f"{failures[0][0]}: {failures[0][1]}; " if failures else ""
        raise ValueError(f"{first}none of the {len(files)} file(s) could be embedded; nothing written to {out}")
    track_feats = np.stack([features[track == i].mean(0) for i in ok]) if ok else np.zeros((0, model.out_dim), np.float32)
    write_embeddings(out, [str(files[i]) for i in ok], ok, features, track, track_feats, desc)
    print(f"{len(ok)} file(s), {len(features)} chunk(s) embedded with {desc}; {len(failures)} failed")
    return out


def write_embeddings(out: Path, names: list[str], ok: list[int], features: np.ndarray, track: np.ndarray,
                     track_feats: np.ndarray, desc: str) -> None:
    """The `mulap embed` output, atomically: a temp file next to `out`, renamed over it once complete. A failed
    write (full disk, read-only, forbidden) is a one-line WriteError naming `out` (with the space free and about the
    space needed) and leaves no temp file; so does an interrupt."""
    tmp = out.with_name(f".{out.name}.tmp{out.suffix}")  # np.savez keeps a name ending in .npz as it is
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".npz":
            chunk_in_track = np.concatenate([np.arange((track == i).sum()) for i in ok]) if ok else np.zeros(0, np.int64)
            np.savez(tmp, files=np.array(names), track_embeddings=track_feats, chunk_embeddings=features,
                     chunk_track=np.searchsorted(np.array(ok), track), chunk_index=chunk_in_track, backbone=np.array(desc))
        else:  # .parquet: one row per track and per chunk, embedding a fixed-size list of float32
            _write_parquet(tmp, names, ok, features, track, track_feats, desc)
        with open(tmp, "rb") as fh:  # on disk before the rename makes it the output
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException as exc:
        unlink_quietly(tmp)
        if isinstance(exc, OSError):
            raise write_error(exc, out, features.nbytes + track_feats.nbytes) from None
        raise
    fsync_dir(out.parent)


def _write_parquet(path: Path, names: list[str], ok: list[int], features: np.ndarray, track: np.ndarray,
                   track_feats: np.ndarray, desc: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    files_col, level, chunk, vectors = [], [], [], []
    for j, i in enumerate(ok):
        rows = features[track == i]
        files_col += [names[j]] * (1 + len(rows))
        level += ["track"] + ["chunk"] * len(rows)
        chunk += [-1, *range(len(rows))]
        vectors += [track_feats[j][None], rows]
    flat = np.concatenate(vectors).astype(np.float32) if vectors else np.zeros((0, features.shape[1]), np.float32)
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1), pa.float32()), flat.shape[1])
    table = pa.table({"file": pa.array(files_col, pa.string()), "level": pa.array(level, pa.string()),
                      "chunk": pa.array(chunk, pa.int32()), "embedding": embedding})
    pq.write_table(table.replace_schema_metadata({"backbone": desc, "chunk_seconds": "3.0"}), path)
