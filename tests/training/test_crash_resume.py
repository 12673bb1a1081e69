"""kill -9 of a pre-training process, then the same command again: the run resumes to a valid state and ends with
exactly the weights of an uninterrupted run (same seed, CPU, deterministic algorithms). Issue 11, failures 1, 2, 5.
tools/fault_injection.py runs many more random trials and prints the counts."""

import random

import pytest

from tests.helpers import make_tone_corpus
from tests.training.crash_trials import final_weights, run_trial
from tests.training.resume_worker import train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    corpus = make_tone_corpus(root / "corpus")
    train(corpus, root / "save", "reference")  # in this process; the killed runs are subprocesses
    return corpus, root / "save", final_weights(root / "save" / "experiments" / "reference")


@pytest.mark.parametrize("kind", ["step", "write", "time"])
def test_killed_run_resumes_to_the_uninterrupted_weights(world, kind):
    """A kill at a random optimizer step; inside a random checkpoint write (the temp file cut at a random share);
    at a random time after training started (wherever the run is then)."""
    corpus, save, reference = world
    rng = random.Random()
    fault = {
        "step": f"step:{rng.randint(1, 7)}",
        "write": f"write:{rng.randint(1, 8)}:{rng.uniform(0.05, 0.95):.2f}",
        "time": f"time:{rng.uniform(0.2, 3.0):.2f}",
    }[kind]
    trial = run_trial(corpus, save, f"trial-{kind}", fault, reference, in_process=True)
    assert trial.finished and not trial.problems, (fault, trial.problems)
    assert trial.equal, f"{fault}: resumed from {trial.resumed_from}, final weights differ from the uninterrupted run"
    if kind != "time":
        assert trial.killed, fault
