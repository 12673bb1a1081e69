"""The fused timbral op (timbral_impl='fused') against the plain Conv2d modules, in float64 so that
any mismatch in the math (not rounding) shows: values, every gradient, BatchNorm running statistics."""

from __future__ import annotations

import pytest
import torch

from mulap.models.musicnn import Musicnn, MusicnnConfig


def _pair(**cfg) -> tuple[Musicnn, Musicnn]:
    """A fused and a conv2d Musicnn with the same, non-trivial weights (BN slopes of both signs,
    conv biases far from zero, an input BN that is not the identity), in float64."""
    torch.manual_seed(3)
    fused = Musicnn(MusicnnConfig(timbral_channels=12, timbral_impl="fused", **cfg)).double()
    plain = Musicnn(MusicnnConfig(timbral_channels=12, timbral_impl="conv2d", **cfg)).double()
    with torch.no_grad():
        for m in fused.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(torch.randn_like(m.weight))
                m.bias.copy_(torch.randn_like(m.bias))
                m.running_mean.copy_(torch.randn_like(m.running_mean))
                m.running_var.copy_(torch.rand_like(m.running_var) + 0.5)
        fused.input_bn.weight.fill_(1.3)
        fused.input_bn.bias.fill_(-0.4)
        for b in fused.timbral:
            b.conv.bias.add_(2.0)
    plain.load_state_dict(fused.state_dict())
    return fused, plain


def _wave(n: int = 3) -> torch.Tensor:
    return 0.1 * torch.randn(n, 12000, dtype=torch.float64, generator=torch.Generator().manual_seed(7))


def _check_grads(fused: Musicnn, plain: Musicnn, tol: float = 1e-9) -> None:
    for (name, a), (_, b) in zip(fused.named_parameters(), plain.named_parameters()):
        assert a.grad is not None and b.grad is not None, name
        scale = b.grad.abs().max().clamp_min(1.0)
        assert (a.grad - b.grad).abs().max() <= tol * scale, name


@pytest.mark.parametrize("train", [True, False])
def test_fused_equals_conv2d_values_gradients_and_statistics(train: bool) -> None:
    fused, plain = _pair()
    fused.train(train), plain.train(train)
    x = _wave()
    out_f, out_p = fused(x), plain(x)
    torch.testing.assert_close(out_f, out_p, atol=1e-10, rtol=1e-10)
    weight = torch.randn(out_p.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    (out_f * weight).sum().backward()
    (out_p * weight).sum().backward()
    _check_grads(fused, plain)
    assert fused.input_bn.weight.grad.abs() > 0 and fused.timbral[0].conv.weight.grad.abs().sum() > 0
    for (name, a), (_, b) in zip(fused.named_buffers(), plain.named_buffers()):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10, msg=name)


def test_cumulative_moving_average_statistics() -> None:
    fused, plain = _pair()
    for m in (*fused.modules(), *plain.modules()):
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None
    for _ in range(2):
        fused(_wave()), plain(_wave())
    for (name, a), (_, b) in zip(fused.named_buffers(), plain.named_buffers()):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10, msg=name)


def test_inference_path_matches_and_keeps_no_graph() -> None:
    fused, plain = _pair()
    fused.eval(), plain.eval()
    x = _wave()
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), plain(x), atol=1e-10, rtol=1e-10)
    with torch.no_grad():
        assert not fused(x).requires_grad


def test_musicnn_tf_order_inference_and_training_fallback() -> None:
    """conv -> ReLU -> BN (the published checkpoints): fused for inference, autograd fallback in training."""
    fused, plain = _pair(block_order="conv_relu_bn", bn_eps=1e-3)
    fused.eval(), plain.eval()
    x = _wave()
    with torch.no_grad():
        torch.testing.assert_close(fused(x), plain(x), atol=1e-10, rtol=1e-10)
    fused.train(), plain.train()
    out_f, out_p = fused(x), plain(x)
    torch.testing.assert_close(out_f, out_p, atol=1e-10, rtol=1e-10)
    out_f.sum().backward()
    out_p.sum().backward()
    _check_grads(fused, plain)


def test_bf16_autocast_close_to_float32() -> None:
    torch.manual_seed(0)
    fused = Musicnn(MusicnnConfig(timbral_channels=12)).train()
    ref = Musicnn(MusicnnConfig(timbral_channels=12, timbral_impl="conv2d")).train()
    ref.load_state_dict(fused.state_dict())
    x = _wave().float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fused(x)
    expected = ref(x)
    assert ((out.float() - expected).abs().max() / expected.abs().max()) < 0.05
    out.float().sum().backward()
    expected.sum().backward()
    g, g_ref = fused.timbral[0].conv.weight.grad, ref.timbral[0].conv.weight.grad
    assert torch.isfinite(g).all()
    assert torch.nn.functional.cosine_similarity(g.flatten(), g_ref.flatten(), dim=0) > 0.98


def test_mel_requiring_grad_takes_the_autograd_path() -> None:
    fused, plain = _pair()
    mel = fused.frontend(_wave()).requires_grad_(True)
    fused.forward_mel(mel).sum().backward()
    mel2 = mel.detach().clone().requires_grad_(True)
    plain.forward_mel(mel2).sum().backward()
    torch.testing.assert_close(mel.grad, mel2.grad, atol=1e-9, rtol=1e-9)
