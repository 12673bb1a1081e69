"""The `mulap` command: a parser built from the registries and one small function per command."""

from mulap.cli.main import main

__all__ = ["main"]
