"""BNTT against a hand-written per-step, per-channel version of its equation."""

import pytest
import torch
from torch import nn

from snn_norm_lite.models import build_snn
from snn_norm_lite.norms import BatchNormThroughTime2d, build_norm

T, B, C, H, W = 4, 5, 3, 3, 2
EPS = 1e-3


def naive_bntt(x, weight, eps, means=None, variances=None):
    """y_t = weight[t] * (x_t - mu_t) / sqrt(var_t + eps), statistics of step t over (B, H, W)."""
    y = torch.empty_like(x)
    for t in range(x.shape[0]):
        for c in range(x.shape[2]):
            values = x[t, :, c]
            m = values.mean() if means is None else means[t, c]
            v = ((values - m) ** 2).mean() if variances is None else variances[t, c]
            y[t, :, c] = weight[t, c] * (values - m) / torch.sqrt(v + eps)
    return y


def drifting_sequence(generator=None, dtype=torch.float64, shape=(T, B, C, H, W)):
    """Statistics that change with the step, as in a spiking layer."""
    steps = torch.arange(shape[0], dtype=dtype).view(-1, 1, 1, 1, 1)
    x = torch.randn(*shape, dtype=dtype, generator=generator)
    return x * (0.5 + steps) + 2.0 * steps - 1.0


def random_layer(momentum=0.3):
    layer = BatchNormThroughTime2d(C, T, eps=EPS, momentum=momentum).double()
    with torch.no_grad():
        layer.weight.copy_(torch.linspace(-1.5, 2.0, T * C).view(T, C))
    return layer


def test_training_output_and_gradients_match_naive_equation():
    layer = random_layer()
    x = drifting_sequence(torch.Generator().manual_seed(0)).requires_grad_()
    probe = torch.randn_like(x)
    y = layer(x)
    (y * probe).sum().backward()
    x2 = x.detach().clone().requires_grad_()
    w2 = layer.weight.detach().clone().requires_grad_()
    expected = naive_bntt(x2, w2, EPS)
    (expected * probe).sum().backward()
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(layer.weight.grad, w2.grad)


def test_running_statistics_per_step_and_eval():
    layer = random_layer()
    generator = torch.Generator().manual_seed(1)
    means, variances = torch.zeros(T, C, dtype=torch.float64), torch.ones(T, C, dtype=torch.float64)
    for _ in range(3):
        x = drifting_sequence(generator)
        layer(x)
        for t in range(T):
            for c in range(C):
                values = x[t, :, c].reshape(-1)
                n = values.numel()
                m = values.sum() / n
                means[t, c] = 0.7 * means[t, c] + 0.3 * m
                variances[t, c] = 0.7 * variances[t, c] + 0.3 * ((values - m) ** 2).sum() / (n - 1)
    torch.testing.assert_close(layer.running_mean, means)
    torch.testing.assert_close(layer.running_var, variances)
    assert int(layer.num_batches_tracked) == 3
    layer.eval()
    x = drifting_sequence(generator)
    torch.testing.assert_close(layer(x), naive_bntt(x, layer.weight.detach(), EPS, means, variances))


@pytest.mark.parametrize("training", [True, False])
def test_one_step_calls_equal_the_sequence_call(training):
    full, stepwise = random_layer(), random_layer()
    for layer in (full, stepwise):
        layer(drifting_sequence(torch.Generator().manual_seed(2)))  # some running statistics
        layer.train(training)
    x = drifting_sequence(torch.Generator().manual_seed(3)).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    probe = torch.randn_like(x)
    y = full(x)
    y_steps = torch.stack([stepwise(x2[t], t=t) for t in range(T)])
    torch.testing.assert_close(y_steps, y)
    (y * probe).sum().backward()
    (y_steps * probe).sum().backward()
    torch.testing.assert_close(x2.grad, x.grad)
    torch.testing.assert_close(stepwise.weight.grad, full.weight.grad)
    torch.testing.assert_close(stepwise.running_mean, full.running_mean)
    torch.testing.assert_close(stepwise.running_var, full.running_var)
    assert int(stepwise.num_batches_tracked) == int(full.num_batches_tracked)


