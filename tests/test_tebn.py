"""TEBN against a hand-written version of its equation: shared statistics, a scale per step."""

import pytest
import torch
from torch import nn

from snn_norm_lite.models import build_snn
from snn_norm_lite.norms import TemporalEffectiveBatchNorm2d, build_norm

T, B, C, H, W = 4, 5, 3, 3, 2
EPS, MOMENTUM = 1e-3, 0.3  # not PyTorch's defaults: the official code ignores both


def naive_tebn(x, weight, bias, p, eps, mean=None, var=None):
    """y_t = p_t * (weight * (x_t - mu) / sqrt(var + eps) + bias), statistics over (T, B, H, W)."""
    y = torch.empty_like(x)
    for c in range(x.shape[2]):
        values = x[:, :, c]
        m = values.mean() if mean is None else mean[c]
        v = ((values - m) ** 2).mean() if var is None else var[c]
        for t in range(x.shape[0]):
            y[t, :, c] = p[t] * (weight[c] * (values[t] - m) / torch.sqrt(v + eps) + bias[c])
    return y


def drifting_sequence(generator=None, shape=(T, B, C, H, W)):
    steps = torch.arange(shape[0], dtype=torch.float64).view(-1, 1, 1, 1, 1)
    return torch.randn(*shape, dtype=torch.float64, generator=generator) * (0.5 + steps) + 2.0 * steps - 1.0


def random_layer(num_steps=T):
    layer = TemporalEffectiveBatchNorm2d(C, num_steps, eps=EPS, momentum=MOMENTUM).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([0.5, -1.5, 2.0]))
        layer.bias.copy_(torch.tensor([0.1, 0.3, -0.7]))
        layer.time_weight.copy_(torch.linspace(0.5, 1.5, num_steps))
    return layer


def test_training_output_and_gradients_match_naive_equation():
    layer = random_layer()
    x = drifting_sequence(torch.Generator().manual_seed(0)).requires_grad_()
    probe = torch.randn_like(x)
    y = layer(x)
    (y * probe).sum().backward()
    x2 = x.detach().clone().requires_grad_()
    params = [p.detach().clone().requires_grad_() for p in (layer.weight, layer.bias, layer.time_weight)]
    expected = naive_tebn(x2, *params, EPS)
    (expected * probe).sum().backward()
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(x.grad, x2.grad)
    for got, want in zip((layer.weight, layer.bias, layer.time_weight), params):
        torch.testing.assert_close(got.grad, want.grad)


def test_running_statistics_honour_eps_and_momentum_and_eval_uses_them():
    layer = random_layer()
    generator = torch.Generator().manual_seed(1)
    mean, var = torch.zeros(C, dtype=torch.float64), torch.ones(C, dtype=torch.float64)
    for _ in range(3):
        x = drifting_sequence(generator)
        layer(x)
        values = x.transpose(0, 2).reshape(C, -1)
        mean = (1 - MOMENTUM) * mean + MOMENTUM * values.mean(dim=1)
        var = (1 - MOMENTUM) * var + MOMENTUM * values.var(dim=1, unbiased=True)
    torch.testing.assert_close(layer.running_mean, mean)
    torch.testing.assert_close(layer.running_var, var)
    layer.eval()
    x = drifting_sequence(generator)
    params = (layer.weight.detach(), layer.bias.detach(), layer.time_weight.detach())
    torch.testing.assert_close(layer(x), naive_tebn(x, *params, EPS, mean, var))


def test_train_and_eval_use_the_same_shared_statistics():
    """With momentum 1 the running statistics are the last batch's: eval reproduces training.

    A layer that normalised each step with its own statistics in training (and shared ones in
    evaluation) would disagree by several units here, because the steps' means drift apart.
    """
    layer = TemporalEffectiveBatchNorm2d(C, T, momentum=1.0).double()
    x = drifting_sequence(torch.Generator().manual_seed(2), shape=(T, 64, C, 4, 4))
    y_train = layer(x)
    y_eval = layer.eval()(x)
    n = T * 64 * 4 * 4
    torch.testing.assert_close(y_eval, y_train, atol=2.0 / n * y_train.abs().max().item(), rtol=0)
    per_step = (x - x.mean(dim=(1, 3, 4), keepdim=True)) / x.std(dim=(1, 3, 4), keepdim=True, unbiased=False)
    assert (y_train - per_step).abs().max() > 1.0


def test_one_step_is_refused_in_training_and_equals_the_sequence_in_eval():
    layer = random_layer()
    layer(drifting_sequence(torch.Generator().manual_seed(3)))
    x = drifting_sequence(torch.Generator().manual_seed(4))
    with pytest.raises(ValueError, match=r"TemporalEffectiveBatchNorm2d: in training .* needs the whole sequence"):
        layer(x[0], t=0)
    layer.eval()
    y = layer(x)
    torch.testing.assert_close(torch.stack([layer(x[t], t=t) for t in range(T)]), y)


