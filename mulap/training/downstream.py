"""Transfer: probes on a backbone for one downstream task (`mulap downstream`), and their
evaluation on the test split (`mulap eval`).

Frozen mode (the default, the paper's protocol): every 3 s chunk of every clip is embedded
once (cached on disk, see mulap.inference.extract); the probe then trains on the cache. Each epoch
draws one random chunk per training track (the cached form of "random 3 s crops"); the
validation metric scores every chunk and averages the chunk outputs per track.
Fine-tune mode trains the backbone too, on random 3 s crops of the waveforms.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm.auto import tqdm

from mulap.audio.chunks import cut_chunks, random_crop
from mulap.data.prepare import MANIFEST, PreparedDataset, load_prepared, targets
from mulap.data.tasks import get_task
from mulap.evaluation.metrics import aggregate_tracks, primary_value, scalar_metrics
from mulap.evaluation.outputs import evaluate_and_write
from mulap.inference.cache import dataset_embeddings
from mulap.inference.loading import resolve_backbone
from mulap.infra.config import CONFIG_DIR, ConfigError, load_config, load_saved_config, save_config
from mulap.infra.experiment import backbone_file, experiment_dir
from mulap.infra.files import write_json
from mulap.models.backbone import SUPERVISED, load_backbone, save_backbone
from mulap.models.musicnn import Musicnn
from mulap.models.probes import Probe
from mulap.models.weight_files import module_tensors, save_safetensors
from mulap.training.checkpoints import AtomicCheckpointIO
from mulap.training.extract_ddp import extractor
from mulap.training.locks import LOCK_NAME, run_lock
from mulap.training.progress import EpochProgress

log = logging.getLogger(__name__)
BACKBONE_INITS = ("mulap", "random", *SUPERVISED)


# -- configuration and folders ---------------------------------------------------------------
def downstream_config(task: str, config_file: str | Path | None = None, overrides=()) -> DictConfig:
    get_task(task)
    # csv:NAME tasks (mulap prepare csv) share configs/downstream/csv.yaml
    path = CONFIG_DIR / "downstream" / f"{'csv' if task.startswith('csv:') else task}.yaml"
    section = OmegaConf.load(path).downstream
    section.task = task
    return load_config(config_file, overrides, extra={"downstream": section})


def downstream_dir(cfg: DictConfig, pretrain_id: str, downstream_id: str) -> Path:
    return experiment_dir(cfg.env.save_dir, pretrain_id) / "downstream" / downstream_id


def dataset_root(cfg: DictConfig) -> Path:
    d = cfg.downstream
    return Path(d.dataset_dir) if d.dataset_dir else Path(cfg.env.data_root) / "datasets" / get_task(d.task).dataset


def load_task_data(cfg: DictConfig) -> PreparedDataset:
    root = dataset_root(cfg)
    if not (root / MANIFEST).is_file():
        spec = get_task(cfg.downstream.task)
        how = spec.prepare_usage or f"mulap prepare {spec.name} <raw {spec.raw_name} folder>"
        raise FileNotFoundError(f"{root} holds no prepared dataset: run `{how}` (or set downstream.dataset_dir)")
    return load_prepared(root)


def backbone_for(cfg: DictConfig, pretrain_id: str) -> tuple[Musicnn, str]:
    """The backbone a probe run uses: `pretrain_id` may itself name an init (random, supervised_mtt, ...)."""
    init = cfg.downstream.backbone_init
    if init not in BACKBONE_INITS:
        raise ConfigError(f"downstream.backbone_init must be one of {', '.join(BACKBONE_INITS)}, got {init!r}")
    seed = int(cfg.env.seed)
    if pretrain_id in ("random", *SUPERVISED):
        return resolve_backbone(pretrain_id, cfg.env.save_dir, seed)
    if init == "mulap":
        return resolve_backbone(pretrain_id, cfg.env.save_dir, seed)
    if init == "random":  # same architecture as the pre-trained one, fresh weights
        like = load_backbone(backbone_file(cfg.env.save_dir, pretrain_id))
        return resolve_backbone("random", cfg.env.save_dir, seed, like=like)
    return resolve_backbone(init, cfg.env.save_dir, seed)


# -- data on cached embeddings ---------------------------------------------------------------
@dataclass
class SplitFeatures:
    features: torch.Tensor  # [N_chunks, D]
    track: np.ndarray  # [N_chunks] -> 0..n_tracks-1
    targets: np.ndarray  # per track


def split_features(emb, ds: PreparedDataset, split: str) -> SplitFeatures:
    pos = {id_: i for i, id_ in enumerate(emb.ids)}
    items = ds.split(split)
    wanted = np.array([pos[it.id] for it in items], dtype=np.int64)
    remap = np.full(len(emb.ids), -1, dtype=np.int64)
    remap[wanted] = np.arange(len(wanted))
    sel = remap[emb.track] >= 0
    return SplitFeatures(torch.from_numpy(emb.features[sel]), remap[emb.track[sel]], targets(ds, split))


class RandomChunkPerTrack(Dataset):
    """Item i: a random cached chunk of training track i, with the track's target."""

    def __init__(self, split: SplitFeatures, target: torch.Tensor):
        self.split, self.target = split, target
        order = np.argsort(split.track, kind="stable")
        self.order = order
        self.starts = np.searchsorted(split.track[order], np.arange(len(target)))
        self.counts = np.bincount(split.track, minlength=len(target))
        if (self.counts == 0).any():
            raise ValueError(f"{int((self.counts == 0).sum())} training track(s) have no embedded chunk")

    def __len__(self) -> int:
        return len(self.target)

    def __getitem__(self, i: int):
        j = self.order[self.starts[i] + np.random.randint(self.counts[i])]
        return self.split.features[j], self.target[i]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole batch at once (the DataLoader's batched fetch): ``([B, D] features, [B, ...] targets)``,
        one random chunk per track, drawn in one vectorised call instead of B Python calls."""
        idx = np.asarray(indices, dtype=np.int64)
        j = self.order[self.starts[idx] + np.random.randint(0, self.counts[idx])]
        return self.split.features[torch.from_numpy(j)], self.target[torch.from_numpy(idx)]


def _batch_as_is(batch):
    """collate_fn for datasets whose ``__getitems__`` already returns a collated batch."""
    return batch


# -- the probe module -------------------------------------------------------------------------
class ProbeModule(L.LightningModule):
    """Probe (and in fine-tune mode the backbone) with the task's loss; validation = track-level task metric."""

    def __init__(
        self,
        task_type: str,
        label_names: list[str],
        probe: Probe,
        metric: str,
        cfg: DictConfig,
        val_track: np.ndarray,
        val_targets: np.ndarray,
        target_stats: tuple[np.ndarray, np.ndarray] | None = None,
        backbone: Musicnn | None = None,
    ):
        super().__init__()
        self.task_type, self.label_names, self.metric_name, self.cfg = task_type, label_names, metric, cfg
        self.probe, self.backbone = probe, backbone
        self.val_track, self.val_targets = val_track, val_targets
        self.target_stats = target_stats
        self._val_out: list[torch.Tensor] = []

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.backbone is None:
            return x
        if self.cfg.downstream.freeze_bn:
            self.backbone.apply(_bn_eval)
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.probe(self.features(x))

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.task_type == "multilabel":
            return F.binary_cross_entropy_with_logits(out, y)
        if self.task_type == "multiclass":
            return F.cross_entropy(out, y)
        return F.mse_loss(out, y)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.loss(self(x), y)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(x))
        return loss

    def validation_step(self, batch, batch_idx):
        self._val_out.append(self(batch[0]).float().cpu())

    def on_validation_epoch_end(self):
        out = torch.cat(self._val_out).numpy()
        self._val_out.clear()
        scores = outputs_to_scores(self.task_type, out, self.target_stats)
        track_scores = aggregate_tracks(scores, self.val_track, len(self.val_targets))
        value = primary_value(self.task_type, self.metric_name, self.val_targets, track_scores, self.label_names)
        self.log(f"val/{self.metric_name}", float("nan") if value is None else float(value), prog_bar=True)

    def configure_optimizers(self):
        d = self.cfg.downstream
        groups = [{"params": self.probe.parameters(), "lr": d.lr}]
        if self.backbone is not None:
            groups.append({"params": self.backbone.parameters(), "lr": d.backbone_lr})
        opt = torch.optim.Adam(groups, lr=d.lr, weight_decay=d.weight_decay)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=d.lr_factor, patience=d.lr_patience)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": f"val/{self.metric_name}", "interval": "epoch"}}


