"""Randomness a resumed run replays exactly: the data order of every epoch and the draws of every step
are functions of the seed and the position in training, not of a random stream's history."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Sampler


def step_seed(seed: int, *position: int) -> int:
    """A well-mixed 63-bit seed from the run's seed and a position (rank, epoch, batch, ...)."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *(int(p) for p in position)]).generate_state(2, np.uint64)[0] >> 1)


class EpochSampler(Sampler[int]):
    """Indices of one epoch: a random order drawn from (seed, epoch) - the same in every run - sharded across
    `world_size` processes as DistributedSampler does (padded to equal shards). `resume(epoch, batches_done,
    batch_size)` makes the next iteration start where an interrupted epoch stopped. `set_epoch` is called by
    Lightning before each epoch; it is passed on to the dataset (per-sample random crops)."""

    def __init__(self, data_source, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1):
        self.data_source, self.seed, self.shuffle = data_source, int(seed), shuffle
        self.rank, self.world_size = rank, world_size
        self.n = len(data_source)
        self.per_rank = math.ceil(self.n / world_size)
        self.epoch, self.skip = 0, 0
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.data_source, "set_epoch"):
            self.data_source.set_epoch(self.epoch)

    def resume(self, epoch: int, batches_done: int, batch_size: int) -> None:
        self.set_epoch(epoch)
        self.skip = int(batches_done) * int(batch_size)

    def order(self, epoch: int) -> list[int]:
        """This rank's indices of `epoch`, in order."""
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + epoch)).tolist()
        else:
            order = list(range(self.n))
        total = self.per_rank * self.world_size
        order += order[: total - self.n]  # equal shards: repeat the first few (as DistributedSampler)
        return order[self.rank : total : self.world_size]

    def __iter__(self):
        skip, self.skip = self.skip, 0
        return iter(self.order(self.epoch)[skip:])

    def __len__(self) -> int:
        return self.per_rank  # the whole epoch, also when resuming: Lightning counts the batches already done
