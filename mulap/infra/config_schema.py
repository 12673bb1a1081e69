"""The typed, range-checked schema of a mulap config (pydantic), checked by `mulap.infra.config.load_config`
before anything runs: integers are integers, floats are finite and in range, probabilities lie in [0, 1],
names are one of the known values. An error names the key and what it may be:

    config: training.epochs must be greater than or equal to 1 (got 0)
    config: dataset_config.on_bad_sample must be 'error' or 'skip' (got 'drop')

Every key of every section is listed: a key a preset file adds must be added here too (the error then says
so). Values given as strings that mean numbers ('1e-4' from YAML 1.1) come back as numbers.

The sizes of the networks have upper bounds (below, `MAX_*`), checked before anything is built: the same
schema checks the config.json of an exported model (`check_export`) and the Musicnn config recorded in a
backbone file (`check_musicnn`), files someone else may have written, where a few bytes could otherwise
ask for unbounded memory.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError, model_validator
from pydantic_core import ErrorDetails

# -- value types ----------------------------------------------------------------------------------
Count = Annotated[StrictInt, Field(ge=1)]  # >= 1
NonNegInt = Annotated[StrictInt, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]  # finite (allow_inf_nan=False below), > 0
NonNeg = Annotated[float, Field(ge=0)]
Probability = Annotated[float, Field(ge=0, le=1)]
Dropout = Annotated[float, Field(ge=0, lt=1)]
Bool = StrictBool
Seed = Annotated[StrictInt, Field(ge=0, le=2**32 - 1)]

# -- size limits ----------------------------------------------------------------------------------
# How much memory a model takes is decided by its config before a weight is read, and a config may come from
# a file someone else wrote (an export's config.json, a backbone file's metadata). Each bound refuses a few
# bytes that ask for gigabytes, and lies far above the networks mulap builds: bert-base is 12 layers, 768
# wide, 12 heads, FFN 3072, 30522 tokens, 512 positions (bert-large: 24 / 1024 / 16 / 4096); the MSD
# musicnn has 96 mel bands, a 512-sample FFT, 204 timbral / 51 temporal / 64 back-end channels (512 in the
# "big" one), filters up to 129 frames, 200 dense units and 50 tags. What the bounds allow together can
# still be large: an export's weights must also fit its file (mulap.models.weight_files), so the memory a
# model takes is bounded by the size of its weights on disk.
MAX_LAYERS = 48  # transformer layers (and co-attention layers): 4x bert-base, 2x bert-large
MAX_WIDTH = 4096  # hidden sizes, pooler and joint-space dims: 4x bert-large
MAX_HEADS = 64  # attention heads: 4x bert-large
MAX_FFN = 16384  # feed-forward sizes: 4x bert-large
MAX_VOCAB = 262_144  # 2^18 tokens: 8x bert-base, above multilingual BERT's 119547
MAX_TOKEN_TYPES = 16  # BERT's segment types (it uses 2)
MAX_POSITIONS = 8192  # text positions and max_seq_length: 16x BERT's 512
MAX_CHUNKS = 4096  # 3 s chunks in the audio transformer's window: over 3 hours
MAX_CHANNELS = 4096  # Musicnn conv channels and dense units: 8x the big musicnn's 512
MAX_KERNEL = 1024  # Musicnn filter lengths in frames (musicnn's longest: 129)
MAX_FILTERS = 16  # filters per Musicnn front-end branch (musicnn: 2 timbral, 3 temporal)
MAX_MELS = 512  # mel bands (musicnn: 96); the filterbank is built even for a weightless model
MAX_FFT = 16384  # STFT size in samples (musicnn: 512); with MAX_MELS a 33 MB filterbank at most
MAX_SAMPLE_RATE = 384_000  # the highest rate audio interfaces record at (musicnn: 16000)
MAX_CHUNK_SAMPLES = 16000 * 600  # ten minutes at 16 kHz in one chunk (musicnn: 3 s)
MAX_TAGS = 100_000  # tagging outputs (musicnn: 50)


# one alias a bound (written out: a type checker reads an Annotated alias, not what a function returns)
Layers = Annotated[StrictInt, Field(ge=1, le=MAX_LAYERS)]
Width = Annotated[StrictInt, Field(ge=1, le=MAX_WIDTH)]
Heads = Annotated[StrictInt, Field(ge=1, le=MAX_HEADS)]
FFN = Annotated[StrictInt, Field(ge=1, le=MAX_FFN)]
Channels = Annotated[StrictInt, Field(ge=1, le=MAX_CHANNELS)]
Kernel = Annotated[StrictInt, Field(ge=1, le=MAX_KERNEL)]
Positions = Annotated[StrictInt, Field(ge=1, le=MAX_POSITIONS)]
SeqLength = Annotated[StrictInt, Field(ge=4, le=MAX_POSITIONS)]
LayerIds = Annotated[list[NonNegInt], Field(max_length=MAX_LAYERS)]


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
        raise ValueError(
            f"must be a share of the batches in ({'[' if allow_zero else '('}0, 1] (or an int count)".replace("((", "(").replace(
                "([", "["
            )
        )
    return v


def _devices(v: Any) -> Any:
    if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and (v >= 1 or v == -1)):
        return v
    if isinstance(v, list) and v and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in v):
        return v
    raise ValueError("must be 'auto', a number of devices >= 1 (-1: all) or a list of device indices")


# the MTT- and MSD-trained musicnn taggers (their checkpoints: mulap.models.backbone.SUPERVISED): named once, here
SUPERVISED_NAMES = ("supervised_mtt", "supervised_msd")


def _backbone_init(v: Any) -> Any:
    if v == "random" or v in SUPERVISED_NAMES:
        return v
    if isinstance(v, str) and Path(v).suffix == ".safetensors":
        if not Path(v).is_file():
            raise ValueError(f"backbone file {v} does not exist")
        return v
    raise ValueError(
        f"must be 'random', {', '.join(repr(n) for n in SUPERVISED_NAMES)} or a path to a backbone .safetensors file"
    )


def _task_name(v: Any) -> Any:
    """A task's name has the form of one (a plain name, or csv:NAME for your own); whether it is known is the
    task registry's to say (mulap.data.tasks.get_task, called before any downstream work)."""
    if not isinstance(v, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+|csv(:[A-Za-z0-9_.-]+)?", v):
        raise ValueError("must be a task name such as mtt_tagging, or csv:NAME")
    return v


LimitTrain = Annotated[Any, AfterValidator(lambda v: _limit_batches(v, allow_zero=False))]
LimitVal = Annotated[Any, AfterValidator(lambda v: _limit_batches(v, allow_zero=True))]
Devices = Annotated[Any, AfterValidator(_devices)]
BackboneInit = Annotated[str, AfterValidator(_backbone_init)]
Task = Annotated[str, AfterValidator(_task_name)]

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
    gradient_clip_val: NonNeg | None
    precision: Literal[PRECISIONS]  # type: ignore[valid-type]
    device: Literal[ACCELERATORS]  # type: ignore[valid-type]
    devices: Devices
    num_nodes: Count
    strategy: Literal[STRATEGIES]  # type: ignore[valid-type]
    num_workers: NonNegInt
    checkpoint_every_n_steps: Count | None
    early_stopping_patience: Count | None
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
            raise ValueError(
                f"dataset_config.augment.noise_snr_db must be [low, high] with low <= high (got {self.noise_snr_db})"
            )
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
    train_clips: Count | None
    captions: Literal["aligned", "shuffled"]
    caption_variants: Bool = True
    augment: AugmentConfig = AugmentConfig()
    format: Literal["folder", "shards"]
    shuffle_buffer: NonNegInt
    shard_url: str | None

    @model_validator(mode="after")
    def _chunk_fits(self):
        if self.chunk_seconds > self.max_len_seconds:
            raise ValueError(
                f"dataset_config.chunk_seconds ({self.chunk_seconds}) must not exceed max_len_seconds ({self.max_len_seconds})"
            )
        return self


class Attention(Section):
    hidden_size: Width
    num_heads: Heads

    @model_validator(mode="after")
    def _heads_divide(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be a multiple of num_heads ({self.num_heads})")
        return self


class Musicnn(Section):
    """Every setting of mulap.models.musicnn.MusicnnConfig (a test checks the two list the same keys); one not
    given takes its default there, as MusicnnConfig.from_dict does (`audio.musicnn={timbral_channels: 8}`)."""

    sample_rate: Annotated[StrictInt, Field(ge=1000, le=MAX_SAMPLE_RATE)]
    n_fft: Annotated[StrictInt, Field(ge=2, le=MAX_FFT)]
    hop_length: Annotated[StrictInt, Field(ge=1, le=MAX_FFT)]
    n_mels: Annotated[StrictInt, Field(ge=1, le=MAX_MELS)]
    f_min: NonNeg
    f_max: Positive | None
    power: Positive
    mel_scale: Literal["htk", "slaney"]
    mel_norm: Literal["slaney"] | None
    compression: Literal["db", "log10", "none"]
    top_db: Positive | None
    center: Bool
    pad_mode: Literal["reflect", "constant", "replicate", "circular"]
    chunk_samples: Annotated[StrictInt, Field(ge=1, le=MAX_CHUNK_SAMPLES)]
    timbral_height_fractions: Annotated[list[Annotated[float, Field(gt=0, le=1)]], Field(max_length=MAX_FILTERS)]
    timbral_width: Kernel
    timbral_channels: Channels
    timbral_impl: Literal["fused", "time_taps", "conv2d"]
    temporal_lengths: Annotated[list[Kernel], Field(max_length=MAX_FILTERS)]
    temporal_channels: Channels
    temporal_mode: Literal["mean_conv", "conv_max"]
    backend_channels: Channels
    backend_kernel: Kernel
    block_order: Literal["conv_bn_relu", "conv_relu_bn"]
    bn_eps: Positive
    bn_momentum: Probability
    num_tags: Annotated[StrictInt, Field(ge=1, le=MAX_TAGS)]
    dense_units: Channels
    dropout: Dropout
    variant: str

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return {**MusicnnConfig().to_dict(), **data}

    @model_validator(mode="after")
    def _has_filters(self):
        if not self.timbral_height_fractions and not self.temporal_lengths:
            raise ValueError("timbral_height_fractions and temporal_lengths are both empty: the front end has no filters")
        return self


class AudioModel(Attention):
    init: BackboneInit
    musicnn: Musicnn
    freeze_backbone: Bool
    num_layers: Layers
    intermediate_size: FFN
    dropout: Dropout
    max_chunks: Annotated[StrictInt, Field(ge=1, le=MAX_CHUNKS)]


class TextModel(Attention):
    pretrained: str | None
    num_layers: Layers
    intermediate_size: FFN
    dropout: Dropout
    freeze: Bool
    lr_scale: NonNeg
    max_seq_length: SeqLength


class CoAttention(Attention):
    t_biattention_id: LayerIds
    a_biattention_id: LayerIds
    dropout: Dropout
    lr_scale: NonNeg = 1.0


class Pooler(Section):
    size: Width
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
    target_norm: Literal["layernorm", "none"] | None
    detach_target: Bool


class Contrastive(Section):
    enabled: Bool
    weight: NonNeg
    dim: Width
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
            raise ValueError(
                f"model_config.coattention.t_biattention_id and a_biattention_id must have the same length ({t} vs {a})"
            )
        if any(i > self.text.num_layers for i in t):
            raise ValueError(f"model_config.coattention.t_biattention_id {t}: the text branch has {self.text.num_layers} layers")
        if any(i >= self.audio.num_layers for i in a):
            raise ValueError(
                f"model_config.coattention.a_biattention_id {a}: the audio branch has {self.audio.num_layers} layers (0-based ids)"
            )
        return self


class Downstream(Section):
    task: Task
    dataset_dir: str | None
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
    downstream: Downstream | None = None

    @model_validator(mode="after")
    def _chunks_fit_model(self):
        d, audio = self.dataset_config, self.model_config_.audio
        chunks = max(1, int(d.max_len_seconds // d.chunk_seconds))
        if chunks > audio.max_chunks:
            raise ValueError(
                f"dataset_config.max_len_seconds={d.max_len_seconds} gives {chunks} chunks of {d.chunk_seconds} s, "
                f"more than model_config.audio.max_chunks={audio.max_chunks} (raise max_chunks or shorten max_len_seconds)"
            )
        return self


# -- an exported model's config.json (mulap.inference.loading) ------------------------------------
def _activation(v: Any) -> Any:
    from transformers.activations import ACT2FN

    if v not in ACT2FN:
        raise ValueError(f"must be one of transformers' activations ({', '.join(sorted(ACT2FN))})")
    return v


class TextConfig(BaseModel):
    """The text branch's BertConfig as transformers writes it. The keys that size the network are checked;
    the others are transformers' business (passed to BertConfig as they are)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    vocab_size: Annotated[StrictInt, Field(ge=1, le=MAX_VOCAB)]
    hidden_size: Width
    num_hidden_layers: Layers
    num_attention_heads: Heads
    intermediate_size: FFN
    max_position_embeddings: Positions
    type_vocab_size: Annotated[StrictInt, Field(ge=1, le=MAX_TOKEN_TYPES)]
    hidden_act: Annotated[str, AfterValidator(_activation)]
    hidden_dropout_prob: Dropout
    attention_probs_dropout_prob: Dropout
    layer_norm_eps: Positive
    pad_token_id: NonNegInt | None = None

    @model_validator(mode="after")
    def _consistent(self):
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"text_config.hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads "
                f"({self.num_attention_heads})"
            )
        if self.pad_token_id is not None and self.pad_token_id >= self.vocab_size:
            raise ValueError(f"text_config.pad_token_id ({self.pad_token_id}) must be below vocab_size ({self.vocab_size})")
        return self


class Corpus(Section):
    path: str | None = None
    clips: dict[str, NonNegInt | None] = {}


class Provenance(Section):
    """Where the weights came from (mulap.inference.loading.experiment_info); shown in the model card."""

    source: str | None = None
    checkpoint: str | None = None
    epoch: NonNegInt | None = None
    global_step: NonNegInt | None = None
    objectives: dict[str, NonNeg] = {}
    corpus: Corpus = Corpus()
    final_validation: dict[str, Annotated[float, Field(allow_inf_nan=True)]] = {}  # a diverged run logs NaN


class ExportConfig(Section):
    format: str
    mulap_version: str
    created: str
    model_config_: ModelConfig = Field(alias="model_config")
    text_config: TextConfig
    max_seq_length: SeqLength
    provenance: Provenance = Provenance()

    @model_validator(mode="after")
    def _fits(self):
        if self.max_seq_length > self.text_config.max_position_embeddings:
            raise ValueError(
                f"max_seq_length ({self.max_seq_length}) is more than text_config.max_position_embeddings "
                f"({self.text_config.max_position_embeddings})"
            )
        if self.model_config_.audio.init != "random":  # the weights are in model.safetensors, never read from elsewhere
            raise ValueError(f"model_config.audio.init must be 'random' in an export (got {self.model_config_.audio.init!r})")
        return self


# -- checking -------------------------------------------------------------------------------------
class SchemaError(ValueError):
    """The config breaks the schema; the message names every offending key (one line)."""


def _key(loc: tuple) -> str:
    # pydantic adds the name of a type or validator to a location inside a union / Annotated: keep the keys
    parts = [
        str(p) for p in loc if isinstance(p, int) or "[" not in str(p) and str(p) not in ("int", "float", "str", "list", "none")
    ]
    key = ".".join(parts).replace("model_config_", "model_config")
    return key


def _message(err: ErrorDetails) -> str:
    key, msg, kind, shown = _key(err["loc"]), err["msg"], err["type"], err.get("input")
    if kind == "extra_forbidden":
        return f"{key} is not a known key (add it to the config schema, mulap/infra/config_schema.py)"
    if kind == "missing":
        return f"{key} is missing"
    if kind in ("too_long", "too_short"):
        ctx = err.get("ctx", {})
        bound = f"at most {ctx.get('max_length')}" if kind == "too_long" else f"at least {ctx.get('min_length')}"
        return f"{key} must have {bound} items (got {ctx.get('actual_length')})"
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
        if not msg.startswith("must"):  # a check across keys: its message names them
            return msg if not key or msg.startswith(("dataset_config.", "model_config.")) else f"{key}: {msg}"
    msg = msg.replace("Input should be", "must be", 1)
    shown = repr(shown)
    return f"{key} {msg} (got {shown if len(shown) <= 80 else shown[:76] + ' ...'})"  # a tampered file's value may be long


def _checked(schema: type[BaseModel], container: Any) -> dict:
    try:
        model = schema.model_validate(container)
    except ValidationError as exc:
        raise SchemaError("; ".join(dict.fromkeys(_message(e) for e in exc.errors()))) from None
    return model.model_dump(by_alias=True, exclude_none=False)


def check(container: dict) -> dict:
    """Validate a resolved config (a plain dict); returns it with numbers given as strings converted.
    Raises SchemaError naming every key that is wrong."""
    return _checked(Config, container)


def check_musicnn(settings: dict) -> dict:
    """Validate every setting of a Musicnn (mulap.models.musicnn.MusicnnConfig.from_dict)."""
    return _checked(Musicnn, settings)


def check_text_config(config: Any) -> dict:
    """Validate a BertConfig dict (the text branch of an experiment, read from its BERT folder)."""
    return _checked(TextConfig, config)


def check_export(config: Any) -> dict:
    """Validate an exported model's config.json (a parsed JSON value: a top-level list is refused too)."""
    return _checked(ExportConfig, config)


# -- Musicnn's settings as a dataclass (the network: mulap.models.musicnn) ---------------------------------
BlockOrder = Literal["conv_bn_relu", "conv_relu_bn"]
TemporalMode = Literal["mean_conv", "conv_max"]


@dataclass
class MusicnnConfig:
    """Every setting of a Musicnn variant, front end included (stored in checkpoints)."""

    # mel front end (see MelFrontEnd)
    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 256
    n_mels: int = 96
    f_min: float = 0.0
    f_max: float | None = 8000.0
    power: float = 2.0
    mel_scale: str = "htk"
    mel_norm: str | None = None
    compression: str = "db"
    top_db: float | None = 80.0
    center: bool = True
    pad_mode: str = "reflect"
    chunk_samples: int = 48000  # 3 s at 16 kHz; the length the model is trained on
    # timbral front end: vertical convs, heights as fractions of n_mels, in concatenation order
    timbral_height_fractions: tuple[float, ...] = (0.7, 0.4)
    timbral_width: int = 7
    timbral_channels: int = 204
    timbral_impl: str = "fused"  # computation only ('fused' | 'time_taps' | 'conv2d'); same weights, same result
    # temporal front end: horizontal convs, in concatenation order
    temporal_lengths: tuple[int, ...] = (129, 65, 33)
    temporal_channels: int = 51
    temporal_mode: str = "mean_conv"  # 'mean_conv': average bands then conv; 'conv_max': conv per band, max
    # back end ("mid-end" in musicnn's code)
    backend_channels: int = 64
    backend_kernel: int = 7
    block_order: str = "conv_bn_relu"
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1  # torch convention; TF's 0.99 decay is 0.01 here
    # tagging head (MusicnnTagger only)
    num_tags: int = 50
    dense_units: int = 200
    dropout: float = 0.5
    variant: str = "mulap"

    def __post_init__(self) -> None:
        self.timbral_height_fractions = tuple(float(f) for f in self.timbral_height_fractions)
        self.temporal_lengths = tuple(int(k) for k in self.temporal_lengths)
        if self.block_order not in ("conv_bn_relu", "conv_relu_bn"):
            raise ValueError(f"block_order must be 'conv_bn_relu' or 'conv_relu_bn', got {self.block_order!r}")
        if self.temporal_mode not in ("mean_conv", "conv_max"):
            raise ValueError(f"temporal_mode must be 'mean_conv' or 'conv_max', got {self.temporal_mode!r}")
        for h in self.timbral_heights:
            if not 1 <= h <= self.n_mels:
                raise ValueError(f"timbral filter height {h} does not fit {self.n_mels} mel bands")

    @property
    def timbral_heights(self) -> tuple[int, ...]:
        """Filter heights in mel bands: int(fraction * n_mels), e.g. 67 and 38 for 96 bands."""
        return tuple(int(f * self.n_mels) for f in self.timbral_height_fractions)

    @property
    def frontend_channels(self) -> int:
        """Channels out of the front end (561 for the defaults)."""
        return self.timbral_channels * len(self.timbral_height_fractions) + self.temporal_channels * len(self.temporal_lengths)

    @property
    def out_dim(self) -> int:
        """Pooled feature size: 2 * (front end + 3 back-end blocks), 1506 for 64 back-end channels."""
        return 2 * (self.frontend_channels + 3 * self.backend_channels)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (lists for tuples), e.g. for YAML/JSON or a checkpoint."""
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MusicnnConfig:
        """Inverse of :meth:`to_dict` (missing keys take their defaults); unknown keys are an error naming them.
        The settings are checked against the typed schema first (types, names, size limits: the dict may come
        from a file someone else wrote), so nothing is built from a config that would not fit in memory."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown MusicnnConfig keys: {unknown}")
        return cls(**check_musicnn(d))