def _bn_eval(m: torch.nn.Module) -> None:
    if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
        m.eval()


def outputs_to_scores(task_type: str, out: np.ndarray, target_stats=None) -> np.ndarray:
    """Probe outputs -> chunk scores that are averaged per track: probabilities, or regression values in target units."""
    t = torch.from_numpy(out)
    if task_type == "multilabel":
        return torch.sigmoid(t).numpy()
    if task_type == "multiclass":
        return torch.softmax(t, dim=-1).numpy()
    mean, std = target_stats
    return out * std + mean


def _training_targets(task_type: str, y: np.ndarray):
    if task_type == "multiclass":
        return torch.from_numpy(y.astype(np.int64)), None
    if task_type == "multilabel":
        return torch.from_numpy(y.astype(np.float32)), None
    mean, std = y.mean(0), y.std(0) + 1e-6  # regression: standardised targets
    return torch.from_numpy(((y - mean) / std).astype(np.float32)), (mean.astype(np.float32), std.astype(np.float32))


# -- fine-tuning data ---------------------------------------------------------------------------
class RandomCropPerTrack(Dataset):
    def __init__(self, paths: list[Path], target: torch.Tensor, chunk_len: int):
        self.paths, self.target, self.chunk_len = paths, target, chunk_len

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        wave = np.load(self.paths[i], mmap_mode="r")
        crop = random_crop(np.asarray(wave), self.chunk_len, np.random.default_rng(np.random.randint(2**31)))
        return torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32)), self.target[i]


