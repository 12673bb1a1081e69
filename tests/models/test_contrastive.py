"""The contrastive loss under DDP: 2 CPU processes (gloo) with all-gathered negatives give the
single-process loss and gradients of the global batch."""

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from mulap.models.mulap import contrastive_loss

SIZES = (3, 2)  # unequal per-rank batches (a rank that skipped a bad sample)


def _embeddings():
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(sum(SIZES), 8, generator=g), dim=-1)
    t = F.normalize(a + 0.5 * torch.randn(sum(SIZES), 8, generator=g), dim=-1)
    return a, t


def _worker(rank: int, init_file: str, out: str):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=len(SIZES))
    a, t = _embeddings()
    start = sum(SIZES[:rank])
    a = a[start : start + SIZES[rank]].clone().requires_grad_(True)
    t = t[start : start + SIZES[rank]].clone().requires_grad_(True)
    loss, acc = contrastive_loss(a, t, torch.tensor(10.0))
    loss.backward()
    local, _ = contrastive_loss(a.detach(), t.detach(), torch.tensor(10.0), gather=False)  # the switch off: own rows only
    torch.save({"loss": loss.detach(), "acc": acc, "ga": a.grad, "gt": t.grad, "local": local}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_gathered_contrastive_equals_single_process_global_batch(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=len(SIZES), join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(len(SIZES))]

    a, t = _embeddings()
    a.requires_grad_(True)
    t.requires_grad_(True)
    logits = 10.0 * a @ t.T
    target = torch.arange(len(a))
    per_row = (F.cross_entropy(logits, target, reduction="none") + F.cross_entropy(logits.T, target, reduction="none")) / 2
    # each rank averages over its own rows; weighting by rows gives the global mean
    n = sum(SIZES)
    assert torch.allclose(sum(r["loss"] * b for r, b in zip(ranks, SIZES)) / n, per_row.mean(), atol=1e-6)
    # a rank's loss is the mean over its rows, each scored against all captions / all clips
    for r, (rank, b) in enumerate(zip(ranks, SIZES)):
        assert torch.allclose(rank["loss"], per_row[sum(SIZES[:r]) : sum(SIZES[:r]) + b].mean(), atol=1e-6)
    # gradients: the all-gather's backward sums every rank's loss gradient into the owner of each row
    weighted = sum(per_row[sum(SIZES[:r]) : sum(SIZES[:r]) + b].mean() for r, b in enumerate(SIZES))
    ga, gt = torch.autograd.grad(weighted, (a, t))
    assert torch.allclose(torch.cat([r["ga"] for r in ranks]), ga, atol=1e-6)
    assert torch.allclose(torch.cat([r["gt"] for r in ranks]), gt, atol=1e-6)
    # gather=False under DDP: each rank's own block only
    for r, (rank, b) in enumerate(zip(ranks, SIZES)):
        lo = sum(SIZES[:r])
        block = 10.0 * a[lo : lo + b].detach() @ t[lo : lo + b].detach().T
        tb = torch.arange(b)
        assert torch.allclose(rank["local"], (F.cross_entropy(block, tb) + F.cross_entropy(block.T, tb)) / 2, atol=1e-6)
    expected_acc = (logits.argmax(1) == target).float()
    assert torch.allclose(ranks[0]["acc"], expected_acc[: SIZES[0]].mean())


def test_single_process_contrastive_is_symmetric_infonce():
    a, t = _embeddings()
    loss, acc = contrastive_loss(a, t, torch.tensor(10.0))
    logits = 10.0 * a @ t.T
    target = torch.arange(len(a))
    assert torch.allclose(loss, (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2)
    assert acc == (logits.argmax(1) == target).float().mean()