def test_gradcheck_float64():
    x = drifting_sequence(torch.Generator().manual_seed(4), shape=(2, 3, C, 2, 2)).requires_grad_()
    layer = BatchNormThroughTime2d(C, 2, eps=EPS).double()
    with torch.no_grad():
        layer.weight.copy_(torch.randn(2, C, dtype=torch.float64))
    assert torch.autograd.gradcheck(lambda inp, w: layer(inp), (x, layer.weight))


def test_stable_statistics_at_a_large_offset_in_float32():
    """Raw moments E[x^2] - E[x]^2 would lose every digit of the variance here."""
    generator = torch.Generator().manual_seed(5)
    x64 = torch.randn(T, 16, C, 4, 4, dtype=torch.float64, generator=generator) * 0.5 + 1e4
    x32 = x64.float()
    layer = BatchNormThroughTime2d(C, T, momentum=1.0)
    y = layer(x32)
    truth = naive_bntt(x32.double(), torch.ones(T, C, dtype=torch.float64), 1e-5)
    torch.testing.assert_close(y.double(), truth, atol=2e-3, rtol=0)
    expected_var = x32.double().var(dim=(1, 3, 4), unbiased=True)
    torch.testing.assert_close(layer.running_var.double(), expected_var, rtol=1e-4, atol=0)


def test_constant_input_gives_finite_output_and_gradient():
    layer = BatchNormThroughTime2d(C, T)
    x = torch.full((T, B, C, H, W), -3.0, requires_grad=True)
    y = layer(x)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    torch.testing.assert_close(y, torch.zeros_like(y))


def test_state_dict_round_trip_and_repr():
    layer = random_layer()
    layer(drifting_sequence(torch.Generator().manual_seed(6)))
    fresh = BatchNormThroughTime2d(C, T, eps=EPS).double()
    fresh.load_state_dict(layer.state_dict())
    assert set(layer.state_dict()) == {"weight", "running_mean", "running_var", "num_batches_tracked"}
    layer.eval(), fresh.eval()
    x = drifting_sequence(torch.Generator().manual_seed(7))
    torch.testing.assert_close(fresh(x), layer(x))
    assert repr(layer) == "BatchNormThroughTime2d(3, num_steps=4, eps=0.001, momentum=0.3)"


