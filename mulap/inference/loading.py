"""A whole pre-trained MuLaP (audio + text + heads) from an experiment folder, and the portable export.

    <export>/config.json        everything needed to rebuild the network (no network access, no packaged BERT)
    <export>/model.safetensors  audio + text + heads, no optimizer state
    <export>/vocab.txt, tokenizer.json, tokenizer_config.json, ...   the text model's tokenizer
    <export>/README.md          a model card (corpus, steps, objectives, final validation losses, date, version)

An experiment folder (`<save_dir>/experiments/<id>/`) is read from its config.yaml, the backbone config
recorded in backbone.safetensors (the Musicnn variant travels with the weights) and its best weights
checkpoint (torch.load with weights_only=True).

Both are read as folders someone else may have written: every file's problem is one ModelLoadError naming
the file (and the key); configs go through the typed schema and its size limits (mulap.infra.config_schema), and
the network is built only once its weights are known to be in the weights file (mulap.models.weight_files).
"""

from __future__ import annotations

import glob
import json
import logging
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from omegaconf import DictConfig, OmegaConf

from mulap.infra.config_schema import SchemaError, check_export, check_text_config
from mulap.infra.experiment import backbone_file, best_checkpoint
from mulap.infra.files import atomic_write_text, remove_dead_temps, write_error, write_json, writer_temp
from mulap.models.backbone import SUPERVISED, build_backbone, load_backbone
from mulap.models.musicnn import Musicnn
from mulap.models.weight_files import ModelLoadError, first_line  # ModelLoadError: raised here, defined with the weight readers

if TYPE_CHECKING:
    from mulap.models.mulap import MuLaP

log = logging.getLogger(__name__)

EXPORT_FORMAT = "mulap-model-1"
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"


@dataclass
class PretrainedMuLaP:
    model: MuLaP  # in eval mode
    tokenizer: Any  # transformers BertTokenizerFast
    max_seq_length: int
    info: dict = field(default_factory=dict)  # provenance: source, steps, objectives, losses ...


def mulap_version() -> str:
    from mulap import __version__  # the one source of the version (the installed metadata is read from it)

    return __version__


# -- the experiment folder ------------------------------------------------------------------------------
def is_experiment(path: Path) -> bool:
    return (path / "config.yaml").is_file() and (path / "checkpoints").is_dir()


def weights_checkpoint(exp_dir: Path) -> Path:
    """The checkpoint whose weights stand for the experiment: the best by validation loss, else the latest intact."""

    found = best_checkpoint(exp_dir)
    if found is None:
        raise ModelLoadError(
            f"{exp_dir}: no intact checkpoint in {exp_dir / 'checkpoints'} (the pre-training has not taken an optimizer step)"
        )
    return found


def _backbone_config(exp_dir: Path, model_config: DictConfig) -> dict:
    """The Musicnn variant actually trained: recorded in backbone.safetensors (supervised inits differ from
    the defaults spelt out in config.yaml)."""
    from mulap.models.backbone import SUPERVISED, build_backbone, recorded_config

    for name in ("backbone.safetensors", "backbone_last.safetensors"):
        if (exp_dir / name).is_file():
            try:
                return recorded_config(exp_dir / name).to_dict()
            except ValueError as exc:
                raise ModelLoadError(str(exc)) from None
    init = str(model_config.audio.init)
    if init in SUPERVISED or init.endswith(".safetensors"):
        return build_backbone(init).config.to_dict()
    return cast(dict, OmegaConf.to_container(model_config.audio.musicnn, resolve=True))  # a DictConfig gives a dict


def _text_config(model_config: DictConfig) -> dict | None:
    """The text branch's BertConfig, read without loading its weights (they come from the checkpoint)."""
    from transformers import BertConfig

    from mulap.models.text import resolve_pretrained

    path = resolve_pretrained(model_config.text.pretrained)
    if path is None:
        return None
    try:
        config = BertConfig.from_pretrained(path, local_files_only=True).to_dict()
    except Exception as exc:  # noqa: BLE001 - transformers raises OSError, ValueError, TypeError ... for a bad file
        raise ModelLoadError(f"cannot read the text model config at {path}: {first_line(exc)}") from None
    try:
        check_text_config(config)
    except SchemaError as exc:
        raise ModelLoadError(f"{Path(path) / 'config.json'}: {exc}") from None
    return config


def _skeleton_config(model_config: DictConfig, backbone_config: dict) -> DictConfig:
    """The model config with weights-free construction: random backbone of the recorded variant."""
    mc = OmegaConf.create(cast(dict, OmegaConf.to_container(model_config, resolve=True)))
    mc.audio.init = "random"
    mc.audio.musicnn = backbone_config
    return mc


