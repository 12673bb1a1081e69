"""Multi-process helpers shared by pre-training and extraction."""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


class FailFast(L.Callback):
    """A rank that raises leaves the process group at once, so the other ranks' pending collectives
    fail with a closed connection instead of waiting for it forever (with gloo; NCCL's watchdog
    aborts them). Without this, Lightning's exception checkpoint would enter a barrier on the
    failing rank while the others sit in a gradient all-reduce: a hang. Non-checkpoint callbacks run
    before checkpoint callbacks, so the exception checkpoint then skips its barrier."""

    def on_exception(self, trainer: L.Trainer, module: L.LightningModule, exception: BaseException) -> None:
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            log.error("rank %d failed (%s: %s); leaving the process group so that every rank stops",
                      dist.get_rank(), type(exception).__name__, exception)
            dist.destroy_process_group()


# -- extraction over several processes ------------------------------------------------------------
class _Embedder(L.LightningModule):
    """Lightning's predict loop over one rank's contiguous share of the files (no padding, no
    duplicates: a custom split instead of Lightning's DistributedSampler). Each rank writes its part
    to `parts_dir/rank<r>.npz`; the decoding, chunking and forward are embed.py's."""

    def __init__(self, backbone, paths, batch_chunks: int, num_workers: int, precision: str, parts_dir: Path):
        super().__init__()
        self.backbone, self.paths, self.batch_chunks = backbone, list(paths), batch_chunks
        self.num_workers, self.precision, self.parts_dir = num_workers, precision, Path(parts_dir)
        self.feats, self.index, self.failures = [], [], []

    def predict_dataloader(self):
        from torch.utils.data import DataLoader

        rank, world, n = self.trainer.global_rank, self.trainer.world_size, len(self.paths)
        return DataLoader([list(range(rank * n // world, (rank + 1) * n // world))], batch_size=None)  # one item: my files

    def predict_step(self, mine, batch_idx):
        """This rank's files through the single-process path (streamed decoding, reader workers, batched chunks)."""
        from mulap.embed import extract

        mine = [int(i) for i in mine]
        feats, track, failures = extract(self.backbone, [self.paths[i] for i in mine], self.batch_chunks, self.num_workers,
                                         progress=False, device=self.device, precision=self.precision)
        self.feats.append(feats)
        self.index.append(np.asarray(mine, dtype=np.int64)[track] if len(track) else track)
        self.failures += failures

    def on_predict_epoch_end(self):
        dim = self.backbone.out_dim
        np.savez(self.parts_dir / f"rank{self.trainer.global_rank}.npz",
                 features=np.concatenate(self.feats) if self.feats else np.zeros((0, dim), np.float32),
                 track=np.concatenate(self.index) if self.index else np.zeros(0, np.int64),
                 failures=np.array(json.dumps(self.failures)))
        self.trainer.strategy.barrier("embedding parts written")


def extract_distributed(model, paths, batch_chunks: int, num_workers: int, device, precision: str, processes: dict,
                        parts_dir, progress: bool = True):
    """embed.extract over `devices` x `num_nodes` processes; returns the merged result on rank 0 (input
    order), None elsewhere. Started as a plain command, Lightning spawns the processes (ddp_spawn: only
    the extraction runs in them, the command goes on in one process); under torchrun or SLURM the
    processes exist already (ddp). parts_dir must be on a file system every node sees."""
    external = "LOCAL_RANK" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) > 1
    strategy = processes["strategy"]
    if strategy in ("auto", "ddp", "ddp_spawn"):
        strategy = "ddp" if external else "ddp_spawn"
    parts_dir = Path(parts_dir)
    parts_dir.mkdir(parents=True, exist_ok=True)
    for old in parts_dir.glob("rank*.npz"):
        old.unlink()
    trainer = L.Trainer(accelerator="gpu" if torch.device(device).type == "cuda" else "cpu", devices=processes["devices"],
                        num_nodes=processes["num_nodes"], strategy=strategy, use_distributed_sampler=False, logger=False,
                        enable_checkpointing=False, enable_progress_bar=progress, enable_model_summary=False,
                        callbacks=[FailFast()])
    trainer.predict(_Embedder(model.eval(), paths, batch_chunks, num_workers, precision, parts_dir), return_predictions=False)
    rank = trainer.global_rank if external else int(os.environ.get("NODE_RANK", "0")) * processes["devices"]
    if rank != 0:
        return None
    world = processes["devices"] * processes["num_nodes"]
    parts = [np.load(parts_dir / f"rank{r}.npz") for r in range(world)]  # ranks hold consecutive blocks: input order
    result = (np.concatenate([p["features"] for p in parts]), np.concatenate([p["track"] for p in parts]),
              [tuple(f) for p in parts for f in json.loads(str(p["failures"]))])
    shutil.rmtree(parts_dir, ignore_errors=True)
    return result
