"""The MuLaP model: Musicnn backbone -> audio transformer, BERT text branch, co-attention,
poolers, fusion and the pre-training heads (MLM, ATM, masked audio, optional contrastive).

The model code never names a device; the trainer places it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.bert.modeling_bert import BertLayer

from mulap.models.backbone import build_backbone
from mulap.models.coattention import CoAttentionLayer
from mulap.models.masking import IGNORE, choose_masked_chunks, mask_tokens, sample_negatives
from mulap.models.text import TextEncoder, additive_mask, bert_config


def _as_tuple(ids) -> tuple[int, ...]:
    return tuple(int(i) for i in ids)


class AudioEmbeddings(nn.Module):
    """[B, 1+C, F] chunk features (global token first) -> [B, 1+C, H]: projection + positions, LayerNorm, dropout."""

    def __init__(self, feature_dim: int, hidden: int, max_chunks: int, dropout: float):
        super().__init__()
        self.project = nn.Linear(feature_dim, hidden)
        self.position = nn.Embedding(max_chunks + 1, hidden)
        self.norm = nn.LayerNorm(hidden, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n = tokens.shape[1]
        if n > self.position.num_embeddings:
            raise ValueError(
                f"{n - 1} chunks per clip but the model has position embeddings for {self.position.num_embeddings - 1}"
                " (raise model_config.audio.max_chunks or lower max_len_seconds)"
            )
        pos = self.position.weight[:n].unsqueeze(0)
        return self.dropout(self.norm(self.project(tokens) + pos))


class Pooler(nn.Module):
    """First token -> Linear -> tanh."""

    def __init__(self, dim: int, out: int):
        super().__init__()
        self.dense = nn.Linear(dim, out)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(seq[:, 0]))


class MLMHead(nn.Module):
    """BERT's prediction head: transform (dense, GELU, LayerNorm) then the decoder tied to the word embeddings."""

    def __init__(self, word_embeddings: nn.Embedding, eps: float = 1e-12):
        super().__init__()
        dim = word_embeddings.embedding_dim
        self.dense = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.word_embeddings = word_embeddings  # shared, not a copy
        self.bias = nn.Parameter(torch.zeros(word_embeddings.num_embeddings))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(self.norm(F.gelu(self.dense(hidden))), self.word_embeddings.weight, self.bias)


