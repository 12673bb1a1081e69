"""The `mulap` command line: one small function per command adds its arguments; names of tasks and models come
from their registries (mulap.data.tasks, mulap.models.backbone), so a new task or model shows up here by itself."""

from __future__ import annotations

import argparse

from mulap import __version__
from mulap.data.tasks import TASKS
from mulap.inference.tagging import TAG_MODELS
from mulap.models.backbone import SUPERVISED

TASK_NAMES = ", ".join(TASKS)
BASELINES = " / ".join(("random", *SUPERVISED))


def _add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. training.epochs=5")


def _pretrain(sub) -> None:
    p = sub.add_parser("pretrain", help="pre-train MuLaP on an audiocaption dataset (resumes an existing --pretrain_id)")
    p.add_argument("--config", help="a YAML file with (part of) the config")
    p.add_argument("--pretrain_id", help="experiment id (default: the current time); an existing id resumes")
    _add_overrides(p)


def _downstream(sub) -> None:
    p = sub.add_parser("downstream", help="train a probe on a downstream task on top of a backbone")
    p.add_argument("pretrain_id", help=f"a pre-training id, or {BASELINES}")
    p.add_argument("task", help=f"{TASK_NAMES}, or csv:NAME (a dataset made by `mulap prepare csv ... --name NAME`)")
    p.add_argument("--downstream_id", help="probe run id (default: <task>-<time>)")
    p.add_argument("--config", help="a YAML file with (part of) the config")
    _add_overrides(p)


def _eval(sub) -> None:
    p = sub.add_parser("eval", help="test-set metrics and plots of a trained probe")
    p.add_argument("pretrain_id", help=f"the pre-training id (or {BASELINES}) the probe was trained on")
    p.add_argument("downstream_id", help="the probe run to evaluate (printed by `mulap downstream`)")
    _add_overrides(p)


def _prepare(sub) -> None:
    p = sub.add_parser(
        "prepare",
        help="decode a downstream dataset as its publisher ships it (or your own labels.csv) into mulap's prepared form",
    )
    p.add_argument("task", help=f"{TASK_NAMES}; or csv for your own labelled audio")
    p.add_argument("raw_dir", help="the dataset folder as its publisher ships it; for csv: the labels .csv file")
    p.add_argument("audio_dir", nargs="?", help="csv only: the folder the csv's file column is relative to")
    p.add_argument("--name", help="csv only: the dataset's name; train on it as task csv:NAME")
    p.add_argument("--out", help="default: <env.data_root>/datasets/<dataset name> (csv: csv_<NAME>)")
    _add_overrides(p)


def _embed(sub) -> None:
    p = sub.add_parser("embed", help="chunk- and track-level embeddings of audio files")
    p.add_argument(
        "model",
        help=f"a pre-training id, {BASELINES}, a backbone .safetensors or an exported model folder (anything mulap.load takes)",
    )
    p.add_argument("inputs", nargs="+", help="audio files or folders")
    p.add_argument("-o", "--out", required=True, help="output file (.npz or .parquet), checked before anything is embedded")
    p.add_argument(
        "--batch_size",
        type=int,
        default=32,
        help="3 s chunks per backbone forward pass (default 32; lower it if memory is short)",
    )
    _add_overrides(p)


def _tag(sub) -> None:
    p = sub.add_parser("tag", help="the musicnn taggers' 50 tags per audio file (as `python -m musicnn.tagger`)")
    p.add_argument("inputs", nargs="+", help="audio files or folders (searched recursively)")
    p.add_argument(
        "--model",
        default=TAG_MODELS[0],  # not argparse choices: a wrong name gets the one-line error naming it
        help="a tagging model: supervised_mtt (MagnaTagATune tags, default) or supervised_msd (Million Song Dataset tags)",
    )
    p.add_argument("--top", type=int, default=5, help="tags shown (and written with -o) per file, highest first (default 5)")
    p.add_argument("-o", "--out", help="write a CSV with the columns file,tag,probability (the top K rows per file)")
    p.add_argument("--taggram", help="write one PNG per file into this folder: the tags' probabilities over time (3 s steps)")
    p.add_argument("--batch_size", type=int, default=32, help="3 s chunks per forward pass (default 32)")


def _export(sub) -> None:
    p = sub.add_parser(
        "export", help="write a pre-trained model as one self-contained folder (config, weights, tokenizer, model card)"
    )
    p.add_argument("model", help="a pre-training id (under env.save_dir) or an experiment folder")
    p.add_argument("out", help="the folder to write (loadable with mulap.load(out) anywhere, offline)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in that folder")
    _add_overrides(p)


