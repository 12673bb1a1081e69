"""Pre-training with Lightning: DataModule (audiocaption) + LightningModule (MuLaP objectives)
and `run_pretraining`, which owns the experiment folder, checkpoints, logs and resuming.

A run is checked before it writes anything (config schema, dataset splits, model construction), then
holds the experiment's lock, resumes from the newest intact checkpoint (mulap.training.checkpoints) and
continues exactly: the data order and every step's random draws are functions of the seed and the
position in training (mulap.training.resumable), and the logs keep the whole history."""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, TQDMProgressBar
from lightning.pytorch.trainer.states import TrainerFn
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, DistributedSampler

from mulap.audio.augment import Augment
from mulap.data.audiocaption import AudioCaptionDataset, Collate
from mulap.data.shards import ShardDataset, ShardLoader, shard_dataset, trained_batches
from mulap.infra.config import ConfigError, save_config, to_dict, validate_config
from mulap.infra.console import one_line
from mulap.infra.experiment import Resume, best_checkpoint, resume_checkpoint, run_dir
from mulap.infra.files import is_write_problem, write_error
from mulap.infra.interrupts import Interrupted, signal_name, signal_of, worker_exits_on_sigterm
from mulap.infra.paths import recorded_config
from mulap.models.backbone import save_backbone
from mulap.models.mulap import MuLaP
from mulap.models.text import load_tokenizer
from mulap.training.checkpoints import AtomicCheckpointIO, checkpoint_callbacks
from mulap.training.distributed import FailFast
from mulap.training.locks import LOCK_NAME, launcher_rank_zero, run_lock
from mulap.training.loggers import HistoryCSVLogger, HistoryTensorBoardLogger
from mulap.training.optim import adamw_with_warmup
from mulap.training.resumable import EpochSampler, step_seed

log = logging.getLogger(__name__)
OBJECTIVE_KEYS = (
    "loss",
    "mlm",
    "atm",
    "mam",
    "contrastive",
    "contrastive_chunk",
    "mlm_acc",
    "atm_acc",
    "contrastive_acc",
    "fused_spread",
)
# val/fused_spread below this: the cross-encoder's pooled vectors no longer differ across pairs (untrained ~0.04;
# the collapsed demo recipe 2.4e-4; see benchmarks/cross_encoder_spread.py)
COLLAPSED_SPREAD = 2e-3


