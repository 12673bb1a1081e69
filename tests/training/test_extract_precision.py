"""mulap.embed.extract: the bf16 option gives the float32 features to bf16 accuracy, same layout."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mulap.embed import extract
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
