"""Musicnn (Pons et al. 2018): the audio backbone giving one 1506-d feature per 3 s chunk.

Two variants share this code, chosen by :class:`MusicnnConfig`:
* ``variant='mulap'`` (default, SPEC §1, trained from scratch): dB mel input, temporal filters
  129/65/33 applied to the frequency-averaged spectrogram, ``conv -> BN -> ReLU`` blocks;
* ``variant='musicnn_tf'`` (the published TF checkpoints, see :mod:`mulap.models.musicnn_tf`):
  ``log10(1 + 10000·mel)`` input on Slaney mels, temporal filters 128/64/32 run on every mel band
  and max-pooled over frequency, ``conv -> ReLU -> BN`` blocks, BatchNorm eps 1e-3.

Every chunk of a batch goes through one call; no Python loop over chunks. Each branch is its own
module (``TimbralBranch``, ``TemporalBranch``, ``BackendBlock``) so a faster convolution
formulation can replace one without touching the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from mulap.audio.features import MelFrontEnd
from mulap.infra.config_schema import BlockOrder, MusicnnConfig, TemporalMode  # noqa: F401 (the network's settings)
from mulap.models.timbral_fused import bn_update_factor, timbral_fused


def make_frontend(cfg: MusicnnConfig) -> MelFrontEnd:
    """The MelFrontEnd a MusicnnConfig describes."""
    return MelFrontEnd(
        sample_rate=cfg.sample_rate,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        n_mels=cfg.n_mels,
        f_min=cfg.f_min,
        f_max=cfg.f_max,
        power=cfg.power,
        mel_scale=cfg.mel_scale,  # type: ignore[arg-type]
        mel_norm=cfg.mel_norm,  # type: ignore[arg-type]
        compression=cfg.compression,  # type: ignore[arg-type]
        top_db=cfg.top_db,
        center=cfg.center,
        pad_mode=cfg.pad_mode,
    )


def same_padding(kernel: int) -> tuple[int, int]:
    """(left, right) padding keeping the length, TF-style: even kernels pad one more on the right."""
    return (kernel - 1) // 2, kernel // 2


def _conv1d_same(conv: nn.Conv1d, x: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    """``conv(F.pad(x, pad))``; a symmetric pad goes to the conv itself (no padded copy of x)."""
    if pad[0] == pad[1]:
        return F.conv1d(x, conv.weight, conv.bias, padding=pad[0])
    return conv(F.pad(x, pad))


def _activate(x: torch.Tensor, bn: nn.Module, order: str) -> torch.Tensor:
    """ReLU and BatchNorm after a conv, in the configured order."""
    if order == "conv_relu_bn":  # musicnn's TF graph: activation inside conv2d, then BN
        return bn(F.relu(x))
    return F.relu(bn(x))


class TimbralBranch(nn.Module):
    """Vertical conv over (height mel bands x width frames), BN/ReLU, then max over frequency.

    ``[N, 1, n_mels, T] -> [N, channels, T]``. The weights are an ``nn.Conv2d``'s
    (``[channels, 1, height, width]``) whatever the ``impl``:
    * ``'fused'`` (default): :mod:`mulap.models.timbral_fused`, called by :class:`Musicnn` through
      :meth:`forward_fused`: streams GEMMs over the batch, never stores the conv output, and skips
      the convolution's input gradient. Several times faster and ~1/10 of the memory in training;
      for the ``conv_relu_bn`` order it is used for inference only (training falls back to
      ``'time_taps'``).
    * ``'time_taps'``: the ``width`` time taps become input channels of a 1-D conv
      along frequency, batched over N*T. Same result; its backward is several times faster on
      CPU than the one-input-channel Conv2d's, which dominated the original's training step.
    * ``'conv2d'``: the plain Conv2d (the reference; on an H100 'fused' was faster here too).
    """

    def __init__(
        self, height: int, width: int, channels: int, order: str, eps: float, momentum: float, impl: str = "fused"
    ) -> None:
        super().__init__()
        if impl not in ("fused", "time_taps", "conv2d"):
            raise ValueError(f"timbral_impl must be 'fused', 'time_taps' or 'conv2d', got {impl!r}")
        self.pad = same_padding(width)
        self.conv = nn.Conv2d(1, channels, (height, width))
        self.bn = nn.BatchNorm2d(channels, eps=eps, momentum=momentum)
        self.order, self.impl = order, impl

    def forward_fused(
        self, u: torch.Tensor, o: torch.Tensor, g: torch.Tensor, b: torch.Tensor, shared: dict | None = None
    ) -> torch.Tensor:
        """The same map from the input BN's parts: u ``[N, n_mels, T + width - 1]`` normalised mel
        (zero time padding), o ``[T + width - 1]`` 1 on real frames, g/b the input BN's weight/bias;
        the branch's input is ``g * u + b * o``. -> ``[N, channels, T]``."""
        return timbral_fused(u, o, g, b, self.conv, self.bn, self.order, shared)

    def fused_supported(self) -> bool:
        """Whether :meth:`forward_fused` can run now (it trains only the conv_bn_relu order)."""
        if self.impl != "fused":
            return False
        return self.order == "conv_bn_relu" or not (torch.is_grad_enabled() or self.bn.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, self.pad)  # time padded only: frequency is pooled away anyway
        if self.impl == "conv2d":
            return _activate(self.conv(x), self.bn, self.order).amax(dim=2)
        # 'time_taps' (also the autograd fallback of 'fused')
        n, _, bands, t_pad = x.shape
        width = self.conv.kernel_size[1]
        t = t_pad - width + 1
        taps = x[:, 0].unfold(2, width, 1)  # [N, bands, T, width]
        taps = taps.permute(0, 2, 3, 1).reshape(n * t, width, bands)  # [N*T, width, bands]
        kernel = self.conv.weight[:, 0].transpose(1, 2)  # [C, width, height]
        y = F.conv1d(taps, kernel, self.conv.bias)  # [N*T, C, F'] with F' = bands - height + 1
        # back to [N, C, F', T] (one copy): BatchNorm's backward is ~10x slower on [N*T, C, F', 1]
        y = y.view(n, t, y.shape[1], y.shape[2]).permute(0, 2, 3, 1).contiguous()
        return _activate(y, self.bn, self.order).amax(dim=2)


