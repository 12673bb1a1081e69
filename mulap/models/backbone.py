"""Building, saving and loading the Musicnn backbone (the part transferred downstream).

`init` names where its weights come from: `random`, `supervised_mtt` / `supervised_msd`
(the real musicnn checkpoints shipped in the musicnn pip package), or a path to a
backbone file written by `save_backbone` (safetensors + the config that built it, so the
variant - filter lengths, front-end compression, BN eps - travels with the weights).
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file

from mulap.infra.config_schema import SUPERVISED_NAMES
from mulap.models.musicnn import Musicnn, MusicnnConfig
from mulap.models.weight_files import build_to_fit, first_line, module_tensors, safetensors_shapes, save_safetensors

SUPERVISED = dict(zip(SUPERVISED_NAMES, ("MTT_musicnn", "MSD_musicnn"), strict=True))  # name -> musicnn checkpoint


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
    """Weights + config in one safetensors file, written atomically (a full disk: WriteError naming it)."""
    meta = {"config": json.dumps(backbone.config.to_dict()), "source": source, "format": "mulap-musicnn-1"}
    return save_safetensors(module_tensors(backbone), path, metadata=meta)


def backbone_metadata(path: str | Path) -> dict:
    with safe_open(str(path), framework="pt") as fh:
        return dict(fh.metadata() or {})


def recorded_config(path: str | Path) -> MusicnnConfig:
    """The Musicnn config a backbone file records (the file may come from someone else: the config is checked
    against the schema's types and size limits). Raises ValueError naming the file."""
    try:
        meta = backbone_metadata(path)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type for a damaged file
        raise ValueError(f"{path}: not a mulap backbone file (unreadable: {first_line(exc)})") from None
    if "config" not in meta:
        raise ValueError(f"{path}: not a mulap backbone file (no Musicnn config in its metadata)")
    try:
        recorded = json.loads(meta["config"])
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{path}: the Musicnn config in its metadata is not valid JSON ({first_line(exc)})") from None
    if not isinstance(recorded, dict):
        raise ValueError(f"{path}: the Musicnn config in its metadata is a {type(recorded).__name__}, not an object")
    try:
        return MusicnnConfig.from_dict(recorded)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: the Musicnn config in its metadata: {exc}") from None


def load_backbone(path: str | Path) -> Musicnn:
    """Safe load (safetensors: no code runs; the recorded config is checked, and the network built only once
    its weights are known to be in the file); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone file not found: {path}")
    config = recorded_config(path)
    try:
        shapes = safetensors_shapes(path)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"{path}: not a mulap backbone file (unreadable: {first_line(exc)})") from None
    model = build_to_fit(lambda: Musicnn(config), shapes, path, "the Musicnn config it records")
    try:
        state = load_file(str(path))
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"{path}: cannot read the weights ({first_line(exc)})") from None
    model.load_state_dict(state)  # every name and shape was checked above
    return model
