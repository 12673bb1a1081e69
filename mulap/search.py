"""Search a music folder by text or by example: an incremental index of track and chunk embeddings.

    <folder>/.mulap-index/            (or any folder given as `index`)
        index.json                    model identity, space, and one entry per file: path (relative), size,
                                      mtime_ns, chunk count and offset, plus the files that could not be read
        tracks.npy    [N, D] float32  L2-normalised track embeddings (the pooled projection in the joint space)
        chunks.npy    [M, D] float16  L2-normalised chunk embeddings, each file's rows contiguous

For a model with a joint audio-text space the index holds joint-space vectors (text queries, `--like`);
for an audio-only backbone it holds backbone features (`--like` only). Updating re-embeds only the
files that are new or changed (path + size + mtime) and drops the removed ones. The index is
written whole into a temporary folder and swapped in, so a crash never leaves half an index.

Ranking is exact (a matrix-vector product over all tracks, then a partial sort); a file's best
moment is its highest-scoring 3 s chunk. Beyond a few million tracks use an approximate index
(FAISS / hnswlib) on tracks.npy.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mulap.files import write_json

log = logging.getLogger(__name__)
INDEX_DIR = ".mulap-index"
FORMAT = "mulap-index-1"
BLOCK_FILES = 256  # files embedded per extraction call (bounds memory on big folders)


class SearchError(ValueError):
    """A search that cannot run as asked; the message says what to do."""


@dataclass
class Index:
    root: Path                 # the music folder (paths in `files` are relative to it)
    folder: Path               # where the index lives
    model_id: str
    space: str                 # "joint" | "backbone"
    files: list[dict]          # {path, size, mtime_ns, n_chunks, offset}
    failed: list[dict]         # {path, size, mtime_ns, reason}
    tracks: np.ndarray         # [N, D] float32
    chunks: np.ndarray         # [M, D] float16
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
def model_identity(model) -> tuple[str, str]:
    """(a hash of the weights that make the index's vectors, the space they live in)."""
    from mulap.embed import fingerprint

    if model.has_joint_space:
        parts = torch.nn.ModuleDict({"backbone": model.backbone, "proj": model.mulap.audio_proj})
        return f"{model.name}#{fingerprint(parts)}", "joint"
    return f"{model.name}#{fingerprint(model.backbone)}", "backbone"


# -- building / updating -----------------------------------------------------------------------------------
def _scan(root: Path) -> dict[str, os.stat_result]:
    from mulap.embed import list_audio

    files = list_audio([str(root)])
    return {f.relative_to(root).as_posix(): f.stat() for f in files if INDEX_DIR not in f.relative_to(root).parts}


def default_index_folder(root: Path) -> Path:
    return root / INDEX_DIR


def read_index(folder: Path, root: Path | None = None) -> Index | None:
    meta_path = folder / "index.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}")
        tracks = np.load(folder / "tracks.npy", mmap_mode="r")
        chunks = np.load(folder / "chunks.npy", mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise SearchError(f"{folder}: not a readable mulap index ({exc}); delete it or pass --rebuild") from None
    if len(tracks) != len(meta["files"]) or len(chunks) != sum(f["n_chunks"] for f in meta["files"]):
        raise SearchError(f"{folder}: index.json does not match its arrays; delete it or pass --rebuild")
    return Index(Path(root) if root else Path(meta["root"]), folder, meta["model"], meta["space"], meta["files"],
                 meta.get("failed", []), tracks, chunks, float(meta.get("chunk_seconds", 3.0)))


def build_or_update(model, root: str | Path, index_folder: str | Path | None = None, rebuild: bool = False,
                    num_workers: int = 2, progress: bool = True) -> tuple[Index, dict]:
    """The index of `root`, brought up to date. Returns (index, counts of added/changed/removed/kept/failed)."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise SearchError(f"{root} is not a folder of music")
    folder = Path(index_folder).resolve() if index_folder else default_index_folder(root)
    model_id, space = model_identity(model)
    old = None if rebuild else read_index(folder, root)
    if old is not None and old.model_id != model_id:
        raise SearchError(f"the index in {folder} was built by another model ({old.model_id.split('#')[0]}); "
                          f"rebuild it for {model.name} with --rebuild (or use --index for a second index)")
    try:
        now = _scan(root)
    except FileNotFoundError:
        raise SearchError(f"no audio files under {root}") from None
    prev = {f["path"]: f for f in old.files} if old else {}
    prev_failed = {f["path"]: f for f in old.failed} if old else {}

    def same(entry: dict | None, st: os.stat_result) -> bool:
        return entry is not None and entry["size"] == st.st_size and entry["mtime_ns"] == st.st_mtime_ns

    keep = [p for p, st in now.items() if same(prev.get(p), st)]
    still_failed = [prev_failed[p] for p, st in now.items() if same(prev_failed.get(p), st)]
    todo = [p for p, st in now.items() if not same(prev.get(p), st) and not same(prev_failed.get(p), st)]
    counts = {"kept": len(keep), "added": sum(p not in prev and p not in prev_failed for p in todo),
              "changed": sum(p in prev or p in prev_failed for p in todo), "removed": sum(p not in now for p in prev),
              "failed": 0}
    if old is not None and not todo and counts["removed"] == 0:
        counts["failed"] = len(still_failed)
        return old, counts

    tracks, chunks, files, failed = [], [], [], list(still_failed)
    if old is not None and keep:
        rows = {f["path"]: i for i, f in enumerate(old.files)}
        for p in keep:
            e = old.files[rows[p]]
            tracks.append(np.asarray(old.tracks[rows[p]:rows[p] + 1], dtype=np.float32))
            chunks.append(np.asarray(old.chunks[e["offset"]:e["offset"] + e["n_chunks"]]))
            files.append(dict(e))
    for start in range(0, len(todo), BLOCK_FILES):
        block = todo[start:start + BLOCK_FILES]
        t, c, per_file, bad = _embed_block(model, space, root, block, num_workers, progress)
        for p, n in zip(block, per_file):
            st = now[p]
            if n is None:
                failed.append({"path": p, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "reason": bad[p]})
                continue
            files.append({"path": p, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "n_chunks": n})
        tracks.extend(t)
        chunks.extend(c)
    order = sorted(range(len(files)), key=lambda i: files[i]["path"])
    files = [files[i] for i in order]
    tracks = [tracks[i] for i in order]
    chunks = [chunks[i] for i in order]
    offset = 0
    for f, c in zip(files, chunks):
        f["offset"], offset = offset, offset + len(c)
    dim = model.joint_dim if space == "joint" else model.embedding_dim
    index = Index(root, folder, model_id, space, files, sorted(failed, key=lambda f: f["path"]),
                  np.concatenate(tracks).astype(np.float32) if tracks else np.zeros((0, dim), np.float32),
                  np.concatenate(chunks).astype(np.float16) if chunks else np.zeros((0, dim), np.float16),
                  model.chunk_seconds)
    counts["failed"] = len(index.failed)
    _write_index(index)
    return index, counts


def _embed_block(model, space: str, root: Path, block: list[str], num_workers: int, progress: bool):
    """Embed files `block` (relative to `root`): their track rows [1, D] and chunk rows [n, D], the chunk count
    per file (None where it could not be read) and the reasons of the failures by relative path."""
    from mulap.embed import extract

    paths = [root / p for p in block]
    feats, track, failures = extract(model.backbone, paths, num_workers=num_workers, progress=progress,
                                     desc="indexing", device=model.device)
    reasons = {str(path): reason for path, reason in failures}
    feats_t = torch.from_numpy(feats)
    tracks, chunks, per_file, bad = [], [], [], {}
    for i, (rel, path) in enumerate(zip(block, paths)):
        sel = torch.from_numpy(track == i)
        if not bool(sel.any()):
            per_file.append(None)
            bad[rel] = reasons.get(str(path), "no audio decoded")
            log.warning("cannot index %s", bad[rel])
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


def _write_index(index: Index) -> None:
    folder = index.folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        np.save(tmp / "tracks.npy", np.ascontiguousarray(index.tracks, dtype=np.float32))
        np.save(tmp / "chunks.npy", np.ascontiguousarray(index.chunks, dtype=np.float16))
        write_json(tmp / "index.json", {"format": FORMAT, "model": index.model_id, "space": index.space,
                                         "root": str(index.root), "chunk_seconds": index.chunk_seconds,
                                         "files": index.files, "failed": index.failed})
        old = folder.with_name(f".{folder.name}.old-{uuid.uuid4().hex[:8]}")
        if folder.exists():
            folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    index.tracks = np.load(folder / "tracks.npy", mmap_mode="r")
    index.chunks = np.load(folder / "chunks.npy", mmap_mode="r")


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
        rows = np.asarray(index.chunks[f["offset"]:f["offset"] + f["n_chunks"]], dtype=np.float32)
        c = int(np.argmax(rows @ q)) if len(rows) else 0
        start = c * index.chunk_seconds
        hits.append(Hit(r, float(scores[i]), str(index.root / f["path"]), start, start + index.chunk_seconds))
    return hits


def search_text(model, index: Index, query: str, top: int = 10, rerank: int = 0) -> list[Hit]:
    if not isinstance(query, str) or not query.strip():
        raise SearchError("the query is empty: give a description, e.g. \"calm solo piano\"")
    if index.space != "joint":
        raise SearchError(f"{model.name} has no joint audio-text space: text search needs a pre-trained MuLaP model "
                          "(use --like song.mp3 for music-to-music search)")
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
    for (k, p) in zip(owner, probs):
        h = hits[k]
        rescored.append(Hit(0, float(p), h.file, h.start, h.end, contrastive=h.score))
    missing = [h for k, h in enumerate(hits) if k not in owner]
    return sorted(rescored, key=lambda h: -h.score) + missing


def search_like(model, index: Index, example: str | Path, top: int = 10) -> list[Hit]:
    emb = model.embed_files([example], space=index.space if index.space == "joint" else "backbone", num_workers=0)
    hits = rank(index, emb[0], top + 1)
    same = Path(example).resolve()
    return [h for h in hits if Path(h.file).resolve() != same][:top]


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
