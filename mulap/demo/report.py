"""The demo's results and report: what the probe runs, the diagnostics and the language stage left under <out>
read back into results.json's entries, and report.md rendered from them through the template report.md.j2
(every sentence and heading lives there; this module computes the numbers and tables it shows).

Also the demo's naming of its runs (PRETRAIN_ID, MODEL_DIR, probe_id, variant_seeds), shared with the pipeline
that writes them: the pipeline imports this module, never the other way round.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mulap.data.tasks import get_task
from mulap.demo import templates
from mulap.infra.experiment import experiment_dir
from mulap.infra.files import atomic_write_text, write_json

PRETRAIN_ID = "mulap"
MODEL_DIR = "model"  # <out>/model: the demo's MuLaP exported, for `mulap search` / `mulap zeroshot` / mulap.load
TEMPLATE = "report.md.j2"


# -- where the runs are -----------------------------------------------------------------------------
def variant_seeds(s) -> list[int]:
    """Probe seeds of the ablation's extra recipes (`variant_probe_seeds`; default: the first probe seed)."""
    return list(s.get("variant_probe_seeds") or list(s.probe_seeds)[:1])


def probe_id(task: str, init: str, seed: int) -> str:
    return f"{task}-{init}-s{seed}"


def _probe_folder(save_dir: Path, pretrain_id: str, downstream_id: str) -> Path:
    return experiment_dir(save_dir, pretrain_id) / "downstream" / downstream_id


# -- seedless check: ridge probe + paired bootstrap on the cached features ---------------------------
def backbone_diagnostics(out: Path, s, variants: dict) -> dict:
    """For every probed backbone (the default run's inits, then each recipe) and task: feature spectrum and a
    ridge probe on the embeddings its first-seed probe run cached, and the paired-bootstrap difference to the
    random-init backbone. Rows and comparisons are kept in <out>/diagnostics/, redone only when a cache key changes."""
    from mulap.data.prepare import load_prepared
    from mulap.evaluation.diagnostics import diagnose_features, paired_bootstrap
    from mulap.inference.cache import embedding_cache_root, read_cached

    save_dir, folder, seed = out / "save", out / "diagnostics", list(s.probe_seeds)[0]
    runs = {init: (PRETRAIN_ID, init) for init in s.inits}
    runs.update({name: (name, "mulap") for name in variants if name != PRETRAIN_ID})
    datasets: dict[str, object] = {}  # task -> PreparedDataset, read once

    def dataset(task: str):
        if task not in datasets:
            datasets[task] = load_prepared(out / "data" / "datasets" / get_task(task).dataset)
        return datasets[task]

    rows: dict[str, dict] = {}
    scored: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    stems: dict[tuple[str, str], Path] = {}
    for label, (exp, init) in runs.items():
        for task in s.tasks:
            did = probe_id(task, init, seed)
            summary = _probe_folder(save_dir, exp, did) / "summary.json"
            if not summary.is_file():
                continue
            key = json.loads(summary.read_text()).get("cache_key")
            stem = folder / f"{exp}-{did}"
            kept = json.loads(stem.with_suffix(".json").read_text()) if stem.with_suffix(".json").is_file() else {}
            npz = stem.with_suffix(".npz")  # test targets and ridge scores, absent when the probe had no valid metric
            if kept.get("cache_key") == key and (kept.get("ridge_test") is None or npz.is_file()):
                row = kept
                arrays = np.load(npz) if npz.is_file() else None
                y, scores = (arrays["y_test"], arrays["scores"]) if arrays is not None else (None, None)
            else:
                emb = read_cached(embedding_cache_root(save_dir), str(key))
                if emb is None:
                    continue
                spec = get_task(task)
                stats, y, scores = diagnose_features(emb.features, emb.track, emb.ids, dataset(task), spec.primary_metric)
                row = {"task": task, "metric": spec.primary_metric, "cache_key": key, **stats}
                folder.mkdir(exist_ok=True)
                if scores is not None:
                    np.savez(npz, y_test=y, scores=scores)
                write_json(stem.with_suffix(".json"), row)
            rows.setdefault(label, {})[task] = row
            stems[label, task] = stem
            if y is not None and scores is not None:  # both read or computed together
                scored[label, task] = (y, scores)
    vs_random: dict[str, dict] = {}
    for label in rows:
        for task in s.tasks:
            if label == "random" or (label, task) not in scored or ("random", task) not in scored:
                continue
            # the bootstrap is kept with the row, keyed by both backbones' caches: a re-written report reuses it
            keys = [rows[label][task]["cache_key"], rows["random"][task]["cache_key"]]
            path = stems[label, task].with_suffix(".vs_random.json")
            kept = json.loads(path.read_text()) if path.is_file() else {}
            if kept.get("keys") != keys:
                spec = get_task(task)
                (y, a), (_, b) = scored[label, task], scored["random", task]
                kept = {
                    "keys": keys,
                    "result": paired_bootstrap(spec.task_type, spec.primary_metric, y, a, b, dataset(task).label_names),
                }
                write_json(path, kept)
            vs_random.setdefault(label, {})[task] = kept["result"]
    return {"runs": rows, "vs_random": vs_random}


