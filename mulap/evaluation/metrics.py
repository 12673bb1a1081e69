"""Task metrics (SPEC §5), computed with scikit-learn.

Tagging (multilabel, y_true [N, K] 0/1, y_score [N, K] any monotone score):
  roc_auc_macro / pr_auc_macro  mean over tags of sklearn's roc_auc_score /
                                average_precision_score; a tag with no positive in
                                y_true has neither and is left out (ROC-AUC also leaves
                                out a tag with no negative); the names of the tags left
                                out are reported.
  roc_auc_micro / pr_auc_micro  sklearn's average="micro" over all tags.
  f1_macro / f1_micro           F1 of the decisions score >= threshold[k], with one
                                threshold per tag chosen on the PR curve: the threshold of
                                sklearn's precision_recall_curve that maximises that tag's
                                F1 on the tuning predictions. Pass thresholds tuned on the
                                validation set (`tune_thresholds`); without them they are
                                tuned on the evaluated set itself (optimistic, reported as
                                threshold_source "this_set"). Macro leaves out the same
                                tags as the AUCs; micro pools every tag.
Classification (multiclass, y_true [N] int, y_score [N, K]):
  accuracy, f1_macro (over the classes present in y_true), top5_accuracy (K > 5),
  per-class recall and F1, confusion matrix (rows true, columns predicted).
Regression (y_true, y_score [N, D]; Emomusic D = 2 arousal, valence):
  r2 (sklearn r2_score, uniform average over outputs) and r2_<name> per output.

Undefined values are None (JSON null), never NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    r2_score,
    recall_score,
    roc_auc_score,
    top_k_accuracy_score,
)

# metrics where lower is better (none of the task metrics; losses and errors are)
_LOWER_IS_BETTER = ("loss", "mse", "mae", "rmse")


def primary_metric(task: str) -> str:
    """The metric a task is early-stopped and ranked on (e.g. 'roc_auc_macro' for mtt_tagging)."""
    from mulap.data.tasks import get_task  # late: keeps evaluation importable without the data package loaded

    return get_task(task).primary_metric


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of `metric` is better (True for every task metric here)."""
    return not metric.split("/")[-1].endswith(_LOWER_IS_BETTER)


def aggregate_tracks(chunk_scores: np.ndarray, track_index: np.ndarray, n_tracks: int | None = None) -> np.ndarray:
    """Mean of the chunk outputs of each track.

    chunk_scores [N_chunks, K] (or [N_chunks]), track_index [N_chunks] ints in 0..n_tracks-1
    -> [n_tracks, K] (or [n_tracks]). n_tracks defaults to max(track_index) + 1; a track
    with no chunk is an error.
    """
    scores = np.asarray(chunk_scores, dtype=np.float64)
    idx = np.asarray(track_index)
    if idx.ndim != 1 or len(idx) != len(scores):
        raise ValueError(f"track_index must be [N_chunks] = [{len(scores)}], got shape {idx.shape}")
    if len(idx) and (not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0):
        raise ValueError("track_index must hold non-negative integers")
    n = int(idx.max()) + 1 if n_tracks is None and len(idx) else int(n_tracks or 0)
    counts = np.bincount(idx, minlength=n)
    if len(counts) > n:
        raise ValueError(f"track_index holds {len(counts) - 1} >= n_tracks = {n}")
    if (counts == 0).any():
        raise ValueError(f"track(s) {np.flatnonzero(counts == 0)[:5].tolist()} have no chunk")
    flat = scores.reshape(len(scores), -1)
    sums = np.zeros((n, flat.shape[1]), dtype=np.float64)
    np.add.at(sums, idx, flat)
    out = sums / counts[:, None]
    return out.reshape((n,) + scores.shape[1:])


def _f1_best_threshold(y: np.ndarray, s: np.ndarray) -> float:
    """Threshold on the PR curve maximising F1 for one tag (predict positive when s >= threshold)."""
    if y.sum() == 0:
        # no positive to find: the best decision never fires on this set
        return float(np.nextafter(s.max(), np.inf)) if len(s) else 0.5
    precision, recall, thr = precision_recall_curve(y, s)
    p, r = precision[:-1], recall[:-1]  # the last point (P=1, R=0) has no threshold
    denom = p + r
    f1 = np.divide(2 * p * r, denom, out=np.zeros_like(denom), where=denom > 0)
    return float(thr[int(np.argmax(f1))])