def all_chunks(paths: list[Path], chunk_len: int) -> tuple[torch.Tensor, np.ndarray]:
    chunks, track = [], []
    for i, p in enumerate(paths):
        c = cut_chunks(np.load(p), chunk_len, pad_last=False)
        chunks.append(c)
        track.append(np.full(len(c), i))
    return torch.from_numpy(np.concatenate(chunks)), np.concatenate(track)


# -- the commands --------------------------------------------------------------------------------
def run_downstream(
    pretrain_id: str, task: str, downstream_id: str | None = None, config_file=None, overrides=(), progress: bool = True
) -> str:
    """Train the probe; writes config.yaml, probe.safetensors, probe.json, logs/ and summary.json."""
    cfg = downstream_config(task, config_file, overrides)
    downstream_id = downstream_id or f"{task}-{time.strftime('%Y%m%d-%H%M%S')}"
    out = downstream_dir(cfg, pretrain_id, downstream_id)
    ds = load_task_data(cfg)  # the config (checked when loaded), the data and the backbone before anything is written
    spec = get_task(task).resolved(ds.task_type)
    if ds.task_type != spec.task_type:
        raise ValueError(f"{ds.root}: prepared for a {ds.task_type} task, but {task} is {spec.task_type}")
    backbone, backbone_desc = backbone_for(cfg, pretrain_id)
    with run_lock(out / LOCK_NAME, f"downstream run {downstream_id!r} of {pretrain_id!r}"):
        save_config(cfg, out / "config.yaml")
        return _train_probe(cfg, pretrain_id, task, downstream_id, out, spec, ds, backbone, backbone_desc, progress)


