"""Musicnn's timbral block (tall conv -> BatchNorm -> ReLU -> max over frequency) as one fused op.

Same values and gradients as the plain modules, computed without ever holding the conv output
``y`` ``[N, C, F', T]`` (0.4-0.9 GB per branch for a batch of 96 chunks) and without the input
gradient of the convolution:

* **max commutes with BN + ReLU.** Per channel, BN is an affine map of slope ``gamma / sigma``
  and ReLU is monotone, so ``max_f relu(bn(y)) = relu(bn(max_f y))`` when the slope is >= 0 and
  ``relu(bn(min_f y))`` otherwise (exactly, also in floating point: rounding is monotone). The
  forward pass streams over chunks of the batch and blocks of output frequencies: time-tap rows
  ``[rows, bands*width]`` (a strided view per block) @ a Toeplitz-expanded kernel, one GEMM each,
  keeping only the max over frequency (min through a sign flip of the kernel) and its position.
* **BatchNorm statistics from a Gram matrix.** ``sum y`` and ``sum y^2`` over all positions are
  quadratic forms of the kernel with the patch sums ``sum p`` and ``sum p p^T``, which follow from
  the Gram matrix of the ``[N*T, width*bands]`` time-tap matrix (window sums along its diagonals,
  float64; a few GFLOP, shared by both branches).
* **the BatchNorm backward needs no stored y.** With batch statistics,
  ``dL/dy = r * d_sparse - r * A - r^2 * B * (y - mu)`` where ``d_sparse`` is non-zero only at
  the selected frequency of each (chunk, frame, channel). The weight gradient is then
  ``r * sum(d_sparse x patch) - r * A * sum(patch) - r^2 * B * sum((y - mu) x patch)``; the last
  sum equals ``W @ sum(p p^T) + bias sum(p)`` (the same Gram sums). Only ``sum(d_sparse x patch)``
  needs a pass over the batch: one Toeplitz GEMM per block, as in the forward.
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

# elements per batch chunk of the streamed GEMMs: bounds the transient memory (~64 MB in fp32)
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
    needs_grad: bool = True  # False: no autograd graph, so no argmax positions are kept
    compute_dtype: torch.dtype = torch.float32  # GEMM dtype: the input's, or the autocast dtype (bf16 on CPU)
    shared: dict[tuple, Any] = field(default_factory=dict)  # Gram matrix shared by the branches of one forward


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


# output frequencies per Toeplitz block: the GEMM's inner size is width*(block+height-1), so the
# redundant work is (block-1)/height and no im2col copy is made
FREQ_BLOCK = 8


def _acc_dtype(x: torch.Tensor) -> torch.dtype:
    """Accumulation dtype: float64 for float64 inputs, else float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _time_taps(x: torch.Tensor, width: int) -> torch.Tensor:
    """``[n, bands, Tp]`` -> ``[n*T, bands, width]``: row (n, t) holds frames t..t+width-1 of every band.
    Band-major, so a window of bands is a strided view of contiguous ``[rows, span*width]`` rows."""
    n, bands, tp = x.shape
    return x.unfold(2, width, 1).permute(0, 2, 1, 3).reshape(n * (tp - width + 1), bands, width)


