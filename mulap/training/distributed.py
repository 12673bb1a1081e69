"""Multi-process helpers shared by pre-training and extraction."""

from __future__ import annotations

import logging

import lightning as L
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
            log.error(
                "rank %d failed (%s: %s); leaving the process group so that every rank stops",
                dist.get_rank(),
                type(exception).__name__,
                exception,
            )
            dist.destroy_process_group()
