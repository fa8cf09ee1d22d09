"""E-I circuits: equations against naive loops, Dale's law, E-I Init moments, E-I Prop gradients."""

import math

import pytest
import torch
from torch import nn

from snn_norm_lite.inhibition import (
    EIConv2d,
    EILinear,
    circuits,
    dale_violation_share,
    ei_current_at_init,
    ei_init,
    ei_init_scales,
    enforce_dale,
    input_moments,
    scale_gradient,
    stabilize_divisor,
    straight_through_gradient_gap,
)
from snn_norm_lite.models import EISpikingConvNet, build_snn
from snn_norm_lite.neurons import MultiStepLeaky
from snn_norm_lite.norms import get_spec


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from threads, and on a shared CPU extra threads cost 10-50x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _randomise(layer, generator, negative=False):
    """Give every parameter distinct values (non-negative unless ``negative``)."""
    with torch.no_grad():
        for name, p in layer.named_parameters():
            values = torch.rand(p.shape, generator=generator, dtype=p.dtype) + 0.1
            if negative or name == "bias_e":
                values = values - 0.5
            p.copy_(values)


def _naive_linear(layer, x):
    """The circuit equations for one [T, B, F] input, element by element (Dale: clamp at 0).

    An entry whose divisor I_div is 0 is NaN here (the layer replaces it; compared elsewhere).
    """
    p = {name: value.detach().tolist() for name, value in layer.named_parameters()}
    relu = lambda v: max(v, 0.0)  # noqa: E731
    T, B, F = x.shape
    n_e, n_i = layer.num_excitatory, layer.num_inhibitory
    out = torch.zeros(T, B, n_e, dtype=torch.float64)
    for t in range(T):
        for b in range(B):
            xs = x[t, b].tolist()
            s_i = [sum(relu(p["weight_ie"][k][i]) * xs[i] for i in range(F)) for k in range(n_i)]
            for j in range(n_e):
                i_ee = sum(relu(p["weight_ee"][j][i]) * xs[i] for i in range(F))
                i_sub = sum(relu(p["weight_ei"][j][k]) * s_i[k] for k in range(n_i))
                if layer.output:
                    out[t, b, j] = i_ee - i_sub
                    continue
                i_div = sum(relu(p["weight_ei"][j][k]) * relu(p["gain_i"][k]) * s_i[k] for k in range(n_i))
                balanced = relu(p["gain_e"][j]) * (i_ee - i_sub)
                out[t, b, j] = balanced / i_div + p["bias_e"][j] if i_div > 0 else math.nan
    return out


@pytest.mark.parametrize("output", [False, True])
@pytest.mark.parametrize("negative", [False, True])
def test_linear_circuit_matches_the_equations(output, negative):
    g = torch.Generator().manual_seed(0)
    layer = EILinear(5, 4, ei_ratio=2, output=output).double()
    _randomise(layer, g, negative=negative)
    layer.initialised = True
    x = torch.rand(2, 3, 5, generator=g, dtype=torch.float64)
    expected = _naive_linear(layer, x)
    keep = torch.isfinite(expected)  # clamped gains can make I_div 0: compare where it is not
    assert keep.float().mean() > 0.5
    torch.testing.assert_close(layer(x)[keep], expected[keep])


def _naive_conv(x, weight, stride, padding):
    """Cross-correlation by explicit loops over output positions (independent of F.conv2d)."""
    n, c, h, w = x.shape
    k = weight.shape[-1]
    padded = torch.zeros(n, c, h + 2 * padding, w + 2 * padding, dtype=x.dtype)
    padded[:, :, padding : padding + h, padding : padding + w] = x
    out_h = (h + 2 * padding - k) // stride + 1
    out_w = (w + 2 * padding - k) // stride + 1
    out = torch.zeros(n, weight.shape[0], out_h, out_w, dtype=x.dtype)
    for i in range(out_h):
        for j in range(out_w):
            patch = padded[:, :, i * stride : i * stride + k, j * stride : j * stride + k]
            for o in range(weight.shape[0]):
                out[:, o, i, j] = (patch * weight[o]).sum(dim=(1, 2, 3))
    return out


