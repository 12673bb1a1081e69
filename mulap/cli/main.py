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

import argparse
import os
import re
import shlex
import sys
import time
from pathlib import Path

from mulap import __version__
from mulap.infra.config import ConfigError, load_config

# commands that train or evaluate with Lightning and scikit-learn (mulap.infra.console quiets both)
LIGHTNING_COMMANDS = ("pretrain", "downstream", "eval", "zeroshot", "eval-retrieval", "demo")


def _add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. training.epochs=5")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mulap", description="Music audio representations from weak language supervision.")
    parser.add_argument("--version", action="version", version=f"mulap {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pretrain", help="pre-train MuLaP on an audiocaption dataset (resumes an existing --pretrain_id)")
    p.add_argument("--config", help="a YAML file with (part of) the config")
    p.add_argument("--pretrain_id", help="experiment id (default: the current time); an existing id resumes")
    _add_overrides(p)

    p = sub.add_parser("downstream", help="train a probe on a downstream task on top of a backbone")
    p.add_argument("pretrain_id", help="a pre-training id, or random / supervised_mtt / supervised_msd")
    p.add_argument("task", help="mtt_tagging, jamendo_tagging, jamendo_genre, jamendo_instrument, jamendo_moodtheme, emomusic_reg, "
                                "fma_clf, nsynth_clf, or csv:NAME (a dataset made by `mulap prepare csv ... --name NAME`)")
    p.add_argument("--downstream_id", help="probe run id (default: <task>-<time>)")
    p.add_argument("--config", help="a YAML file with (part of) the config")
    _add_overrides(p)

    p = sub.add_parser("eval", help="test-set metrics and plots of a trained probe")
    p.add_argument("pretrain_id", help="the pre-training id (or random / supervised_mtt / supervised_msd) the probe was trained on")
    p.add_argument("downstream_id", help="the probe run to evaluate (printed by `mulap downstream`)")
    _add_overrides(p)

    p = sub.add_parser("prepare", help="decode a downstream dataset as its publisher ships it (or your own labels.csv) "
                                       "into mulap's prepared form")
    p.add_argument("task", help="mtt_tagging, jamendo_tagging, jamendo_genre, jamendo_instrument, jamendo_moodtheme, "
                                "emomusic_reg, fma_clf, nsynth_clf; or csv for your own labelled audio")
    p.add_argument("raw_dir", help="the dataset folder as its publisher ships it; for csv: the labels .csv file")
    p.add_argument("audio_dir", nargs="?", help="csv only: the folder the csv's file column is relative to")
    p.add_argument("--name", help="csv only: the dataset's name; train on it as task csv:NAME")
    p.add_argument("--out", help="default: <env.data_root>/datasets/<dataset name> (csv: csv_<NAME>)")
    _add_overrides(p)

    p = sub.add_parser("embed", help="chunk- and track-level embeddings of audio files")
    p.add_argument("model", help="a pre-training id, random, supervised_mtt, supervised_msd, a backbone .safetensors "
                                 "or an exported model folder (anything mulap.load takes)")
    p.add_argument("inputs", nargs="+", help="audio files or folders")
    p.add_argument("-o", "--out", required=True, help="output file (.npz or .parquet), checked before anything is embedded")
    p.add_argument("--batch_size", type=int, default=32, help="3 s chunks per backbone forward pass (default 32; lower it "
                                                                "if memory is short)")
    _add_overrides(p)

    p = sub.add_parser("tag", help="the musicnn taggers' 50 tags per audio file (as `python -m musicnn.tagger`)")
    p.add_argument("inputs", nargs="+", help="audio files or folders (searched recursively)")
    p.add_argument("--model", default="supervised_mtt", help="a tagging model: supervised_mtt (MagnaTagATune tags, "
                                                             "default) or supervised_msd (Million Song Dataset tags)")
    p.add_argument("--top", type=int, default=5, help="tags shown (and written with -o) per file, highest first (default 5)")
    p.add_argument("-o", "--out", help="write a CSV with the columns file,tag,probability (the top K rows per file)")
    p.add_argument("--taggram", help="write one PNG per file into this folder: the tags' probabilities over time (3 s steps)")
    p.add_argument("--batch_size", type=int, default=32, help="3 s chunks per forward pass (default 32)")

    p = sub.add_parser("export", help="write a pre-trained model as one self-contained folder (config, weights, tokenizer, model card)")
    p.add_argument("model", help="a pre-training id (under env.save_dir) or an experiment folder")
    p.add_argument("out", help="the folder to write (loadable with mulap.load(out) anywhere, offline)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in that folder")
    _add_overrides(p)

    p = sub.add_parser("search", help="search a music folder by text (or by example with --like)")
    p.add_argument("model", help="a pre-trained MuLaP (id, experiment or export folder); audio-only models: --like only")
    p.add_argument("folder", help="a folder of music (indexed incrementally), or an index folder")
    p.add_argument("query", nargs="?", help='a description, e.g. "calm solo piano"')
    p.add_argument("--like", metavar="AUDIO", help="find music like this file instead of a text query")
    p.add_argument("--top", type=int, default=10, help="how many results (default 10)")
    p.add_argument("--rerank", type=int, default=0, metavar="N",
                   help="re-score the top N with MuLaP's audio-text matching cross-encoder (slower, exact)")
    p.add_argument("--json", action="store_true", help="print the results as JSON, [{file, score, start, end}], instead of a table")
    p.add_argument("--index", metavar="PATH", help="where the index lives (default <folder>/.mulap-index)")
    p.add_argument("--rebuild", action="store_true", help="re-embed every file (e.g. for another model)")
    _add_overrides(p)

    p = sub.add_parser("zeroshot", help="zero-shot classification/tagging of a prepared task's test split from text prompts")
    p.add_argument("model", help="a pre-trained MuLaP (id, experiment or export folder)")
    p.add_argument("task", help="mtt_tagging, jamendo_tagging, jamendo_genre, jamendo_instrument, jamendo_moodtheme, "
                                "emomusic_reg, fma_clf, nsynth_clf")
    p.add_argument("--prompts", metavar="FILE", help="YAML/JSON: class -> text or list of texts (default: built-in ensembles)")
    p.add_argument("--out", help="output folder (default <experiment>/zeroshot/<task>)")
    p.add_argument("--write-prompts", metavar="FILE", help="write the default prompts of the task to FILE and stop")
    p.add_argument("--raw", action="store_true",
                   help="score with the raw cosines (no per-class standardisation on the validation split's scores)")
    _add_overrides(p)

    p = sub.add_parser("eval-retrieval", help="text->audio and audio->text retrieval metrics on an audiocaption split")
    p.add_argument("model", help="a pre-trained MuLaP (id, experiment or export folder)")
    p.add_argument("data_dir", help="an audiocaption dataset folder (dataset_<split>.json + audio/)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="which split file of the corpus to score (default test)")
    p.add_argument("--rerank", type=int, default=10, metavar="N", help="re-score the top N with match (0: off; default 10)")
    p.add_argument("--out", help="output folder (default <experiment>/retrieval/<split>)")
    _add_overrides(p)

    p = sub.add_parser("data", help="dataset utilities")
    dsub = p.add_subparsers(dest="data_command", required=True)
    d = dsub.add_parser("demo", help="build the offline demo world (captioned corpus + five downstream datasets)")
    d.add_argument("--out", default="data/demo", help="the folder to build it in (default data/demo)")
    d.add_argument("--size", default="default", choices=["small", "default", "large"],
                   help="small: seconds (tests); default: minutes; large: the GPU demo's world")
    d.add_argument("--seed", type=int, default=0, help="the same seed builds the same world, byte for byte (default 0)")
    d = dsub.add_parser("nsynth-soundfont", help="NSynth-layout notes of every GM program rendered through another "
                                                 "soundfont (an out-of-world test set, e.g. Debian's csound-soundfont)")
    d.add_argument("soundfont", help="a General MIDI .sf2, e.g. /usr/share/sounds/sf2/sf_GMbank.sf2")
    d.add_argument("--out", required=True, help="folder for nsynth-{train,valid,test}/ (then `mulap prepare nsynth_clf OUT`)")
    d.add_argument("--notes", type=int, default=12, help="test notes per GM program (default 12: ~1,000 notes)")
    d.add_argument("--seed", type=int, default=0, help="seed of the note choice (default 0)")
    d = dsub.add_parser("shard", help="convert an audiocaption folder (every split) into tar shards + shards.json for streaming")
    d.add_argument("src", help="an audiocaption folder (dataset_{train,val,test}.json + audio/)")
    d.add_argument("out", help="output folder (must be empty, or hold shards from before with --overwrite)")
    d.add_argument("--shard-size", default="500MB", help="about this many bytes per shard (e.g. 500MB, 64MiB)")
    d.add_argument("--format", default="flac", choices=["flac", "npy"], help="audio in the shards (16 kHz mono)")
    d.add_argument("--overwrite", action="store_true", help="replace the shards already in <out>")
    d.add_argument("--workers", type=int, default=2, help="processes decoding and resampling the audio")

    p = sub.add_parser("demo", help="the whole pipeline on the offline demo world, with a report")
    p.add_argument("--out", default="demo_out", help="the folder for the world, runs, report.md and plots (default "
                                                     "demo_out); a second run there reuses finished stages")
    p.add_argument("--size", default="default", choices=["small", "default", "large"],
                   help="small: a few minutes; default: ~33 minutes on 2 CPU cores; large: for GPUs (see --settings gpu)")
    p.add_argument("--settings", help="a demo settings file in configs/demo/ (default: the --size one), e.g. ablation")
    _add_overrides(p)
    return parser


def cmd_pretrain(args) -> None:
    from mulap.demo.example_corpus import ensure_pretraining_corpus
    from mulap.infra.experiment import run_dir
    from mulap.training.pretrain import run_pretraining

    args.generated_id = args.pretrain_id is None  # an interrupted run resumes with this id (_same_command)
    pretrain_id = args.pretrain_id = args.pretrain_id or time.strftime("%Y%m%d-%H%M%S")
    probe = load_config(args.config, args.overrides, validate=False)  # only to find the folder: the run checks its config
    saved = run_dir(probe.env.save_dir, pretrain_id) / "config.yaml"
    if saved.is_file():  # resume: the saved config, with this call's overrides on top
        cfg = load_config(saved, args.overrides)
        print(f"resuming pre-training {pretrain_id} from {saved.parent}")
    else:
        cfg = load_config(args.config, args.overrides)
    ensure_pretraining_corpus(cfg)  # the seed's default run builds its example corpus; a missing one stops here
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
    from mulap.data.prepare import prepare
    from mulap.data.tasks import get_task

    if args.audio_dir is not None and args.task != "csv":
        if "=" not in args.audio_dir:  # an override lands here when there is no third positional
            raise ValueError(f"prepare {args.task} takes one folder (the raw dataset); unexpected {args.audio_dir!r}")
        args.overrides = [args.audio_dir, *args.overrides]
    cfg = load_config(None, args.overrides)
    if args.task == "csv":
        from mulap.data.prepare import prepare_csv

        if args.audio_dir is None or args.name is None:
            raise ValueError("usage: mulap prepare csv <labels.csv> <audio_dir> --name NAME")
        report = prepare_csv(args.raw_dir, args.audio_dir, args.name, cfg.env.data_root, out_dir=args.out,
                             num_workers=int(cfg.training.num_workers), seed=int(cfg.env.seed))
        print(report.summary())
        return
    spec = get_task(args.task)
    out = Path(args.out) if args.out else Path(cfg.env.data_root) / "datasets" / spec.dataset
    report = prepare(args.task, args.raw_dir, out, num_workers=int(cfg.training.num_workers))
    print(report.summary())


def cmd_embed(args) -> None:
    from mulap.inference.embeddings_file import embed_files
    from mulap.training.extract_ddp import extractor

    cfg = load_config(None, args.overrides)
    out = embed_files(args.model, args.inputs, args.out, cfg, batch_size=args.batch_size, extractor=extractor(cfg))
    print(f"embeddings: {out}")


def cmd_tag(args) -> None:
    from mulap.cli.tag import run_tag

    run_tag(args.inputs, args.model, top=args.top, out=args.out, taggram_dir=args.taggram, batch_size=args.batch_size)


def cmd_export(args) -> None:
    from mulap.inference.api import model_path
    from mulap.inference.loading import export_model, load_experiment

    cfg = load_config(None, args.overrides)
    exp = model_path(args.model, cfg.env.save_dir)  # the id first, as mulap.load resolves it
    out = export_model(load_experiment(exp), args.out, overwrite=args.overwrite)
    size = sum(f.stat().st_size for f in out.iterdir()) / 1e6
    print(f"exported {exp} -> {out} ({size:.1f} MB)")


def _load_model(ref: str, cfg):
    from mulap.inference.api import load
    from mulap.inference.extract import extraction_settings

    device, _ = extraction_settings(cfg)
    return load(ref, save_dir=cfg.env.save_dir, device=device, seed=int(cfg.env.seed))


def _model_out(model, cfg, *parts: str) -> Path:
    """Outputs of a model's evaluation: under its experiment or export folder, else under env.save_dir."""
    home = model.info.get("export") or model.info.get("source")  # an export's `source` is the exporter's folder
    base = Path(home) if home else Path(cfg.env.save_dir) / "models" / model.name.replace("/", "_").replace(":", "_")
    return base.joinpath(*parts)


def cmd_search(args) -> None:
    import json

    from mulap.inference import search

    if args.query is not None and re.match(r"^[A-Za-z_]+\.[\w.]+=", args.query):  # a key=value took the query's place
        args.overrides, args.query = [args.query, *args.overrides], None
    if (args.query is None) == (args.like is None):
        raise ValueError('give either a text query or --like AUDIO (e.g. mulap search run1 ~/Music "calm piano")')
    cfg = load_config(None, args.overrides)
    model = _load_model(args.model, cfg)
    folder, index_path = search.resolve_folder(args.folder, args.index)  # an index folder: the folder holding it
    if not folder.is_dir():
        raise search.SearchError(f"{folder} is not a folder of music")
    # the request is checked (and a --like file embedded) before a folder of music is indexed
    if args.like:
        query = search.like_vector(model, args.like)
    else:
        search.check_text_query(model, args.query)
    index, counts = search.build_or_update(model, folder, index_path, rebuild=args.rebuild,
                                           num_workers=int(cfg.training.num_workers))
    print(f"index {index.folder}: {len(index.files)} file(s) ({counts['added']} added, {counts['changed']} changed, "
          f"{counts['removed']} removed, {counts['kept']} unchanged)", file=sys.stderr)
    for bad in index.failed:
        print(f"  unreadable, skipped: {bad['path']}: {bad['reason']}", file=sys.stderr)
    if args.like:
        hits = search.search_like(model, index, args.like, args.top, query=query)
    else:
        hits = search.search_text(model, index, args.query, args.top, args.rerank)
    print(json.dumps([h.to_dict() for h in hits], indent=1) if args.json else search.format_table(hits))


def cmd_zeroshot(args) -> None:
    from mulap.data.prepare import MANIFEST
    from mulap.evaluation.prompts import default_prompts
    from mulap.evaluation.zeroshot import run_zeroshot
    from mulap.inference.cache import cached_embeddings, embedding_cache_root
    from mulap.inference.extract import extraction_settings
    from mulap.training.downstream import downstream_config, load_task_data

    cfg = downstream_config(args.task, None, args.overrides)
    if args.write_prompts:
        import yaml

        from mulap.infra.files import atomic_write_text

        ds = load_task_data(cfg)
        atomic_write_text(args.write_prompts, yaml.safe_dump(default_prompts(ds.task, list(ds.label_names)), sort_keys=False,
                                                              allow_unicode=True))
        print(f"default prompts of {args.task}: {args.write_prompts}")
        return
    model = _load_model(args.model, cfg)
    model._need_joint("zero-shot")
    ds = load_task_data(cfg)
    device, precision = extraction_settings(cfg)
    emb = cached_embeddings(model.backbone, [it.id for it in ds.items], [it.audio_path for it in ds.items], ds.root / MANIFEST,
                            embedding_cache_root(cfg.env.save_dir), int(cfg.training.num_workers), True,
                            desc=f"embedding {ds.task}", device=device, precision=precision)
    out = Path(args.out) if args.out else _model_out(model, cfg, "zeroshot", args.task)
    m = run_zeroshot(model, ds, emb, out, args.prompts, calibrate_classes=not args.raw)
    lo, hi = m["ci95"]
    raw = f" (raw cosines {m['value_raw']:.4f})" if m.get("value_raw") is not None else ""
    print(f"{args.task} zero-shot ({model.name}): {m['primary_metric']}={m['value']:.4f} "
          f"[95% {lo:.4f}, {hi:.4f}]{raw}, chance {m['chance']:.4f}; files in {out}")


def cmd_eval_retrieval(args) -> None:
    from mulap.evaluation.retrieval import evaluate_retrieval, write_retrieval

    cfg = load_config(None, args.overrides)
    model = _load_model(args.model, cfg)
    result = evaluate_retrieval(model, args.data_dir, args.split, args.rerank, num_workers=int(cfg.training.num_workers))
    out = Path(args.out) if args.out else _model_out(model, cfg, "retrieval", args.split)
    write_retrieval(result, out)
    ch = result["chance"]
    print(f"{result['n']} {args.split} clips ({model.name}); chance R@1/5/10 {ch['R@1']:.3f}/{ch['R@5']:.3f}/{ch['R@10']:.3f}, "
          f"median rank {ch['median_rank']:.1f}")
    for d in ("t2a", "a2t"):
        for kind, m in result[d].items():
            if isinstance(m, dict):
                print(f"  {d} {kind:<11} R@1 {m['R@1']:.3f}  R@5 {m['R@5']:.3f}  R@10 {m['R@10']:.3f}  "
                      f"median rank {m['median_rank']:.1f}  mAP@10 {m['mAP@10']:.3f}")
    print(f"files in {out}")


def cmd_data(args) -> None:
    if args.data_command == "nsynth-soundfont":
        from mulap.demo.world.nsynth import build_nsynth_with_soundfont

        counts = build_nsynth_with_soundfont(args.out, args.soundfont, args.seed, args.notes)
        print(f"{args.out}: " + ", ".join(f"{k} {v} notes" for k, v in counts.items()))
        return
    if args.data_command == "shard":
        from mulap.data.shards import write_shards

        index = write_shards(args.src, args.out, args.shard_size, args.format, args.overwrite, num_workers=args.workers)
        made = ", ".join(f"{k} {v['samples']} clips / {len(v['shards'])} shards" for k, v in index["splits"].items())
        print(f"shards: {args.out} ({made}; {len(index['skipped'])} record(s) skipped, listed in shards.json)")
        return
    from mulap.demo.world import build_demo

    build_demo(args.out, size=args.size, seed=args.seed)


def cmd_demo(args) -> None:
    from mulap.demo.pipeline import demo_settings, run_demo

    settings = demo_settings(args.settings) if args.settings else None
    run_demo(args.out, size=args.size, overrides=args.overrides, settings=settings)


COMMANDS = {"pretrain": cmd_pretrain, "downstream": cmd_downstream, "eval": cmd_eval, "prepare": cmd_prepare,
            "embed": cmd_embed, "tag": cmd_tag, "export": cmd_export, "search": cmd_search, "zeroshot": cmd_zeroshot,
            "eval-retrieval": cmd_eval_retrieval, "data": cmd_data, "demo": cmd_demo}


# What a command's user can act on, said in one line (exit status 2): bad input and config (ValueError and the
# mulap errors derived from it, KeyError), the operating system refusing a read or a write (OSError: missing,
# forbidden, full disk), too little memory. Anything else (TypeError, AttributeError, IndexError, RuntimeError from
# deep inside torch, ...) is a bug in mulap or a library and keeps its traceback.
USER_ERRORS = (ConfigError, ValueError, KeyError, OSError, MemoryError)


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
    parser = _parser()
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
