"""HomeostaticNorm and TemporalHomeostaticNorm2d against a hand-written version of their rule."""

import math

import pytest
import torch
from torch import nn

from snn_norm_lite.norms import HomeostaticNorm, TemporalHomeostaticNorm2d


def naive_homeostatic(batches, eps=1e-5, eta=0.1, weight=None, bias=None, batch_free=True):
    """Per-channel loop: the output, then the EMA in gain space.

    ``batch_free=True``: the output uses the state from before the batch. ``batch_free=False``:
    the output uses the batch's own set point (g*, b*), as BatchNorm does in training.
    """
    channels = batches[0].shape[1]
    g = [1.0 / math.sqrt(1.0 + eps)] * channels
    b = [0.0] * channels
    outputs = []
    for x in batches:
        y = torch.empty_like(x)
        for c in range(channels):
            w = 1.0 if weight is None else float(weight[c])
            shift = 0.0 if bias is None else float(bias[c])
            values = x[:, c].reshape(-1).double()
            mean = values.mean().item()
            var = ((values - mean) ** 2).mean().item()
            g_star = 1.0 / math.sqrt(var + eps)
            b_star = -mean * g_star
            gain, offset = (g[c], b[c]) if batch_free else (g_star, b_star)
            y[:, c] = w * (gain * x[:, c] + offset) + shift
            g[c] = (1 - eta) * g[c] + eta * g_star
            b[c] = (1 - eta) * b[c] + eta * b_star
        outputs.append(y)
    return outputs, g, b


def stationary_batch(generator, batch=256, channels=16, size=8, dtype=torch.float32):
    shift = torch.linspace(-2.0, 3.0, channels).view(1, channels, 1, 1)
    scale = torch.linspace(0.2, 4.0, channels).view(1, channels, 1, 1)
    x = torch.randn(batch, channels, size, size, generator=generator, dtype=dtype)
    return x * scale.to(dtype) + shift.to(dtype)


@pytest.mark.parametrize("batch_free", [False, True])
@pytest.mark.parametrize("shape", [(32, 5), (16, 5, 7), (8, 5, 4, 3)])
def test_matches_naive_rule_for_1d_2d_inputs(shape, batch_free):
    torch.manual_seed(0)
    norm = HomeostaticNorm(5, momentum=0.2, batch_free=batch_free).double()
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2.0, 5))
        norm.bias.copy_(torch.linspace(-1.0, 1.0, 5))
    batches = [torch.randn(*shape, dtype=torch.float64) * 3 + 1 for _ in range(4)]
    got = [norm(x) for x in batches]
    expected, g, b = naive_homeostatic(
        batches, eta=0.2, weight=norm.weight.detach(), bias=norm.bias.detach(), batch_free=batch_free
    )
    for y, e in zip(got, expected):
        torch.testing.assert_close(y, e, rtol=1e-10, atol=1e-10)
    gain, shift = norm.gain_and_bias()
    torch.testing.assert_close(gain, torch.tensor(g, dtype=torch.float64))
    torch.testing.assert_close(shift, torch.tensor(b, dtype=torch.float64))
    assert int(norm.num_batches_tracked) == 4


def test_default_is_batch_statistics_in_training():
    assert HomeostaticNorm(3).batch_free is False
    assert TemporalHomeostaticNorm2d(3, 2).batch_free is False
    assert "batch_free=False" in repr(HomeostaticNorm(3))


def test_batch_free_output_does_not_depend_on_other_samples():
    torch.manual_seed(1)
    norm = HomeostaticNorm(3, batch_free=True)
    for _ in range(5):
        norm(torch.randn(64, 3, 4, 4) * 2 + 1)
    state = {k: v.clone() for k, v in norm.state_dict().items()}
    x = torch.randn(10, 3, 4, 4)
    together = norm(x)
    alone = []
    for i in range(10):
        norm.load_state_dict(state)  # every sample sees the same state, in training mode
        alone.append(norm(x[i : i + 1]))
    torch.testing.assert_close(together, torch.cat(alone))


def test_default_training_output_depends_on_the_batch():
    torch.manual_seed(1)
    norm = HomeostaticNorm(3)
    sample = torch.randn(1, 3, 4, 4)
    first = norm(torch.cat([sample, torch.randn(15, 3, 4, 4)]))[0]
    second = norm(torch.cat([sample, 5 * torch.randn(15, 3, 4, 4) + 2]))[0]
    assert not torch.allclose(first, second)