@pytest.mark.parametrize("output", [False, True])
@pytest.mark.parametrize("stride, padding", [(1, 1), (2, 0)])
def test_conv_circuit_matches_the_equations(output, stride, padding):
    g = torch.Generator().manual_seed(1)
    layer = EIConv2d(2, 8, 3, ei_ratio=4, stride=stride, padding=padding, output=output).double()
    _randomise(layer, g)
    layer.initialised = True
    x = torch.rand(2, 3, 2, 5, 5, generator=g, dtype=torch.float64)
    merged = x.flatten(0, 1)
    with torch.no_grad():
        i_ee = _naive_conv(merged, layer.weight_ee, stride, padding)
        s_i = _naive_conv(merged, layer.weight_ie, stride, padding)
        w_ei = layer.weight_ei
        i_sub = torch.einsum("ek,nkhw->nehw", w_ei, s_i)
        if output:
            expected = i_ee - i_sub
        else:
            i_div = torch.einsum("ek,nkhw->nehw", w_ei, s_i * layer.gain_i.view(1, -1, 1, 1))
            expected = layer.gain_e.view(1, -1, 1, 1) * (i_ee - i_sub) / i_div + layer.bias_e.view(1, -1, 1, 1)
    torch.testing.assert_close(layer(x), expected.unflatten(0, (2, 3)))


def test_one_step_form_equals_the_sequence_form():
    torch.manual_seed(0)
    layer = EIConv2d(3, 8, 3, padding=1)
    x = (torch.rand(4, 2, 3, 6, 6) < 0.3).float()
    layer.ei_init(x)
    whole = layer(x)
    for t in range(4):
        torch.testing.assert_close(layer(x[t], t=t), whole[t])


def test_inhibitory_population_size():
    assert EILinear(6, 32).num_inhibitory == 8
    assert EILinear(6, 10).num_inhibitory == 2
    assert EILinear(6, 3).num_inhibitory == 1  # never fewer than one I unit
    assert EIConv2d(2, 12, 3, ei_ratio=3).weight_ie.shape == (4, 2, 3, 3)


# -- Dale's law -----------------------------------------------------------------------------


def test_enforce_dale_after_optimiser_steps():
    torch.manual_seed(0)
    layer = EIConv2d(2, 8, 3, padding=1)
    x = torch.rand(2, 4, 2, 6, 6)
    optimiser = torch.optim.SGD(layer.parameters(), lr=50.0)
    for _ in range(3):
        optimiser.zero_grad()
        layer(x).sum().backward()  # pushes g_E, W_EE and the bias down hard
        optimiser.step()
    negative = [p for p in layer.dale_parameters() if (p < 0).any()]
    assert negative, "the test needs an optimiser step that makes some weight negative"
    enforce_dale(layer)
    assert all((p >= 0).all() for p in layer.dale_parameters())
    assert (layer.bias_e < 0).any(), "the excitatory bias is free and must not be clamped"


def test_network_keeps_dale_parameters_non_negative_without_a_callback():
    torch.manual_seed(0)
    model = build_snn("ei", depth=2, width=8, num_steps=2)
    optimiser = torch.optim.SGD(model.parameters(), lr=50.0)
    x = torch.rand(4, 1, 8, 8)
    for _ in range(2):
        optimiser.zero_grad()
        model(x).sum().backward()
        optimiser.step()
    model(x)  # a training forward pass projects the parameters first
    for layer in circuits(model):
        assert all((p >= 0).all() for p in layer.dale_parameters())


def test_enforce_dale_needs_circuits():
    with pytest.raises(TypeError, match="no E-I circuits"):
        enforce_dale(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="no E-I circuits"):
        ei_init(nn.Linear(2, 2), torch.rand(2, 2))


# -- E-I Init -------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.05, 0.2, 0.5])
def test_ei_init_gives_zero_mean_order_one_current(rate):
    """Pooled over channels and over random inits: mean ~ 0 and E[I^2] as derived in the docstring."""
    torch.manual_seed(0)
    d, n_e = 288, 32
    x = (torch.rand(4, 128, d) < rate).float()
    mean, second, var = input_moments(x.flatten(0, 1))
    layer = EILinear(d, n_e)
    means, squares = [], []
    for _ in range(8):
        stats = layer.ei_init(x)
        with torch.no_grad():
            current = layer(x)
        means.append(current.mean().item())
        squares.append(current.square().mean().item())
    predicted = (1 + 1 / layer.num_inhibitory) * second / (second + var)
    assert abs(sum(means) / len(means)) < 0.05
    assert sum(squares) / len(squares) == pytest.approx(predicted, rel=0.15)
    assert 0.5 < sum(squares) / len(squares) < 1.3  # order one, like BatchNorm's 1
    assert stats.weight_scale == pytest.approx(math.sqrt(var / (d * (second + var))))
    assert stats.inhibitory_gain == pytest.approx(math.sqrt(second + var) / (math.sqrt(d) * mean))


