"""Frozen-feature diagnostics of every backbone a `mulap demo` run probed.

    .venv/bin/python tools/feature_diagnostics.py demo_out [--csv demo_out/feature_diagnostics.csv]

For each pre-training recipe (and the random / supervised backbones of the default one) and each
task, it reads the embeddings cached by the probe runs (nothing is re-extracted) and prints:
the participation ratio and top-10 PC variance share of the training chunks' features, and the
test metric of a seedless ridge probe on track-mean features (mulap/evaluation/diagnostics.py).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

import numpy as np

from mulap.data.downstream import get_task
from mulap.data.prepare import load_prepared, targets
from mulap.evaluation.diagnostics import ridge_probe, spectrum_stats
from mulap.files import atomic_write_text

TASKS = ["mtt_tagging", "jamendo_tagging", "emomusic_reg", "fma_clf", "nsynth_clf"]


def track_means(features: np.ndarray, track: np.ndarray, n: int) -> np.ndarray:
    sums = np.zeros((n, features.shape[1]))
    np.add.at(sums, track, features)
    return sums / np.bincount(track, minlength=n)[:, None]


def diagnose(out: Path, experiment: str, init: str, task: str) -> dict | None:
    spec = get_task(task)
    summary = out / "save" / "experiments" / experiment / "downstream" / f"{task}-{init}-s0" / "summary.json"
    if not summary.is_file():
        return None
    key = json.loads(summary.read_text())["cache_key"]
    cache = out / "save" / "cache" / "embeddings" / key
    feats, track = np.load(cache / "features.npy"), np.load(cache / "track.npy")
    ids = json.loads((cache / "meta.json").read_text())["ids"]
    ds = load_prepared(out / "data" / "datasets" / spec.dataset)
    tracks = track_means(feats, track, len(ids))
    pos = {id_: i for i, id_ in enumerate(ids)}
    split = {name: (tracks[[pos[it.id] for it in ds.split(name)]], targets(ds, name)) for name in ("train", "valid", "test")}
    train_ids = {pos[it.id] for it in ds.split("train")}
    chunk_sel = np.fromiter((t in train_ids for t in track), bool, len(track))
    row = {"recipe": experiment, "backbone": init, "task": task, "metric": spec.primary_metric}
    row.update(spectrum_stats(feats[chunk_sel]))
    probe = ridge_probe(ds.task_type, ds.label_names, spec.primary_metric, split["train"], split["valid"], split["test"])
    row.update({"ridge_alpha": probe["alpha"], "ridge_test": probe["test"]})
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="a `mulap demo --out` folder")
    ap.add_argument("--csv", type=Path, default=None, help="write the rows here (default <out>/feature_diagnostics.csv)")
    args = ap.parse_args()
    experiments = sorted(p.name for p in (args.out / "save" / "experiments").iterdir() if p.is_dir())
    experiments.sort(key=lambda e: e != "mulap")
    rows = []
    for exp in experiments:
        inits = ["mulap", "random", "supervised_mtt"] if exp == "mulap" else ["mulap"]
        for init in inits:
            for task in TASKS:
                row = diagnose(args.out, exp, init, task)
                if row:
                    rows.append(row)
                    print(f"{exp:>20} {init:>15} {task:>16}  PR {row['participation_ratio']:6.1f}  "
                          f"top10 {row['top10_variance']:.3f}  ridge {row['ridge_test']:.3f}", flush=True)
    path = args.csv or args.out / "feature_diagnostics.csv"
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
