import numpy as np
import pytest

from mulap.evaluation.diagnostics import ALPHAS, paired_bootstrap, ridge_probe, spectrum_stats


def test_spectrum_stats_matches_correlation_eigenvalues():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 12)) @ rng.normal(size=(12, 12)) + rng.normal(size=12) * 5
    ev = np.linalg.eigvalsh(np.corrcoef(x.T))[::-1]
    stats = spectrum_stats(x, top=3)
    assert stats["participation_ratio"] == pytest.approx(ev.sum() ** 2 / (ev**2).sum(), rel=1e-6)
    assert stats["top3_variance"] == pytest.approx(ev[:3].sum() / ev.sum(), rel=1e-6)


def test_spectrum_stats_tells_collapsed_from_spread_features():
    rng = np.random.default_rng(1)
    spread = rng.normal(size=(2000, 20))
    collapsed = rng.normal(size=(2000, 1)) * rng.normal(size=(1, 20)) + 0.01 * rng.normal(size=(2000, 20))
    assert spectrum_stats(spread)["participation_ratio"] > 17
    assert spectrum_stats(collapsed)["participation_ratio"] < 1.1
    assert spectrum_stats(collapsed)["top10_variance"] > 0.99


def _split(x, y, n=(200, 100, 100)):
    a, b = n[0], n[0] + n[1]
    return (x[:a], y[:a]), (x[a:b], y[a:b]), (x[b:], y[b:])


def test_ridge_probe_learns_informative_features_and_not_noise():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, size=400)
    informative = np.eye(4)[y] * 3 + rng.normal(size=(400, 4))
    noise = rng.normal(size=(400, 30))
    names = list("abcd")
    good = ridge_probe("multiclass", names, "accuracy", *_split(np.hstack([informative, noise]), y))
    bad = ridge_probe("multiclass", names, "accuracy", *_split(noise, y))
    assert good["test"] > 0.85 and good["alpha"] in ALPHAS
    assert bad["test"] < 0.4


def test_ridge_probe_regression_and_tagging():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 10))
    y = np.stack([x[:, 0] + 0.1 * rng.normal(size=400), -x[:, 1]], 1)
    assert ridge_probe("regression", ["arousal", "valence"], "r2", *_split(x, y))["test"] > 0.9
    tags = (x[:, :3] > 0).astype(np.float32)
    assert ridge_probe("multilabel", ["t0", "t1", "t2"], "roc_auc_macro", *_split(x, tags))["test"] > 0.9


def test_paired_bootstrap_separates_a_better_predictor_from_an_equal_one():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, size=300)
    truth = np.eye(3)[y]
    good = truth + rng.normal(0, 0.6, size=truth.shape)  # ~85 % accurate
    worse = truth + rng.normal(0, 1.2, size=truth.shape)  # ~55 % accurate
    names = ["a", "b", "c"]
    res = paired_bootstrap("multiclass", "accuracy", y, good, worse, names, n=300)
    expected = np.mean(good.argmax(1) == y) - np.mean(worse.argmax(1) == y)
    assert res["diff"] == pytest.approx(expected)
    assert 0 < res["low"] < expected < res["high"] and res["p_not_better"] == 0.0
    same = paired_bootstrap("multiclass", "accuracy", y, good, good, names, n=50)
    assert same == {"diff": 0.0, "low": 0.0, "high": 0.0, "p_not_better": 1.0}
    noise = paired_bootstrap("multiclass", "accuracy", y, worse, worse + rng.normal(0, 0.05, size=truth.shape), names, n=300)
    assert noise["low"] < 0 < noise["high"]


def test_paired_bootstrap_undefined_metric_gives_none():
    y = np.zeros((20, 2), dtype=np.float32)  # no tag has a positive: ROC-AUC undefined everywhere
    res = paired_bootstrap("multilabel", "roc_auc_macro", y, np.random.rand(20, 2), np.random.rand(20, 2), ["a", "b"], n=10)
    assert res == {"diff": None, "low": None, "high": None, "p_not_better": None}
