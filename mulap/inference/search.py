"""Search a music folder by text or by example: an incremental index of track and chunk embeddings.

    <folder>/.mulap-index/            (or any folder given as `index`)
        index.json                    model identity, space, and one entry per file: path (relative), size,
                                      mtime_ns, chunk count and offset, plus the files that could not be read
        tracks.npy    [N, D] float32  L2-normalised track embeddings (the pooled projection in the joint space)
        chunks.npy    [M, D] float16  L2-normalised chunk embeddings, each file's rows contiguous

For a model with a joint audio-text space the index holds joint-space vectors (text queries, `--like`);
for an audio-only backbone it holds backbone features (`--like` only). Updating re-embeds only the
files that are new or changed (path + size + mtime) and drops the removed ones. While a folder is
indexed the index is saved every SAVE_SECONDS or so (at the end of a block of files), so an
interrupted first indexing resumes where it was saved. Each save is written whole into a temporary
folder and swapped in, so a crash never leaves half an index; the temporary folders of a writer that
was killed are removed by the next search.

The music folder an index belongs to is the folder asked for (or, given an index folder, the folder
that holds it): the `root` recorded in index.json never decides what is scanned. Everything read
from an index is checked (structure, types, shapes, dtypes), so a damaged or tampered one is one
SearchError naming the file.

Ranking is exact (a matrix-vector product over all tracks, then a partial sort); a file's best
moment is its highest-scoring 3 s chunk. Beyond a few million tracks use an approximate index
(FAISS / hnswlib) on tracks.npy.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mulap.infra.files import dead_writer_temps, fsync_dir, write_error, writer_temp
from mulap.infra.interrupts import Interrupted, signal_of, signals_deferred

log = logging.getLogger(__name__)
INDEX_DIR = ".mulap-index"
FORMAT = "mulap-index-1"
BLOCK_FILES = 64  # files embedded per extraction call: bounds memory on big folders, and an interrupt loses at most one block
SAVE_SECONDS = 30.0  # while indexing, the index is saved at most this often (at the end of a block) ...
SAVE_COST = 20.0  # ... and no sooner than this many times the last save's duration: saves cost at most ~5 %


class SearchError(ValueError):
    """A search that cannot run as asked; the message says what to do."""


@dataclass
class Index:
    root: Path  # the music folder (paths in `files` are relative to it)
    folder: Path  # where the index lives
    model_id: str
    space: str  # "joint" | "backbone"
    files: list[dict]  # {path, size, mtime_ns, n_chunks, offset}
    failed: list[dict]  # {path, size, mtime_ns, reason}
    tracks: np.ndarray  # [N, D] float32
    chunks: np.ndarray  # [M, D] float16
    chunk_seconds: float = 3.0

    @property
    def paths(self) -> list[Path]:
        return [self.root / f["path"] for f in self.files]


@dataclass
class Hit:
    rank: int
    score: float
    file: str
    start: float
    end: float
    contrastive: float | None = None  # the shortlist score, when re-ranked

    def to_dict(self) -> dict:
        out = {"file": self.file, "score": round(self.score, 6), "start": self.start, "end": self.end}
        if self.contrastive is not None:
            out["contrastive_score"] = round(self.contrastive, 6)
        return out


# -- identity ----------------------------------------------------------------------------------------------
def space_of(model) -> str:
    """The space an index of `model` holds: "joint" (text queries and --like) or "backbone" (--like only)."""
    return "joint" if model.has_joint_space else "backbone"


def model_identity(model) -> tuple[str, str]:
    """(a hash of the weights that make the index's vectors, the space they live in)."""
    from mulap.inference.extract import fingerprint

    if model.has_joint_space:
        parts = torch.nn.ModuleDict({"backbone": model.backbone, "proj": model.mulap.audio_proj})
        return f"{model.name}#{fingerprint(parts)}", "joint"
    return f"{model.name}#{fingerprint(model.backbone)}", "backbone"


def _dim(model, space: str) -> int:
    return int(model.joint_dim if space == "joint" else model.embedding_dim)


# -- which folders -----------------------------------------------------------------------------------------
def default_index_folder(root: Path) -> Path:
    return root / INDEX_DIR


def resolve_folder(folder: str | Path, index: str | Path | None = None) -> tuple[Path, Path | None]:
    """(the music folder, the index folder or None for the default) of `mulap search MODEL FOLDER [--index I]`.

    FOLDER may be an index folder: its music folder is the folder holding it (the default layout,
    `<music>/.mulap-index`, or an index put inside the music folder under another name). An index
    kept elsewhere is searched as `mulap search MODEL <music folder> --index <index>`: the root its
    index.json records is never taken on trust (a tampered one would make mulap scan other files)."""
    from mulap.audio.scan import mulap_folder

    folder = Path(folder)
    if index is not None or not (folder / "index.json").is_file():
        return folder, Path(index) if index is not None else None
    if mulap_folder(folder, {p.name for p in folder.iterdir()}) != "a search index":  # someone else's index.json
        return folder, None
    idx = folder.resolve()
    if idx.name != INDEX_DIR:
        claimed = _read_meta(idx / "index.json").get("root")
        if not isinstance(claimed, str) or Path(claimed).resolve() != idx.parent:
            raise SearchError(
                f"{folder} is an index kept outside the music folder it was built for ({claimed!r} by its "
                f"index.json): search it as `mulap search MODEL <music folder> --index {folder}`"
            )
    return idx.parent, idx


def _check_index_folder(folder: Path, root: Path) -> None:
    """Refuse an index location whose swap-in would replace something that is not an index."""
    from mulap.audio.scan import mulap_folder

    if folder == root or root.is_relative_to(folder):
        raise SearchError(
            f"--index {folder}: the index cannot be the music folder or hold it; give a folder of its own "
            f"(e.g. {default_index_folder(root)})"
        )
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise SearchError(f"--index {folder}: exists and is not a folder; give a new folder (or an index folder)")
    if folder.is_dir():
        names = {p.name for p in folder.iterdir()}
        if names and mulap_folder(folder, names) != "a search index":
            raise SearchError(
                f"--index {folder}: the folder holds files and no mulap index; the index is swapped in "
                "whole and would replace them, so give a new or empty folder"
            )


def _clean_leftovers(folder: Path) -> None:
    """Remove what killed writes of `folder` left next to it (mulap.infra.files.writer_temp folders of dead writers);
    an index that was set aside and never replaced is put back. Folders of a live writer, or of an unknown
    one (named by mulap before writers were named: `..mulap-index.tmp-<hex>`), are left: the folder scan
    never reads them (they are hidden)."""
    for p, kind in dead_writer_temps(folder.parent, folder.name):
        if kind == "old" and not folder.exists() and (p / "index.json").is_file():
            try:
                os.rename(p, folder)  # killed between its two renames: the previous index comes back
                log.warning("restored the index %s from %s (its writer was killed while replacing it)", folder, p.name)
                continue
            except OSError:
                pass
        shutil.rmtree(p, ignore_errors=True)
        log.info("removed %s, left by an index write that was killed", p)
    before = re.compile(re.escape(f".{folder.name}") + r"\.(tmp|old)-[0-9a-f]{8}")  # an older mulap's names
    try:
        unknown = sorted(p.name for p in folder.parent.iterdir() if before.fullmatch(p.name))
    except OSError:
        unknown = []
    if unknown:
        log.info(
            "%d folder(s) left by an interrupted index write next to %s (%s); mulap does not read them, "
            "delete them to free the space",
            len(unknown),
            folder,
            ", ".join(unknown[:3]),
        )


# -- reading (everything checked) --------------------------------------------------------------------------
def _bad(path: Path, what: str) -> SearchError:
    return SearchError(f"{path}: {what}; delete the index folder or pass --rebuild")


def _json_type(v) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(type(v), "number")


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _bad(path, f"not a readable mulap index ({exc})") from None
    if not isinstance(meta, dict):
        raise _bad(path, f"expected a JSON object, found a {_json_type(meta)}")
    return meta


def _check_entries(path: Path, meta: dict) -> int:
    """Check index.json's structure fully; returns the number of chunk rows its files declare."""
    if meta.get("format") != FORMAT:
        raise _bad(path, f"format {meta.get('format')!r} is not {FORMAT!r}")
    for key, kind in (("model", str), ("space", str), ("files", list)):
        if key not in meta:
            raise _bad(path, f"missing key {key!r}")
        if not isinstance(meta[key], kind):
            raise _bad(path, f"{key!r} is a {_json_type(meta[key])}, expected a {_json_type(kind())}")
    if meta["space"] not in ("joint", "backbone"):
        raise _bad(path, f"space {meta['space']!r} is not 'joint' or 'backbone'")
    cs = meta.get("chunk_seconds", 3.0)
    if isinstance(cs, bool) or not isinstance(cs, (int, float)) or not math.isfinite(cs) or cs <= 0:
        raise _bad(path, f"chunk_seconds {cs!r} is not a positive number")
    if not isinstance(meta.get("failed", []), list):
        raise _bad(path, f"'failed' is a {_json_type(meta['failed'])}, expected a list")
    offset, seen = 0, set()
    for key, fields in (
        ("files", ("path", "size", "mtime_ns", "n_chunks", "offset")),
        ("failed", ("path", "size", "mtime_ns", "reason")),
    ):
        for i, e in enumerate(meta.get(key, [])):
            at = f"{key}[{i}]"
            if not isinstance(e, dict):
                raise _bad(path, f"{at} is a {_json_type(e)}, expected an object")
            for name in fields:
                if name not in e:
                    raise _bad(path, f"{at} has no {name!r}")
                v = e[name]
                if name in ("path", "reason"):
                    if not isinstance(v, str) or (name == "path" and not v):
                        raise _bad(path, f"{at}.{name} is {v!r}, expected a non-empty string")
                elif not _whole(v) or (v < 0 and name != "mtime_ns"):
                    raise _bad(path, f"{at}.{name} is {v!r}, expected a whole number >= 0")
            if key == "files":
                if e["path"] in seen:
                    raise _bad(path, f"{at}: {e['path']!r} is listed twice")
                seen.add(e["path"])
                if e["offset"] != offset:
                    raise _bad(
                        path,
                        f"{at}.offset is {e['offset']}, expected {offset} (each file's chunk rows follow the previous file's)",
                    )
                offset += e["n_chunks"]
    return offset


def _load_rows(path: Path, dtype, rows: int, dim: int | None = None) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise _bad(path, f"not a readable .npy array ({exc})") from None
    if not isinstance(arr, np.ndarray) or arr.ndim != 2:
        raise _bad(path, f"expected a 2-D array [rows, dimensions], found shape {getattr(arr, 'shape', '?')}")
    if arr.dtype != np.dtype(dtype):
        raise _bad(path, f"dtype {arr.dtype}, expected {np.dtype(dtype)}")
    if arr.shape[0] != rows or (dim is not None and arr.shape[1] != dim) or arr.shape[1] < 1:
        want = f"[{rows}, {dim if dim is not None else 'D >= 1'}]"
        raise _bad(path, f"shape {list(arr.shape)} does not match index.json ({want})")
    return arr


def read_index(folder: Path, root: Path | None = None) -> Index | None:
    """The index in `folder` (None when there is none), every part of it checked: a SearchError naming the
    file says what is wrong. `root`: the music folder (default: the folder that holds the index)."""
    folder = Path(folder)
    meta_path = folder / "index.json"
    if not meta_path.is_file():
        return None
    meta = _read_meta(meta_path)
    n_chunks = _check_entries(meta_path, meta)
    tracks = _load_rows(folder / "tracks.npy", np.float32, len(meta["files"]))
    chunks = _load_rows(folder / "chunks.npy", np.float16, n_chunks, tracks.shape[1])
    return Index(
        Path(root) if root is not None else folder.resolve().parent,
        folder,
        meta["model"],
        meta["space"],
        meta["files"],
        meta.get("failed", []),
        tracks,
        chunks,
        float(meta.get("chunk_seconds", 3.0)),
    )


# -- building / updating -----------------------------------------------------------------------------------
def _scan(root: Path, index_folder: Path) -> dict[str, os.stat_result]:
    """The audio files under `root` (the folder scan: never the index, mulap's own or hidden folders) and their
    stat, by path relative to `root`."""
    from mulap.audio.scan import list_audio

    try:
        files = list_audio([root], skip=[index_folder])
    except FileNotFoundError as exc:
        raise SearchError(str(exc)) from None
    found = {}
    for f in files:
        try:
            found[f.relative_to(root).as_posix()] = f.stat()
        except OSError:  # removed (or made unreadable) since it was listed
            continue
    return found


@dataclass
class _Rows:
    """An index being built: entries and their rows, in any order (a save sorts them by path)."""

    files: list[dict] = field(default_factory=list)
    tracks: list[np.ndarray] = field(default_factory=list)  # [1, D] each
    chunks: list[np.ndarray] = field(default_factory=list)  # [n_chunks, D] each
    failed: list[dict] = field(default_factory=list)

    def sorted(self) -> tuple[list[dict], list[np.ndarray], list[np.ndarray], list[dict]]:
        order = sorted(range(len(self.files)), key=lambda i: self.files[i]["path"])
        files, offset = [], 0
        for i in order:
            e = {k: v for k, v in self.files[i].items() if k != "offset"}
            e["n_chunks"], e["offset"] = len(self.chunks[i]), offset
            offset += len(self.chunks[i])
            files.append(e)
        return (
            files,
            [self.tracks[i] for i in order],
            [self.chunks[i] for i in order],
            sorted(self.failed, key=lambda f: f["path"]),
        )


def build_or_update(
    model,
    root: str | Path,
    index_folder: str | Path | None = None,
    rebuild: bool = False,
    num_workers: int = 2,
    progress: bool = True,
) -> tuple[Index, dict]:
    """The index of `root`, brought up to date. Returns (index, counts of added/changed/removed/kept/failed).
    Saved as it goes (see the module docstring): after an interruption the same call embeds only the
    files that were not saved yet."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise SearchError(f"{root} is not a folder of music")
    folder = Path(index_folder).resolve() if index_folder else default_index_folder(root)
    _check_index_folder(folder, root)
    _clean_leftovers(folder)
    model_id, space = model_identity(model)
    dim = _dim(model, space)
    old = None if rebuild else read_index(folder, root)
    if old is not None and old.model_id != model_id:
        raise SearchError(
            f"the index in {folder} was built by another model ({old.model_id.split('#')[0]}); "
            f"rebuild it for {model.name} with --rebuild (or use --index for a second index)"
        )
    if old is not None and (old.space != space or old.tracks.shape[1] != dim):
        raise _bad(
            folder / "index.json",
            f"space {old.space} of {old.tracks.shape[1]} dimensions, but {model.name} gives {space} vectors of {dim}",
        )
    now = _scan(root, folder)
    prev = {f["path"]: f for f in old.files} if old else {}
    prev_failed = {f["path"]: f for f in old.failed} if old else {}

    def same(entry: dict | None, st: os.stat_result) -> bool:
        return entry is not None and entry["size"] == st.st_size and entry["mtime_ns"] == st.st_mtime_ns

    keep = [p for p, st in now.items() if same(prev.get(p), st)]
    still_failed = [prev_failed[p] for p, st in now.items() if same(prev_failed.get(p), st)]
    todo = [p for p, st in now.items() if not same(prev.get(p), st) and not same(prev_failed.get(p), st)]
    counts = {
        "kept": len(keep),
        "added": sum(p not in prev and p not in prev_failed for p in todo),
        "changed": sum(p in prev or p in prev_failed for p in todo),
        "removed": sum(p not in now for p in prev),
        "failed": 0,
    }
    if old is not None and not todo and counts["removed"] == 0:
        counts["failed"] = len(still_failed)
        return old, counts

    rows = _Rows(failed=list(still_failed))
    if old is not None and keep:
        at = {f["path"]: i for i, f in enumerate(old.files)}
        for p in keep:
            e = old.files[at[p]]
            rows.files.append(dict(e))
            rows.tracks.append(old.tracks[at[p] : at[p] + 1])
            rows.chunks.append(old.chunks[e["offset"] : e["offset"] + e["n_chunks"]])
    meta = {"format": FORMAT, "model": model_id, "space": space, "root": str(root), "chunk_seconds": model.chunk_seconds}
    last_save, save_cost, done, saved = time.monotonic(), 0.0, 0, False
    try:
        for start in range(0, len(todo), BLOCK_FILES):
            block = todo[start : start + BLOCK_FILES]
            t, c, per_file, bad = _embed_block(model, space, root, block, num_workers, progress)
            read = iter(zip(t, c))
            with signals_deferred():  # a block's rows join the index whole (an interrupt comes after)
                for p, n in zip(block, per_file):
                    st = now[p]
                    if n is None:
                        rows.failed.append({"path": p, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "reason": bad[p]})
                        continue
                    track_row, chunk_rows = next(read)
                    rows.files.append({"path": p, "size": st.st_size, "mtime_ns": st.st_mtime_ns})
                    rows.tracks.append(track_row)
                    rows.chunks.append(chunk_rows)
                done = start + len(block)
            waited = time.monotonic() - last_save
            if start + BLOCK_FILES < len(todo) and waited >= max(SAVE_SECONDS, SAVE_COST * save_cost):
                t0 = time.monotonic()
                _save(folder, meta, rows, dim)
                last_save, save_cost = time.monotonic(), time.monotonic() - t0
        with signals_deferred():  # the last save too is finished once begun (an interrupt comes after it)
            _save(folder, meta, rows, dim)
            saved = True
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: keep the blocks that were finished, say so, stop
        if not done and not saved:
            kept = f"before a new file was indexed; the index {folder} is as it was"
        else:
            if not saved:
                with signals_deferred():
                    _save(folder, meta, rows, dim)
            kept = f"after {done} of {len(todo)} new or changed file(s); the index {folder} keeps them"
        raise Interrupted(signal_of(exc) or signal.SIGINT, kept) from None
    index = read_index(folder, root)
    assert index is not None  # _save has just written it
    counts["failed"] = len(index.failed)
    return index, counts


def _embed_block(model, space: str, root: Path, block: list[str], num_workers: int, progress: bool):
    """Embed files `block` (relative to `root`): their track rows [1, D] and chunk rows [n, D] (for the files
    that were read, in order), the chunk count per file (None where it could not be read) and the reasons
    of the failures by relative path."""
    from mulap.inference.extract import extract

    paths = [root / p for p in block]
    feats, track, failures = extract(
        model.backbone, paths, num_workers=num_workers, progress=progress, desc="indexing", device=model.device
    )
    reasons = {str(path): reason for path, reason in failures}
    feats_t = torch.from_numpy(feats)
    tracks, chunks, bad = [], [], {}
    per_file: list[int | None] = []
    for i, (rel, path) in enumerate(zip(block, paths)):
        sel = torch.from_numpy(track == i)
        if not bool(sel.any()):
            per_file.append(None)
            bad[rel] = reasons.get(str(path), "no audio decoded")
            log.warning("cannot index %s: %s", path, bad[rel])
            continue
        rows = feats_t[sel]
        both = torch.cat([rows.mean(0, keepdim=True), rows])  # track mean, then its chunks
        vecs = model.project_audio(both) if space == "joint" else _normalise(both.numpy())
        tracks.append(vecs[:1])
        chunks.append(vecs[1:])
        per_file.append(len(rows))
    return tracks, chunks, per_file, bad


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


# -- writing -----------------------------------------------------------------------------------------------
_WRITE_ROWS = 1 << 16  # rows per write call: a big array is written in slices, never copied whole


def _write_rows(path: Path, pieces, dtype, dim: int) -> None:
    """A .npy file [sum of the pieces' rows, dim] of `dtype`, written piece by piece (no concatenation)."""
    dtype = np.dtype(dtype)
    n = sum(len(p) for p in pieces)
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (n, dim)}
        )
        for piece in pieces:
            for s in range(0, len(piece), _WRITE_ROWS):
                fh.write(np.ascontiguousarray(piece[s : s + _WRITE_ROWS], dtype=dtype).data)
        fh.flush()
        os.fsync(fh.fileno())


