"""Cross-modal retrieval metrics (text->audio, audio->text) with exact tie handling, chance levels and
bootstrap intervals.

Each query has one relevant item (its own clip, or its own caption). With a score matrix S [Nq, Nc]
and the relevant column g(q), the query's rank is 1 + (items scored above it) + its place among
the e items tied with it; ties are broken uniformly at random *in expectation*, so a model that
scores everything alike gets chance figures, never R@1 = 1:

    R@K          P(rank <= K) = clip((K - above) / (e + 1), 0, 1), averaged over queries
    median rank  median over queries of the expected rank  above + 1 + e / 2
    mAP@10       mean over queries of E[1/rank if rank <= 10 else 0]  (one relevant item: AP = 1/rank)

Chance (scores that carry no information, N candidates): R@K = K/N, median rank (N + 1)/2,
mAP@10 = (1/N) * sum_{r=1}^{min(10, N)} 1/r.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

KS = (1, 5, 10)


def query_ranks(scores: np.ndarray, relevant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(items scored above the relevant one [Nq], items tied with it [Nq])."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"scores must be [queries, candidates], got shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores hold NaN or infinite values")
    rel = np.asarray(relevant, dtype=np.int64)
    if rel.shape != (len(s),) or (rel < 0).any() or (rel >= s.shape[1]).any():
        raise ValueError(f"relevant must hold one candidate index per query in 0..{s.shape[1] - 1}")
    own = s[np.arange(len(s)), rel][:, None]
    above = (s > own).sum(1)
    ties = (s == own).sum(1) - 1
    return above, ties


def per_query(above: np.ndarray, ties: np.ndarray, ks: Sequence[int] = KS) -> dict[str, np.ndarray]:
    """Per-query contributions: R@K, expected rank and AP@10 (all [Nq])."""
    above = np.asarray(above, dtype=np.float64)
    ties = np.asarray(ties, dtype=np.float64)
    out = {f"R@{k}": np.clip((k - above) / (ties + 1), 0.0, 1.0) for k in ks}
    out["rank"] = above + 1 + ties / 2
    ap = np.zeros(len(above))
    for i, (a, e) in enumerate(zip(above, ties)):
        ranks = np.arange(a + 1, a + e + 2)  # equally likely positions
        ap[i] = np.mean(np.where(ranks <= 10, 1.0 / ranks, 0.0))
    out["AP@10"] = ap
    out["_above"], out["_ties"] = above, ties  # kept for recall curves at any K
    return out


def summarise(parts: dict[str, np.ndarray]) -> dict[str, float]:
    out = {k: float(np.mean(v)) for k, v in parts.items() if k.startswith("R@")}
    out["median_rank"] = float(np.median(parts["rank"]))
    out["mAP@10"] = float(np.mean(parts["AP@10"]))
    return out


def retrieval_metrics(scores: np.ndarray, relevant: np.ndarray, ks: Sequence[int] = KS) -> dict[str, float]:
    """R@K, median rank and mAP@10 of a score matrix [Nq, Nc] with one relevant column per query."""
    return summarise(per_query(*query_ranks(scores, relevant), ks))


def chance_levels(n_candidates: int, ks: Sequence[int] = KS) -> dict[str, float]:
    n = int(n_candidates)
    out = {f"R@{k}": min(1.0, k / n) for k in ks}
    out["median_rank"] = (n + 1) / 2
    out["mAP@10"] = float(sum(1.0 / r for r in range(1, min(10, n) + 1)) / n)
    return out


def bootstrap_ci(parts: dict[str, np.ndarray], n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, list[float]]:
    """Percentile intervals of each summary metric, resampling queries."""
    rng = np.random.default_rng(seed)
    n = len(parts["rank"])
    idx = rng.integers(0, n, size=(n_boot, n))
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    out = {}
    for k, v in parts.items():
        if k.startswith("_"):
            continue
        stats = np.median(v[idx], axis=1) if k == "rank" else v[idx].mean(1)
        name = "median_rank" if k == "rank" else ("mAP@10" if k == "AP@10" else k)
        out[name] = [float(np.percentile(stats, lo)), float(np.percentile(stats, hi))]
    return out


def paired_difference_ci(a: np.ndarray, b: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> list[float]:
    """Interval of mean(a - b) over queries (paired bootstrap): is model a better than b beyond noise?"""
    rng = np.random.default_rng(seed)
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    stats = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(1)
    return [float(np.percentile(stats, (1 - level) / 2 * 100)), float(np.percentile(stats, (1 + level) / 2 * 100))]


def rerank(scores: np.ndarray, exact: np.ndarray, shortlist: int) -> np.ndarray:
    """Scores after re-ranking each query's top-`shortlist` candidates (by `scores`) by `exact` [Nq, Nc]:
    the shortlist comes first, ordered by the exact score; the rest keep their order below it."""
    s = np.asarray(scores, dtype=np.float64)
    out = s.copy()
    top = np.argsort(-s, axis=1, kind="stable")[:, :shortlist]
    rows = np.arange(len(s))[:, None]
    ex = np.asarray(exact, dtype=np.float64)[rows, top]
    out[rows, top] = ex - ex.min() + s.max() + 1.0  # the shortlist, by exact score, above every other candidate
    return out


def caption_ambiguity_bound(text_emb: np.ndarray, threshold: float = 0.95, ks: Sequence[int] = KS) -> dict:
    """An upper bound on text->audio recall from near-identical captions: a caption with k near-duplicates
    among the test captions (cosine >= threshold of a reference sentence embedding) matches k+1 clips
    equally well, so even a perfect model finds its own clip within the top K with probability
    min(1, K / (k+1)). Returns the bound per K and how many captions have a near-duplicate."""
    t = np.asarray(text_emb, dtype=np.float64)
    t = t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
    sim = t @ t.T
    dup = (sim >= threshold).sum(1) - 1
    out = {f"R@{k}": float(np.mean(np.minimum(1.0, k / (dup + 1)))) for k in ks}
    out["median_rank"] = float(np.median(1 + dup / 2))
    out["captions_with_near_duplicates"] = int((dup > 0).sum())
    out["threshold"] = threshold
    return out


# -- evaluating a model on an audiocaption split ------------------------------------------------------------
def reference_text_embeddings(texts: list[str]) -> np.ndarray:
    """Sentence embeddings from the packaged, untrained all-MiniLM-L6-v2 (mean pooled): a reference for which
    captions say the same thing, independent of the model under test."""
    import torch

    from mulap.models.text import TextEncoder, additive_mask, load_tokenizer

    enc = TextEncoder("minilm", 6).eval()
    tok = load_tokenizer("minilm")
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), 128):
            b = tok(texts[i : i + 128], padding=True, truncation=True, max_length=64, return_tensors="pt")
            h = enc.run_layers(enc.embed(b["input_ids"]), additive_mask(b["attention_mask"], torch.float32), 0, 6)
            w = b["attention_mask"].unsqueeze(-1).float()
            out.append(((h * w).sum(1) / w.sum(1)).numpy())
    return np.concatenate(out)


def best_windows(model, chunk_feats, chunk_emb: np.ndarray, query: np.ndarray):
    """The transformer-length window of a clip's chunk features around its chunk most similar to `query`."""
    return model.window_at(chunk_feats, int(np.argmax(chunk_emb @ query)))


