"""Musicnn timbral implementations on one device: correctness (float64) and speed (fp32 / bf16).

For each ``timbral_impl`` (fused, time_taps, conv2d): a training step (forward + backward) and an
inference pass of the backbone on ``--batch`` 3 s chunks (96 = a pre-training batch of 16 clips x 6),
median of ``--repeats``. Useful to choose the implementation on a GPU, where cuDNN's Conv2d may win.

    python benchmarks/musicnn_device.py --device cuda
    python benchmarks/musicnn_device.py --device cpu --repeats 2
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mulap.models.musicnn import Musicnn, MusicnnConfig

IMPLS = ("fused", "time_taps", "conv2d")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_float64(device: torch.device) -> float:
    """Max difference of 'fused' vs 'conv2d' in float64, training mode, relative to each tensor's scale
    (at least 1: the conv biases' exact gradients are 0 under batch statistics)."""
    torch.manual_seed(0)
    fused = Musicnn(MusicnnConfig(timbral_channels=16)).double().to(device).train()
    plain = Musicnn(MusicnnConfig(timbral_channels=16, timbral_impl="conv2d")).double().to(device).train()
    with torch.no_grad():
        for m in fused.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.normal_()
                m.bias.normal_()
    plain.load_state_dict(fused.state_dict())
    x = 0.1 * torch.randn(4, 16000, dtype=torch.float64, device=device)
    a, b = fused(x), plain(x)
    worst = float((a - b).abs().max() / b.abs().max().clamp_min(1.0))
    w = torch.randn_like(a)
    (a * w).sum().backward()
    (b * w).sum().backward()
    for p, q in zip(fused.parameters(), plain.parameters()):
        worst = max(worst, float((p.grad - q.grad).abs().max() / q.grad.abs().max().clamp_min(1.0)))
    return worst


def timed(fn, device: torch.device, repeats: int) -> float:
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=96)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name}; torch {torch.__version__}; batch {args.batch} chunks of 3 s")
    print(f"float64 fused vs conv2d, max relative difference (values, gradients): {check_float64(device):.2e}")
    x = 0.1 * torch.randn(args.batch, 48000, device=device)
    for precision in ("fp32", "bf16"):
        for impl in IMPLS:
            torch.manual_seed(0)
            model = Musicnn(MusicnnConfig(timbral_impl=impl)).to(device).train()

            def ctx(precision=precision):
                if precision == "bf16":
                    return torch.autocast(device.type, dtype=torch.bfloat16)
                return contextlib.nullcontext()

            def train_step(model=model):
                with ctx():
                    out = model(x)
                out.float().square().mean().backward()
                model.zero_grad(set_to_none=True)

            def infer(model=model):
                with torch.inference_mode(), ctx():
                    model(x)

            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            t_train = timed(train_step, device, args.repeats)
            mem = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else float("nan")
            model.eval()
            t_inf = timed(infer, device, args.repeats)
            print(
                f"{precision:5s} {impl:10s} train step {t_train * 1e3:8.1f} ms (peak {mem:.2f} GB)   "
                f"inference {t_inf * 1e3:7.1f} ms = {args.batch * 3 / t_inf:8.0f}x real time"
            )


if __name__ == "__main__":
    main()
