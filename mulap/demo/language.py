"""What language taught: the demo's measurement of the joint audio-text space.

Three models of one architecture are compared on the same data:
- `mulap`: the demo's pre-trained MuLaP;
- `shuffled`: the same recipe trained on captions permuted across clips (alignment destroyed, words kept);
- `untrained`: the initial weights of that recipe (MiniLM text branch, fresh audio side and projections),
  seeded like the probes' random backbone, so it shares its embedding cache.

For each: text->audio / audio->text retrieval on the corpus test split (contrastive, then re-ranked by
`match`), and zero-shot scores on the five downstream tasks (and, when the soundfont is at hand, on
NSynth notes rendered through a soundfont the world never uses), with 95 % bootstrap intervals and chance.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from mulap.infra.experiment import experiment_dir
from mulap.infra.files import write_json

log = logging.getLogger(__name__)
MODELS = ("mulap", "shuffled", "untrained")
TEMPLATE = "language.md.j2"  # the section's words; the numbers come from here


def untrained_model(exp_dir: Path, seed: int, device=None):
    """The recipe of `exp_dir` at its initial weights: backbone seeded as the probes' random init."""
    import torch

    from mulap.inference.api import Model
    from mulap.infra.config import load_config
    from mulap.models.mulap import MuLaP
    from mulap.models.text import load_tokenizer

    cfg = load_config(exp_dir / "config.yaml")
    torch.manual_seed(seed)
    net = MuLaP(cfg.model_config).eval()
    dev = torch.device(device) if device else torch.device("cpu")
    return Model(
        "untrained",
        net.backbone,
        dev,
        net,
        load_tokenizer(cfg.model_config.text.pretrained),
        int(cfg.model_config.text.max_seq_length),
        info={"source": None},
    )


def load_models(save_dir: Path, shuffled_id: str | None, seed: int) -> dict:
    from mulap.inference.api import load

    models = {"mulap": load("mulap", save_dir=save_dir, device="cpu")}
    if shuffled_id and experiment_dir(save_dir, shuffled_id).is_dir():
        models["shuffled"] = load(shuffled_id, save_dir=save_dir, device="cpu")
    models["untrained"] = untrained_model(experiment_dir(save_dir, "mulap"), seed)
    return models


def zero_shot_all(models: dict, datasets: dict, cache_root: Path, out: Path, num_workers: int = 2) -> dict:
    """{task: {model: {metric, value, ci, chance, ...}}} and per-track score files for paired comparisons."""
    from mulap.data.prepare import MANIFEST
    from mulap.evaluation.zeroshot import run_zeroshot
    from mulap.inference.cache import cached_embeddings

    table: dict[str, dict] = {}
    for task, ds in datasets.items():
        for name, model in models.items():
            emb = cached_embeddings(
                model.backbone,
                [it.id for it in ds.items],
                [it.audio_path for it in ds.items],
                ds.root / MANIFEST,
                cache_root,
                num_workers,
                True,
                desc=f"{name}: {task}",
            )
            m = run_zeroshot(model, ds, emb, out / "zeroshot" / name / task)
            table.setdefault(task, {})[name] = {
                "metric": m["primary_metric"],
                "value": m["value"],
                "ci": m["ci95"],
                "chance": m["chance"],
                "n_test": m["n_test_tracks"],
            }
            if m.get("value_raw") is not None:
                table[task][name]["value_raw"] = m["value_raw"]
    return table


def paired_zero_shot(out: Path, datasets: dict, a: str, b: str, n_boot: int = 500) -> dict:
    """Per task: the difference a - b of the primary zero-shot figure with a paired-bootstrap 95 % interval."""
    from mulap.evaluation.diagnostics import paired_bootstrap
    from mulap.evaluation.zeroshot import zero_shot_value

    res = {}
    for task, ds in datasets.items():
        fa, fb = out / "zeroshot" / a / task / "scores.npz", out / "zeroshot" / b / task / "scores.npz"
        if not (fa.is_file() and fb.is_file()):
            continue
        pa, pb = np.load(fa), np.load(fb)
        r = paired_bootstrap(
            ds.task_type,
            None,
            pa["y_true"],
            pa["scores"],
            pb["scores"],
            ds.label_names,
            n=n_boot,
            value=lambda y, s, ds=ds: zero_shot_value(ds.task_type, y, s, ds.label_names),
        )
        res[task] = {"diff": r["diff"], "ci": [r["low"], r["high"]]}
    return res


