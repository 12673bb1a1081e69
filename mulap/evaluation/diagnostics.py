"""What a frozen backbone's features look like, independent of probe training noise.

- `spectrum_stats`: how many directions the features really use (participation ratio of the
  correlation spectrum, share of variance in the top principal components). A backbone whose
  pre-training collapses features onto a few directions shows it here before any probe runs.
- `ridge_probe`: a closed-form linear probe (scikit-learn Ridge on standardised track-mean
  features, alpha chosen on the validation split). It has no seed, so its test metric separates
  backbones even where the MLP probe's seed spread is large.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.linear_model import Ridge

from mulap.evaluation.metrics import compute_metrics

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
    ev = s ** 2
    return {"participation_ratio": float(ev.sum() ** 2 / (ev ** 2).sum()), f"top{top}_variance": float(ev[:top].sum() / ev.sum())}


def _targets_matrix(task_type: str, y: np.ndarray, k: int) -> np.ndarray:
    if task_type == "multiclass":
        return np.eye(k, dtype=np.float64)[np.asarray(y, dtype=np.int64)]
    return np.asarray(y, dtype=np.float64).reshape(len(y), -1)


def ridge_probe(task_type: str, label_names: Sequence[str], metric: str, train: tuple[np.ndarray, np.ndarray],
                valid: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                alphas: Sequence[float] = ALPHAS) -> dict[str, float | None]:
    """Fit Ridge on (features, targets) of train for each alpha, keep the best on valid by `metric`,
    and report {'alpha', 'valid', 'test'} of that metric (multiclass targets one-hot, scores argmax)."""
    (xtr, ytr), (xva, yva), (xte, yte) = train, valid, test
    xtr, xva, xte = standardise(xtr, xva, xte)
    k = len(label_names)
    best = None
    for alpha in alphas:
        model = Ridge(alpha=alpha).fit(xtr, _targets_matrix(task_type, ytr, k))
        v = compute_metrics(task_type, yva, model.predict(xva), label_names).get(metric)
        if v is not None and (best is None or v > best[1]):
            best = (alpha, v, model)
    if best is None:
        return {"alpha": None, "valid": None, "test": None}
    alpha, v, model = best
    return {"alpha": alpha, "valid": v, "test": compute_metrics(task_type, yte, model.predict(xte), label_names).get(metric)}
