"""MPBN's neuron against a hand-written loop, and its folded form spike for spike."""

import math

import pytest
import torch
from torch import nn

from snn_norm_lite.models import build_snn
from snn_norm_lite.neurons import MultiStepLeaky
from snn_norm_lite.norms import FoldedMPBNLeaky, MPBNLeaky, SequenceBatchNorm2d, get_spec
from snn_norm_lite.norms.mpbn import exact_fold, fold_formula

T, B, C, H, W = 5, 6, 3, 2, 2
BETA, V_TH, EPS, MOMENTUM = 0.8, 1.0, 1e-3, 0.3


def arctan_spike(v):
    """H(v) forward; derivative of (1/pi) arctan(pi/2 * alpha * v), alpha = 2, backward (snntorch's atan)."""
    smooth = torch.atan(math.pi / 2 * 2.0 * v) / math.pi
    return (v > 0).to(v.dtype) + (smooth - smooth.detach())  # exactly H(v) forward


def naive_mpbn(x, gamma, beta_bn, running_mean, running_var, training, beta=BETA, v_th=V_TH, eps=EPS, momentum=MOMENTUM):
    """u_t = beta u_{t-1} + x_t - V_th s_{t-1};  s_t = H(BN(u_t) - V_th), one BN, statistics per step.

    Updates ``running_mean``/``running_var`` in place at every step in training.
    """
    u = torch.zeros_like(x[0])
    s = torch.zeros_like(x[0])
    spikes = []
    for t in range(x.shape[0]):
        u = beta * u + x[t] - v_th * s.detach()
        normalised = torch.empty_like(u)
        for c in range(x.shape[2]):
            values = u[:, c]
            if training:
                m = values.mean()
                v = ((values - m) ** 2).mean()
                n = values.numel()
                with torch.no_grad():
                    running_mean[c] = (1 - momentum) * running_mean[c] + momentum * m
                    running_var[c] = (1 - momentum) * running_var[c] + momentum * v * n / (n - 1)
            else:
                m, v = running_mean[c], running_var[c]
            normalised[:, c] = gamma[c] * (values - m) / torch.sqrt(v + eps) + beta_bn[c]
        s = arctan_spike(normalised - v_th)
        spikes.append(s)
    return torch.stack(spikes)


