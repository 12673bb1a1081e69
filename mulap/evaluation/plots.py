"""Evaluation plots as PNG files (matplotlib, Agg backend: no display needed).

Every function writes its figure under a temporary name in the target folder, renames it
into place (no half-written PNG after a crash) and returns the path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import matplotlib

matplotlib.use("Agg")  # headless: servers and CI have no display
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve

if TYPE_CHECKING:
    from mulap.inference.tagging import FileTags


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    try:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    os.replace(tmp, path)
    return path


def plot_per_class(
    scores: Mapping[str, float | None], path: str | Path, title: str = "", ylabel: str = "score", sort: bool = True
) -> Path:
    """Bar chart of one score per class (e.g. per-tag ROC-AUC); None values are drawn as gaps."""
    items = [(k, float(v)) for k, v in scores.items() if v is not None]
    if sort:
        items.sort(key=lambda kv: kv[1], reverse=True)
    names = [k for k, _ in items]
    values = [v for _, v in items]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * len(names) + 2), 4.0))
    ax.bar(range(len(values)), values, color="tab:blue")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_ylabel(ylabel)
    if values:
        if 0.0 <= min(values) and max(values) <= 1.0:  # probabilities, AUCs, accuracies
            ax.set_ylim(0.0, 1.02)
        ax.axhline(float(np.mean(values)), color="tab:red", lw=1, ls="--", label=f"mean {np.mean(values):.3f}")
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), fontsize=8, frameon=False)
    left_out = len(scores) - len(items)
    ax.set_title(
        f"{title}\n{len(items)} classes" + (f"; {left_out} undefined (no positive example)" if left_out else ""), fontsize=10
    )
    return _save(fig, path)


def plot_confusion_matrix(
    cm: np.ndarray | Sequence[Sequence[int]],
    label_names: Sequence[str],
    path: str | Path,
    title: str = "",
    normalize: bool = True,
) -> Path:
    """Confusion matrix [K, K] (rows true class, columns predicted); colours are row shares (recall) when
    `normalize`. Every cell shows its count (and share); each true class's label carries its number of clips."""
    cm = np.asarray(cm, dtype=np.float64)
    k = len(label_names)
    if cm.shape != (k, k):
        raise ValueError(f"confusion matrix must be [{k}, {k}], got {cm.shape}")
    support = cm.sum(1)
    shown = cm / np.maximum(support[:, None], 1) if normalize else cm
    fig, ax = plt.subplots(figsize=(max(4.5, 0.55 * k + 2.5), max(4.0, 0.55 * k + 1.8)))
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class" if normalize else "clips")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(label_names, rotation=90, fontsize=8)
    ax.set_yticklabels([f"{name} (n={int(n)})" for name, n in zip(label_names, support)], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (clips)")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                txt = f"{int(cm[i, j])}\n{shown[i, j]:.2f}" if normalize and support[i] else f"{int(cm[i, j])}"
                ax.text(
                    j,
                    i,
                    txt,
                    ha="center",
                    va="center",
                    fontsize=6.5,
                    color="white" if shown[i, j] > 0.5 * (shown.max() or 1) else "black",
                )
    correct = int(np.trace(cm))
    total = int(cm.sum())
    ax.set_title(
        f"{title or 'confusion matrix'}\n{correct} of {total} clips correct" + (f" ({correct / total:.1%})" if total else ""),
        fontsize=10,
    )
    return _save(fig, path)


def plot_pr_curves(
    y_true: np.ndarray,
    y_score: np.ndarray,
    label_names: Sequence[str],
    path: str | Path,
    tags: Sequence[str] | None = None,
    max_tags: int = 6,
    title: str = "",
) -> Path:
    """Precision-recall curves of a few tags: `tags`, else the `max_tags` most frequent ones with a positive.

    y_true, y_score [N, K].
    """
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    names = list(label_names)
    if tags is None:
        support = y_true.sum(0)
        order = [j for j in np.argsort(-support, kind="stable") if support[j] > 0][:max_tags]
    else:
        unknown = [t for t in tags if t not in names]
        if unknown:
            raise ValueError(f"unknown tag(s) {unknown}")
        order = [names.index(t) for t in tags if y_true[:, names.index(t)].sum() > 0]
    fig, ax = plt.subplots(figsize=(5.0, 4.5))
    for j in order:
        p, r, _ = precision_recall_curve(y_true[:, j], y_score[:, j])
        ap = average_precision_score(y_true[:, j], y_score[:, j])
        n_pos = int(y_true[:, j].sum())
        (line,) = ax.step(r, p, where="post", label=f"{names[j]}: AP {ap:.2f}, {n_pos} of {len(y_true)} positive")
        ax.axhline(n_pos / max(len(y_true), 1), color=line.get_color(), lw=0.7, ls=":")  # a random ranking's precision
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    if order:  # outside the axes, so it never covers a curve
        ax.legend(
            fontsize=7,
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            borderaxespad=0.0,
            title="tag (dotted: chance)",
            title_fontsize=7,
        )
    ax.set_title(title or f"precision-recall, {len(order)} most frequent tags", fontsize=10)
    return _save(fig, path)


def plot_regression_scatter(
    y_true: np.ndarray, y_pred: np.ndarray, label_names: Sequence[str], path: str | Path, title: str = ""
) -> Path:
    """Predicted against true value, one panel per output (e.g. arousal, valence), with the identity line."""
    y_true = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(len(y_pred), -1)
    d = len(label_names)
    if y_true.shape[1] != d or y_pred.shape != y_true.shape:
        raise ValueError(f"y_true and y_pred must both be [N, {d}]; got {y_true.shape} and {y_pred.shape}")
    fig, axes = plt.subplots(1, d, figsize=(4.2 * d, 4.0), squeeze=False)
    for j, ax in enumerate(axes[0]):
        ax.scatter(y_true[:, j], y_pred[:, j], s=10, alpha=0.7)
        both = np.concatenate([y_true[:, j], y_pred[:, j]]) if len(y_true) else np.array([0.0, 1.0])
        lo, hi = float(both.min()), float(both.max())
        ax.plot([lo, hi], [lo, hi], color="tab:red", lw=1)
        ax.set_xlabel(f"true {label_names[j]}")
        ax.set_ylabel(f"predicted {label_names[j]}")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_curves(
    curves: Mapping[str, Sequence[tuple[float, float]]],
    path: str | Path,
    title: str = "",
    xlabel: str = "step",
    ylabel: str = "value",
) -> Path:
    """Training curves: {name: [(step, value), ...]} as lines on one axis (e.g. train loss, valid metric)."""
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for name, points in curves.items():
        pts = [(float(s), float(v)) for s, v in points if v is not None]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, label=name, marker="." if len(pts) < 30 else None)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if curves:
        ax.legend(fontsize=8)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _save(fig, path)