def retrieval_all(models: dict, corpus: Path, out: Path, rerank_n: int, num_workers: int = 2) -> tuple[dict, dict]:
    from mulap.evaluation.retrieval import evaluate_retrieval, paired_difference_ci, write_retrieval

    results, parts = {}, {}
    for name, model in models.items():
        r = evaluate_retrieval(model, corpus, "test", rerank_n, num_workers=num_workers)
        write_retrieval(r, out / "retrieval" / name)
        parts[name] = r.pop("_parts")
        results[name] = r
    comparisons = {}
    for other in ("shuffled", "untrained"):
        if other in parts and "mulap" in parts:
            comparisons[f"mulap_minus_{other}"] = {
                f"{d}_{k}": paired_difference_ci(parts["mulap"][(d, "contrastive")][k], parts[other][(d, "contrastive")][k])
                for d in ("t2a", "a2t")
                for k in ("R@1", "R@10")
            }
    return results, comparisons


def run_language(
    out: Path,
    save_dir: Path,
    corpus: Path,
    datasets: dict,
    shuffled_id: str | None,
    seed: int,
    rerank_n: int = 10,
    other_nsynth: object | None = None,
    num_workers: int = 2,
) -> dict:
    """The whole measurement; writes <out>/language/{retrieval,zeroshot}/... and language.json, returns the summary."""
    folder = out / "language"
    models = load_models(save_dir, shuffled_id, seed)
    cache_root = save_dir / "cache" / "embeddings"
    retrieval, comparisons = retrieval_all(models, corpus, folder, rerank_n, num_workers)
    zs = zero_shot_all(models, datasets, cache_root, folder, num_workers)
    paired = {
        f"mulap_minus_{o}": paired_zero_shot(folder, datasets, "mulap", o) for o in ("shuffled", "untrained") if o in models
    }
    other = None
    if other_nsynth is not None:
        other = zero_shot_all(models, {"nsynth_clf": other_nsynth}, cache_root, folder / "other_soundfont", num_workers)[
            "nsynth_clf"
        ]
    summary = {
        "retrieval": {
            "n_test": next(iter(retrieval.values()))["n"],
            "chance": next(iter(retrieval.values()))["chance"],
            "caption_ambiguity_bound": next(iter(retrieval.values()))["caption_ambiguity_bound"],
            "rerank_n": rerank_n,
            "models": {m: {d: _short(r[d]) for d in ("t2a", "a2t")} for m, r in retrieval.items()},
            "comparisons": comparisons,
        },
        "zeroshot": zs,
        "zeroshot_paired": paired,
        "zeroshot_other_soundfont": other,
    }
    write_json(folder / "language.json", summary)
    return summary


def _short(direction: dict) -> dict:
    """results.json's retrieval cell: the contrastive figures (+ CIs, mAP@10) and the re-ranked ones."""
    c = direction["contrastive"]
    out = {k: c[k] for k in ("R@1", "R@5", "R@10", "median_rank", "mAP@10")}
    out["ci95"] = c["ci95"]
    if "reranked" in direction:
        r = direction["reranked"]
        out["reranked"] = {k: r[k] for k in ("R@1", "R@5", "R@10", "median_rank", "mAP@10")} | {"ci95": r["ci95"]}
        out["rerank_minus_contrastive_R@1_ci95"] = direction.get("rerank_minus_contrastive_R@1_ci95")
    return out


# -- the report section ----------------------------------------------------------------------------------------
def markdown(summary: dict) -> list[str]:
    """The report's section "What language taught", as lines: the numbers of `summary` laid out by language.md.j2."""
    if not summary:
        return []
    return _render(taught=taught_context(summary))


