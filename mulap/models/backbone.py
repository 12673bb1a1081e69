"""Building, saving and loading the Musicnn backbone (the part transferred downstream).

`init` names where its weights come from: `random`, `supervised_mtt` / `supervised_msd`
(the real musicnn checkpoints shipped in the musicnn pip package), or a path to a
backbone file written by `save_backbone` (safetensors + the config that built it, so the
variant - filter lengths, front-end compression, BN eps - travels with the weights).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from safetensors import safe_open

from mulap.models.musicnn import Musicnn, MusicnnConfig

SUPERVISED = {"supervised_mtt": "MTT_musicnn", "supervised_msd": "MSD_musicnn"}


def musicnn_config(overrides: dict | None = None) -> MusicnnConfig:
    """Defaults with `model_config.audio.musicnn` overrides; unknown keys are an error naming them."""
    return MusicnnConfig.from_dict(dict(overrides or {}))


def build_backbone(init: str = "random", overrides: dict | None = None) -> Musicnn:
    if init == "random":
        return Musicnn(musicnn_config(overrides))
    if init in SUPERVISED:
        from mulap.models.musicnn_tf import load_musicnn_pretrained

        changed = {k: v for k, v in (overrides or {}).items() if MusicnnConfig().to_dict().get(k) != v}
        if changed:
            raise ValueError(f"audio.musicnn overrides {sorted(changed)} cannot change the architecture of {init}")
        tagger, _, _ = load_musicnn_pretrained(SUPERVISED[init])
        return tagger.backbone
    path = Path(init)
    if path.suffix == ".safetensors" or path.is_file():
        return load_backbone(path)
    raise ValueError(f"unknown backbone init {init!r}: use random, {', '.join(SUPERVISED)} or a backbone .safetensors file")


def save_backbone(backbone: Musicnn, path: str | Path, source: str = "") -> Path:
    """Weights + config in one safetensors file, written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    state = {k: v.detach().contiguous().cpu() for k, v in backbone.state_dict().items()}
    meta = {"config": json.dumps(backbone.config.to_dict()), "source": source, "format": "mulap-musicnn-1"}
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def backbone_metadata(path: str | Path) -> dict:
    with safe_open(str(path), framework="pt") as fh:
        return dict(fh.metadata() or {})


def load_backbone(path: str | Path) -> Musicnn:
    """Safe load (safetensors: no code runs); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone file not found: {path}")
    try:
        meta = backbone_metadata(path)
        config = MusicnnConfig.from_dict(json.loads(meta["config"]))
        state = load_file(str(path))
    except Exception as exc:
        raise ValueError(f"{path}: not a mulap backbone file ({type(exc).__name__}: {exc})") from None
    model = Musicnn(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit the recorded Musicnn config (missing {missing[:5]}, unexpected {unexpected[:5]})")
    return model
