"""The fused multi-step LIF against snntorch's Leaky and against a hand-written recurrence."""

import math

import pytest
import torch

from snn_norm_lite.neurons import MultiStepLeaky, arctan_surrogate_grad


def hand_lif(x, beta, threshold):
    """u_t = beta u_{t-1} + x_t - V_th s_{t-1};  s_t = H(u_t - V_th), element by element."""
    flat = x.reshape(x.shape[0], -1)
    spikes = torch.zeros_like(flat)
    for i in range(flat.shape[1]):
        u, s = 0.0, 0.0
        for t in range(flat.shape[0]):
            u = beta * u + flat[t, i].item() - threshold * s
            s = 1.0 if u > threshold else 0.0
            spikes[t, i] = s
    return spikes.reshape(x.shape)


def test_forward_matches_hand_recurrence():
    torch.manual_seed(0)
    x = torch.rand(6, 3, 4, dtype=torch.float64) * 1.5
    neuron = MultiStepLeaky(beta=0.8, threshold=1.0)
    torch.testing.assert_close(neuron(x), hand_lif(x, 0.8, 1.0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_equals_snntorch_in_values_and_gradients(dtype):
    torch.manual_seed(1)
    # beta = 0.5 is exact in float32, the precision snntorch stores beta in
    x = (torch.randn(8, 4, 3, 5, 5, dtype=dtype) * 0.8 + 0.5).requires_grad_()
    weights = torch.randn(8, 4, 3, 5, 5, dtype=dtype)
    grads, outputs = [], []
    for backend in ("fused", "snntorch"):
        neuron = MultiStepLeaky(beta=0.5, threshold=1.0, backend=backend)
        spikes = neuron(x)
        (grad,) = torch.autograd.grad((spikes * weights).sum(), x)
        outputs.append(spikes)
        grads.append(grad)
    assert outputs[0].sum() > 0  # the comparison is not between two silent layers
    torch.testing.assert_close(outputs[0], outputs[1])
    torch.testing.assert_close(grads[0], grads[1])


def test_backward_is_the_reverse_recurrence():
    """One neuron, two steps, computed by hand with the arctan surrogate."""
    beta, threshold = 0.9, 1.0
    x = torch.tensor([[0.6], [0.7]], dtype=torch.float64, requires_grad=True)
    spikes = MultiStepLeaky(beta=beta, threshold=threshold)(x)
    (grad,) = torch.autograd.grad(spikes[0].sum() * 2.0 + spikes[1].sum() * 3.0, x)
    u0 = 0.6
    u1 = beta * u0 + 0.7  # no spike at step 0, so no reset
    sg = lambda v: 1.0 / (1.0 + (math.pi * v) ** 2)  # alpha = 2: (alpha/2) / (1 + (pi/2 alpha v)^2)
    g1 = 3.0 * sg(u1 - threshold)
    g0 = 2.0 * sg(u0 - threshold) + beta * g1
    torch.testing.assert_close(grad.flatten(), torch.tensor([g0, g1], dtype=torch.float64))
    assert torch.isclose(arctan_surrogate_grad(torch.tensor(0.0)), torch.tensor(1.0))


def test_threshold_is_a_buffer_that_changes_firing():
    neuron = MultiStepLeaky(threshold=1.0)
    assert "threshold" in dict(neuron.named_buffers())
    x = torch.full((4, 10), 0.6)
    low = neuron(x).sum()
    neuron.threshold.fill_(2.0)
    assert neuron(x).sum() < low


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"beta": 1.5}, ValueError, "beta"),
        ({"threshold": 0.0}, ValueError, "threshold"),
        ({"backend": "cuda"}, ValueError, "backend"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        MultiStepLeaky(**kwargs)


def test_bad_input():
    with pytest.raises(TypeError, match="floating-point"):
        MultiStepLeaky()(torch.ones(3, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"\[T, B, ...\]"):
        MultiStepLeaky()(torch.ones(3))


# -- non-finite input, empty sequences, second order -------------------------------------------


@pytest.mark.parametrize("backend", ["fused", "snntorch"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_membrane_shows_as_nan_from_its_step_on(backend, bad):
    torch.manual_seed(0)
    x = torch.rand(6, 3, 4) * 1.5
    neuron = MultiStepLeaky(beta=0.5, threshold=1.0, backend=backend)
    clean = neuron(x)
    x[2, 1, 3] = bad
    spikes = neuron(x)
    assert torch.isnan(spikes[2:, 1, 3]).all()  # u is non-finite from step 2 on: so is the output
    poisoned = torch.zeros_like(x, dtype=torch.bool)
    poisoned[2:, 1, 3] = True
    torch.testing.assert_close(spikes[~poisoned], clean[~poisoned])  # every other neuron, every other step


def test_gradients_of_finite_neurons_are_unchanged_by_a_nan_neighbour():
    torch.manual_seed(1)
    x = (torch.randn(5, 2, 3, dtype=torch.float64) * 0.8 + 0.6).requires_grad_()
    weights = torch.randn(5, 2, 3, dtype=torch.float64)
    neuron = MultiStepLeaky(beta=0.5, threshold=1.0)
    (clean,) = torch.autograd.grad((neuron(x) * weights).sum(), x)
    poisoned = x.detach().clone()
    poisoned[1, 0, 0] = math.nan
    poisoned.requires_grad_()
    (grad,) = torch.autograd.grad((neuron(poisoned) * weights).sum(), poisoned)
    keep = torch.ones_like(grad, dtype=torch.bool)
    keep[:, 0, 0] = False
    torch.testing.assert_close(grad[keep], clean[keep])


@pytest.mark.parametrize("backend", ["fused", "snntorch"])
def test_zero_time_steps_are_refused(backend):
    with pytest.raises(ValueError, match="MultiStepLeaky: expected at least one time step"):
        MultiStepLeaky(backend=backend)(torch.zeros(0, 2, 3))


def test_an_empty_batch_passes_through():
    assert MultiStepLeaky()(torch.zeros(3, 0, 4)).shape == (3, 0, 4)


def test_fused_backward_refuses_second_order_gradients():
    x = (torch.rand(3, 2, 4, dtype=torch.float64) * 2).requires_grad_()
    spikes = MultiStepLeaky()(x)
    with pytest.raises(RuntimeError, match="_FusedLIF.*first-order"):
        torch.autograd.grad(spikes.sum(), x, create_graph=True)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"beta": math.nan}, ValueError, "beta must be a finite"),
        ({"beta": "0.9"}, TypeError, "beta must be a real number"),
        ({"threshold": True}, TypeError, "threshold must be a real number"),
        ({"threshold": math.inf}, ValueError, "threshold must be a finite"),
        ({"backend": 1}, ValueError, "backend"),
    ],
)
def test_bad_numbers_and_choices(kwargs, error, match):
    with pytest.raises(error, match=match):
        MultiStepLeaky(**kwargs)


def test_surrogate_refuses_bad_arguments():
    with pytest.raises(ValueError, match="arctan_surrogate_grad: alpha must be a positive number"):
        arctan_surrogate_grad(torch.zeros(2), alpha=-1.0)
    with pytest.raises(TypeError, match="arctan_surrogate_grad"):
        arctan_surrogate_grad([0.0, 1.0])