def strip_prefix(state: dict, prefix: str = "model.") -> dict:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def experiment_config(path: Path) -> DictConfig:
    """An experiment's config.yaml, checked like any run config; a problem is one line naming the file."""
    from mulap.infra.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        msg = str(exc)
        raise ModelLoadError(msg if msg.startswith(str(path)) else f"{path}: {msg.removeprefix('config: ')}") from None


def load_experiment(exp_dir: str | Path, checkpoint: str | Path | None = None) -> PretrainedMuLaP:
    """The pre-trained MuLaP of an experiment folder (its best weights unless `checkpoint` is given)."""
    from mulap.models.mulap import MuLaP
    from mulap.models.text import load_tokenizer
    from mulap.models.weight_files import build_to_fit, tensor_shapes

    exp_dir = Path(exp_dir)
    if not is_experiment(exp_dir):
        raise ModelLoadError(f"{exp_dir} is not a pre-training experiment folder (no config.yaml and checkpoints/)")
    cfg = experiment_config(exp_dir / "config.yaml")
    ckpt = Path(checkpoint) if checkpoint else weights_checkpoint(exp_dir)
    try:
        saved = torch.load(ckpt, map_location="cpu", weights_only=True)
        state = strip_prefix(saved["state_dict"])
    except Exception as exc:  # noqa: BLE001 - torch.load fails in many ways on a truncated or foreign file
        raise ModelLoadError(f"{ckpt}: cannot read the weights ({first_line(exc)})") from None
    mc = _skeleton_config(cfg.model_config, _backbone_config(exp_dir, cfg.model_config))
    text_config = _text_config(cfg.model_config)
    if text_config is not None:
        mc.text.pretrained = None
    model = build_to_fit(lambda: MuLaP(mc, text_config=text_config), tensor_shapes(state), ckpt, str(exp_dir / "config.yaml"))
    model.load_state_dict(state, strict=False)  # names and shapes checked by build_to_fit
    info = experiment_info(exp_dir, cfg, ckpt, saved)
    return PretrainedMuLaP(
        model.eval(),
        load_tokenizer(cfg.model_config.text.pretrained),
        int(cfg.model_config.text.max_seq_length),
        info | {"model_config": OmegaConf.to_container(mc)},
    )


