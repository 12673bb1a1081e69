"""mulap zeroshot on the small demo world: the same metric code as `mulap eval`, prompts files, errors."""

import json

import numpy as np
import pytest
import yaml

import mulap
from mulap.cli import main
from mulap.data.prepare import load_prepared, prepare
from mulap.evaluation import outputs
from mulap.evaluation.metrics import compute_metrics
from mulap.evaluation.prompts import PromptsError, default_prompts, read_prompts

TASKS = (("nsynth_clf", "nsynth"), ("mtt_tagging", "mtt"), ("emomusic_reg", "emomusic"))


@pytest.fixture(scope="module")
def prepared(demo_world, tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for task, raw in TASKS:
        prepare(task, demo_world / "raw" / raw, root / "datasets" / raw, num_workers=1, progress=False)
    return root


def _env(prepared, tiny_mulap):
    save_dir, pid = tiny_mulap
    return pid, [f"env.data_root={prepared}", f"env.save_dir={save_dir}", "training.num_workers=0"]


@pytest.mark.parametrize("task,raw", TASKS)
def test_zeroshot_uses_the_eval_code_path(prepared, tiny_mulap, tmp_path, monkeypatch, task, raw):
    calls = []
    real = outputs.evaluate_and_write
    monkeypatch.setattr(outputs, "evaluate_and_write", lambda *a, **k: calls.append(a[1].task) or real(*a, **k))
    pid, env = _env(prepared, tiny_mulap)
    out = tmp_path / "zs"
    assert main(["zeroshot", pid, task, "--out", str(out), *env]) == 0
    assert calls == [task]
    m = json.loads((out / "metrics.json").read_text())
    assert m["zero_shot"] is True and m["ci95"][0] <= m["value"] <= m["ci95"][1]
    preds = np.load(out / "predictions.npz")
    ds = load_prepared(prepared / "datasets" / raw)
    assert list(preds["ids"]) == [it.id for it in ds.split("test")]
    if ds.task_type == "multiclass":
        again = compute_metrics(ds.task_type, preds["y_true"], preds["y_score"], ds.label_names)
        assert m["accuracy"] == again["accuracy"] and m["f1_macro"] == again["f1_macro"]
        assert m["chance"] == pytest.approx(1 / 11) and m["value"] == m["accuracy"]
        # scored after per-class standardisation on the validation split; the raw cosines' figure is kept
        sc = np.load(out / "scores.npz")
        np.testing.assert_allclose(sc["scores"], preds["y_score"], rtol=1e-6)
        assert m["value_raw"] == pytest.approx(float(np.mean(sc["raw_scores"].argmax(1) == preds["y_true"])))
        assert m["calibration"].startswith("class scores standardised")
    elif ds.task_type == "multilabel":
        again = compute_metrics(ds.task_type, preds["y_true"], preds["y_score"], ds.label_names, np.zeros(len(ds.label_names)))
        assert m["roc_auc_macro"] == pytest.approx(again["roc_auc_macro"]) and m["value"] == pytest.approx(m["roc_auc_macro"])
    else:
        for k in ("r2", "r2_arousal", "r2_valence", "pearson_arousal", "pearson_valence"):
            assert k in m
        assert m["chance"] == 0.0 and m["value"] == m["pearson"]
    assert (out / "prompts.json").is_file() and list((out / "plots").glob("*.png"))


def test_standardising_on_validation_removes_a_class_prior():
    """A class whose prompts sit near every clip wins every raw argmax; standardising each class's scores by
    the validation tracks' mean and spread (no labels) restores the ranking within each class."""
    from mulap.evaluation.zeroshot import standardise

    rng = np.random.default_rng(0)

    def split(n):
        y = rng.integers(0, 4, n)
        s = rng.normal(0, 0.05, (n, 4)) + 0.2 * np.eye(4)[y]
        s[:, 2] += 0.5  # class 2's prompts are close to everything
        return y, s

    (_y_v, s_v), (y_t, s_t) = split(400), split(400)
    assert np.mean(s_t.argmax(1) == y_t) < 0.3
    z = standardise(s_v, s_t)
    assert np.mean(z.argmax(1) == y_t) > 0.9
    np.testing.assert_allclose(z[:, 2], (s_t[:, 2] - s_v[:, 2].mean()) / s_v[:, 2].std(), rtol=1e-5)
    flat = np.ones_like(s_v)  # a class scoring every validation track alike keeps its spread
    np.testing.assert_allclose(standardise(flat, s_t), s_t - 1.0, rtol=1e-5)


def test_default_prompts_are_ensembles_with_synonyms():
    p = default_prompts("nsynth_clf", ["bass", "keyboard", "reed", "synth_lead", "vocal"])
    assert any("harpsichord" in t for t in p["keyboard"]) and any("piano" in t for t in p["keyboard"])
    assert {w for w in ("clarinet", "oboe", "saxophone") if any(w in t for t in p["reed"])} == {"clarinet", "oboe", "saxophone"}
    assert all(len(v) >= 4 for v in p.values())
    j = default_prompts("jamendo_tagging", ["genre---hiphop", "instrument---electricguitar", "mood/theme---happy"])
    assert any("hip hop" in t for t in j["genre---hiphop"]) and any(
        "electric guitar" in t for t in j["instrument---electricguitar"]
    )
    e = default_prompts("emomusic_reg", ["arousal", "valence"])
    assert set(e["arousal"]) == {"high", "low"} and e["valence"]["low"]


def test_default_prompts_use_an_before_vowel_sounds():
    from mulap.evaluation.prompts import with_articles

    p = default_prompts("nsynth_clf", ["organ", "reed", "keyboard"])
    assert "an organ" in p["organ"] and "a single note played on an oboe" in p["reed"]
    assert "the sound of an electric piano" in p["keyboard"]
    assert not [t for v in p.values() for t in v if " a o" in f" {t}" or " a e" in f" {t}"]
    for text, want in (
        ("a ukulele", "a ukulele"),
        ("a european song", "a european song"),
        ("a upbeat song", "an upbeat song"),
        ("a unison choir", "a unison choir"),
        ("A accordion", "An accordion"),
        ("a one-man band", "a one-man band"),
    ):
        assert with_articles(text) == want


def test_user_prompts_file_and_its_errors(prepared, tiny_mulap, tmp_path):
    pid, env = _env(prepared, tiny_mulap)
    written = tmp_path / "p.yaml"
    assert main(["zeroshot", pid, "nsynth_clf", "--write-prompts", str(written), *env]) == 0
    prompts = yaml.safe_load(written.read_text())
    prompts["keyboard"] = "a grand piano"  # a single text is allowed
    written.write_text(yaml.safe_dump(prompts))
    out = tmp_path / "zs"
    assert main(["zeroshot", pid, "nsynth_clf", "--prompts", str(written), "--out", str(out), *env]) == 0
    assert json.loads((out / "prompts.json").read_text())["keyboard"] == ["a grand piano"]
    labels = list(prompts)
    bad = dict(prompts)
    del bad["reed"]
    bad["kazoo"] = ["a kazoo"]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(PromptsError, match=r"bad.yaml: no prompts for class\(es\) \['reed'\]; unknown class\(es\) \['kazoo'\]"):
        read_prompts(tmp_path / "bad.yaml", "multiclass", labels)
    assert main(["zeroshot", pid, "nsynth_clf", "--prompts", str(tmp_path / "bad.yaml"), *env]) == 2
    assert main(["zeroshot", pid, "no_such_task", *env]) == 2
    assert main(["zeroshot", "supervised_mtt", "nsynth_clf", *env]) == 2  # no text side


def test_zeroshot_in_python(prepared, tiny_mulap):
    """The API pieces a notebook would use give the files' numbers."""
    from mulap.evaluation.zeroshot import task_prompts, track_means, zero_shot_scores
    from mulap.inference.cache import cached_embeddings

    save_dir, pid = tiny_mulap
    model = mulap.load(pid, save_dir=save_dir, device="cpu")
    ds = load_prepared(prepared / "datasets" / "nsynth")
    emb = cached_embeddings(
        model.backbone,
        [it.id for it in ds.items],
        [it.audio_path for it in ds.items],
        ds.root / "manifest.jsonl",
        save_dir / "cache" / "embeddings",
        0,
        False,
    )
    feats, y = track_means(emb, ds, "test")
    s = zero_shot_scores(model, feats, ds.task_type, ds.label_names, task_prompts(ds.task, ds.task_type, ds.label_names, None))
    assert s.shape == (len(y), 11) and np.all(np.abs(s) <= 1 + 1e-5)
    out = prepared / "zs_python"
    assert (
        main(
            [
                "zeroshot",
                pid,
                "nsynth_clf",
                "--out",
                str(out),
                f"env.data_root={prepared}",
                f"env.save_dir={save_dir}",
                "training.num_workers=0",
            ]
        )
        == 0
    )
    np.testing.assert_allclose(s, np.load(out / "scores.npz")["raw_scores"], rtol=1e-5, atol=1e-6)  # the files' numbers
