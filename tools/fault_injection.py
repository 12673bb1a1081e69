"""Fault injection for pre-training: kill a run with SIGKILL at random points, resume it, and check that it ends
in a valid state with exactly the weights of an uninterrupted run (same seed, CPU, deterministic algorithms).

    .venv/bin/python tools/fault_injection.py --trials 40 --seed 0

Kill points (drawn at random): the start of an optimizer step, inside a checkpoint write (the temp file cut at a
random share of its bytes), a checkpoint complete in its temp file but not renamed, inside the rotation of
last.ckpt, and a random time after training started (wherever the run is: a step, a write, validation, a log
write). Prints one line per trial and the counts. Each trial starts two processes (a few seconds each on a
quiet machine). The test suite runs three such trials (tests/training/test_crash_resume.py).
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers import make_tone_corpus
from tests.training.crash_trials import final_weights, random_fault, run_trial, run_worker

N_STEPS = 8  # the worker's run: 2 epochs of 4 steps; step.ckpt every step, last and best at each epoch's end


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="working folder (default: a temporary one)")
    args = ap.parse_args()
    work = Path(args.out or tempfile.mkdtemp(prefix="mulap_faults_"))
    corpus = make_tone_corpus(work / "corpus")
    t0 = time.time()
    ref = run_worker(corpus, work / "save", "reference")
    if ref.returncode != 0:
        print(ref.stderr[-3000:])
        return 1
    found = re.search(r"trained_in ([\d.]+) checkpoint_writes (\d+)", ref.stdout)
    train_seconds, n_writes = float(found.group(1)), int(found.group(2))
    reference = final_weights(work / "save" / "experiments" / "reference")
    print(f"reference run: {time.time() - t0:.1f} s ({train_seconds:.1f} s of training, {n_writes} checkpoint writes)")
    rng = random.Random(args.seed)
    trials = []
    for i in range(args.trials):
        fault = random_fault(rng, N_STEPS, n_writes, train_seconds)
        trial = run_trial(corpus, work / "save", f"trial{i:03d}", fault, reference)
        trials.append(trial)
        print(
            f"{i:3d} {fault:14s} killed={trial.killed!s:5s} resumed_from={trial.resumed_from or '-':16s} "
            f"weights_equal={trial.equal!s:5s} {'OK' if trial.ok else 'FAIL: ' + '; '.join(trial.problems)}",
            flush=True,
        )
    kinds = Counter(t.fault.split(":")[0] for t in trials)
    print(
        f"\ntrials: {len(trials)}; killed: {sum(t.killed for t in trials)} "
        f"(not killed: the point was not reached); kill points: {dict(sorted(kinds.items()))}"
    )
    print(f"resumed from: {dict(sorted(Counter(t.resumed_from for t in trials).items()))}")
    print(
        f"resumed to a valid state: {sum(t.finished and not t.problems for t in trials)}/{len(trials)}; "
        f"final weights equal to the uninterrupted run: {sum(t.equal for t in trials)}/{len(trials)}; "
        f"failures: {sum(not t.ok for t in trials)}"
    )
    print(f"work folder: {work}")
    return 0 if all(t.ok for t in trials) else 1


if __name__ == "__main__":
    sys.exit(main())
