"""A frozen backbone is frozen in training too: its BatchNorm keeps the running statistics it came with
(batch statistics would make its features depend on the batch, and the running ones would drift)."""

import pytest
import torch

from mulap.infra.config import load_config
from mulap.models.mulap import MuLaP
from tests.helpers import TINY_MODEL


@pytest.mark.parametrize("frozen", [True, False])
def test_frozen_backbone_keeps_its_batchnorm_statistics_in_training(frozen):
    torch.manual_seed(0)
    model = MuLaP(load_config(None, TINY_MODEL + [f"model_config.audio.freeze_backbone={str(frozen).lower()}"]).model_config)
    assert model.backbone.training is not frozen  # from construction (Lightning restores modes it captured then)
    model.eval()
    model.train()
    assert model.audio_layers[0].training  # the rest of the model trains either way
    assert model.backbone.training is not frozen
    bn = model.backbone.input_bn
    before = bn.running_mean.clone()
    waves = torch.randn(2, 2, 48000) * 0.1
    mask = torch.ones(2, 2, dtype=torch.bool)
    feats = model.chunk_features(waves, mask)
    if frozen:
        assert torch.equal(bn.running_mean, before)
        with torch.no_grad():
            reference = model.backbone.eval()(waves.reshape(4, 48000)).reshape(2, 2, -1)
        torch.testing.assert_close(feats, reference)
        assert not feats.requires_grad
    else:
        assert not torch.equal(bn.running_mean, before)