class TemporalBranch(nn.Module):
    """Horizontal 1-D conv along time, ``[N, 1, n_mels, T] -> [N, channels, T]``.

    ``mean_conv``: average the mel bands first, then one conv (SPEC §1, cheap).
    ``conv_max``: the same conv on every band (shared weights), then max over bands (musicnn TF).
    """

    def __init__(self, length: int, channels: int, mode: str, order: str, eps: float, momentum: float) -> None:
        super().__init__()
        self.pad = same_padding(length)
        self.conv = nn.Conv1d(1, channels, length)
        self.bn = nn.BatchNorm1d(channels, eps=eps, momentum=momentum)
        self.mode, self.order = mode, order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, bands, t = x.shape
        if self.mode == "mean_conv":
            return _activate(_conv1d_same(self.conv, x.mean(dim=2), self.pad), self.bn, self.order)
        y = _conv1d_same(self.conv, x.reshape(n * bands, 1, t), self.pad)  # [N*bands, C, T]
        y = _activate(y, self.bn, self.order)  # BN1d over (N*bands, T) = BN2d over (N, bands, T)
        return y.reshape(n, bands, -1, t).amax(dim=1)


class BackendBlock(nn.Module):
    """1-D conv over time with 'same' padding + ReLU/BN, ``[N, C_in, T] -> [N, C_out, T]``."""

    def __init__(self, in_channels: int, channels: int, kernel: int, order: str, eps: float, momentum: float) -> None:
        super().__init__()
        self.pad = same_padding(kernel)
        self.conv = nn.Conv1d(in_channels, channels, kernel)
        self.bn = nn.BatchNorm1d(channels, eps=eps, momentum=momentum)
        self.order = order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _activate(_conv1d_same(self.conv, x, self.pad), self.bn, self.order)


