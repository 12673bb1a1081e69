"""Peak memory of `mulap embed` on one long file (issue 11: a 1-hour 44.1 kHz stereo WAV).

Writes the WAV (16-bit PCM, a tone plus noise, written block by block) to a temporary folder,
runs `python -m mulap embed random <wav> -o <out>.npz` as a child process and samples the memory
of its whole process tree (the command and its DataLoader workers) from /proc every 0.1 s.
The WAV and the output are deleted afterwards. Prints

    peak_rss_gb=…   the largest sum of RSS over the tree (counts pages the workers share with the
                    main process once per process: an upper bound)
    peak_pss_gb=…   the largest sum of PSS (shared pages split between the processes sharing them)
    max_single_rss_gb=…  the largest RSS of any one process (getrusage, exact, not sampled)

    python benchmarks/embed_memory.py                    # 60 minutes, 2 workers
    python benchmarks/embed_memory.py --minutes 10 --workers 0

The code measured is whatever `python -m mulap` imports (the command runs in the temporary folder;
set PYTHONPATH to choose a tree, e.g. PYTHONPATH=/path/to/other/checkout for a before/after).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf


def write_long_wav(path: Path, minutes: float, sr: int = 44100) -> None:
    rng = np.random.default_rng(0)
    total = int(minutes * 60 * sr)
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=2, subtype="PCM_16") as f:
        for start in range(0, total, 60 * sr):
            t = np.arange(start, min(total, start + 60 * sr)) / sr
            tone = 0.3 * np.sin(2 * np.pi * (220 + 110 * ((t // 10) % 4)) * t)
            f.write(np.stack([tone, 0.5 * tone], 1) + 0.02 * rng.standard_normal((len(t), 2)))


def _tree(root: int) -> list[int]:
    """root and all its descendants (from /proc/*/stat parent ids)."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as fh:
                    parent[int(d)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(c for c, pp in parent.items() if pp == p)
    return out


def _rss_pss_kb(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--workers", type=int, default=2, help="training.num_workers of the embed command")
    ap.add_argument("--model", default="random")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="embed_memory_") as tmp:
        wav = Path(tmp) / "long.wav"
        t0 = time.perf_counter()
        write_long_wav(wav, args.minutes)
        print(
            f"wrote {wav} ({wav.stat().st_size / 1e9:.2f} GB, {args.minutes:g} min, 44.1 kHz stereo) "
            f"in {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
        out = Path(tmp) / "emb.npz"
        cmd = [
            sys.executable,
            "-m",
            "mulap",
            "embed",
            args.model,
            str(wav),
            "-o",
            str(out),
            f"training.num_workers={args.workers}",
            f"env.save_dir={tmp}",
        ]
        t0 = time.perf_counter()
        # run in the temporary folder, so `-m mulap` imports what PYTHONPATH says, not the current folder's
        proc = subprocess.Popen(cmd, cwd=tmp, env={**os.environ, "TQDM_DISABLE": "1"})
        peak_rss = peak_pss = 0
        while proc.poll() is None:
            sizes = [_rss_pss_kb(p) for p in _tree(proc.pid)]
            peak_rss = max(peak_rss, sum(r for r, _ in sizes))
            peak_pss = max(peak_pss, sum(p for _, p in sizes))
            time.sleep(0.1)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"embed failed with exit code {proc.returncode}")
        n_chunks = len(np.load(out)["chunk_embeddings"])
        single = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6  # kB -> GB
    print(f"embedded {n_chunks} chunks in {seconds:.0f} s (workers={args.workers})")
    print(f"peak_rss_gb={peak_rss / 1e6:.2f}")
    print(f"peak_pss_gb={peak_pss / 1e6:.2f}")
    print(f"max_single_rss_gb={single:.2f}")


if __name__ == "__main__":
    main()