def test_bad_inputs_raise_clear_errors():
    layer = BatchNormThroughTime2d(C, T)
    with pytest.raises(ValueError, match=r"BatchNormThroughTime2d: expected a 5-D input \[T, B, C, H, W\]"):
        layer(torch.randn(B, C, H, W))
    with pytest.raises(ValueError, match=r"expected a 4-D input \[B, C, H, W\] for a single step t=1"):
        layer(torch.randn(T, B, C, H, W), t=1)
    with pytest.raises(ValueError, match=r"expected 3 channels in dimension 2, got 5"):
        layer(torch.randn(T, B, 5, H, W))
    with pytest.raises(ValueError, match=r"built for num_steps=4, got a sequence of 6 steps"):
        layer(torch.randn(6, B, C, H, W))
    for bad_t in (4, -1):
        with pytest.raises(ValueError, match=rf"time step t={bad_t} is outside 0..3.*never clamped"):
            layer(torch.randn(B, C, H, W), t=bad_t)
    with pytest.raises(TypeError, match=r"time step t must be an int, got float"):
        layer(torch.randn(B, C, H, W), t=1.0)
    with pytest.raises(TypeError, match=r"floating-point tensor.*torch.int32"):
        layer(torch.ones(T, B, C, H, W, dtype=torch.int32))
    with pytest.raises(TypeError, match=r"input dtype torch.float64 differs"):
        layer(torch.randn(T, B, C, H, W, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"more than 1 value per channel"):
        layer(torch.randn(T, 1, C, 1, 1))
    with pytest.raises(ValueError, match=r"num_steps must be positive"):
        BatchNormThroughTime2d(C, 0)


def test_registry_builds_it_and_the_network_trains():
    assert isinstance(build_norm("bntt", 8, num_steps=4), BatchNormThroughTime2d)
    torch.manual_seed(0)
    model = build_snn("bntt", depth=3, width=8, num_steps=4)
    loss = nn.functional.cross_entropy(model(torch.rand(8, 1, 8, 8)), torch.arange(8))
    loss.backward()
    assert torch.isfinite(loss) and model.blocks[1].norm.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "layer_class, parameters, statistics_shape",
    [
        ("BatchNormThroughTime2d", {"weight": (4, 3)}, (4, 3)),
        ("TemporalEffectiveBatchNorm2d", {"weight": (3,), "bias": (3,), "time_weight": (4,)}, (3,)),
        ("TemporalAccumulatedBatchNorm2d", {"weight": (4, 3), "bias": (4, 3), "time_weight": (4,)}, (4, 3)),
    ],
)
def test_per_step_norms_share_one_base_and_keep_their_state_dict(layer_class, parameters, statistics_shape):
    """BNTT, TEBN and TAB subclass PerStepNorm; keys, shapes and repr are those of the checkpoints."""
    from snn_norm_lite import norms
    from snn_norm_lite.norms.step_statistics import PerStepNorm

    layer = getattr(norms, layer_class)(3, 4, eps=1e-3, momentum=0.2)
    assert isinstance(layer, PerStepNorm)
    expected = {name: shape for name, shape in parameters.items()}
    expected.update(running_mean=statistics_shape, running_var=statistics_shape, num_batches_tracked=())
    state = layer.state_dict()
    assert list(state) == list(expected)
    assert {name: tuple(value.shape) for name, value in state.items()} == expected
    assert repr(layer) == f"{layer_class}(3, num_steps=4, eps=0.001, momentum=0.2)"
    layer.running_mean.fill_(2.0)
    layer.running_var.fill_(3.0)
    layer.num_batches_tracked.fill_(5)
    layer.reset_running_stats()
    assert bool((layer.running_mean == 0).all()) and bool((layer.running_var == 1).all())
    assert int(layer.num_batches_tracked) == 0


# -- bad batches and second-order gradients ---------------------------------------------------------


def test_nan_batch_leaves_running_statistics_element_wise():
    layer = BatchNormThroughTime2d(C, T)
    layer(torch.randn(T, B, C, H, W))
    mean, var = layer.running_mean.clone(), layer.running_var.clone()
    assert torch.isnan(layer(torch.full((T, B, C, H, W), float("nan")))).all()
    assert torch.equal(layer.running_mean, mean) and torch.equal(layer.running_var, var)
    x = torch.randn(T, B, C, H, W)
    x[2, 0, 1, 0, 0] = float("nan")  # step 2, channel 1 only
    layer(x)
    assert torch.equal(layer.running_var[2, 1], var[2, 1])
    assert not torch.equal(layer.running_var[2, 0], var[2, 0]) and torch.isfinite(layer.running_var).all()
    layer(x[2], t=2)  # one step at a time: the same rule
    assert torch.equal(layer.running_var[2, 1], var[2, 1])


@pytest.mark.parametrize("shape", [(T, 0, C, H, W), (T, B, C, 0, 0), (T, 1, C, 1, 1)])
def test_empty_or_single_value_batches_are_refused(shape):
    layer = BatchNormThroughTime2d(C, T)
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    with pytest.raises(ValueError, match="BatchNormThroughTime2d: (got an empty|expected more than 1)"):
        layer(torch.randn(shape))
    assert all(torch.equal(state[k], v) for k, v in layer.state_dict().items())


def test_second_order_gradients_are_refused_with_a_clear_message():
    layer = BatchNormThroughTime2d(C, T).double()
    x = torch.randn(T, B, C, H, W, dtype=torch.float64, requires_grad=True)
    loss = (layer(x) * torch.randn(T, B, C, H, W, dtype=torch.float64)).sum()
    with pytest.raises(RuntimeError, match=r"normalise_per_step.*first-order only"):
        torch.autograd.grad(loss, x, create_graph=True)
    assert torch.isfinite(torch.autograd.grad(loss, x)[0]).all()  # first order still works