class AudioCaptionDataModule(L.LightningDataModule):
    _resume_state: dict | None  # a resumed run's position in its epoch (load_state_dict), until the loader uses it

    def __init__(self, cfg: DictConfig):
        super().__init__()
        self.cfg = cfg
        self.tokenizer = load_tokenizer(cfg.model_config.text.pretrained)
        self.collate = Collate(self.tokenizer, cfg.model_config.text.max_seq_length)

    def _dataset(self, split: str, train: bool) -> AudioCaptionDataset | ShardDataset:
        d = self.cfg.dataset_config
        if d.get("format") == "shards":  # streamed; each rank plans its part of every epoch
            return shard_dataset(self.cfg, split, train, *self._ranks())
        controls = (
            {
                "max_clips": d.get("train_clips"),
                "captions": d.get("captions", "aligned"),
                "seed": int(self.cfg.env.seed),
                "caption_variants": bool(d.get("caption_variants", True)),
                "augment": Augment.from_config(d),
            }
            if train
            else {}
        )
        return AudioCaptionDataset(
            d.data_dir,
            split,
            d.sample_rate,
            d.max_len_seconds,
            d.chunk_seconds,
            d.audio_dir,
            random_crop=train and d.random_crop,
            on_bad_sample=d.on_bad_sample,
            **controls,
        )

    def setup(self, stage: str | None = None) -> None:
        # shards are planned per rank: datasets opened before the trainer existed (the early check in
        # run_pretraining) are opened again once the process knows its rank
        ranks = self._ranks()
        if getattr(self, "_opened_for", None) != ranks and self.cfg.dataset_config.get("format") == "shards":
            self.__dict__.pop("train_set", None)
        if not hasattr(self, "train_set"):
            self._opened_for = ranks
            self.train_set = self._dataset("train", True)
            self.val_set = self._dataset("val", False)
            for ds, split in ((self.train_set, "train"), (self.val_set, "val")):
                if ds.skipped_records:
                    log.warning("%s split: %d record(s) skipped (on_bad_sample=skip)", split, len(ds.skipped_records))

    def _loader(self, ds, sampler) -> DataLoader:
        t = self.cfg.training
        if isinstance(ds, ShardDataset):  # batches come from the dataset; the train loader's state resumes mid-epoch
            if sampler == "train":
                self.shard_loader = ShardLoader(
                    ds,
                    self.collate,
                    t.num_workers,
                    lambda: trained_batches(self.trainer),
                    resume=getattr(self, "shard_resume", None),
                    worker_init_fn=self._worker_init(),
                )
                return self.shard_loader
            return DataLoader(
                ds, batch_size=None, num_workers=t.num_workers, collate_fn=self.collate, worker_init_fn=self._worker_init()
            )
        return DataLoader(
            ds,
            batch_size=t.batch_size,
            sampler=sampler,
            num_workers=t.num_workers,
            collate_fn=self.collate,
            drop_last=False,
            persistent_workers=False,
            worker_init_fn=self._worker_init(),
        )

    def _worker_init(self):
        # a SIGTERM to the whole process group ends the workers quietly; the run stops through Lightning
        return functools.partial(worker_exits_on_sigterm, rank=self._ranks()[0])

    def _ranks(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        if isinstance(self.train_set, ShardDataset):  # the shard plan splits ranks and workers itself
            return self._loader(self.train_set, "train")
        # the order of each epoch is drawn from (seed, epoch) and sharded across processes here (the Trainer's
        # use_distributed_sampler is off), so a resumed run can continue an epoch where it stopped
        rank, world = self._ranks()
        self.sampler = EpochSampler(self.train_set, int(self.cfg.env.seed), shuffle=True, rank=rank, world_size=world)
        state = getattr(self, "_resume_state", None)
        if state:
            if state.get("world_size", world) != world or state.get("batch_size") != int(self.cfg.training.batch_size):
                log.warning(
                    "resuming with another batch size or process count than the checkpoint's: the interrupted "
                    "epoch continues approximately (its remaining order is kept, the split differs)"
                )
            self.sampler.resume(state["epoch"], state["batches_done"], state.get("batch_size", int(self.cfg.training.batch_size)))
            self._resume_state = None
        return self._loader(self.train_set, self.sampler)

    def val_dataloader(self) -> DataLoader:
        if isinstance(self.val_set, ShardDataset):
            return self._loader(self.val_set, "val")
        rank, world = self._ranks()
        sampler: DistributedSampler | None = DistributedSampler(self.val_set, world, rank, shuffle=False) if world > 1 else None
        return self._loader(self.val_set, sampler)

    def state_dict(self) -> dict:
        """Where the training data stands (saved in every full checkpoint): the epoch to continue and how many of
        its batches are done, as Lightning will count them on restart. A finished epoch continues as the next one."""
        if getattr(self, "shard_loader", None) is not None:  # where the shard stream stands
            return {"shards": self.shard_loader.state_dict()}
        trainer = self.trainer
        if trainer is None or trainer.state.fn != TrainerFn.FITTING:
            return {}
        epoch = trainer.current_epoch
        # batch_progress.current is a _ProcessedTracker at run time; Lightning annotates its base class
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed  # type: ignore[attr-defined]
        if done >= trainer.num_training_batches:
            epoch, done = epoch + 1, 0
        return {
            "epoch": int(epoch),
            "batches_done": int(done),
            "batch_size": int(self.cfg.training.batch_size),
            "world_size": int(trainer.world_size),
        }

    def load_state_dict(self, state: dict) -> None:
        # called before the train loader is built (Lightning restores the datamodule first)
        if state and "shards" in state:
            self.shard_resume = state["shards"]
            return
        self._resume_state = state or None


def lr_scales(model: MuLaP, model_config) -> dict | None:
    """Per-module learning-rate factors: the text branch (`text.lr_scale`) and the cross-encoder's own layers
    (`coattention.lr_scale`: audio transformer, co-attention, poolers). At the demo's lr (5e-4, 9 warm-up steps)
    those post-LN layers collapse at full rate: every clip and caption leave them as nearly the same vector (the
    fused vector's spread across a batch 2.4e-4, untrained 0.041; benchmarks/cross_encoder_spread.py), so
    matching and masked audio modelling learn nothing."""
    scales: dict[torch.nn.Module, float] = {model.text: float(model_config.text.get("lr_scale", 1.0))}
    cross = float(model_config.coattention.get("lr_scale", 1.0))
    for module in (model.audio_embeddings, model.audio_layers, model.coattention, model.audio_pooler, model.text_pooler):
        scales[module] = cross
    return {k: v for k, v in scales.items() if v != 1.0} or None


class PretrainModule(L.LightningModule):
    def __init__(self, config: dict):
        super().__init__()
        self.save_hyperparameters({"config": config})  # plain dict: checkpoints load with weights_only=True
        self.cfg = OmegaConf.create(config)
        self.model = MuLaP(self.cfg.model_config)
        tok = load_tokenizer(self.cfg.model_config.text.pretrained)
        self.mask_id = tok.mask_token_id
        self.skipped = {"train": 0, "val": 0}
        self._told_collapse = False

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
                self.log(
                    f"{stage}/{k}",
                    out[k].detach(),
                    batch_size=bs,
                    prog_bar=k == "loss",
                    sync_dist=stage == "val",
                    on_step=stage == "train",
                    on_epoch=True,
                )
        return out["loss"]

    def on_train_batch_start(self, batch, batch_idx):
        # masks, negatives and dropout of this step drawn from (seed, rank, epoch, batch): a resumed run draws
        # exactly what an uninterrupted one would, whatever happened to the random stream before
        torch.manual_seed(step_seed(self.cfg.env.seed, self.global_rank, self.current_epoch, batch_idx))

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
        spread = self.trainer.callback_metrics.get("val/fused_spread")
        if (
            spread is not None
            and not self.trainer.sanity_checking
            and float(spread) < COLLAPSED_SPREAD
            and not self._told_collapse
        ):
            self._told_collapse = True
            log.warning(
                "val/fused_spread %.1e: the cross-encoder has collapsed (every audio-caption pair leaves it as about "
                "the same vector, so matching and masked audio modelling stop learning); lower "
                "model_config.coattention.lr_scale (the demo uses 0.2 at training.lr=5e-4)",
                float(spread),
            )

    def configure_optimizers(self):
        t = self.cfg.training
        opt, sched = adamw_with_warmup(
            self.model,
            t.lr,
            t.weight_decay,
            t.betas,
            t.eps,
            self.trainer.estimated_stepping_batches,
            t.warmup_ratio,
            lr_scales(self.model, self.cfg.model_config),
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def build_trainer(cfg: DictConfig, exp_dir: Path, extra_callbacks=(), resume: Resume | None = None) -> L.Trainer:
    t = cfg.training
    callbacks = [
        *checkpoint_callbacks(exp_dir / "checkpoints", t.checkpoint_every_n_steps, resume.info.global_step if resume else 0),
        LearningRateMonitor(logging_interval="step"),
        FailFast(),  # a failing rank stops the job instead of leaving the others waiting
        *extra_callbacks,
    ]
    if t.early_stopping_patience:
        callbacks.append(EarlyStopping(monitor="val/loss", mode="min", patience=int(t.early_stopping_patience)))
    if t.progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=1))
    # TensorBoard: a resumed run starts its own event file and marks the step it resumes from (purge_step), so the
    # steps it repeats after a crash are shown once; the earlier files stay
    tb_kwargs: dict[str, Any] = {"purge_step": resume.info.global_step} if resume else {}
    loggers = [
        HistoryCSVLogger(exp_dir / "logs", name="", version="csv"),
        HistoryTensorBoardLogger(exp_dir / "logs", name="", version="tb", **tb_kwargs),
    ]
    try:
        return L.Trainer(
            accelerator=t.device,
            devices=t.devices,
            num_nodes=t.num_nodes,
            strategy=t.strategy,
            precision=t.precision,
            max_epochs=t.epochs,
            accumulate_grad_batches=t.accumulate_grad_batches,
            gradient_clip_val=t.gradient_clip_val,
            limit_train_batches=t.limit_train_batches,
            limit_val_batches=t.limit_val_batches,
            log_every_n_steps=t.log_every_n_steps,
            callbacks=callbacks,
            logger=loggers,
            enable_progress_bar=bool(t.progress_bar),
            deterministic=t.deterministic,
            default_root_dir=exp_dir,
            num_sanity_val_steps=0,
            plugins=[AtomicCheckpointIO()],
            use_distributed_sampler=False,
        )
    except MisconfigurationException as exc:  # e.g. training.device=gpu on a machine without one: a setting to change
        raise ConfigError(f"training.device/devices/strategy/precision: {exc}") from None