def _search(sub) -> None:
    p = sub.add_parser("search", help="search a music folder by text (or by example with --like)")
    p.add_argument("model", help="a pre-trained MuLaP (id, experiment or export folder); audio-only models: --like only")
    p.add_argument("folder", help="a folder of music (indexed incrementally), or an index folder")
    p.add_argument("query", nargs="?", help='a description, e.g. "calm solo piano"')
    p.add_argument("--like", metavar="AUDIO", help="find music like this file instead of a text query")
    p.add_argument("--top", type=int, default=10, help="how many results (default 10)")
    p.add_argument(
        "--rerank",
        type=int,
        default=0,
        metavar="N",
        help="re-score the top N with MuLaP's audio-text matching cross-encoder (slower, exact)",
    )
    p.add_argument(
        "--json", action="store_true", help="print the results as JSON, [{file, score, start, end}], instead of a table"
    )
    p.add_argument("--index", metavar="PATH", help="where the index lives (default <folder>/.mulap-index)")
    p.add_argument("--rebuild", action="store_true", help="re-embed every file (e.g. for another model)")
    _add_overrides(p)


def _zeroshot(sub) -> None:
    p = sub.add_parser("zeroshot", help="zero-shot classification/tagging of a prepared task's test split from text prompts")
    p.add_argument("model", help="a pre-trained MuLaP (id, experiment or export folder)")
    p.add_argument("task", help=f"{TASK_NAMES}, or csv:NAME")
    p.add_argument("--prompts", metavar="FILE", help="YAML/JSON: class -> text or list of texts (default: built-in ensembles)")
    p.add_argument("--out", help="output folder (default <experiment>/zeroshot/<task>)")
    p.add_argument("--write-prompts", metavar="FILE", help="write the default prompts of the task to FILE and stop")
    p.add_argument(
        "--raw",
        action="store_true",
        help="score with the raw cosines (no per-class standardisation on the validation split's scores)",
    )
    _add_overrides(p)


def _eval_retrieval(sub) -> None:
    p = sub.add_parser("eval-retrieval", help="text->audio and audio->text retrieval metrics on an audiocaption split")
    p.add_argument("model", help="a pre-trained MuLaP (id, experiment or export folder)")
    p.add_argument("data_dir", help="an audiocaption dataset folder (dataset_<split>.json + audio/)")
    p.add_argument(
        "--split", default="test", choices=["train", "val", "test"], help="which split file of the corpus to score (default test)"
    )
    p.add_argument("--rerank", type=int, default=10, metavar="N", help="re-score the top N with match (0: off; default 10)")
    p.add_argument("--out", help="output folder (default <experiment>/retrieval/<split>)")
    _add_overrides(p)


def _data(sub) -> None:
    p = sub.add_parser("data", help="dataset utilities")
    dsub = p.add_subparsers(dest="data_command", required=True)
    d = dsub.add_parser("demo", help="build the offline demo world (captioned corpus + five downstream datasets)")
    d.add_argument("--out", default="data/demo", help="the folder to build it in (default data/demo)")
    d.add_argument(
        "--size",
        default="default",
        choices=["small", "default", "large"],
        help="small: seconds (tests); default: minutes; large: the GPU demo's world",
    )
    d.add_argument("--seed", type=int, default=0, help="the same seed builds the same world, byte for byte (default 0)")
    d = dsub.add_parser(
        "nsynth-soundfont",
        help="NSynth-layout notes of every GM program rendered through another "
        "soundfont (an out-of-world test set, e.g. Debian's csound-soundfont)",
    )
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


def _demo(sub) -> None:
    p = sub.add_parser("demo", help="the whole pipeline on the offline demo world, with a report")
    p.add_argument(
        "--out",
        default="demo_out",
        help="the folder for the world, runs, report.md and plots (default demo_out); a second run there reuses finished stages",
    )
    p.add_argument(
        "--size",
        default="default",
        choices=["small", "default", "large"],
        help="small: a few minutes; default: ~39 minutes on 2 CPU cores; large: for GPUs (see --settings gpu)",
    )
    p.add_argument("--settings", help="a demo settings file in configs/demo/ (default: the --size one), e.g. ablation")
    _add_overrides(p)


ADD_ARGUMENTS = [
    _pretrain,
    _downstream,
    _eval,
    _prepare,
    _embed,
    _tag,
    _export,
    _search,
    _zeroshot,
    _eval_retrieval,
    _data,
    _demo,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mulap", description="Music audio representations from weak language supervision.")
    parser.add_argument("--version", action="version", version=f"mulap {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in ADD_ARGUMENTS:
        add(sub)
    return parser