def taught_context(summary: dict) -> dict:
    """The section's numbers and tables as plain data (interval cells already written as text)."""
    r = summary["retrieval"]
    zs = summary["zeroshot"]
    models = [m for m in MODELS if any(m in row for row in zs.values())]
    paired = summary.get("zeroshot_paired", {})
    mt = r["models"].get("mulap", {}).get("t2a", {})
    other = summary.get("zeroshot_other_soundfont")
    return {
        "n_test": r["n_test"],
        "rerank_n": r["rerank_n"],
        "retrieval": [_retrieval_row(m, cell) for m, cell in r["models"].items()],
        "chance": r["chance"],
        "bound": r["caption_ambiguity_bound"],
        "comparisons": [
            {"label": key.replace("_", " "), "intervals": [{"name": k, "lo": lo, "hi": hi} for k, (lo, hi) in vals.items()]}
            for key, vals in r.get("comparisons", {}).items()
        ],
        "rerank_minus": mt.get("rerank_minus_contrastive_R@1_ci95") or None,
        "models": models,
        "zeroshot": [
            {
                "task": task,
                "n_test": next(iter(row.values()))["n_test"],
                "cells": [_zs(row.get(m)) for m in models],
                "chance": next(iter(row.values()))["chance"],
                "diffs": [_diff(paired.get(f"mulap_minus_{o}", {}).get(task)) for o in ("shuffled", "untrained")],
            }
            for task, row in zs.items()
        ],
        "above": [task for task, row in zs.items() if _above_chance(row.get("mulap"))],
        # standardising moves accuracy only (ranking metrics per class are unchanged by it)
        "raw": [
            {"task": task, "accuracies": [{"name": m, "value": c["value_raw"]} for m, c in row.items() if "value_raw" in c]}
            for task, row in zs.items()
            if any("value_raw" in c and c["metric"] == "accuracy" for c in row.values())
        ],
        "other": _other_context(other) if other else None,
    }


def _retrieval_row(name: str, cell: dict) -> dict:
    t, a = cell["t2a"], cell["a2t"]
    rr = t.get("reranked")
    return {
        "name": name,
        "t2a_r1": _ci(t, "R@1"),
        "t2a_r5": _ci(t, "R@5"),
        "t2a_r10": _ci(t, "R@10"),
        "t2a_median": t["median_rank"],
        "a2t_r1": a["R@1"],
        "a2t_r10": a["R@10"],
        "a2t_median": a["median_rank"],
        "reranked": {"r1": _ci(rr, "R@1"), "r10": rr["R@10"]} if rr else None,
    }


def _above_chance(cell: dict | None) -> bool:
    return bool(cell and cell["ci"][0] is not None and cell["ci"][0] > cell["chance"])


def _other_context(other: dict) -> dict:
    first = next(iter(other.values()))
    return {
        "n_test": first["n_test"],
        "chance": first["chance"],
        "cells": [{"name": m, "cell": _zs(c)} for m, c in other.items()],
        "raw": [{"name": m, "value": c["value_raw"]} for m, c in other.items() if "value_raw" in c],
    }


def _render(taught: dict | None = None, gen: dict | None = None) -> list[str]:
    """One part of language.md.j2 (the other given as None), as the report's lines."""
    from mulap.demo import templates

    return templates.render(TEMPLATE, {"taught": taught, "gen": gen}).removesuffix("\n").split("\n")


def _ci(cell: dict, k: str) -> str:
    lo, hi = cell["ci95"][k]
    return f"{cell[k]:.3f} [{lo:.2f}, {hi:.2f}]"


def _zs(cell: dict | None) -> str:
    if not cell or cell["value"] is None:
        return "–"
    lo, hi = cell["ci"]
    return f"{cell['value']:.3f} [{lo:.3f}, {hi:.3f}]"


def _diff(d: dict | None) -> str:
    if not d or d["diff"] is None or d["ci"][0] is None:
        return "–"
    return f"{d['diff']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]"


