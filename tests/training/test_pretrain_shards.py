"""Pre-training from tar shards (dataset_config.format=shards): a run, and a run interrupted
mid-epoch that resumes without repeating or dropping a sample of the interrupted epoch."""

import collections
import json
from pathlib import Path

import lightning as L
import pytest
import torch

from mulap.cli import main
from mulap.infra.config import load_config
from mulap.training.pretrain import run_pretraining
from tests.helpers import TINY_MODEL

BASE = [
    "training.batch_size=2",
    "training.num_workers=2",
    "training.progress_bar=false",
    "training.lr=1e-3",
    "dataset_config.max_len_seconds=6",
    "model_config.audio.max_chunks=2",
    "dataset_config.format=shards",
    "dataset_config.shuffle_buffer=4",
    *TINY_MODEL,
]


@pytest.fixture(scope="module")
def shards(tiny_shards, shard_source):
    """(the session's shards, the sorted ids of their train split)"""
    train = json.loads((shard_source / "dataset_train.json").read_text())
    return tiny_shards, sorted(r["audio_id"] for r in train)


class Record(L.Callback):
    """Records the clips of every trained batch per epoch; raises after `stop_after` batches in `hook`."""

    def __init__(self, seen, stop_after=None, hook="end"):
        self.seen, self.stop_after, self.hook, self.n = seen, stop_after, hook, 0

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if self.hook == "start" and self.n == self.stop_after:
            raise RuntimeError("simulated crash before a step")

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.seen[trainer.current_epoch] += batch["audio_ids"]
        self.n += 1
        if self.hook == "end" and self.n == self.stop_after:
            raise RuntimeError("simulated crash after a step")


def test_pretraining_from_shards_writes_the_experiment(shards, tmp_path, capsys):
    data, _ = shards
    assert (
        main(
            [
                "pretrain",
                "--pretrain_id",
                "sh",
                f"env.save_dir={tmp_path}",
                f"dataset_config.data_dir={data}",
                "training.epochs=1",
                *BASE,
            ]
        )
        == 0
    )
    exp = tmp_path / "experiments" / "sh"
    assert (exp / "backbone.safetensors").is_file()
    ckpt = torch.load(exp / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 6  # 12 clips, batch 2, one rank: 6 batches whatever the 2 workers get


@pytest.mark.parametrize("hook,stop_after", [("end", 4), ("start", 8)])  # crashes in epoch 0 after a step, in epoch 1 before one
def test_interrupted_epoch_resumes_without_repeating_a_sample(shards, tmp_path, hook, stop_after):
    data, want = shards
    seen = collections.defaultdict(list)
    cfg = load_config(None, [f"env.save_dir={tmp_path}", f"dataset_config.data_dir={data}", "training.epochs=2", *BASE])
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_pretraining(cfg, "r", extra_callbacks=[Record(seen, stop_after=stop_after, hook=hook)])
    assert (
        sum(map(len, seen.values())) == 2 * stop_after
        and (tmp_path / "experiments" / "r" / "checkpoints" / "interrupted.ckpt").is_file()
    )
    run_pretraining(cfg, "r", extra_callbacks=[Record(seen)])
    assert sorted(seen[0]) == want  # the interrupted epoch: every clip exactly once, over both runs
    assert sorted(seen[1]) == want
    assert seen[0] != seen[1]


def _pwned_anywhere(*roots):
    return [p for root in roots for p in root.rglob("PWNED")]


def test_a_shell_command_in_a_shard_name_is_refused_before_anything_runs(shards, tmp_path, monkeypatch, capsys):
    """shards.json is data: a name that would run a command through the user's pipe: template is refused
    with one line naming the index, the split and the name, and no command runs."""
    import shutil
    import tempfile

    data, _ = shards
    hostile = tmp_path / "hostile"
    shutil.copytree(data, hostile)
    index = json.loads((hostile / "shards.json").read_text())
    bad = "train-000000.tar; touch PWNED"
    index["splits"]["train"]["shards"][0]["name"] = bad
    (hostile / "shards.json").write_text(json.dumps(index))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    rc = main(
        [
            "pretrain",
            "--pretrain_id",
            "inj",
            f"env.save_dir={tmp_path / 'save'}",
            f"dataset_config.data_dir={hostile}",
            f"dataset_config.shard_url=pipe:cat {hostile}/{{name}}",
            "training.epochs=1",
            *BASE,
        ]
    )
    err = capsys.readouterr().err.strip()
    assert not _pwned_anywhere(cwd, tmp_path, hostile, data) and not (Path(tempfile.gettempdir()) / "PWNED").exists()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert str(hostile / "shards.json") in err and "'train'" in err and bad in err


def test_a_pipe_template_streams_the_shards(shards, tmp_path):
    """The README's set-up: the index local, the shards through a command (here one that needs the
    user's own quoting, a folder with a space in its name)."""
    import shutil

    data, want = shards
    spaced = tmp_path / "my shards"
    shutil.copytree(data, spaced)
    seen = collections.defaultdict(list)
    cfg = load_config(
        None,
        [
            f"env.save_dir={tmp_path / 'save'}",
            f"dataset_config.data_dir={spaced}",
            "training.epochs=1",
            f"dataset_config.shard_url=pipe:cat '{spaced}'/{{name}}",
            *BASE,
        ],
    )
    run_pretraining(cfg, "pipe", extra_callbacks=[Record(seen)])
    assert sorted(seen[0]) == want
