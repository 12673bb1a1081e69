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
    table = {
        "mtt": {
            "mulap": {"mean": 0.84, "std": 0.01, "metric": "roc_auc_macro"},
            "random": {"mean": 0.83, "std": 0.02, "metric": "roc_auc_macro"},
        },
        "nsynth": {"mulap": {"mean": 0.5, "std": 0.05, "metric": "accuracy"}},
    }
    _check_png(plot_grouped_bars(table, tmp_path / "bars.png"), tmp_path)
    diffs = {
        "mulap": {"mtt": {"diff": 0.01, "low": -0.01, "high": 0.03}, "nsynth": {"diff": None, "low": None, "high": None}},
        "supervised": {"mtt": {"diff": 0.05, "low": 0.02, "high": 0.08}, "nsynth": {"diff": 0.2, "low": 0.1, "high": 0.3}},
    }
    _check_png(plot_intervals(diffs, tmp_path / "forest.png"), tmp_path)


def test_transfer_panels_have_their_own_axes_and_clip_outliers(tmp_path):
    """An R² of -130 (random init at --size small) stays in its own panel, on the axis edge with its value printed;
    the other panels (and the other backbones of that task) keep a scale that shows their differences."""
    from mulap.evaluation.plots import metric_range, panel_limits, transfer_figure

    def cell(mean, std, metric):
        return {"mean": mean, "std": std, "metric": metric}

    table = {
        "mtt_tagging": {"mulap": cell(0.842, 0.004, "roc_auc_macro"), "random": cell(0.838, 0.004, "roc_auc_macro")},
        "emomusic_reg": {
            "mulap": cell(0.32, 0.01, "r2"),
            "random": cell(-130.2, 20.0, "r2"),
            "supervised_mtt": cell(0.378, 0.03, "r2"),
        },
        "nsynth_clf": {"mulap": cell(0.48, 0.02, "accuracy"), "random": cell(float("nan"), 0.0, "accuracy")},
    }
    fig = transfer_figure(table)
    try:
        mtt, emo, nsynth = fig.axes[:3]
        assert [ax.get_title().split("\n")[0] for ax in (mtt, emo, nsynth)] == list(table)
        lo, hi = mtt.get_ylim()
        assert 0.82 < lo < 0.834 and 0.846 < hi < 0.86  # zoomed on 0.838 +- 0.004 .. 0.842 +- 0.004
        lo, hi = emo.get_ylim()
        assert 0.25 < lo < 0.31 and 0.408 < hi < 0.45  # the -130 does not stretch the axis
        texts = [t.get_text() for t in emo.texts]
        assert "-130" in texts and "0.320" in texts and "0.378" in texts
        assert "0.480" in [t.get_text() for t in nsynth.texts]  # the undefined value is left out, not drawn as 0
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
    assert metric_range("r2_valence") == (-1.0, 1.0) and metric_range("roc_auc_macro") == (0.0, 1.0)
    assert panel_limits([0.95, 0.99], [0.0, 0.05], "accuracy")[1] <= 1.001  # an accuracy axis stops at 1
    assert panel_limits([float("nan")], [0.0], "accuracy") == (0.0, 1.0)
    _check_png(plot_grouped_bars(table, tmp_path / "transfer.png"), tmp_path)