def evaluate_retrieval(
    model,
    data_dir,
    split: str = "test",
    rerank_n: int = 10,
    n_boot: int = 1000,
    num_workers: int = 2,
    progress: bool = True,
    audio_dir: str = "audio",
) -> dict:
    """Text->audio and audio->text retrieval on an audiocaption split: contrastive scores, then (for models
    with a cross-encoder) the top `rerank_n` re-scored with `match`. Returns a JSON-ready dict with the
    metrics, their 95 % intervals, chance levels, the caption-ambiguity bound and per-query parts."""
    import torch

    from mulap.audio.io import AudioError
    from mulap.data.audiocaption import read_split
    from mulap.inference.extract import extract

    model.require_joint("retrieval evaluation")
    pairs, skipped = read_split(data_dir, split, audio_dir, on_bad="skip")
    if len(pairs) < 2:
        raise ValueError(f"{data_dir}: the {split} split has {len(pairs)} usable record(s); retrieval needs at least 2")
    feats, track, failures = extract(
        model.backbone,
        [p.audio_path for p in pairs],
        num_workers=num_workers,
        progress=progress,
        desc=f"retrieval {split}",
        device=model.device,
    )
    if failures:
        raise AudioError(failures[0][0], f"{failures[0][1]} ({len(failures)} clip(s) of the {split} split unreadable)")
    n = len(pairs)
    feats_t = torch.from_numpy(feats)
    per_clip = [feats_t[torch.from_numpy(track == i)] for i in range(n)]
    audio = model.project_audio(torch.stack([c.mean(0) for c in per_clip]))
    chunk_emb = [model.project_audio(c) for c in per_clip]
    captions = [p.caption for p in pairs]
    text = model.embed_text(captions)
    sim = audio @ text.T  # [clips, captions]
    rel = np.arange(n)
    result = {
        "split": split,
        "n": n,
        "skipped_records": len(skipped),
        "model": model.name,
        "chance": chance_levels(n),
        "caption_ambiguity_bound": caption_ambiguity_bound(reference_text_embeddings(captions)),
    }
    parts = {}
    for direction, scores in (("t2a", sim.T), ("a2t", sim)):
        parts[(direction, "contrastive")] = per_query(*query_ranks(scores, rel))
        if rerank_n and model.max_chunks:
            k = min(rerank_n, n)
            top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            windows, texts = [], []
            for q in range(n):
                for c in top[q]:
                    clip, cap = (c, q) if direction == "t2a" else (q, c)
                    windows.append(best_windows(model, per_clip[clip], chunk_emb[clip], text[cap]))
                    texts.append(captions[cap])
            exact = np.zeros_like(scores)
            exact[np.arange(n)[:, None], top] = model.match_pairs(windows, texts).reshape(n, k)
            parts[(direction, "reranked")] = per_query(*query_ranks(rerank(scores, exact, k), rel))
    for (direction, kind), p in parts.items():
        result.setdefault(direction, {})[kind] = {**summarise(p), "ci95": bootstrap_ci(p, n_boot)}
    for direction in ("t2a", "a2t"):
        if (direction, "reranked") in parts:
            result[direction]["rerank_minus_contrastive_R@1_ci95"] = paired_difference_ci(
                parts[(direction, "reranked")]["R@1"], parts[(direction, "contrastive")]["R@1"], n_boot
            )
    result["rerank_n"] = int(rerank_n) if (("t2a", "reranked") in parts) else 0
    result["_parts"] = parts
    return result


def recall_curve(p: dict, max_k: int) -> list[tuple[float, float]]:
    """(K, R@K) for K = 1..max_k from per-query parts (expected ranks with ties)."""
    return [(k, float(np.mean(np.clip((k - p["_above"]) / (p["_ties"] + 1), 0.0, 1.0)))) for k in range(1, max_k + 1)]


def write_retrieval(result: dict, out) -> dict:
    """metrics.json (without the per-query parts) and plots/recall_at_k.png into `out`."""
    from pathlib import Path

    from mulap.evaluation.plots import plot_curves
    from mulap.infra.files import write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    public = {k: v for k, v in result.items() if not k.startswith("_")}
    write_json(out / "metrics.json", public)
    n = result["n"]
    max_k = min(n, 50)
    curves = {f"{d} {kind}": recall_curve(p, max_k) for (d, kind), p in result["_parts"].items()}
    curves["chance"] = [(k, min(1.0, k / n)) for k in range(1, max_k + 1)]
    plot_curves(
        curves,
        out / "plots" / "recall_at_k.png",
        title=f"retrieval on {n} {result['split']} clips ({result['model']})",
        xlabel="K",
        ylabel="recall@K",
    )
    return public
