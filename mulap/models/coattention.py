"""ViLBERT-style co-attention ("connection") layers between the audio and text streams.

In each layer audio queries attend to text keys/values and text queries attend to
audio keys/values (inner size `hidden_size`, `num_heads` heads); each side then has
its own output projection with residual + LayerNorm, and its own feed-forward block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _CrossAttention(nn.Module):
    """Queries from one stream, keys/values from the other, projected to `inner` dims."""

    def __init__(self, q_dim: int, kv_dim: int, inner: int, num_heads: int, dropout: float):
        super().__init__()
        if inner % num_heads:
            raise ValueError(f"co-attention size {inner} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.query = nn.Linear(q_dim, inner)
        self.key = nn.Linear(kv_dim, inner)
        self.value = nn.Linear(kv_dim, inner)
        self.dropout = dropout

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.num_heads, d // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, kv: torch.Tensor, kv_mask: torch.Tensor) -> torch.Tensor:
        """q [B, Nq, Dq], kv [B, Nk, Dk], kv_mask additive [B, 1, 1, Nk] -> [B, Nq, inner]."""
        out = F.scaled_dot_product_attention(
            self._split(self.query(q)),
            self._split(self.key(kv)),
            self._split(self.value(kv)),
            attn_mask=kv_mask.to(q.dtype),
            dropout_p=self.dropout if self.training else 0.0,
        )
        b, h, n, d = out.shape
        return out.transpose(1, 2).reshape(b, n, h * d)


class _AddNorm(nn.Module):
    """Linear(in -> dim), dropout, residual, LayerNorm (BERT's *Output blocks)."""

    def __init__(self, in_dim: int, dim: int, dropout: float, eps: float = 1e-12):
        super().__init__()
        self.dense = nn.Linear(in_dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.norm(self.dropout(self.dense(x)) + residual)


class _FeedForward(nn.Module):
    def __init__(self, dim: int, inner: int, dropout: float):
        super().__init__()
        self.up = nn.Linear(dim, inner)
        self.out = _AddNorm(inner, dim, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.gelu(self.up(x)), x)


class CoAttentionLayer(nn.Module):
    def __init__(
        self,
        audio_dim: int,
        text_dim: int,
        hidden_size: int = 1024,
        num_heads: int = 8,
        audio_ffn: int = 1024,
        text_ffn: int = 3072,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.audio_from_text = _CrossAttention(audio_dim, text_dim, hidden_size, num_heads, dropout)
        self.text_from_audio = _CrossAttention(text_dim, audio_dim, hidden_size, num_heads, dropout)
        self.audio_out = _AddNorm(hidden_size, audio_dim, dropout)
        self.text_out = _AddNorm(hidden_size, text_dim, dropout)
        self.audio_ffn = _FeedForward(audio_dim, audio_ffn, dropout)
        self.text_ffn = _FeedForward(text_dim, text_ffn, dropout)

    def forward(
        self, audio: torch.Tensor, audio_mask: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """audio [B, Na, Da], text [B, Nt, Dt]; masks additive [B, 1, 1, N]. Returns both updated."""
        a_ctx = self.audio_from_text(audio, text, text_mask)
        t_ctx = self.text_from_audio(text, audio, audio_mask)
        audio = self.audio_ffn(self.audio_out(a_ctx, audio))
        text = self.text_ffn(self.text_out(t_ctx, text))
        return audio, text
