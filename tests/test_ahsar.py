"""AHSAR controller: configuration, equations by hand, untouched gradients, bounds, attach/detach, state, snntorch."""

import copy
import dataclasses
import io
import math

import pytest
import snntorch
import torch
from snntorch import surrogate
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from snn_norm_lite.ahsar import AHSAR, AHSARConfig, band_deviation, diffuse
from snn_norm_lite.models import build_snn
from snn_norm_lite.probes import firing_rates, spiking_layers
from snn_norm_lite.training import History, fit


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from threads, and on a shared CPU extra threads cost 10-50x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(seed=0, norm="bn", threshold=1.0):
    torch.manual_seed(seed)
    return build_snn(norm, depth=3, width=8, num_steps=4, threshold=threshold)


def _batch(seed=0, n=16):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


def _train_steps(model, steps, lr=1e-2, seed=0):
    optimiser = torch.optim.SGD(model.parameters(), lr=lr)
    for i in range(steps):
        x, y = _batch(seed + i)
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()


def _thresholds(model):
    return [layer.threshold.clone() for layer in spiking_layers(model)]


def _hand_scales(rate_history, config):
    """The fast loop written out with plain Python lists (independent of the controller's code)."""
    keys = ("target_low", "target_high", "ema", "diffusion", "strength", "width")
    low, high, ema, D, k, w = (getattr(config, key) for key in keys)
    smoothed = list(rate_history[0])
    for rates in rate_history[1:]:
        smoothed = [ema * s + (1 - ema) * r for s, r in zip(smoothed, rates)]
    e = [(s - high) if s > high else (s - low) if s < low else 0.0 for s in smoothed]
    L = len(e)
    d = [e[l] + D * (e[max(l - 1, 0)] - 2 * e[l] + e[min(l + 1, L - 1)]) for l in range(L)]
    return [1 + k * math.tanh(v / w) for v in d]


def test_fast_loop_matches_the_equations():
    model = _model(threshold=0.5)
    controller = AHSAR(target_low=0.3, target_high=0.35, diffusion=0.3).attach(model)
    _train_steps(model, 4)
    rates = controller.history["rate"]
    assert len(rates) == 4 and len(rates[0]) == 3
    expected = _hand_scales(rates, controller.config)
    torch.testing.assert_close(controller.scales, torch.tensor(expected), rtol=1e-5, atol=1e-6)
    assert any(abs(s - 1) > 0.01 for s in expected), "the test needs rates outside the band"
    # the rates it sensed are the layers' mean spike counts: compare with the probe on the same pass
    x, _ = _batch(99)
    probe_model = copy.deepcopy(model)  # a deep copy is not regulated by the controller
    model(x)
    probe_model.load_state_dict(model.state_dict())
    probed = firing_rates(probe_model, x, train_mode=True)
    torch.testing.assert_close(controller.last_rates, probed, rtol=1e-5, atol=1e-7)


def test_band_deviation_and_diffusion_by_hand():
    rates = torch.tensor([0.0, 0.1, 0.5, 0.2])
    torch.testing.assert_close(band_deviation(rates, 0.05, 0.25), torch.tensor([-0.05, 0.0, 0.25, 0.0]))
    values = torch.tensor([1.0, 0.0, 0.0, 2.0])
    # reflecting ends: v_0 = v_1 and v_{L+1} = v_L
    torch.testing.assert_close(diffuse(values, 0.5), torch.tensor([0.5, 0.5, 1.0, 1.0]))
    assert diffuse(values, 0.5).sum() == values.sum()  # diffusion conserves the total


def test_thresholds_change_at_most_once_per_training_pass_and_never_in_eval():
    model = _model(threshold=0.3)
    controller = AHSAR(target_low=0.4, target_high=0.4).attach(model)
    seen = []  # the threshold each neuron used, one entry per neuron call
    for layer in model.neurons():
        layer.register_forward_pre_hook(lambda m, a: seen.append(float(m.threshold)))
    x, _ = _batch()
    used = []
    for _ in range(4):
        announced = [float(t) for t in controller.thresholds()]
        seen.clear()
        model(x)
        assert seen == announced  # written once, at the start of the pass, as announced
        used.append(seen[:])
    assert used[0] == pytest.approx([0.3, 0.3, 0.3])  # the first pass: the original thresholds
    assert len({tuple(u) for u in used}) == 4  # and it did move between passes
    passes, before = controller.passes, _thresholds(model)
    model.eval()
    model(x)
    assert controller.passes == passes and controller.last_rates is not None
    assert all(torch.equal(a, b) for a, b in zip(before, _thresholds(model)))