# The range a metric can take that is worth showing: scores in [0, 1]; R² is at most 1 and anything below
# -1 is "much worse than predicting the mean", drawn at the axis edge with its value printed.
_METRIC_RANGES = {"r2": (-1.0, 1.0)}
_UNIT_METRICS = ("roc_auc", "pr_auc", "accuracy", "f1", "top5_accuracy")


def metric_range(metric: str) -> tuple[float, float]:
    name = metric.split("/")[-1]
    if name.startswith("r2"):
        return _METRIC_RANGES["r2"]
    if name.startswith(_UNIT_METRICS):
        return (0.0, 1.0)
    return (-np.inf, np.inf)


def panel_limits(means: Sequence[float], stds: Sequence[float], metric: str) -> tuple[float, float]:
    """y-limits of one task's panel: the span of mean ± std of the means inside the metric's range, padded and
    clipped to that range. A mean outside it (an R² of -130) does not stretch the axis; it is drawn on the edge."""
    lo_range, hi_range = metric_range(metric)
    m = np.asarray(means, dtype=np.float64)
    sd = np.nan_to_num(np.asarray(stds, dtype=np.float64))
    ok = np.isfinite(m) & (m >= lo_range) & (m <= hi_range)
    if not ok.any():  # nothing to zoom on: every value undefined or off the metric's range
        return (lo_range, hi_range) if np.isfinite([lo_range, hi_range]).all() else (0.0, 1.0)
    lo = float(np.clip(m[ok] - sd[ok], lo_range, hi_range).min())
    hi = float(np.clip(m[ok] + sd[ok], lo_range, hi_range).max())
    pad = max(0.12 * (hi - lo), 0.01)
    return (max(lo - pad, lo_range - 0.05 * pad), min(hi + pad, hi_range + 0.05 * pad))


