"""Evaluation plots as PNG files (matplotlib, Agg backend: no display needed).

Every function writes its figure under a temporary name in the target folder, renames it
into place (no half-written PNG after a crash) and returns the path.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: servers and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import average_precision_score, precision_recall_curve  # noqa: E402


def _save(fig: "plt.Figure", path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    try:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    os.replace(tmp, path)
    return path


def plot_per_class(scores: Mapping[str, float | None], path: str | Path, title: str = "", ylabel: str = "score",
                   sort: bool = True) -> Path:
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
        ax.legend(loc="lower left", fontsize=8)
    ax.set_title(title)
    return _save(fig, path)


def plot_confusion_matrix(cm: np.ndarray | Sequence[Sequence[int]], label_names: Sequence[str], path: str | Path,
                          title: str = "", normalize: bool = True) -> Path:
    """Confusion matrix [K, K] (rows true class, columns predicted); rows normalised to recall when `normalize`."""
    cm = np.asarray(cm, dtype=np.float64)
    k = len(label_names)
    if cm.shape != (k, k):
        raise ValueError(f"confusion matrix must be [{k}, {k}], got {cm.shape}")
    shown = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalize else cm
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * k + 2), max(3.5, 0.5 * k + 1.5)))
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(label_names, rotation=90, fontsize=8)
    ax.set_yticklabels(label_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                txt = f"{shown[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
                ax.text(j, i, txt, ha="center", va="center", fontsize=7,
                        color="white" if shown[i, j] > 0.5 * (shown.max() or 1) else "black")
    ax.set_title(title)
    return _save(fig, path)


def plot_pr_curves(y_true: np.ndarray, y_score: np.ndarray, label_names: Sequence[str], path: str | Path,
                   tags: Sequence[str] | None = None, max_tags: int = 6, title: str = "") -> Path:
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
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for j in order:
        p, r, _ = precision_recall_curve(y_true[:, j], y_score[:, j])
        ap = average_precision_score(y_true[:, j], y_score[:, j])
        ax.step(r, p, where="post", label=f"{names[j]} (AP {ap:.2f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    if order:
        ax.legend(fontsize=7, loc="upper right")
    ax.set_title(title)
    return _save(fig, path)


def plot_regression_scatter(y_true: np.ndarray, y_pred: np.ndarray, label_names: Sequence[str], path: str | Path,
                            title: str = "") -> Path:
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


def plot_curves(curves: Mapping[str, Sequence[tuple[float, float]]], path: str | Path, title: str = "",
                xlabel: str = "step", ylabel: str = "value") -> Path:
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


def plot_grouped_bars(table: Mapping[str, Mapping[str, Mapping[str, float]]], path: str | Path,
                      ylabel: str = "primary metric (mean ± std over probe seeds)") -> Path:
    """{group (task): {series (backbone): {'mean', 'std', 'metric'}}} as grouped bars with std error bars."""
    groups = list(table)
    series = sorted({name for row in table.values() for name in row})
    fig, ax = plt.subplots(figsize=(max(8.0, 0.25 * len(groups) * len(series) + 3), 4.0))
    width = 0.8 / max(1, len(series))
    for j, name in enumerate(series):
        means = [table[g].get(name, {}).get("mean", np.nan) for g in groups]
        stds = [table[g].get(name, {}).get("std", 0.0) for g in groups]
        ax.bar(np.arange(len(groups)) + j * width, means, width, yerr=stds, label=name, capsize=3)
    ax.set_xticks(np.arange(len(groups)) + width * (len(series) - 1) / 2)
    ax.set_xticklabels([f"{g}\n({next(iter(table[g].values()))['metric'] if table[g] else ''})" for g in groups], fontsize=8)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_intervals(diffs: Mapping[str, Mapping[str, Mapping[str, float | None]]], path: str | Path,
                   title: str = "difference to the reference with 95% interval") -> Path:
    """Forest plot: {row (backbone/recipe): {panel (task): {'diff', 'low', 'high'}}}, one panel per task,
    one row per entry, a line at zero. Undefined entries (None) are left out."""
    rows = list(diffs)
    panels = list(dict.fromkeys(t for r in diffs.values() for t in r))  # first-seen order
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(2.6 * max(1, len(panels)) + 2, 0.35 * len(rows) + 2.0),
                             sharey=True, squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for i, row in enumerate(rows):
            d = diffs[row].get(panel)
            if d and d.get("diff") is not None and d.get("low") is not None:
                above = d["low"] > 0
                ax.errorbar(d["diff"], i, xerr=[[d["diff"] - d["low"]], [d["high"] - d["diff"]]], fmt="o",
                            color="tab:green" if above else "tab:gray", capsize=2, markersize=4)
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_title(panel, fontsize=9)
        ax.grid(alpha=0.3, axis="x")
    axes[0][0].set_yticks(range(len(rows)))
    axes[0][0].set_yticklabels(rows, fontsize=8)
    axes[0][0].set_ylim(len(rows) - 0.5, -0.5)  # first row on top
    fig.suptitle(title, fontsize=10, y=1.0 + 0.3 / (0.35 * len(rows) + 2.0))
    return _save(fig, path)


__all__ = ["plot_per_class", "plot_confusion_matrix", "plot_pr_curves", "plot_regression_scatter", "plot_curves",
           "plot_grouped_bars", "plot_intervals"]
