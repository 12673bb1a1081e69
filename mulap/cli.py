"""The `mulap` command. Thin: parses arguments and calls one function per subcommand.

    mulap pretrain [--config FILE] [--pretrain_id ID] [key=value ...]
    mulap downstream <pretrain_id> <task> [--downstream_id ID] [key=value ...]
    mulap eval <pretrain_id> <downstream_id> [key=value ...]
    mulap prepare <task> <raw_dir> [--out DIR] [key=value ...]
    mulap embed <pretrain_id|random|supervised_mtt|supervised_msd|backbone file> <audio...> -o OUT
    mulap data demo [--out DIR] [--size small|default] [--seed N]
    mulap demo [--out DIR]
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from mulap.config import ConfigError, load_config
from mulap.files import WriteError


def _add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. training.epochs=5")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mulap", description="Music audio representations from weak language supervision.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pretrain", help="pre-train MuLaP on an audiocaption dataset (resumes an existing --pretrain_id)")
    p.add_argument("--config", help="a YAML file with (part of) the config")
    p.add_argument("--pretrain_id", help="experiment id (default: the current time); an existing id resumes")
    _add_overrides(p)

    p = sub.add_parser("downstream", help="train a probe on a downstream task on top of a backbone")
    p.add_argument("pretrain_id", help="a pre-training id, or random / supervised_mtt / supervised_msd")
    p.add_argument("task", help="mtt_tagging, jamendo_tagging, jamendo_genre, jamendo_instrument, jamendo_moodtheme, emomusic_reg, fma_clf, nsynth_clf")
    p.add_argument("--downstream_id", help="probe run id (default: <task>-<time>)")
    p.add_argument("--config", help="a YAML file with (part of) the config")
    _add_overrides(p)

    p = sub.add_parser("eval", help="test-set metrics and plots of a trained probe")
    p.add_argument("pretrain_id")
    p.add_argument("downstream_id")
    _add_overrides(p)

    p = sub.add_parser("prepare", help="decode a downstream dataset as its publisher ships it into mulap's prepared form")
    p.add_argument("task")
    p.add_argument("raw_dir")
    p.add_argument("--out", help="default: <env.data_root>/datasets/<dataset name>")
    _add_overrides(p)

    p = sub.add_parser("embed", help="chunk- and track-level embeddings of audio files")
    p.add_argument("model", help="a pre-training id, random, supervised_mtt, supervised_msd, or a backbone .safetensors")
    p.add_argument("inputs", nargs="+", help="audio files or folders")
    p.add_argument("-o", "--out", required=True, help="output file (.npz or .parquet)")
    p.add_argument("--batch_size", type=int, default=32)
    _add_overrides(p)

    p = sub.add_parser("data", help="dataset utilities")
    dsub = p.add_subparsers(dest="data_command", required=True)
    d = dsub.add_parser("demo", help="build the offline demo world (captioned corpus + five downstream datasets)")
    d.add_argument("--out", default="data/demo")
    d.add_argument("--size", default="default", choices=["small", "default"])
    d.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("demo", help="the whole pipeline on the offline demo world, with a report")
    p.add_argument("--out", default="demo_out")
    p.add_argument("--size", default="default", choices=["small", "default"])
    p.add_argument("--settings", help="a demo settings file in configs/demo/ (default: the --size one), e.g. ablation")
    _add_overrides(p)
    return parser


def cmd_pretrain(args) -> None:
    from mulap.training.pretrain import experiment_dir, run_pretraining

    pretrain_id = args.pretrain_id or time.strftime("%Y%m%d-%H%M%S")
    probe = load_config(args.config, args.overrides, validate=False)  # only to find the folder: the run checks its config
    saved = experiment_dir(probe, pretrain_id) / "config.yaml"
    if saved.is_file():  # resume: the saved config, with this call's overrides on top
        cfg = load_config(saved, args.overrides)
        print(f"resuming pre-training {pretrain_id} from {saved.parent}")
    else:
        cfg = load_config(args.config, args.overrides)
    exp_dir = run_pretraining(cfg, pretrain_id)
    print(f"pretrain_id: {pretrain_id}\nexperiment: {exp_dir}")


def cmd_downstream(args) -> None:
    from mulap.training.downstream import run_downstream

    downstream_id = run_downstream(args.pretrain_id, args.task, args.downstream_id, args.config, args.overrides)
    print(f"downstream_id: {downstream_id}")


def cmd_eval(args) -> None:
    from mulap.training.downstream import run_eval

    run_eval(args.pretrain_id, args.downstream_id, args.overrides)


def cmd_prepare(args) -> None:
    from mulap.data.downstream import get_task
    from mulap.data.prepare import prepare

    cfg = load_config(None, args.overrides)
    spec = get_task(args.task)
    out = Path(args.out) if args.out else Path(cfg.env.data_root) / "datasets" / spec.dataset
    report = prepare(args.task, args.raw_dir, out, num_workers=int(cfg.training.num_workers))
    print(report.summary())


def cmd_embed(args) -> None:
    from mulap.embed import embed_files

    cfg = load_config(None, args.overrides)
    out = embed_files(args.model, args.inputs, args.out, cfg, batch_size=args.batch_size)
    print(f"embeddings: {out}")


def cmd_data(args) -> None:
    from mulap.data.demo import build_demo

    build_demo(args.out, size=args.size, seed=args.seed)


def cmd_demo(args) -> None:
    from mulap.pipeline import demo_settings, run_demo

    settings = demo_settings(args.settings) if args.settings else None
    run_demo(args.out, size=args.size, overrides=args.overrides, settings=settings)


COMMANDS = {"pretrain": cmd_pretrain, "downstream": cmd_downstream, "eval": cmd_eval, "prepare": cmd_prepare,
            "embed": cmd_embed, "data": cmd_data, "demo": cmd_demo}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    # key=value overrides may come after options (e.g. `--pretrain_id X training.epochs=5`)
    args, extra = parser.parse_known_args(argv)
    stray = [e for e in extra if e.startswith("-") or "=" not in e]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = list(getattr(args, "overrides", []) or []) + extra
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        COMMANDS[args.command](args)
    except (ConfigError, ValueError, FileNotFoundError, KeyError, WriteError) as exc:
        if os.environ.get("MULAP_DEBUG"):
            raise
        print(f"mulap {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
