"""mulap.inference.extract.extract: the bf16 option gives the float32 features to bf16 accuracy, same layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from mulap.inference.extract import extract, extraction_settings
from mulap.models.musicnn import Musicnn, MusicnnConfig


def test_bf16_extraction_matches_float32(tmp_path) -> None:
    rng = np.random.default_rng(0)
    paths = []
    for i, seconds in enumerate((6.0, 7.5)):
        p = tmp_path / f"clip{i}.npy"
        t = np.arange(int(seconds * 16000)) / 16000
        np.save(p, (0.3 * np.sin(2 * np.pi * 440 * (i + 1) * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32))
        paths.append(p)
    torch.manual_seed(0)
    model = Musicnn(MusicnnConfig(timbral_channels=12)).eval()
    f32, track32, fail32 = extract(model, paths, num_workers=0, progress=False)
    bf16, track16, fail16 = extract(model, paths, num_workers=0, progress=False, precision="bf16")
    assert f32.dtype == bf16.dtype == np.float32 and f32.shape == bf16.shape == (4, model.out_dim)
    assert track32.tolist() == track16.tolist() == [0, 0, 1, 1] and not fail32 and not fail16
    assert np.abs(bf16 - f32).max() / np.abs(f32).max() < 0.02
    with pytest.raises(ValueError, match="precision"):
        extract(model, paths, num_workers=0, progress=False, precision="fp8")


@pytest.mark.parametrize(
    "device,precision,expected",
    [
        ("cpu", "32-true", ("cpu", "32")),
        ("cpu", "bf16-mixed", ("cpu", "bf16")),
        ("auto", "32-true", ("cuda" if torch.cuda.is_available() else "cpu", "32")),
    ],
)
def test_extraction_settings_follow_the_run_config(device, precision, expected) -> None:
    cfg = OmegaConf.create({"training": {"device": device, "precision": precision}})
    dev, prec = extraction_settings(cfg)
    assert (dev.type, prec) == expected


def test_extraction_settings_reject_unusable_devices() -> None:
    with pytest.raises(ValueError, match="training.device"):
        extraction_settings(OmegaConf.create({"training": {"device": "tpu", "precision": "32-true"}}))
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA"):
            extraction_settings(OmegaConf.create({"training": {"device": "gpu", "precision": "32-true"}}))
