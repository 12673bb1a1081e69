"""Optimiser and schedule shared by pre-training and fine-tuning."""
from __future__ import annotations

import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

NO_DECAY_TYPES = (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.Embedding)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on weight matrices/kernels, none on biases, norms and embeddings' LayerNorm.

    Groups are built by module type (not by name patterns), so every trainable parameter
    lands in exactly one group; tied parameters are counted once.
    """
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            if name == "bias" or isinstance(module, NO_DECAY_TYPES) or p.ndim < 2:
                no_decay.append(p)
            else:
                decay.append(p)
    return [g for g in ({"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}) if g["params"]]


def adamw_with_warmup(model: nn.Module, lr: float, weight_decay: float, betas, eps: float, total_steps: int, warmup_ratio: float):
    opt = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=tuple(betas), eps=eps)
    total = max(1, int(total_steps))
    sched = get_linear_schedule_with_warmup(opt, int(round(warmup_ratio * total)), total)
    return opt, sched
