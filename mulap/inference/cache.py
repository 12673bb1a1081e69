"""The embedding cache: chunk features of a dataset, computed once per backbone and dataset.

The frozen-probe protocol computes each chunk's embedding once: the cache key is made
of the backbone's weights (a hash of its state), the dataset's manifest and the audio
settings, so every probe on the same backbone and dataset shares one extraction, and a
changed checkpoint or manifest can never be served stale features. The manifest holds each clip's
CRC-32 (mulap.data.prepare), so the key changes with the audio too. An entry is verified on
every read (sizes, shapes and CRC-32s kept in its meta.json); a damaged one is moved aside
and computed again, never served.
"""

import errno
import hashlib
import json
import logging
import os
import secrets
import shutil
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from mulap.audio.io import AudioError
from mulap.data.prepare import MANIFEST
from mulap.inference.extract import extract, extraction_settings, fingerprint
from mulap.infra.files import remove_dead_temps, write_error, writer_temp
from mulap.models.musicnn import Musicnn

log = logging.getLogger(__name__)

# extract's signature plus `parts_dir` (a folder every process sees, for extractors that use several)
Extractor = Callable[..., "tuple[np.ndarray, np.ndarray, list[tuple[str, str]]] | None"]


def single_process(model: Musicnn, paths: list[Path], parts_dir: Path | None = None, **kw):
    """The default extractor: `extract` in this process (`parts_dir` is for extractors that use several)."""
    return extract(model, paths, **kw)


# -- the cache -----------------------------------------------------------------------------
@dataclass
class ChunkEmbeddings:
    """Chunk features of a dataset: features [N, D], track [N] (index into `ids`), ids (track ids)."""

    features: np.ndarray
    track: np.ndarray
    ids: list[str]
    key: str
    computed: bool  # False when read from the cache


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
                raise _Damaged(
                    f"{name} ({size} bytes, shape {list(shape)}, {dtype.str}) is not the file meta.json "
                    f"records ({record.get('bytes')} bytes, shape {record.get('shape')}, {record.get('dtype')})"
                )
        fh.seek(0)
        header = fh.read(offset)
        array = np.fromfile(fh, dtype=dtype, count=count)
        if len(array) != count:
            raise _Damaged(f"{name} ended early ({len(array)} of {count} values)")
        if record is not None and "crc32" in record:
            # numpy's stubs give ndarray its buffer protocol (__buffer__) on Python >= 3.12 only
            crc = zlib.crc32(memoryview(array).cast("B"), zlib.crc32(header))  # type: ignore[arg-type]
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
    files = meta.get("files")
    records = files if isinstance(files, dict) else {}  # absent in entries before records
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
        log.warning(
            "cache entry %s is damaged (%s) and could not be moved aside (%s); it is not used",
            folder,
            problem,
            exc.strerror or exc,
        )
        return
    log.warning("cache entry %s is damaged (%s); moved to %s, it is computed again", folder, problem, aside.name)


def cached_embeddings(
    model: Musicnn,
    ids: list[str],
    paths: list[Path],
    manifest: Path,
    cache_root: str | Path,
    num_workers: int = 2,
    progress: bool = True,
    desc: str = "embedding",
    device: torch.device | str | None = None,
    precision: str = "32",
    extractor: Extractor | None = None,
) -> ChunkEmbeddings | None:
    """Embeddings of `paths` (tracks `ids`), from `<cache_root>/<key>/` or computed once and stored there.
    The key covers the backbone weights, the dataset manifest, chunking and the precision.
    extractor: how to compute a missing entry: `extract` in this process (the default), or the caller's
    choice of several (`mulap.training.extract_ddp.extractor(cfg)`); it returns None on ranks other than 0,
    where rank 0 writes the entry. The entry is the same whatever the number of processes."""
    key = cache_key(fingerprint(model), manifest, model.config.chunk_samples, model.config.sample_rate, precision)
    folder = Path(cache_root) / key
    found = read_cached(cache_root, key)
    if found is not None:
        if found.ids == list(ids):
            return found
        log.warning("cache %s does not match the requested tracks; recomputing", folder)
    result = (extractor or single_process)(
        model,
        paths,
        num_workers=num_workers,
        progress=progress,
        desc=desc,
        device=device,
        precision=precision,
        parts_dir=Path(cache_root) / f".{key}.parts",
    )
    if result is None:  # a rank other than 0 of an externally launched job: rank 0 writes the entry
        return None
    features, track, failures = result
    if failures:
        raise AudioError(
            failures[0][0], f"{failures[0][1]} ({len(failures)} clip(s) could not be embedded; re-run `mulap prepare`)"
        )
    meta = {
        "ids": list(ids),
        "manifest": str(manifest),
        "dim": int(features.shape[1]),
        "precision": precision,
        "backbone_config": model.config.to_dict(),
    }
    return _publish(folder, ChunkEmbeddings(features, track, list(ids), key, True), meta)


def _publish(folder: Path, mine: ChunkEmbeddings, meta: dict) -> ChunkEmbeddings:
    """Store `mine` as the cache entry `folder`, safe with other processes writing the same entry.

    Written into a temporary folder of this writer only (mulap.infra.files.writer_temp), then renamed into place:
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


def dataset_embeddings(
    model: Musicnn, ds, cfg, progress: bool = True, extractor: Extractor | None = None
) -> ChunkEmbeddings | None:
    """The chunk embeddings of a prepared dataset's tracks (`mulap.data.prepare.PreparedDataset`), from the cache under
    `env.save_dir`, on the device and in the precision the run config asks for (`extraction_settings`)."""
    device, precision = extraction_settings(cfg)
    return cached_embeddings(
        model,
        [it.id for it in ds.items],
        [it.audio_path for it in ds.items],
        ds.root / MANIFEST,
        embedding_cache_root(cfg.env.save_dir),
        int(cfg.training.num_workers),
        progress,
        desc=f"embedding {ds.task}",
        device=device,
        precision=precision,
        extractor=extractor,
    )
