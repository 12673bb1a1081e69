"""`mulap embed`: chunk- and track-level embeddings of audio files, written atomically to .npz or .parquet."""

import logging
import os
from pathlib import Path

import numpy as np

from mulap.audio.scan import AUDIO_SUFFIXES, audio_suffixes, list_audio  # noqa: F401 (the folder scan: mulap.audio.scan)
from mulap.inference.api import load
from mulap.inference.cache import Extractor, single_process
from mulap.inference.extract import extraction_settings
from mulap.infra.extras import require
from mulap.infra.files import fsync_dir, unlink_quietly, write_error

log = logging.getLogger(__name__)

OUTPUT_SUFFIXES = (".npz", ".parquet")


# -- the `mulap embed` command -------------------------------------------------------------
def check_output_path(out: str | Path, suffixes: tuple[str, ...] = OUTPUT_SUFFIXES) -> Path:
    """Refuse an output name with another suffix before any work is done."""
    out = Path(out)
    if out.suffix.lower() not in suffixes:
        raise ValueError(f"output {out}: use a {' or '.join(suffixes)} file name")
    if out.is_dir():
        raise ValueError(f"output {out} is a folder; give a file name ({' or '.join(suffixes)})")
    if out.suffix.lower() == ".parquet":
        require("parquet", "pyarrow", "to write .parquet")
    return out


def embed_files(
    model_ref: str, inputs: list[str], out: str | Path, cfg, batch_size: int = 64, extractor: Extractor = single_process
) -> Path:
    """Chunk- and track-level (mean over chunks) embeddings of audio files -> .npz or .parquet (float32).
    The model comes from `mulap.load`, as in the Python API. The output name and the inputs are checked
    before the model is loaded. `extractor`: the caller's choice of one process or several (see `mulap.inference.cache`)."""
    out = check_output_path(out)
    files = list_audio(inputs)
    device, precision = extraction_settings(cfg)
    loaded = load(model_ref, save_dir=cfg.env.save_dir, device=device, seed=int(cfg.env.seed))
    model, desc = loaded.backbone, loaded.name
    result = extractor(
        model,
        files,
        batch_chunks=batch_size,
        num_workers=int(cfg.training.num_workers),
        desc="embed",
        device=device,
        precision=precision,
        parts_dir=out.with_name(f".{out.name}.parts"),
    )
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


def write_embeddings(
    out: Path, names: list[str], ok: list[int], features: np.ndarray, track: np.ndarray, track_feats: np.ndarray, desc: str
) -> None:
    """The `mulap embed` output, atomically: a temp file next to `out`, renamed over it once complete. A failed
    write (full disk, read-only, forbidden) is a one-line WriteError naming `out` (with the space free and about the
    space needed) and leaves no temp file; so does an interrupt."""
    tmp = out.with_name(f".{out.name}.tmp{out.suffix}")  # np.savez keeps a name ending in .npz as it is
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".npz":
            chunk_in_track = np.concatenate([np.arange((track == i).sum()) for i in ok]) if ok else np.zeros(0, np.int64)
            np.savez(
                tmp,
                files=np.array(names),
                track_embeddings=track_feats,
                chunk_embeddings=features,
                chunk_track=np.searchsorted(np.array(ok), track),
                chunk_index=chunk_in_track,
                backbone=np.array(desc),
            )
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


def _write_parquet(
    path: Path, names: list[str], ok: list[int], features: np.ndarray, track: np.ndarray, track_feats: np.ndarray, desc: str
) -> None:
    pa = require("parquet", "pyarrow", "to write .parquet")
    pq = require("parquet", "pyarrow.parquet", "to write .parquet")

    files_col, level, chunk, vectors = [], [], [], []
    for j, i in enumerate(ok):
        rows = features[track == i]
        files_col += [names[j]] * (1 + len(rows))
        level += ["track"] + ["chunk"] * len(rows)
        chunk += [-1, *range(len(rows))]
        vectors += [track_feats[j][None], rows]
    flat = np.concatenate(vectors).astype(np.float32) if vectors else np.zeros((0, features.shape[1]), np.float32)
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1), pa.float32()), flat.shape[1])
    table = pa.table(
        {
            "file": pa.array(files_col, pa.string()),
            "level": pa.array(level, pa.string()),
            "chunk": pa.array(chunk, pa.int32()),
            "embedding": embedding,
        }
    )
    pq.write_table(table.replace_schema_metadata({"backbone": desc, "chunk_seconds": "3.0"}), path)
