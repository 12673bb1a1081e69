"""mulap: music audio representations learnt from weakly aligned text (MuLaP).

    import mulap
    model = mulap.load("supervised_mtt")      # see mulap.api

Heavy modules (torch, transformers) are imported on first use, so `import mulap` stays fast.
"""
from __future__ import annotations

_LAZY = {"load": "mulap.api", "Model": "mulap.api"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mulap' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])
