"""Data-loading throughput of pre-training (issue 9): decoded, cropped and collated clips per second
per dataloader worker, from the per-clip folder layout and from tar shards.

Generates `--clips` music-like clips of `--seconds` s (harmonic tones with vibrato, a noise floor
and onsets; 16 kHz mono) and stores them as an audiocaption folder in each of flac, mp3 and npy;
`mulap data shard` turns the flac folder into flac and npy shards. Each layout is then read the way
`mulap pretrain` reads it - AudioCaptionDataset + DataLoader, or ShardDataset (+ its plan,
shuffle buffer and random crops) with batch_size=None - through the real Collate with the text
branch's tokenizer, in `--workers` worker processes at `--batch` clips per batch and 20 s windows
(6 chunks of 3 s). Each layout is read once to warm the page cache, then `--passes` timed passes.

Reports clips/s per worker for every layout; the last line is exactly
``clips_per_s_per_worker=… format=…`` for the fastest shard format.

    python benchmarks/dataloader_throughput.py                 # 96 clips x 20 s, 1 worker, batch 16
    python benchmarks/dataloader_throughput.py --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from torch.utils.data import DataLoader

from mulap.data.audiocaption import AudioCaptionDataset, Collate
from mulap.data.shards import ShardDataset, write_shards
from mulap.models.text import load_tokenizer

SR = 16_000
WORDS = [
    "bright",
    "dark",
    "slow",
    "fast",
    "piano",
    "strings",
    "guitar",
    "choir",
    "calm",
    "loud",
    "folk",
    "jazz",
    "minor",
    "major",
]


def music_like(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Notes of a few harmonics with vibrato and decaying envelopes over a noise floor: compresses like music, not like silence."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    out = 0.01 * rng.standard_normal(n)
    step = int(SR * rng.uniform(0.2, 0.6))
    for start in range(0, n, step):
        f0 = 110 * 2 ** (rng.integers(0, 36) / 12)
        seg = slice(start, min(n, start + 2 * step))
        tt = t[seg] - t[start]
        phase = 2 * np.pi * f0 * tt + 0.3 * np.sin(2 * np.pi * 5 * tt)
        note = sum((0.5 / k) * np.sin(k * phase) for k in range(1, 6))
        out[seg] += 0.3 * note * np.exp(-3 * tt)
    return (out / np.abs(out).max() * 0.9).astype(np.float32)


def make_folders(root: Path, clips: int, seconds: float, seed: int = 0) -> dict[str, Path]:
    rng = np.random.default_rng(seed)
    folders = {fmt: root / f"folder_{fmt}" for fmt in ("flac", "mp3", "npy")}
    records = []
    for i in range(clips):
        wave = music_like(seconds, rng)
        caption = "a " + " ".join(rng.choice(WORDS, size=int(rng.integers(4, 12)))) + " piece"
        for fmt, folder in folders.items():
            (folder / "audio").mkdir(parents=True, exist_ok=True)
            path = folder / "audio" / f"clip{i:05d}.{fmt}"
            if fmt == "npy":
                np.save(path, wave)
            else:
                sf.write(str(path), wave, SR, format=fmt.upper())
        records.append({"audio_id": f"clip{i:05d}", "caption": caption, "audio_path": f"clip{i:05d}"})
    for fmt, folder in folders.items():
        recs = [{**r, "audio_path": f"{r['audio_path']}.{fmt}"} for r in records]
        for split in ("train", "val"):
            (folder / f"dataset_{split}.json").write_text(json.dumps(recs if split == "train" else recs[:2]))
    return folders


def timed_passes(make_loader, passes: int) -> tuple[float, float]:
    """(clips per wall-clock second, clips per CPU second of the workers) over `passes` full passes,
    after one untimed pass (page cache). Worker start-up is included; workers are reaped after every
    pass, so their CPU time shows in RUSAGE_CHILDREN."""
    for _ in make_loader():
        pass
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    total = 0
    for _ in range(passes):
        total += sum(len(b["audio_ids"]) + b["n_skipped"] for b in make_loader())
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy = (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)
    return total / wall, total / busy if busy > 0 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=96)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--workers", type=int, default=1, help="dataloader worker processes")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--shard-size", default="50MB")
    ap.add_argument("--dir", help="keep the generated data here (default: a temporary folder)")
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)", flush=True)
    collate = Collate(load_tokenizer("minilm"), 64)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.dir or tmp)
        t = time.perf_counter()
        folders = make_folders(root, args.clips, args.seconds)
        shards = {}
        for fmt in ("flac", "npy"):
            shards[fmt] = root / f"shards_{fmt}"
            write_shards(
                folders["flac"], shards[fmt], args.shard_size, fmt, overwrite=True, num_workers=args.workers, progress=False
            )
        print(
            f"generated {args.clips} clips x {args.seconds:.0f} s in 3 formats + 2 shard sets in {time.perf_counter() - t:.0f} s"
        )
        sizes = {
            name: sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / args.clips / 1e6
            for name, p in [
                *((f"folder/{k}", v / "audio") for k, v in folders.items()),
                *((f"shards/{k}", v) for k, v in shards.items()),
            ]
        }
        results = {}
        for fmt, folder in folders.items():
            ds = AudioCaptionDataset(folder, "train", SR, 20.0, 3.0, random_crop=True)

            def make(ds=ds):
                return DataLoader(ds, batch_size=args.batch, shuffle=True, num_workers=args.workers, collate_fn=collate)

            results[f"folder/{fmt}"] = timed_passes(make, args.passes)
        for fmt, path in shards.items():

            def make(path=path):
                ds = ShardDataset(
                    path,
                    "train",
                    batch_size=args.batch,
                    num_workers=args.workers,
                    shuffle=True,
                    buffer_size=64,
                    max_len_seconds=20.0,
                    random_crop=True,
                )
                return DataLoader(ds, batch_size=None, num_workers=args.workers, collate_fn=collate)

            results[f"shards/{fmt}"] = timed_passes(make, args.passes)
        workers = max(1, args.workers)
        print(f"{'layout':<14} {'MB/clip':>8} {'clips/s/worker':>15} {'clips/CPU-s':>12}")
        for name, (wall, cpu) in results.items():
            print(f"{name:<14} {sizes[name]:>8.2f} {wall / workers:>15.1f} {cpu:>12.1f}")
        best = max((k for k in results if k.startswith("shards/")), key=lambda k: results[k][0])
        per_worker = results[best][0] / workers
        print(
            f"GPU at 145 clips/s (one H100, batch 16, bf16): {int(np.ceil(145 / per_worker))} workers of this CPU "
            f"from {best} ({int(np.ceil(145 / (results['folder/mp3'][0] / workers)))} from folder/mp3)"
        )
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        print(f"clips_per_s_per_worker={per_worker:.1f} format={best.split('/')[1]}")


if __name__ == "__main__":
    main()
