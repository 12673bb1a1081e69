"""End-to-end time of the frozen-probe protocol vs. the original's, on the same clips (issue 4).

* **frozen probe (mulap)**: every 3 s chunk of every clip is embedded once
  (``mulap.inference.extract`` through ``run_downstream``'s own cache), then ``run_downstream`` trains the
  MLP probe on the cached features with Lightning for ``--epochs`` epochs (early stopping is
  pushed out of reach, so the maximum is timed).
* **original protocol**: for every batch of every epoch the frozen backbone is re-run on fresh
  random 3 s crops of the training clips, and validation re-embeds every chunk of the validation
  clips. A few epochs (``--orig-epochs``) are timed and extrapolated to ``--epochs`` (printed as
  such). The backbone uses the original's plain Conv2d front end (``timbral_impl=conv2d``).

Clips are generated (noise + tones, ``.npy`` at 16 kHz) in a prepared ``mtt_tagging``-style
dataset (80 % train, 10 % valid, 10 % test; 50 tags = the frequency bands of the tones). Prints the extraction speed
as a multiple of real time, both totals, and finally one line ``speedup=…``.

    python benchmarks/probe_time.py                      # 512 clips of 30 s (the issue's setting)
    python benchmarks/probe_time.py --clips 64 --seconds 30 --orig-epochs 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mulap.audio.chunks import cut_chunks, random_crop
from mulap.models.musicnn import Musicnn, MusicnnConfig
from mulap.models.probes import Probe

SR = 16000
N_TAGS = 50


def make_dataset(root: Path, n_clips: int, seconds: float, seed: int = 0) -> Path:
    """A prepared multilabel dataset of `n_clips` generated clips: noise + 3 tones, tagged with the
    log-spaced frequency bands (50, 80 Hz - 4 kHz) their tones fall in, so a probe has something to learn."""
    rng = np.random.default_rng(seed)
    edges = np.geomspace(80, 4000, N_TAGS + 1)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * SR), dtype=np.float32) / SR
    lines = []
    for i in range(n_clips):
        freqs = rng.uniform(80, 4000, size=3)
        wave = 0.05 * rng.standard_normal(len(t)).astype(np.float32)
        for f in freqs:
            wave += (0.2 * np.sin(2 * np.pi * f * t)).astype(np.float32)
        path = root / "audio" / f"clip{i:05d}.npy"
        if not path.is_file():
            np.save(path, wave.astype(np.float32))
        split = "train" if i % 10 < 8 else ("valid" if i % 10 == 8 else "test")
        target = np.zeros(N_TAGS, dtype=int)
        target[np.clip(np.digitize(freqs, edges) - 1, 0, N_TAGS - 1)] = 1
        target = target.tolist()
        lines.append(
            json.dumps(
                {
                    "id": f"clip{i:05d}",
                    "split": split,
                    "audio": f"audio/clip{i:05d}.npy",
                    "target": target,
                    "num_samples": len(t),
                    "source": "generated",
                }
            )
        )
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "format_version": 1,
                "task": "mtt_tagging",
                "task_type": "multilabel",
                "label_names": [f"tag{k}" for k in range(N_TAGS)],
                "sample_rate": SR,
                "source": "generated",
            }
        )
    )
    return root


def frozen_protocol(root: Path, save_dir: Path, epochs: int, workers: int, overrides: list[str], precision: str = "32") -> dict:
    """Extraction (timed alone, through run_downstream's cache) + run_downstream's probe training."""
    import functools

    import mulap.inference.cache
    from mulap.data.prepare import load_prepared
    from mulap.training import downstream as dsm

    if precision != "32":  # the CLI has no precision switch (the cache key does not record it): patch it in
        mulap.inference.cache.extract = functools.partial(mulap.inference.cache.extract, precision=precision)

    ov = [
        f"downstream.dataset_dir={root}",
        f"downstream.epochs={epochs}",
        "downstream.patience=100000",
        f"env.save_dir={save_dir}",
        f"training.num_workers={workers}",
        *overrides,
    ]
    cfg = dsm.downstream_config("mtt_tagging", None, ov)
    ds = load_prepared(root)
    backbone, _ = dsm.backbone_for(cfg, "random")
    t0 = time.perf_counter()
    emb = dsm._embeddings(cfg, backbone, ds, progress=False)  # the same cache run_downstream reads
    t_extract = time.perf_counter() - t0
    if not emb.computed:
        raise RuntimeError("embeddings came from an old cache; use a fresh --workdir")
    n_chunks = len(emb.features)
    t0 = time.perf_counter()
    did = dsm.run_downstream("random", "mtt_tagging", "bench", None, ov, progress=False)
    t_probe = time.perf_counter() - t0
    summary = json.loads((dsm.downstream_dir(cfg, "random", did) / "summary.json").read_text())
    assert summary["computed"] is False, "run_downstream re-extracted instead of reading the cache"
    return {
        "extract_s": t_extract,
        "probe_s": t_probe,
        "chunks": n_chunks,
        "epochs_run": summary["epochs_run"],
        "best_val": summary["best_val"],
    }


def bf16_feature_error(root: Path, n_chunks: int = 64) -> float:
    """Max |bf16 - fp32| / max |fp32| of the backbone features of the first clips' chunks."""
    from mulap.data.prepare import load_prepared

    torch.manual_seed(0)
    model = Musicnn(MusicnnConfig()).eval()
    items = load_prepared(root).items
    x = np.concatenate([cut_chunks(np.load(it.audio_path), 48000, pad_last=False) for it in items[:8]])[:n_chunks]
    with torch.inference_mode():
        ref = model(torch.from_numpy(x))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(torch.from_numpy(x)).float()
    return float((low - ref).abs().max() / ref.abs().max())


def original_protocol(root: Path, epochs_timed: int, batch_size: int = 64, seed: int = 0) -> float:
    """Seconds per epoch of the original protocol: backbone on fresh random crops every batch, probe
    step, then validation re-embedding every validation chunk. Returns the mean over the timed epochs."""
    from mulap.data.prepare import load_prepared, targets

    ds = load_prepared(root)
    torch.manual_seed(seed)
    backbone = Musicnn(MusicnnConfig(timbral_impl="conv2d")).eval()
    chunk = backbone.config.chunk_samples
    train, valid = ds.split("train"), ds.split("valid")
    y = torch.from_numpy(targets(ds, "train"))
    probe = Probe(backbone.out_dim, N_TAGS, "mlp", 512)
    opt = torch.optim.Adam(probe.parameters(), lr=1e-3, weight_decay=1e-3)
    rng = np.random.default_rng(seed)
    times = []
    for _ in range(epochs_timed):
        t0 = time.perf_counter()
        order = rng.permutation(len(train))
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            crops = np.stack([random_crop(np.load(train[i].audio_path), chunk, rng) for i in idx])
            with torch.no_grad():
                feats = backbone(torch.from_numpy(crops))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(probe(feats), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            for it in valid:
                backbone(torch.from_numpy(cut_chunks(np.load(it.audio_path), chunk, pad_last=False)))
        times.append(time.perf_counter() - t0)
    return float(np.mean(times))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=512)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--epochs", type=int, default=200, help="probe epochs (the protocol's maximum)")
    p.add_argument("--orig-epochs", type=int, default=2, help="epochs of the original protocol actually timed")
    p.add_argument("--workers", type=int, default=2, help="training.num_workers (audio loading during extraction)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--workdir", default=None, help="where clips and the experiment go (default: a temp dir, removed)")
    p.add_argument("--precision", choices=("32", "bf16"), default="32", help="extraction precision")
    p.add_argument("--skip-original", action="store_true")
    p.add_argument("override", nargs="*", help="extra key=value config overrides for the probe run")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="probe_time_"))
    try:
        root = make_dataset(work / "dataset", args.clips, args.seconds)
        save_dir = work / f"save_{time.time_ns()}"
        audio_s = args.clips * int(args.seconds * SR) // 48000 * 3.0  # audio actually embedded (whole chunks)
        print(
            f"{args.clips} clips of {args.seconds:g} s; threads {torch.get_num_threads()}; load average {os.getloadavg()[0]:.2f}"
        )
        if args.precision == "bf16":
            print(f"bf16 extraction: features within {bf16_feature_error(root):.2%} of float32 (max abs / max)")
        new = frozen_protocol(root, save_dir, args.epochs, args.workers, args.override, args.precision)
        rt = audio_s / new["extract_s"]
        total_new = new["extract_s"] + new["probe_s"]
        print(
            f"frozen probe: extraction ({args.precision}) {new['extract_s']:.1f} s for {new['chunks']} chunks "
            f"({rt:.0f}x real time), probe {new['epochs_run']} epochs {new['probe_s']:.1f} s "
            f"({new['probe_s'] / max(1, new['epochs_run']):.3f} s/epoch); total {total_new:.1f} s; "
            f"best validation ROC-AUC {new['best_val']:.4f}"
        )
        print(f"extraction_realtime_x={rt:.1f}")
        if args.skip_original:
            return
        per_epoch = original_protocol(root, args.orig_epochs)
        total_orig = per_epoch * args.epochs
        print(
            f"original protocol: {per_epoch:.1f} s/epoch measured over {args.orig_epochs} epoch(s), "
            f"extrapolated to {args.epochs} epochs: {total_orig:.0f} s"
        )
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        print(f"speedup={total_orig / total_new:.1f}")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