def test_no_gradient_flows_through_statistics_when_batch_free():
    norm = HomeostaticNorm(2, affine=False, batch_free=True)
    x = torch.randn(16, 2, requires_grad=True)
    norm(x).sum().backward()
    gain, _ = norm.gain_and_bias()
    # With the statistics constant, d(sum y)/dx is the gain used in the forward pass: 1/sqrt(1+eps).
    torch.testing.assert_close(x.grad, torch.full_like(x, 1 / math.sqrt(1 + norm.eps)))
    assert not torch.allclose(gain, torch.full_like(gain, 1 / math.sqrt(1 + norm.eps)))  # the state moved


def test_default_training_pass_equals_batchnorm_forward_and_backward():
    torch.manual_seed(2)
    x = torch.randn(32, 4, 5, 5, dtype=torch.float64) * 2 - 1
    norm = HomeostaticNorm(4).double()
    reference = nn.BatchNorm2d(4).double()
    with torch.no_grad():
        for layer in (norm, reference):
            layer.weight.copy_(torch.tensor([0.5, 1.0, 1.5, -2.0]))
            layer.bias.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
    torch.testing.assert_close(norm(x), reference(x))
    x1 = x.clone().requires_grad_()
    x2 = x.clone().requires_grad_()
    (norm(x1) ** 3).sum().backward()
    (reference(x2) ** 3).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(norm.weight.grad, reference.weight.grad)
    torch.testing.assert_close(norm.bias.grad, reference.bias.grad)


def test_default_evaluation_uses_the_ema_state_not_batchnorm_running_statistics():
    torch.manual_seed(6)
    norm, reference = HomeostaticNorm(3).double(), nn.BatchNorm2d(3).double()
    batches = [torch.randn(8, 3, 2, 2, dtype=torch.float64) * (i + 1) + i for i in range(5)]
    for x in batches:
        norm(x)
        reference(x)
    _, g, b = naive_homeostatic(batches, batch_free=False)
    x = torch.randn(6, 3, 2, 2, dtype=torch.float64)
    norm.eval()
    reference.eval()
    expected = x * torch.tensor(g, dtype=torch.float64).view(1, 3, 1, 1) + torch.tensor(b, dtype=torch.float64).view(1, 3, 1, 1)
    torch.testing.assert_close(norm(x), expected)
    # BatchNorm averages the unbiased variance in variance space: a different evaluation map.
    assert (norm(x) - reference(x)).abs().max() > 1e-3
    # In evaluation the output of a sample does not depend on its batchmates.
    torch.testing.assert_close(norm(x[:1]), norm(x)[:1])


def test_the_state_does_not_depend_on_the_mode():
    torch.manual_seed(7)
    default, batch_free = HomeostaticNorm(4), HomeostaticNorm(4, batch_free=True)
    for _ in range(6):
        x = torch.randn(16, 4, 3, 3) * 3 + 1
        default(x)
        batch_free(x)
    torch.testing.assert_close(default.running_mean, batch_free.running_mean)
    torch.testing.assert_close(default.running_var, batch_free.running_var)


@pytest.mark.parametrize("batch_free", [False, True])
def test_eval_freezes_state_and_batch_free_train_and_eval_agree(batch_free):
    torch.manual_seed(3)
    norm = HomeostaticNorm(3, batch_free=batch_free)
    for _ in range(3):
        norm(torch.randn(32, 3) + 2)
    x = torch.randn(8, 3)
    state = {k: v.clone() for k, v in norm.state_dict().items()}
    y_train = norm(x)
    norm.load_state_dict(state)
    norm.eval()
    y_eval = norm(x)
    if batch_free:
        torch.testing.assert_close(y_train, y_eval)
    else:
        assert not torch.allclose(y_train, y_eval)
    for key, value in norm.state_dict().items():
        torch.testing.assert_close(value, state[key])


@pytest.mark.parametrize("batch_free", [False, True])
def test_state_matches_batchnorm_after_warm_up_on_a_stationary_distribution(batch_free):
    """100 warm-up batches of 256x16x8x8, then the state (evaluation) against BatchNorm's training output."""
    generator = torch.Generator().manual_seed(0)
    norm, reference = HomeostaticNorm(16, batch_free=batch_free), nn.BatchNorm2d(16)
    for _ in range(100):
        batch = stationary_batch(generator)
        norm(batch)
        reference(batch)
    norm.eval()
    differences, means, stds = [], [], []
    for _ in range(5):
        batch = stationary_batch(generator)
        y, y_ref = norm(batch), reference(batch)
        differences.append((y - y_ref).abs().mean().item())
        means.append(y.mean(dim=(0, 2, 3)))
        stds.append(y.std(dim=(0, 2, 3)))
    assert max(differences) < 0.015
    assert torch.stack(means).abs().max() < 0.05
    assert (torch.stack(stds) - 1).abs().max() < 0.05


