"""The probe loop's fast paths equal the slow ones: the per-epoch validation metric against
mulap.evaluation.metrics.compute_metrics (sklearn), and the batched random-chunk fetch against
the per-item one."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from mulap.evaluation.metrics import compute_metrics, primary_value, roc_auc_macro
from mulap.training.downstream import RandomChunkPerTrack, SplitFeatures, _batch_as_is


def test_roc_auc_macro_equals_sklearn_with_ties_and_degenerate_tags() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random((80, 12)) < 0.25).astype(np.int64)
    y[:, 2] = 0  # no positive: skipped
    y[:, 5] = 1  # no negative: skipped
    scores = np.round(rng.random((80, 12)), 1)  # many ties
    labels = [f"t{i}" for i in range(12)]
    expected = compute_metrics("multilabel", y, scores, labels)["roc_auc_macro"]
    assert abs(roc_auc_macro(y, scores) - expected) < 1e-12
    assert primary_value("multilabel", "roc_auc_macro", y, scores, labels) == roc_auc_macro(y, scores)
    assert roc_auc_macro(np.zeros((5, 2)), rng.random((5, 2))) is None


def test_accuracy_and_fallback_metrics_equal_compute_metrics() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 50)
    scores = rng.random((50, 4))
    labels = list("abcd")
    assert (
        primary_value("multiclass", "accuracy", y, scores, labels) == compute_metrics("multiclass", y, scores, labels)["accuracy"]
    )
    yr, pr = rng.random((30, 2)), rng.random((30, 2))
    assert primary_value("regression", "r2", yr, pr, ["a", "v"]) == compute_metrics("regression", yr, pr, ["a", "v"])["r2"]


def test_batched_fetch_draws_one_chunk_of_each_requested_track() -> None:
    track = np.array([0, 0, 0, 1, 2, 2, 1, 3])
    feats = torch.arange(len(track), dtype=torch.float32)[:, None].repeat(1, 3)  # row j holds j
    ds = RandomChunkPerTrack(SplitFeatures(feats, track, np.zeros(4)), torch.arange(4) * 10)
    loader = DataLoader(ds, batch_size=3, shuffle=True, collate_fn=_batch_as_is)
    seen: dict[int, set[int]] = {i: set() for i in range(4)}
    for _ in range(60):
        for x, y in loader:
            assert x.shape[1] == 3 and len(x) == len(y)
            for row, target in zip(x[:, 0].long().tolist(), y.tolist()):
                assert track[row] == target // 10  # the chunk belongs to the requested track
                seen[target // 10].add(row)
    assert seen == {0: {0, 1, 2}, 1: {3, 6}, 2: {4, 5}, 3: {7}}  # every chunk of a track gets drawn
