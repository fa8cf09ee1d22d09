"""TAB against a hand-written O(T^2) version of its equation (statistics over the window 0..t)."""

import pytest
import torch
from torch import nn

from snn_norm_lite.models import build_snn
from snn_norm_lite.norms import (
    TemporalAccumulatedBatchNorm2d,
    build_norm,
    tab_window_statistics,
    tab_window_statistics_naive,
)
from snn_norm_lite.norms.tab import window_statistics

T, B, C, H, W = 4, 5, 3, 3, 2
EPS, MOMENTUM = 1e-3, 0.3


def naive_window_statistics(x):
    """mu_{0:t}, var_{0:t} per channel: mean and biased variance of x[0..t] over (steps, B, H, W)."""
    means = torch.empty(x.shape[0], x.shape[2], dtype=x.dtype)
    variances = torch.empty_like(means)
    for t in range(x.shape[0]):
        for c in range(x.shape[2]):
            values = x[: t + 1, :, c]
            means[t, c] = values.mean()
            variances[t, c] = ((values - values.mean()) ** 2).mean()
    return means, variances


def naive_tab(x, weight, bias, p, eps, means=None, variances=None):
    """y_t = p_t^2 * (weight[t] * (x_t - mu_{0:t}) / sqrt(var_{0:t} + eps) + bias[t])."""
    if means is None:
        means, variances = naive_window_statistics(x)
    rows = []
    for t in range(x.shape[0]):
        m = means[t].view(1, -1, 1, 1)
        v = variances[t].view(1, -1, 1, 1)
        w, b = weight[t].view(1, -1, 1, 1), bias[t].view(1, -1, 1, 1)
        rows.append(p[t] ** 2 * (w * (x[t] - m) / torch.sqrt(v + eps) + b))
    return torch.stack(rows)


def drifting_sequence(generator=None, shape=(T, B, C, H, W), dtype=torch.float64):
    steps = torch.arange(shape[0], dtype=dtype).view(-1, 1, 1, 1, 1)
    return torch.randn(*shape, dtype=dtype, generator=generator) * (0.5 + steps) + 2.0 * steps - 1.0


def random_layer(num_steps=T):
    layer = TemporalAccumulatedBatchNorm2d(C, num_steps, eps=EPS, momentum=MOMENTUM).double()
    with torch.no_grad():
        layer.weight.copy_(torch.linspace(-1.5, 2.0, num_steps * C).view(num_steps, C))
        layer.bias.copy_(torch.linspace(0.5, -0.5, num_steps * C).view(num_steps, C))
        layer.time_weight.copy_(torch.linspace(0.5, 1.5, num_steps))
    return layer


def parameters(layer):
    return layer.weight, layer.bias, layer.time_weight


def test_training_output_and_gradients_match_naive_equation():
    layer = random_layer()
    x = drifting_sequence(torch.Generator().manual_seed(0)).requires_grad_()
    probe = torch.randn_like(x)
    y = layer(x)
    (y * probe).sum().backward()
    x2 = x.detach().clone().requires_grad_()
    params = [p.detach().clone().requires_grad_() for p in parameters(layer)]
    expected = naive_tab(x2, *params, EPS)
    (expected * probe).sum().backward()
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(x.grad, x2.grad)
    for got, want in zip(parameters(layer), params):
        torch.testing.assert_close(got.grad, want.grad)


def test_gradients_reach_earlier_steps_but_never_later_ones():
    layer = random_layer()
    x = drifting_sequence(torch.Generator().manual_seed(1)).requires_grad_()
    (layer(x)[2] * torch.randn(B, C, H, W, dtype=torch.float64)).sum().backward()
    assert x.grad[0].abs().sum() > 0 and x.grad[1].abs().sum() > 0  # through the window statistics
    assert torch.equal(x.grad[3], torch.zeros_like(x.grad[3]))  # causal


def test_running_window_statistics_and_eval():
    layer = random_layer()
    generator = torch.Generator().manual_seed(2)
    means, variances = torch.zeros(T, C, dtype=torch.float64), torch.ones(T, C, dtype=torch.float64)
    for _ in range(3):
        x = drifting_sequence(generator)
        layer(x)
        for t in range(T):
            for c in range(C):
                values = x[: t + 1, :, c].reshape(-1)
                n = values.numel()
                means[t, c] = (1 - MOMENTUM) * means[t, c] + MOMENTUM * values.mean()
                variances[t, c] = (1 - MOMENTUM) * variances[t, c] + MOMENTUM * ((values - values.mean()) ** 2).sum() / (n - 1)
    torch.testing.assert_close(layer.running_mean, means)
    torch.testing.assert_close(layer.running_var, variances)
    layer.eval()
    x = drifting_sequence(generator)
    params = [p.detach() for p in parameters(layer)]
    torch.testing.assert_close(layer(x), naive_tab(x, *params, EPS, means, variances))


