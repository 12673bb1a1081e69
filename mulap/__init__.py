"""mulap: music audio representations learnt from weakly aligned text (MuLaP).

    import mulap
    model = mulap.load("supervised_mtt")            # or a pre-training id, an export folder, ...
    emb = model.embed(audio, sample_rate)           # [N, 1506] float32 track embeddings

`import mulap` stays cheap (no torch): `mulap.load`, `mulap.Model` and submodules such as
`mulap.inference.hear` are imported on first use (PEP 562 module `__getattr__`).
"""

from __future__ import annotations

import importlib
import importlib.util

__version__ = "0.1.0"  # the one place the version is written (pyproject reads it from here)

# public names -> the module that defines them, imported when first asked for
_LAZY = {"load": "mulap.inference.api", "Model": "mulap.inference.api"}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")  # `mulap.inference.hear` without `import mulap.inference.hear`
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
