"""The typed, range-checked schema of a mulap config (pydantic), checked by `mulap.config.load_config`
before anything runs: integers are integers, floats are finite and in range, probabilities lie in [0, 1],
names are one of the known values. An error names the key and what it may be:

    config: training.epochs must be greater than or equal to 1 (got 0)
    config: dataset_config.on_bad_sample must be 'error' or 'skip' (got 'drop')

Every key of every section is listed: a key a preset file adds must be added here too (the error then says
so). Values given as strings that mean numbers ('1e-4' from YAML 1.1) come back as numbers.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError, model_validator

# -- value types ----------------------------------------------------------------------------------
Count = Annotated[StrictInt, Field(ge=1)]          # >= 1
NonNegInt = Annotated[StrictInt, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]           # finite (allow_inf_nan=False below), > 0
NonNeg = Annotated[float, Field(ge=0)]
Probability = Annotated[float, Field(ge=0, le=1)]
Dropout = Annotated[float, Field(ge=0, lt=1)]
Bool = StrictBool
Seed = Annotated[StrictInt, Field(ge=0, le=2**32 - 1)]


def _limit_batches(v: Any, allow_zero: bool) -> Any:
    """Lightning's limit_*_batches: None, a count (int), or a share of the batches (float in (0, 1])."""
    if v is None:
        return v
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError("must be null, a number of batches (int) or a share of them (float in (0, 1])")
    low = 0 if allow_zero else 1
    if isinstance(v, int) and v < low:
        raise ValueError(f"must be a number of batches >= {low}, or a share as a float in (0, 1]")
    if isinstance(v, float) and not ((0 <= v if allow_zero else 0 < v) and v <= 1):
        raise ValueError(f"must be a share of the batches in ({'[' if allow_zero else '('}0, 1] (or an int count)".replace("((", "(").replace("([", "["))
    return v


def _devices(v: Any) -> Any:
    if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and (v >= 1 or v == -1)):
        return v
    if isinstance(v, list) and v and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in v):
        return v
    raise ValueError("must be 'auto', a number of devices >= 1 (-1: all) or a list of device indices")


def _backbone_init(v: Any) -> Any:
    if v in ("random", "supervised_mtt", "supervised_msd"):
        return v
    if isinstance(v, str) and Path(v).suffix == ".safetensors":
        if not Path(v).is_file():
            raise ValueError(f"backbone file {v} does not exist")
        return v
    raise ValueError("must be 'random', 'supervised_mtt', 'supervised_msd' or a path to a backbone .safetensors file")


def _known_task(v: Any) -> Any:
    from mulap.data.downstream import TASKS

    if v == "csv" or (isinstance(v, str) and v.startswith("csv:") and len(v) > 4):  # your own tasks (`mulap prepare csv`)
        return v
    if v not in TASKS:
        raise ValueError(f"must be one of {', '.join(repr(t) for t in TASKS)} or csv:NAME")
    return v


LimitTrain = Annotated[Any, AfterValidator(lambda v: _limit_batches(v, allow_zero=False))]
LimitVal = Annotated[Any, AfterValidator(lambda v: _limit_batches(v, allow_zero=True))]
Devices = Annotated[Any, AfterValidator(_devices)]
BackboneInit = Annotated[str, AfterValidator(_backbone_init)]
Task = Annotated[str, AfterValidator(_known_task)]

PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
STRATEGIES = ("auto", "ddp", "ddp_find_unused_parameters_true", "ddp_spawn")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# -- sections -------------------------------------------------------------------------------------
class Env(Section):
    save_dir: str
    data_root: str
    seed: Seed


