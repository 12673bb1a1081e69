"""The optional extras of the package (pyproject's [project.optional-dependencies]) and the one-line error
when one is missing.

`require(extra, module)` imports `module` at the place that needs it and returns it; when it is not
installed it raises `MissingExtra`, which says which extra brings it and the command that installs it.
`mulap` prints it as one line (exit status 2), e.g.

    mulap demo needs the demo extra (music21 is not installed): pip install 'mulap[demo]'
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

# extra -> the modules it brings (what `require` may be asked for)
EXTRAS: dict[str, tuple[str, ...]] = {
    "demo": ("music21", "pretty_midi", "tinysoundfont", "jinja2"),  # the world's scores, soundfont, synthesizer; the report
    "shards": ("webdataset",),  # `mulap data shard` and pre-training on shards
    "parquet": ("pyarrow",),  # `mulap embed -o x.parquet`
    "m4a": ("av",),  # m4a / AAC / ALAC decoding
}
# modules the extra cannot install (their declared dependencies do not install), with their own line
SEPARATE_INSTALL = {
    # tinysoundfont declares pyaudio (live playback, needs PortAudio to build); mulap renders offline only
    "tinysoundfont": "pip install --no-deps tinysoundfont==0.3.7",
}


class MissingExtra(ImportError):
    """A module of an optional extra is not installed. `line(subject)`: the message, e.g. with subject
    'mulap demo' (the CLI's) or 'mulap' (str(), for the Python API)."""

    def __init__(self, extra: str, module: str, purpose: str | None = None):
        self.extra, self.module, self.purpose = extra, module, purpose
        super().__init__(self.line("mulap"), name=module)

    @property
    def install(self) -> str:
        line = f"pip install 'mulap[{self.extra}]'"
        if self.module in SEPARATE_INSTALL:
            line += f" and {SEPARATE_INSTALL[self.module]}"
        return line

    def line(self, subject: str) -> str:
        purpose = f" {self.purpose}" if self.purpose else ""
        return f"{subject} needs the {self.extra} extra{purpose} ({self.module} is not installed): {self.install}"

    def __reduce__(self):  # raised in a worker process, it reaches the parent whole
        return type(self), (self.extra, self.module, self.purpose)


def require(extra: str, module: str, purpose: str | None = None) -> ModuleType:
    """`import module` (a module of `extra`, or one of its submodules), or MissingExtra when the extra's
    package is not installed. An ImportError from inside an installed package is not hidden."""
    top = module.split(".")[0]
    if top not in EXTRAS.get(extra, ()):
        raise ValueError(f"{module!r} is not a module of the {extra!r} extra")
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        # `import music21` with music21 absent, or blocked (sys.modules["music21"] = None): exc.name is "music21".
        # A missing dependency of an installed package, or a submodule missing from one, keeps its own error.
        name = exc.name or ""
        if name != top and not (name.startswith(top + ".") and sys.modules.get(top) is None):
            raise
        raise MissingExtra(extra, top, purpose) from None


def require_all(extra: str, purpose: str | None = None) -> None:
    """Check every module of `extra` before a long command starts (the demo: before minutes of work)."""
    for module in EXTRAS[extra]:
        require(extra, module, purpose)
