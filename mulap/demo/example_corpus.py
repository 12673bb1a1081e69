"""The seed's "illustrative example dataset": what a bare `mulap pretrain` trains on.

The seed shipped a few captioned clips in `data/datasets/audiocaption/` so that
`cd mulap/scripts && python pretrain.py` ran with the default configs. mulap builds that
corpus on first use instead of shipping audio: the small demo world's captioned corpus
(24 clips of 10 s rendered from music21 scores, seed 0, in the seed's audiocaption format;
mulap.demo.world), written to the default `dataset_config.data_dir` with a notice. It is
only built there, and only when that folder is absent or empty: a folder given by the
user that holds no corpus is an error naming it, raised before training starts.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from omegaconf import DictConfig

from mulap.data.audiocaption import SPLIT_FILES, DatasetError
from mulap.infra.config import CONFIG_DIR, _load_yaml
from mulap.infra.extras import require_all
from mulap.infra.paths import resolve_default

log = logging.getLogger(__name__)
EXAMPLE_SIZE, EXAMPLE_SEED = "small", 0


def default_data_dir() -> Path:
    """The packaged default `dataset_config.data_dir`, resolved as load_config resolves it."""
    preset = _load_yaml(CONFIG_DIR / "datasets" / "audiocaption.yaml")
    return Path(resolve_default(str(preset.data_dir)))


def has_corpus(data_dir: Path) -> bool:
    return all((data_dir / SPLIT_FILES[s]).is_file() for s in ("train", "val"))


def ensure_pretraining_corpus(cfg: DictConfig, progress: bool = True) -> Path:
    """The corpus folder of `cfg`, built first when it is the default one and missing; raises DatasetError
    (naming the folder) when a corpus folder has no train/val split file."""
    data_dir = Path(str(cfg.dataset_config.data_dir))
    if has_corpus(data_dir) or cfg.dataset_config.get("format", "folder") == "shards":  # shards: checked when opened
        return data_dir
    empty = not data_dir.exists() or (data_dir.is_dir() and not any(data_dir.iterdir()))
    if empty and data_dir.resolve() == default_data_dir().resolve():
        if _rank() == 0:
            build_example_corpus(data_dir, progress=progress)
        else:  # processes started together (torchrun, SLURM): rank 0 builds, the others wait for it
            _wait_for(data_dir)
        return data_dir
    missing = [SPLIT_FILES[s] for s in ("train", "val") if not (data_dir / SPLIT_FILES[s]).is_file()]
    raise DatasetError(
        f"{data_dir}: no pre-training corpus ({', '.join(missing)} missing); expected the seed's "
        f"audiocaption layout (audio/ + dataset_train.json, dataset_val.json, dataset_test.json), "
        f"set with dataset_config.data_dir=<folder>"
    )


def _rank() -> int:
    return int(os.environ.get("RANK") or os.environ.get("LOCAL_RANK") or 0)


def _wait_for(data_dir: Path, timeout_s: float = 900.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not has_corpus(data_dir):
        if time.monotonic() > deadline:
            raise DatasetError(f"{data_dir}: rank {_rank()} waited {timeout_s:.0f} s for rank 0 to build the example corpus")
        time.sleep(2.0)


def build_example_corpus(data_dir: str | Path, progress: bool = True) -> Path:
    """Render the example corpus into `data_dir` (built next to it, then renamed into place)."""
    from mulap.demo.world import build_demo

    require_all("demo", "to build the default example corpus")  # or give a corpus: dataset_config.data_dir=<folder>
    data_dir = Path(data_dir)
    log.warning(
        "%s holds no corpus: building the example corpus there (the small demo world's 24 captioned clips, "
        "rendered once, about a minute on first use). Train on your own with dataset_config.data_dir=<folder>.",
        data_dir,
    )
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = data_dir.with_name(f".{data_dir.name}.building")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        build_demo(staging, size=EXAMPLE_SIZE, seed=EXAMPLE_SEED, progress=progress, parts=("audiocaption",))
        if data_dir.is_dir():
            data_dir.rmdir()  # empty (checked by the caller)
        (staging / "audiocaption").rename(data_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return data_dir
