"""Every metric against scikit-learn computed inline on the same arrays."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    precision_recall_curve,
    r2_score,
    roc_auc_score,
)

from mulap.evaluation.metrics import (
    aggregate_tracks,
    compute_metrics,
    higher_is_better,
    primary_metric,
    tune_thresholds,
)


def _tagging_data(seed: int = 0, n: int = 80, k: int = 6):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < 0.3).astype(int)
    y[:, 2] = 0  # a tag with no positive
    y[:, 4] = 1  # a tag with no negative
    y[0, 0], y[1, 0] = 1, 0
    score = 0.6 * y + rng.random((n, k))
    return y, score, [f"tag{i}" for i in range(k)]


def test_multilabel_auc_equals_sklearn_and_excludes_tags_without_positives():
    y, s, names = _tagging_data()
    m = compute_metrics("multilabel", y, s, names)
    has_pos = y.sum(0) > 0
    roc_cols = [j for j in range(y.shape[1]) if has_pos[j] and (y[:, j] == 0).any()]
    pr_cols = [j for j in range(y.shape[1]) if has_pos[j]]
    assert m["roc_auc_macro"] == pytest.approx(roc_auc_score(y[:, roc_cols], s[:, roc_cols], average="macro"))
    assert m["pr_auc_macro"] == pytest.approx(average_precision_score(y[:, pr_cols], s[:, pr_cols], average="macro"))
    assert m["roc_auc_micro"] == pytest.approx(roc_auc_score(y, s, average="micro"))
    assert m["pr_auc_micro"] == pytest.approx(average_precision_score(y, s, average="micro"))
    assert m["labels_without_positives"] == ["tag2"]
    assert m["labels_without_negatives"] == ["tag4"]
    assert m["n_labels_evaluated"] == 5
    assert m["per_class"]["tag2"]["roc_auc"] is None and m["per_class"]["tag2"]["pr_auc"] is None
    for j in roc_cols:
        assert m["per_class"][names[j]]["roc_auc"] == pytest.approx(roc_auc_score(y[:, j], s[:, j]))
    json.dumps(m, allow_nan=False)  # strictly valid JSON: no NaN anywhere


def _reference_thresholds(y, s):
    out = []
    for j in range(y.shape[1]):
        if y[:, j].sum() == 0:
            out.append(None)
            continue
        p, r, t = precision_recall_curve(y[:, j], s[:, j])
        f1 = [2 * a * b / (a + b) if a + b > 0 else 0.0 for a, b in zip(p[:-1], r[:-1])]
        out.append(t[int(np.argmax(f1))])
    return out


def test_thresholds_maximise_f1_on_the_pr_curve():
    y, s, names = _tagging_data(seed=1)
    thr = tune_thresholds(y, s)
    ref = _reference_thresholds(y, s)
    for j, t in enumerate(ref):
        if t is None:
            assert (s[:, j] < thr[j]).all()  # never fires where there is nothing to find
        else:
            assert thr[j] == pytest.approx(t)
            # no other candidate threshold gives a higher F1
            best = f1_score(y[:, j], s[:, j] >= thr[j], zero_division=0)
            for cand in np.unique(s[:, j]):
                assert f1_score(y[:, j], s[:, j] >= cand, zero_division=0) <= best + 1e-12


def test_f1_uses_validation_thresholds_and_equals_sklearn():
    yv, sv, names = _tagging_data(seed=2)
    yt, st, _ = _tagging_data(seed=3)
    thr = tune_thresholds(yv, sv)
    m = compute_metrics("multilabel", yt, st, names, thresholds=thr)
    pred = (st >= thr[None, :]).astype(int)
    keep = yt.sum(0) > 0
    assert m["threshold_source"] == "given"
    assert m["f1_macro"] == pytest.approx(f1_score(yt[:, keep], pred[:, keep], average="macro", zero_division=0))
    assert m["f1_micro"] == pytest.approx(f1_score(yt, pred, average="micro", zero_division=0))
    # fallback: tuned on the evaluated set itself
    m2 = compute_metrics("multilabel", yt, st, names)
    assert m2["threshold_source"] == "this_set"
    assert [m2["per_class"][n]["threshold"] for n in names] == pytest.approx(tune_thresholds(yt, st).tolist())


def test_multiclass_equals_sklearn():
    rng = np.random.default_rng(4)
    k = 11
    y = rng.integers(0, k, 200)
    y[y == 9] = 0  # a class absent from this split (NSynth's synth_lead in valid/test)
    scores = rng.random((200, k)) + 1.5 * np.eye(k)[y] * (rng.random(200) < 0.6)[:, None]
    names = [f"c{i}" for i in range(k)]
    m = compute_metrics("multiclass", y, scores, names)
    pred = scores.argmax(1)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["f1_macro"] == pytest.approx(f1_score(y, pred, labels=np.unique(y), average="macro"))
    top5 = np.mean([y[i] in np.argsort(-scores[i])[:5] for i in range(len(y))])
    assert m["top5_accuracy"] == pytest.approx(top5)
    assert m["classes_without_examples"] == ["c9"]
    cm = np.asarray(m["confusion_matrix"])
    assert cm.shape == (k, k) and cm.sum() == len(y) and np.trace(cm) == (pred == y).sum()
    json.dumps(m, allow_nan=False)


def test_regression_equals_sklearn():
    rng = np.random.default_rng(5)
    y = rng.uniform(1, 9, (60, 2))
    p = y + rng.normal(0, [0.5, 1.5], (60, 2))
    m = compute_metrics("regression", y, p, ["arousal", "valence"])
    assert m["r2"] == pytest.approx(r2_score(y, p, multioutput="uniform_average"))
    assert m["r2_arousal"] == pytest.approx(r2_score(y[:, 0], p[:, 0]))
    assert m["r2_valence"] == pytest.approx(r2_score(y[:, 1], p[:, 1]))
    assert m["r2_arousal"] > m["r2_valence"]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="task type"):
        compute_metrics("ranking", np.zeros(3), np.zeros(3), ["a"])
    with pytest.raises(ValueError, match=r"\[N, K\]"):
        compute_metrics("multilabel", np.zeros((3, 2)), np.zeros((3, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="thresholds"):
        compute_metrics("multilabel", np.ones((3, 2)), np.zeros((3, 2)), ["a", "b"], thresholds=np.zeros(3))


def test_aggregate_tracks_is_the_mean_of_each_tracks_chunks():
    rng = np.random.default_rng(6)
    idx = np.array([0, 0, 1, 2, 2, 2, 1])
    chunks = rng.random((7, 3))
    out = aggregate_tracks(chunks, idx)
    ref = np.stack([chunks[idx == t].mean(0) for t in range(3)])
    assert out.shape == (3, 3)
    np.testing.assert_allclose(out, ref)
    np.testing.assert_allclose(aggregate_tracks(chunks[:, 0], idx), ref[:, 0])
    with pytest.raises(ValueError, match="no chunk"):
        aggregate_tracks(chunks, idx, n_tracks=4)


def test_primary_metrics():
    assert primary_metric("mtt_tagging") == "roc_auc_macro"
    assert primary_metric("jamendo_moodtheme") == "roc_auc_macro"
    assert primary_metric("fma_clf") == "accuracy"
    assert primary_metric("nsynth_clf") == "accuracy"
    assert primary_metric("emomusic_reg") == "r2"
    assert higher_is_better("r2") and not higher_is_better("loss")
    with pytest.raises(ValueError, match="known tasks"):
        primary_metric("gtzan")
