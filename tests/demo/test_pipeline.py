"""The whole demo at --size small with tiny settings: every stage's files, a complete report, stage reuse."""

import json

import numpy as np

from mulap.demo.pipeline import demo_settings, run_demo
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
    for png in ("pretrain_losses.png", "pretrain_accuracy.png", "transfer.png", "seedless_vs_random.png"):
        assert (out / "plots" / png).read_bytes()[:4] == b"\x89PNG"

    saved = json.loads((out / "results.json").read_text())
    assert saved["tasks"] == results["tasks"]
    assert set(saved["tasks"]) == set(s.tasks)
    for task, row in saved["tasks"].items():
        assert set(row) == set(s.inits), task
        for cell in row.values():
            assert set(cell) == {"metric", "mean", "std", "seeds"}
            assert len(cell["seeds"]) == 2
    assert {"world", "prepare", "pretrain:mulap", "probes:mulap:random", "report"} <= set(saved["stages"])
    assert all(v >= 0 for v in saved["stages"].values())
    diag = saved["diagnostics"]  # the seedless check: every backbone's ridge probe, compared with random init
    assert set(diag["runs"]) == set(s.inits) and set(diag["vs_random"]) == set(s.inits) - {"random"}
    for task in s.tasks:
        assert diag["runs"]["mulap"][task]["participation_ratio"] >= 1
    scored = [t for row in diag["runs"].values() for t, r in row.items() if r["ridge_test"] is not None]
    assert len(scored) >= len(s.inits) * 3  # tiny test splits may leave a metric undefined, not most of them
    assert len(list((out / "diagnostics").glob("*.npz"))) == len(scored)
    # what language taught: retrieval and zero-shot of the three models, in results.json's documented form
    assert "pretrain:shuffled" in saved["stages"] and "language" in saved["stages"]
    ret = saved["retrieval"]
    assert ret["n_test"] == len(json.loads((out / "world" / "audiocaption" / "dataset_test.json").read_text()))
    assert set(ret["models"]) == {"mulap", "shuffled", "untrained"}
    for cell in ret["models"].values():
        for d in ("t2a", "a2t"):
            assert {"R@1", "R@5", "R@10", "median_rank"} <= set(cell[d])
    assert set(saved["zeroshot"]) == set(s.tasks)
    for task, row in saved["zeroshot"].items():
        assert set(row) == {"mulap", "shuffled", "untrained"}, task
        for cell in row.values():
            # value_raw: the figure from the raw cosines, where class scores were standardised
            assert {"metric", "value", "ci", "chance"} <= set(cell) <= {"metric", "value", "ci", "chance", "value_raw"}
    # the untrained model's backbone is the probes' random init: its zero-shot reused their embedding cache
    caches = {p.name for p in (out / "save" / "cache" / "embeddings").iterdir()}
    random_key = json.loads((exp / "downstream" / "nsynth_clf-random-s0" / "summary.json").read_text())["cache_key"]
    assert random_key in caches
    report = (out / "report.md").read_text()
    assert "What language taught" in report and "caption-ambiguity bound" in report
    assert "Seedless check" in report and "supervised backbone beats random init" in report
    for task in s.tasks:
        assert task in report
    for init in s.inits:
        assert init in report

    # the demo's model is the user's first model: exported, loadable with its text side, and the report says how
    import mulap

    assert "export" in saved["stages"] and saved["model"]["path"] == str(out / "model")
    model = mulap.load(out / "model", device="cpu")
    assert model.embed_text(["solo flute"]).shape == (1, model.joint_dim)
    assert f'mulap search {out / "model"} ~/Music "a slow string quartet"' in report and "mulap zeroshot" in report
    # which soundfonts rendered the world, per dataset, and what they cost
    timbre = saved["world_timbre"]
    assert sum(timbre["files"]["audiocaption"].values()) == sum(
        len(json.loads((out / "world" / "audiocaption" / f).read_text()))
        for f in ("dataset_train.json", "dataset_val.json", "dataset_test.json")
    )
    assert set(timbre["render"]["sources"]) == set(timbre["sources"]) and "## The world's timbres" in report

    capsys.readouterr()
    s.variants = {"no_mam": ["model_config.objectives.mam.enabled=false"]}  # a second run adds an ablation recipe ...
    results = run_demo(out, settings=s, overrides=TINY_MODEL)
    printed = capsys.readouterr().out
    assert "stage pretrain:mulap: done before" in printed and "stage world: done before" in printed  # ... and reuses the rest
    assert "stage probes:mulap:random: done before" in printed and "stage pretrain:no_mam ..." in printed
    assert "stage export: done before" in printed
    assert (out / "save" / "experiments" / "no_mam" / "backbone.safetensors").is_file()
    assert set(results["ablation"]) == {"mulap (default recipe)", "random init", "no_mam"}
    assert all(len(cell["mulap"]["seeds"]) == 1 for cell in results["ablation"]["no_mam"].values())
    assert "| no_mam |" in (out / "report.md").read_text()

    s.variant_probe_seeds = [0, 1]  # more probe seeds re-open the finished probe stage of the variant
    results = run_demo(out, settings=s, overrides=TINY_MODEL)
    printed = capsys.readouterr().out
    assert "stage pretrain:no_mam: done before" in printed and "stage probes:no_mam:mulap ..." in printed
    assert all(len(cell["mulap"]["seeds"]) == 2 for cell in results["ablation"]["no_mam"].values())
    assert "wins vs random" in (out / "report.md").read_text()


def test_generalisation_gap_has_intervals_and_a_per_soundfont_breakdown(tmp_path):
    """The report's measure of generalisation: zero-shot accuracy on the world's notes (per source) and on the
    held-out soundfont's, each with a bootstrap interval, and their gap with its own."""
    from mulap.demo.language import generalisation, generalisation_lines

    rng = np.random.default_rng(0)

    def scores(path, ids, accuracy):
        y = rng.integers(0, 11, len(ids))
        s = rng.random((len(ids), 11))
        right = rng.random(len(ids)) < accuracy
        s[right, y[right]] = 2.0  # argmax = the label on about `accuracy` of the notes
        path.mkdir(parents=True)
        np.savez(path / "scores.npz", ids=np.array(ids), y_true=y, scores=s)

    ids = [f"n{i}" for i in range(400)]
    scores(tmp_path / "language/zeroshot/mulap/nsynth_clf", ids, 0.6)
    assert generalisation(tmp_path, {}) == {}  # no held-out scores yet
    scores(tmp_path / "language/other_soundfont/zeroshot/mulap/nsynth_clf", [f"o{i}" for i in range(300)], 0.3)
    world = {
        "timbre": {
            "clips": {
                f"raw/nsynth/nsynth-test/audio/{i}.wav": {"source": "opl3" if k % 2 else "timgm6mb"} for k, i in enumerate(ids)
            }
        }
    }
    g = generalisation(tmp_path, world)
    assert 0.55 < g["world"]["value"] < 0.7 and 0.25 < g["held_out"]["value"] < 0.38
    assert g["gap"] == g["world"]["value"] - g["held_out"]["value"]
    for c in (g["world"], g["held_out"]):
        assert c["ci"][0] < c["value"] < c["ci"][1]
    assert g["gap_ci"][0] < g["gap"] < g["gap_ci"][1] and g["gap_ci"][0] > 0.1
    assert {k: v["n_test"] for k, v in g["world_by_source"].items()} == {"opl3": 200, "timgm6mb": 200}
    assert "Gap, world minus held-out" in "".join(generalisation_lines(g))
