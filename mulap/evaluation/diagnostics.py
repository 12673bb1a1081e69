"""What a frozen backbone's features look like, independent of probe training noise.

- `spectrum_stats`: how many directions the features really use (participation ratio of the
  correlation spectrum, share of variance in the top principal components). A backbone whose
  pre-training collapses features onto a few directions shows it here before any probe runs.
- `ridge_probe`: a closed-form linear probe (scikit-learn Ridge on standardised track-mean
  features, alpha chosen on the validation split). It has no seed, so its test metric separates
  backbones even where the MLP probe's seed spread is large.
- `paired_bootstrap`: is backbone A better than B on the same test tracks? The difference of the
  metric over resamples of the test set (both scored on the same resample), with a 95% interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.linear_model import Ridge

from mulap.evaluation.metrics import aggregate_tracks, primary_value

ALPHAS = (1.0, 10.0, 100.0, 1_000.0, 10_000.0)


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Centre and scale every array by the training features' mean and std (constant columns kept at 0)."""
    mu, sd = train.mean(0), train.std(0)
    sd = np.where(sd > 1e-8, sd, 1.0)
    return [(x - mu) / sd for x in (train, *others)]


def spectrum_stats(features: np.ndarray, top: int = 10) -> dict[str, float]:
    """features [N, D] -> participation ratio (sum l)^2 / sum l^2 of the eigenvalues l of the feature
    correlation matrix (1 = one direction, D = all equal), and the share of variance in the `top` PCs."""
    x = standardise(np.asarray(features, dtype=np.float64))[0]
    x = x[:, x.std(0) > 0]
    if x.shape[1] == 0:
        return {"participation_ratio": 0.0, f"top{top}_variance": 1.0}
    s = np.linalg.svd(x, compute_uv=False)
    ev = s**2
    return {"participation_ratio": float(ev.sum() ** 2 / (ev**2).sum()), f"top{top}_variance": float(ev[:top].sum() / ev.sum())}


def _targets_matrix(task_type: str, y: np.ndarray, k: int) -> np.ndarray:
    if task_type == "multiclass":
        return np.eye(k, dtype=np.float64)[np.asarray(y, dtype=np.int64)]
    return np.asarray(y, dtype=np.float64).reshape(len(y), -1)


def ridge_probe(
    task_type: str,
    label_names: Sequence[str],
    metric: str,
    train: tuple[np.ndarray, np.ndarray],
    valid: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    alphas: Sequence[float] = ALPHAS,
) -> dict[str, Any]:
    """Fit Ridge on (features, targets) of train for each alpha, keep the best on valid by `metric`,
    and report {'alpha', 'valid', 'test', 'test_scores'} (multiclass targets one-hot, scores argmax)."""
    (xtr, ytr), (xva, yva), (xte, yte) = train, valid, test
    xtr, xva, xte = standardise(xtr, xva, xte)
    k = len(label_names)
    best = None
    for alpha in alphas:
        model = Ridge(alpha=alpha).fit(xtr, _targets_matrix(task_type, ytr, k))
        v = primary_value(task_type, metric, yva, model.predict(xva), label_names)
        if v is not None and (best is None or v > best[1]):
            best = (alpha, v, model)
    if best is None:
        return {"alpha": None, "valid": None, "test": None, "test_scores": None}
    alpha, v, model = best
    scores = model.predict(xte)
    return {"alpha": alpha, "valid": v, "test": primary_value(task_type, metric, yte, scores, label_names), "test_scores": scores}


def paired_bootstrap(
    task_type: str,
    metric: str | None,
    y_true: np.ndarray,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    label_names: Sequence[str],
    n: int = 1000,
    seed: int = 0,
    value=None,
) -> dict[str, float | None]:
    """metric(A) - metric(B) on the test set ('diff'), and its 2.5/97.5 percentiles over `n` resamples of
    the test tracks with replacement ('low', 'high'; a resample where the metric is undefined is
    redrawn), plus the share of resamples where A is not better ('p_not_better'); all None when the
    metric is undefined on the test set. `value(y, scores)` replaces `metric` as the figure compared
    (e.g. a zero-shot figure that is not one of the probe metrics)."""
    if value is None:

        def value(y, s):
            return primary_value(task_type, metric, y, s, label_names)

    y_true, scores_a, scores_b = np.asarray(y_true), np.asarray(scores_a), np.asarray(scores_b)
    rng = np.random.default_rng(seed)
    diffs: list[float] = []
    tries = 0
    while len(diffs) < n and tries < 5 * n:
        tries += 1
        idx = rng.integers(0, len(y_true), len(y_true))
        a, b = value(y_true[idx], scores_a[idx]), value(y_true[idx], scores_b[idx])
        if a is not None and b is not None:
            diffs.append(a - b)
    a, b = value(y_true, scores_a), value(y_true, scores_b)
    if a is None or b is None or not diffs:  # e.g. a test set without both classes of any tag
        return {"diff": None, "low": None, "high": None, "p_not_better": None}
    d = np.asarray(diffs)
    return {
        "diff": float(a - b),
        "low": float(np.percentile(d, 2.5)),
        "high": float(np.percentile(d, 97.5)),
        "p_not_better": float(np.mean(d <= 0)),
    }


def diagnose_features(
    features: np.ndarray, track: np.ndarray, ids: Sequence[str], ds, metric: str
) -> tuple[dict, np.ndarray, np.ndarray | None]:
    """Spectrum and ridge probe of a prepared dataset's chunk features (`features` [N, D], `track` [N]
    indexing `ids`; `ds` a PreparedDataset). Returns (row, test targets, ridge test scores or None)."""
    from mulap.data.prepare import targets  # late: evaluation stays importable without the data package

    tracks = aggregate_tracks(features, track, len(ids))  # track-mean features
    pos = {id_: i for i, id_ in enumerate(ids)}
    rows = {split: [pos[it.id] for it in ds.split(split)] for split in ("train", "valid", "test")}
    data = {split: (tracks[idx], targets(ds, split)) for split, idx in rows.items()}
    row = spectrum_stats(features[np.isin(track, rows["train"])])
    probe = ridge_probe(ds.task_type, ds.label_names, metric, data["train"], data["valid"], data["test"])
    row.update({"ridge_alpha": probe["alpha"], "ridge_valid": probe["valid"], "ridge_test": probe["test"]})
    return row, data["test"][1], probe["test_scores"]