def _train_probe(
    cfg: DictConfig,
    pretrain_id: str,
    task: str,
    downstream_id: str,
    out: Path,
    spec,
    ds: PreparedDataset,
    backbone: Musicnn,
    backbone_desc: str,
    progress: bool,
) -> str:
    d = cfg.downstream
    L.seed_everything(int(d.seed), workers=True, verbose=False)
    t0 = time.time()
    y_train, target_stats = _training_targets(ds.task_type, targets(ds, "train"))
    val_targets = targets(ds, "valid")
    if d.mode == "frozen":
        emb = _embeddings(cfg, backbone, ds, progress)
        train, valid = split_features(emb, ds, "train"), split_features(emb, ds, "valid")
        probe = Probe(train.features.shape[1], _out_dim(ds), d.probe, d.hidden, d.dropout)
        probe.set_standardisation(train.features)
        train_loader = DataLoader(
            RandomChunkPerTrack(train, y_train), batch_size=d.batch_size, shuffle=True, collate_fn=_batch_as_is
        )
        val_loader = DataLoader(TensorDataset(valid.features), batch_size=4096)
        val_track, module_backbone = valid.track, None
        extraction = {"cache_key": emb.key, "computed": emb.computed}
    elif d.mode == "finetune":
        chunk_len = backbone.config.chunk_samples
        train_paths = [it.audio_path for it in ds.split("train")]
        val_x, val_track = all_chunks([it.audio_path for it in ds.split("valid")], chunk_len)
        probe = Probe(backbone.out_dim, _out_dim(ds), d.probe, d.hidden, d.dropout)
        with torch.no_grad():
            sample_x, _ = all_chunks(train_paths[:64], chunk_len)
            probe.set_standardisation(backbone.eval()(sample_x[:256]))
        train_loader = DataLoader(
            RandomCropPerTrack(train_paths, y_train, chunk_len),
            batch_size=d.batch_size,
            shuffle=True,
            num_workers=int(cfg.training.num_workers),
        )
        val_loader = DataLoader(TensorDataset(val_x), batch_size=64)
        module_backbone, extraction = backbone.train(), {}
    else:
        raise ConfigError(f"downstream.mode must be 'frozen' or 'finetune', got {d.mode!r}")
    module = ProbeModule(
        ds.task_type, ds.label_names, probe, spec.primary_metric, cfg, val_track, val_targets, target_stats, module_backbone
    )
    monitor = f"val/{spec.primary_metric}"
    ckpt = ModelCheckpoint(
        dirpath=out / "checkpoints",
        filename="best",
        monitor=monitor,
        mode="max",
        save_top_k=1,
        save_weights_only=True,
        enable_version_counter=False,
    )
    callbacks = [ckpt, EarlyStopping(monitor=monitor, mode="max", patience=int(d.patience))]
    if progress and d.mode == "frozen":  # fine-tuning keeps Lightning's per-batch bar (its batches take seconds)
        callbacks.append(EpochProgress(f"probe {task} ({backbone_desc})", monitor))
    trainer = L.Trainer(
        accelerator=cfg.training.device,
        devices=1,
        max_epochs=int(d.epochs),
        logger=CSVLogger(out, name="", version="logs"),
        plugins=[AtomicCheckpointIO()],
        callbacks=callbacks,
        enable_progress_bar=progress and d.mode == "finetune",
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        deterministic=False,
    )
    # a frozen-mode step is a tiny MLP on a batch of cached vectors: extra intra-op threads only add
    # synchronisation (10x slower epochs when other processes load the cores), so it runs on one
    with _intra_op_threads(1 if d.mode == "frozen" else None):
        trainer.fit(module, train_loader, val_loader)
    state = torch.load(ckpt.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)
    meta = {
        "task": task,
        "task_type": ds.task_type,
        "label_names": ds.label_names,
        "in_dim": int(probe.mean.shape[0]),
        "out_dim": _out_dim(ds),
        "kind": d.probe,
        "hidden": int(d.hidden),
        "mode": d.mode,
        "backbone": backbone_desc,
        "pretrain_id": pretrain_id,
        "target_mean": None if target_stats is None else target_stats[0].tolist(),
        "target_std": None if target_stats is None else target_stats[1].tolist(),
    }
    _save_probe(out, module, meta)
    summary = {
        "downstream_id": downstream_id,
        "task": task,
        "backbone": backbone_desc,
        "metric": spec.primary_metric,
        "best_val": float(ckpt.best_model_score) if ckpt.best_model_score is not None else None,
        "epochs_run": int(trainer.current_epoch),
        "seconds": round(time.time() - t0, 2),
        **extraction,
    }
    write_json(out / "summary.json", summary)
    log.info("%s on %s: best validation %s = %s", task, backbone_desc, spec.primary_metric, summary["best_val"])
    return downstream_id


