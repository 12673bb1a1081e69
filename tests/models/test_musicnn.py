"""Musicnn backbone: shapes, batching independence, config round-trip, variant behaviour."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from mulap.models.musicnn import Musicnn, MusicnnConfig, MusicnnTagger, TemporalBranch, same_padding


@pytest.fixture(scope="module")
def model() -> Musicnn:
    torch.manual_seed(0)
    net = Musicnn()
    # give BatchNorm non-trivial running statistics so eval mode is a real test
    net.train()
    with torch.no_grad():
        net(0.1 * torch.randn(4, 48000))
    return net.eval()


def test_default_architecture_sizes(model: Musicnn) -> None:
    cfg = model.config
    assert cfg.timbral_heights == (67, 38)
    assert [b.conv.weight.shape for b in model.timbral] == [(204, 1, 67, 7), (204, 1, 38, 7)]
    assert [b.conv.weight.shape for b in model.temporal] == [(51, 1, 129), (51, 1, 65), (51, 1, 33)]
    assert cfg.frontend_channels == 561
    assert model.backend[0].conv.weight.shape == (64, 561, 7)
    assert model.out_dim == 2 * (561 + 3 * 64) == 1506
    assert MusicnnConfig(backend_channels=512).out_dim == 2 * (561 + 3 * 512) == 4194


def test_output_shape_batch_chunks(model: Musicnn) -> None:
    x = 0.1 * torch.randn(2, 3, 48000)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 3, 1506)
    assert torch.isfinite(out).all()


def test_chunk_feature_independent_of_batch(model: Musicnn) -> None:
    """In eval mode a chunk's feature is the same alone or next to other chunks."""
    torch.manual_seed(1)
    x = 0.1 * torch.randn(2, 3, 48000)
    x[1, 2] *= 100.0  # a much louder neighbour must not change the others (per-example top_db)
    with torch.no_grad():
        batched = model(x)
        for b in range(2):
            for c in range(3):
                alone = model(x[b, c][None])[0]
                torch.testing.assert_close(batched[b, c], alone, atol=1e-4, rtol=1e-4)


def test_forward_mel_equals_forward(model: Musicnn) -> None:
    x = 0.1 * torch.randn(3, 48000)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.forward_mel(model.frontend(x)))


def test_pooling_order_is_max_then_mean(model: Musicnn) -> None:
    x = 0.1 * torch.randn(2, 48000)
    with torch.no_grad():
        frames = model.time_features(model.frontend(x))  # [N, 753, T]
        pooled = model(x)
    assert frames.shape == (2, 753, 188)
    torch.testing.assert_close(pooled[:, :753], frames.max(dim=-1).values)
    torch.testing.assert_close(pooled[:, 753:], frames.mean(dim=-1))


def test_same_padding_matches_tensorflow_rule() -> None:
    for k in (7, 32, 33, 64, 65, 128, 129):
        total = k - 1  # stride 1: TF pads k-1 in all, floor half before
        assert same_padding(k) == (total // 2, total - total // 2)
        y = F.conv1d(F.pad(torch.zeros(1, 1, 188), same_padding(k)), torch.zeros(1, 1, k))
        assert y.shape[-1] == 188


def test_temporal_modes_agree_on_band_constant_input() -> None:
    """With every mel band identical, averaging then convolving equals convolving each band then max."""
    torch.manual_seed(2)
    mean_conv = TemporalBranch(64, 51, "mean_conv", "conv_relu_bn", 1e-3, 0.1).eval()
    conv_max = TemporalBranch(64, 51, "conv_max", "conv_relu_bn", 1e-3, 0.1).eval()
    conv_max.load_state_dict(mean_conv.state_dict())
    x = torch.randn(2, 1, 1, 100).expand(2, 1, 96, 100)
    with torch.no_grad():
        torch.testing.assert_close(mean_conv(x), conv_max(x))


def test_training_step_backpropagates() -> None:
    torch.manual_seed(3)
    net = Musicnn(MusicnnConfig(timbral_channels=8, temporal_channels=4, backend_channels=8)).train()
    out = net(0.1 * torch.randn(2, 2, 16000))
    assert out.shape == (2, 2, net.out_dim)
    out.square().mean().backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert net.timbral[0].conv.weight.grad.abs().sum() > 0


def test_config_round_trip_and_unknown_key() -> None:
    cfg = MusicnnConfig(temporal_lengths=(128, 64, 32), compression="log10", bn_eps=1e-3, mel_norm="slaney")
    d = json.loads(json.dumps(cfg.to_dict()))
    back = MusicnnConfig.from_dict(d)
    assert back == cfg and back.temporal_lengths == (128, 64, 32)
    with pytest.raises(ValueError, match="bogus"):
        MusicnnConfig.from_dict({**d, "bogus": 1})
    with pytest.raises(ValueError, match="block_order"):
        MusicnnConfig(block_order="bn_conv")


def test_config_drives_frontend_and_bn() -> None:
    cfg = MusicnnConfig(compression="log10", mel_scale="slaney", mel_norm="slaney", bn_eps=1e-3)
    net = Musicnn(cfg)
    assert net.frontend.compression == "log10"
    assert all(m.eps == 1e-3 for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
    with torch.no_grad():
        mel = net.frontend(0.1 * torch.randn(1, 48000))
    assert (mel >= 0).all()  # log10(1 + 10000 x) of a power is non-negative


def test_tagger_outputs_probabilities() -> None:
    torch.manual_seed(4)
    tagger = MusicnnTagger(tag_names=[f"t{i}" for i in range(50)]).eval()
    with torch.no_grad():
        p = tagger(0.1 * torch.randn(2, 3, 48000))
    assert p.shape == (2, 3, 50)
    assert ((p >= 0) & (p <= 1)).all()
    assert tagger.head.dense.in_features == 1506 and tagger.head.dense.out_features == 200
    with pytest.raises(ValueError, match="tag names"):
        MusicnnTagger(tag_names=["a"])


def test_timbral_impls_agree_forward_and_backward() -> None:
    """The fast 'time_taps' formulation equals the plain Conv2d, values and gradients."""
    torch.manual_seed(5)
    fast = Musicnn(MusicnnConfig(timbral_channels=16, timbral_impl="time_taps")).train()
    plain = Musicnn(MusicnnConfig(timbral_channels=16, timbral_impl="conv2d")).train()
    plain.load_state_dict(fast.state_dict())
    x = 0.1 * torch.randn(3, 16000)
    out_fast, out_plain = fast(x), plain(x)
    torch.testing.assert_close(out_fast, out_plain, atol=1e-4, rtol=1e-4)
    out_fast.sum().backward()
    out_plain.sum().backward()
    for a, b in zip(fast.timbral, plain.timbral):
        torch.testing.assert_close(a.conv.weight.grad, b.conv.weight.grad, atol=1e-3, rtol=1e-3)
    # running statistics updated identically
    torch.testing.assert_close(fast.timbral[0].bn.running_var, plain.timbral[0].bn.running_var)
