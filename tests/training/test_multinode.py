"""Two "nodes" on this machine: two `torchrun --nnodes 2 --node_rank {0,1}` commands, one process each,
pre-train from shards over gloo through the `mulap pretrain` CLI. Both ranks end with the same
parameters; a rank that fails takes the other one down with it instead of leaving it waiting."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch

from mulap.data.shards import ShardDataset, read_index
from tests.helpers import TINY_MODEL

WORKER = Path(__file__).with_name("node_worker.py")
ROOT = Path(__file__).resolve().parents[2]
ARGS = [
    "training.epochs=1",
    "training.batch_size=2",
    "training.num_workers=0",
    "training.progress_bar=false",
    "training.device=cpu",
    "training.devices=1",
    "training.num_nodes=2",
    "training.strategy=ddp",
    "dataset_config.format=shards",
    "dataset_config.max_len_seconds=6",
    "model_config.audio.max_chunks=2",
    "model_config.objectives.contrastive.enabled=true",
    *TINY_MODEL,
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_nodes(out: Path, overrides: list[str], timeout: float = 240) -> list[tuple[int | None, str]]:
    """(exit code or None when it had to be killed at `timeout`, output) of each node's torchrun."""
    port = str(_free_port())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    logs = [out / f"node{rank}.log" for rank in (0, 1)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--node_rank",
                str(rank),
                "--nproc_per_node",
                "1",
                "--master_addr",
                "127.0.0.1",
                "--master_port",
                port,
                str(WORKER),
                str(out),
                "pretrain",
                "--pretrain_id",
                "mn",
                *overrides,
            ],
            env=env,
            stdout=open(logs[rank], "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for rank in (0, 1)
    ]
    deadline = time.monotonic() + timeout
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            codes.append(None)
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)  # torchrun and the worker it started
            p.wait()
    return [(code, log.read_text()) for code, log in zip(codes, logs)]


def test_two_nodes_end_with_identical_parameters(tiny_shards, tmp_path):
    nodes = _two_nodes(tmp_path, [f"env.save_dir={tmp_path / 'save'}", f"dataset_config.data_dir={tiny_shards}", *ARGS])
    for code, log in nodes:
        assert code == 0, log[-3000:]
    a, b = (torch.load(tmp_path / f"params_rank{r}.pt", weights_only=True) for r in (0, 1))
    assert a["world_size"] == b["world_size"] == 2
    assert a["step"] == b["step"] == 3  # 12 clips over 2 ranks at batch 2
    assert set(a["params"]) == set(b["params"])
    for k in a["params"]:
        assert torch.equal(a["params"][k], b["params"][k]), k
    exp = tmp_path / "save" / "experiments" / "mn"
    assert (exp / "backbone.safetensors").is_file() and (exp / "checkpoints" / "last.ckpt").is_file()


def test_a_failing_rank_takes_the_job_down(tiny_shards, tmp_path):
    """A corrupt member in a shard only rank 1 reads (on_bad_sample=error): rank 1 stops with the error
    naming it, and rank 0, waiting for rank 1's gradients, exits too instead of hanging."""
    data = tmp_path / "shards"
    import shutil

    shutil.copytree(tiny_shards, data)
    index = read_index(data)["splits"]["train"]["shards"]
    rank1 = ShardDataset(data, "train", batch_size=2, rank=1, world_size=2, shuffle=True, seed=42)
    first = rank1.plan(0, 1, 0)[0][0]  # rank 1's first sample: (shard, position)
    name = index[first[0]]["name"]
    raw = bytearray((data / name).read_bytes())
    at = -1
    for _ in range(first[1] + 1):  # the flac of that position
        at = raw.index(b"fLaC", at + 1)
    raw[at : at + 2000] = bytes(2000)
    (data / name).write_bytes(bytes(raw))
    nodes = _two_nodes(tmp_path, [f"env.save_dir={tmp_path / 'save'}", f"dataset_config.data_dir={data}", *ARGS], timeout=180)
    (code0, log0), (code1, log1) = nodes
    assert code1 not in (0, None) and f"{name}:{first[1]:08d}" in log1, log1[-3000:]
    assert code0 not in (0, None), log0[-3000:]  # not left waiting
