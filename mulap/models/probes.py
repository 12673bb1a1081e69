"""Probes on top of backbone features: logistic regression (one Linear) or an MLP."""

from __future__ import annotations

import torch
from torch import nn


class Probe(nn.Module):
    """[N, D] features -> [N, K] outputs (logits, or standardised regression values).

    Features are standardised with the training set's statistics (kept as buffers, so
    the saved probe is self-contained): pooled Musicnn features have very different
    scales across dimensions, which slows an Adam-trained probe a lot.
    """

    mean: torch.Tensor  # buffers (registered in __init__)
    std: torch.Tensor

    def __init__(self, in_dim: int, out_dim: int, kind: str = "mlp", hidden: int = 512, dropout: float = 0.0):
        super().__init__()
        if kind not in ("mlp", "linear"):
            raise ValueError(f"probe must be 'mlp' or 'linear', got {kind!r}")
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        if kind == "linear":
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, out_dim))
        else:
            self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))

    def set_standardisation(self, features: torch.Tensor) -> None:
        """Per-dimension mean/std of [N, D] training features. Dimensions that (nearly) never vary
        in training - dead units are common in a random backbone - keep scale 1, as in
        scikit-learn's StandardScaler, so an unseen test value cannot explode."""
        std = features.std(0)
        floor = 1e-3 * std.mean().clamp_min(1e-12)
        self.mean.copy_(features.mean(0))
        self.std.copy_(torch.where(std > floor, std, torch.ones_like(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)