@contextlib.contextmanager
def _intra_op_threads(n: int | None):
    """Run with ``n`` torch intra-op threads (None: leave as is), restoring the setting afterwards."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _out_dim(ds: PreparedDataset) -> int:
    return len(ds.label_names)


def _embeddings(cfg: DictConfig, backbone: Musicnn, ds: PreparedDataset, progress: bool):
    return dataset_embeddings(backbone, ds, cfg, progress, extractor=extractor(cfg))


def _save_probe(out: Path, module: ProbeModule, meta: dict) -> None:
    state = {f"probe.{k}": v for k, v in module_tensors(module.probe).items()}
    save_safetensors(state, out / "probe.safetensors", metadata={"meta": json.dumps(meta)})
    if module.backbone is not None:
        save_backbone(module.backbone, out / "backbone.safetensors", f"finetuned:{meta['pretrain_id']}")
    write_json(out / "probe.json", meta)


def load_probe(folder: Path) -> tuple[Probe, dict]:
    path = folder / "probe.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"no trained probe in {folder} (run `mulap downstream` first)")
    meta = json.loads((folder / "probe.json").read_text())
    probe = Probe(meta["in_dim"], meta["out_dim"], meta["kind"], meta["hidden"])
    state = {k[len("probe.") :]: v for k, v in load_file(str(path)).items()}
    probe.load_state_dict(state)
    return probe.eval(), meta


@torch.inference_mode()
def _predict(probe: Probe, features: torch.Tensor, track: np.ndarray, n_tracks: int, meta: dict) -> np.ndarray:
    out = torch.cat([probe(features[i : i + 4096]) for i in range(0, len(features), 4096)]).numpy()
    stats = None if meta["target_mean"] is None else (np.array(meta["target_mean"]), np.array(meta["target_std"]))
    return aggregate_tracks(outputs_to_scores(meta["task_type"], out, stats), track, n_tracks)


def run_eval(pretrain_id: str, downstream_id: str, overrides=(), progress: bool = True) -> dict:
    """Test-set metrics of a trained probe: metrics.json, metrics.tsv, predictions.npz and plots/*.png."""
    base = load_config(None, overrides)
    folder = downstream_dir(base, pretrain_id, downstream_id)
    if not (folder / "config.yaml").is_file():
        raise FileNotFoundError(f"no downstream run {downstream_id!r} under {folder.parent}")
    cfg = load_saved_config(folder / "config.yaml")
    probe, meta = load_probe(folder)
    ds = load_task_data(cfg)
    # stages: features (cached, or a backbone pass), predictions, metrics and plots
    bar = tqdm(total=3, desc=f"eval {ds.task}", unit="stage", disable=not progress)
    if meta["mode"] == "finetune":
        backbone = load_backbone(folder / "backbone.safetensors").eval()
        splits = {}
        for split in ("valid", "test"):
            x, track = all_chunks([it.audio_path for it in ds.split(split)], backbone.config.chunk_samples)
            with torch.inference_mode():
                feats = torch.cat([backbone(x[i : i + 64]) for i in range(0, len(x), 64)])
            splits[split] = SplitFeatures(feats, track, targets(ds, split))
    else:
        backbone, _ = backbone_for(cfg, pretrain_id)
        emb = _embeddings(cfg, backbone, ds, progress)
        splits = {s: split_features(emb, ds, s) for s in ("valid", "test")}
    bar.update(1)
    preds = {s: _predict(probe, f.features, f.track, len(f.targets), meta) for s, f in splits.items()}
    bar.update(1)
    metrics = evaluate_and_write(
        folder,
        ds,
        (splits["valid"].targets, preds["valid"]),
        (splits["test"].targets, preds["test"]),
        {"backbone": meta["backbone"]},
    )
    bar.update(1)
    bar.close()
    scalars = scalar_metrics(metrics)
    print(f"{ds.task} ({meta['backbone']}): " + ", ".join(f"{k}={v:.4f}" for k, v in scalars.items() if isinstance(v, float)))
    return metrics
