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


# -- bad batches, dtypes, arguments (the input contract) ------------------------------------------

from snn_norm_lite.norms import BatchNorm2d, SequenceBatchNorm2d, fold_batchnorms  # noqa: E402

SEQUENCE_LAYERS = [lambda: SequenceBatchNorm2d(3), lambda: ThresholdDependentBatchNorm2d(3, v_th=0.5)]


def trained(make):
    layer = make().train()
    layer(torch.randn(4, 6, 3, 5, 5, generator=torch.Generator().manual_seed(0)) * 2 + 1)
    return layer


@pytest.mark.parametrize("make", SEQUENCE_LAYERS)
def test_nan_batch_leaves_running_statistics_and_shows_in_the_output(make):
    layer = trained(make)
    mean, var = layer.running_mean.clone(), layer.running_var.clone()
    y = layer(torch.full((4, 6, 3, 5, 5), float("nan")))
    assert torch.isnan(y).all()
    assert torch.equal(layer.running_mean, mean) and torch.equal(layer.running_var, var)
    x = torch.randn(4, 6, 3, 5, 5)
    x[0, 0, 1, 0, 0] = float("inf")  # channel 1 poisoned, channels 0 and 2 normal
    layer(x)
    assert torch.equal(layer.running_mean[1], mean[1]) and torch.equal(layer.running_var[1], var[1])
    assert not torch.equal(layer.running_mean[0], mean[0]) and torch.isfinite(layer.running_var).all()


@pytest.mark.parametrize("make", SEQUENCE_LAYERS)
@pytest.mark.parametrize("shape", [(4, 0, 3, 5, 5), (4, 6, 3, 0, 0), (4, 1, 3, 1, 1), (0, 6, 3, 5, 5)])
def test_empty_or_single_value_batches_are_refused_before_anything_changes(make, shape):
    layer = trained(make)
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    with pytest.raises(ValueError, match=type(layer).__name__):
        layer(torch.randn(shape))
    assert all(torch.equal(state[k], v) for k, v in layer.state_dict().items())


@pytest.mark.parametrize("make", SEQUENCE_LAYERS)
def test_wrong_dtype_is_a_type_error_naming_the_layer(make):
    layer = make()
    with pytest.raises(TypeError, match=rf"{type(layer).__name__}: input dtype torch.float64.*\.float\(\).*layer\.double\(\)"):
        layer(torch.randn(4, 6, 3, 5, 5, dtype=torch.float64))
    assert layer.double()(torch.randn(4, 6, 3, 5, 5, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"eps": float("nan")}, ValueError, "eps must be a finite number"),
        ({"momentum": None}, TypeError, "momentum must be a real number"),
        ({"momentum": 1.5}, ValueError, r"momentum must lie in \(0, 1\]"),
        ({"affine": 1}, TypeError, "affine must be True or False"),
        ({"track_running_stats": "yes"}, TypeError, "track_running_stats must be True or False"),
        ({"num_features": 0}, ValueError, "num_features must be positive"),
        ({"num_features": 3.0}, TypeError, "num_features must be an int"),
    ],
)
def test_sequence_batchnorm_checks_its_arguments(kwargs, error, match):
    with pytest.raises(error, match=rf"SequenceBatchNorm2d: {match}"):
        SequenceBatchNorm2d(**{"num_features": 3, **kwargs})


def test_tdbn_checks_its_arguments():
    for kwargs, error in [({"alpha": True}, TypeError), ({"v_th": float("inf")}, ValueError), ({"eps": "1e-5"}, TypeError)]:
        with pytest.raises(error, match="ThresholdDependentBatchNorm2d"):
            ThresholdDependentBatchNorm2d(3, **kwargs)


def test_checked_batchnorm2d_equals_pytorchs_and_folds():
    torch.manual_seed(0)
    ours, reference = BatchNorm2d(3), nn.BatchNorm2d(3)
    assert ours.state_dict().keys() == reference.state_dict().keys() and repr(ours) == repr(reference)
    for _ in range(3):
        x = torch.randn(8, 3, 5, 5) * 2 + 1
        assert torch.equal(ours(x), reference(x))
    assert torch.equal(ours.running_var, reference.running_var)
    ours(torch.full((8, 3, 5, 5), float("nan")))
    assert torch.equal(ours.running_mean, reference.running_mean)
    with pytest.raises(ValueError, match="BatchNorm2d: got an empty training batch"):
        ours(torch.randn(0, 3, 5, 5))
    model = nn.Sequential(nn.Conv2d(1, 3, 3), BatchNorm2d(3))
    model(torch.randn(8, 1, 6, 6))
    x = torch.randn(2, 1, 6, 6)
    assert torch.allclose(fold_batchnorms(model)(x), model.eval()(x), atol=1e-5)


def test_folding_functions_say_they_expected_modules():
    with pytest.raises(TypeError, match="fold_batchnorms: expected an nn.Module, got str"):
        fold_batchnorms("model")
    with pytest.raises(TypeError, match=r"fold_batchnorm_into_conv: expected \(nn.Conv2d, nn.BatchNorm2d\)"):
        fold_batchnorm_into_conv(nn.Conv2d(1, 3, 3), "bn")