def test_ei_init_sets_the_documented_parameters():
    torch.manual_seed(0)
    layer = EIConv2d(16, 64, 3)
    x = (torch.rand(2, 32, 16, 6, 6) < 0.3).float()
    stats = layer.ei_init(x)
    assert stats.fan_in == 16 * 9
    # exponential weights: mean and standard deviation both equal the scale sigma
    for w in (layer.weight_ee, layer.weight_ie):
        assert (w >= 0).all()
        assert w.mean().item() == pytest.approx(stats.weight_scale, rel=0.05)
        assert w.std().item() == pytest.approx(stats.weight_scale, rel=0.1)
    assert torch.all(layer.weight_ei == 1 / layer.num_inhibitory)
    assert torch.all(layer.gain_e == 1) and torch.all(layer.bias_e == 0)
    assert torch.allclose(layer.gain_i, torch.full_like(layer.gain_i, stats.inhibitory_gain))


def test_ei_init_errors_on_silent_or_constant_input():
    layer = EILinear(4, 8)
    with pytest.raises(ValueError, match="positive mean"):
        layer.ei_init(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="does not vary"):
        layer.ei_init(torch.ones(2, 3, 4))


def test_layer_initialises_itself_once_and_remembers_it():
    torch.manual_seed(0)
    layer = EILinear(6, 8)
    assert not layer.initialised
    x = torch.rand(3, 5, 6)
    first = layer(x)
    assert layer.initialised and layer.init_statistics.mean == pytest.approx(x.mean().item())
    torch.testing.assert_close(layer(x), first)  # no second initialisation
    clone = EILinear(6, 8)
    clone.load_state_dict(layer.state_dict())
    assert clone.initialised
    torch.testing.assert_close(clone(x * 0.5), layer(x * 0.5))  # not re-initialised on other data


def test_model_ei_init_runs_layer_by_layer_on_the_prefix():
    torch.manual_seed(0)
    model = EISpikingConvNet(depth=3, width=8, num_steps=4)
    x = torch.rand(32, 1, 8, 8)
    stats = ei_init(model, x)
    assert len(stats) == 4 and model.training
    inputs = []
    handles = [c.register_forward_pre_hook(lambda m, a: inputs.append(a[0].detach())) for c in model.circuits()]
    with torch.no_grad():
        model.eval()(x)
    for h in handles:
        h.remove()
    for stat, seen in zip(stats, inputs):
        mean, second, var = input_moments(seen.flatten(0, 1))
        assert (stat.mean, stat.second_moment) == (pytest.approx(mean), pytest.approx(second))
        assert stat.variance == pytest.approx(var)


# -- E-I Prop -------------------------------------------------------------------------------


