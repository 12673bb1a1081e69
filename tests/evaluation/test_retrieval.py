"""Retrieval metrics against hand computations (ties included), chance levels, re-ranking, the ambiguity bound."""

import numpy as np
import pytest

from mulap.evaluation.retrieval import (
    caption_ambiguity_bound,
    chance_levels,
    paired_difference_ci,
    per_query,
    query_ranks,
    recall_curve,
    rerank,
    retrieval_metrics,
)


def test_metrics_equal_a_hand_computation():
    # 4 queries x 5 candidates; relevant = the diagonal (query i -> candidate i)
    s = np.array(
        [
            [0.9, 0.1, 0.2, 0.3, 0.0],  # own first: rank 1
            [0.8, 0.5, 0.9, 0.1, 0.2],  # two above: rank 3
            [0.1, 0.2, 0.3, 0.4, 0.5],  # two above: rank 3
            [0.4, 0.4, 0.4, 0.4, 0.4],  # all tied: rank uniform on 1..5, expected 3
        ]
    )
    m = retrieval_metrics(s, np.arange(4), ks=(1, 2, 5))
    # R@1: 1, 0, 0, 1/5 ; R@2: 1, 0, 0, 2/5 ; R@5: all 1
    assert m["R@1"] == pytest.approx((1 + 0 + 0 + 0.2) / 4)
    assert m["R@2"] == pytest.approx((1 + 0 + 0 + 0.4) / 4)
    assert m["R@5"] == pytest.approx(1.0)
    assert m["median_rank"] == pytest.approx(3.0)  # ranks 1, 3, 3, 3
    # AP@10 with one relevant item = 1/rank; the tied query averages 1/r over r = 1..5
    assert m["mAP@10"] == pytest.approx((1 + 1 / 3 + 1 / 3 + np.mean(1 / np.arange(1, 6))) / 4)


def test_beyond_ten_counts_zero_in_map_and_ranks_are_one_based():
    s = np.tile(np.arange(20, 0, -1, dtype=float), (1, 1))  # candidate 0 best ... 19 worst
    assert retrieval_metrics(s, np.array([11]), ks=(10,)) == {"R@10": 0.0, "median_rank": 12.0, "mAP@10": 0.0}
    assert retrieval_metrics(s, np.array([0]), ks=(1,))["mAP@10"] == 1.0


def test_chance_levels_match_random_scores():
    n = 40
    ch = chance_levels(n)
    assert ch["R@1"] == 1 / n and ch["R@10"] == 10 / n and ch["median_rank"] == 20.5
    rng = np.random.default_rng(0)
    sims = [retrieval_metrics(rng.standard_normal((n, n)), np.arange(n)) for _ in range(300)]
    assert np.mean([m["R@10"] for m in sims]) == pytest.approx(ch["R@10"], abs=0.01)
    assert np.mean([m["mAP@10"] for m in sims]) == pytest.approx(ch["mAP@10"], abs=0.005)
    # constant scores (an untrained model can give them) are chance, not perfect
    const = retrieval_metrics(np.zeros((n, n)), np.arange(n))
    assert const["R@1"] == pytest.approx(ch["R@1"]) and const["median_rank"] == pytest.approx(ch["median_rank"])


def test_rerank_reorders_only_the_shortlist():
    s = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]])
    exact = np.array([[0.1, 0.2, 0.99, 0.95, 0.0]])  # the 4th candidate scores high but is outside a shortlist of 3
    order = np.argsort(-rerank(s, exact, 3)[0])
    assert list(order) == [2, 1, 0, 3, 4]
    above, ties = query_ranks(rerank(s, exact, 3), np.array([2]))
    assert above[0] == 0 and ties[0] == 0


def test_recall_curve_and_paired_interval():
    s = np.eye(5) + 0.01 * np.arange(5)[None]
    p = per_query(*query_ranks(s, np.arange(5)))
    curve = recall_curve(p, 5)
    assert curve[0] == (1, 1.0) and all(v == 1.0 for _, v in curve)
    lo, hi = paired_difference_ci(np.ones(50), np.zeros(50))
    assert lo == hi == 1.0
    lo, hi = paired_difference_ci(np.r_[np.ones(25), np.zeros(25)], np.r_[np.zeros(25), np.ones(25)])
    assert lo < 0 < hi


def test_caption_ambiguity_bound():
    emb = np.array([[1, 0], [1, 0], [0, 1], [0.6, 0.8]], dtype=float)  # captions 0 and 1 identical
    b = caption_ambiguity_bound(emb, threshold=0.95, ks=(1, 5))
    assert b["R@1"] == pytest.approx((0.5 + 0.5 + 1 + 1) / 4) and b["R@5"] == 1.0
    assert b["captions_with_near_duplicates"] == 2
