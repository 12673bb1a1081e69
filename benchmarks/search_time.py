"""Time of one `mulap search` query over a large index (synthetic embeddings), and its memory.

    .venv/bin/python benchmarks/search_time.py [--tracks 100000] [--chunks-per-track 10] [--dim 256] [--top 10]

Writes an index of `--tracks` tracks with `--chunks-per-track` chunk rows each (random unit vectors,
the joint space's 256 dimensions) with mulap.inference.search's own writer into a temporary folder, opens it as
`mulap search` does (memory-mapped), and times `search.rank` (the exact matrix-vector product over all
tracks, the top-K partial sort and each hit's best chunk) for fresh queries, plus the text encoder
(`Model.embed_text` of the default MiniLM text branch) once. Prints the figures; the last line is
`query_seconds=… tracks=…`.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracks", type=int, default=100_000)
    ap.add_argument("--chunks-per-track", type=int, default=10)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--skip-text", action="store_true", help="do not time the text encoder")
    args = ap.parse_args()

    from mulap.inference import search

    rng = np.random.default_rng(0)
    n, c, d = args.tracks, args.chunks_per_track, args.dim
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "index"
        tracks = rng.standard_normal((n, d), dtype=np.float32)
        tracks /= np.linalg.norm(tracks, axis=1, keepdims=True)
        chunks = np.empty((n * c, d), np.float16)
        for s in range(0, n * c, 200_000):  # in blocks: keeps the benchmark's own memory small
            block = rng.standard_normal((min(200_000, n * c - s), d), dtype=np.float32)
            chunks[s : s + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
        files = [
            {"path": f"album{i // 1000:04d}/track{i:07d}.flac", "size": 1, "mtime_ns": 1, "n_chunks": c, "offset": i * c}
            for i in range(n)
        ]
        index = search.Index(Path(tmp), folder, "synthetic#0", "joint", files, [], tracks, chunks)
        t = time.perf_counter()
        search._write_index(index)
        write_s = time.perf_counter() - t
        del tracks, chunks, index
        disk = {p.name: p.stat().st_size / 1e6 for p in folder.iterdir()}
        rss0 = rss_mb()
        t = time.perf_counter()
        index = search.read_index(folder)
        open_s = time.perf_counter() - t
        queries = rng.standard_normal((args.queries, d)).astype(np.float32)
        times = []
        for q in queries:
            t = time.perf_counter()
            hits = search.rank(index, q, args.top)
            times.append(time.perf_counter() - t)
        assert len(hits) == args.top
        rss1 = rss_mb()
    print(
        f"index: {n:,} tracks x {c} chunks, {d}-d; on disk "
        + ", ".join(f"{k} {v:.0f} MB" for k, v in disk.items())
        + f"; written in {write_s:.1f} s"
    )
    print(f"open (index.json + memory-mapped arrays): {open_s:.2f} s")
    print(
        f"query (rank {n:,} tracks, top {args.top}, best chunk of each hit): first {times[0] * 1e3:.0f} ms, "
        f"median of {len(times)} {np.median(times) * 1e3:.0f} ms, max {max(times) * 1e3:.0f} ms"
    )
    print(
        f"resident memory: {rss0:.0f} MB before opening, {rss1:.0f} MB after the queries "
        f"(the track matrix is read whole, chunk rows only for the hits); peak RSS "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB (includes building the synthetic index)"
    )
    if not args.skip_text:
        import torch

        from mulap.inference.api import Model
        from mulap.infra.config import load_config
        from mulap.models.mulap import MuLaP
        from mulap.models.text import load_tokenizer

        cfg = load_config(None)
        net = MuLaP(cfg.model_config).eval()
        model = Model("untrained", net.backbone, torch.device("cpu"), net, load_tokenizer("minilm"))
        model.embed_text(["warm-up"])
        t = time.perf_counter()
        for q in ("calm solo piano", "hip hop drums with a deep bass", "a string quartet playing a slow minuet"):
            model.embed_text([q])
        print(f"text encoder (default MiniLM text branch + projection), one query: {(time.perf_counter() - t) / 3 * 1e3:.0f} ms")
    print(f"query_seconds={np.median(times):.3f} tracks={n} cpus={os.cpu_count()}")


if __name__ == "__main__":
    main()