def test_eval_sensing_is_optional():
    x, _ = _batch()
    model = _model()
    quiet = AHSAR().attach(model)
    model.eval()(x)
    assert quiet.last_rates is None and quiet.passes == 0
    quiet.detach()
    listening = AHSAR(sense_in_eval=True).attach(model)
    model(x)
    assert listening.last_rates is not None and listening.passes == 0 and listening.scales is None


def test_gradients_are_those_of_the_same_network_with_thresholds_set_by_hand():
    model = _model(threshold=0.4)
    controller = AHSAR(target_low=0.3, target_high=0.3).attach(model)
    _train_steps(model, 3)
    thresholds = controller.thresholds()  # what the next training pass will use
    assert any(abs(float(t) - 0.4) > 1e-3 for t in thresholds), "the test needs moved thresholds"
    twin = _model(threshold=0.4)
    twin.load_state_dict(model.state_dict())
    with torch.no_grad():
        for layer, value in zip(twin.neurons(), thresholds):
            layer.threshold.copy_(value)
    x, y = _batch(42)
    for net in (model, twin):
        net.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        assert torch.equal(a.grad, b.grad), name


def test_scales_and_gain_stay_bounded():
    model = _model(threshold=0.01)  # every layer fires at almost every step
    controller = AHSAR(strength=0.3, gain_min=0.8, gain_max=1.25, gain_rate=0.5).attach(model)
    _train_steps(model, 3)
    assert torch.all(controller.scales < 1.3) and torch.all(controller.scales > 0.7)
    assert torch.all(controller.scales > 1.2)  # far above the band: near the upper bound
    for _ in range(5):
        controller.on_epoch(model, None)
    assert float(controller.gain) == pytest.approx(1.25)
    for t in controller.thresholds():
        assert 0.01 * 0.7 * 0.8 <= float(t) <= 0.01 * 1.3 * 1.25


def test_gain_step_by_hand():
    model = _model()
    controller = AHSAR(gain_rate=0.1, accuracy_weight=0.2).attach(model)
    _train_steps(model, 2)
    energy = sum(sum(r * r for r in rates) / len(rates) for rates in controller.history["rate"]) / 2
    controller.on_epoch(model, History(val_accuracy=[50.0]))  # first epoch: no accuracy change
    z = (energy - controller.energy_budget) / controller.energy_budget
    gain = math.exp(0.1 * math.tanh(z))
    assert float(controller.gain) == pytest.approx(gain, rel=1e-5)
    _train_steps(model, 1, seed=5)
    energy = sum(r * r for r in controller.history["rate"][-1]) / 3
    controller.on_epoch(model, History(val_accuracy=[50.0, 47.0]))  # accuracy fell 3 points
    z = (energy - controller.energy_budget) / controller.energy_budget + 0.2 * (-3.0)
    assert float(controller.gain) == pytest.approx(gain * math.exp(0.1 * math.tanh(z)), rel=1e-5)
    assert controller.history["epoch_accuracy_change"] == [0.0, -3.0]


def test_detach_restores_the_exact_thresholds_and_removes_the_hooks():
    model = _model(threshold=0.37)
    original = _thresholds(model)
    controller = AHSAR().attach(model)
    _train_steps(model, 3)
    controller.on_epoch(model, None)
    assert not all(torch.equal(a, b) for a, b in zip(original, controller.thresholds()))
    controller.detach()
    assert all(torch.equal(a, b) for a, b in zip(original, _thresholds(model)))
    assert not model._forward_hooks and not model._forward_pre_hooks
    assert not any(layer._forward_hooks for layer in model.neurons())
    passes = controller.passes
    _train_steps(model, 1)
    assert controller.passes == passes and all(torch.equal(a, b) for a, b in zip(original, _thresholds(model)))


def test_state_round_trip_resumes_identically():
    model = _model(threshold=0.5)
    controller = AHSAR(target_low=0.3, target_high=0.3, ema=0.5).attach(model)
    _train_steps(model, 3)
    controller.on_epoch(model, History(val_accuracy=[40.0]))
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "ahsar": controller.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer)
    twin = _model(threshold=0.5)
    twin.load_state_dict(saved["model"])  # carries the regulated thresholds...
    resumed = AHSAR()
    resumed.load_state_dict(saved["ahsar"])  # ...and the controller its base thresholds and state
    resumed.attach(twin)
    assert resumed.config == controller.config
    for a, b in zip(resumed.thresholds(), controller.thresholds()):
        assert torch.equal(a, b)
    x, y = _batch(7)
    for net in (model, twin):
        nn.functional.cross_entropy(net(x), y).backward()
    assert torch.equal(resumed.scales, controller.scales) and torch.equal(resumed.rate_ema, controller.rate_ema)