def random_neuron(channels=C, dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    neuron = MPBNLeaky(channels, beta=BETA, threshold=V_TH, eps=EPS, momentum=MOMENTUM).to(dtype)
    bn = neuron.membrane_norm
    with torch.no_grad():
        bn.weight.copy_(torch.randn(channels, generator=generator, dtype=dtype))
        bn.bias.copy_(torch.randn(channels, generator=generator, dtype=dtype) * 0.5 + 0.5)
        bn.running_mean.copy_(torch.randn(channels, generator=generator, dtype=dtype))
        bn.running_var.copy_(torch.rand(channels, generator=generator, dtype=dtype) * 2 + 0.05)
    return neuron


def currents(seed, shape=(T, B, C, H, W), dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 1.2 + 0.4


@pytest.mark.parametrize("training", [True, False])
def test_spikes_gradients_and_running_statistics_match_naive_loop(training):
    neuron = random_neuron().train(training)
    bn = neuron.membrane_norm
    gamma = bn.weight.detach().clone().requires_grad_()
    beta_bn = bn.bias.detach().clone().requires_grad_()
    running_mean, running_var = bn.running_mean.clone(), bn.running_var.clone()
    for seed in (1, 2):  # two sequences: running statistics move T times each in training
        x = currents(seed).requires_grad_()
        x2 = x.detach().clone().requires_grad_()
        probe = torch.randn_like(x)
        spikes = neuron(x)
        expected = naive_mpbn(x2, gamma, beta_bn, running_mean, running_var, training)
        torch.testing.assert_close(spikes, expected, rtol=0, atol=0)
        assert 0 < spikes.mean() < 1
        (spikes * probe).sum().backward()
        (expected * probe).sum().backward()
        torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(bn.weight.grad, gamma.grad)
    torch.testing.assert_close(bn.bias.grad, beta_bn.grad)
    torch.testing.assert_close(bn.running_mean, running_mean)
    torch.testing.assert_close(bn.running_var, running_var)
    assert int(bn.num_batches_tracked) == (2 * T if training else 0)


def test_backward_twice_with_retained_graph_gives_the_same_gradients():
    neuron = random_neuron()
    x = currents(5).requires_grad_()
    probe = torch.randn_like(x)
    loss = (neuron(x) * probe).sum()
    first = torch.autograd.grad(loss, (x, neuron.membrane_norm.weight), retain_graph=True)
    second = torch.autograd.grad(loss, (x, neuron.membrane_norm.weight))
    for a, b in zip(first, second):
        assert torch.equal(a, b) and a.abs().sum() > 0


def test_reset_acts_on_the_raw_membrane():
    """One channel, one sample: BN(u) = 2u in eval. Resetting the normalised value would give other spikes."""
    neuron = MPBNLeaky(1, beta=1.0, threshold=1.0).double().eval()
    with torch.no_grad():
        neuron.membrane_norm.weight.fill_(2.0 * math.sqrt(1.0 + neuron.membrane_norm.eps))
    x = torch.full((4, 1, 1), 0.6, dtype=torch.float64)
    # raw u: 0.6 (BN 1.2, spike), 0.6 + 0.6 - 1 = 0.2 (0.4), 0.8 (1.6, spike), 0.4 (0.8)
    assert neuron(x).flatten().tolist() == [1.0, 0.0, 1.0, 0.0]


def test_sequences_without_spatial_dimensions():
    neuron = random_neuron().eval()
    x = currents(3, shape=(T, B, C))
    expected = naive_mpbn(
        x.unsqueeze(-1), neuron.membrane_norm.weight.detach(), neuron.membrane_norm.bias.detach(),
        neuron.membrane_norm.running_mean.clone(), neuron.membrane_norm.running_var.clone(), training=False,
    )
    torch.testing.assert_close(neuron(x), expected.squeeze(-1), rtol=0, atol=0)


def neuron_with_awkward_gammas(dtype, channels=301, seed=4):
    """Positive, negative, zero and underflowing gammas, biases above and below V_th."""
    neuron = random_neuron(channels, dtype, seed)
    with torch.no_grad():
        gamma = neuron.membrane_norm.weight
        gamma[:10] = 0.0
        neuron.membrane_norm.bias[:5] = 1.5  # gamma = 0 and beta_bn > V_th: always fires
        neuron.membrane_norm.bias[5:10] = 0.5  # never fires
        gamma[10:13] = 1e-30 if dtype == torch.float64 else 1e-44
        gamma[13:20] = -gamma[13:20].abs()
    return neuron.eval()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_folded_neuron_fires_spike_for_spike_like_the_unfolded_one(dtype):
    neuron = neuron_with_awkward_gammas(dtype)
    folded = neuron.fold()
    assert isinstance(folded, FoldedMPBNLeaky) and folded.fire_threshold.dtype == dtype
    assert (folded.fire_direction < 0).sum() > 50  # about half the random gammas, and 13:20
    for seed in range(3):
        x = currents(10 + seed, shape=(8, 16, 301, 3, 3), dtype=dtype) * 2
        spikes, spikes_folded = neuron(x), folded(x)
        assert torch.equal(spikes, spikes_folded)
        assert 0.05 < spikes.mean() < 0.95
        negative = folded.fire_direction < 0
        assert spikes[:, :, negative].sum() > 0
    assert spikes[:, :, :5].eq(1).all() and spikes[:, :, 5:10].eq(0).all()  # gamma = 0 channels


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fold_is_exact_at_the_boundary_to_the_last_bit(dtype):
    """Membranes at the folded threshold and a few floats either side (T = 1, so u = x)."""
    neuron = neuron_with_awkward_gammas(dtype)
    folded = neuron.fold()
    finite = torch.isfinite(folded.fire_threshold)
    base = torch.where(finite, folded.fire_threshold, torch.zeros_like(folded.fire_threshold))
    for direction in (float("inf"), float("-inf")):
        u = base.clone()
        for _ in range(4):
            x = u.view(1, 1, -1, 1, 1).expand(1, 2, -1, 1, 1).contiguous()
            assert torch.equal(neuron(x), folded(x))
            u = torch.nextafter(u, torch.full_like(u, direction))
    # and the threshold really is the boundary: at V~ a positive channel is silent, one float above it fires
    positive = finite & (folded.fire_direction > 0)
    above = torch.nextafter(base, torch.full_like(base, float("inf")))
    at, over = folded(base.view(1, 1, -1, 1, 1)), folded(above.view(1, 1, -1, 1, 1))
    assert at[0, 0, positive].eq(0).all() and over[0, 0, positive].eq(1).all()


def test_fold_matches_the_textbook_formula():
    neuron = neuron_with_awkward_gammas(torch.float64)
    formula, sign = fold_formula(neuron)
    folded = neuron.fold()
    regular = slice(20, None)
    torch.testing.assert_close(folded.fire_threshold[regular], formula[regular], rtol=1e-12, atol=1e-12)
    assert torch.equal(folded.fire_direction[regular], sign[regular])
    assert torch.equal(folded.fire_direction[13:20], -torch.ones(7, dtype=torch.float64))


def test_exact_fold_on_hand_picked_channels():
    scale = torch.tensor([2.0, -2.0, 0.0, 0.0])
    shift = torch.tensor([0.0, 0.0, 1.5, 0.5])
    threshold, direction = exact_fold(scale, shift, torch.tensor(1.0))
    # 2u > 1 iff u > 0.5;  -2u > 1 iff u < -0.5;  constant 1.5 > 1 always;  0.5 > 1 never
    assert threshold.tolist() == [0.5, -0.5, float("-inf"), float("inf")]
    assert direction.tolist() == [1.0, -1.0, 1.0, 1.0]


def test_folded_neuron_is_not_slower():
    """Counts operations rather than seconds: the folded loop runs no normalisation at all."""
    neuron = random_neuron(8, torch.float32).eval()
    folded = neuron.fold()
    x = currents(20, shape=(4, 2, 8, 2, 2), dtype=torch.float32)
    with torch.autograd.profiler.profile() as unfolded_profile:
        neuron(x)
    with torch.autograd.profiler.profile() as folded_profile:
        folded(x)
    views = {"aten::select", "aten::as_strided", "aten::view", "aten::detach", "aten::alias", "aten::empty",
             "aten::empty_strided", "aten::empty_like", "aten::item", "aten::_local_scalar_dense", "aten::lift_fresh"}
    # operations that compute something (indexing a step, a view or an allocation computes nothing)
    count = lambda profile: sum(1 for e in profile.function_events if e.name.startswith("aten::") and e.name not in views)  # noqa: E731
    assert count(folded_profile) < count(unfolded_profile)


def test_state_dict_round_trips():
    neuron = random_neuron()
    neuron(currents(21))
    fresh = MPBNLeaky(C, beta=BETA, threshold=V_TH, eps=EPS).double()
    fresh.load_state_dict(neuron.state_dict())
    assert set(neuron.state_dict()) >= {"threshold", "membrane_norm.weight", "membrane_norm.running_var"}
    neuron.eval(), fresh.eval()
    x = currents(22)
    assert torch.equal(fresh(x), neuron(x))
    folded = neuron.fold()
    fresh_folded = FoldedMPBNLeaky(torch.zeros(C, dtype=torch.float64), torch.ones(C), beta=BETA, threshold=V_TH).eval()
    fresh_folded.load_state_dict(folded.state_dict())
    assert torch.equal(fresh_folded(x), neuron(x))
    assert "threshold=1" in repr(neuron) and "channels_firing_below" in repr(folded)


def test_constant_input_in_training_has_no_nan():
    neuron = MPBNLeaky(C)
    x = torch.full((T, B, C, H, W), 0.3, requires_grad=True)
    spikes = neuron(x)
    spikes.sum().backward()
    assert torch.isfinite(spikes).all() and torch.isfinite(x.grad).all()


def test_bad_inputs_raise_clear_errors():
    neuron = MPBNLeaky(C)
    with pytest.raises(ValueError, match=r"MPBNLeaky: expected a sequence \[T, B, C, \.\.\.\]"):
        neuron(torch.randn(B, C))
    with pytest.raises(ValueError, match=r"expected 3 channels in dimension 2, got 4"):
        neuron(torch.randn(T, B, 4, H, W))
    with pytest.raises(TypeError, match=r"floating-point tensor.*torch.int64"):
        neuron(torch.ones(T, B, C, dtype=torch.long))
    with pytest.raises(TypeError, match=r"input dtype torch.float64 differs"):
        neuron(torch.randn(T, B, C, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"more than 1 value per channel"):
        neuron(torch.randn(T, 1, C))
    with pytest.raises(ValueError, match=r"threshold must be a positive number"):
        MPBNLeaky(C, threshold=0.0)
    with pytest.raises(ValueError, match=r"beta must lie in \[0, 1\]"):
        MPBNLeaky(C, beta=1.5)
    with pytest.raises(ValueError, match=r"fire_direction must hold only \+1 and -1"):
        FoldedMPBNLeaky(torch.zeros(C), torch.zeros(C), beta=0.5, threshold=1.0)
    with pytest.raises(ValueError, match=r"FoldedMPBNLeaky: expected 3 channels"):
        random_neuron(dtype=torch.float32).eval().fold()(torch.randn(T, B, 5))


def test_registry_pairs_plain_batchnorm_with_the_membrane_neuron_and_trains():
    spec = get_spec("mpbn")
    assert spec.spiking_only and isinstance(spec.build(8, 4), SequenceBatchNorm2d)
    torch.manual_seed(0)
    model = build_snn("mpbn", depth=3, width=8, num_steps=4, beta=0.7, threshold=0.5)
    assert all(isinstance(n, MPBNLeaky) and n.beta == 0.7 and float(n.threshold) == 0.5 for n in model.neurons())
    assert not any(isinstance(n, MultiStepLeaky) for n in model.neurons())
    loss = nn.functional.cross_entropy(model(torch.rand(8, 1, 8, 8)), torch.arange(8))
    loss.backward()
    assert torch.isfinite(loss) and model.blocks[1].neuron.membrane_norm.weight.grad.abs().sum() > 0


# -- options, and the configuration of the public MPBN code ----------------------------------------

from snn_norm_lite.norms.mpbn import OFFICIAL_CONFIGURATION, tanh_window_surrogate_grad, use_official_neurons  # noqa: E402


def test_per_step_loop_with_default_options_equals_the_fused_node():
    fused, loop = random_neuron(), random_neuron()
    assert fused.uses_fused_training
    for seed in (1, 2):
        x = currents(seed).requires_grad_()
        x2 = x.detach().clone().requires_grad_()
        probe = torch.randn_like(x)
        spikes, expected = fused(x), loop.forward_per_step(x2)
        torch.testing.assert_close(spikes, expected, rtol=0, atol=0)
        (spikes * probe).sum().backward()
        (expected * probe).sum().backward()
        torch.testing.assert_close(x.grad, x2.grad)
    for name in ("weight", "bias"):
        torch.testing.assert_close(getattr(fused.membrane_norm, name).grad, getattr(loop.membrane_norm, name).grad)
    torch.testing.assert_close(fused.membrane_norm.running_var, loop.membrane_norm.running_var)
    assert int(fused.membrane_norm.num_batches_tracked) == int(loop.membrane_norm.num_batches_tracked) == 2 * T


def test_official_configuration_attributes():
    neuron = MPBNLeaky.official(C)
    assert (neuron.beta, float(neuron.threshold), neuron.reset, neuron.surrogate, neuron.detach_reset) == (
        0.25, 0.5, "zero", "tanh_window", False,
    )
    assert OFFICIAL_CONFIGURATION["beta"] == 0.25 and not neuron.uses_fused_training
    assert "reset='zero'" in repr(neuron)


def test_hard_reset_sets_the_raw_membrane_to_zero():
    """BN(u) = u in eval; decay 0.25, fire above 0.5, hard reset."""
    neuron = MPBNLeaky.official(1).double().eval()
    with torch.no_grad():
        neuron.membrane_norm.weight.fill_(math.sqrt(1.0 + neuron.membrane_norm.eps))
    x = torch.tensor([0.6, 0.3, 0.3, 0.45], dtype=torch.float64).view(4, 1, 1)
    # u: 0.6 (spike, reset to 0), 0.3, 0.25 * 0.3 + 0.3 = 0.375, 0.25 * 0.375 + 0.45 = 0.54375 (spike)
    assert neuron(x).flatten().tolist() == [1.0, 0.0, 0.0, 1.0]
    # a subtractive reset gives 0.25 * 0.6 + 0.3 - 0.5 = -0.05 at t = 1 (u = -0.05, 0.2875, 0.071875 + x_3):
    # with x_3 = 0.42 the hard reset fires (0.51375) and the subtractive one does not (0.491875)
    x[3] = 0.42
    subtractive = MPBNLeaky(1, beta=0.25, threshold=0.5).double().eval()
    subtractive.load_state_dict(neuron.state_dict())
    assert neuron(x).flatten().tolist() == [1.0, 0.0, 0.0, 1.0]
    assert subtractive(x).flatten().tolist() == [1.0, 0.0, 0.0, 0.0]


def official_smooth_spike(v, theta=0.5, k=3.0):
    """The public code's spike in units of BN(u) / (2 theta): H forward, clipped tanh backward."""
    z = v / (2 * theta)
    smooth = (torch.tanh(k * (z.clamp(0, 1) - 0.5)) + math.tanh(k / 2)) / (2 * math.tanh(k / 2))
    return (z > 0.5).to(v.dtype) + (smooth - smooth.detach())


def naive_official(x, gamma, beta_bn, running_mean, running_var, eps=EPS, momentum=MOMENTUM):
    """u_t = 0.25 u_{t-1} (1 - s_{t-1}) + x_t; s_t = H(BN(u_t) - 0.5), BN with the batch statistics of step t."""
    u = torch.zeros_like(x[0])
    s = torch.zeros_like(x[0])
    spikes = []
    for t in range(x.shape[0]):
        u = 0.25 * u * (1 - s) + x[t]  # the spike keeps its surrogate gradient in the reset
        mean = u.mean(dim=(0, 2, 3))
        var = u.var(dim=(0, 2, 3), correction=0)
        n = u.numel() / u.shape[1]
        with torch.no_grad():
            running_mean.mul_(1 - momentum).add_(momentum * mean)
            running_var.mul_(1 - momentum).add_(momentum * var * n / (n - 1))
        view = (1, -1, 1, 1)
        normalised = gamma.view(view) * (u - mean.view(view)) / torch.sqrt(var.view(view) + eps) + beta_bn.view(view)
        s = official_smooth_spike(normalised)
        spikes.append(s)
    return torch.stack(spikes)


def test_official_configuration_matches_a_hand_written_loop_in_training():
    neuron = MPBNLeaky.official(C, eps=EPS, momentum=MOMENTUM).double()
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        neuron.membrane_norm.weight.copy_(torch.rand(C, generator=generator, dtype=torch.float64) + 0.5)
        neuron.membrane_norm.bias.copy_(torch.randn(C, generator=generator, dtype=torch.float64) * 0.3)
    bn = neuron.membrane_norm
    gamma = bn.weight.detach().clone().requires_grad_()
    beta_bn = bn.bias.detach().clone().requires_grad_()
    running_mean, running_var = bn.running_mean.clone(), bn.running_var.clone()
    x = currents(7).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    probe = torch.randn_like(x)
    spikes, expected = neuron(x), naive_official(x2, gamma, beta_bn, running_mean, running_var)
    torch.testing.assert_close(spikes, expected, rtol=0, atol=0)
    assert 0.05 < spikes.mean() < 0.95 and (spikes[:-1] * spikes[1:]).sum() > 0  # resets happen
    (spikes * probe).sum().backward()
    (expected * probe).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(bn.weight.grad, gamma.grad)
    torch.testing.assert_close(bn.bias.grad, beta_bn.grad)
    torch.testing.assert_close(bn.running_mean, running_mean)
    torch.testing.assert_close(bn.running_var, running_var)


def test_gradient_through_the_reset_is_an_option():
    x = currents(8)
    grads = []
    for detach in (True, False):
        neuron = MPBNLeaky(C, reset="zero", detach_reset=detach).double()
        xi = x.clone().requires_grad_()
        neuron(xi).sum().backward()
        grads.append(xi.grad)
    assert not torch.allclose(grads[0], grads[1])


def test_tanh_window_surrogate():
    theta = 0.5
    v = torch.linspace(-0.5, 1.5, 401, dtype=torch.float64)
    grad = tanh_window_surrogate_grad(v, theta)
    assert grad[(v < 0) | (v > 1)].eq(0).all() and (grad[(v > 0) & (v < 1)] > 0).all()
    peak = 3.0 / (2 * math.tanh(1.5))
    torch.testing.assert_close(tanh_window_surrogate_grad(torch.tensor(0.5, dtype=torch.float64), theta),
                               torch.tensor(peak, dtype=torch.float64))
    inside = torch.linspace(0.05, 0.95, 19, dtype=torch.float64, requires_grad=True)
    official_smooth_spike(inside).sum().backward()
    torch.testing.assert_close(inside.grad, tanh_window_surrogate_grad(inside.detach(), theta))
    # scaled to the threshold: the window is [0, 2 theta], the peak at theta
    wide = tanh_window_surrogate_grad(torch.tensor([1.0, 2.0, 2.1], dtype=torch.float64), 1.0)
    torch.testing.assert_close(wide[0], torch.tensor(peak / 2, dtype=torch.float64))
    assert wide[1] > 0 and wide[2] == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fold_is_exact_with_the_hard_reset(dtype):
    awkward = neuron_with_awkward_gammas(dtype)
    neuron = MPBNLeaky.official(awkward.num_features, eps=EPS).to(dtype).eval()
    neuron.load_state_dict(awkward.state_dict())
    with torch.no_grad():
        neuron.threshold.fill_(0.5)
    folded = neuron.fold()
    assert folded.reset == "zero"
    for seed in range(3):
        x = currents(30 + seed, shape=(8, 16, 301, 3, 3), dtype=dtype) * 2
        spikes = neuron(x)
        assert torch.equal(spikes, folded(x)) and 0.05 < spikes.mean() < 0.95


def test_use_official_neurons_swaps_every_neuron_and_keeps_the_other_weights():
    torch.manual_seed(0)
    model = build_snn("mpbn", depth=3, width=8, num_steps=4)
    torch.manual_seed(0)
    reference = build_snn("mpbn", depth=3, width=8, num_steps=4)
    assert use_official_neurons(model) == 3
    assert all(n.reset == "zero" and n.beta == 0.25 and float(n.threshold) == 0.5 for n in model.neurons())
    assert torch.equal(model.blocks[1].conv.weight, reference.blocks[1].conv.weight)
    loss = nn.functional.cross_entropy(model(torch.rand(8, 1, 8, 8)), torch.arange(8))
    loss.backward()
    assert torch.isfinite(loss) and model.blocks[0].neuron.membrane_norm.weight.grad.abs().sum() > 0
    model.eval()
    from snn_norm_lite.norms import fold_mpbn

    images = torch.rand(16, 1, 8, 8)
    torch.testing.assert_close(fold_mpbn(model)(images), model(images), rtol=0, atol=0)


def test_bad_options_raise_clear_errors():
    with pytest.raises(ValueError, match=r"MPBNLeaky: reset must be one of 'subtract', 'zero', got 'hard'"):
        MPBNLeaky(C, reset="hard")
    with pytest.raises(ValueError, match=r"MPBNLeaky: surrogate must be one of 'arctan', 'tanh_window'"):
        MPBNLeaky(C, surrogate="sigmoid")
    with pytest.raises(TypeError, match=r"MPBNLeaky: detach_reset must be True or False, got int"):
        MPBNLeaky(C, detach_reset=1)
    with pytest.raises(ValueError, match=r"FoldedMPBNLeaky: reset must be one of"):
        FoldedMPBNLeaky(torch.zeros(C), torch.ones(C), beta=0.5, threshold=1.0, reset="none")
    with pytest.raises(ValueError, match=r"use_official_neurons: the model has no MPBNLeaky"):
        use_official_neurons(nn.Linear(2, 2))
    with pytest.raises(TypeError, match=r"use_official_neurons: expected an nn.Module, got str"):
        use_official_neurons("model")


# -- bad batches, inference-only folding, gradients (the input contract) --------------------------

from snn_norm_lite.norms.mpbn import _MembraneSpike  # noqa: E402


@pytest.mark.parametrize("options", [{}, OFFICIAL_CONFIGURATION])
def test_nan_sequence_leaves_running_statistics_and_shows_in_the_spikes(options):
    neuron = MPBNLeaky(C, **{"eps": EPS, **options})
    neuron(currents(30, dtype=torch.float32))
    bn = neuron.membrane_norm
    mean, var = bn.running_mean.clone(), bn.running_var.clone()
    spikes = neuron(torch.full((T, B, C, H, W), float("nan")))
    assert torch.isnan(spikes).all()
    assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var)
    x = currents(31, dtype=torch.float32)
    x[0, 0, 1, 0, 0] = float("inf")  # channel 1 only
    spikes = neuron(x)
    assert torch.isnan(spikes[:, :, 1]).all() and torch.isfinite(spikes[:, :, [0, 2]]).all()
    assert torch.equal(bn.running_var[1], var[1]) and not torch.equal(bn.running_var[0], var[0])


@pytest.mark.parametrize("shape", [(T, 0, C, H, W), (T, B, C, 0, 0), (T, 1, C, 1, 1), (T, 1, C)])
def test_empty_or_single_value_training_batches_are_refused(shape):
    for neuron in (MPBNLeaky(C), MPBNLeaky.official(C)):
        state = {k: v.clone() for k, v in neuron.state_dict().items()}
        with pytest.raises(ValueError, match="MPBNLeaky: (got an empty|expected more than 1)"):
            neuron(torch.randn(shape))
        assert all(torch.equal(state[k], v) for k, v in neuron.state_dict().items())


def test_zero_time_steps_are_refused_in_every_mode():
    for neuron in (MPBNLeaky(C), MPBNLeaky(C).eval(), MPBNLeaky(C).eval().fold()):
        with pytest.raises(ValueError, match=rf"{type(neuron).__name__}: got a sequence of 0 time steps"):
            neuron(torch.zeros(0, B, C, H, W))


def test_folded_neuron_is_inference_only():
    folded = random_neuron(dtype=torch.float32).eval().fold()
    assert not folded.training  # fold() returns it ready for inference
    x = currents(32, dtype=torch.float32)
    folded.train()
    with pytest.raises(RuntimeError, match=r"FoldedMPBNLeaky is inference-only.*Train the MPBNLeaky network.*\.eval\(\)"):
        folded(x)
    with torch.no_grad():
        assert torch.equal(folded(x), folded.eval()(x))
    with pytest.raises(TypeError, match="FoldedMPBNLeaky: fire_threshold must be a torch.Tensor"):
        FoldedMPBNLeaky([1.0, 1.0, 1.0], torch.ones(C), beta=0.5, threshold=1.0)


def test_fused_training_pass_refuses_second_order_gradients():
    neuron = random_neuron()
    x = currents(33).requires_grad_()
    loss = (neuron(x) * torch.randn_like(x)).sum()
    with pytest.raises(RuntimeError, match=r"_MPBNTrainingSequence.*first-order only"):
        torch.autograd.grad(loss, x, create_graph=True)


@pytest.mark.parametrize("surrogate", ["arctan", "tanh_window"])
def test_membrane_spike_gives_second_order_gradients_of_its_surrogate(surrogate):
    v = (torch.randn(24, dtype=torch.float64, generator=torch.Generator().manual_seed(34)) * 0.4 + 0.5).requires_grad_()
    threshold = torch.tensor(0.5, dtype=torch.float64)
    assert torch.autograd.gradgradcheck(lambda u: _MembraneSpike.apply(u, threshold, surrogate), (v,))
    # through the per-step network path too (reset detached: the spikes are then constants of the backward)
    neuron = random_neuron()
    neuron.surrogate = surrogate
    x = currents(35, shape=(3, 4, C, 2)).requires_grad_()
    assert torch.autograd.gradgradcheck(neuron.forward_per_step, (x,), nondet_tol=1e-10)


@pytest.mark.parametrize("shape", [(T, B, C), (T, B, C, H, W)])
def test_fused_first_order_gradients_match_the_autograd_reference_in_float64(shape):
    neuron = random_neuron()
    bn = neuron.membrane_norm
    x = currents(36, shape=shape).requires_grad_()
    x_ref = x.detach().clone().unsqueeze(-1).requires_grad_() if len(shape) == 3 else x.detach().clone().requires_grad_()
    gamma, beta_bn = bn.weight.detach().clone().requires_grad_(), bn.bias.detach().clone().requires_grad_()
    expected = naive_mpbn(x_ref, gamma, beta_bn, bn.running_mean.clone(), bn.running_var.clone(), training=True)
    spikes = neuron(x)
    probe = torch.randn_like(expected)
    got = torch.autograd.grad((spikes * probe.view_as(spikes)).sum(), (x, bn.weight, bn.bias))
    want = torch.autograd.grad((expected * probe).sum(), (x_ref, gamma, beta_bn))
    torch.testing.assert_close(got[0], want[0].view_as(got[0]), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got[1], want[1], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got[2], want[2], rtol=1e-10, atol=1e-12)