def test_loads_a_batchnorm_checkpoint():
    reference = nn.BatchNorm2d(4)
    reference(torch.randn(16, 4, 3, 3) * 3 + 2)
    norm = HomeostaticNorm(4)
    norm.load_state_dict(reference.state_dict())
    torch.testing.assert_close(norm.running_mean, reference.running_mean)


def test_float64_and_constant_input_give_no_nan():
    norm = HomeostaticNorm(3).double()
    y = norm(torch.full((8, 3, 2, 2), 5.0, dtype=torch.float64))
    assert y.dtype == torch.float64
    assert torch.isfinite(y).all()
    y = norm(torch.full((8, 3, 2, 2), 5.0, dtype=torch.float64))
    assert torch.isfinite(y).all()


def test_state_dict_round_trip():
    a = HomeostaticNorm(3)
    a(torch.randn(20, 3) * 4)
    b = HomeostaticNorm(3)
    b.load_state_dict(a.state_dict())
    x = torch.randn(5, 3)
    torch.testing.assert_close(a.eval()(x), b.eval()(x))


@pytest.mark.parametrize(
    "x, error, match",
    [
        (torch.randn(4), ValueError, "2-D or 3-D or 4-D"),
        (torch.randn(2, 3, 4, 4, 4), ValueError, "2-D or 3-D or 4-D"),
        (torch.randn(8, 5, 4, 4), ValueError, "expected 3 channels"),
        (torch.ones(8, 3, dtype=torch.long), TypeError, "floating-point"),
    ],
)
def test_bad_input_is_rejected(x, error, match):
    with pytest.raises(error, match=match):
        HomeostaticNorm(3)(x)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="momentum"):
        HomeostaticNorm(3, momentum=0.0)
    with pytest.raises(ValueError, match="num_features"):
        HomeostaticNorm(0)
    with pytest.raises(ValueError, match="eps"):
        HomeostaticNorm(3, eps=0.0)


# ---- the temporal variant ------------------------------------------------------------------


@pytest.mark.parametrize("batch_free", [False, True])
def test_temporal_keeps_one_state_per_step_like_separate_norms(batch_free):
    torch.manual_seed(4)
    steps, channels = 3, 4
    temporal = TemporalHomeostaticNorm2d(channels, steps, batch_free=batch_free).double()
    separate = [HomeostaticNorm(channels, batch_free=batch_free).double() for _ in range(steps)]
    for _ in range(4):
        x = torch.randn(steps, 6, channels, 3, 3, dtype=torch.float64) * torch.arange(1.0, steps + 1).view(-1, 1, 1, 1, 1)
        y = temporal(x)
        expected = torch.stack([separate[t](x[t]) for t in range(steps)])
        torch.testing.assert_close(y, expected)
    for t in range(steps):
        torch.testing.assert_close(temporal.running_mean[t], separate[t].running_mean)
        torch.testing.assert_close(temporal.running_var[t], separate[t].running_var)


def test_temporal_default_training_pass_is_per_step_batchnorm():
    torch.manual_seed(8)
    steps, channels = 3, 2
    x = torch.randn(steps, 10, channels, 3, 3, dtype=torch.float64) * torch.arange(1.0, steps + 1).view(-1, 1, 1, 1, 1)
    temporal = TemporalHomeostaticNorm2d(channels, steps).double()
    per_step = [nn.BatchNorm2d(channels).double() for _ in range(steps)]
    torch.testing.assert_close(temporal(x), torch.stack([per_step[t](x[t]) for t in range(steps)]))
    temporal.eval()
    gains, biases = temporal.gain_and_bias()
    expected = x * gains.view(steps, 1, channels, 1, 1) + biases.view(steps, 1, channels, 1, 1)
    torch.testing.assert_close(temporal(x), expected)


@pytest.mark.parametrize("batch_free", [False, True])
def test_temporal_step_calls_equal_the_sequence_call(batch_free):
    torch.manual_seed(5)
    a = TemporalHomeostaticNorm2d(2, 4, batch_free=batch_free)
    b = TemporalHomeostaticNorm2d(2, 4, batch_free=batch_free)
    for _ in range(3):
        x = torch.randn(4, 8, 2, 3, 3) + torch.arange(4.0).view(4, 1, 1, 1, 1)
        whole = a(x)
        stepped = torch.stack([b(x[t], t) for t in range(4)])
        torch.testing.assert_close(whole, stepped)
    torch.testing.assert_close(a.running_var, b.running_var)
    assert int(a.num_batches_tracked) == int(b.num_batches_tracked) == 3


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda n: n(torch.randn(2, 2, 3, 4, 4), 2), ValueError, r"t=2 is outside 0\.\.1"),
        (lambda n: n(torch.randn(2, 3, 4, 4), -1), ValueError, "outside"),
        (lambda n: n(torch.randn(2, 3, 4, 4), 1.0), TypeError, "must be an int"),
        (lambda n: n(torch.randn(3, 2, 3, 4, 4)), ValueError, "num_steps=2"),
        (lambda n: n(torch.randn(2, 2, 5, 4, 4)), ValueError, "expected 3 channels"),
        (lambda n: n(torch.randn(2, 5, 4, 4)), ValueError, "5-D"),
        (lambda n: n(torch.ones(2, 2, 3, 4, 4, dtype=torch.int32)), TypeError, "floating-point"),
    ],
)
def test_temporal_bad_input_is_rejected(call, error, match):
    with pytest.raises(error, match=match):
        call(TemporalHomeostaticNorm2d(3, 2))