def results_entries(summary: dict) -> dict:
    """The keys results.json gains (the issue's form, with intervals and re-ranked figures added)."""
    if not summary:
        return {}
    r = summary["retrieval"]
    retrieval = {
        "n_test": r["n_test"],
        "chance": r["chance"],
        "caption_ambiguity_bound": r["caption_ambiguity_bound"],
        "models": {m: {d: {k: v for k, v in cell[d].items()} for d in ("t2a", "a2t")} for m, cell in r["models"].items()},
    }
    out = {
        "retrieval": retrieval,
        "zeroshot": {t: {m: _entry(c) for m, c in row.items()} for t, row in summary["zeroshot"].items()},
    }
    if summary.get("zeroshot_other_soundfont"):
        out["zeroshot_other_soundfont"] = {"nsynth_clf": {m: _entry(c) for m, c in summary["zeroshot_other_soundfont"].items()}}
    return out


def _entry(cell: dict) -> dict:
    """A zero-shot cell of results.json: metric, value, ci, chance (+ value_raw where scores were standardised)."""
    return {k: cell[k] for k in ("metric", "value", "ci", "chance", "value_raw") if k in cell}


def note_sources(world: dict, ids) -> np.ndarray:
    """The timbre source (world.json's `timbre.clips`) of each of the world's NSynth test notes, by note id ("?" when
    unrecorded)."""
    clips = (world.get("timbre") or {}).get("clips", {})
    return np.array([clips.get(f"raw/nsynth/nsynth-test/audio/{i}.wav", {}).get("source", "?") for i in ids])


def generalisation(out: Path, world: dict, n_boot: int = 1000, seed: int = 0) -> dict:
    """Zero-shot NSynth family of the demo's MuLaP on the world's own test notes (its soundfonts, with the world's
    timbre variation; overall and per source) and on the held-out soundfont's notes (dry), each with a 95 %
    bootstrap interval over notes, and the gap world - held-out with its interval (the two note sets resampled
    independently): the measure of how far the joint space generalises to timbres it never heard. {} when either
    score file is missing."""
    fw = out / "language" / "zeroshot" / "mulap" / "nsynth_clf" / "scores.npz"
    fo = out / "language" / "other_soundfont" / "zeroshot" / "mulap" / "nsynth_clf" / "scores.npz"
    if not (fw.is_file() and fo.is_file()):
        return {}
    w, o = np.load(fw), np.load(fo)
    hit_w = np.asarray(w["scores"]).argmax(1) == np.asarray(w["y_true"])
    hit_o = np.asarray(o["scores"]).argmax(1) == np.asarray(o["y_true"])
    rng = np.random.default_rng(seed)

    def boot(hits: np.ndarray) -> np.ndarray:
        return hits[rng.integers(0, len(hits), (n_boot, len(hits)))].mean(1)

    def cell(hits: np.ndarray) -> dict:
        b = boot(hits)
        return {
            "value": float(hits.mean()),
            "ci": [float(np.percentile(b, 2.5)), float(np.percentile(b, 97.5))],
            "n_test": int(len(hits)),
        }

    bw, bo = boot(hit_w), boot(hit_o)
    gap = bw - bo
    source = note_sources(world, w["ids"])
    return {
        "metric": "accuracy",
        "world": cell(hit_w),
        "held_out": cell(hit_o),
        "world_by_source": {str(name): cell(hit_w[source == name]) for name in sorted(set(source))},
        "gap": float(hit_w.mean() - hit_o.mean()),
        "gap_ci": [float(np.percentile(gap, 2.5)), float(np.percentile(gap, 97.5))],
    }


def generalisation_lines(gen: dict) -> list[str]:
    """The report's paragraph on the gap between the world's timbres and the held-out soundfont."""
    if not gen:
        return []
    by_source = [{"name": name, **c} for name, c in gen["world_by_source"].items()]
    return _render(gen={**gen, "by_source": by_source})


def read_summary(out: Path) -> dict:
    path = out / "language" / "language.json"
    return json.loads(path.read_text()) if path.is_file() else {}
