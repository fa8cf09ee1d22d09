"""tdBN against a hand-written per-channel version of its equation."""

import math

import pytest
import torch
from torch import nn

from snn_norm_lite.models import build_snn
from snn_norm_lite.norms import ThresholdDependentBatchNorm2d, build_norm, fold_batchnorm_into_conv


def naive_tdbn(x, weight, bias, alpha, v_th, eps, mean=None, var=None):
    """y = weight * alpha * v_th * (x - mu) / sqrt(var + eps) + bias, statistics per channel over (T, B, H, W)."""
    y = torch.empty_like(x)
    for c in range(x.shape[2]):
        values = x[:, :, c]
        m = values.mean() if mean is None else mean[c]
        v = ((values - m) ** 2).mean() if var is None else var[c]
        y[:, :, c] = weight[c] * alpha * v_th * (values - m) / torch.sqrt(v + eps) + bias[c]
    return y


def random_layer(channels=3, alpha=1 / math.sqrt(2), v_th=0.5, momentum=0.3, eps=1e-3):
    torch.manual_seed(0)
    layer = ThresholdDependentBatchNorm2d(channels, alpha=alpha, v_th=v_th, eps=eps, momentum=momentum).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([0.5, -1.5, 2.0]))
        layer.bias.copy_(torch.tensor([0.1, 0.0, -0.7]))
    return layer


def sequence(generator=None, shape=(4, 5, 3, 3, 3)):
    return torch.randn(*shape, dtype=torch.float64, generator=generator) * 2 + torch.tensor([1.0, -3.0, 0.5]).view(
        1, 1, 3, 1, 1
    ).double()


def test_training_output_matches_naive_equation():
    layer = random_layer()
    x = sequence()
    expected = naive_tdbn(x, layer.weight.detach(), layer.bias.detach(), 1 / math.sqrt(2), 0.5, 1e-3)
    torch.testing.assert_close(layer(x), expected)


def test_output_standard_deviation_is_alpha_times_threshold():
    layer = ThresholdDependentBatchNorm2d(3, alpha=1 / math.sqrt(2), v_th=2.0, eps=1e-8).double()
    y = layer(sequence())
    std = y.transpose(0, 2).reshape(3, -1).std(dim=1, unbiased=False)
    torch.testing.assert_close(std, torch.full((3,), 2.0 / math.sqrt(2), dtype=torch.float64))


def test_running_statistics_follow_pytorch_rule_and_eval_uses_them():
    layer = random_layer()
    generator = torch.Generator().manual_seed(3)
    mean, var = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    for _ in range(3):
        x = sequence(generator)
        layer(x)
        values = x.transpose(0, 2).reshape(3, -1)
        mean = 0.7 * mean + 0.3 * values.mean(dim=1)
        var = 0.7 * var + 0.3 * values.var(dim=1, unbiased=True)
    torch.testing.assert_close(layer.running_mean, mean)
    torch.testing.assert_close(layer.running_var, var)
    assert int(layer.num_batches_tracked) == 3
    layer.eval()
    x = sequence(generator)
    expected = naive_tdbn(x, layer.weight.detach(), layer.bias.detach(), 1 / math.sqrt(2), 0.5, 1e-3, mean, var)
    torch.testing.assert_close(layer(x), expected)
    torch.testing.assert_close(layer.running_mean, mean)  # eval leaves the statistics alone


def test_gradients_match_naive_autograd():
    layer = random_layer()
    x = sequence().requires_grad_()
    weights = torch.randn_like(x)
    (layer(x) * weights).sum().backward()
    x2 = x.detach().clone().requires_grad_()
    w2 = layer.weight.detach().clone().requires_grad_()
    b2 = layer.bias.detach().clone().requires_grad_()
    (naive_tdbn(x2, w2, b2, 1 / math.sqrt(2), 0.5, 1e-3) * weights).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(layer.weight.grad, w2.grad)
    torch.testing.assert_close(layer.bias.grad, b2.grad)


def test_gradcheck_float64():
    layer = random_layer()
    x = sequence(shape=(2, 3, 3, 2, 2)).requires_grad_()
    assert torch.autograd.gradcheck(lambda inp, w, b: layer(inp), (x, layer.weight, layer.bias), fast_mode=True)


def test_as_batchnorm2d_folds_into_convolution():
    layer = random_layer()
    for _ in range(2):
        layer(sequence())
    layer.eval()
    conv = nn.Conv2d(2, 3, 3, padding=1).double()
    images = torch.randn(4 * 5, 2, 3, 3, dtype=torch.float64)
    expected = layer(conv(images).unflatten(0, (4, 5)))
    folded = fold_batchnorm_into_conv(conv, layer.as_batchnorm2d().eval())
    torch.testing.assert_close(folded(images).unflatten(0, (4, 5)), expected)


def test_state_dict_round_trip_and_repr():
    layer = random_layer()
    for _ in range(2):
        layer(sequence())
    fresh = ThresholdDependentBatchNorm2d(3, alpha=1 / math.sqrt(2), v_th=0.5, eps=1e-3).double()
    fresh.load_state_dict(layer.state_dict())
    layer.eval(), fresh.eval()
    x = sequence()
    torch.testing.assert_close(fresh(x), layer(x))
    assert "alpha=0.7071" in repr(layer) and "v_th=0.5" in repr(layer)


def test_float32_and_constant_input_without_nan():
    layer = ThresholdDependentBatchNorm2d(3)
    y = layer(torch.full((4, 2, 3, 2, 2), 7.0))
    assert y.dtype == torch.float32 and torch.isfinite(y).all()
    torch.testing.assert_close(y, torch.zeros_like(y), atol=1e-4, rtol=0)  # rounding of the mean / sqrt(eps)


def test_bad_inputs_raise_clear_errors():
    layer = ThresholdDependentBatchNorm2d(3)
    with pytest.raises(ValueError, match=r"ThresholdDependentBatchNorm2d: expected a 5-D input"):
        layer(torch.randn(5, 3, 4, 4))
    with pytest.raises(ValueError, match=r"expected 3 channels in dimension 2, got 4"):
        layer(torch.randn(2, 5, 4, 4, 4))
    with pytest.raises(TypeError, match=r"floating-point tensor.*torch.int64"):
        layer(torch.ones(2, 5, 3, 4, 4, dtype=torch.long))
    with pytest.raises(TypeError, match=r"input dtype torch.float64 differs from the layer's dtype torch.float32"):
        layer(torch.randn(2, 5, 3, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"alpha must be a positive number"):
        ThresholdDependentBatchNorm2d(3, alpha=0.0)
    with pytest.raises(ValueError, match=r"momentum must lie in \(0, 1\]"):
        ThresholdDependentBatchNorm2d(3, momentum=1.5)


def test_registry_builds_it_and_the_network_trains():
    assert isinstance(build_norm("tdbn", 8, num_steps=4), ThresholdDependentBatchNorm2d)
    with pytest.raises(ValueError, match=r"spiking-network normaliser"):
        build_norm("tdbn", 8)
    torch.manual_seed(0)
    model = build_snn("tdbn", depth=3, width=8, num_steps=4)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = nn.functional.cross_entropy(model(torch.rand(8, 1, 8, 8)), torch.arange(8))
    loss.backward()
    optimiser.step()
    assert torch.isfinite(loss) and model.blocks[1].norm.weight.grad.abs().sum() > 0