@pytest.mark.parametrize("training", [True, False])
def test_one_step_calls_equal_the_sequence_call(training):
    full, stepwise = random_layer(), random_layer()
    for layer in (full, stepwise):
        layer(drifting_sequence(torch.Generator().manual_seed(3)))
        layer.train(training)
    x = drifting_sequence(torch.Generator().manual_seed(4)).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    probe = torch.randn_like(x)
    y = full(x)
    y_steps = torch.stack([stepwise(x2[t], t=t) for t in range(T)])
    torch.testing.assert_close(y_steps, y)
    (y * probe).sum().backward()
    (y_steps * probe).sum().backward()
    torch.testing.assert_close(x2.grad, x.grad)
    for got, want in zip(parameters(stepwise), parameters(full)):
        torch.testing.assert_close(got.grad, want.grad)
    torch.testing.assert_close(stepwise.running_mean, full.running_mean)
    torch.testing.assert_close(stepwise.running_var, full.running_var)
    assert int(stepwise.num_batches_tracked) == int(full.num_batches_tracked)


def test_one_step_training_calls_must_come_in_order():
    layer = random_layer()
    x = drifting_sequence(torch.Generator().manual_seed(5))
    with pytest.raises(ValueError, match=r"must come in order t=0, 1, \.\.\., 3 .* expected t=0, got t=1"):
        layer(x[1], t=1)
    layer(x[0], t=0)
    with pytest.raises(ValueError, match=r"expected t=1, got t=2"):
        layer(x[2], t=2)
    with pytest.raises(ValueError, match=r"step t=1 has shape \(4, 3, 3, 2\) but the earlier steps"):
        layer(x[1, :4], t=1)
    layer(x[0], t=0)  # t=0 starts a new sequence at any time
    layer(x[1], t=1)
    layer.eval()
    layer(x[3], t=3)  # evaluation needs no window: any order


def test_linear_time_window_statistics_equal_the_quadratic_reference():
    x = drifting_sequence(torch.Generator().manual_seed(6), shape=(6, 4, C, 3, 3)).requires_grad_()
    fast_mean, fast_var = tab_window_statistics(x)
    slow_mean, slow_var = tab_window_statistics_naive(x)
    hand_mean, hand_var = naive_window_statistics(x)
    for got in ((fast_mean, fast_var), (slow_mean, slow_var)):
        torch.testing.assert_close(got[0], hand_mean)
        torch.testing.assert_close(got[1], hand_var)
    probe = torch.randn(2, 6, C, dtype=torch.float64)
    (grad_fast,) = torch.autograd.grad((probe[0] * fast_mean + probe[1] * fast_var).sum(), x)
    (grad_slow,) = torch.autograd.grad((probe[0] * slow_mean + probe[1] * slow_var).sum(), x)
    torch.testing.assert_close(grad_fast, grad_slow)


def test_window_statistics_are_stable_at_a_large_offset_in_float32():
    """Cumulative sums of x and x^2 would leave nothing of a unit variance at an offset of 1e4."""
    x64 = drifting_sequence(torch.Generator().manual_seed(7), shape=(T, 16, C, 4, 4)) + 1e4
    x32 = x64.float()
    truth_mean, truth_var = naive_window_statistics(x32.double())
    mean, var = tab_window_statistics(x32)
    torch.testing.assert_close(var.double(), truth_var, rtol=1e-3, atol=0)  # float32 means carry ~1e-3 at 1e4
    torch.testing.assert_close(mean.double(), truth_mean, rtol=1e-6, atol=0)
    layer = TemporalAccumulatedBatchNorm2d(C, T, momentum=1.0)
    y = layer(x32)
    truth = naive_tab(x32.double(), torch.ones(T, C), torch.zeros(T, C), torch.ones(T), 1e-5, truth_mean, truth_var)
    torch.testing.assert_close(y.double(), truth, atol=2e-3, rtol=0)
    # the combination rule itself, on per-step statistics with a huge common offset
    step_mean = torch.tensor([[1e4], [1e4 + 1.0], [1e4 + 2.0]])
    _, combined = window_statistics(step_mean, torch.ones(3, 1))
    torch.testing.assert_close(combined, torch.tensor([[1.0], [1.25], [1.0 + 2.0 / 3.0]]))


def test_gradcheck_float64():
    layer = random_layer(num_steps=3)
    x = drifting_sequence(torch.Generator().manual_seed(8), shape=(3, 2, C, 2, 2)).requires_grad_()
    assert torch.autograd.gradcheck(lambda inp, *p: layer(inp), (x, *parameters(layer)))


