"""Pre-training with Lightning: DataModule (audiocaption) + LightningModule (MuLaP objectives)
and `run_pretraining`, which owns the experiment folder, checkpoints, logs and resuming."""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, OnExceptionCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from mulap.config import save_config, to_dict
from mulap.data.audiocaption import AudioCaptionDataset, Collate
from mulap.data.shards import ShardDataset, ShardLoader, shard_dataset, trained_batches
from mulap.models.backbone import save_backbone
from mulap.models.mulap import MuLaP
from mulap.models.text import load_tokenizer
from mulap.training.distributed import FailFast
from mulap.training.optim import adamw_with_warmup

log = logging.getLogger(__name__)
OBJECTIVE_KEYS = ("loss", "mlm", "atm", "mam", "contrastive", "contrastive_chunk", "mlm_acc", "atm_acc", "contrastive_acc")


class AudioCaptionDataModule(L.LightningDataModule):
    def __init__(self, cfg: DictConfig):
        super().__init__()
        self.cfg = cfg
        self.tokenizer = load_tokenizer(cfg.model_config.text.pretrained)
        self.collate = Collate(self.tokenizer, cfg.model_config.text.max_seq_length)

    def _dataset(self, split: str, train: bool) -> AudioCaptionDataset | ShardDataset:
        d = self.cfg.dataset_config
        if d.get("format", "folder") not in ("folder", "shards"):
            raise ValueError(f"dataset_config.format must be folder or shards, got {d.format!r}")
        if d.get("format") == "shards":  # streamed; each rank plans its part of every epoch
            rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
            return shard_dataset(self.cfg, split, train, rank, world)
        controls = {"max_clips": d.get("train_clips"), "captions": d.get("captions", "aligned"), "seed": int(self.cfg.env.seed)} if train else {}
        return AudioCaptionDataset(d.data_dir, split, d.sample_rate, d.max_len_seconds, d.chunk_seconds, d.audio_dir,
                                   random_crop=train and d.random_crop, on_bad_sample=d.on_bad_sample, **controls)

    def setup(self, stage: str | None = None) -> None:
        if not hasattr(self, "train_set"):
            self.train_set = self._dataset("train", True)
            self.val_set = self._dataset("val", False)
            for ds, split in ((self.train_set, "train"), (self.val_set, "val")):
                if ds.skipped_records:
                    log.warning("%s split: %d record(s) skipped (on_bad_sample=skip)", split, len(ds.skipped_records))

    def _loader(self, ds, shuffle: bool) -> DataLoader:
        t = self.cfg.training
        if isinstance(ds, ShardDataset):  # batches come from the dataset; the train loader's state resumes mid-epoch
            if shuffle:
                self.shard_loader = ShardLoader(ds, self.collate, t.num_workers, lambda: trained_batches(self.trainer),
                                                resume=getattr(self, "shard_resume", None))
                return self.shard_loader
            return DataLoader(ds, batch_size=None, num_workers=t.num_workers, collate_fn=self.collate)
        return DataLoader(ds, batch_size=t.batch_size, shuffle=shuffle, num_workers=t.num_workers, collate_fn=self.collate,
                          drop_last=False, persistent_workers=False)

    def state_dict(self) -> dict:
        """Saved in checkpoints: where the shard stream stands (restored before any loader is made)."""
        return {"shards": self.shard_loader.state_dict()} if getattr(self, "shard_loader", None) else {}

    def load_state_dict(self, state: dict) -> None:
        self.shard_resume = state.get("shards")

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False)


