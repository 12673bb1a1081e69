"""mulap.inference.hear against the rules hear-validator checks (shapes, dtypes, regular increasing timestamps, sizes)
plus batch independence, and against the Python API's numbers (scene = model.embed, a timestamp = its 3 s window);
float32 tolerance 1e-5 relative: a batch of another size sums in another order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mulap
from mulap import hear
from mulap.models.backbone import save_backbone

SR = 16000


@pytest.fixture(scope="module")
def model():
    return hear.load_model("", hop_ms=250.0)  # coarse hop: the rules are the same, the test stays fast


@pytest.fixture(scope="module")
def api():
    return mulap.load("supervised_mtt", device="cpu")


def _noise(n: int, seconds: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, int(seconds * SR), generator=g) * 2 - 1


def test_model_has_what_hear_asks_for(model):
    assert isinstance(model, torch.nn.Module) and model.name == "supervised_mtt"
    assert model.sample_rate in (16000, 22050, 44100, 48000)
    assert isinstance(model.scene_embedding_size, int) and isinstance(model.timestamp_embedding_size, int)
    assert model.scene_embedding_size == model.timestamp_embedding_size == 1506
    assert model.to("cpu") is model and next(model.parameters()).device.type == "cpu"


def test_scene_embeddings_rules_and_equal_to_model_embed(model, api):
    audio = _noise(3, 3.74)
    emb = hear.get_scene_embeddings(audio, model)
    assert emb.dtype == torch.float32 and emb.shape == (3, model.scene_embedding_size)
    want = api.embed([a.numpy() for a in audio], SR)
    np.testing.assert_allclose(emb.numpy(), want, rtol=1e-5, atol=1e-5)
    short = _noise(2, 1.2)  # shorter than one chunk: one zero-padded chunk, as mulap embed
    np.testing.assert_allclose(
        hear.get_scene_embeddings(short, model).numpy(), api.embed([a.numpy() for a in short], SR), rtol=1e-5, atol=1e-5
    )


def test_timestamp_embeddings_rules(model, api):
    audio = _noise(2, 1.0, seed=1)
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    assert emb.dtype == torch.float32 and ts.dtype == torch.float32
    assert emb.shape == (2, 5, model.timestamp_embedding_size) and ts.shape == emb.shape[:2]
    assert torch.equal(ts[0], torch.tensor([0.0, 250.0, 500.0, 750.0, 1000.0])) and torch.equal(ts[0], ts[1])
    diff = torch.diff(ts)
    assert (diff > 0).all() and torch.all(torch.abs(diff - diff.mean()) < 1e-3)  # increasing, regular
    # the embedding at t is the backbone on the 3 s window centred on t, zero-padded past the clip
    window = torch.zeros(48000)
    window[24000 - 4000 : 24000 - 4000 + 16000] = audio[0]  # t = 250 ms: the clip starts 1.25 s into the window
    np.testing.assert_allclose(emb[0, 1].numpy(), api.chunk_features(window[None]).numpy()[0], rtol=1e-5, atol=1e-5)


def test_batch_independence(model):
    audio = _noise(3, 1.0, seed=2)
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    alone, ts1 = hear.get_timestamp_embeddings(audio[1:2], model)
    np.testing.assert_allclose(emb[1:2].numpy(), alone.numpy(), rtol=1e-5, atol=1e-5)
    assert torch.equal(ts[1:2], ts1)
    scene = hear.get_scene_embeddings(audio, model)
    np.testing.assert_allclose(scene[2:3].numpy(), hear.get_scene_embeddings(audio[2:3], model).numpy(), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(scene[0], scene[1])  # different clips, different embeddings


def test_load_model_takes_what_mulap_load_takes(tmp_path):
    path = save_backbone(mulap.load("random", seed=3).backbone, tmp_path / "b.safetensors")
    m = hear.load_model(str(path))
    assert m.name == str(path) and m.scene_embedding_size == 1506 and m.hop_ms == hear.DEFAULT_HOP_MS
    assert hear.load_model("supervised_msd").name == "supervised_msd"
    with pytest.raises(ValueError, match="unknown load_model argument"):
        hear.load_model("", hop=3)
    with pytest.raises(ValueError, match="hop_ms must be > 0"):
        hear.load_model("", hop_ms=0)
    with pytest.raises(ValueError, match="no such model file or folder"):
        hear.load_model(str(tmp_path / "nothing"))


@pytest.mark.parametrize(
    "audio, match",
    [
        (np.zeros((1, 16000), np.float32), "torch tensor"),
        (torch.zeros(16000), r"\[n_sounds, n_samples\]"),
        (torch.zeros(1, 16000, dtype=torch.int16), "floating point"),
        (torch.zeros(0, 16000), "empty"),
        (torch.full((1, 16000), float("nan")), "NaN"),
    ],
)
def test_bad_audio_is_a_clear_error(model, audio, match):
    with pytest.raises(ValueError, match=match):
        hear.get_scene_embeddings(audio, model)
    with pytest.raises(ValueError, match=match):
        hear.get_timestamp_embeddings(audio, model)