# expected on every resume; the DataModule's state (not the loader's) makes a mid-epoch resume exact
for _pattern in (
    r"Checkpoint directory .* exists and is not empty",
    r".*resuming from a checkpoint that ended before the epoch ended",
):
    warnings.filterwarnings("ignore", message=_pattern)


def run_pretraining(cfg: DictConfig, pretrain_id: str, extra_callbacks=()) -> Path:
    """Train (or resume) the experiment `<save_dir>/experiments/<pretrain_id>`; returns its folder.

    Nothing is written before the config, the dataset splits and the model have been checked. Writes
    run.lock (while running), config.yaml, runs.log, checkpoints/{last,last.prev,best,step,interrupted}.ckpt
    (see mulap.training.checkpoints), logs/{csv,tb}, backbone.safetensors (best) and backbone_last.safetensors.
    """
    validate_config(cfg)
    exp_dir = run_dir(cfg.env.save_dir, pretrain_id)
    data = AudioCaptionDataModule(cfg)
    data.setup("fit")  # opens and validates the splits (DatasetError naming the file and record)
    L.seed_everything(int(cfg.env.seed), workers=True, verbose=False)
    module = PretrainModule(to_dict(cfg))
    owner = launcher_rank_zero()  # DDP: rank 0 holds the lock and writes the run records
    with run_lock(exp_dir / LOCK_NAME, f"experiment {pretrain_id!r}", enabled=owner):
        resume = resume_checkpoint(exp_dir, clean=owner)
        trainer = build_trainer(cfg, exp_dir, extra_callbacks, resume)  # refuses device settings before any record
        if owner:
            _record_run(cfg, exp_dir, resume.describe() if resume else "start")
        try:
            with _ctrl_c_restored():
                trainer.fit(module, datamodule=data, ckpt_path=str(resume.path) if resume else None, weights_only=True)
        except BaseException as exc:
            # Lightning stops on Ctrl-C and SIGTERM itself (saving interrupted.ckpt); a SIGTERM it noted may also
            # surface as another error (a data-loader worker that the same signal ended)
            signum = signal_of(exc) or (signal.SIGTERM if trainer.received_sigterm else None)
            if signum is not None:
                raise _interrupted(exp_dir, trainer, signum, owner) from None
            if owner:
                _append_runs_log(
                    exp_dir, f"stopped at global step {trainer.global_step}: {type(exc).__name__}: {one_line(exc)}", quiet=True
                )
            if isinstance(exc, OSError) and is_write_problem(exc):
                raise write_error(exc, exc.filename or exp_dir) from None
            raise
        if trainer.global_step == 0:
            raise ValueError(f"{pretrain_id}: no optimizer step was taken (no training batches?), so no backbone was written")
        if trainer.is_global_zero:
            try:
                export_backbones(module, exp_dir, pretrain_id)
            except OSError as exc:
                raise write_error(exc, exc.filename or exp_dir) from None
            except BaseException as exc:  # a signal after training: the next run resumes from the last state and exports
                signum = signal_of(exc)
                if signum is not None:
                    raise _interrupted(exp_dir, trainer, signum, owner) from None
                raise
            _append_runs_log(exp_dir, f"finished at global step {trainer.global_step} ({trainer.current_epoch} epochs)")
    return exp_dir