# -- the report -----------------------------------------------------------------------------------
def collect(save_dir: Path, pretrain_id: str, tasks, inits, seeds) -> dict:
    table: dict[str, dict] = {}
    for task in tasks:
        spec = get_task(task)
        table[task] = {}
        for init in inits:
            values, detail = [], []
            for seed in seeds:
                f = _probe_folder(save_dir, pretrain_id, probe_id(task, init, seed)) / "metrics.json"
                if f.is_file():
                    m = json.loads(f.read_text())
                    values.append(m.get(spec.primary_metric))
                    detail.append({k: v for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
            vals = [v for v in values if v is not None]
            if vals:
                table[task][init] = {
                    "metric": spec.primary_metric,
                    "mean": float(np.mean(vals)),
                    "std": float(np.std(vals)),
                    "seeds": vals,
                    "all_metrics": _mean_dicts(detail),
                }
    return table


def _mean_dicts(dicts: list[dict]) -> dict:
    keys = sorted(set().union(*dicts)) if dicts else []
    return {
        k: float(np.mean([d[k] for d in dicts if d.get(k) is not None])) for k in keys if any(d.get(k) is not None for d in dicts)
    }


def verdicts(table: dict, a: str = "mulap", b: str = "random") -> dict:
    """Per task: does `a` beat `b` by more than the larger of their spreads across probe seeds?"""
    out = {}
    for task, row in table.items():
        if a in row and b in row:
            margin = row[a]["mean"] - row[b]["mean"]
            spread = max(row[a]["std"], row[b]["std"])
            out[task] = {"margin": margin, "spread": spread, "wins": bool(margin > spread)}
    return out


def pretrain_curves(exp: Path) -> dict[str, list[tuple[float, float]]]:
    path = exp / "logs" / "csv" / "metrics.csv"
    curves: dict[str, list] = {}
    if not path.is_file():
        return curves
    with open(path) as fh:
        for row in csv.DictReader(fh):
            for k, v in row.items():
                if v and k.endswith(("_epoch",)) or (v and k.startswith("val/") and k != "val/skipped"):
                    curves.setdefault(k.replace("_epoch", ""), []).append((float(row["epoch"]), float(v)))
    return curves


def write_report(out: Path, s, variants: dict) -> dict:
    """Writes report.md and plots/ and returns the results (run_demo adds the stage times and writes results.json)."""
    from mulap.evaluation import plots

    save_dir = out / "save"
    tasks, inits, seeds = list(s.tasks), list(s.inits), list(s.probe_seeds)
    table = collect(save_dir, PRETRAIN_ID, tasks, inits, seeds)
    ablation = {}
    if len(variants) > 1:  # every recipe on the variants' probe seeds, the default recipe and the random backbone included
        vseeds = variant_seeds(s)
        ablation[f"{PRETRAIN_ID} (default recipe)"] = collect(save_dir, PRETRAIN_ID, tasks, ["mulap"], vseeds)
        ablation["random init"] = {
            t: {"mulap": c["random"]}
            for t, c in collect(save_dir, PRETRAIN_ID, tasks, ["random"], vseeds).items()
            if "random" in c
        }
        ablation.update({name: collect(save_dir, name, tasks, ["mulap"], vseeds) for name in variants if name != PRETRAIN_ID})
    plots_dir = out / "plots"
    plots_dir.mkdir(exist_ok=True)
    curves = pretrain_curves(experiment_dir(save_dir, PRETRAIN_ID))
    loss_curves = {k: v for k, v in curves.items() if not k.endswith("acc")}
    acc_curves = {k: v for k, v in curves.items() if k.endswith("acc")}
    plots.plot_curves(loss_curves, plots_dir / "pretrain_losses.png", title="pre-training losses", xlabel="epoch", ylabel="loss")
    plots.plot_curves(
        acc_curves, plots_dir / "pretrain_accuracy.png", title="held-out ATM / MLM accuracy", xlabel="epoch", ylabel="accuracy"
    )
    plots.plot_grouped_bars(table, plots_dir / "transfer.png")
    world = json.loads((out / "world" / "world.json").read_text()) if (out / "world" / "world.json").is_file() else {}
    results = {
        "tasks": {
            t: {i: {k: v for k, v in cell.items() if k != "all_metrics"} for i, cell in row.items()} for t, row in table.items()
        },
        "details": table,
        "mulap_vs_random": verdicts(table),
        "supervised_vs_random": verdicts(table, "supervised_mtt", "random"),
        "ablation": ablation,
        "diagnostics": backbone_diagnostics(out, s, variants),
        "pretrain": {k: v[-1][1] for k, v in curves.items() if v},
    }
    from mulap.demo import language

    summary = language.read_summary(out)
    results.update(language.results_entries(summary))
    results["zeroshot_generalisation"] = language.generalisation(out, world)
    results["world_timbre"] = world_timbre(out, world)
    results["model"] = first_model(out)
    if results["diagnostics"]["vs_random"]:
        plots.plot_intervals(
            results["diagnostics"]["vs_random"],
            plots_dir / "seedless_vs_random.png",
            title="ridge probe: backbone minus random init (95% paired-bootstrap interval)",
        )
    lines = language.markdown(summary) + language.generalisation_lines(results["zeroshot_generalisation"])
    atomic_write_text(out / "report.md", _markdown(results, s, world, curves, lines))
    return results


def first_model(out: Path) -> dict:
    """Where the exported model is and the commands that use it (the report's first section)."""
    from mulap.inference.loading import is_export

    folder = out / MODEL_DIR
    if not is_export(folder):
        return {}
    shown = _shown(folder)
    return {
        "path": str(folder),
        "commands": [
            f'mulap search {shown} ~/Music "a slow string quartet"',
            f"mulap zeroshot {shown} nsynth_clf downstream.dataset_dir={_shown(out / 'data' / 'datasets' / 'nsynth')}",
            f"python -c \"import mulap; m = mulap.load('{shown}'); print(m.embed_text(['solo flute']).shape)\"",
        ],
    }


def _shown(path: Path) -> str:
    """`path` as a user in the current folder would type it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def world_timbre(out: Path, world: dict) -> dict:
    """Which soundfonts rendered how many clips of each dataset (world.json) and what each cost (world_render.json)."""
    t = world.get("timbre") or {}
    counts: dict[str, dict[str, int]] = {}
    for rel, timbre in t.get("clips", {}).items():
        parts = rel.split("/")
        dataset = parts[1] if parts[0] == "raw" else parts[0]
        row = counts.setdefault(dataset, {})
        row[timbre["source"]] = row.get(timbre["source"], 0) + 1
    render = json.loads((out / "world_render.json").read_text()) if (out / "world_render.json").is_file() else {}
    return {"sources": t.get("sources", {}), "files": counts, "render": render}


def _markdown(results: dict, s, world: dict, curves: dict, language_lines: Sequence[str] = ()) -> str:
    """report.md: the template filled with what `results` holds (plus the world, the pre-training curves and the
    lines of "What language taught")."""
    return templates.render(TEMPLATE, report_context(results, s, world, curves, language_lines))


def report_context(results: dict, s, world: dict, curves: dict, language_lines=()) -> dict:
    """Every number and table of the report as plain data; the template (report.md.j2) words and lays them out."""
    details = results["details"]
    tasks = list(details)
    inits = list(s.inits)
    sv = results.get("supervised_vs_random", {})
    v = results["mulap_vs_random"]
    return {
        "generated": time.strftime("%Y-%m-%d %H:%M"),
        "machine": _machine(),
        "model": _model_context(results.get("model") or {}, results.get("world_timbre") or {}),
        "timbre": _timbre_context(results.get("world_timbre") or {}),
        "probe_seeds": list(s.probe_seeds),
        "inits": inits,
        "transfer": [
            {"task": task, "metric": next(iter(row.values()))["metric"] if row else "", "cells": [row.get(i) for i in inits]}
            for task, row in details.items()
        ],
        "vs_random": [{"task": t, **x} for t, x in v.items()],
        "vs_random_wins": sum(1 for x in v.values() if x["wins"]),
        "to_supervised": [
            {"task": t, "diff": row["mulap"]["mean"] - row["supervised_mtt"]["mean"]}
            for t, row in details.items()
            if "mulap" in row and "supervised_mtt" in row
        ],
        "supervised_vs_random": [{"task": t, **x} for t, x in sv.items()],
        "supervised_wins": sum(x["wins"] for x in sv.values()),
        "emomusic": [
            {"init": init, "arousal": c["all_metrics"]["r2_arousal"], "valence": c["all_metrics"]["r2_valence"]}
            for init, c in details.get("emomusic_reg", {}).items()
            if {"r2_arousal", "r2_valence"} <= set(c.get("all_metrics", {}))
        ],
        "language_lines": list(language_lines),
        "seedless": _seedless_context(results.get("diagnostics", {}), tasks),
        "ablation": _ablation_context(results["ablation"], s, tasks),
        "pretrain_final": [{"name": k, "value": v[-1][1]} for k, v in sorted(curves.items())],
        "world": _world_context(world),
    }


def _model_context(model: dict, timbre: dict) -> dict | None:
    if not model:
        return None
    corpus = (timbre.get("files") or {}).get("audiocaption", {})
    return {
        "path": model["path"],
        "commands": list(model["commands"]),
        "corpus_clips": sum(corpus.values()),
        "corpus_sources": len(corpus),
    }


def _timbre_context(t: dict) -> dict | None:
    if not t.get("files"):
        return None
    sources = sorted({s for row in t["files"].values() for s in row})
    render = t.get("render") or {}
    return {
        "sources": sources,
        "files": [{"dataset": dataset, "counts": [row.get(s, 0) for s in sources]} for dataset, row in t["files"].items()],
        "descriptions": [
            {"name": n, "description": d.get("description"), "file": d.get("file"), "mb": d.get("bytes", 0) / 1e6}
            for n, d in t.get("sources", {}).items()
        ],
        "costs": [
            {
                "name": n,
                "jobs": int(c["jobs"]),
                "audio_h": c["audio_s"] / 3600,
                "synth_s": c["synth_s"],
                "ms_per_audio_s": 1000 * c["synth_s"] / max(c["audio_s"], 1e-9),
                "effects_s": c["effects_s"],
            }
            for n, c in render.get("sources", {}).items()
        ],
        "build_seconds": render.get("build_seconds", 0),
    }


def _seedless_context(diag: dict, tasks: list[str]) -> dict | None:
    """The ridge probe per backbone and task, its paired-bootstrap difference to random init (None where absent)."""
    runs, vs = diag.get("runs", {}), diag.get("vs_random", {})
    if not runs:
        return None
    rows = []
    for label, row in runs.items():
        cells = []
        for t in tasks:
            r, d = row.get(t), vs.get(label, {}).get(t)
            cells.append(
                {
                    "ridge": None if r is None else r.get("ridge_test"),
                    "vs_random": d if d is not None and d["low"] is not None else None,
                }
            )
        rows.append(
            {
                "label": label,
                "cells": cells,
                "better": None if label == "random" else sum((d["low"] or 0) > 0 for d in vs.get(label, {}).values()),
                "participation_ratio": np.mean([r["participation_ratio"] for r in row.values()]),
            }
        )
    return {"tasks": tasks, "rows": rows}


def _ablation_context(ablation: dict, s, tasks: list[str]) -> dict | None:
    """Each recipe's cells on the variants' probe seeds and its wins over the random-init backbone (None for it)."""
    if not ablation:
        return None
    rand = {t: {"random": c["mulap"]} for t, c in ablation.get("random init", {}).items()}
    rows = []
    for name, table in ablation.items():
        both = {t: {**rand.get(t, {}), **table.get(t, {})} for t in tasks}
        rows.append(
            {
                "name": name,
                "cells": [table.get(t, {}).get("mulap") for t in tasks],
                "wins": None if name == "random init" else sum(x["wins"] for x in verdicts(both).values()),
            }
        )
    seeds = variant_seeds(s)
    return {"seeds": seeds, "with_std": len(seeds) > 1, "tasks": tasks, "rows": rows}


def _world_context(world: dict) -> dict | None:
    if not world:
        return None
    corpus = world.get("corpus", {})
    splits: dict[str, int] = {}
    for piece in world.get("pieces", {}).values():
        splits[piece.get("split", "?")] = splits.get(piece.get("split", "?"), 0) + 1
    return {
        "size": world.get("size"),
        "seed": world.get("seed"),
        "clips": len(corpus),
        "hours": sum(c.get("duration_s", 0) for c in corpus.values()) / 3600,
        "pieces": len(world.get("pieces", {})),
        "splits": splits,
        "downstream": [{"name": k, "clips": len(world[k])} for k in ("mtt", "jamendo", "fma", "emomusic") if k in world],
    }


def _machine() -> str:
    return f"{platform.machine()} {os.cpu_count()} CPU(s), {platform.platform(terse=True)}"