def _save(folder: Path, meta: dict, rows: _Rows, dim: int) -> None:
    files, tracks, chunks, failed = rows.sorted()
    _write_folder(folder, {**meta, "files": files, "failed": failed}, tracks, chunks, dim)


def _write_index(index: Index) -> None:
    """Write `index` (its arrays whole) into `index.folder`, then open its arrays memory-mapped."""
    meta = {
        "format": FORMAT,
        "model": index.model_id,
        "space": index.space,
        "root": str(index.root),
        "chunk_seconds": index.chunk_seconds,
        "files": index.files,
        "failed": index.failed,
    }
    _write_folder(index.folder, meta, [index.tracks], [index.chunks], int(index.tracks.shape[1]))
    index.tracks = np.load(index.folder / "tracks.npy", mmap_mode="r")
    index.chunks = np.load(index.folder / "chunks.npy", mmap_mode="r")


def _write_folder(folder: Path, meta: dict, tracks, chunks, dim: int) -> None:
    """The index files into a temporary folder next to `folder`, then swapped in with two renames; whatever
    happens (a full disk, Ctrl-C between the renames), `folder` ends up holding the old index or the new one.
    A write the file system refuses is one WriteError naming the file."""
    tmp, old = writer_temp(folder, "tmp"), writer_temp(folder, "old")  # named by writer: `_clean_leftovers` knows a dead one's
    need = 128 + sum(len(t) for t in tracks) * dim * 4 + sum(len(c) for c in chunks) * dim * 2
    target = folder
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        target = folder / "tracks.npy"
        _write_rows(tmp / "tracks.npy", tracks, np.float32, dim)
        target = folder / "chunks.npy"
        _write_rows(tmp / "chunks.npy", chunks, np.float16, dim)
        target = folder / "index.json"
        with open(tmp / "index.json", "w", encoding="utf-8") as fh:  # the folder is the atomic unit: a plain write
            json.dump(meta, fh, indent=2, default=float)
            fh.flush()
            os.fsync(fh.fileno())
        target = folder
        if folder.exists():
            os.rename(folder, old)
        os.rename(tmp, folder)
        fsync_dir(folder.parent)
    except OSError as exc:
        raise write_error(exc, target, need) from None
    finally:
        if not folder.exists() and old.exists():  # interrupted or refused between the renames: the old index stays
            try:
                os.rename(old, folder)
            except OSError:
                pass
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


