"""Where the default relative paths of the configs point.

The seed resolves `save/` and `data/` against its project folder, so `cd mulap/scripts &&
python pretrain.py` writes `<project>/save/experiments/...` whatever the current folder is.
mulap does the same for the *packaged defaults*: the project root is the folder above the
package when it holds `pyproject.toml` or the `configs/` link (a clone, editable or not used
through an install). For a wheel installed into site-packages there is no project folder;
the defaults then resolve against the current folder. `MULAP_ROOT=<folder>` overrides both
(a wheel install with a fixed home for save/ and data/; tests). Paths a user gives (command
line, `--config` file) always mean what a shell means: relative to the current folder.
"""
from __future__ import annotations

import os
from pathlib import Path

# config keys that hold a file-system path and may be relative in the packaged defaults
PATH_KEYS = ("env.save_dir", "env.data_root", "dataset_config.data_dir")


def project_root() -> Path | None:
    """The source checkout this mulap package lives in, or None for a site-packages install."""
    package = Path(__file__).resolve().parent
    root = package.parent
    if (root / "pyproject.toml").is_file() or (root / "configs").resolve() == package / "configs":
        return root
    return None


def defaults_base() -> Path:
    """The folder relative default paths are taken from: $MULAP_ROOT, else the project root, else the current folder."""
    if os.environ.get("MULAP_ROOT"):
        return Path(os.environ["MULAP_ROOT"]).expanduser().resolve()
    return project_root() or Path.cwd()


def resolve_default(value: str | None) -> str | None:
    """A packaged default path made absolute against `defaults_base()`; absolute paths and None unchanged."""
    if value is None or str(value) == "" or Path(str(value)).is_absolute():
        return value
    return str(defaults_base() / str(value))
