"""Where the default relative paths of the configs point.

The seed resolves `save/` and `data/` against its project folder, so `cd mulap/scripts &&
python pretrain.py` writes `<project>/save/experiments/...` whatever the current folder is.
mulap does the same for the *packaged defaults*: the project root is the folder above the
package when it holds `pyproject.toml` or the `configs/` link (a clone, editable or not used
through an install). For a wheel installed into site-packages there is no project folder;
the defaults then resolve against the current folder. `MULAP_ROOT=<folder>` overrides both
(a wheel install with a fixed home for save/ and data/; tests). Paths a user gives (command
line, `--config` file) always mean what a shell means: relative to the current folder.

What a run records (an experiment's config.yaml) holds them made absolute (`recorded_config`): a later
reader (`mulap export` from another folder) does not know which folder they were relative to.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import overload

# config keys that hold a file-system path and may be relative in the packaged defaults
PATH_KEYS = ("env.save_dir", "env.data_root", "dataset_config.data_dir")
# keys that hold a name or a path (a backbone file, a BERT folder): recorded absolute when they name one that exists
NAME_OR_PATH_KEYS = ("model_config.audio.init", "model_config.text.pretrained")


def project_root() -> Path | None:
    """The source checkout this mulap package lives in, or None for a site-packages install."""
    package = Path(__file__).resolve().parents[1]  # mulap/ (this file is mulap/infra/paths.py)
    root = package.parent
    if (root / "pyproject.toml").is_file() or (root / "configs").resolve() == package / "configs":
        return root
    return None


def defaults_base() -> Path:
    """The folder relative default paths are taken from: $MULAP_ROOT, else the project root, else the current folder."""
    if os.environ.get("MULAP_ROOT"):
        return Path(os.environ["MULAP_ROOT"]).expanduser().resolve()
    return project_root() or Path.cwd()


@overload
def resolve_default(value: str) -> str: ...
@overload
def resolve_default(value: None) -> None: ...
def resolve_default(value: str | None) -> str | None:
    """A packaged default path made absolute against `defaults_base()`; absolute paths and None unchanged."""
    if value is None or str(value) == "" or Path(str(value)).is_absolute():
        return value
    return str(defaults_base() / str(value))


def is_url(value: str) -> bool:
    """`pipe:<command>` or `<scheme>://...` (shards can be streamed from these), not a file-system path."""
    return value.startswith("pipe:") or "://" in value


def absolute(value: str | None) -> str | None:
    """A relative path made absolute against the current folder (what it means now); URLs and None unchanged."""
    if value is None or str(value) == "" or is_url(str(value)) or Path(str(value)).is_absolute():
        return value
    return os.path.abspath(str(value))


def recorded_config(cfg):
    """A copy of the run config `cfg` (OmegaConf) with its relative paths absolute, as a run records it."""
    import copy

    from omegaconf import OmegaConf

    out = copy.deepcopy(cfg)
    for key in (*PATH_KEYS, *NAME_OR_PATH_KEYS):
        value = OmegaConf.select(out, key)
        if isinstance(value, str) and (key in PATH_KEYS or Path(value).exists()):
            OmegaConf.update(out, key, absolute(value), merge=False)
    return out