def test_stabilisation_values_and_gradients_by_hand():
    divisor = torch.tensor([[0.0, 2.0, 3.0], [4.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    upstream = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    expected = torch.tensor([[2.0, 2.0, 3.0], [4.0, 4.0, 4.0], [1.0, 1.0, 1.0]])
    for straight_through, grad in (
        (True, upstream),  # identity gradient, replaced entries included
        (False, torch.tensor([[0.0, 3.0, 3.0], [15.0, 0.0, 0.0], [0.0, 0.0, 0.0]])),  # to the copied entry
    ):
        d = divisor.clone().requires_grad_(True)
        out = stabilize_divisor(d, straight_through=straight_through)
        torch.testing.assert_close(out, expected)
        (out * upstream).sum().backward()
        torch.testing.assert_close(d.grad, grad)


def _silent_unit_layer(**flags):
    """E unit 0 receives no inhibition (W_EI row 0 is zero), so its I_div is 0 for every sample."""
    torch.manual_seed(0)
    layer = EILinear(6, 4, ei_ratio=2, **flags).double()
    _randomise(layer, torch.Generator().manual_seed(3))
    with torch.no_grad():
        layer.weight_ei[0].zero_()
    layer.initialised = True
    return layer


def test_without_stabilisation_a_silent_divisor_explodes():
    x = torch.rand(2, 3, 6, dtype=torch.float64)
    assert not torch.isfinite(_silent_unit_layer(stabilize=False)(x)).all()
    assert torch.isfinite(_silent_unit_layer()(x)).all()


@pytest.mark.parametrize("straight_through", [True, False])
def test_inhibitory_weight_gradient_by_hand(straight_through):
    """d/dW_EI[0, k] of sum_{t,b} I_0, with I_div,0 = 0 replaced by the sample minimum m."""
    layer = _silent_unit_layer(straight_through=straight_through, scale_inhibitory_grad=False)
    x = torch.rand(2, 3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    layer(x)[..., 0].sum().backward()
    with torch.no_grad():
        s_i = x @ layer.weight_ie.T  # [T, B, n_I]
        i_ee = x @ layer.weight_ee[0]  # [T, B]
        i_div = (s_i * layer.gain_i) @ layer.weight_ei.T  # [T, B, n_E]; column 0 is 0
        m = i_div.masked_fill(i_div <= 0, math.inf).amin(dim=-1)  # per-sample smallest positive
        g_e = layer.gain_e[0]
        through_sub = -(g_e / m).unsqueeze(-1) * s_i  # I_sub path
        through_div = -(g_e * i_ee / m**2).unsqueeze(-1) * layer.gain_i * s_i  # I_div path (STE only)
        expected = through_sub + (through_div if straight_through else 0)
    torch.testing.assert_close(layer.weight_ei.grad[0], expected.sum(dim=(0, 1)))


def test_inhibitory_gradient_is_divided_by_the_fan_in():
    x = (torch.rand(2, 4, 3, 6, 6, generator=torch.Generator().manual_seed(0)) < 0.4).double()
    grads = {}
    for scaled in (True, False):
        torch.manual_seed(0)
        layer = EIConv2d(3, 8, 3, padding=1, scale_inhibitory_grad=scaled).double()
        layer.ei_init(x)
        with torch.no_grad():
            layer.weight_ei.mul_(torch.rand(layer.weight_ei.shape, dtype=torch.float64) + 0.5)
        layer(x).square().sum().backward()
        grads[scaled] = {n: p.grad.clone() for n, p in layer.named_parameters()}
    assert grads[False]["weight_ei"].abs().sum() > 0
    torch.testing.assert_close(grads[True]["weight_ei"], grads[False]["weight_ei"] / (3 * 9))
    for name in ("weight_ee", "weight_ie", "gain_i", "gain_e", "bias_e"):
        torch.testing.assert_close(grads[True][name], grads[False][name])


# -- the network and the registry -----------------------------------------------------------


def test_registry_builds_the_ei_network():
    spec = get_spec("ei")
    assert spec.circuit and spec.spiking_only
    model = build_snn("ei", depth=3, width=8, num_steps=4, beta=0.9)
    assert isinstance(model, EISpikingConvNet) and model.beta == 0.9
    assert len(model.neurons()) == 3 and all(isinstance(n, MultiStepLeaky) for n in model.neurons())
    assert len(circuits(model)) == 4 and model.readout.output


def test_network_trains_a_step_and_accepts_sequences():
    torch.manual_seed(0)
    model = EISpikingConvNet(depth=2, width=8, num_steps=3)
    x = torch.rand(5, 1, 8, 8)
    logits = model(x)
    assert logits.shape == (5, 10)
    torch.testing.assert_close(model(x.unsqueeze(0).expand(3, *x.shape)), logits)
    nn.functional.cross_entropy(logits, torch.arange(5)).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_float64_network():
    torch.manual_seed(0)
    model = EISpikingConvNet(depth=2, width=8, num_steps=2).double()
    assert model(torch.rand(3, 1, 8, 8, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: EIConv2d(1, 4, 3)(-torch.rand(2, 2, 1, 5, 5)), ValueError, "non-negative"),
        (lambda: EILinear(3, 4)(torch.rand(2, 3) - 2.0, t=0), ValueError, "non-negative"),
        (lambda: EIConv2d(1, 4, 3)(torch.rand(2, 1, 5, 5)), ValueError, "5-D"),
        (lambda: EIConv2d(2, 4, 3)(torch.rand(2, 2, 1, 5, 5)), ValueError, "expected 2 channels"),
        (lambda: EILinear(3, 4)(torch.rand(2, 2, 4)), ValueError, "expected 3 channels"),
        (lambda: EILinear(3, 4)(torch.ones(2, 2, 3, dtype=torch.int64)), TypeError, "floating"),
        (lambda: EILinear(3, 4)(torch.rand(2, 3), t=1.0), TypeError, "non-negative int"),
        (lambda: EILinear(3, 4, ei_ratio=0), ValueError, "ei_ratio must be positive"),
        (lambda: EILinear(3, 0), ValueError, "out_features must be positive"),
        (lambda: EIConv2d(1, 4, (3, 3, 3)), ValueError, "kernel_size"),
        (lambda: EISpikingConvNet(depth=2, width=8)(-torch.rand(2, 1, 8, 8)), ValueError, "non-negative"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


# -- diagnostics used by the chapter ----------------------------------------------------------


def test_dale_violation_share_counts_negative_constrained_entries():
    torch.manual_seed(0)
    model = build_snn("ei", depth=2, width=8, num_steps=2)
    model.eval()
    model(torch.rand(4, 1, 8, 8))  # E-I Init
    assert dale_violation_share(model) == 0.0
    layers = circuits(model)
    total = sum(p.numel() for layer in layers for p in layer.dale_parameters())
    with torch.no_grad():
        layers[0].weight_ee.view(-1)[:3] = -1.0
        layers[1].bias_e.fill_(-1.0)  # free: not counted
    assert dale_violation_share(model) == pytest.approx(3 / total)
    enforce_dale(model)
    assert dale_violation_share(model) == 0.0
    with pytest.raises(TypeError, match="no E-I circuits"):
        dale_violation_share(nn.Linear(2, 2))


class _ReadOut(nn.Module):
    """A one-circuit classifier: the time-averaged current of ``layer`` as logits."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x).mean(dim=0)


def test_straight_through_gradient_gap():
    # A silent divisor under a non-zero numerator: the STE routes gradient the plain path does not.
    model = _ReadOut(_silent_unit_layer())
    x = torch.rand(2, 3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    y = torch.tensor([0, 1, 2])
    assert straight_through_gradient_gap(model, x, y) > 1e-6
    assert model.layer.straight_through and model.training and model.layer.weight_ee.grad is None
    # Zeros of I_div only where the input is blank: the numerator is 0 there too, no difference.
    torch.manual_seed(0)
    network = build_snn("ei", depth=2, width=8, num_steps=2)
    images = torch.rand(6, 1, 8, 8)
    images[:, :, :, :3] = 0  # blank columns, as the digits' borders
    network.eval()
    network(images)  # E-I Init
    assert straight_through_gradient_gap(network, images, torch.arange(6)) == 0.0
    with pytest.raises(TypeError, match="no E-I circuits"):
        straight_through_gradient_gap(nn.Linear(2, 2), torch.rand(2, 2), torch.tensor([0, 1]))


# -- input and argument checks ------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"stride": 0}, ValueError, "stride must be positive"),
        ({"stride": (1, 0)}, ValueError, "stride must be positive"),
        ({"stride": 1.0}, TypeError, "stride must be an int"),
        ({"padding": -1}, ValueError, "padding must be an int >= 0"),
        ({"padding": True}, TypeError, "padding must be an int"),
        ({"kernel_size": 0}, ValueError, "kernel_size must be positive"),
        ({"kernel_size": 3.0}, TypeError, "kernel_size must be an int"),
        ({"kernel_size": (3, 3, 3)}, ValueError, "kernel_size must be an int or a pair"),
        ({"ei_ratio": 2.0}, TypeError, "ei_ratio must be an int"),
        ({"output": 1}, TypeError, "output must be True or False"),
        ({"stabilize": "yes"}, TypeError, "stabilize must be True or False"),
        ({"auto_init": None}, TypeError, "auto_init must be True or False"),
    ],
)
def test_conv_circuit_constructor_refuses_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=f"EIConv2d: {match}"):
        EIConv2d(**{"in_channels": 2, "out_channels": 8, "kernel_size": 3, **kwargs})


def test_linear_circuit_constructor_refuses_bad_flags_and_sizes():
    with pytest.raises(TypeError, match="EILinear: straight_through must be True or False"):
        EILinear(3, 4, straight_through=0)
    with pytest.raises(TypeError, match="EILinear: in_features must be an int"):
        EILinear(3.0, 4)


def test_a_kernel_larger_than_the_padded_input_is_refused():
    layer = EIConv2d(1, 4, 5, padding=1)
    layer(torch.rand(2, 2, 1, 3, 3))  # 3 + 2 = 5: exactly fits
    with pytest.raises(ValueError, match=r"EIConv2d: the 5x5 kernel is larger than the input 2x2 padded by \(1, 1\)"):
        layer(torch.rand(2, 2, 1, 2, 2))


def test_a_dtype_other_than_the_layers_is_refused():
    with pytest.raises(TypeError, match="EIConv2d: the layer's parameters are torch.float32, got .* torch.float64"):
        EIConv2d(1, 4, 3)(torch.rand(2, 2, 1, 5, 5, dtype=torch.float64))
    with pytest.raises(TypeError, match="EILinear: the layer's parameters are torch.float64"):
        EILinear(3, 4).double()(torch.rand(2, 2, 3))


@pytest.mark.parametrize("layer, x", [(EIConv2d(1, 4, 3), torch.rand(0, 2, 1, 5, 5)), (EILinear(3, 4), torch.rand(0, 2, 3))])
def test_zero_time_steps_are_refused_by_the_circuits(layer, x):
    with pytest.raises(ValueError, match=f"{type(layer).__name__}: expected at least one time step"):
        layer(x)
    assert not layer.initialised


def test_ei_init_refuses_non_finite_or_tiny_batches_and_keeps_the_layer():
    layer = EILinear(4, 8)
    before = {name: p.clone() for name, p in layer.named_parameters()}
    x = torch.rand(2, 3, 4)
    x[0, 0, 0] = math.nan
    with pytest.raises(ValueError, match="EILinear: E-I Init needs a finite batch"):
        layer(x)
    with pytest.raises(ValueError, match="EILinear: E-I Init needs at least 2 samples"):
        layer(torch.rand(1, 1, 4))
    assert not layer.initialised
    assert all(torch.equal(p, before[name]) for name, p in layer.named_parameters())


def test_nan_input_shows_in_the_logits_of_an_initialised_network():
    torch.manual_seed(0)
    model = EISpikingConvNet(depth=2, width=8, num_steps=2)
    model(torch.rand(4, 1, 8, 8))  # E-I Init
    x = torch.rand(3, 1, 8, 8)
    x[1, 0, 4, 4] = math.nan
    logits = model(x)
    assert torch.isnan(logits[1]).all() and torch.isfinite(logits[[0, 2]]).all()


def test_scale_gradient_is_exact_to_second_order():
    """Not the true derivative by design (gradcheck would fail): the scaled one, differentiated exactly."""
    x = torch.randn(4, dtype=torch.float64, requires_grad=True)
    # the gradient of sum(x * x) scaled by 0.25 is 0.5 x; its derivative 0.5: exact, not dropped
    assert torch.autograd.gradgradcheck(lambda v: scale_gradient(v * v, 0.25), (x,))
    (grad,) = torch.autograd.grad(scale_gradient(x * x, 0.25).sum(), x, create_graph=True)
    torch.testing.assert_close(grad, 0.5 * x)
    (second,) = torch.autograd.grad(grad.sum(), x)
    torch.testing.assert_close(second, torch.full_like(x, 0.5))


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: scale_gradient(torch.ones(2), math.nan), ValueError, "scale_gradient: factor must be a finite"),
        (lambda: scale_gradient([1.0], 0.5), TypeError, "scale_gradient"),
        (lambda: ei_init_scales(0, 0.5, 0.5, 0.25), ValueError, "ei_init_scales: fan_in must be positive"),
        (lambda: ei_init_scales(9, math.nan, 0.5, 0.25), ValueError, "ei_init_scales: mean must be a finite"),
        (lambda: ei_init_scales(9, 0.5, -0.5, 0.25), ValueError, "ei_init_scales: second_moment and variance"),
        (lambda: input_moments(torch.ones(3, 2, dtype=torch.int64)), TypeError, "input_moments"),
        (lambda: stabilize_divisor(torch.ones(3)), ValueError, "stabilize_divisor: expected a divisor"),
        (lambda: stabilize_divisor(torch.ones(2, 3), straight_through=1), TypeError, "straight_through"),
        (lambda: stabilize_divisor(torch.ones(2, 3), fallback=0.0), ValueError, "fallback must be a positive"),
        (lambda: circuits("model"), TypeError, "circuits: expected an nn.Module"),
        (lambda: ei_current_at_init(rate=0.0), ValueError, "ei_current_at_init: rate must lie in"),
        (lambda: ei_current_at_init(rate=0.2, channels=8.0), TypeError, "ei_current_at_init: channels must be an int"),
        (lambda: ei_current_at_init(rate=0.2, seed=-1), ValueError, "ei_current_at_init: seed"),
        (lambda: straight_through_gradient_gap(build_snn("ei", depth=1, width=4, num_steps=2), torch.rand(2, 1, 8, 8),
                                               torch.tensor([0.0, 1.0])), TypeError, "integer class labels"),
    ],
)
def test_public_functions_refuse_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()
