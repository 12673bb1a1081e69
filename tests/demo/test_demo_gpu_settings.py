"""configs/demo/gpu.yaml: its scale against the default demo, and the whole demo run with it end to end at
tiny size on the CPU (device, world size, epochs and model shrunk on top of it; bf16-mixed kept)."""

from omegaconf import OmegaConf

from mulap.demo.pipeline import demo_settings, run_demo
from mulap.demo.world.build import SIZES
from mulap.infra.config import load_config
from tests.helpers import TINY_MODEL


def _setting(overrides, key):
    return OmegaConf.select(load_config(None, list(overrides)), key)


def test_gpu_settings_are_a_larger_world_and_ten_times_the_steps():
    gpu, default = demo_settings("gpu"), demo_settings("default")
    assert SIZES[gpu.world.size].corpus_clips > SIZES[default.world.size].corpus_clips
    steps = {
        name: _setting(s.pretrain, "training.epochs")
        * SIZES[s.world.size].corpus_clips
        / _setting(s.pretrain, "training.batch_size")
        for name, s in (("gpu", gpu), ("default", default))
    }  # same train share of the corpus in both worlds
    assert steps["gpu"] >= 10 * steps["default"]
    for key, value in (("training.device", "gpu"), ("training.precision", "bf16-mixed")):
        assert _setting(gpu.pretrain, key) == value
        assert value in [o.split("=", 1)[1] for o in gpu.downstream if o.startswith(key + "=")]
    assert _setting(gpu.pretrain, "training.num_workers") >= 8


def test_gpu_settings_run_end_to_end_at_tiny_size(tmp_path):
    s = demo_settings("gpu")
    s.world.size = "small"
    s.probe_seeds = [0]
    s.inits = ["mulap", "random"]  # the supervised backbone adds time, not coverage of these settings
    s.pretrain = [
        *s.pretrain,
        "training.device=cpu",
        "training.epochs=1",
        "training.batch_size=4",
        "training.num_workers=0",
        "training.progress_bar=false",
        "dataset_config.max_len_seconds=6",
        "model_config.audio.max_chunks=2",
    ]
    s.downstream = [
        *s.downstream,
        "training.device=cpu",
        "training.num_workers=0",
        "downstream.epochs=2",
        "downstream.patience=2",
    ]
    out = tmp_path / "demo"
    results = run_demo(out, settings=s, overrides=TINY_MODEL)
    assert set(results["tasks"]) == set(s.tasks)
    for task, row in results["tasks"].items():
        assert set(row) == set(s.inits), task
    saved = load_config(out / "save" / "experiments" / "mulap" / "config.yaml")
    assert saved.training.precision == "bf16-mixed" and saved.training.batch_size == 4
    assert (out / "report.md").is_file() and (out / "save" / "experiments" / "mulap" / "backbone.safetensors").is_file()
