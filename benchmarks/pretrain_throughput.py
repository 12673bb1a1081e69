"""Pre-training throughput at the original MuLaP's sizes (issue 2, "Performance").

Builds MuLaP with ``model_config=mulbert_original`` (768-wide text branch, 6 layers, 12 heads,
FFN 3072, random init), feeds random batches of ``--batch`` clips of ``--seconds`` seconds
(20 s = 6 chunks of 3 s) with captions of 32-64 tokens, and times full training steps
(forward + backward + gradient clipping + AdamW step) after warm-up. Reports:

* samples/s over the timed steps;
* peak RSS of the process (``ru_maxrss``), everything included;
* MFU = model FLOPs per second / FLOP/s of a large matmul of the same dtype, measured in the
  same run. Model FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` over one
  forward + backward (the optimizer step is not counted).

The last line is exactly ``samples_per_s=… peak_rss_gb=… mfu=…``.

    python benchmarks/pretrain_throughput.py --precision bf16 --steps 5
    python benchmarks/pretrain_throughput.py --timbral-impl conv2d   # the original's front-end convs
    python benchmarks/pretrain_throughput.py --profile               # where the time goes
    python benchmarks/pretrain_throughput.py --seconds 6 --no-flops model_config=mulbert \
        model_config.audio.init=supervised_mtt model_config.audio.freeze_backbone=true   # any other recipe
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mulap.infra.config import load_config
from mulap.models.mulap import MuLaP
from mulap.training.optim import adamw_with_warmup

CLS, SEP, MASK = 101, 102, 103  # bert-base-uncased vocabulary (the text branch's tokenizer)
VOCAB = 30522


def make_batch(batch: int, seconds: float, sample_rate: int, chunk_samples: int, gen: torch.Generator) -> dict:
    """Random clips [B, C, S] (all chunks real) and random captions of 32-64 tokens, padded like the collate."""
    n_chunks = max(1, int(seconds * sample_rate) // chunk_samples)
    waves = 0.1 * torch.randn(batch, n_chunks, chunk_samples, generator=gen)
    lengths = torch.randint(32, 65, (batch,), generator=gen)
    width = int(lengths.max())
    ids = torch.zeros(batch, width, dtype=torch.long)
    attn = torch.zeros(batch, width, dtype=torch.long)
    for i, n in enumerate(lengths.tolist()):
        ids[i, :n] = torch.randint(1000, VOCAB, (n,), generator=gen)
        ids[i, 0], ids[i, n - 1] = CLS, SEP
        attn[i, :n] = 1
    maskable = (attn == 1) & (ids != CLS) & (ids != SEP)
    return {
        "waveforms": waves,
        "chunk_mask": torch.ones(batch, n_chunks, dtype=torch.bool),
        "input_ids": ids,
        "attention_mask": attn,
        "maskable": maskable,
    }


DEVICE = torch.device("cpu")


def autocast(precision: str):
    if precision == "bf16":
        return torch.autocast(DEVICE.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def train_step(model: MuLaP, opt: torch.optim.Optimizer, batch: dict, precision: str, gen: torch.Generator) -> float:
    """One optimizer step as Lightning runs it (precision plugin = autocast around forward only)."""
    with autocast(precision):
        loss = model.pretraining_losses(batch, MASK, gen)["loss"]
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    sync()
    return float(loss.detach())


def count_flops(model: MuLaP, batch: dict, precision: str, gen: torch.Generator) -> int:
    """Model FLOPs of one forward + backward (FlopCounterMode; matmuls, convs, attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        with autocast(precision):
            loss = model.pretraining_losses(batch, MASK, gen)["loss"]
        loss.backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def matmul_flops_per_s(precision: str, n: int = 2048, seconds: float = 2.0) -> float:
    """FLOP/s of an n x n x n matmul in the benchmark's compute dtype (best of repeated runs)."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    if DEVICE.type == "cuda":
        n = max(n, 8192)  # a GPU needs a larger product to reach its peak
    a, b = torch.randn(n, n, dtype=dtype, device=DEVICE), torch.randn(n, n, dtype=dtype, device=DEVICE)
    for _ in range(3):
        a @ b
    sync()
    best, t_end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # ru_maxrss is in KiB on Linux


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--precision", choices=("32", "bf16"), default="32")
    p.add_argument("--steps", type=int, default=5, help="timed steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seconds", type=float, default=20.0, help="clip length (20 s = 6 chunks)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--timbral-impl", default=None, help="Musicnn timbral_impl override (time_taps | conv2d)")
    p.add_argument(
        "--adamw",
        choices=("default", "foreach", "fused"),
        default="default",
        help="AdamW implementation: 'default' is what mulap.training.optim builds (single-tensor on CPU)",
    )
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP count (and MFU)")
    p.add_argument("--profile", action="store_true", help="print a torch.profiler table of one step")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu (the issue's setting) or cuda")
    p.add_argument(
        "overrides",
        nargs="*",
        help="config overrides after model_config=mulbert_original, e.g. "
        "model_config=mulbert model_config.audio.freeze_backbone=true",
    )
    args = p.parse_args(argv)
    global DEVICE
    DEVICE = torch.device(args.device)

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    overrides = ["model_config=mulbert_original"]
    if args.timbral_impl:
        overrides.append(f"model_config.audio.musicnn.timbral_impl={args.timbral_impl}")
    overrides += args.overrides
    cfg = load_config(None, overrides)
    model = MuLaP(cfg.model_config).to(DEVICE).train()
    opt, _ = adamw_with_warmup(model, 1e-4, 0.01, (0.9, 0.98), 1e-8, 1000, 0.1)
    if args.adamw != "default":  # the same groups and hyper-parameters, another kernel
        opt = torch.optim.AdamW(opt.param_groups, lr=1e-4, betas=(0.9, 0.98), eps=1e-8, **{args.adamw: True})
    mc = cfg.model_config.audio.musicnn
    gen = torch.Generator().manual_seed(args.seed)
    batch = {k: v.to(DEVICE) for k, v in make_batch(args.batch, args.seconds, mc.sample_rate, mc.chunk_samples, gen).items()}
    n_params = sum(p.numel() for p in model.parameters())
    load = os.getloadavg()
    extra = f" + {' '.join(args.overrides)}" if args.overrides else ""
    print(
        f"model: mulbert_original{extra}, {n_params / 1e6:.1f} M parameters; batch {args.batch} x "
        f"{batch['waveforms'].shape[1]} chunks, captions {batch['input_ids'].shape[1]} tokens padded; "
        f"precision {args.precision}; AdamW {args.adamw}; threads {torch.get_num_threads()}; load average {load[0]:.2f}"
    )

    for _ in range(args.warmup):
        train_step(model, opt, batch, args.precision, gen)
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        train_step(model, opt, batch, args.precision, gen)
        times.append(time.perf_counter() - t0)
    step_s = sum(times) / len(times)
    samples_per_s = args.batch / step_s
    print("step times (s): " + " ".join(f"{t:.2f}" for t in times) + f"; min {min(times):.2f}, mean {step_s:.2f}")
    rss = peak_rss_gb()  # before FLOP counting and the matmul, which only add (small) buffers

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
            train_step(model, opt, batch, args.precision, gen)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))

    mfu = float("nan")
    if not args.no_flops:
        flops = count_flops(model, batch, args.precision, gen)
        peak = matmul_flops_per_s(args.precision)
        achieved = flops / step_s
        mfu = achieved / peak
        print(
            f"model FLOPs per step (fwd+bwd): {flops / 1e12:.3f} T; achieved {achieved / 1e9:.1f} GFLOP/s; "
            f"{'bf16' if args.precision == 'bf16' else 'fp32'} matmul peak {peak / 1e9:.1f} GFLOP/s"
        )
    if DEVICE.type == "cuda":
        print(f"peak GPU memory allocated: {torch.cuda.max_memory_allocated(DEVICE) / 1e9:.2f} GB")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"samples_per_s={samples_per_s:.3f} peak_rss_gb={rss:.2f} mfu={mfu:.3f}")


if __name__ == "__main__":
    main()