def _count(value) -> int | None:
    """A step or epoch count from a checkpoint (a file: anything may be there), or None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def experiment_info(exp_dir: Path, cfg: DictConfig, ckpt: Path, saved: dict) -> dict:
    """Provenance for the model card: corpus, steps, objectives, final validation losses."""
    obj = cfg.model_config.objectives
    corpus = Path(str(cfg.dataset_config.data_dir))
    return {
        "source": str(exp_dir.resolve()),
        "checkpoint": ckpt.name,
        "epoch": _count(saved.get("epoch")),
        "global_step": _count(saved.get("global_step")),
        "objectives": {k: float(obj[k].weight) for k in ("mlm", "atm", "mam", "contrastive") if obj[k].enabled},
        "corpus": {"path": str(corpus)},  # clip counts: corpus_sizes, read when a model card is written
        "final_validation": final_validation(exp_dir),
    }


def corpus_sizes(corpus: str | Path) -> dict:
    """Clips per split of an audiocaption corpus (None where a split file is missing or unreadable)."""
    sizes: dict[str, int | None] = {}
    for split in ("train", "val", "test"):
        try:
            sizes[split] = len(json.loads((Path(corpus) / f"dataset_{split}.json").read_text(encoding="utf-8")))
        except (OSError, ValueError):
            sizes[split] = None
    return sizes


def final_validation(exp_dir: Path) -> dict:
    """The last logged value of each val/* metric in logs/csv/metrics.csv (a problem: ModelLoadError naming the
    file and line)."""
    from mulap.infra.text_files import DatasetError, csv_rows

    path = exp_dir / "logs" / "csv" / "metrics.csv"
    last: dict[str, float] = {}
    if not path.is_file():
        return last
    try:
        rows = csv_rows(path)
        header = next(rows, (1, []))[1]
        for line, row in rows:
            for k, v in zip(header, row):
                if k.startswith("val/") and v != "":
                    try:
                        last[k] = round(float(v), 4)
                    except ValueError:
                        raise ModelLoadError(f"{path}, line {line}: column {k} holds {v[:40]!r}, not a number") from None
    except DatasetError as exc:
        raise ModelLoadError(str(exc)) from None
    return last


# -- the export folder ----------------------------------------------------------------------------------
def is_export(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG_FILE).is_file()


# what a killed export of an older mulap left (no writer recorded in the name); an export takes minutes at most
_OLD_TEMP, _OLD_TEMP_AGE_S = re.compile(r"^\.(?P<name>.+)\.tmp-[0-9a-f]{8}$"), 3600


def remove_export_leftovers(out_dir: Path) -> None:
    """The temp folders that killed exports left next to `out_dir` (each up to the model's size): those of dead
    writers on this host (mulap.infra.files.remove_dead_temps); an older mulap's `.<out_dir>.tmp-<hex>`, once an hour old."""
    removed = remove_dead_temps(out_dir.parent)  # any dead writer's: garbage whatever it was building
    for old in out_dir.parent.glob(f".{glob.escape(out_dir.name)}.tmp-*"):
        if _OLD_TEMP.match(old.name) and old.is_dir() and time.time() - old.stat().st_mtime > _OLD_TEMP_AGE_S:
            shutil.rmtree(old, ignore_errors=True)
            removed.append(old)
    for path in removed:
        log.info("removed %s (left by an export that was killed)", path)


def export_model(source: PretrainedMuLaP, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write `source` as a self-contained folder (config.json, model.safetensors, tokenizer, README.md).
    Written into a temporary sibling folder (named after this writer, so that the next export can tell a killed
    one's leftover) and renamed, so `out_dir` is whole or absent. A write that fails (disk full, read-only,
    permission denied) is one WriteError naming the file and leaves no temp folder."""
    from mulap.models.weight_files import module_tensors, save_safetensors

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out_dir} exists and is not empty (use --overwrite to replace it)")
        if not is_export(out_dir):
            raise FileExistsError(f"{out_dir} is not an earlier mulap export; refusing to replace it")
    tmp = writer_temp(out_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        remove_export_leftovers(out_dir)
        tmp.mkdir()
        info = {k: v for k, v in source.info.items() if k not in ("model_config", "export")}  # the provenance
        if "corpus" in info:  # counted here, not on every load
            info["corpus"] = {**info["corpus"], "clips": corpus_sizes(info["corpus"]["path"])}
        config = {
            "format": EXPORT_FORMAT,
            "mulap_version": mulap_version(),
            "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            "model_config": source.info["model_config"],
            "text_config": source.model.text.config.to_dict(),
            "max_seq_length": source.max_seq_length,
            "provenance": info,
        }
        config["model_config"]["text"]["pretrained"] = None  # rebuilt from text_config, weights from the file
        write_json(tmp / CONFIG_FILE, config)
        save_safetensors(module_tensors(source.model), tmp / WEIGHTS_FILE, metadata={"format": EXPORT_FORMAT})
        source.tokenizer.save_pretrained(str(tmp))
        atomic_write_text(tmp / "README.md", model_card(config))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.replace(out_dir)
    except OSError as exc:
        raise write_error(exc, exc.filename or out_dir) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def read_export_config(path: Path) -> dict:
    """An export's config.json, checked against the typed schema (mulap.infra.config_schema.check_export: the model
    config of a run, the text branch's BertConfig, size limits) before anything is built."""
    from mulap.infra.text_files import DatasetError, read_json

    try:
        config = read_json(path)
    except DatasetError as exc:
        raise ModelLoadError(str(exc)) from None
    if not isinstance(config, dict):
        raise ModelLoadError(f"{path}: expected a JSON object at the top level, not a {type(config).__name__}")
    if config.get("format") != EXPORT_FORMAT:
        raise ModelLoadError(f"{path}: format {config.get('format')!r} is not {EXPORT_FORMAT!r}")
    try:
        return check_export(config)
    except SchemaError as exc:
        raise ModelLoadError(f"{path}: {exc}") from None


def load_export(folder: str | Path) -> PretrainedMuLaP:
    """An exported model folder, in a fresh process, offline."""
    from safetensors.torch import load_model

    from mulap.models.mulap import MuLaP
    from mulap.models.text import read_tokenizer
    from mulap.models.weight_files import build_to_fit, safetensors_shapes

    folder = Path(folder)
    for name in (CONFIG_FILE, WEIGHTS_FILE, "tokenizer_config.json"):
        if not (folder / name).is_file():
            raise ModelLoadError(f"{folder} is not a complete mulap export: {name} is missing")
    config = read_export_config(folder / CONFIG_FILE)
    weights = folder / WEIGHTS_FILE
    try:
        shapes = safetensors_shapes(weights)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type
        raise ModelLoadError(f"{weights}: cannot read the weights ({first_line(exc)})") from None
    mc = OmegaConf.create(config["model_config"])
    model = build_to_fit(lambda: MuLaP(mc, text_config=config["text_config"]), shapes, weights, CONFIG_FILE)
    try:
        missing, unexpected = load_model(model, str(weights), strict=False)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"{weights}: cannot read the weights ({first_line(exc)})") from None
    if missing or unexpected:
        raise ModelLoadError(
            f"{weights}: weights do not fit config.json (missing {sorted(missing)[:4]}, unexpected {sorted(unexpected)[:4]})"
        )
    tokenizer = read_tokenizer(folder)
    vocab = config["text_config"]["vocab_size"]
    if len(tokenizer) > vocab:  # its ids would index past the word embeddings
        raise ModelLoadError(
            f"{folder}: the tokenizer has {len(tokenizer)} tokens, more than the {vocab} of "
            f"{CONFIG_FILE}'s text_config.vocab_size"
        )
    info = dict(config["provenance"], model_config=config["model_config"], export=str(folder.resolve()))
    return PretrainedMuLaP(model.eval(), tokenizer, int(config["max_seq_length"]), info)


def model_card(config: dict) -> str:
    p = config["provenance"]
    mc = config["model_config"]
    corpus = p.get("corpus", {})
    clips = corpus.get("clips", {})
    splits = ("train", "val", "test")
    if any(clips.get(split) is not None for split in splits):
        counts = " / ".join(f"{'?' if clips.get(split) is None else clips[split]} {split}" for split in splits) + " clips"
    else:
        counts = "clip counts unknown (no readable dataset_{train,val,test}.json there when it was exported)"
    objectives = ", ".join(f"{k} (weight {w:g})" for k, w in p.get("objectives", {}).items()) or "none recorded"
    losses = "\n".join(f"| {k} | {v} |" for k, v in sorted(p.get("final_validation", {}).items())) or "| (none logged) | |"
    joint = mc["objectives"]["contrastive"]["enabled"]
    from mulap.models.musicnn import MusicnnConfig

    dim = MusicnnConfig.from_dict(mc["audio"]["musicnn"]).out_dim
    epochs = p.get("epoch")
    text_line = (
        f'text = model.embed_text(["calm piano"])         # [1, {mc["objectives"]["contrastive"]["dim"]}] joint space'
        if joint
        else "# trained without the contrastive objective: no joint space (match() still works)"
    )
    return f"""# mulap model

A MuLaP model (Musicnn audio backbone + audio transformer, BERT text branch, co-attention) exported by
mulap {config["mulap_version"]} on {config["created"]}.

```python
import mulap
model = mulap.load("{"<this folder>"}")
emb = model.embed(audio, sample_rate)            # [N, {dim}] backbone features (transfer)
{text_line}
```

| | |
|---|---|
| source experiment | `{p.get("source", "?")}` ({p.get("checkpoint", "?")}) |
| corpus | `{corpus.get("path", "?")}`: {counts} |
| training | {"?" if epochs is None else epochs + 1} epoch(s), {p.get("global_step")} optimizer steps |
| objectives | {objectives} |
| joint audio-text space | {"yes, " + str(mc["objectives"]["contrastive"]["dim"]) + "-d" if joint else "no"} |
| text branch | {config["text_config"].get("num_hidden_layers")} layers, {config["text_config"].get("hidden_size")} wide |
| audio | 16 kHz mono, 3 s chunks, up to {mc["audio"]["max_chunks"]} chunks per clip in the transformer |

Final validation metrics:

| metric | value |
|---|---|
{losses}
"""


# -- a backbone alone (transfer) ----------------------------------------------------------------
def resolve_backbone(ref: str, save_dir: str | Path, seed: int = 0, like: Musicnn | None = None) -> tuple[Musicnn, str]:
    """A backbone from a reference; returns (model in eval mode, a short description).

    ref: a pre-training id (its best backbone), `random` (seeded; the architecture of
    `like` when given, so a random baseline matches a pre-trained one), `supervised_mtt`,
    `supervised_msd`, or a path to a backbone .safetensors file.
    """
    if ref == "random":
        torch.manual_seed(seed)
        model = Musicnn(like.config) if like is not None else build_backbone("random")
        desc = f"random(seed={seed})"
    elif ref in SUPERVISED:
        model, desc = build_backbone(ref), ref
    elif Path(ref).suffix == ".safetensors":
        model, desc = load_backbone(ref), str(ref)
    else:
        path = backbone_file(save_dir, ref)
        if not path.is_file():
            raise FileNotFoundError(
                f"no pre-trained backbone for {ref!r}: {path} does not exist "
                "(run `mulap pretrain` first, or use random / supervised_mtt / supervised_msd)"
            )
        model, desc = load_backbone(path), f"mulap:{ref}"
    return model.eval(), desc
