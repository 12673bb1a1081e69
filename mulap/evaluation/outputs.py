"""The files of an evaluation, written the same way for a trained probe (`mulap eval`) and for
zero-shot scores (`mulap zeroshot`): metrics.json, metrics.tsv, predictions.npz and plots/*.png."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mulap.evaluation.metrics import compute_metrics, scalar_metrics, tune_thresholds
from mulap.infra.files import atomic_write_text, write_json


def evaluate_and_write(
    folder: Path, ds, valid: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], extra: dict | None = None
) -> dict:
    """Test metrics of track-level scores (tagging thresholds tuned on the validation scores), written into
    `folder`. `valid` and `test` are (targets, scores) of the dataset's splits, in manifest order."""
    (y_valid, s_valid), (y_test, s_test) = valid, test
    thresholds = tune_thresholds(y_valid, s_valid) if ds.task_type == "multilabel" else None
    metrics = compute_metrics(ds.task_type, y_test, s_test, ds.label_names, thresholds)
    metrics["n_test_tracks"] = int(len(y_test))
    metrics.update(extra or {})
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "metrics.json", metrics)
    scalars = scalar_metrics(metrics)
    atomic_write_text(
        folder / "metrics.tsv",
        "metric\tvalue\n" + "".join(f"{k}\t{'' if v is None else round(v, 6)}\n" for k, v in scalars.items()),
    )
    np.savez(folder / "predictions.npz", ids=np.array([it.id for it in ds.split("test")]), y_true=y_test, y_score=s_test)
    write_plots(folder / "plots", ds, metrics, y_test, s_test)
    return metrics


def write_plots(folder: Path, ds, metrics: dict, y_true: np.ndarray, y_score: np.ndarray) -> None:
    from mulap.evaluation import plots

    folder.mkdir(parents=True, exist_ok=True)
    per_class = metrics.get("per_class", {})
    if ds.task_type == "multilabel":
        plots.plot_per_class(
            {k: v.get("roc_auc") for k, v in per_class.items()},
            folder / "per_class_roc_auc.png",
            title=f"{ds.task}: ROC-AUC per tag",
            ylabel="ROC-AUC",
        )
        plots.plot_pr_curves(
            y_true,
            y_score,
            ds.label_names,
            folder / "pr_curves.png",
            title=f"{ds.task}: precision-recall on the test set ({len(y_true)} clips)",
        )
    elif ds.task_type == "multiclass":
        plots.plot_per_class(
            {k: v.get("f1") for k, v in per_class.items()},
            folder / "per_class_f1.png",
            title=f"{ds.task}: F1 per class",
            ylabel="F1",
        )
        plots.plot_confusion_matrix(
            np.array(metrics["confusion_matrix"]), ds.label_names, folder / "confusion_matrix.png", title=f"{ds.task}: test set"
        )
    else:
        plots.plot_regression_scatter(y_true, y_score, ds.label_names, folder / "predicted_vs_true.png")
