"""Configuration: load the seed-style YAML files, apply `key=value` overrides, validate.

The resolved config is one OmegaConf tree with sections `env`, `training`,
`dataset_config`, `model_config` (plus `downstream` for probe runs). Unknown keys
are errors that name the key: the base tree is put in struct mode before any
override is merged. Every value is then checked against the typed schema in
`mulap.infra.config_schema` (types, ranges, known names), so a mistake is refused before
a run writes anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import cast

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from mulap.infra.config_schema import MusicnnConfig
from mulap.infra.files import atomic_write_text
from mulap.infra.paths import PATH_KEYS, resolve_default

CONFIG_DIR = (
    Path(__file__).resolve().parents[1] / "configs"
)  # mulap/configs (package data); ./configs at the project root links here


class ConfigError(ValueError):
    """A configuration problem a user can fix; the message says which key or file."""


def _load_yaml(path: Path) -> DictConfig:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        cfg = OmegaConf.load(path)
    except Exception as exc:  # noqa: BLE001 - the YAML parser's errors and OmegaConf's: all mean not valid YAML
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return cfg


def _resolve_section(value, group: str) -> DictConfig:
    """A section given as a preset name (configs/<group>/<name>.yaml), a file path, or inline."""
    if isinstance(value, DictConfig):
        return value
    if isinstance(value, str):
        candidate = Path(value)
        path = candidate if candidate.suffix in (".yaml", ".yml") else CONFIG_DIR / group / f"{value}.yaml"
        if not path.is_file():
            choices = sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))
            raise ConfigError(f"unknown {group} config {value!r}: no file {path} (choices: {', '.join(choices)})")
        return _load_yaml(path)
    raise ConfigError(f"{group} config must be a preset name, a YAML path or a mapping, got {value!r}")


def _fill_musicnn_defaults(model_config: DictConfig) -> None:
    """Spell out every Musicnn setting, so they can be overridden one by one and are saved with each run."""

    audio = model_config.get("audio")
    if audio is None:
        return
    given = cast(dict, OmegaConf.to_container(audio.get("musicnn") or OmegaConf.create({})))  # a DictConfig gives a dict
    try:
        full = MusicnnConfig.from_dict(given).to_dict()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model_config.audio.musicnn: {exc}") from None
    audio["musicnn"] = full


def parse_overrides(overrides: Iterable[str]) -> list[tuple[str, str]]:
    pairs = []
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. training.epochs=5)")
        key, value = item.split("=", 1)
        pairs.append((key.strip(), value))
    return pairs


def _apply_overrides(cfg: DictConfig, pairs: list[tuple[str, str]], source: str) -> None:
    for key, value in pairs:
        parent_key, _, leaf = key.rpartition(".")
        try:
            parent = OmegaConf.select(cfg, parent_key, throw_on_missing=True) if parent_key else cfg
        except OmegaConfBaseException:
            parent = None
        if not isinstance(parent, DictConfig) or leaf not in parent:
            raise ConfigError(f"unknown config key {key!r} ({source}); see the files in {CONFIG_DIR}")
        parsed = OmegaConf.create({"v": _yaml_value(value)})["v"] if value != "" else ""
        try:
            OmegaConf.update(cfg, key, parsed, merge=False)
        except OmegaConfBaseException as exc:
            raise ConfigError(f"cannot set {key!r} to {value!r} ({source}): {exc}") from None


def _yaml_value(text: str):
    """Parse an override's value the way YAML would (numbers, lists, null, booleans)."""
    import yaml

    try:
        return float(text) if _looks_float(text) else yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _looks_float(text: str) -> bool:
    """YAML 1.1 reads '1e-3' as a string; users mean a number."""
    try:
        float(text)
    except ValueError:
        return False
    return not text.strip().lstrip("+-").isdigit() and text.strip().lower() not in ("nan", "inf", "infinity", "-inf")


def _merge_file(base: DictConfig, path: Path) -> DictConfig:
    user = _load_yaml(path)
    try:
        return cast(DictConfig, OmegaConf.merge(base, user))  # two mappings merge into one
    except (ConfigKeyError, ConfigAttributeError) as exc:
        raise ConfigError(f"{path}: unknown config key {exc.full_key!r}") from None