class Training(Section):
    epochs: Count
    batch_size: Count
    lr: Positive
    betas: Annotated[list[Annotated[float, Field(ge=0, lt=1)]], Field(min_length=2, max_length=2)]
    eps: Positive
    weight_decay: NonNeg
    warmup_ratio: Probability
    accumulate_grad_batches: Count
    gradient_clip_val: Optional[NonNeg]
    precision: Literal[PRECISIONS]  # type: ignore[valid-type]
    device: Literal[ACCELERATORS]  # type: ignore[valid-type]
    devices: Devices
    num_nodes: Count
    strategy: Literal[STRATEGIES]  # type: ignore[valid-type]
    num_workers: NonNegInt
    checkpoint_every_n_steps: Optional[Count]
    early_stopping_patience: Optional[Count]
    limit_train_batches: LimitTrain
    limit_val_batches: LimitVal
    log_every_n_steps: Count
    progress_bar: Bool
    deterministic: Bool


class AugmentConfig(Section):
    """dataset_config.augment: per-chunk audio augmentation of the training split (mulap.audio.augment)."""

    enabled: Bool = False
    gain_db: NonNeg = 6.0
    eq_db: NonNeg = 6.0
    noise_prob: Probability = 0.5
    noise_snr_db: Annotated[list[float], Field(min_length=2, max_length=2)] = [20.0, 40.0]
    shift_seconds: NonNeg = 0.25

    @model_validator(mode="after")
    def _snr_range(self):
        lo, hi = self.noise_snr_db
        if lo > hi:
            raise ValueError(f"dataset_config.augment.noise_snr_db must be [low, high] with low <= high (got {self.noise_snr_db})")
        return self


class DatasetConfig(Section):
    dataset_name: str
    data_dir: str
    audio_dir: str
    sample_rate: Annotated[StrictInt, Field(ge=1000)]
    max_len_seconds: Positive
    chunk_seconds: Positive
    random_crop: Bool
    on_bad_sample: Literal["error", "skip"]
    train_clips: Optional[Count]
    captions: Literal["aligned", "shuffled"]
    caption_variants: Bool = True
    augment: AugmentConfig = AugmentConfig()
    format: Literal["folder", "shards"]
    shuffle_buffer: NonNegInt
    shard_url: Optional[str]

    @model_validator(mode="after")
    def _chunk_fits(self):
        if self.chunk_seconds > self.max_len_seconds:
            raise ValueError(f"dataset_config.chunk_seconds ({self.chunk_seconds}) must not exceed max_len_seconds ({self.max_len_seconds})")
        return self


