"""The demo's Jinja2 templates (report.md.j2, language.md.j2), all read through one Environment: undefined
names fail, and a line holding only a block tag writes nothing (trim_blocks, lstrip_blocks)."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined


def environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(Path(__file__).parent),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(name: str, context: dict) -> str:
    """The template `name` (a file beside this module) filled with `context`."""
    return environment().get_template(name).render(context)
