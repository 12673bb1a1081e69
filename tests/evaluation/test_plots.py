"""Plots write real PNG files atomically and return their path."""
from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

from mulap.evaluation.plots import (
    plot_confusion_matrix,
    plot_curves,
    plot_grouped_bars,
    plot_intervals,
    plot_per_class,
    plot_pr_curves,
    plot_regression_scatter,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_png(path, folder):
    assert path.exists() and path.read_bytes()[:8] == PNG_MAGIC
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    assert img[..., :3].std() > 0  # something was drawn
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary file left behind


def test_all_plots(tmp_path):
    rng = np.random.default_rng(0)
    y = (rng.random((40, 5)) < 0.4).astype(int)
    s = y * 0.5 + rng.random((40, 5))
    names = [f"tag{i}" for i in range(5)]
    out = tmp_path / "plots"
    paths = [
        plot_per_class({"a": 0.9, "b": 0.7, "c": None}, out / "per_class.png", title="ROC-AUC per tag"),
        plot_confusion_matrix(np.array([[5, 1], [2, 7]]), ["x", "y"], out / "cm.png"),
        plot_pr_curves(y, s, names, out / "pr.png", max_tags=3),
        plot_regression_scatter(rng.uniform(1, 9, (30, 2)), rng.uniform(1, 9, (30, 2)), ["arousal", "valence"], out / "sc.png"),
        plot_curves({"train loss": [(0, 1.0), (1, 0.5), (2, 0.3)], "valid": [(0, 0.6), (2, 0.8)]}, out / "curves.png"),
    ]
    for p in paths:
        _check_png(p, out)


def test_plot_errors(tmp_path):
    with pytest.raises(ValueError, match="confusion matrix"):
        plot_confusion_matrix(np.zeros((2, 3)), ["a", "b"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="unknown tag"):
        plot_pr_curves(np.ones((3, 1)), np.ones((3, 1)), ["a"], tmp_path / "x.png", tags=["b"])


def test_grouped_bars_and_intervals(tmp_path):
    table = {"mtt": {"mulap": {"mean": 0.84, "std": 0.01, "metric": "roc_auc_macro"}, "random": {"mean": 0.83, "std": 0.02, "metric": "roc_auc_macro"}},
             "nsynth": {"mulap": {"mean": 0.5, "std": 0.05, "metric": "accuracy"}}}
    _check_png(plot_grouped_bars(table, tmp_path / "bars.png"), tmp_path)
    diffs = {"mulap": {"mtt": {"diff": 0.01, "low": -0.01, "high": 0.03}, "nsynth": {"diff": None, "low": None, "high": None}},
             "supervised": {"mtt": {"diff": 0.05, "low": 0.02, "high": 0.08}, "nsynth": {"diff": 0.2, "low": 0.1, "high": 0.3}}}
    _check_png(plot_intervals(diffs, tmp_path / "forest.png"), tmp_path)