def test_temporal_state_dict_round_trip_and_float64():
    a = TemporalHomeostaticNorm2d(3, 2).double()
    a(torch.randn(2, 4, 3, 2, 2, dtype=torch.float64) * 3)
    b = TemporalHomeostaticNorm2d(3, 2).double()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 4, 3, 2, 2, dtype=torch.float64)
    torch.testing.assert_close(a.eval()(x), b.eval()(x))
    assert "num_steps=2" in repr(a)


# -- bad batches and arguments (the input contract) -------------------------------------------------


def homeostatic_layers(batch_free):
    return [
        (HomeostaticNorm(3, momentum=0.5, batch_free=batch_free), (8, 3, 4, 4)),
        (TemporalHomeostaticNorm2d(3, 2, momentum=0.5, batch_free=batch_free), (2, 8, 3, 4, 4)),
    ]


@pytest.mark.parametrize("batch_free", [False, True])
def test_empty_and_single_value_batches_are_refused_and_the_state_kept(batch_free):
    for layer, shape in homeostatic_layers(batch_free):
        layer(torch.randn(shape) * 3)
        state = {k: v.clone() for k, v in layer.state_dict().items()}
        empty_batch = shape[:-4] + (0,) + shape[-3:]
        empty_maps = shape[:-2] + (0, 0)
        one_value = shape[:-4] + (1, 3, 1, 1)
        for bad in (empty_batch, empty_maps, one_value):
            with pytest.raises(ValueError, match=type(layer).__name__):
                layer(torch.randn(bad))
        if isinstance(layer, TemporalHomeostaticNorm2d):
            with pytest.raises(ValueError, match="TemporalHomeostaticNorm2d"):
                layer(torch.randn(1, 3, 1, 1), 0)  # one step, one value
        assert all(torch.equal(state[k], v) for k, v in layer.state_dict().items())
        gain, _ = layer.gain_and_bias()
        assert torch.isfinite(gain).all() and gain.max() < 1.0  # no jump to 1/sqrt(eps)


@pytest.mark.parametrize("batch_free", [False, True])
def test_non_finite_batches_never_poison_the_state(batch_free):
    for layer, shape in homeostatic_layers(batch_free):
        layer(torch.randn(shape) * 3)
        mean, var = layer.running_mean.clone(), layer.running_var.clone()
        assert torch.isnan(layer(torch.full(shape, float("nan")))).all()
        assert torch.equal(layer.running_mean, mean) and torch.equal(layer.running_var, var)
        x = torch.randn(shape)
        x[..., 0, 1, 0, 0] = float("inf")  # channel 1 of every step
        layer(x)
        assert torch.equal(layer.running_var[..., 1], var[..., 1])
        assert not torch.equal(layer.running_var[..., 0], var[..., 0]) and torch.isfinite(layer.running_var).all()


def test_homeostatic_layers_check_flags_and_dtype():
    for cls, args in ((HomeostaticNorm, (3,)), (TemporalHomeostaticNorm2d, (3, 2))):
        with pytest.raises(TypeError, match=rf"{cls.__name__}: batch_free must be True or False"):
            cls(*args, batch_free="yes")
        with pytest.raises(TypeError, match=rf"{cls.__name__}: affine must be True or False"):
            cls(*args, affine=1)
        with pytest.raises(ValueError, match=rf"{cls.__name__}: momentum"):
            cls(*args, momentum=float("nan"))
    with pytest.raises(TypeError, match=r"HomeostaticNorm: input dtype torch.float64.*layer\.double\(\)"):
        HomeostaticNorm(3)(torch.randn(4, 3, 2, 2, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"TemporalHomeostaticNorm2d: input dtype torch.float64"):
        TemporalHomeostaticNorm2d(3, 2).eval()(torch.randn(2, 4, 3, 2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"TemporalHomeostaticNorm2d: built for num_steps=2"):
        TemporalHomeostaticNorm2d(3, 2)(torch.randn(0, 4, 3, 2, 2))