class PerStepSNN(nn.Module):
    """A small snntorch-style network: Linear -> Leaky, twice, looped over time in forward."""

    def __init__(self, steps=5):
        super().__init__()
        self.steps = steps
        self.fc1, self.fc2 = nn.Linear(6, 16), nn.Linear(16, 3)
        self.lif1 = snntorch.Leaky(beta=0.8, threshold=0.5, spike_grad=surrogate.atan())
        self.lif2 = snntorch.Leaky(beta=0.8, threshold=0.5, spike_grad=surrogate.atan())

    def forward(self, x):
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        counts = 0
        for _ in range(self.steps):
            spk1, mem1 = self.lif1(self.fc1(x), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            counts = counts + spk2
        return counts / self.steps


def test_works_on_snntorch_leaky_in_a_per_step_model():
    torch.manual_seed(0)
    model = PerStepSNN()
    controller = AHSAR(target_low=0.6, target_high=0.7).attach(model)
    assert controller.layers == [model.lif1, model.lif2]
    spikes = {0: [], 1: []}
    model.lif1.register_forward_hook(lambda m, a, out: spikes[0].append(out[0].detach()))
    model.lif2.register_forward_hook(lambda m, a, out: spikes[1].append(out[0].detach()))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.rand(8, 6) * 2, torch.randint(0, 3, (8,))
    for _ in range(3):
        spikes[0].clear(), spikes[1].clear()
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()  # thresholds are never written mid-graph
        optimiser.step()
    expected = torch.stack([torch.stack(spikes[i]).mean() for i in (0, 1)])
    torch.testing.assert_close(controller.last_rates, expected)  # averaged over the 5 calls per pass
    assert controller.passes == 3
    expected_scales = _hand_scales(controller.history["rate"], controller.config)
    torch.testing.assert_close(controller.scales, torch.tensor(expected_scales))
    controller.detach()
    assert float(model.lif1.threshold) == 0.5 and float(model.lif2.threshold) == 0.5


def test_works_with_fit_callbacks():
    model = _model()
    x, y = _batch(0, n=32)
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    controller = AHSAR().attach(model)
    history = fit(model, loader, loader, epochs=2, progress=False, on_epoch=controller.on_epoch)
    assert controller.passes == 8 and controller.epochs == 2
    assert len(controller.history["scale"]) == 8 and len(controller.history["epoch_gain"]) == 2
    assert len(history.val_accuracy) == 2


def test_deep_copy_of_an_attached_model_is_not_regulated():
    model = _model()
    controller = AHSAR().attach(model)
    twin = copy.deepcopy(model)
    twin(_batch()[0])
    assert controller.passes == 0


def test_errors():
    model = _model()
    controller = AHSAR().attach(model)
    with pytest.raises(RuntimeError, match="already attached"):
        controller.attach(model)
    with pytest.raises(RuntimeError, match="detach"):
        controller.reset()
    with pytest.raises(ValueError, match="not attached"):
        controller.on_epoch(_model(), None)
    with pytest.raises(ValueError, match="no spiking layer"):
        AHSAR().attach(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="no layers to regulate"):
        AHSAR().attach(model, layers=[])
    learnable = nn.Sequential(snntorch.Leaky(beta=0.9, learn_threshold=True))
    with pytest.raises(TypeError, match="learns its threshold"):
        AHSAR().attach(learnable)
    with pytest.raises(TypeError, match=r"unknown field\(s\) \['target'\]; known: target_low, target_high, ema"):
        AHSAR(target=0.1)
    with pytest.raises(TypeError, match="config must be an AHSARConfig"):
        AHSAR({"ema": 0.5})
    with pytest.raises(ValueError, match="target_low <= target_high"):
        AHSAR(target_low=0.3, target_high=0.1)
    with pytest.raises(ValueError, match="strength"):
        AHSAR(strength=1.0)
    with pytest.raises(ValueError, match="diffusion"):
        AHSAR(diffusion=0.7)
    with pytest.raises(TypeError, match="must be a number"):
        AHSAR(ema="fast")
    assert controller.config == AHSARConfig()


# -- the configuration -------------------------------------------------------------------------

# field: (its valid range as the documentation states it, values out of that range)
NUMERIC_FIELDS = {
    "target_low": ("[0, 1]", [-0.01, 1.5]),
    "target_high": ("[0, 1]", [-0.01, 1.01]),
    "ema": ("[0, 1)", [-0.1, 1.0]),
    "diffusion": ("[0, 0.5]", [-0.1, 0.51]),
    "strength": ("(0, 1)", [0.0, 1.0]),
    "width": ("(0, inf)", [0.0, -0.05]),
    "gain_rate": ("[0, inf)", [-0.01]),
    "gain_min": ("(0, 1]", [0.0, 1.01]),
    "gain_max": ("[1, inf)", [0.99]),
    "energy_target": ("(0, inf) or None", [0.0, -0.1]),
    "accuracy_weight": ("[0, inf)", [-0.1]),
}
FLAG_FIELDS = ("sense_in_eval", "record_history")


def test_every_field_is_covered_by_the_validation_table():
    assert set(NUMERIC_FIELDS) | set(FLAG_FIELDS) == {f.name for f in dataclasses.fields(AHSARConfig)}


@pytest.mark.parametrize("name", NUMERIC_FIELDS)
def test_config_rejects_out_of_range_and_non_finite_numbers(name):
    valid_range, outside = NUMERIC_FIELDS[name]
    for value in outside + [math.nan, math.inf, -math.inf]:
        with pytest.raises(ValueError) as error:
            AHSARConfig(**{name: value})
        message = str(error.value)
        assert f"AHSARConfig.{name}" in message and valid_range in message and repr(value) in message, message


@pytest.mark.parametrize("name", NUMERIC_FIELDS)
def test_config_rejects_numbers_of_the_wrong_type(name):
    valid_range, _ = NUMERIC_FIELDS[name]
    for value in ("0.1", True, [0.1], torch.tensor(0.1)):
        with pytest.raises(TypeError) as error:
            AHSARConfig(**{name: value})
        message = str(error.value)
        assert f"AHSARConfig.{name}" in message and "must be a number" in message and valid_range in message, message
        assert type(value).__name__ in message, message


@pytest.mark.parametrize("name", FLAG_FIELDS)
def test_config_flags_must_be_bools(name):
    for value in (0, 1, "yes", None):
        with pytest.raises(TypeError, match=rf"AHSARConfig\.{name} must be a bool .*got {value!r}"):
            AHSARConfig(**{name: value})
    assert getattr(AHSARConfig(**{name: True}), name) is True


def test_config_accepts_the_edges_of_each_range_and_stores_floats():
    config = AHSARConfig(target_low=0, target_high=0, ema=0, diffusion=0.5, gain_rate=0, gain_min=1, gain_max=1,
                         accuracy_weight=0, energy_target=None)
    assert config.gain_max == 1.0 and isinstance(config.gain_max, float) and isinstance(config.ema, float)
    assert AHSARConfig(energy_target=1).energy_budget == 1.0
    assert AHSARConfig().energy_budget == pytest.approx(0.15**2)  # the middle of the default band, squared


def test_config_needs_an_ordered_band():
    with pytest.raises(ValueError, match=r"target_low <= target_high, got target_low=0.3, target_high=0.1"):
        AHSARConfig(target_low=0.3, target_high=0.1)


def test_config_is_frozen_and_replace_checks_its_changes():
    config = AHSARConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.ema = 0.5
    changed = config.replace(ema=0.5)
    assert changed.ema == 0.5 and config.ema == 0.9  # a copy; the original is unchanged
    with pytest.raises(ValueError, match="AHSARConfig.ema"):
        config.replace(ema=1.0)
    with pytest.raises(TypeError, match="unknown field"):
        config.replace(emma=0.5)
    controller = AHSAR()
    with pytest.raises(dataclasses.FrozenInstanceError):
        controller.config.strength = 0.9
    with pytest.raises(AttributeError):
        controller.config = AHSARConfig(strength=0.9)  # only load_state_dict replaces it


def test_controller_takes_a_config_and_overrides():
    base = AHSARConfig(ema=0.5, diffusion=0.1)
    assert AHSAR(base).config == base
    assert AHSAR(base, diffusion=0.2).config == AHSARConfig(ema=0.5, diffusion=0.2)
    assert AHSAR(target_low=0.1).config == AHSARConfig(target_low=0.1)
    with pytest.raises(ValueError, match="AHSARConfig.strength"):
        AHSAR(base, strength=2.0)