def tune_thresholds(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """Per-tag F1-maximising thresholds on the PR curve. y_true, y_score [N, K] -> [K]."""
    y_true, y_score = _check_multilabel(y_true, y_score)
    return np.asarray([_f1_best_threshold(y_true[:, k], y_score[:, k]) for k in range(y_true.shape[1])], dtype=np.float64)


def _check_multilabel(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.ndim != 2 or y_true.shape != y_score.shape:
        raise ValueError(f"multilabel y_true and y_score must both be [N, K]; got {y_true.shape} and {y_score.shape}")
    if not np.isin(y_true, (0, 1)).all():
        raise ValueError("multilabel y_true must hold only 0 and 1")
    if not np.isfinite(y_score).all():
        raise ValueError("y_score holds NaN or infinite values")
    return y_true.astype(np.int64), y_score


def _safe(fn, *args, **kwargs) -> float | None:
    try:
        v = float(fn(*args, **kwargs))
    except ValueError:
        return None
    return v if np.isfinite(v) else None


def _mean_or_none(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def multilabel_metrics(
    y_true: np.ndarray, y_score: np.ndarray, label_names: Sequence[str], thresholds: np.ndarray | None = None
) -> dict[str, Any]:
    """Tagging metrics; see the module docstring."""
    y_true, y_score = _check_multilabel(y_true, y_score)
    n, k = y_true.shape
    if len(label_names) != k:
        raise ValueError(f"{len(label_names)} label names for {k} tags")
    pos = y_true.sum(0)
    neg = n - pos
    has_pos = pos > 0
    roc_ok = has_pos & (neg > 0)
    source = "given"
    if thresholds is None:
        thresholds, source = tune_thresholds(y_true, y_score), "this_set"
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.shape != (k,):
        raise ValueError(f"thresholds must be [{k}], got {thresholds.shape}")
    y_pred = (y_score >= thresholds[None, :]).astype(np.int64)

    per_class: dict[str, dict[str, Any]] = {}
    for j, name in enumerate(label_names):
        per_class[name] = {
            "roc_auc": _safe(roc_auc_score, y_true[:, j], y_score[:, j]) if roc_ok[j] else None,
            "pr_auc": _safe(average_precision_score, y_true[:, j], y_score[:, j]) if has_pos[j] else None,
            "f1": float(f1_score(y_true[:, j], y_pred[:, j], zero_division=0)) if has_pos[j] else None,
            "threshold": float(thresholds[j]),
            "support": int(pos[j]),
        }
    keep = np.flatnonzero(has_pos)
    return {
        "roc_auc_macro": _mean_or_none([per_class[label_names[j]]["roc_auc"] for j in range(k)]),
        "pr_auc_macro": _mean_or_none([per_class[label_names[j]]["pr_auc"] for j in range(k)]),
        "roc_auc_micro": _safe(roc_auc_score, y_true, y_score, average="micro"),
        "pr_auc_micro": _safe(average_precision_score, y_true, y_score, average="micro"),
        "f1_macro": float(f1_score(y_true[:, keep], y_pred[:, keep], average="macro", zero_division=0)) if len(keep) else None,
        "f1_micro": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        "n_items": int(n),
        "n_labels": int(k),
        "n_labels_evaluated": int(has_pos.sum()),
        "labels_without_positives": [label_names[int(j)] for j in np.flatnonzero(~has_pos)],
        "labels_without_negatives": [label_names[int(j)] for j in np.flatnonzero(has_pos & (neg == 0))],
        "threshold_source": source,
        "per_class": per_class,
    }


def multiclass_metrics(y_true: np.ndarray, y_score: np.ndarray, label_names: Sequence[str]) -> dict[str, Any]:
    """Classification metrics from class scores; see the module docstring."""
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    k = len(label_names)
    if y_true.ndim != 1 or y_score.shape != (len(y_true), k):
        raise ValueError(f"multiclass y_true must be [N] and y_score [N, {k}]; got {y_true.shape} and {y_score.shape}")
    if len(y_true) and (not np.issubdtype(y_true.dtype, np.integer) or y_true.min() < 0 or y_true.max() >= k):
        raise ValueError(f"multiclass y_true must hold class indices 0..{k - 1}")
    y_pred = y_score.argmax(1)
    present = np.unique(y_true)
    labels = np.arange(k)
    recall = recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    f1 = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    support = np.bincount(y_true, minlength=k)
    out: dict[str, Any] = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1_macro": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "n_items": int(len(y_true)),
        "n_labels": k,
        "classes_without_examples": [label_names[j] for j in range(k) if support[j] == 0],
    }
    if k > 5:
        out["top5_accuracy"] = float(top_k_accuracy_score(y_true, y_score, k=5, labels=labels))
    out["per_class"] = {
        name: {
            "recall": float(recall[j]) if support[j] else None,
            "f1": float(f1[j]) if support[j] else None,
            "support": int(support[j]),
        }
        for j, name in enumerate(label_names)
    }
    out["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=labels).tolist()
    return out


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray, label_names: Sequence[str]) -> dict[str, Any]:
    """R2 overall (uniform average) and per output; see the module docstring."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.ndim == 1:
        y_true, y_pred = y_true[:, None], y_pred.reshape(-1, 1)
    d = len(label_names)
    if y_true.shape != y_pred.shape or y_true.shape[1] != d:
        raise ValueError(f"regression y_true and predictions must both be [N, {d}]; got {y_true.shape} and {y_pred.shape}")
    out: dict[str, Any] = {"r2": _safe(r2_score, y_true, y_pred, multioutput="uniform_average")}
    for j, name in enumerate(label_names):
        out[f"r2_{name}"] = _safe(r2_score, y_true[:, j], y_pred[:, j])
    out["n_items"] = int(len(y_true))
    out["per_class"] = {name: {"r2": out[f"r2_{name}"]} for name in label_names}
    return out


def compute_metrics(
    task_type: str, y_true: np.ndarray, y_score: np.ndarray, label_names: Sequence[str], thresholds: np.ndarray | None = None
) -> dict[str, Any]:
    """All metrics of a task type as a JSON-serialisable dict (scalars at the top level, details in
    'per_class', plus 'confusion_matrix' for multiclass). thresholds: multilabel only, see tune_thresholds."""
    label_names = list(label_names)
    if task_type == "multilabel":
        return multilabel_metrics(y_true, y_score, label_names, thresholds)
    if thresholds is not None:
        raise ValueError("thresholds apply to multilabel tasks only")
    if task_type == "multiclass":
        return multiclass_metrics(y_true, y_score, label_names)
    if task_type == "regression":
        return regression_metrics(y_true, y_score, label_names)
    raise ValueError(f"unknown task type {task_type!r}; expected multilabel, multiclass or regression")


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float | None]:
    """The top-level numeric entries of a compute_metrics result (what goes in a TSV / a logger)."""
    return {k: v for k, v in metrics.items() if (isinstance(v, (int, float)) and not isinstance(v, bool)) or v is None}


__all__ = [
    "compute_metrics",
    "tune_thresholds",
    "aggregate_tracks",
    "primary_metric",
    "higher_is_better",
    "multilabel_metrics",
    "multiclass_metrics",
    "regression_metrics",
    "scalar_metrics",
]


def primary_value(task_type: str, metric: str, y_true: np.ndarray, scores: np.ndarray, label_names) -> float | None:
    """One metric, equal to ``compute_metrics(...)[metric]``, for loops that need it often (the
    validation metric of every probe epoch, bootstrap resamples).

    ROC-AUC macro (tagging) and accuracy (classification) are computed vectorised: the full
    ``compute_metrics`` (per-tag sklearn calls, threshold tuning, F1, ...) costs far more than a
    probe epoch on cached features. Other metrics take the full path.
    """
    if task_type == "multilabel" and metric == "roc_auc_macro":
        return roc_auc_macro(y_true, scores)
    if task_type == "multiclass" and metric == "accuracy" and len(y_true):
        return float(np.mean(np.asarray(scores).argmax(1) == np.asarray(y_true)))
    return compute_metrics(task_type, y_true, scores, label_names).get(metric)


def roc_auc_macro(y_true: np.ndarray, scores: np.ndarray) -> float | None:
    """Mean over tags with both classes of the ROC-AUC, by the rank-sum (Mann-Whitney) identity with
    average ranks for ties (what sklearn's trapezoidal ROC-AUC gives). ``[N, K]``, ``[N, K]``."""
    from scipy.stats import rankdata

    y = np.asarray(y_true, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if not np.isfinite(s).all():
        raise ValueError("y_score holds NaN or infinite values")
    pos = y.sum(0)
    neg = len(y) - pos
    ok = (pos > 0) & (neg > 0)
    if not ok.any():
        return None
    ranks = rankdata(s[:, ok], axis=0)
    auc = ((ranks * y[:, ok]).sum(0) - pos[ok] * (pos[ok] + 1) / 2) / (pos[ok] * neg[ok])
    return float(auc.mean())
