"""A whole pre-trained MuLaP (audio + text + heads) from an experiment folder, and the portable export.

    <export>/config.json        everything needed to rebuild the network (no network access, no packaged BERT)
    <export>/model.safetensors  audio + text + heads, no optimizer state
    <export>/vocab.txt, tokenizer.json, tokenizer_config.json, ...   the text model's tokenizer
    <export>/README.md          a model card (corpus, steps, objectives, final validation losses, date, version)

An experiment folder (`<save_dir>/experiments/<id>/`) is read from its config.yaml, the backbone config
recorded in backbone.safetensors (the Musicnn variant travels with the weights) and its best weights
checkpoint (torch.load with weights_only=True).
"""
from __future__ import annotations

import csv
import json
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from mulap.files import atomic_write_text, write_json

EXPORT_FORMAT = "mulap-model-1"
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"


class ModelLoadError(ValueError):
    """A path that is not a usable mulap model; the message names the path and what is missing."""


@dataclass
class PretrainedMuLaP:
    model: "torch.nn.Module"   # mulap.models.mulap.MuLaP in eval mode
    tokenizer: object          # transformers BertTokenizerFast
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
    from mulap.training.checkpoints import best_checkpoint

    found = best_checkpoint(exp_dir)
    if found is None:
        raise ModelLoadError(f"{exp_dir}: no intact checkpoint in {exp_dir / 'checkpoints'} (the pre-training has not "
                             "taken an optimizer step)")
    return found


def _backbone_config(exp_dir: Path, model_config: DictConfig) -> dict:
    """The Musicnn variant actually trained: recorded in backbone.safetensors (supervised inits differ from
    the defaults spelt out in config.yaml)."""
    from mulap.models.backbone import SUPERVISED, backbone_metadata, build_backbone

    for name in ("backbone.safetensors", "backbone_last.safetensors"):
        if (exp_dir / name).is_file():
            return json.loads(backbone_metadata(exp_dir / name)["config"])
    init = str(model_config.audio.init)
    if init in SUPERVISED or init.endswith(".safetensors"):
        return build_backbone(init).config.to_dict()
    return OmegaConf.to_container(model_config.audio.musicnn, resolve=True)


def _text_config(model_config: DictConfig) -> dict | None:
    """The text branch's BertConfig, read without loading its weights (they come from the checkpoint)."""
    from transformers import BertConfig

    from mulap.models.text import resolve_pretrained

    path = resolve_pretrained(model_config.text.pretrained)
    if path is None:
        return None
    try:
        return BertConfig.from_pretrained(path, local_files_only=True).to_dict()
    except OSError as exc:
        raise ModelLoadError(f"cannot read the text model config at {path}: {exc}") from None


def _skeleton_config(model_config: DictConfig, backbone_config: dict) -> DictConfig:
    """The model config with weights-free construction: random backbone of the recorded variant."""
    mc = OmegaConf.create(OmegaConf.to_container(model_config, resolve=True))
    mc.audio.init = "random"
    mc.audio.musicnn = backbone_config
    return mc


