"""Extraction over several processes: Lightning's predict loop (DDP), each rank embedding a contiguous
share of the files with `mulap.inference.extract.extract`. The caller chooses it (`extractor(cfg)`);
inference alone never starts processes."""

from __future__ import annotations

import functools
import json
import os
import shutil
from pathlib import Path

import lightning as L
import numpy as np
import torch

from mulap.inference.cache import Extractor, single_process
from mulap.inference.extract import extract
from mulap.training.distributed import FailFast


def extraction_processes(cfg) -> dict:
    """training.devices / num_nodes / strategy for extraction: several processes (Lightning's predict loop)
    when devices is a number > 1 or num_nodes > 1; `auto` keeps the single-process path."""
    devices = cfg.training.devices
    devices = int(devices) if isinstance(devices, int) or str(devices).isdigit() else 1
    return {"devices": devices, "num_nodes": int(cfg.training.num_nodes), "strategy": str(cfg.training.strategy)}


def extractor(cfg) -> Extractor:
    """The extraction the run config asks for: this process (`training.devices` auto or 1, one node), or
    `extract_distributed` over devices x num_nodes processes."""
    processes = extraction_processes(cfg)
    if processes["devices"] * processes["num_nodes"] > 1:
        return functools.partial(extract_distributed, processes=processes)
    return single_process


class _Embedder(L.LightningModule):
    """Lightning's predict loop over one rank's contiguous share of the files (no padding, no
    duplicates: a custom split instead of Lightning's DistributedSampler). Each rank writes its part
    to `parts_dir/rank<r>.npz`; the decoding, chunking and forward are `extract`'s."""

    def __init__(self, backbone, paths, batch_chunks: int, num_workers: int, precision: str, parts_dir: Path):
        super().__init__()
        self.backbone, self.paths, self.batch_chunks = backbone, list(paths), batch_chunks
        self.num_workers, self.precision, self.parts_dir = num_workers, precision, Path(parts_dir)
        self.feats: list[np.ndarray] = []
        self.index: list[np.ndarray] = []
        self.failures: list[tuple[str, str]] = []

    def predict_dataloader(self):
        from torch.utils.data import DataLoader

        rank, world, n = self.trainer.global_rank, self.trainer.world_size, len(self.paths)
        return DataLoader([list(range(rank * n // world, (rank + 1) * n // world))], batch_size=None)  # one item: my files

    def predict_step(self, mine, batch_idx):
        """This rank's files through the single-process path (streamed decoding, reader workers, batched chunks)."""

        mine = [int(i) for i in mine]
        feats, track, failures = extract(
            self.backbone,
            [self.paths[i] for i in mine],
            self.batch_chunks,
            self.num_workers,
            progress=False,
            device=self.device,
            precision=self.precision,
        )
        self.feats.append(feats)
        self.index.append(np.asarray(mine, dtype=np.int64)[track] if len(track) else track)
        self.failures += failures

    def on_predict_epoch_end(self):
        dim = self.backbone.out_dim
        np.savez(
            self.parts_dir / f"rank{self.trainer.global_rank}.npz",
            features=np.concatenate(self.feats) if self.feats else np.zeros((0, dim), np.float32),
            track=np.concatenate(self.index) if self.index else np.zeros(0, np.int64),
            failures=np.array(json.dumps(self.failures)),
        )
        self.trainer.strategy.barrier("embedding parts written")


def extract_distributed(
    model,
    paths,
    batch_chunks: int = 64,
    num_workers: int = 2,
    desc: str = "embedding",
    progress: bool = True,
    device=None,
    precision: str = "32",
    parts_dir=None,
    *,
    processes: dict,
):
    """`extract` (same arguments and result, plus `parts_dir` and `processes`) over `devices` x `num_nodes`
    processes; returns the merged result on rank 0 (input order), None elsewhere. Started as a plain command,
    Lightning spawns the processes (ddp_spawn: only the extraction runs in them, the command goes on in one
    process); under torchrun or SLURM the processes exist already (ddp). parts_dir must be on a file system every node sees."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    external = "LOCAL_RANK" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) > 1
    strategy = processes["strategy"]
    if strategy in ("auto", "ddp", "ddp_spawn"):
        strategy = "ddp" if external else "ddp_spawn"
    parts_dir = Path(parts_dir)
    parts_dir.mkdir(parents=True, exist_ok=True)
    for old in parts_dir.glob("rank*.npz"):
        old.unlink()
    trainer = L.Trainer(
        accelerator="gpu" if torch.device(device).type == "cuda" else "cpu",
        devices=processes["devices"],
        num_nodes=processes["num_nodes"],
        strategy=strategy,
        use_distributed_sampler=False,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        callbacks=[FailFast()],
    )
    trainer.predict(_Embedder(model.eval(), paths, batch_chunks, num_workers, precision, parts_dir), return_predictions=False)
    rank = trainer.global_rank if external else int(os.environ.get("NODE_RANK", "0")) * processes["devices"]
    if rank != 0:
        return None
    world = processes["devices"] * processes["num_nodes"]
    parts = [np.load(parts_dir / f"rank{r}.npz") for r in range(world)]  # ranks hold consecutive blocks: input order
    result = (
        np.concatenate([p["features"] for p in parts]),
        np.concatenate([p["track"] for p in parts]),
        [tuple(f) for p in parts for f in json.loads(str(p["failures"]))],
    )
    shutil.rmtree(parts_dir, ignore_errors=True)
    return result
