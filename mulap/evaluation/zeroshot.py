"""Zero-shot classification, tagging and emotion regression from text prompts, in the joint space.

Each track's embedding is its projected mean chunk feature (what the contrastive objective trains);
each class's is the mean of its prompts' text embeddings. Scores are cosines:

- tagging (multilabel): score[n, k] = cos(track n, class k) -> ROC-AUC / PR-AUC macro (ranking metrics need
  no threshold; F1 thresholds are tuned on the validation split's scores, as `mulap eval` does);
- classification: the highest-scoring class -> accuracy, macro-F1;
- classification and tagging scores are first standardised per class by the mean and spread of that
  class's scores over the *validation* split's tracks (no labels used): a class whose prompts sit near
  every clip (in the demo, "flute" drew 60 % of NSynth's raw predictions) loses its head start. Ranking
  metrics per class are unchanged by it; accuracy moves (`value_raw` in metrics.json keeps the raw
  cosines' figure; `calibrate=False` / `mulap zeroshot --raw` turns it off);
- Emomusic (regression): per dimension, cos(track, "high" prompts) - cos(track, "low" prompts), e.g.
  energetic vs calm for arousal, happy vs sad for valence. The primary figure is Pearson's r between that
  contrast and the annotations (no label used at all; chance 0). The r2 keys of `mulap eval` are given
  too, on the contrast mapped to the 1-9 scale by an affine fit on the *validation* split (2 numbers per
  dimension), so they are comparable with a probe's R² while saying how much is calibration.

Metrics and files come from the same code as `mulap eval` (mulap.evaluation.outputs).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from mulap.evaluation.metrics import primary_value
from mulap.evaluation.prompts import as_lists, check_prompts, default_prompts, read_prompts

log = logging.getLogger(__name__)


def primary(task_type: str) -> str:
    return {"multilabel": "roc_auc_macro", "multiclass": "accuracy", "regression": "pearson"}[task_type]


def chance_level(task_type: str, n_classes: int) -> float:
    """What scores carrying no information get: ROC-AUC 0.5, accuracy 1/K (a uniform guess), r 0."""
    return {"multilabel": 0.5, "multiclass": 1.0 / n_classes, "regression": 0.0}[task_type]


def class_embeddings(model, prompts: dict, labels: list[str]) -> np.ndarray:
    """[K, d]: the normalised mean of each class's prompt embeddings (a prompt ensemble)."""
    texts = [t for c in labels for t in prompts[c]]
    emb = model.embed_text(texts)
    out, i = [], 0
    for c in labels:
        n = len(prompts[c])
        m = emb[i : i + n].mean(0)
        out.append(m / max(np.linalg.norm(m), 1e-12))
        i += n
    return np.stack(out)


def zero_shot_scores(model, track_features: np.ndarray, task_type: str, labels: list[str], prompts: dict) -> np.ndarray:
    """Track backbone features [N, F] -> scores [N, K] (classes) or [N, D] (regression contrasts)."""
    a = model.project_audio(track_features)
    if task_type == "regression":
        highs = class_embeddings(model, {c: prompts[c]["high"] for c in labels}, labels)
        lows = class_embeddings(model, {c: prompts[c]["low"] for c in labels}, labels)
        return a @ highs.T - a @ lows.T
    return a @ class_embeddings(model, prompts, labels).T


def pearson(y: np.ndarray, s: np.ndarray) -> float | None:
    y, s = np.asarray(y, np.float64), np.asarray(s, np.float64)
    if len(y) < 3 or y.std() == 0 or s.std() == 0:
        return None
    return float(np.corrcoef(y, s)[0, 1])


def regression_summary(y: np.ndarray, s: np.ndarray, names: list[str]) -> dict:
    rs = {f"pearson_{n}": pearson(y[:, j], s[:, j]) for j, n in enumerate(names)}
    vals = [v for v in rs.values() if v is not None]
    return {"pearson": float(np.mean(vals)) if vals else None, **rs}


def zero_shot_value(task_type: str, y: np.ndarray, s: np.ndarray, labels: list[str]) -> float | None:
    """The task's primary zero-shot figure (see `primary`)."""
    if task_type == "regression":
        return regression_summary(y, s, labels)["pearson"]
    return primary_value(task_type, primary(task_type), y, s, labels)


def bootstrap_interval(
    task_type: str, y: np.ndarray, s: np.ndarray, labels: list[str], n_boot: int = 500, seed: int = 0
) -> list[float | None]:
    """95 % percentile interval of the primary figure over test tracks resampled with replacement."""
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        v = zero_shot_value(task_type, y[idx], s[idx], labels)
        if v is not None:
            vals.append(v)
    if not vals:
        return [None, None]
    return [float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))]