class Attention(Section):
    hidden_size: Count
    num_heads: Count

    @model_validator(mode="after")
    def _heads_divide(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be a multiple of num_heads ({self.num_heads})")
        return self


class AudioModel(Attention):
    init: BackboneInit
    musicnn: dict[str, Any]  # every Musicnn setting, checked by MusicnnConfig when the config is loaded
    freeze_backbone: Bool
    num_layers: Count
    intermediate_size: Count
    dropout: Dropout
    max_chunks: Count


class TextModel(Attention):
    pretrained: Optional[str]
    num_layers: Count
    intermediate_size: Count
    dropout: Dropout
    freeze: Bool
    lr_scale: NonNeg
    max_seq_length: Annotated[StrictInt, Field(ge=4)]


class CoAttention(Attention):
    t_biattention_id: list[NonNegInt]
    a_biattention_id: list[NonNegInt]
    dropout: Dropout
    lr_scale: NonNeg = 1.0


class Pooler(Section):
    size: Count
    fusion: Literal["mul", "sum"]


class MLM(Section):
    enabled: Bool
    weight: NonNeg
    prob: Probability


class ATM(Section):
    enabled: Bool
    weight: NonNeg
    neg_prob: Probability
    negatives: Literal["random", "hard"]
    similarity_prior: Bool
    similarity_scale: Positive


class MAM(Section):
    enabled: Bool
    weight: NonNeg
    prob: Probability
    target_norm: Optional[Literal["layernorm", "none"]]
    detach_target: Bool


class Contrastive(Section):
    enabled: Bool
    weight: NonNeg
    dim: Count
    temperature: Positive
    gather: Bool
    chunk_weight: NonNeg


class Objectives(Section):
    mlm: MLM
    atm: ATM
    mam: MAM
    contrastive: Contrastive

    @model_validator(mode="after")
    def _one_enabled(self):
        if not any(o.enabled for o in (self.mlm, self.atm, self.mam, self.contrastive)):
            raise ValueError("at least one of model_config.objectives.{mlm,atm,mam,contrastive} must be enabled")
        return self


class ModelConfig(Section):
    model_name: str
    audio: AudioModel
    text: TextModel
    coattention: CoAttention
    pooler: Pooler
    objectives: Objectives

    @model_validator(mode="after")
    def _layers_exist(self):
        t, a = self.coattention.t_biattention_id, self.coattention.a_biattention_id
        if len(t) != len(a):
            raise ValueError(f"model_config.coattention.t_biattention_id and a_biattention_id must have the same length ({t} vs {a})")
        if any(i > self.text.num_layers for i in t):
            raise ValueError(f"model_config.coattention.t_biattention_id {t}: the text branch has {self.text.num_layers} layers")
        if any(i >= self.audio.num_layers for i in a):
            raise ValueError(f"model_config.coattention.a_biattention_id {a}: the audio branch has {self.audio.num_layers} layers (0-based ids)")
        return self


class Downstream(Section):
    task: Task
    dataset_dir: Optional[str]
    backbone_init: Literal["mulap", "random", "supervised_mtt", "supervised_msd"]
    mode: Literal["frozen", "finetune"]
    probe: Literal["mlp", "linear"]
    hidden: Count
    dropout: Dropout
    lr: Positive
    backbone_lr: Positive
    freeze_bn: Bool
    weight_decay: NonNeg
    batch_size: Count
    epochs: Count
    patience: Count
    lr_factor: Annotated[float, Field(gt=0, lt=1)]
    lr_patience: NonNegInt
    seed: Seed


class Config(Section):
    env: Env
    training: Training
    dataset_config: DatasetConfig
    model_config_: ModelConfig = Field(alias="model_config")  # pydantic reserves the name model_config
    downstream: Optional[Downstream] = None

    @model_validator(mode="after")
    def _chunks_fit_model(self):
        d, audio = self.dataset_config, self.model_config_.audio
        chunks = max(1, int(d.max_len_seconds // d.chunk_seconds))
        if chunks > audio.max_chunks:
            raise ValueError(f"dataset_config.max_len_seconds={d.max_len_seconds} gives {chunks} chunks of {d.chunk_seconds} s, "
                             f"more than model_config.audio.max_chunks={audio.max_chunks} (raise max_chunks or shorten max_len_seconds)")
        return self


# -- checking -------------------------------------------------------------------------------------
class SchemaError(ValueError):
    """The config breaks the schema; the message names every offending key (one line)."""


def _key(loc: tuple) -> str:
    # pydantic adds the name of a type or validator to a location inside a union / Annotated: keep the keys
    parts = [str(p) for p in loc if isinstance(p, int) or "[" not in str(p) and str(p) not in ("int", "float", "str", "list", "none")]
    key = ".".join(parts).replace("model_config_", "model_config")
    return key


def _message(err: dict) -> str:
    key, msg, kind, shown = _key(err["loc"]), err["msg"], err["type"], err.get("input")
    if kind == "extra_forbidden":
        return f"{key} is not a known key (add it to the config schema, mulap/config_schema.py)"
    if kind == "missing":
        return f"{key} is missing"
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
        if not msg.startswith("must"):  # a check across keys: its message names them
            return msg if not key or msg.startswith(("dataset_config.", "model_config.")) else f"{key}: {msg}"
    msg = msg.replace("Input should be", "must be", 1)
    return f"{key} {msg} (got {shown!r})"


def check(container: dict) -> dict:
    """Validate a resolved config (a plain dict); returns it with numbers given as strings converted.
    Raises SchemaError naming every key that is wrong."""
    try:
        model = Config.model_validate(container)
    except ValidationError as exc:
        raise SchemaError("; ".join(dict.fromkeys(_message(e) for e in exc.errors()))) from None
    return model.model_dump(by_alias=True, exclude_none=False)