def _chunks(n: int, per_item: int):
    step = max(1, CHUNK_ELEMENTS // max(1, per_item))
    for start in range(0, n, step):
        yield start, min(n, start + step)


def _blocks(fp: int):
    """(first output frequency, block size) covering 0..fp-1."""
    for f0 in range(0, fp, FREQ_BLOCK):
        yield f0, min(FREQ_BLOCK, fp - f0)


def _kernel_matrix(weight: torch.Tensor) -> torch.Tensor:
    """Conv2d weight ``[C, 1, H, W]`` -> ``[C, W*H]`` (columns (w, h))."""
    c = weight.shape[0]
    return weight[:, 0].permute(0, 2, 1).reshape(c, -1)


def _toeplitz(kernel: torch.Tensor, block: int) -> torch.Tensor:
    """``[C, W, H]`` kernel -> ``[block+H-1, W, block, C]``: entry (band, w, f, c) = kernel[c, w, band-f]
    (0 outside the filter), so band-window taps ``[rows, (block+H-1)*W]`` @ it = the conv at ``block``
    output frequencies, without an im2col copy."""
    c, w, h = kernel.shape
    toe = kernel.new_zeros(block + h - 1, w, block, c)
    kk = kernel.permute(2, 1, 0)  # [H, W, C]
    for f in range(block):
        toe[f : f + h, :, f, :] = kk
    return toe


def _toeplitz_block(toe: torch.Tensor, size: int) -> torch.Tensor:
    """The ``[(size+H-1)*W, size*C]`` matrix of a (possibly shorter) block."""
    span, w, block, c = toe.shape
    h = span - block + 1
    return toe[: size + h - 1, :, :size].reshape((size + h - 1) * w, size * c)


def _fold_toeplitz(grad: torch.Tensor, height: int) -> torch.Tensor:
    """Gradient w.r.t. a ``[size+H-1, W, size, C]`` Toeplitz matrix -> w.r.t. the kernel ``[C, W*H]``."""
    span, w, size, c = grad.shape
    out = grad.new_zeros(height, w, c)
    for f in range(size):
        out += grad[f : f + height, :, f, :]
    return out.permute(2, 1, 0).reshape(c, w * height)


def _stream_max(x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor, spec: TimbralSpec, with_index: bool = True):
    """max over frequency of the conv output, per (n*t, c): values (accumulation dtype) and positions
    (None without ``with_index``: a max without positions is several times cheaper).
    ``kernel`` ``[C, W, H]``; one Toeplitz GEMM per (chunk of the batch, frequency block)."""
    n, bands, tp = x.shape
    w, h = spec.width, spec.height
    t, fp = tp - w + 1, bands - h + 1
    c = kernel.shape[0]
    dt, acc = spec.compute_dtype, _acc_dtype(x)
    toe = _toeplitz(kernel.to(dt), FREQ_BLOCK)
    mats = {size: _toeplitz_block(toe, size) for size in {size for _, size in _blocks(fp)}}
    vals: list[torch.Tensor] = []
    idxs: list[torch.Tensor] = []
    for s, e in _chunks(n, t * w * bands * 4):
        taps = _time_taps(x[s:e].to(dt), w)  # [rows, bands, W]
        best: torch.Tensor | None = None
        pos: torch.Tensor | None = None
        for f0, size in _blocks(fp):
            a = taps[:, f0 : f0 + size + h - 1].flatten(1)  # a view: rows stay strided
            y = torch.mm(a, mats[size]).view(-1, size, c)  # the bias is added after the max (same result)
            if not with_index:
                mx = y.amax(dim=1)
                best = mx if best is None else torch.maximum(best, mx)
                continue
            mx, ix = y.max(dim=1)
            if best is None or pos is None:  # the first block (with_index: both are set together)
                best, pos = mx, ix
            else:
                better = mx > best
                best, pos = torch.where(better, mx, best), torch.where(better, ix + f0, pos)
        assert best is not None  # fp >= 1: at least one block
        vals.append(best.to(acc))
        if pos is not None:  # with_index
            idxs.append(pos.to(torch.int16) if fp <= 32767 else pos)
    return torch.cat(vals) + bias.to(acc), (torch.cat(idxs) if with_index else None)


def _batch_stats(
    sums: dict[str, torch.Tensor], kmat: torch.Tensor, bias: torch.Tensor, g: torch.Tensor, b: torch.Tensor, count: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and biased variance of y over all positions, from the Gram sums (float64):
    sum y = K s1q + M bias, sum y^2 = diag(K Pqq K^T) + 2 bias (K s1q) + M bias^2, for x = g u + b o."""
    k, bb = kmat.double(), bias.double()
    gd, bd = g.double(), b.double()
    s1q = gd * sums["s1u"] + bd * sums["s1o"]
    pqq = gd * gd * sums["puu"] + gd * bd * (sums["puo"] + sums["puo"].t()) + bd * bd * sums["poo"]
    ks = k @ s1q
    mean = ks / count + bb
    sq = ((k @ pqq) * k).sum(1) + 2 * bb * ks + count * bb * bb
    var = (sq / count - mean * mean).clamp_min(0.0)
    return mean, var


class _FusedTimbral(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, o, g, b, weight, bias, bn_weight, bn_bias, running_mean, running_var, spec: TimbralSpec):
        """u: ``[N, bands, Tp]`` normalised input (zeros in the padding), o: ``[Tp]`` 1 on real frames,
        g, b: input-BN affine (``x = g*u + b*o``). Returns ``[N, C, T]``."""
        n, bands, tp = u.shape
        t, fp = tp - spec.width + 1, bands - spec.height + 1
        count = n * t * fp
        x = u * g + o * b  # the input BatchNorm's output, zero-padded in time
        # BN slope sign per channel decides whether the max or the min over frequency is kept:
        # flipping the kernel's sign turns every channel's choice into a max
        sign = torch.where(bn_weight >= 0, 1.0, -1.0).to(weight.dtype)
        kernel = weight[:, 0].permute(0, 2, 1) * sign[:, None, None]  # [C, W, H]
        sel, idx = _stream_max(x, kernel, bias * sign, spec, with_index=spec.needs_grad)
        sel = sel * sign.to(sel.dtype)  # back to y's own sign
        if spec.batch_stats:
            spec.shared.setdefault(("sums", spec.height, spec.width), _gram_sums(u, o, spec))
            sums = spec.shared[("sums", spec.height, spec.width)]
            mean64, var64 = _batch_stats(sums, _kernel_matrix(weight), bias, g, b, count)
            mean, var = mean64.to(sel.dtype), var64.to(sel.dtype)
            if spec.update_running:
                running_mean.mul_(1 - spec.momentum).add_(mean.to(running_mean.dtype), alpha=spec.momentum)
                unbiased = var * (count / max(count - 1, 1))
                running_var.mul_(1 - spec.momentum).add_(unbiased.to(running_var.dtype), alpha=spec.momentum)
        else:
            mean, var = running_mean.to(sel.dtype), running_var.to(sel.dtype)
        rstd = torch.rsqrt(var + spec.eps)
        z = ((sel - mean) * rstd) * bn_weight + bn_bias
        out = F.relu(z).view(n, t, -1).permute(0, 2, 1).contiguous()
        if spec.needs_grad:
            ctx.spec, ctx.count = spec, count
            ctx.save_for_backward(u, o, g, b, weight, bias, bn_weight, sel, idx, mean, rstd, z > 0)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        u, o, g, b, weight, bias, bn_weight, sel, idx, mean, rstd, active = ctx.saved_tensors
        spec, m = ctx.spec, ctx.count
        n, bands, tp = u.shape
        w, h = spec.width, spec.height
        t, fp = tp - w + 1, bands - h + 1
        c = weight.shape[0]
        acc = _acc_dtype(u)
        gr = grad_out.permute(0, 2, 1).reshape(n * t, c).to(acc) * active  # [N*T, C] through ReLU
        xh = (sel - mean) * rstd
        d_beta, d_gamma = gr.sum(0), (gr * xh).sum(0)
        dxh = gr * bn_weight  # gradient on the normalised y, non-zero only at the selected frequency

        # sparse part: sum over positions of d_sparse x patch(u) = Toeplitz GEMMs, folded to the kernel
        dt = spec.compute_dtype
        grads: dict[int, torch.Tensor] = {}
        for s, e in _chunks(n, t * fp * c * 2):
            rows = slice(s * t, e * t)
            d = torch.zeros((e - s) * t, fp, c, dtype=dt, device=u.device)
            d.scatter_(1, idx[rows].long().unsqueeze(1), dxh[rows].to(dt).unsqueeze(1))
            taps = _time_taps(u[s:e].to(dt), w)
            for f0, size in _blocks(fp):
                a = taps[:, f0 : f0 + size + h - 1].flatten(1)
                blk = a.t() @ d[:, f0 : f0 + size].flatten(1)
                grads[size] = grads[size] + blk.to(acc) if size in grads else blk.to(acc)
        gs_u = sum(_fold_toeplitz(gt.view(size + h - 1, w, size, c), h) for size, gt in grads.items())
        # patch(o)[(n,t,f), (w,h)] = o[t+w]: its sums only need the frequency-summed gradient
        o_taps = o.unfold(0, w, 1).to(acc)  # [T, W]
        gs_o = (dxh.view(n, t, c).sum(0).t() @ o_taps).unsqueeze(2).expand(c, w, h).reshape(c, -1)

        r = rstd
        g_u, g_o = (r[:, None] * gs_u).double(), (r[:, None] * gs_o).double()
        kmat = _kernel_matrix(weight).double()
        if spec.batch_stats:  # the dense part of dL/dy, through the Gram sums
            sums = spec.shared[("sums", h, w)]
            gd, bd = g.double(), b.double()
            s1u, s1o = sums["s1u"], sums["s1o"]
            mu = kmat @ (gd * sums["puu"] + bd * sums["puo"].t()) + bias.double()[:, None] * s1u  # sum y x patch(u)
            mo = kmat @ (gd * sums["puo"] + bd * sums["poo"]) + bias.double()[:, None] * s1o  # sum y x patch(o)
            a_c, b_c = bn_weight * d_beta / m, bn_weight * d_gamma / m
            ra, rb = (r * a_c).double()[:, None], (r * r * b_c).double()[:, None]
            md = mean.double()[:, None]
            g_u = g_u - ra * s1u - rb * (mu - md * s1u)
            g_o = g_o - ra * s1o - rb * (mo - md * s1o)
            d_bias = torch.zeros_like(bias)  # batch statistics remove any bias shift
        else:
            d_bias = (r * dxh.sum(0)).to(bias.dtype)
        d_w = g.double() * g_u + b.double() * g_o
        d_weight = d_w.view(c, w, h).permute(0, 2, 1).unsqueeze(1).to(weight.dtype)
        d_g = (kmat * g_u).sum().reshape(g.shape).to(g.dtype)
        d_b = (kmat * g_o).sum().reshape(b.shape).to(b.dtype)
        return (None, None, d_g, d_b, d_weight, d_bias, d_gamma.to(bn_weight.dtype), d_beta.to(bn_weight.dtype), None, None, None)


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
        v = torch.cat([v, v.new_ones(n * t, 1)], dim=1)
        gram = v.new_zeros(v.shape[1], v.shape[1], dtype=torch.float64)
        for start in range(0, len(v), 4096):  # float64 in row blocks: small transient memory
            vb = v[start : start + 4096].double()
            gram += vb.t() @ vb
        spec.shared[key] = gram
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


def timbral_fused(
    u: torch.Tensor,
    o: torch.Tensor,
    g: torch.Tensor,
    b: torch.Tensor,
    conv: torch.nn.Conv2d,
    bn: torch.nn.modules.batchnorm._BatchNorm,
    order: str,
    shared: dict | None = None,
) -> torch.Tensor:
    """Fused ``conv -> BN -> ReLU -> max over frequency`` (or ``conv -> ReLU -> BN -> max`` without
    autograd). u ``[N, bands, Tp]`` (normalised input, zero time padding), o ``[Tp]`` (1 on real
    frames), g/b the input BatchNorm's affine parameters (``[1]``) -> ``[N, C, T]``."""
    height, width = conv.kernel_size
    factor, batch_stats, update = bn_update_factor(bn)
    dt = torch.get_autocast_dtype(u.device.type) if torch.is_autocast_enabled(u.device.type) else u.dtype
    spec = TimbralSpec(
        height,
        width,
        bn.eps,
        batch_stats,
        factor,
        update,
        order=order,
        compute_dtype=dt,
        shared=shared if shared is not None else {},
    )
    weight = conv.weight
    bias = conv.bias if conv.bias is not None else weight.new_zeros(weight.shape[0])
    bn_w = bn.weight if bn.weight is not None else weight.new_ones(weight.shape[0])
    bn_b = bn.bias if bn.bias is not None else weight.new_zeros(weight.shape[0])
    spec.needs_grad = torch.is_grad_enabled() and any(p.requires_grad for p in (weight, bias, bn_w, bn_b, g, b))
    with torch.autocast(u.device.type, enabled=False):
        if order == "conv_bn_relu":
            if not spec.needs_grad:  # inference: the same computation, no graph
                with torch.no_grad():
                    return _FusedTimbral.forward(
                        None, u, o, g, b, weight, bias, bn_w, bn_b, bn.running_mean, bn.running_var, spec
                    )
            return _FusedTimbral.apply(u, o, g, b, weight, bias, bn_w, bn_b, bn.running_mean, bn.running_var, spec)
        if spec.needs_grad:
            raise RuntimeError("the fused timbral op trains only the conv_bn_relu order; use timbral_impl='time_taps'")
        return _relu_bn_inference(u, o, g, b, weight, bias, bn_w, bn_b, bn, spec)


def _relu_bn_inference(u, o, g, b, weight, bias, bn_w, bn_b, bn, spec: TimbralSpec) -> torch.Tensor:
    """``max_f bn(relu(y))`` with running statistics: relu and the BN affine map are monotone per channel."""
    if spec.batch_stats:
        raise RuntimeError("the fused timbral op needs running statistics for the conv_relu_bn order")
    n, bands, tp = u.shape
    t = tp - spec.width + 1
    x = u * g + o * b
    sign = torch.where(bn_w >= 0, 1.0, -1.0).to(weight.dtype)
    sel, _ = _stream_max(x, weight[:, 0].permute(0, 2, 1) * sign[:, None, None], bias * sign, spec, with_index=False)
    sel = F.relu(sel * sign.to(sel.dtype))
    rstd = torch.rsqrt(bn.running_var.to(sel.dtype) + spec.eps)
    z = ((sel - bn.running_mean) * rstd) * bn_w + bn_b
    return z.view(n, t, -1).permute(0, 2, 1).contiguous()
