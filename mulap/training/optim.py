"""Optimiser and schedule shared by pre-training and fine-tuning."""

from __future__ import annotations

import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

NO_DECAY_TYPES = (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.Embedding)


def param_groups(
    model: nn.Module, weight_decay: float, lr: float | None = None, lr_scales: dict[nn.Module, float] | None = None
) -> list[dict]:
    """AdamW groups: decay on weight matrices/kernels, none on biases, norms and embeddings' LayerNorm.

    Groups are built by module type (not by name patterns), so every trainable parameter
    lands in exactly one group; tied parameters are counted once. `lr_scales` gives some
    submodules a learning rate of `lr * scale` (e.g. a pretrained text branch fine-tuned gently).
    """
    scale_of = {id(p): float(s) for module, s in (lr_scales or {}).items() for p in module.parameters()}
    groups: dict[tuple[float, bool], list] = {}
    seen = set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            no_decay = name == "bias" or isinstance(module, NO_DECAY_TYPES) or p.ndim < 2
            groups.setdefault((scale_of.get(id(p), 1.0), not no_decay), []).append(p)
    out = []
    for (scale, decay), params in sorted(groups.items(), key=lambda kv: (-kv[0][0], not kv[0][1])):
        group = {"params": params, "weight_decay": weight_decay if decay else 0.0}
        if lr is not None and scale != 1.0:
            group["lr"] = lr * scale
        out.append(group)
    return out


def adamw_with_warmup(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    betas,
    eps: float,
    total_steps: int,
    warmup_ratio: float,
    lr_scales: dict[nn.Module, float] | None = None,
):
    opt = torch.optim.AdamW(param_groups(model, weight_decay, lr, lr_scales), lr=lr, betas=tuple(betas), eps=eps)
    total = max(1, int(total_steps))
    sched = get_linear_schedule_with_warmup(opt, int(round(warmup_ratio * total)), total)
    return opt, sched