def test_constant_input_gives_finite_output_and_gradient():
    for stepwise in (False, True):
        layer = TemporalAccumulatedBatchNorm2d(C, T)
        x = torch.full((T, B, C, H, W), 2.5, requires_grad=True)
        y = torch.stack([layer(x[t], t=t) for t in range(T)]) if stepwise else layer(x)
        y.sum().backward()
        assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()


def test_state_dict_round_trip_and_repr():
    layer = random_layer()
    layer(drifting_sequence(torch.Generator().manual_seed(9)))
    fresh = TemporalAccumulatedBatchNorm2d(C, T, eps=EPS).double()
    fresh.load_state_dict(layer.state_dict())
    assert set(layer.state_dict()) == {
        "weight", "bias", "time_weight", "running_mean", "running_var", "num_batches_tracked"
    }
    layer.eval(), fresh.eval()
    x = drifting_sequence(torch.Generator().manual_seed(10))
    torch.testing.assert_close(fresh(x), layer(x))
    assert repr(layer) == "TemporalAccumulatedBatchNorm2d(3, num_steps=4, eps=0.001, momentum=0.3)"


def test_bad_inputs_raise_clear_errors():
    layer = TemporalAccumulatedBatchNorm2d(C, T)
    with pytest.raises(ValueError, match=r"expected a 5-D input \[T, B, C, H, W\]"):
        layer(torch.randn(B, C, H, W))
    with pytest.raises(ValueError, match=r"expected 3 channels in dimension 1, got 4"):
        layer(torch.randn(B, 4, H, W), t=0)
    with pytest.raises(ValueError, match=r"built for num_steps=4, got a sequence of 8 steps"):
        layer(torch.randn(8, B, C, H, W))
    with pytest.raises(ValueError, match=r"time step t=9 is outside 0..3"):
        layer(torch.randn(B, C, H, W), t=9)
    with pytest.raises(TypeError, match=r"floating-point tensor.*torch.int64"):
        layer(torch.ones(T, B, C, H, W, dtype=torch.long))
    with pytest.raises(TypeError, match=r"floating-point tensor"):
        tab_window_statistics_naive(torch.ones(T, B, C, H, W, dtype=torch.long))


def test_registry_builds_it_and_the_network_trains():
    assert isinstance(build_norm("tab", 8, num_steps=4), TemporalAccumulatedBatchNorm2d)
    torch.manual_seed(0)
    model = build_snn("tab", depth=3, width=8, num_steps=4)
    loss = nn.functional.cross_entropy(model(torch.rand(8, 1, 8, 8)), torch.arange(8))
    loss.backward()
    assert torch.isfinite(loss) and model.blocks[1].norm.time_weight.grad.abs().sum() > 0


# -- bad batches ------------------------------------------------------------------------------------


@pytest.mark.parametrize("one_step_at_a_time", [False, True])
def test_nan_batch_leaves_running_statistics(one_step_at_a_time):
    layer = TemporalAccumulatedBatchNorm2d(C, T)
    layer(torch.randn(T, B, C, H, W))
    mean, var = layer.running_mean.clone(), layer.running_var.clone()
    x = torch.full((T, B, C, H, W), float("nan"))
    y = torch.stack([layer(x[t], t=t) for t in range(T)]) if one_step_at_a_time else layer(x)
    assert torch.isnan(y).all()
    assert torch.equal(layer.running_mean, mean) and torch.equal(layer.running_var, var)
    x = torch.randn(T, B, C, H, W)
    x[2, 0, 1, 0, 0] = float("nan")  # windows 2.. of channel 1 see it; window 0..1 does not
    if one_step_at_a_time:
        for t in range(T):
            layer(x[t], t=t)
    else:
        layer(x)
    assert torch.equal(layer.running_var[2:, 1], var[2:, 1])
    assert not torch.equal(layer.running_var[1, 1], var[1, 1]) and torch.isfinite(layer.running_var).all()


@pytest.mark.parametrize("shape", [(T, 0, C, H, W), (T, B, C, 0, 0), (T, 1, C, 1, 1)])
def test_empty_or_single_value_batches_are_refused(shape):
    layer = TemporalAccumulatedBatchNorm2d(C, T)
    with pytest.raises(ValueError, match="TemporalAccumulatedBatchNorm2d"):
        layer(torch.randn(shape))
    with pytest.raises(ValueError, match="TemporalAccumulatedBatchNorm2d"):
        layer(torch.randn(shape)[0], t=0)
    assert torch.equal(layer.running_var, torch.ones(T, C)) and int(layer.num_batches_tracked) == 0


@pytest.mark.parametrize("shape", [(0, B, C, H, W), (T, 0, C, H, W), (T, B, C, 0, 0)])
def test_window_statistics_refuse_empty_sequences(shape):
    for function in (tab_window_statistics, tab_window_statistics_naive):
        with pytest.raises(ValueError, match=f"{function.__name__}: expected at least one time step"):
            function(torch.randn(shape))
