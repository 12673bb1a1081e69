"""Transfer on the small demo world: prepare -> downstream probe -> eval, the embedding cache, embed."""

import json

import numpy as np
import pytest
import torch

from mulap.cli import main
from mulap.data.prepare import prepare
from mulap.models.musicnn import Musicnn

SETTINGS = ["downstream.epochs=3", "downstream.patience=3", "training.num_workers=0"]


@pytest.fixture(scope="module")
def prepared(demo_world, tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for task, raw in (("nsynth_clf", "nsynth"), ("mtt_tagging", "mtt"), ("emomusic_reg", "emomusic")):
        prepare(task, demo_world / "raw" / raw, root / "datasets" / raw, num_workers=1, progress=False)
    return root


def _count_backbone_calls(monkeypatch) -> list:
    calls = []
    original = Musicnn.forward

    def counting(self, x):
        calls.append(x.shape)
        return original(self, x)

    monkeypatch.setattr(Musicnn, "forward", counting)
    return calls


def test_frozen_probe_second_run_uses_cache(prepared, tmp_path, monkeypatch):
    calls = _count_backbone_calls(monkeypatch)
    env = [f"env.data_root={prepared}", f"env.save_dir={tmp_path}"]
    assert main(["downstream", "random", "nsynth_clf", "--downstream_id", "a", *env, *SETTINGS]) == 0
    assert calls, "the first run must embed the dataset"
    first = json.loads((tmp_path / "experiments/random/downstream/a/summary.json").read_text())
    assert first["computed"] is True
    calls.clear()
    assert main(["downstream", "random", "nsynth_clf", "--downstream_id", "b", *env, *SETTINGS, "downstream.probe=linear"]) == 0
    assert calls == []  # no backbone forward pass at all
    second = json.loads((tmp_path / "experiments/random/downstream/b/summary.json").read_text())
    assert second["computed"] is False and second["cache_key"] == first["cache_key"]
    # a different backbone must not be served the same cache
    assert main(["downstream", "random", "nsynth_clf", "--downstream_id", "c", *env, *SETTINGS, "env.seed=7"]) == 0
    third = json.loads((tmp_path / "experiments/random/downstream/c/summary.json").read_text())
    assert third["computed"] is True and third["cache_key"] != first["cache_key"]
    # nor features extracted in another precision
    assert (
        main(["downstream", "random", "nsynth_clf", "--downstream_id", "d", *env, *SETTINGS, "training.precision=bf16-mixed"])
        == 0
    )
    fourth = json.loads((tmp_path / "experiments/random/downstream/d/summary.json").read_text())
    assert fourth["computed"] is True and fourth["cache_key"] not in (first["cache_key"], third["cache_key"])
    assert json.loads((tmp_path / "cache/embeddings" / fourth["cache_key"] / "meta.json").read_text())["precision"] == "bf16"


@pytest.mark.parametrize(
    "task,expected",
    [
        ("nsynth_clf", ["accuracy", "f1_macro"]),
        ("mtt_tagging", ["roc_auc_macro", "pr_auc_macro", "roc_auc_micro", "pr_auc_micro", "f1_macro"]),
        ("emomusic_reg", ["r2", "r2_arousal", "r2_valence"]),
    ],
)
def test_downstream_then_eval_writes_metrics_and_plots(prepared, tmp_path, task, expected):
    env = [f"env.data_root={prepared}", f"env.save_dir={tmp_path}"]
    assert main(["downstream", "supervised_mtt", task, "--downstream_id", "run", *env, *SETTINGS]) == 0
    assert main(["eval", "supervised_mtt", "run", f"env.save_dir={tmp_path}"]) == 0
    folder = tmp_path / "experiments/supervised_mtt/downstream/run"
    metrics = json.loads((folder / "metrics.json").read_text())
    for k in expected:
        assert k in metrics
    tsv = (folder / "metrics.tsv").read_text().splitlines()
    assert tsv[0] == "metric\tvalue" and any(line.startswith(expected[0] + "\t") for line in tsv)
    pngs = list((folder / "plots").glob("*.png"))
    assert pngs and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    preds = np.load(folder / "predictions.npz")
    assert len(preds["ids"]) == metrics["n_test_tracks"]


def test_finetune_mode_trains_backbone(prepared, tmp_path):
    env = [f"env.data_root={prepared}", f"env.save_dir={tmp_path}"]
    assert (
        main(
            [
                "downstream",
                "random",
                "nsynth_clf",
                "--downstream_id",
                "ft",
                *env,
                "downstream.mode=finetune",
                "downstream.epochs=1",
                "training.num_workers=0",
                "downstream.batch_size=8",
            ]
        )
        == 0
    )
    folder = tmp_path / "experiments/random/downstream/ft"
    from mulap.models.backbone import load_backbone

    tuned = load_backbone(folder / "backbone.safetensors")
    torch.manual_seed(42)
    fresh = Musicnn(tuned.config)
    changed = [
        k for k, v in tuned.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, fresh.state_dict()[k])
    ]
    assert any("bn" not in k.lower() and "norm" not in k.lower() for k in changed)
    assert main(["eval", "random", "ft", f"env.save_dir={tmp_path}"]) == 0
    assert (folder / "metrics.json").is_file()


@pytest.mark.parametrize("suffix", [".npz", ".parquet"])
def test_embed_command(demo_world, tmp_path, suffix):
    src = demo_world / "raw" / "nsynth" / "nsynth-test" / "audio"
    out = tmp_path / f"emb{suffix}"
    assert main(["embed", "random", str(src), "-o", str(out), "training.num_workers=0"]) == 0
    n_files = len(list(src.glob("*.wav")))
    if suffix == ".npz":
        d = np.load(out)
        assert d["track_embeddings"].shape == (n_files, 1506)
        assert len(d["chunk_embeddings"]) == len(d["chunk_track"]) >= n_files
        first = d["chunk_embeddings"][d["chunk_track"] == 0].mean(0)
        assert np.allclose(first, d["track_embeddings"][0], atol=1e-5)
    else:
        import pyarrow.parquet as pq

        t = pq.read_table(out).to_pydict()
        assert t["level"].count("track") == n_files
        assert len(t["embedding"][0]) == 1506


def test_missing_prepared_dataset_is_a_clear_error(tmp_path, capsys):
    assert main(["downstream", "random", "fma_clf", f"env.data_root={tmp_path}", f"env.save_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "mulap prepare fma_clf" in err and str(tmp_path) in err
