"""Musicnn's timbral block (tall conv -> BatchNorm -> ReLU -> max over frequency) as one fused op.

Same values and gradients as the plain modules, computed without ever holding the conv output
``y`` ``[N, C, F', T]`` (0.4-0.9 GB per branch for a batch of 96 chunks) and without the input
gradient of the convolution:

* **max commutes with BN + ReLU.** Per channel, BN is an affine map of slope ``gamma / sigma``
  and ReLU is monotone, so ``max_f relu(bn(y)) = relu(bn(max_f y))`` when the slope is >= 0 and
  ``relu(bn(min_f y))`` otherwise (exactly, also in floating point: rounding is monotone). The
  forward pass streams over chunks of the batch: im2col patches @ kernel (one GEMM per chunk),
  keeping only the per-channel statistics and the max/min (and their positions) over frequency.
* **the BatchNorm backward needs no stored y.** With batch statistics,
  ``dL/dy = r * d_sparse - r * A - r^2 * B * (y - mu)`` where ``d_sparse`` is non-zero only at
  the selected frequency of each (chunk, frame, channel). The weight gradient is then
  ``r * sum(d_sparse x patch) - r * A * sum(patch) - r^2 * B * sum((y - mu) x patch)``; the last
  sum equals ``W @ Gram(patches) + ...``, and the Gram matrix of all patches is a cheap function
  of the Gram matrix of the ``[N*T, width*bands]`` time-tap matrix (window sums along its
  diagonals), computed in float64. Only ``sum(d_sparse x patch)`` needs a GEMM over the patches.
* **no input gradient.** The input is the input BatchNorm's output ``x = g * xhat + b`` (zero in
  the time padding), and only ``g`` and ``b`` are trainable upstream: their gradients are
  ``<W, dW/dg-part>`` inner products of the same sums, so the transposed convolution is never run.

Used by :class:`mulap.models.musicnn.TimbralBranch` (``timbral_impl='fused'``) for the
``conv_bn_relu`` order; inference (no autograd) takes the same streaming path for both orders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

# patches per GEMM chunk (elements): bounds the transient memory to ~64 MB in fp32
CHUNK_ELEMENTS = 16_000_000


@dataclass
class TimbralSpec:
    """Settings of one fused call (non-tensor arguments of the autograd Function)."""

    height: int
    width: int
    eps: float
    batch_stats: bool  # BatchNorm in training mode (batch statistics) or eval mode (running stats)
    momentum: float  # running-stat update factor (already resolved, see bn_update_factor)
    update_running: bool
    order: str = "conv_bn_relu"
    compute_dtype: torch.dtype = torch.float32  # GEMM dtype: the input's, or the autocast dtype (bf16 on CPU)
    shared: dict[str, Any] = field(default_factory=dict)  # Gram matrix shared by the branches of one forward


def bn_update_factor(bn: torch.nn.modules.batchnorm._BatchNorm) -> tuple[float, bool, bool]:
    """(momentum factor, use batch statistics, update running stats) exactly as ``_BatchNorm.forward``
    decides them; increments ``num_batches_tracked`` like it does."""
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    batch_stats = bn.training or bn.running_mean is None
    update = bn.training and bn.running_mean is not None
    return factor, batch_stats, update


def _patches(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[n, bands, Tp]`` -> im2col patches ``[n*T*F', width*height]``, rows (n, t, f), columns (w, h)."""
    n, bands, tp = x.shape
    t, fp = tp - width + 1, bands - height + 1
    pat = x.unfold(2, width, 1).unfold(1, height, 1)  # [n, F', T, W, H]
    return pat.permute(0, 2, 1, 3, 4).reshape(n * t * fp, width * height)


