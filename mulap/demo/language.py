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
    if not summary:
        return []
    r = summary["retrieval"]
    ch, amb = r["chance"], r["caption_ambiguity_bound"]
    lines = [
        "",
        "## What language taught",
        "",
        f"Three models of one architecture: **mulap** (the pre-trained model), **shuffled** (the same recipe on "
        f"captions permuted across clips: same words, no alignment) and **untrained** (the recipe's initial weights). "
        f"Retrieval on the corpus test split ({r['n_test']} clips, one caption each); 95 % bootstrap intervals over "
        f"queries in brackets; re-ranked = the top {r['rerank_n']} of the contrastive shortlist re-scored by MuLaP's "
        "audio-text matching head through the co-attention.",
        "",
        "| model | t2a R@1 | t2a R@5 | t2a R@10 | t2a median rank | a2t R@1 | a2t R@10 | a2t median rank "
        "| t2a R@1 re-ranked | t2a R@10 re-ranked |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m, cell in r["models"].items():
        t, a = cell["t2a"], cell["a2t"]
        rr = t.get("reranked")
        reranked = f"{_ci(rr, 'R@1')} | {rr['R@10']:.3f}" if rr else "– | –"
        lines.append(
            f"| {m} | {_ci(t, 'R@1')} | {_ci(t, 'R@5')} | {_ci(t, 'R@10')} | {t['median_rank']:.1f} | "
            f"{a['R@1']:.3f} | {a['R@10']:.3f} | {a['median_rank']:.1f} | {reranked} |"
        )
    lines.append(
        f"| chance | {ch['R@1']:.3f} | {ch['R@5']:.3f} | {ch['R@10']:.3f} | {ch['median_rank']:.1f} | "
        f"{ch['R@1']:.3f} | {ch['R@10']:.3f} | {ch['median_rank']:.1f} | | |"
    )
    lines.append(
        f"| caption-ambiguity bound | {amb['R@1']:.3f} | {amb['R@5']:.3f} | {amb['R@10']:.3f} | "
        f"{amb['median_rank']:.1f} | | | | | |"
    )
    lines += [
        "",
        f"The bound: {amb['captions_with_near_duplicates']} of {r['n_test']} test captions have a near-duplicate "
        f"(cosine ≥ {amb['threshold']} in an untrained sentence encoder), so even a perfect model cannot tell those clips "
        "apart from their captions alone.",
    ]
    comp = r.get("comparisons", {})
    for key, vals in comp.items():
        lines.append(f"- {key.replace('_', ' ')}: " + ", ".join(f"{k} {lo:+.3f}..{hi:+.3f}" for k, (lo, hi) in vals.items()))
    mt = r["models"].get("mulap", {}).get("t2a", {})
    if "rerank_minus_contrastive_R@1_ci95" in mt and mt["rerank_minus_contrastive_R@1_ci95"]:
        lo, hi = mt["rerank_minus_contrastive_R@1_ci95"]
        lines.append(f"- re-ranked minus contrastive, text→audio R@1 (mulap): 95 % interval {lo:+.3f}..{hi:+.3f}")
    zs = summary["zeroshot"]
    models = [m for m in MODELS if any(m in row for row in zs.values())]
    lines += [
        "",
        "Zero-shot on the downstream test splits from the default prompt ensembles (no training on the task): "
        "ROC-AUC macro (tagging), accuracy (classification), Pearson r of the prompt contrast (Emomusic: energetic "
        "vs calm for arousal, happy vs sad for valence, mean of the two). Class scores are standardised by each "
        "class's mean and spread over the validation split's tracks (no labels; `mulap zeroshot --raw` turns it "
        "off): it leaves ranking metrics alone and removes the head start of prompts that sit near every clip; "
        "accuracies from the raw cosines are given after the table.",
        "",
        "| task | n test | " + " | ".join(models) + " | chance | mulap − shuffled | mulap − untrained |",
        "|---|---|" + "---|" * (len(models) + 3),
    ]
    above = []
    paired = summary.get("zeroshot_paired", {})
    for task, row in zs.items():
        first = next(iter(row.values()))
        cells = [_zs(row.get(m)) for m in models]
        diffs = [_diff(paired.get(f"mulap_minus_{o}", {}).get(task)) for o in ("shuffled", "untrained")]
        lines.append(
            f"| {task} | {first['n_test']} | " + " | ".join(cells) + f" | {first['chance']:.3f} | " + " | ".join(diffs) + " |"
        )
        m = row.get("mulap")
        if m and m["ci"][0] is not None and m["ci"][0] > m["chance"]:
            above.append(task)
    lines += [
        "",
        f"MuLaP's zero-shot is above chance beyond its 95 % interval on **{len(above)} of {len(zs)}** tasks"
        + (f" ({', '.join(above)})." if above else "."),
    ]
    # standardising moves accuracy only (ranking metrics per class are unchanged by it)
    raw = [
        f"{task} " + ", ".join(f"{m} {c['value_raw']:.3f}" for m, c in row.items() if "value_raw" in c)
        for task, row in zs.items()
        if any("value_raw" in c and c["metric"] == "accuracy" for c in row.values())
    ]
    if raw:
        lines += ["", "Accuracy from the raw cosines (no standardisation): " + "; ".join(raw) + "."]
    other = summary.get("zeroshot_other_soundfont")
    if other:
        first = next(iter(other.values()))
        lines += [
            "",
            f"NSynth instrument family on {first['n_test']} notes of every GM program rendered through a soundfont "
            "the world never uses (Debian's csound GM bank): "
            + ", ".join(f"{m} {_zs(c)}" for m, c in other.items())
            + f"; chance {first['chance']:.3f}"
            + (
                " (raw cosines: " + ", ".join(f"{m} {c['value_raw']:.3f}" for m, c in other.items() if "value_raw" in c) + ")"
                if any("value_raw" in c for c in other.values())
                else ""
            )
            + ".",
        ]
    lines += [
        "",
        "Reading: the corpus captions name instruments, style/era, tempo, dynamics, texture, key and metre. "
        "Retrieval and zero-shot measure how much of that the joint space carries: what a caption names "
        "*and* the audio side can hear (timbre, tempo, loudness, texture) can be learnt; key and mode cannot, "
        "because Musicnn's front end is nearly transposition-invariant (see the section above), so happy/sad "
        "prompts and valence stay near chance; and what captions never name (NSynth's pitch, FMA's labels beyond "
        "instrumentation) cannot be learnt from them. The shuffled control keeps every word and "
        "removes only the pairing: what mulap does beyond it is what the alignment taught.",
    ]
    return lines


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
    clips = (world.get("timbre") or {}).get("clips", {})
    source = np.array([clips.get(f"raw/nsynth/nsynth-test/audio/{i}.wav", {}).get("source", "?") for i in w["ids"]])
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
    w, h = gen["world"], gen["held_out"]
    per = ", ".join(f"{name} {_cell(c)} ({c['n_test']} notes)" for name, c in gen["world_by_source"].items())
    lo, hi = gen["gap_ci"]
    return [
        "",
        "**Generalisation to an unheard soundfont** (NSynth instrument family, zero-shot, the demo's MuLaP; "
        "95 % bootstrap intervals over notes): on the world's own test notes " + _cell(w) + f" ({w['n_test']} notes; "
        f"per soundfont: {per}); on the held-out soundfont's notes {_cell(h)} ({h['n_test']} notes, rendered dry "
        f"through a bank the world never uses). Gap, world minus held-out: **{gen['gap']:+.3f}** [{lo:+.3f}, {hi:+.3f}] "
        "(the two note sets resampled independently): the smaller, the better the joint space carries an instrument "
        "family to timbres it never heard.",
    ]


def _cell(c: dict) -> str:
    return f"{c['value']:.3f} [{c['ci'][0]:.3f}, {c['ci'][1]:.3f}]"


def read_summary(out: Path) -> dict:
    path = out / "language" / "language.json"
    return json.loads(path.read_text()) if path.is_file() else {}