def calibrate(y_valid: np.ndarray, s_valid: np.ndarray, s_test: np.ndarray) -> np.ndarray:
    """Affine map of each contrast dimension onto the annotation scale, fitted on the validation split."""
    out = np.empty_like(s_test, dtype=np.float64)
    for j in range(s_test.shape[1]):
        if np.std(s_valid[:, j]) > 0:
            slope, icept = np.polyfit(s_valid[:, j], y_valid[:, j], 1)
        else:
            slope, icept = 0.0, float(np.mean(y_valid[:, j]))
        out[:, j] = slope * s_test[:, j] + icept
    return out


def standardise(s_valid: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Each class's scores minus its mean over the validation tracks, over their standard deviation (a
    label-free correction of the classes' priors; a class that scores every validation track alike keeps
    its spread of 1)."""
    mu, sd = s_valid.mean(axis=0), s_valid.std(axis=0)
    return ((s - mu) / np.where(sd > 0, sd, 1.0)).astype(np.float32)


def task_prompts(task: str, task_type: str, labels: list[str], prompts_file: str | Path | None) -> dict:
    if prompts_file is not None:
        return as_lists(read_prompts(prompts_file, task_type, labels))
    data = default_prompts(task, labels)
    check_prompts(data, task_type, labels, f"default prompts of {task}")
    return as_lists(data)


def track_means(emb, ds, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(track-mean backbone features [N, F] of a split, in manifest order, their targets)."""
    from mulap.data.prepare import targets

    pos = {id_: i for i, id_ in enumerate(emb.ids)}
    items = ds.split(split)
    sums = np.zeros((len(emb.ids), emb.features.shape[1]), np.float64)
    np.add.at(sums, emb.track, emb.features)
    counts = np.bincount(emb.track, minlength=len(emb.ids))
    idx = np.array([pos[it.id] for it in items], dtype=np.int64)
    if (counts[idx] == 0).any():
        raise ValueError(f"{int((counts[idx] == 0).sum())} {split} track(s) of {ds.task} have no embedded chunk")
    return (sums[idx] / counts[idx, None]).astype(np.float32), targets(ds, split)


def run_zeroshot(
    model, ds, emb, out: Path, prompts_file: str | Path | None = None, n_boot: int = 500, calibrate_classes: bool = True
) -> dict:
    """Zero-shot scores of a prepared dataset's valid and test splits, evaluated and written into `out`
    like `mulap eval` (metrics.json, metrics.tsv, predictions.npz, plots/), plus prompts.json.
    `calibrate_classes`: standardise class scores on the validation split (see the module docstring)."""
    from mulap.evaluation.outputs import evaluate_and_write
    from mulap.infra.files import write_json

    labels = list(ds.label_names)
    prompts = task_prompts(ds.task, ds.task_type, labels, prompts_file)
    feats_v, y_v = track_means(emb, ds, "valid")
    feats_t, y_t = track_means(emb, ds, "test")
    # one call for both splits: the prompts go through the text encoder once
    both = zero_shot_scores(model, np.concatenate([feats_v, feats_t]), ds.task_type, labels, prompts)
    s_v, s_t = both[: len(feats_v)], both[len(feats_v) :]
    raw_t = s_t
    calibrated = calibrate_classes and ds.task_type != "regression"
    if calibrated:
        s_v, s_t = standardise(s_v, s_v), standardise(s_v, s_t)
    value = zero_shot_value(ds.task_type, y_t, s_t, labels)
    extra = {
        "backbone": model.name,
        "zero_shot": True,
        "primary_metric": primary(ds.task_type),
        "value": value,
        "ci95": bootstrap_interval(ds.task_type, y_t, s_t, labels, n_boot),
        "chance": chance_level(ds.task_type, len(labels)),
        "prompts": "file " + str(prompts_file) if prompts_file else "default",
        "calibration": "class scores standardised on the validation split (no labels)" if calibrated else "none",
    }
    if calibrated:
        extra["value_raw"] = zero_shot_value(ds.task_type, y_t, raw_t, labels)
    if ds.task_type == "regression":
        extra.update(regression_summary(y_t, s_t, labels))
        extra["r2_note"] = "r2 keys: the contrast mapped to the annotation scale by an affine fit on the validation split"
        scored = (y_v, calibrate(y_v, s_v, s_v)), (y_t, calibrate(y_v, s_v, s_t))
    else:
        scored = (y_v, s_v), (y_t, s_t)
    metrics = evaluate_and_write(Path(out), ds, *scored, extra=extra)
    write_json(Path(out) / "prompts.json", prompts)
    # the test scores the figure comes from (paired comparisons between models) and the raw cosines
    np.savez(Path(out) / "scores.npz", ids=np.array([it.id for it in ds.split("test")]), y_true=y_t, scores=s_t, raw_scores=raw_t)
    return metrics