def transfer_figure(
    table: Mapping[str, Mapping[str, Mapping[str, Any]]], ylabel: str = "mean ± std over probe seeds"
) -> plt.Figure:
    """{task: {backbone: {'mean', 'std', 'metric'}}} -> one panel per task with its own y-axis (the caller
    saves or closes it). Each backbone is a point with a std bar and its value printed; a value outside the
    panel (an R² of -130 next to 0.3s) sits on the axis edge as a triangle, its value printed."""
    groups = list(table)
    series = sorted({name for row in table.values() for name in row})
    colors = {name: plt.get_cmap("tab10")(i % 10) for i, name in enumerate(series)}
    fig, axes = plt.subplots(1, max(1, len(groups)), figsize=(max(6.0, 2.3 * len(groups) + 1.0), 3.8), squeeze=False)
    for ax, group in zip(axes[0], groups):
        row = table[group]
        metric = next((c.get("metric", "") for c in row.values()), "")
        names = [n for n in series if n in row]
        means = [float(row[n].get("mean", np.nan)) for n in names]
        stds = [float(row[n].get("std", 0.0) or 0.0) for n in names]
        lo, hi = panel_limits(means, stds, metric)
        for x, (name, mean, sd) in enumerate(zip(names, means, stds)):
            if not np.isfinite(mean):
                continue
            inside = lo <= mean <= hi
            shown = min(max(mean, lo), hi)
            if inside:
                ax.errorbar(x, mean, yerr=sd, fmt="o", color=colors[name], capsize=3, markersize=6)
            else:  # clipped: a triangle on the edge, pointing where the value is
                ax.plot(x, shown, marker="v" if mean < lo else "^", color=colors[name], markersize=9, clip_on=False)
            ax.annotate(
                f"{mean:.3f}" if abs(mean) < 100 else f"{mean:.0f}",
                (x, shown),
                textcoords="offset points",
                xytext=(0, -14) if mean > hi else (0, 9),
                ha="center",
                fontsize=7,
                fontweight="normal" if inside else "bold",
            )
        ax.set_ylim(lo, hi)
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=35, ha="right", fontsize=7)
        ax.set_title(f"{group}\n{metric}", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
        ax.tick_params(axis="y", labelsize=7)
    axes[0][0].set_ylabel(ylabel, fontsize=8)
    fig.tight_layout()
    return fig


def plot_grouped_bars(
    table: Mapping[str, Mapping[str, Mapping[str, Any]]], path: str | Path, ylabel: str = "mean ± std over probe seeds"
) -> Path:
    """The demo's transfer.png: `transfer_figure` written as a PNG (one panel and y-axis per task)."""
    return _save(transfer_figure(table, ylabel), path)


def plot_intervals(
    diffs: Mapping[str, Mapping[str, Mapping[str, float | None]]],
    path: str | Path,
    title: str = "difference to the reference with 95% interval",
) -> Path:
    """Forest plot: {row (backbone/recipe): {panel (task): {'diff', 'low', 'high'}}}, one panel per task,
    one row per entry, a line at zero. Undefined entries (None) are left out."""
    rows = list(diffs)
    panels = list(dict.fromkeys(t for r in diffs.values() for t in r))  # first-seen order
    fig, axes = plt.subplots(
        1, max(1, len(panels)), figsize=(2.6 * max(1, len(panels)) + 2, 0.35 * len(rows) + 2.0), sharey=True, squeeze=False
    )
    for ax, panel in zip(axes[0], panels):
        for i, row in enumerate(rows):
            d = diffs[row].get(panel)
            if d and d.get("diff") is not None and d.get("low") is not None:
                diff, low, high = cast(float, d["diff"]), cast(float, d["low"]), cast(float, d["high"])  # set together
                above = low > 0
                ax.errorbar(
                    diff,
                    i,
                    xerr=[[diff - low], [high - diff]],
                    fmt="o",
                    color="tab:green" if above else "tab:gray",
                    capsize=2,
                    markersize=4,
                )
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_title(panel, fontsize=9)
        ax.grid(alpha=0.3, axis="x")
    axes[0][0].set_yticks(range(len(rows)))
    axes[0][0].set_yticklabels(rows, fontsize=8)
    axes[0][0].set_ylim(len(rows) - 0.5, -0.5)  # first row on top
    fig.suptitle(title, fontsize=10, y=1.0 + 0.3 / (0.35 * len(rows) + 2.0))
    return _save(fig, path)


__all__ = [
    "plot_per_class",
    "plot_confusion_matrix",
    "plot_pr_curves",
    "plot_regression_scatter",
    "plot_curves",
    "plot_grouped_bars",
    "transfer_figure",
    "panel_limits",
    "metric_range",
    "plot_intervals",
]


def plot_taggram(result: FileTags, tag_names: Sequence[str], path: str | Path, model_name: str = "") -> Path:
    """Tags x time image of one file (probabilities 0..1 per 3 s chunk), as musicnn's taggram."""
    k, t = len(tag_names), len(result.starts)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.35 * t + 3.5), 0.16 * k + 1.6))
    im = ax.imshow(result.taggram.T, aspect="auto", origin="upper", cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_yticks(range(k))
    ax.set_yticklabels(tag_names, fontsize=6)
    step = max(1, t // 12)
    ax.set_xticks(range(0, t, step))
    ax.set_xticklabels([f"{s:.0f}" for s in result.starts[::step]], fontsize=7)
    ax.set_xlabel("chunk start (s)")
    fig.colorbar(im, ax=ax, fraction=0.04, label="tag probability")
    ax.set_title(f"{Path(result.file).name}" + (f" ({model_name})" if model_name else ""), fontsize=9)
    return _save(fig, path)
