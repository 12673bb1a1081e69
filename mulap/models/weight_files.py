"""Weight files (safetensors) as mulap writes and reads them.

Written through `mulap.infra.files.atomic_write_bytes`, like every other file: the umask's permissions (safetensors'
own writer leaves 0600, so a shared export could not be read by others) and a full disk as one WriteError
naming the file.

Read as files someone else may have written: a model is built only once a weightless copy of it (torch's
meta device, no memory) shows that every tensor it allocates is in the weights file with that shape. So the
config next to the weights (an export's config.json, an experiment's config.yaml) cannot make mulap allocate
more than the weights file holds, and weights that do not fit are named before anything is loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from mulap.infra.files import atomic_write_bytes


class ModelLoadError(ValueError):
    """A path that is not a usable mulap model; the message names the path and what is missing."""


def save_safetensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """`tensors` as the safetensors file `path`, atomically. Serialised in memory first (for a moment the
    file's size again), then written by mulap.infra.files."""
    from safetensors.torch import save

    return atomic_write_bytes(path, save(tensors, metadata=metadata))


def module_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """A module's state as safetensors stores it: contiguous CPU tensors, a tied weight once (under its first
    name; safetensors.torch.load_model ties it again), other tensors sharing memory copied apart."""
    out: dict[str, torch.Tensor] = {}
    views: dict[int, tuple] = {}
    for name, t in module.state_dict().items():
        t = t.detach()
        if t.numel():
            ptr, view = t.untyped_storage().data_ptr(), (t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)
            if ptr in views:
                if views[ptr] == view:
                    continue  # the same tensor under another name
                t = t.clone()
            else:
                views[ptr] = view
        out[name] = t.contiguous().cpu()
    return out


def safetensors_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """The tensors a safetensors file holds, from its header (no tensor is read). The safetensors library
    checks that the header is consistent with the file's size (a header that promises more data than the file
    holds is refused), so these shapes are backed by bytes on disk."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}


def fit_problem(skeleton: nn.Module, stored: Mapping[str, tuple[int, ...] | None]) -> str | None:
    """Why the tensors `stored` (name -> shape; None: not a tensor) cannot be loaded into `skeleton`, or None."""
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    tied: dict[int, list[str]] = {}
    for name, p in skeleton.named_parameters(remove_duplicate=False):
        tied.setdefault(id(p), []).append(name)
    also = {name: names for names in tied.values() for name in names}
    missing = [k for k in expected if k not in stored and not any(o in stored for o in also.get(k, ()))]
    unexpected = sorted(set(stored) - set(expected))
    wrong = [
        f"{k} is {'not a tensor' if stored[k] is None else list(stored[k] or ())}, the config makes it {list(v)}"
        for k, v in expected.items()
        if k in stored and stored[k] != v
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} tensor(s) missing: {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected: {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}")
    if wrong:
        parts.append(f"{len(wrong)} of another shape: {'; '.join(wrong[:2])}{' ...' if len(wrong) > 2 else ''}")
    return "; ".join(parts) or None


M = TypeVar("M", bound=nn.Module)


def build_to_fit(build: Callable[[], M], stored: Mapping[str, tuple[int, ...] | None], weights: Path, config: str) -> M:
    """`build()` (fresh weights, to be loaded from `weights` next), once its weightless copy fits `stored`.
    Raises ModelLoadError naming `weights`, `config` (where the architecture was read) and what does not fit."""
    with torch.device("meta"):
        skeleton = build()
    problem = fit_problem(skeleton, stored)
    if problem:
        raise ModelLoadError(f"{weights}: the weights do not fit {config} ({problem})")
    return build()


def first_line(exc: BaseException) -> str:
    """'Type: first line of the message', for one-line errors about a library's exception."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def tensor_shapes(state: dict) -> dict[str, tuple[int, ...] | None]:
    """name -> shape of a loaded state dict (None for a value that is not a tensor)."""
    return {k: tuple(v.shape) if isinstance(v, torch.Tensor) else None for k, v in state.items()}