class Regressor(nn.Module):
    """Hidden state -> a feature vector (the masked-audio head)."""

    def __init__(self, dim: int, out: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim, eps=1e-12), nn.Linear(dim, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _gather_rows(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All ranks' rows of `x` [B, D], concatenated in rank order, with gradients (torch.distributed.nn),
    and the index of this rank's first row in them.

    Batches may differ in size across ranks (skipped bad samples), so rows are padded to the
    largest batch before the all-gather and the padding is dropped after it.
    """
    import torch.distributed as dist
    from torch.distributed.nn.functional import all_gather

    sizes = [torch.zeros((), dtype=torch.long, device=x.device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor(len(x), device=x.device))
    counts = [int(n) for n in sizes]
    padded = F.pad(x, (0, 0, 0, max(counts) - len(x)))
    parts = all_gather(padded)
    rows = torch.cat([part[:n] for part, n in zip(parts, counts)])
    return rows, sum(counts[: dist.get_rank()])


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def contrastive_loss(
    a_emb: torch.Tensor, t_emb: torch.Tensor, scale: torch.Tensor, gather: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric InfoNCE between L2-normalised audio and text embeddings [B, D]; returns (loss, accuracy).

    With `gather`, whenever a process group of more than one rank is running (DDP), every rank
    scores its own rows against the rows of all ranks, gathered with gradients, as open_clip does
    with local_loss + gather_with_grad: the negatives are the global batch, and DDP's gradient
    average equals the gradient of the single-process loss on that global batch.
    """
    if gather and _distributed():
        all_a, offset = _gather_rows(a_emb)
        all_t, _ = _gather_rows(t_emb)
    else:
        all_a, all_t, offset = a_emb, t_emb, 0
    target = torch.arange(len(a_emb), device=a_emb.device) + offset
    logits_a = scale * a_emb @ all_t.T  # [B, global B]: this rank's audio vs every caption
    logits_t = scale * t_emb @ all_a.T
    loss = (F.cross_entropy(logits_a, target) + F.cross_entropy(logits_t, target)) / 2
    return loss, (logits_a.argmax(1) == target).float().mean()


def _untouched(head: nn.Module, zero: torch.Tensor) -> torch.Tensor:
    """A zero loss that still touches every parameter of `head`, so DDP sees them all used."""
    return zero + sum(p.sum() for p in head.parameters()) * 0.0


@dataclass
class Encoded:
    audio: torch.Tensor  # [B, 1+C, Ha] audio stream output
    text: torch.Tensor  # [B, L, Ht] text stream output
    pooled_audio: torch.Tensor  # [B, P]
    pooled_text: torch.Tensor  # [B, P]
    fused: torch.Tensor  # [B, P]


class MuLaP(nn.Module):
    def __init__(self, model_config, text_config: dict | None = None):
        """`text_config`: the text branch's full BertConfig (an exported model's), built without loading weights."""
        super().__init__()
        mc = model_config
        a, t, co = mc.audio, mc.text, mc.coattention
        self.backbone = build_backbone(a.init, dict(a.get("musicnn", {}) or {}))
        self.freeze_backbone = bool(a.freeze_backbone)
        if self.freeze_backbone:  # from the start: Lightning restores each module's own mode after validation
            self.backbone.eval()
        feat = self.backbone.out_dim
        self.audio_embeddings = AudioEmbeddings(feat, a.hidden_size, a.max_chunks, a.dropout)
        audio_cfg = bert_config(a.hidden_size, a.num_layers, a.num_heads, a.intermediate_size, a.dropout)
        self.audio_layers = nn.ModuleList(BertLayer(audio_cfg) for _ in range(a.num_layers))
        self.text = TextEncoder(
            t.pretrained, t.num_layers, t.hidden_size, t.num_heads, t.intermediate_size, t.dropout, config=text_config
        )
        if t.freeze:
            for p in self.text.parameters():
                p.requires_grad_(False)
        self.t_ids, self.a_ids = _as_tuple(co.t_biattention_id), _as_tuple(co.a_biattention_id)
        self._check_schedule(len(self.audio_layers), len(self.text.layers))
        th = self.text.hidden_size
        self.coattention = nn.ModuleList(
            CoAttentionLayer(
                a.hidden_size,
                th,
                co.hidden_size,
                co.num_heads,
                a.intermediate_size,
                self.text.config.intermediate_size,
                co.dropout,
            )
            for _ in self.t_ids
        )
        self.audio_pooler = Pooler(a.hidden_size, mc.pooler.size)
        self.text_pooler = Pooler(th, mc.pooler.size)
        # fusion, negatives and target_norm are checked by the schema (mulap.infra.config_schema) before a model is built
        self.fusion = mc.pooler.fusion
        self.mlm_head = MLMHead(self.text.word_embeddings)
        self.atm_head = nn.Linear(mc.pooler.size, 2)
        obj = mc.objectives
        if obj.atm.get("similarity_prior", False) and obj.contrastive.enabled:
            # the matching head also sees the joint-space cosine of the pair: a cross-encoder that starts from the
            # bi-encoder's judgement and learns, through the co-attention, what to correct in it
            self.atm_similarity_scale = nn.Parameter(torch.tensor(float(obj.atm.get("similarity_scale", 10.0))))
        self.mam_head = Regressor(a.hidden_size, feat)
        obj = mc.objectives
        self.objectives = obj
        if obj.contrastive.enabled:  # the joint audio-text space (search, zero-shot, retrieval)
            d = obj.contrastive.dim
            # LayerNorm first: backbone features are unnormalised ReLU statistics whose scale drifts in training
            self.audio_proj = nn.Sequential(nn.LayerNorm(feat), nn.Linear(feat, 512), nn.GELU(), nn.Linear(512, d))
            self.text_proj = nn.Sequential(nn.Linear(th, 512), nn.GELU(), nn.Linear(512, d))
            self.logit_scale = nn.Parameter(torch.tensor(1.0 / obj.contrastive.temperature).log())

    def _check_schedule(self, n_audio: int, n_text: int) -> None:
        if len(self.t_ids) != len(self.a_ids):
            raise ValueError(
                f"coattention.t_biattention_id {list(self.t_ids)} and a_biattention_id {list(self.a_ids)} must have the same length"
            )
        for name, ids, n in (("t_biattention_id", self.t_ids, n_text), ("a_biattention_id", self.a_ids, n_audio)):
            if list(ids) != sorted(ids) or any(i < 0 or i > n for i in ids):
                raise ValueError(f"coattention.{name} {list(ids)} must be increasing layer positions in 0..{n}")

    def train(self, mode: bool = True) -> MuLaP:
        """A frozen backbone stays in eval mode: its BatchNorm keeps the running statistics it was trained
        with (batch statistics would change its features with every batch, and the running ones would drift)."""
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self

    # -- audio ---------------------------------------------------------------------------
    def chunk_features(self, waveforms: torch.Tensor, chunk_mask: torch.Tensor) -> torch.Tensor:
        """waveforms [B, C, S], chunk_mask [B, C] -> [B, C, F] (zeros at padding chunks).

        Only real chunks go through the backbone (padding would waste time and skew BatchNorm).
        """
        real = waveforms[chunk_mask]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_backbone):
            feats = self.backbone(real)
        out = feats.new_zeros(*chunk_mask.shape, feats.shape[-1])
        out[chunk_mask] = feats
        return out

    @staticmethod
    def global_token(features: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """Mean of the visible chunks' features: [B, C, F], [B, C] -> [B, F]."""
        w = visible.to(features.dtype).unsqueeze(-1)
        return (features * w).sum(1) / w.sum(1).clamp_min(1.0)

    # -- the two streams -----------------------------------------------------------------
    def encode(
        self,
        features: torch.Tensor,
        chunk_mask: torch.Tensor,
        text_hidden: torch.Tensor,
        attention_mask: torch.Tensor,
        hidden_chunks: torch.Tensor | None = None,
    ) -> Encoded:
        """features [B, C, F]; text_hidden [B, L, Ht] = text stream already run up to its first co-attention.

        `hidden_chunks` [B, C] bool: chunks zeroed at the input (masked audio modelling); the
        global token is then the mean of the still-visible chunks, so it cannot leak them.
        """
        audio, a_mask = self.audio_input(features, chunk_mask, hidden_chunks)
        t_mask = additive_mask(attention_mask, text_hidden.dtype)
        text = text_hidden
        a_start, t_start = 0, self.t_ids[0] if self.t_ids else len(self.text.layers)
        for layer, a_end, t_end in zip(self.coattention, self.a_ids, self.t_ids):
            audio = self._run_audio(audio, a_mask, a_start, a_end)
            text = self.text.run_layers(text, t_mask, t_start, t_end)
            audio, text = layer(audio, a_mask, text, t_mask)
            a_start, t_start = a_end, t_end
        audio = self._run_audio(audio, a_mask, a_start, len(self.audio_layers))
        text = self.text.run_layers(text, t_mask, t_start, len(self.text.layers))
        pa, pt = self.audio_pooler(audio), self.text_pooler(text)
        fused = pa * pt if self.fusion == "mul" else pa + pt
        return Encoded(audio, text, pa, pt, fused)

    def audio_input(
        self, features: torch.Tensor, chunk_mask: torch.Tensor, hidden_chunks: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The audio stream's input: [global token, chunks] embedded [B, 1 + C, Ha] and its additive attention
        mask (the global token always attends)."""
        visible = chunk_mask if hidden_chunks is None else chunk_mask & ~hidden_chunks
        if hidden_chunks is not None:
            features = features.masked_fill(hidden_chunks.unsqueeze(-1), 0.0)
        tokens = torch.cat([self.global_token(features, visible).unsqueeze(1), features], dim=1)
        audio = self.audio_embeddings(tokens)
        a_keep = torch.cat([chunk_mask.new_ones(chunk_mask.shape[0], 1), chunk_mask], dim=1)
        return audio, additive_mask(a_keep, audio.dtype)

    def _run_audio(self, hidden: torch.Tensor, mask: torch.Tensor, start: int, end: int) -> torch.Tensor:
        for layer in self.audio_layers[start:end]:
            out = layer(hidden, attention_mask=mask)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    def text_lower(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The text stream up to the first co-attention layer: [B, L] -> [B, L, Ht]."""
        h = self.text.embed(input_ids)
        first = self.t_ids[0] if self.t_ids else len(self.text.layers)
        return self.text.run_layers(h, additive_mask(attention_mask, h.dtype), 0, first)

    # -- the joint space (contrastive projections) -------------------------------------------
    @property
    def has_joint_space(self) -> bool:
        return hasattr(self, "audio_proj")

    def embed_audio_joint(self, features: torch.Tensor) -> torch.Tensor:
        """Backbone features [..., F] (a chunk's, or the mean of a clip's chunks) -> L2-normalised [..., d]."""
        return F.normalize(self.audio_proj(features), dim=-1)

    def embed_text_joint(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, lower: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Captions [B, L] -> L2-normalised [B, d]: the whole text stack on its own (no co-attention), mean-pooled
        over real tokens, then projected. Untrained, the pooled vector is the packaged sentence encoder's own
        embedding (all-MiniLM-L6-v2 is trained for mean pooling), so the text side starts from a good sentence space.
        `lower`: `text_lower` of the same captions, already computed; the stack continues from there."""
        first = 0
        if lower is None:
            h = self.text.embed(input_ids)
        else:
            h, first = lower, (self.t_ids[0] if self.t_ids else len(self.text.layers))
        h = self.text.run_layers(h, additive_mask(attention_mask, h.dtype), first, len(self.text.layers))
        w = attention_mask.to(h.dtype).unsqueeze(-1)
        return F.normalize(self.text_proj((h * w).sum(1) / w.sum(1).clamp_min(1.0)), dim=-1)

    def match_logits(
        self, features: torch.Tensor, chunk_mask: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """The audio-text matching head on pairs: features [B, C, F], chunk_mask [B, C], captions [B, L] ->
        logits [B, 2] (index 1 = the caption belongs to the audio)."""
        low = self.text_lower(input_ids, attention_mask)
        enc = self.encode(features, chunk_mask, low, attention_mask)
        prior = None
        if hasattr(self, "atm_similarity_scale"):
            prior = (
                self.embed_audio_joint(self.global_token(features, chunk_mask))
                * self.embed_text_joint(input_ids, attention_mask, lower=low)
            ).sum(-1)
        return self.atm_logits(enc.fused, prior)

    def atm_logits(self, fused: torch.Tensor, cosine: torch.Tensor | None = None) -> torch.Tensor:
        """[B, P] fused pooled vectors (+ the pairs' joint-space cosines [B] with the similarity prior) -> [B, 2]."""
        logits = self.atm_head(fused)
        if cosine is not None:
            logits = logits + torch.stack([torch.zeros_like(cosine), self.atm_similarity_scale * cosine], dim=-1)
        return logits

    # -- pre-training ----------------------------------------------------------------------
    def pretraining_losses(self, batch: dict, mask_id: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """All enabled objectives on one batch. Returns 'loss' (weighted sum) plus each term and accuracies.

        batch: waveforms [B, C, S], chunk_mask [B, C], input_ids/attention_mask/maskable [B, L].
        """
        obj = self.objectives
        chunk_mask = batch["chunk_mask"]
        features = self.chunk_features(batch["waveforms"], chunk_mask)
        ids, attn = batch["input_ids"], batch["attention_mask"]
        out: dict[str, torch.Tensor] = {}
        zero = features.sum() * 0.0  # keeps the graph and device; a term that has nothing to score is 0, never NaN

        mlm_on = obj.mlm.enabled
        if mlm_on:
            ids, mlm_labels = mask_tokens(
                ids, batch["maskable"], mask_id, self.text.word_embeddings.num_embeddings, obj.mlm.prob, generator
            )
        text_low = self.text_lower(ids, attn)

        # contrastive (the joint space): the clip's mean backbone feature, and one random real chunk of it (so a
        # single chunk lands in the same space: search can point at a moment), vs the unmasked caption
        a_emb = t_emb = None
        if obj.contrastive.enabled:
            c = obj.contrastive
            scale, gather = self.logit_scale.exp().clamp(max=100), bool(c.get("gather", True))
            a_emb = self.embed_audio_joint(self.global_token(features, chunk_mask))
            t_emb = self.embed_text_joint(batch["input_ids"], batch["attention_mask"])
            out["contrastive"], out["contrastive_acc"] = contrastive_loss(a_emb, t_emb, scale, gather=gather)
            if float(c.get("chunk_weight", 0.0)) > 0:
                pick = torch.multinomial(chunk_mask.float().cpu(), 1, generator=generator).squeeze(1).to(features.device)
                chunk_emb = self.embed_audio_joint(features[torch.arange(len(pick), device=features.device), pick])
                out["contrastive_chunk"], _ = contrastive_loss(chunk_emb, t_emb, scale, gather=gather)

        # audio-text matching: swap some captions for other clips' (random or hard negatives)
        if obj.atm.enabled:
            sim = None
            if obj.atm.negatives == "hard":
                if a_emb is not None and t_emb is not None:  # both come with the contrastive objective
                    sim = a_emb @ t_emb.T
                else:
                    w = attn.to(text_low.dtype).unsqueeze(-1)
                    t = F.normalize((text_low * w).sum(1) / w.sum(1), dim=-1)
                    sim = t @ t.T
            index, match = sample_negatives(batch["input_ids"], obj.atm.neg_prob, sim, generator=generator)
            text_low, attn = text_low[index], attn[index]
            if mlm_on:
                mlm_labels = mlm_labels[index].masked_fill(match.unsqueeze(1) == 0, IGNORE)

        hidden_chunks = choose_masked_chunks(chunk_mask, obj.mam.prob, generator) if obj.mam.enabled else None
        enc = self.encode(features, chunk_mask, text_low, attn, hidden_chunks)

        if obj.atm.enabled:
            prior = None
            if hasattr(self, "atm_similarity_scale"):
                assert a_emb is not None and t_emb is not None  # the prior is built only with the contrastive objective
                prior = (a_emb * t_emb[index]).sum(-1)
            logits = self.atm_logits(enc.fused, prior)
            out["atm"] = F.cross_entropy(logits, match)
            out["atm_acc"] = (logits.argmax(1) == match).float().mean()
        if mlm_on:
            sel = mlm_labels != IGNORE
            if sel.any():
                logits = self.mlm_head(enc.text[sel])
                out["mlm"] = F.cross_entropy(logits, mlm_labels[sel])
                out["mlm_acc"] = (logits.argmax(-1) == mlm_labels[sel]).float().mean()
            else:
                out["mlm"] = _untouched(self.mlm_head, zero)
        if obj.mam.enabled:
            assert hidden_chunks is not None  # chosen above when mam is enabled
            if hidden_chunks.any():
                target = features[hidden_chunks]
                if obj.mam.detach_target:
                    target = target.detach()
                if obj.mam.target_norm == "layernorm":  # per-chunk standardisation: scale-free target
                    target = F.layer_norm(target, target.shape[-1:])
                pred = self.mam_head(enc.audio[:, 1:][hidden_chunks])
                out["mam"] = F.mse_loss(pred, target)
            else:
                out["mam"] = _untouched(self.mam_head, zero)
        if enc.fused.shape[0] > 1:  # collapse watch: how much the fused vector differs across the batch (0 = collapsed)
            out["fused_spread"] = enc.fused.detach().float().std(0).mean()
        loss = zero
        for name in ("mlm", "atm", "mam", "contrastive"):
            if name in out:
                loss = loss + float(obj[name].weight) * out[name]
        if "contrastive_chunk" in out:
            loss = loss + float(obj.contrastive.weight) * float(obj.contrastive.chunk_weight) * out["contrastive_chunk"]
        out["loss"] = loss
        return out
