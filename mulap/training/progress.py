"""One progress bar per probe run: a step per epoch with the latest loss and validation metric.

Lightning's own bar counts batches, and a frozen-probe epoch is a handful of batches of
cached vectors that pass in milliseconds; what a user waits for is the epochs.
"""

from __future__ import annotations

import lightning as L
from tqdm.auto import tqdm


class EpochProgress(L.Callback):
    def __init__(self, desc: str, monitor: str):
        self.desc, self.monitor = desc, monitor
        self.bar: tqdm | None = None

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self.bar = tqdm(
                total=trainer.max_epochs, initial=trainer.current_epoch, desc=self.desc, unit="epoch", dynamic_ncols=True
            )

    def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.bar is None or trainer.sanity_checking:
            return
        shown = {}
        for key, name in (("train/loss", "loss"), (self.monitor, self.monitor.split("/")[-1])):
            value = trainer.callback_metrics.get(key)
            if value is not None:
                shown[name] = f"{float(value):.4f}"
        self.bar.set_postfix(shown, refresh=False)
        self.bar.update(1)

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_exception(self, trainer: L.Trainer, module: L.LightningModule, exception: BaseException) -> None:
        self.on_train_end(trainer, module)