def strip_prefix(state: dict, prefix: str = "model.") -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_experiment(exp_dir: str | Path, checkpoint: str | Path | None = None) -> PretrainedMuLaP:
    """The pre-trained MuLaP of an experiment folder (its best weights unless `checkpoint` is given)."""
    from mulap.config import load_config
    from mulap.models.mulap import MuLaP
    from mulap.models.text import load_tokenizer

    exp_dir = Path(exp_dir)
    if not is_experiment(exp_dir):
        raise ModelLoadError(f"{exp_dir} is not a pre-training experiment folder (no config.yaml and checkpoints/)")
    cfg = load_config(exp_dir / "config.yaml")
    ckpt = Path(checkpoint) if checkpoint else weights_checkpoint(exp_dir)
    try:
        saved = torch.load(ckpt, map_location="cpu", weights_only=True)
        state = strip_prefix(saved["state_dict"])
    except Exception as exc:  # a truncated or foreign file
        raise ModelLoadError(f"{ckpt}: cannot read the weights ({type(exc).__name__}: {exc})") from None
    mc = _skeleton_config(cfg.model_config, _backbone_config(exp_dir, cfg.model_config))
    text_config = _text_config(cfg.model_config)
    if text_config is not None:
        mc.text.pretrained = None
    model = MuLaP(mc, text_config=text_config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelLoadError(f"{ckpt}: weights do not fit {exp_dir / 'config.yaml'} (missing {missing[:4]}, unexpected {unexpected[:4]})")
    info = experiment_info(exp_dir, cfg, ckpt, saved)
    return PretrainedMuLaP(model.eval(), load_tokenizer(cfg.model_config.text.pretrained),
                           int(cfg.model_config.text.max_seq_length), info | {"model_config": OmegaConf.to_container(mc)})


def experiment_info(exp_dir: Path, cfg: DictConfig, ckpt: Path, saved: dict) -> dict:
    """Provenance for the model card: corpus, steps, objectives, final validation losses."""
    obj = cfg.model_config.objectives
    corpus = Path(str(cfg.dataset_config.data_dir))
    return {
        "source": str(exp_dir.resolve()), "checkpoint": ckpt.name,
        "epoch": saved.get("epoch"), "global_step": saved.get("global_step"),
        "objectives": {k: float(obj[k].weight) for k in ("mlm", "atm", "mam", "contrastive") if obj[k].enabled},
        "corpus": {"path": str(corpus)},  # clip counts: corpus_sizes, read when a model card is written
        "final_validation": final_validation(exp_dir),
    }


def corpus_sizes(corpus: str | Path) -> dict:
    """Clips per split of an audiocaption corpus (None where a split file is missing or unreadable)."""
    sizes = {}
    for split in ("train", "val", "test"):
        try:
            sizes[split] = len(json.loads((Path(corpus) / f"dataset_{split}.json").read_text(encoding="utf-8")))
        except (OSError, ValueError):
            sizes[split] = None
    return sizes


def final_validation(exp_dir: Path) -> dict:
    """The last logged value of each val/* metric in logs/csv/metrics.csv."""
    path = exp_dir / "logs" / "csv" / "metrics.csv"
    last: dict[str, float] = {}
    if path.is_file():
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                for k, v in row.items():
                    if k and k.startswith("val/") and v not in ("", None):
                        last[k] = round(float(v), 4)
    return last


# -- the export folder ----------------------------------------------------------------------------------
def is_export(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG_FILE).is_file()


def export_model(source: PretrainedMuLaP, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write `source` as a self-contained folder (config.json, model.safetensors, tokenizer, README.md).
    Written into a temporary sibling folder and renamed, so `out_dir` is whole or absent."""
    from safetensors.torch import save_model

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out_dir} exists and is not empty (use --overwrite to replace it)")
        if not is_export(out_dir):
            raise FileExistsError(f"{out_dir} is not an earlier mulap export; refusing to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        info = {k: v for k, v in source.info.items() if k != "model_config"}
        if "corpus" in info:  # counted here, not on every load
            info["corpus"] = {**info["corpus"], "clips": corpus_sizes(info["corpus"]["path"])}
        config = {"format": EXPORT_FORMAT, "mulap_version": mulap_version(), "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                  "model_config": source.info["model_config"], "text_config": source.model.text.config.to_dict(),
                  "max_seq_length": source.max_seq_length, "provenance": info}
        config["model_config"]["text"]["pretrained"] = None  # rebuilt from text_config, weights from the file
        write_json(tmp / CONFIG_FILE, config)
        save_model(source.model, str(tmp / WEIGHTS_FILE), metadata={"format": EXPORT_FORMAT})
        source.tokenizer.save_pretrained(str(tmp))
        atomic_write_text(tmp / "README.md", model_card(config))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.replace(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def load_export(folder: str | Path) -> PretrainedMuLaP:
    """An exported model folder, in a fresh process, offline."""
    from safetensors.torch import load_model
    from transformers import BertTokenizerFast

    from mulap.models.mulap import MuLaP

    folder = Path(folder)
    for name in (CONFIG_FILE, WEIGHTS_FILE, "tokenizer_config.json"):
        if not (folder / name).is_file():
            raise ModelLoadError(f"{folder} is not a complete mulap export: {name} is missing")
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ModelLoadError(f"{folder / CONFIG_FILE}: not valid JSON ({exc})") from None
    if config.get("format") != EXPORT_FORMAT:
        raise ModelLoadError(f"{folder / CONFIG_FILE}: format {config.get('format')!r} is not {EXPORT_FORMAT!r}")
    model = MuLaP(OmegaConf.create(config["model_config"]), text_config=config["text_config"])
    try:
        missing, unexpected = load_model(model, str(folder / WEIGHTS_FILE), strict=False)
    except Exception as exc:
        raise ModelLoadError(f"{folder / WEIGHTS_FILE}: cannot read the weights ({type(exc).__name__}: {exc})") from None
    if missing or unexpected:
        raise ModelLoadError(f"{folder / WEIGHTS_FILE}: weights do not fit config.json (missing {sorted(missing)[:4]}, "
                             f"unexpected {sorted(unexpected)[:4]})")
    tokenizer = BertTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    info = dict(config.get("provenance", {}), model_config=config["model_config"], export=str(folder.resolve()))
    return PretrainedMuLaP(model.eval(), tokenizer, int(config.get("max_seq_length", 64)), info)


def model_card(config: dict) -> str:
    p = config["provenance"]
    mc = config["model_config"]
    corpus = p.get("corpus", {})
    clips = corpus.get("clips", {})
    objectives = ", ".join(f"{k} (weight {w:g})" for k, w in p.get("objectives", {}).items()) or "none recorded"
    losses = "\n".join(f"| {k} | {v} |" for k, v in sorted(p.get("final_validation", {}).items())) or "| (none logged) | |"
    joint = mc["objectives"]["contrastive"]["enabled"]
    from mulap.models.musicnn import MusicnnConfig

    dim = MusicnnConfig.from_dict(mc["audio"]["musicnn"]).out_dim
    epochs = p.get("epoch")
    return f"""# mulap model

A MuLaP model (Musicnn audio backbone + audio transformer, BERT text branch, co-attention) exported by
mulap {config['mulap_version']} on {config['created']}.

```python
import mulap
model = mulap.load("{'<this folder>'}")
emb = model.embed(audio, sample_rate)            # [N, {dim}] backbone features (transfer)
{'text = model.embed_text(["calm piano"])         # [1, ' + str(mc['objectives']['contrastive']['dim']) + '] joint space' if joint else '# trained without the contrastive objective: no joint space (match() still works)'}
```

| | |
|---|---|
| source experiment | `{p.get('source', '?')}` ({p.get('checkpoint', '?')}) |
| corpus | `{corpus.get('path', '?')}`: {clips.get('train')} train / {clips.get('val')} val / {clips.get('test')} test clips |
| training | {'?' if epochs is None else epochs + 1} epoch(s), {p.get('global_step')} optimizer steps |
| objectives | {objectives} |
| joint audio-text space | {'yes, ' + str(mc['objectives']['contrastive']['dim']) + '-d' if joint else 'no'} |
| text branch | {config['text_config'].get('num_hidden_layers')} layers, {config['text_config'].get('hidden_size')} wide |
| audio | 16 kHz mono, 3 s chunks, up to {mc['audio']['max_chunks']} chunks per clip in the transformer |

Final validation metrics:

| metric | value |
|---|---|
{losses}
"""
