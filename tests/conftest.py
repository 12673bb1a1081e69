"""Session fixtures shared by the test suite."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

# A job a shell starts in the background (`cmd &`, nohup) begins with Ctrl-C ignored, and an ignored signal stays
# ignored across exec: the interrupt tests (tests/infra/test_interrupts.py) would see SIGINT do nothing, in this process
# and in the commands it starts. Give the suite Ctrl-C as a terminal gives it; the children then get the default too.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def demo_world(tmp_path_factory) -> Path:
    """The demo world at --size small, seed 0, built once per test session; returns its folder.

    <world>/audiocaption (the seed's format) and <world>/raw/{nsynth,mtt,jamendo,fma,emomusic}
    in their publishers' layouts (see mulap.demo.world).
    """
    from mulap.demo.world import build_demo

    out = tmp_path_factory.mktemp("demo_world")
    build_demo(out, size="small", seed=0, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_mulap(tmp_path_factory) -> tuple[Path, str]:
    """A tiny MuLaP pre-trained for 2 epochs with the default recipe (joint space on): (save_dir, pretrain_id)."""
    from mulap.infra.config import load_config
    from mulap.training.pretrain import run_pretraining
    from tests.helpers import TINY_MODEL, make_audiocaption

    root = tmp_path_factory.mktemp("tiny_mulap")
    corpus = make_audiocaption(root / "ac", n_train=8, n_val=4)
    cfg = load_config(
        None,
        [
            f"env.save_dir={root / 'save'}",
            f"dataset_config.data_dir={corpus}",
            "training.epochs=2",
            "training.batch_size=4",
            "training.num_workers=0",
            "training.progress_bar=false",
            "dataset_config.max_len_seconds=6",
            "model_config.audio.max_chunks=2",
            *TINY_MODEL,
        ],
    )
    run_pretraining(cfg, "tiny")
    return root / "save", "tiny"


@pytest.fixture(scope="session")
def shard_source(tmp_path_factory) -> Path:
    """A small captioned corpus in the seed's layout (12 train, 4 val clips): the source of `tiny_shards`."""
    from tests.helpers import make_audiocaption

    return make_audiocaption(tmp_path_factory.mktemp("shard_source"), n_train=12, n_val=4)


@pytest.fixture(scope="session")
def tiny_shards(shard_source, tmp_path_factory) -> Path:
    """`shard_source` as flac tar shards of 100 kB (several per split), built once per session. Read-only:
    a test that damages shards copies them first."""
    from mulap.data.shards import write_shards

    out = tmp_path_factory.mktemp("tiny_shards") / "flac"
    write_shards(shard_source, out, shard_size="100kB", fmt="flac", num_workers=0, progress=False)
    return out
