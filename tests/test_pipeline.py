"""The whole demo at --size small with tiny settings: every stage's files, a complete report, stage reuse."""
import json

from omegaconf import OmegaConf

from mulap.pipeline import demo_settings, run_demo
from tests.helpers import TINY_MODEL


def test_small_demo_end_to_end(tmp_path, capsys):
    s = demo_settings("small")
    s.probe_seeds = [0, 1]
    s.downstream = ["downstream.epochs=2", "downstream.patience=2", "training.num_workers=0"]
    s.pretrain = list(s.pretrain) + ["training.num_workers=0", "training.progress_bar=false"]
    out = tmp_path / "demo"
    results = run_demo(out, settings=s, overrides=TINY_MODEL)

    assert (out / "world" / "audiocaption" / "dataset_train.json").is_file()
    for name in ("mtt", "jamendo", "emomusic", "fma", "nsynth"):
        assert (out / "data" / "datasets" / name / "manifest.jsonl").is_file(), name
    exp = out / "save" / "experiments" / "mulap"
    assert (exp / "backbone.safetensors").is_file() and (exp / "logs" / "csv" / "metrics.csv").is_file()
    for png in ("pretrain_losses.png", "pretrain_accuracy.png", "transfer.png"):
        assert (out / "plots" / png).read_bytes()[:4] == b"\x89PNG"

    saved = json.loads((out / "results.json").read_text())
    assert saved["tasks"] == results["tasks"]
    assert set(saved["tasks"]) == set(s.tasks)
    for task, row in saved["tasks"].items():
        assert set(row) == set(s.inits), task
        for init, cell in row.items():
            assert set(cell) == {"metric", "mean", "std", "seeds"}
            assert len(cell["seeds"]) == 2
    assert {"world", "prepare", "pretrain:mulap", "probes:mulap:random", "report"} <= set(saved["stages"])
    assert all(v >= 0 for v in saved["stages"].values())
    report = (out / "report.md").read_text()
    for task in s.tasks:
        assert task in report
    for init in s.inits:
        assert init in report

    capsys.readouterr()
    run_demo(out, settings=s, overrides=TINY_MODEL)  # a second run reuses every finished stage
    printed = capsys.readouterr().out
    assert "stage pretrain:mulap: done before" in printed and "stage world: done before" in printed