@contextlib.contextmanager
def _ctrl_c_restored():
    """Lightning ignores Ctrl-C from its first one on (so that a second cannot cut its shutdown short) and leaves
    it so; a caller that goes on after an interrupted run (a notebook, a script) gets its own handler back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        if handler is not None:
            signal.signal(signal.SIGINT, handler)


def _interrupted(exp_dir: Path, trainer: L.Trainer, signum: int, owner: bool) -> Interrupted:
    """The run stopped on a signal: runs.log says so with the state kept, which the same command resumes from."""
    kept = resume_checkpoint(exp_dir, clean=False, quiet=True)
    what = f"kept checkpoints/{kept.path.name} (global step {kept.info.global_step})" if kept else "no checkpoint kept yet"
    where = f"at global step {trainer.global_step}"
    if owner:
        _append_runs_log(exp_dir, f"stopped {where}: interrupted ({signal_name(signum)}); {what}", quiet=True)
    return Interrupted(signum, f"{where}; {what}")


def _record_run(cfg: DictConfig, exp_dir: Path, what: str) -> None:
    """config.yaml is the config of the latest run; runs.log keeps every start/resume with its overrides."""
    save_config(recorded_config(cfg), exp_dir / "config.yaml")  # absolute paths: readable from any folder
    _append_runs_log(exp_dir, f"{what}; argv: {' '.join(sys.argv[1:])}")


def _append_runs_log(exp_dir: Path, line: str, quiet: bool = False) -> None:
    """One line per event; `quiet`: best effort (recording a failure must not hide the failure)."""
    path = exp_dir / "runs.log"
    try:
        with open(path, "a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
    except OSError as exc:
        if not quiet:
            raise write_error(exc, path) from None


def export_backbones(module: PretrainModule, exp_dir: Path, pretrain_id: str) -> None:
    """backbone_last.safetensors from the final weights; backbone.safetensors from the best checkpoint."""
    save_backbone(module.model.backbone, exp_dir / "backbone_last.safetensors", f"mulap:{pretrain_id}:last")
    best = best_checkpoint(exp_dir)
    if best is not None:
        state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        prefix = "model.backbone."
        module.model.backbone.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
        save_backbone(module.model.backbone, exp_dir / "backbone.safetensors", f"mulap:{pretrain_id}:best:{best.name}")
    else:
        save_backbone(module.model.backbone, exp_dir / "backbone.safetensors", f"mulap:{pretrain_id}:last")