# -- querying ----------------------------------------------------------------------------------------------
def rank(index: Index, query: np.ndarray, top: int = 10) -> list[Hit]:
    """The `top` tracks by cosine with `query` [D] (exact), each with its best chunk as the moment."""
    q = _normalise(np.asarray(query, dtype=np.float32).reshape(1, -1))[0]
    if q.shape[0] != index.tracks.shape[1]:
        raise SearchError(f"query has {q.shape[0]} dimensions, the index {index.tracks.shape[1]}")
    scores = np.asarray(index.tracks) @ q
    k = min(int(top), len(scores))
    if k <= 0:
        return []
    part = np.argpartition(-scores, k - 1)[:k]
    best = part[np.lexsort((part, -scores[part]))]  # score, then index order: deterministic ties
    hits = []
    for r, i in enumerate(best, 1):
        f = index.files[i]
        rows = np.asarray(index.chunks[f["offset"] : f["offset"] + f["n_chunks"]], dtype=np.float32)
        c = int(np.argmax(rows @ q)) if len(rows) else 0
        start = c * index.chunk_seconds
        hits.append(Hit(r, float(scores[i]), str(index.root / f["path"]), start, start + index.chunk_seconds))
    return hits


def check_text_query(model, query: str, space: str | None = None) -> None:
    """Refuse a text query that cannot be answered (empty; a model or index without a joint audio-text space)
    before anything is indexed."""
    if not isinstance(query, str) or not query.strip():
        raise SearchError('the query is empty: give a description, e.g. "calm solo piano"')
    if (space or space_of(model)) != "joint":
        raise SearchError(
            f"{model.name} has no joint audio-text space: text search needs a pre-trained MuLaP model "
            "(use --like song.mp3 for music-to-music search)"
        )


