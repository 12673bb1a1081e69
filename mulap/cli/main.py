"""The `mulap` command. Thin: parses arguments and calls one function per subcommand.

mulap pretrain [--config FILE] [--pretrain_id ID] [key=value ...]
mulap downstream <pretrain_id> <task> [--downstream_id ID] [key=value ...]
mulap eval <pretrain_id> <downstream_id> [key=value ...]
mulap prepare <task> <raw_dir> [--out DIR] [key=value ...]
mulap prepare csv <labels.csv> <audio_dir> --name NAME [--out DIR]
mulap embed <pretrain_id|random|supervised_mtt|supervised_msd|backbone file> <audio...> -o OUT
mulap tag <audio...> [--model supervised_mtt|supervised_msd] [--top K] [-o tags.csv] [--taggram DIR]
mulap export <pretrain_id|experiment folder> <dir>
mulap search <model> <folder|index> "query" [--top K] [--rerank N] [--json] | --like song.mp3
mulap zeroshot <model> <task> [--prompts FILE] [--out DIR]
mulap eval-retrieval <model> <audiocaption dir> [--split test] [--rerank N]
mulap data demo [--out DIR] [--size small|default|large] [--seed N]
mulap data shard <audiocaption dir> <out> [--shard-size 500MB] [--format flac|npy] [--overwrite] [--workers N]
mulap demo [--out DIR]
"""

from __future__ import annotations

import os
import shlex
import sys

from mulap.cli.commands import COMMANDS
from mulap.cli.parser import build_parser
from mulap.infra.config import ConfigError
from mulap.infra.extras import MissingExtra

# commands that train or evaluate with Lightning and scikit-learn (mulap.infra.console quiets both)
LIGHTNING_COMMANDS = ("pretrain", "downstream", "eval", "zeroshot", "eval-retrieval", "demo")


# What a command's user can act on, said in one line (exit status 2): bad input and config (ValueError and the
# mulap errors derived from it; a missing config key is a ConfigError), the operating system refusing a read or a write (OSError: missing,
# forbidden, full disk), too little memory, an optional extra not installed (MissingExtra: its one line names the
# command, the extra and the pip line). Anything else (TypeError, AttributeError, IndexError, RuntimeError from
# deep inside torch, ...) is a bug in mulap or a library and keeps its traceback.
USER_ERRORS = (ConfigError, ValueError, OSError, MemoryError, MissingExtra)


def _for_the_user(exc: BaseException) -> bool:
    return isinstance(exc, USER_ERRORS) or type(exc).__name__ == "OutOfMemoryError"  # torch's, a RuntimeError


def _same_command(args, argv: list[str]) -> str:
    """The command line that continues an interrupted command: the same one (pretrain: with the id it generated)."""
    argv = list(argv)
    if args.command == "pretrain" and getattr(args, "generated_id", False):
        at = argv.index("pretrain") + 1
        argv[at:at] = ["--pretrain_id", args.pretrain_id]
    return "mulap " + shlex.join(argv)


def _interrupted_line(args, argv: list[str], exc: BaseException, signum: int) -> str:
    """One line: which signal, where the command stopped and what it kept, and the command that goes on."""
    from mulap.infra.interrupts import Interrupted, signal_name

    said = f"interrupted ({signal_name(signum)})"
    if isinstance(exc, Interrupted) and exc.detail:
        said += f" {exc.detail}"
    if args.command == "pretrain":
        then = "resume"
    elif args.command == "embed":
        said += f"; nothing written to {args.out} (the output is written only at the end)"
        then = "start again"
    elif args.command == "search":  # what the index kept is in the detail (mulap.inference.search.build_or_update)
        then = "continue"
    elif args.command == "demo":  # a second run reuses the stages that finished
        then = "continue"
    else:
        then = "start again"
    return f"{said}; run the same command to {then}: {_same_command(args, argv)}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    # key=value overrides may come after options (e.g. `--pretrain_id X training.epochs=5`)
    args, extra = parser.parse_known_args(argv)
    stray = [e for e in extra if e.startswith("-") or "=" not in e]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = list(getattr(args, "overrides", []) or []) + extra
    from mulap.infra import console, interrupts

    with interrupts.cli_handlers():  # SIGTERM: an exception like Ctrl-C's, so that both end here
        try:
            console.setup(lightning=args.command in LIGHTNING_COMMANDS)
            COMMANDS[args.command](args)
        except BaseException as exc:
            # an error that follows a SIGTERM is its consequence (e.g. a data-loader worker the same signal ended)
            signum = interrupts.signal_of(exc) or (interrupts.received() if isinstance(exc, Exception) else None)
            if os.environ.get("MULAP_DEBUG") or (signum is None and not _for_the_user(exc)):
                raise
            console.end_progress()  # the line below starts a line of its own and stays the last one
            console.finish()
            if signum is None and isinstance(exc, MissingExtra):  # "mulap demo needs the demo extra (...): pip install ..."
                command = " ".join(filter(None, (args.command, getattr(args, "data_command", None))))
                print(exc.line(f"mulap {command}"), file=sys.stderr)
                return 2
            if signum is None:
                print(f"mulap {args.command}: error: {console.one_line(exc)}", file=sys.stderr)
                return 2
            print(f"mulap {args.command}: {_interrupted_line(args, argv, exc, signum)}", file=sys.stderr)
            return interrupts.exit_status(signum)
        finally:
            console.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