def load_config(
    config_file: str | Path | None = None, overrides: Iterable[str] = (), extra: dict | None = None, validate: bool = True
) -> DictConfig:
    """Defaults <- `config_file` (a full or partial config) <- `overrides` (key=value), checked against the
    schema (`validate`; ConfigError naming the key and its allowed values or range).

    `model_config=<preset>` and `dataset_config=<preset>` overrides pick another preset
    before the finer overrides are applied. `extra` adds sections (e.g. downstream).
    """
    pairs = parse_overrides(overrides)
    raw = _load_yaml(CONFIG_DIR / "default.yaml")
    if config_file is not None:
        user = _load_yaml(Path(config_file))
        for group in ("model_config", "dataset_config"):
            if isinstance(user.get(group), str):
                raw[group] = user.pop(group)
    else:
        user = None
    for key, value in list(pairs):
        if key in ("model_config", "dataset_config"):
            raw[key] = value
            pairs.remove((key, value))
    raw["model_config"] = _resolve_section(raw["model_config"], "models")
    _fill_musicnn_defaults(raw["model_config"])
    raw["dataset_config"] = _resolve_section(raw["dataset_config"], "datasets")
    if extra:
        for name, section in extra.items():
            raw[name] = section
    OmegaConf.set_struct(raw, True)
    cfg = raw
    if user is not None:
        try:
            cfg = cast(DictConfig, OmegaConf.merge(cfg, user))
        except (ConfigKeyError, ConfigAttributeError) as exc:
            raise ConfigError(f"{config_file}: unknown config key {exc.full_key!r}") from None
    _apply_overrides(cfg, pairs, "command line")
    _resolve_default_paths(cfg, user, pairs)
    if validate:
        validate_config(cfg)
    return cfg


def _resolve_default_paths(cfg: DictConfig, user: DictConfig | None, pairs: list[tuple[str, str]]) -> None:
    """Relative paths that still hold their packaged default are taken from the project root (mulap.infra.paths);
    paths set by the user (config file or command line) stay as given, relative to the current folder."""
    given = {key for key, _ in pairs}
    for key in PATH_KEYS:
        if key in given or (user is not None and OmegaConf.select(user, key) is not None):
            continue
        value = OmegaConf.select(cfg, key)
        if isinstance(value, str):
            OmegaConf.update(cfg, key, resolve_default(value), merge=False)


def validate_config(cfg: DictConfig) -> DictConfig:
    """Check `cfg` against the typed schema (mulap.infra.config_schema); numbers given as strings become numbers.
    Raises ConfigError naming every key that is wrong and what it may be."""
    from mulap.infra.config_schema import SchemaError, check

    container = to_dict(cfg)
    try:
        checked = check(container)
    except SchemaError as exc:
        raise ConfigError(f"config: {exc}") from None
    for key, value in _changed_leaves(container, checked):
        OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def _changed_leaves(given, checked, prefix: str = ""):
    """(dotted key, value) where the schema converted a value (e.g. the string '1e-4' to 1e-4)."""
    if isinstance(given, dict) and isinstance(checked, dict):
        for k, v in given.items():
            if k in checked:
                yield from _changed_leaves(v, checked[k], f"{prefix}{k}.")
    elif given != checked or type(given) is not type(checked):
        if not (isinstance(given, list) and given == checked):
            yield prefix[:-1], checked


def save_config(cfg: DictConfig, path: str | Path) -> None:
    """Write the resolved config atomically."""
    atomic_write_text(path, OmegaConf.to_yaml(cfg, resolve=True))


def load_saved_config(path: str | Path) -> DictConfig:
    cfg = _load_yaml(Path(path))
    OmegaConf.set_struct(cfg, True)
    return cfg


def to_dict(cfg: DictConfig) -> dict:
    return cast(dict, OmegaConf.to_container(cfg, resolve=True))  # a DictConfig gives a dict