def search_text(model, index: Index, query: str, top: int = 10, rerank: int = 0) -> list[Hit]:
    check_text_query(model, query, index.space)
    hits = rank(index, model.embed_text([query])[0], max(top, rerank))
    if rerank:
        hits = rerank_hits(model, hits[:rerank], query) + hits[rerank:]
        for r, h in enumerate(hits, 1):
            h.rank = r
    return hits[:top]


def rerank_hits(model, hits: list[Hit], query: str) -> list[Hit]:
    """Re-score a shortlist with MuLaP's cross-encoder (audio-text matching through the co-attention), on the
    window of the transformer's length around each file's best moment."""
    from mulap.audio.io import AudioError, load_audio

    windows, owner = [], []
    for k, h in enumerate(hits):
        try:
            wave = load_audio(h.file, model.sample_rate)
        except AudioError as exc:
            log.warning("re-rank: %s", exc)
            continue
        chunks, _ = model.chunks_of(wave)
        window = model.window_at(chunks, int(h.start // model.chunk_seconds))
        windows.append(model.chunk_features(torch.from_numpy(window)))
        owner.append(k)
    if not windows:
        return hits
    probs = model.match_features(windows, [query], list(range(len(windows))), len(windows))[:, 0]
    rescored = []
    for k, p in zip(owner, probs):
        h = hits[k]
        rescored.append(Hit(0, float(p), h.file, h.start, h.end, contrastive=h.score))
    missing = [h for k, h in enumerate(hits) if k not in owner]
    return sorted(rescored, key=lambda h: -h.score) + missing


def like_vector(model, example: str | Path, space: str | None = None) -> np.ndarray:
    """The query vector of `mulap search --like example` (in `space`, default the model's index space): the
    file is checked and embedded before any folder is indexed; AudioError names it when it cannot be read."""
    from mulap.audio.io import check_file

    check_file(example)
    return model.embed_files([example], space=space or space_of(model), num_workers=0)[0]


def search_like(model, index: Index, example: str | Path, top: int = 10, query: np.ndarray | None = None) -> list[Hit]:
    """The `top` tracks most like `example` (itself left out, ranks from 1); `query`: its `like_vector`."""
    emb = like_vector(model, example, index.space) if query is None else query
    same = Path(example).resolve()
    hits = [h for h in rank(index, emb, top + 1) if Path(h.file).resolve() != same][:top]
    for r, h in enumerate(hits, 1):
        h.rank = r
    return hits


def format_table(hits: list[Hit]) -> str:
    if not hits:
        return "(no results)"
    width = max(len(h.file) for h in hits)
    head = f"{'rank':>4}  {'score':>7}  {'file':<{width}}  moment"
    lines = [head, "-" * len(head)]
    for h in hits:
        lines.append(f"{h.rank:>4}  {h.score:7.4f}  {h.file:<{width}}  {_clock(h.start)}–{_clock(h.end)}")
    return "\n".join(lines)


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}:{s:02d}"