def _chunks(n: int, per_item: int):
    step = max(1, CHUNK_ELEMENTS // max(1, per_item))
    for start in range(0, n, step):
        yield start, min(n, start + step)


def _kernel_matrix(weight: torch.Tensor) -> torch.Tensor:
    """Conv2d weight ``[C, 1, H, W]`` -> ``[C, W*H]`` matching the patch columns (w, h)."""
    c = weight.shape[0]
    return weight[:, 0].permute(0, 2, 1).reshape(c, -1)


def _stream_forward(x: torch.Tensor, kmat: torch.Tensor, bias: torch.Tensor, spec: TimbralSpec):
    """One pass over the batch. Returns per (n*t, c): max, argmax, min, argmin over frequency; and the
    per-channel mean and biased variance of y over all (n, t, f)."""
    n, bands, tp = x.shape
    t, fp = tp - spec.width + 1, bands - spec.height + 1
    c = kmat.shape[0]
    dt, acc = spec.compute_dtype, _acc_dtype(x)
    kt, b = kmat.to(dt).t(), bias.to(dt)
    maxv, maxi, minv, mini = [], [], [], []
    count, mean, m2 = 0, torch.zeros(c, dtype=torch.float64, device=x.device), torch.zeros(c, dtype=torch.float64, device=x.device)
    for s, e in _chunks(n, t * fp * spec.width * spec.height):
        y = torch.addmm(b, _patches(x[s:e].to(dt), spec.height, spec.width), kt).view((e - s) * t, fp, c)
        mx, ix = y.max(dim=1)
        mn, iy = y.min(dim=1)
        maxv.append(mx.to(acc)), maxi.append(ix), minv.append(mn.to(acc)), mini.append(iy)
        if spec.batch_stats:  # Chan et al.'s parallel mean/variance: exact merge of chunk statistics
            var_c, mean_c = torch.var_mean(y.to(acc), dim=(0, 1), correction=0)
            k = y.shape[0] * fp
            delta = mean_c.double() - mean
            tot = count + k
            mean = mean + delta * (k / tot)
            m2 = m2 + var_c.double() * k + delta**2 * (count * k / tot)
            count = tot
    var = m2 / max(count, 1)
    return torch.cat(maxv), torch.cat(maxi), torch.cat(minv), torch.cat(mini), mean.to(acc), var.to(acc), count


def _acc_dtype(x: torch.Tensor) -> torch.dtype:
    """Accumulation dtype: float64 for float64 inputs, else float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


class _FusedTimbral(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, o, g, b, weight, bias, bn_weight, bn_bias, running_mean, running_var, spec: TimbralSpec):
        """u: ``[N, bands, Tp]`` normalised input (zeros in the padding), o: ``[Tp]`` 1 on real frames,
        g, b: input-BN affine (``x = g*u + b*o``). Returns ``[N, C, T]``."""
        n, bands, tp = u.shape
        t = tp - spec.width + 1
        x = u * g + o * b  # the input BatchNorm's output, zero-padded in time
        kmat = _kernel_matrix(weight)
        maxv, maxi, minv, mini, mean, var, count = _stream_forward(x, kmat, bias, spec)
        if spec.batch_stats:
            if spec.update_running:
                running_mean.mul_(1 - spec.momentum).add_(mean, alpha=spec.momentum)
                running_var.mul_(1 - spec.momentum).add_(var * (count / max(count - 1, 1)), alpha=spec.momentum)
        else:
            mean, var = running_mean.to(sel_dtype := maxv.dtype), running_var.to(sel_dtype)
        rstd = torch.rsqrt(var + spec.eps)
        up = bn_weight >= 0  # BN slope sign per channel: max (slope >= 0) or min is the one kept
        sel = torch.where(up, maxv, minv)  # [N*T, C]
        idx = torch.where(up, maxi, mini)
        z = ((sel - mean) * rstd) * bn_weight + bn_bias
        out = F.relu(z).view(n, t, -1).permute(0, 2, 1).contiguous()
        ctx.spec, ctx.count = spec, count
        ctx.save_for_backward(u, o, g, b, weight, bias, bn_weight, sel, idx, mean, rstd, z)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        u, o, g, b, weight, bias, bn_weight, sel, idx, mean, rstd, z = ctx.saved_tensors
        spec, m = ctx.spec, ctx.count
        n, bands, tp = u.shape
        t, fp = tp - spec.width + 1, bands - spec.height + 1
        c = weight.shape[0]
        acc = _acc_dtype(u)
        gr = grad_out.permute(0, 2, 1).reshape(n * t, c).to(acc) * (z > 0)  # [N*T, C] through ReLU
        xh = (sel - mean) * rstd
        d_beta, d_gamma = gr.sum(0), (gr * xh).sum(0)
        dxh = gr * bn_weight  # gradient on the normalised y, non-zero only at the selected frequency
        if spec.batch_stats:
            a_c, b_c = bn_weight * d_beta / m, bn_weight * d_gamma / m
        else:
            a_c = b_c = torch.zeros_like(d_beta)

        # sparse part: sum over positions of d_sparse x patch(u), one GEMM per chunk
        dt = spec.compute_dtype
        gs_u = torch.zeros(c, spec.width * spec.height, dtype=acc, device=u.device)
        for s, e in _chunks(n, t * fp * spec.width * spec.height):
            rows = slice(s * t, e * t)
            d = torch.zeros((e - s) * t, fp, c, dtype=dt, device=u.device)
            d.scatter_(1, idx[rows].unsqueeze(1), dxh[rows].to(dt).unsqueeze(1))
            gs_u += (d.view(-1, c).t() @ _patches(u[s:e].to(dt), spec.height, spec.width)).to(acc)
        # patch(o)[(n,t,f), (w,h)] = o[t+w]: its sums only need the frequency-summed gradient
        o_taps = o.unfold(0, spec.width, 1).to(acc)  # [T, W]
        gs_o = (dxh.view(n, t, c).sum(0).t() @ o_taps).unsqueeze(2).expand(c, spec.width, spec.height).reshape(c, -1)

        r = rstd
        g_u, g_o = r[:, None] * gs_u, r[:, None] * gs_o
        if spec.batch_stats:
            sums = _gram_sums(u, o, spec)
            kmat = _kernel_matrix(weight).double()
            gd, bd = g.double(), b.double()
            s1u, s1o = sums["s1u"], sums["s1o"]
            mu = kmat @ (gd * sums["puu"] + bd * sums["puo"].t()) + bias.double()[:, None] * s1u  # sum y x patch(u)
            mo = kmat @ (gd * sums["puo"] + bd * sums["poo"]) + bias.double()[:, None] * s1o  # sum y x patch(o)
            ra, rb = (r * a_c).double()[:, None], (r * r * b_c).double()[:, None]
            md = mean.double()[:, None]
            g_u = g_u.double() - ra * s1u - rb * (mu - md * s1u)
            g_o = g_o.double() - ra * s1o - rb * (mo - md * s1o)
            d_bias = torch.zeros_like(bias)  # batch statistics remove any bias shift
        else:
            d_bias = (r * dxh.sum(0)).to(bias.dtype)
        d_w = g.double() * g_u.double() + b.double() * g_o.double()
        d_weight = d_w.view(c, spec.width, spec.height).permute(0, 2, 1).unsqueeze(1).to(weight.dtype)
        kmat32 = _kernel_matrix(weight).double()
        d_g = (kmat32 * g_u.double()).sum().reshape(g.shape).to(g.dtype)
        d_b = (kmat32 * g_o.double()).sum().reshape(b.shape).to(b.dtype)
        return (None, None, d_g, d_b, d_weight, d_bias, d_gamma.to(bn_weight.dtype), d_beta.to(bn_weight.dtype),
                None, None, None)


def _gram_sums(u: torch.Tensor, o: torch.Tensor, spec: TimbralSpec) -> dict[str, torch.Tensor]:
    """Sums over all positions (n, t, f) of patch products, float64, for patches of u and of o:
    puu ``[K, K]`` = sum pu pu^T, puo = sum pu po^T, poo, s1u ``[K]`` = sum pu, s1o; K = width*height.

    All come from the Gram matrix of V = [time taps of u | time taps of o | 1] (``[N*T, W*(bands+1)+1]``):
    a patch is a window of ``height`` bands of a time-tap row, so a sum over the F' window positions
    of a product is a window sum along a diagonal of that Gram matrix. The Gram matrix depends only
    on u and the width, so the branches of one forward share it.
    """
    key = ("gram", spec.width)
    if key not in spec.shared:
        n, bands, tp = u.shape
        w = spec.width
        t = tp - w + 1
        taps = u.unfold(2, w, 1).permute(0, 2, 3, 1)  # [N, T, W, bands]
        o_taps = o.unfold(0, w, 1).to(u.dtype)  # [T, W]
        v = torch.cat([taps, o_taps.expand(n, t, w).unsqueeze(3)], dim=3).reshape(n * t, w * (bands + 1))
        v = torch.cat([v, v.new_ones(n * t, 1)], dim=1).double()
        spec.shared[key] = v.t() @ v
    gram = spec.shared[key]
    n, bands, tp = u.shape
    w, h = spec.width, spec.height
    fp = bands - h + 1
    nb = bands + 1
    r4 = gram[: w * nb, : w * nb].view(w, nb, w, nb)
    ruu = r4[:, :bands, :, :bands].permute(0, 2, 1, 3)  # [W, W', bands, bands]
    # cumulative sums along diagonals: cp[..., a+1, b+1] = sum_{j<=min(a,b) steps} r[a-j, b-j]
    cp = torch.zeros(w, w, bands + 1, bands + 1, dtype=gram.dtype, device=gram.device)
    for a in range(bands):
        cp[:, :, a + 1, 1:] = ruu[:, :, a, :] + cp[:, :, a, :-1]
    puu = cp[:, :, fp : fp + h, fp : fp + h] - cp[:, :, :h, :h]  # [W, W', H, H']
    puu = puu.permute(0, 2, 1, 3).reshape(w * h, w * h)

    def window(vec: torch.Tensor) -> torch.Tensor:  # [..., bands] -> [..., H]: sums over bands h..h+F'-1
        cs = F.pad(vec.cumsum(-1), (1, 0))
        return cs[..., fp : fp + h] - cs[..., :h]

    ruo = r4[:, :bands, :, bands]  # [W, bands, W']
    puo_w = window(ruo.permute(0, 2, 1))  # [W, W', H]
    puo = puo_w.permute(0, 2, 1).unsqueeze(3).expand(w, h, w, h).reshape(w * h, w * h)
    poo = (fp * r4[:, bands, :, bands]).view(w, 1, w, 1).expand(w, h, w, h).reshape(w * h, w * h)
    ones_col = gram[: w * nb, w * nb].view(w, nb)
    s1u = window(ones_col[:, :bands]).reshape(w * h)
    s1o = (fp * ones_col[:, bands]).view(w, 1).expand(w, h).reshape(w * h)
    return {"puu": puu, "puo": puo, "poo": poo, "s1u": s1u, "s1o": s1o}


def timbral_fused(u: torch.Tensor, o: torch.Tensor, g: torch.Tensor, b: torch.Tensor, conv: torch.nn.Conv2d,
                  bn: torch.nn.modules.batchnorm._BatchNorm, order: str, shared: dict | None = None) -> torch.Tensor:
    """Fused ``conv -> BN -> ReLU -> max over frequency`` (or ``conv -> ReLU -> BN -> max`` without
    autograd). u ``[N, bands, Tp]`` (normalised input, zero time padding), o ``[Tp]`` (1 on real
    frames), g/b the input BatchNorm's affine parameters (``[1]``) -> ``[N, C, T]``."""
    height, width = conv.kernel_size
    factor, batch_stats, update = bn_update_factor(bn)
    dt = torch.get_autocast_dtype(u.device.type) if torch.is_autocast_enabled(u.device.type) else u.dtype
    spec = TimbralSpec(height, width, bn.eps, batch_stats, factor, update, order, dt,
                       shared if shared is not None else {})
    weight = conv.weight
    bias = conv.bias if conv.bias is not None else weight.new_zeros(weight.shape[0])
    bn_w = bn.weight if bn.weight is not None else weight.new_ones(weight.shape[0])
    bn_b = bn.bias if bn.bias is not None else weight.new_zeros(weight.shape[0])
    with torch.autocast(u.device.type, enabled=False):
        if order == "conv_bn_relu":
            return _FusedTimbral.apply(u, o, g, b, weight, bias, bn_w, bn_b, bn.running_mean, bn.running_var, spec)
        if torch.is_grad_enabled() and any(p.requires_grad for p in (weight, bias, bn_w, bn_b, g, b)):
            raise RuntimeError("the fused timbral op trains only the conv_bn_relu order; use timbral_impl='time_taps'")
        return _relu_bn_inference(u, o, g, b, weight, bias, bn_w, bn_b, bn, spec)


def _relu_bn_inference(u, o, g, b, weight, bias, bn_w, bn_b, bn, spec: TimbralSpec) -> torch.Tensor:
    """``max_f bn(relu(y))`` with running statistics: relu and the BN affine map are monotone per channel."""
    if spec.batch_stats:
        raise RuntimeError("the fused timbral op needs running statistics for the conv_relu_bn order")
    n, bands, tp = u.shape
    t = tp - spec.width + 1
    x = u * g + o * b
    maxv, _, minv, _, _, _, _ = _stream_forward(x, _kernel_matrix(weight), bias, spec)
    rstd = torch.rsqrt(bn.running_var.to(maxv.dtype) + spec.eps)
    sel = F.relu(torch.where(bn_w >= 0, maxv, minv))
    z = ((sel - bn.running_mean) * rstd) * bn_w + bn_b
    return z.view(n, t, -1).permute(0, 2, 1).contiguous()
