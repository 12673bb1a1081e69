"""Crash trials shared by the tests and tools/fault_injection.py: a run is killed by SIGKILL at some point,
the same command is run again, and the result is checked against an uninterrupted run with the same seed."""

from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

WORKER = Path(__file__).with_name("resume_worker.py")
ROOT = Path(__file__).resolve().parents[2]


def run_worker(
    corpus: Path, save_dir: Path, pretrain_id: str, fault: str = "none", timeout: float = 600
) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [sys.executable, str(WORKER), str(corpus), str(save_dir), pretrain_id, fault],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def final_weights(exp: Path) -> dict[str, torch.Tensor]:
    return torch.load(exp / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


def state_problems(exp: Path) -> list[str]:
    """What is wrong with an experiment folder after a finished run (empty: a valid state)."""
    problems = []
    ckpts = exp / "checkpoints"
    problems += [f"temp file left: {p.name}" for p in ckpts.glob(".*.tmp")]
    for p in ckpts.glob("*.ckpt"):
        try:
            with zipfile.ZipFile(p) as zf:
                bad = zf.testzip()
            ckpt = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{p.name} does not load: {exc}")
            continue
        if bad:
            problems.append(f"{p.name}: CRC error in {bad}")
        if "state_dict" not in ckpt:
            problems.append(f"{p.name}: no state_dict")
    best = ckpts / "best.ckpt"
    if not best.is_file() or "optimizer_states" in torch.load(best, weights_only=True):
        problems.append("best.ckpt missing or not weights-only")
    if (exp / "run.lock").exists():
        problems.append("run.lock left behind by a finished run")
    with open(exp / "logs" / "csv" / "metrics.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    if any(len(r) != len(rows[0]) for r in rows):
        problems.append("metrics.csv has rows of the wrong width")
    return problems


def resumed_from(exp: Path) -> str:
    lines = [ln for ln in (exp / "runs.log").read_text().splitlines() if " resume from " in ln or " start;" in ln]
    last = lines[-1] if lines else ""
    return last.split("resume from checkpoints/")[1].split(" ")[0] if "resume from" in last else "scratch"


@dataclass
class Trial:
    fault: str
    killed: bool = False
    resumed_from: str = ""
    finished: bool = False
    equal: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.finished and self.equal and not self.problems


def resume_in_process(corpus: Path, save_dir: Path, name: str) -> str | None:
    """The second run in this process (saves a process start); returns the error, or None."""
    from tests.training.resume_worker import train

    try:
        train(corpus, save_dir, name)
    except Exception as exc:  # noqa: BLE001 - reported as the trial's problem
        return f"{type(exc).__name__}: {exc}"
    return None


def run_trial(
    corpus: Path, save_dir: Path, name: str, fault: str, reference: dict[str, torch.Tensor], in_process: bool = False
) -> Trial:
    """Run with `fault`, then the same command again (in a new process, or in this one with `in_process`)."""
    trial = Trial(fault)
    first = run_worker(corpus, save_dir, name, fault)
    trial.killed = first.returncode == -9
    if first.returncode not in (0, -9):
        trial.problems.append(f"the faulty run failed otherwise (rc {first.returncode}): {first.stderr[-500:]}")
        return trial
    exp = save_dir / "experiments" / name
    if in_process:
        error = resume_in_process(corpus, save_dir, name)
        trial.finished = error is None
    else:
        second = run_worker(corpus, save_dir, name)
        trial.finished = second.returncode == 0 and "finished" in second.stdout
        error = f"rc {second.returncode}: {second.stderr[-1500:]}"
    if not trial.finished:
        trial.problems.append(f"the resumed run failed ({error})")
        return trial
    trial.resumed_from = resumed_from(exp)
    weights = final_weights(exp)
    trial.equal = set(weights) == set(reference) and all(torch.equal(weights[k], reference[k]) for k in reference)
    trial.problems += state_problems(exp)
    return trial


def random_fault(rng: random.Random, n_steps: int, n_writes: int, train_seconds: float) -> str:
    """A kill point: at a step, inside or just after a checkpoint write, inside the rotation, or at a random time."""
    kind = rng.choice(["step", "write", "commit", "rotate", "time"])
    if kind == "step":
        return f"step:{rng.randint(1, n_steps - 1)}"
    if kind == "write":
        return f"write:{rng.randint(1, n_writes)}:{rng.uniform(0.01, 0.99):.2f}"
    if kind == "commit":
        return f"commit:{rng.randint(1, n_writes)}"
    if kind == "rotate":
        return "rotate:1"
    return f"time:{rng.uniform(0.0, train_seconds):.2f}"