class PretrainModule(L.LightningModule):
    def __init__(self, config: dict):
        super().__init__()
        self.save_hyperparameters({"config": config})  # plain dict: checkpoints load with weights_only=True
        self.cfg = OmegaConf.create(config)
        self.model = MuLaP(self.cfg.model_config)
        tok = load_tokenizer(self.cfg.model_config.text.pretrained)
        self.mask_id = tok.mask_token_id
        self.skipped = {"train": 0, "val": 0}

    def forward(self, batch, generator=None):
        return self.model.pretraining_losses(batch, self.mask_id, generator)

    def _step(self, batch, stage: str, generator=None):
        self.skipped[stage] += int(batch.get("n_skipped", 0))
        if batch.get("empty"):
            return None
        out = self(batch, generator)
        bs = batch["waveforms"].shape[0]
        for k in OBJECTIVE_KEYS:
            if k in out:
                self.log(f"{stage}/{k}", out[k].detach(), batch_size=bs, prog_bar=k == "loss", sync_dist=stage == "val",
                         on_step=stage == "train", on_epoch=True)
        return out["loss"]

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        # fixed masks and negatives per batch: validation losses are comparable across epochs
        return self._step(batch, "val", torch.Generator().manual_seed(1000 + batch_idx))

    def _log_skipped(self, stage: str) -> None:
        n = self.skipped[stage]
        self.log(f"{stage}/skipped", float(n), sync_dist=True, reduce_fx="sum")
        if n:
            log.warning("%s: %d sample(s) skipped this epoch (on_bad_sample=skip)", stage, n)
        self.skipped[stage] = 0

    def on_train_epoch_end(self):
        self._log_skipped("train")

    def on_validation_epoch_end(self):
        self._log_skipped("val")

    def configure_optimizers(self):
        t = self.cfg.training
        text_scale = float(self.cfg.model_config.text.get("lr_scale", 1.0))
        opt, sched = adamw_with_warmup(self.model, t.lr, t.weight_decay, t.betas, t.eps,
                                       self.trainer.estimated_stepping_batches, t.warmup_ratio,
                                       {self.model.text: text_scale} if text_scale != 1.0 else None)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def build_trainer(cfg: DictConfig, exp_dir: Path, extra_callbacks=()) -> L.Trainer:
    t = cfg.training
    ckpt_dir = exp_dir / "checkpoints"
    callbacks = [
        ModelCheckpoint(dirpath=ckpt_dir, filename="epoch{epoch:03d}", monitor="val/loss", mode="min", save_top_k=1,
                        save_last=True, auto_insert_metric_name=False),
        # an interrupted run resumes where it stopped: on an exception (Ctrl-C included) and every N steps
        OnExceptionCheckpoint(dirpath=ckpt_dir, filename="interrupted"),
        LearningRateMonitor(logging_interval="step"),
        FailFast(),  # a failing rank stops the job instead of leaving the others waiting
        *extra_callbacks,
    ]
    if t.checkpoint_every_n_steps:
        callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, filename="step", every_n_train_steps=int(t.checkpoint_every_n_steps),
                                         save_top_k=1, monitor=None, enable_version_counter=False))
    if t.early_stopping_patience:
        callbacks.append(EarlyStopping(monitor="val/loss", mode="min", patience=int(t.early_stopping_patience)))
    if t.progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=1))
    loggers = [CSVLogger(exp_dir / "logs", name="", version="csv"), TensorBoardLogger(exp_dir / "logs", name="", version="tb")]
    return L.Trainer(
        accelerator=t.device, devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy, precision=t.precision,
        max_epochs=t.epochs, accumulate_grad_batches=t.accumulate_grad_batches, gradient_clip_val=t.gradient_clip_val,
        limit_train_batches=t.limit_train_batches, limit_val_batches=t.limit_val_batches, log_every_n_steps=t.log_every_n_steps,
        callbacks=callbacks, logger=loggers, enable_progress_bar=bool(t.progress_bar), deterministic=t.deterministic,
        default_root_dir=exp_dir, num_sanity_val_steps=0,
    )


def experiment_dir(cfg: DictConfig, pretrain_id: str) -> Path:
    return Path(cfg.env.save_dir) / "experiments" / pretrain_id


def resume_checkpoint(exp_dir: Path) -> Path | None:
    """The newest of last.ckpt (epoch end), step.ckpt (periodic) and interrupted.ckpt (exception)."""
    found = [p for p in (exp_dir / "checkpoints").glob("*.ckpt") if p.stem in ("last", "step", "interrupted")]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def run_pretraining(cfg: DictConfig, pretrain_id: str, extra_callbacks=()) -> Path:
    """Train (or resume) the experiment `<save_dir>/experiments/<pretrain_id>`; returns its folder.

    Writes config.yaml, checkpoints/{last.ckpt, epochNNN.ckpt (best val loss)}, logs/{csv,tb},
    backbone.safetensors (best) and backbone_last.safetensors.
    """
    exp_dir = experiment_dir(cfg, pretrain_id)
    last = resume_checkpoint(exp_dir)
    resume = last is not None
    L.seed_everything(int(cfg.env.seed), workers=True)
    _record_run(cfg, exp_dir, f"resume from {last}" if resume else "start")
    module = PretrainModule(to_dict(cfg))
    data = AudioCaptionDataModule(cfg)
    trainer = build_trainer(cfg, exp_dir, extra_callbacks)
    trainer.fit(module, datamodule=data, ckpt_path=str(last) if resume else None, weights_only=True)
    if trainer.is_global_zero:
        export_backbones(module, trainer, exp_dir, pretrain_id)
    return exp_dir


@rank_zero_only
def _record_run(cfg: DictConfig, exp_dir: Path, what: str) -> None:
    """config.yaml is the config of the latest run; runs.log keeps every start/resume with its overrides."""
    exp_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, exp_dir / "config.yaml")
    with open(exp_dir / "runs.log", "a") as fh:
        fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {what}; argv: {' '.join(sys.argv[1:])}\n")


def export_backbones(module: PretrainModule, trainer: L.Trainer, exp_dir: Path, pretrain_id: str) -> None:
    """backbone_last.safetensors from the final weights; backbone.safetensors from the best checkpoint."""
    save_backbone(module.model.backbone, exp_dir / "backbone_last.safetensors", f"mulap:{pretrain_id}:last")
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if best and Path(best).is_file():
        state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        prefix = "model.backbone."
        module.model.backbone.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
        save_backbone(module.model.backbone, exp_dir / "backbone.safetensors", f"mulap:{pretrain_id}:best:{Path(best).name}")
    else:
        save_backbone(module.model.backbone, exp_dir / "backbone.safetensors", f"mulap:{pretrain_id}:last")