def test_gradcheck_float64():
    layer = random_layer(num_steps=2)
    x = drifting_sequence(torch.Generator().manual_seed(5), shape=(2, 3, C, 2, 2)).requires_grad_()
    params = (layer.weight, layer.bias, layer.time_weight)
    assert torch.autograd.gradcheck(lambda inp, *p: layer(inp), (x, *params))


def test_constant_input_gives_finite_output_and_gradient():
    layer = TemporalEffectiveBatchNorm2d(C, T)
    x = torch.full((T, B, C, H, W), 5.0, requires_grad=True)
    y = layer(x)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all() and torch.isfinite(layer.time_weight.grad).all()


def test_state_dict_round_trip_and_repr():
    layer = random_layer()
    layer(drifting_sequence(torch.Generator().manual_seed(6)))
    fresh = TemporalEffectiveBatchNorm2d(C, T, eps=EPS).double()
    fresh.load_state_dict(layer.state_dict())
    layer.eval(), fresh.eval()
    x = drifting_sequence(torch.Generator().manual_seed(7))
    torch.testing.assert_close(fresh(x), layer(x))
    assert repr(layer) == "TemporalEffectiveBatchNorm2d(3, num_steps=4, eps=0.001, momentum=0.3)"


def test_bad_inputs_raise_clear_errors():
    layer = TemporalEffectiveBatchNorm2d(C, T)
    with pytest.raises(ValueError, match=r"expected a 5-D input \[T, B, C, H, W\]"):
        layer(torch.randn(B, C, H, W))
    with pytest.raises(ValueError, match=r"expected 3 channels in dimension 2, got 2"):
        layer(torch.randn(T, B, 2, H, W))
    with pytest.raises(ValueError, match=r"built for num_steps=4, got a sequence of 3 steps"):
        layer(torch.randn(3, B, C, H, W))
    with pytest.raises(TypeError, match=r"floating-point tensor.*torch.int64"):
        layer(torch.ones(T, B, C, H, W, dtype=torch.long))
    layer.eval()
    with pytest.raises(ValueError, match=r"time step t=4 is outside 0..3"):
        layer(torch.randn(B, C, H, W), t=4)
    with pytest.raises(ValueError, match=r"eps must be a positive number"):
        TemporalEffectiveBatchNorm2d(C, T, eps=0.0)


def test_registry_builds_it_and_the_network_trains():
    assert isinstance(build_norm("tebn", 8, num_steps=4), TemporalEffectiveBatchNorm2d)
    torch.manual_seed(0)
    model = build_snn("tebn", depth=3, width=8, num_steps=4)
    loss = nn.functional.cross_entropy(model(torch.rand(8, 1, 8, 8)), torch.arange(8))
    loss.backward()
    assert torch.isfinite(loss) and model.blocks[1].norm.time_weight.grad.abs().sum() > 0


# -- bad batches ------------------------------------------------------------------------------------


def test_nan_batch_leaves_running_statistics_element_wise():
    layer = TemporalEffectiveBatchNorm2d(C, T)
    layer(torch.randn(T, B, C, H, W))
    mean, var = layer.running_mean.clone(), layer.running_var.clone()
    assert torch.isnan(layer(torch.full((T, B, C, H, W), float("inf")))).all()
    assert torch.equal(layer.running_mean, mean) and torch.equal(layer.running_var, var)
    x = torch.randn(T, B, C, H, W)
    x[1, 0, 0, 0, 0] = float("nan")  # channel 0 only (its statistics pool every step)
    layer(x)
    assert torch.equal(layer.running_var[0], var[0]) and not torch.equal(layer.running_var[1], var[1])


@pytest.mark.parametrize("shape", [(T, 0, C, H, W), (T, B, C, 0, 0), (T, 1, C, 1, 1), (0, B, C, H, W)])
def test_empty_or_single_value_batches_are_refused(shape):
    layer = TemporalEffectiveBatchNorm2d(C, T)
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    with pytest.raises(ValueError, match="TemporalEffectiveBatchNorm2d"):
        layer(torch.randn(shape))
    assert all(torch.equal(state[k], v) for k, v in layer.state_dict().items())


def test_wrong_dtype_names_the_conversions():
    with pytest.raises(TypeError, match=r"TemporalEffectiveBatchNorm2d: input dtype torch.float64.*\.float\(\)"):
        TemporalEffectiveBatchNorm2d(C, T)(torch.randn(T, B, C, H, W, dtype=torch.float64))