class Musicnn(nn.Module):
    """Waveform chunks ``[..., T]`` (T = 48000 for 3 s) -> features ``[..., out_dim]`` (1506).

    The mel front end is part of the module (built from the config), so the model alone maps
    audio to features on whatever device it lives on.
    """

    def __init__(self, config: MusicnnConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or MusicnnConfig()
        eps, mom, order = cfg.bn_eps, cfg.bn_momentum, cfg.block_order
        self.frontend = make_frontend(cfg)
        self.input_bn = nn.BatchNorm2d(1, eps=eps, momentum=mom)
        self.timbral = nn.ModuleList(
            TimbralBranch(h, cfg.timbral_width, cfg.timbral_channels, order, eps, mom, cfg.timbral_impl)
            for h in cfg.timbral_heights
        )
        self.temporal = nn.ModuleList(
            TemporalBranch(k, cfg.temporal_channels, cfg.temporal_mode, order, eps, mom) for k in cfg.temporal_lengths
        )
        c = cfg.backend_channels
        self.backend = nn.ModuleList(
            [
                BackendBlock(cfg.frontend_channels, c, cfg.backend_kernel, order, eps, mom),
                BackendBlock(c, c, cfg.backend_kernel, order, eps, mom),
                BackendBlock(c, c, cfg.backend_kernel, order, eps, mom),
            ]
        )

    @property
    def out_dim(self) -> int:
        return self.config.out_dim

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """``[..., T]`` waveforms (e.g. ``[B, C, 48000]``) -> ``[..., out_dim]``, all chunks at once."""
        if wave.dim() < 1:
            raise ValueError("Musicnn expects waveforms of shape [..., T]")
        lead = wave.shape[:-1]
        mel = self.frontend(wave.reshape(-1, wave.shape[-1]))  # [N, n_mels, frames]
        return self.forward_mel(mel).reshape(*lead, -1)

    def forward_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """Compressed mel spectrograms ``[N, n_mels, frames]`` -> pooled features ``[N, out_dim]``."""
        return self.pool(self.time_features(mel))

    def time_features(self, mel: torch.Tensor) -> torch.Tensor:
        """``[N, n_mels, frames]`` -> frame-level features ``[N, 561 + 3*backend_channels, frames]``."""
        if mel.dim() != 3 or mel.shape[1] != self.config.n_mels:
            raise ValueError(f"expected mel of shape [N, {self.config.n_mels}, frames], got {tuple(mel.shape)}")
        branches = cast(Sequence[TimbralBranch], self.timbral)  # the ModuleList's items, as their class
        fused = [b.fused_supported() for b in branches]
        if any(fused) and not mel.requires_grad and self.input_bn.affine:
            xhat = self._input_normalised(mel)  # [N, 1, n_mels, T]
            g, b = self.input_bn.weight, self.input_bn.bias
            x = xhat * g.view(1, -1, 1, 1) + b.view(1, -1, 1, 1)  # = self.input_bn(mel.unsqueeze(1))
            shared: dict = {}  # the Gram matrix of the input, shared by the fused branches' backward
            timbral = []
            for branch, ok in zip(branches, fused):
                if ok:
                    pad = branch.pad
                    u = F.pad(xhat[:, 0], pad)
                    o = F.pad(torch.ones(xhat.shape[-1], dtype=xhat.dtype, device=xhat.device), pad)
                    timbral.append(branch.forward_fused(u, o, g, b, shared))
                else:
                    timbral.append(branch(x))
        else:
            x = self.input_bn(mel.unsqueeze(1))  # [N, 1, n_mels, T]
            timbral = [b(x) for b in self.timbral]
        front = torch.cat(timbral + [b(x) for b in self.temporal], dim=1)  # [N, 561, T]
        res1 = self.backend[0](front)
        res2 = self.backend[1](res1) + res1
        res3 = self.backend[2](res2) + res2
        return torch.cat([front, res1, res2, res3], dim=1)

    def _input_normalised(self, mel: torch.Tensor) -> torch.Tensor:
        """The input BatchNorm without its affine part (running statistics updated as it would):
        ``[N, n_mels, T] -> [N, 1, n_mels, T]``."""
        bn = self.input_bn
        factor, batch_stats, _ = bn_update_factor(bn)
        track = not bn.training or bn.track_running_stats
        return F.batch_norm(
            mel.unsqueeze(1),
            bn.running_mean if track else None,
            bn.running_var if track else None,
            None,
            None,
            batch_stats,
            factor,
            bn.eps,
        )

    @staticmethod
    def pool(features: torch.Tensor) -> torch.Tensor:
        """Global max and mean over time: ``[N, D, T] -> [N, 2D]`` ordered [max..., mean...]."""
        return torch.cat([features.amax(dim=-1), features.mean(dim=-1)], dim=-1)


class TaggerHead(nn.Module):
    """musicnn's dense back end: BN -> dropout -> dense+ReLU -> BN -> dropout -> dense (logits)."""

    def __init__(self, in_dim: int, units: int, num_tags: int, dropout: float, eps: float, momentum: float) -> None:
        super().__init__()
        self.input_bn = nn.BatchNorm1d(in_dim, eps=eps, momentum=momentum)
        self.dense = nn.Linear(in_dim, units)
        self.dense_bn = nn.BatchNorm1d(units, eps=eps, momentum=momentum)
        self.output = nn.Linear(units, num_tags)
        self.dropout = nn.Dropout(dropout)

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, in_dim] -> [N, units]`` (musicnn's 'penultimate' feature)."""
        return self.dense_bn(F.relu(self.dense(self.dropout(self.input_bn(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, in_dim] -> [N, num_tags]`` logits."""
        return self.output(self.dropout(self.penultimate(x)))


class MusicnnTagger(nn.Module):
    """Musicnn + tagging head: waveform chunks ``[..., T]`` -> tag probabilities ``[..., num_tags]``."""

    def __init__(self, config: MusicnnConfig | None = None, tag_names: list[str] | None = None) -> None:
        super().__init__()
        self.config = cfg = config or MusicnnConfig()
        self.backbone = Musicnn(cfg)
        self.head = TaggerHead(cfg.out_dim, cfg.dense_units, cfg.num_tags, cfg.dropout, cfg.bn_eps, cfg.bn_momentum)
        names = list(tag_names) if tag_names is not None else [f"tag_{i}" for i in range(cfg.num_tags)]
        if len(names) != cfg.num_tags:
            raise ValueError(f"{len(names)} tag names given for {cfg.num_tags} tags")
        self.tag_names = names

    def logits(self, wave: torch.Tensor) -> torch.Tensor:
        """``[..., T] -> [..., num_tags]`` pre-sigmoid scores."""
        feats = self.backbone(wave)
        return self.head(feats.reshape(-1, feats.shape[-1])).reshape(*feats.shape[:-1], -1)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """``[..., T] -> [..., num_tags]`` probabilities (sigmoid)."""
        return torch.sigmoid(self.logits(wave))

    def forward_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """``[N, n_mels, frames] -> [N, num_tags]`` probabilities."""
        return torch.sigmoid(self.head(self.backbone.forward_mel(mel)))
