"""Every subcommand's positionals and options say what they are in --help."""

from __future__ import annotations

import argparse

from mulap.cli.parser import build_parser as _parser


def _subparsers(parser: argparse.ArgumentParser, prefix: str = ""):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix}{name}", sub
                yield from _subparsers(sub, f"{prefix}{name} ")


def test_every_argument_has_help():
    missing = []
    for name, sub in _subparsers(_parser()):
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if not action.help:
                missing.append(f"mulap {name}: {action.dest}")
    assert not missing, missing


def test_prepare_help_lists_every_task():
    from mulap.data.tasks import TASKS

    prepare = dict(_subparsers(_parser()))["prepare"]
    text = prepare.format_help()
    assert all(task in text for task in TASKS) and "csv" in text
