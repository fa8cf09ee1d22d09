"""AHSAR controller: configuration, equations by hand, untouched gradients, bounds, attach/detach, state, snntorch."""

import copy
import dataclasses
import io
import math
import pickle

import pytest
import snntorch
import torch
from snntorch import surrogate
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from snn_norm_lite.ahsar import AHSAR, AHSARConfig, band_deviation, diffuse
from snn_norm_lite.models import build_snn
from snn_norm_lite.norms.mpbn import FoldedMPBNLeaky, MPBNLeaky, fold_mpbn
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
    with pytest.raises(TypeError, match="AHSAR.on_epoch: history must be None or have a val_accuracy list"):
        controller.on_epoch(model, {"val_accuracy": [50.0]})
    with pytest.raises(ValueError, match="AHSAR.on_epoch: the last val_accuracy must be a finite number, got nan"):
        controller.on_epoch(model, History(val_accuracy=[math.nan]))
    with pytest.raises(TypeError, match="AHSAR.on_epoch: the last val_accuracy must be a real number"):
        controller.on_epoch(model, History(val_accuracy=["50"]))
    assert controller.epochs == 0 and float(controller.gain) == 1.0
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
    with pytest.raises(TypeError, match="AHSARConfig: ema must be a real number"):
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


NOT_FINITE = [math.nan, math.inf, -math.inf]
WRONG_TYPE = ["0.1", True, False, [0.1], torch.tensor(0.1), None]


@pytest.mark.parametrize("name", NUMERIC_FIELDS)
@pytest.mark.parametrize("kind", ["outside", "not finite"])
def test_config_rejects_out_of_range_and_non_finite_numbers(name, kind):
    valid_range, outside = NUMERIC_FIELDS[name]
    for value in outside if kind == "outside" else NOT_FINITE:
        with pytest.raises(ValueError) as error:
            AHSARConfig(**{name: value})
        message = str(error.value)
        assert f"AHSARConfig: {name} must" in message and valid_range in message and repr(value) in message, message


@pytest.mark.parametrize("name", NUMERIC_FIELDS)
@pytest.mark.parametrize("value", WRONG_TYPE, ids=repr)
def test_config_rejects_numbers_of_the_wrong_type(name, value):
    if value is None and name == "energy_target":
        assert AHSARConfig(energy_target=None).energy_target is None  # None means "the middle of the band"
        return
    valid_range, _ = NUMERIC_FIELDS[name]
    with pytest.raises(TypeError) as error:
        AHSARConfig(**{name: value})
    message = str(error.value)
    assert f"AHSARConfig: {name} must be a real number" in message and valid_range in message, message
    assert type(value).__name__ in message, message


@pytest.mark.parametrize("name", FLAG_FIELDS)
def test_config_flags_must_be_bools(name):
    for value in (0, 1, 1.0, "yes", "False", None, torch.tensor(True)):
        with pytest.raises(TypeError, match=rf"AHSARConfig: {name} must be True or False, got {type(value).__name__}"):
            AHSARConfig(**{name: value})
    assert getattr(AHSARConfig(**{name: True}), name) is True
    assert getattr(AHSARConfig(**{name: False}), name) is False


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
    with pytest.raises(ValueError, match="AHSARConfig: ema"):
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
    with pytest.raises(ValueError, match="AHSARConfig: strength"):
        AHSAR(base, strength=2.0)


# -- one controller per model --------------------------------------------------------------------


def _hook_counts(model):
    return len(model._forward_pre_hooks), len(model._forward_hooks), [len(n._forward_hooks) for n in model.neurons()]


def test_a_second_controller_on_a_regulated_model_is_refused():
    model = _model()
    first = AHSAR().attach(model)
    hooks = _hook_counts(model)
    with pytest.raises(RuntimeError, match=r"this SpikingConvNet already has an AHSAR controller attached; detach\(\) that"):
        AHSAR().attach(model)
    with pytest.raises(RuntimeError, match=r"layer 0 \(MultiStepLeaky\) of this SpikingBlock is already regulated by another"):
        AHSAR().attach(model.blocks[1])  # a part of the model: its layer already has a controller
    with pytest.raises(RuntimeError, match=r"already attached \(to a SpikingConvNet\); detach\(\) it first"):
        first.attach(model)  # the same controller twice
    with pytest.raises(RuntimeError, match=r"already attached \(to a SpikingConvNet\)"):
        first.attach(_model())  # one model at a time
    assert _hook_counts(model) == hooks and first.attached  # the refused attempts left nothing behind
    _train_steps(model, 1)
    assert first.passes == 1
    first.detach()
    second = AHSAR().attach(model)  # free again
    _train_steps(model, 1)
    assert second.passes == 1 and first.passes == 1


def test_a_copy_of_a_regulated_model_takes_its_own_controller():
    model = _model()
    first = AHSAR().attach(model)
    twin = copy.deepcopy(model)
    second = AHSAR().attach(twin)
    _train_steps(twin, 2)
    assert second.passes == 2 and first.passes == 0


def test_layers_must_belong_to_the_model():
    model = _model()
    with pytest.raises(ValueError, match=r"layer 0 \(MultiStepLeaky\) is not a submodule of the SpikingConvNet"):
        AHSAR().attach(model, layers=_model().neurons())
    with pytest.raises(ValueError, match="appears twice"):
        AHSAR().attach(model, layers=[model.neurons()[0]] * 2)
    with pytest.raises(TypeError, match="layers must be a list of modules"):
        AHSAR().attach(model, layers=model.neurons()[0])
    layer = model.neurons()[0]
    with torch.no_grad():
        layer.threshold.fill_(-0.5)
    with pytest.raises(ValueError, match=r"layer 0 \(MultiStepLeaky\) has threshold -0.5; AHSAR scales thresholds"):
        AHSAR().attach(model)
    assert _hook_counts(model) == (0, 0, [0, 0, 0])


# -- folded MPBN neurons ---------------------------------------------------------------------------


def _folded_mpbn(seed=0):
    """A folded MPBN network with moved running statistics and some channels firing below V~."""
    torch.manual_seed(seed)
    model = build_snn("mpbn", depth=3, width=8, num_steps=4)
    _train_steps(model, 3)
    with torch.no_grad():
        for neuron in model.neurons():
            neuron.membrane_norm.weight[::3].neg_()
    return fold_mpbn(model)


def _spikes_of(model, x):
    spikes = []
    handles = [n.register_forward_hook(lambda m, a, out: spikes.append(out.clone())) for n in model.neurons()]
    with torch.no_grad():
        output = model(x)
    for handle in handles:
        handle.remove()
    return spikes, output


def _set_by_hand(model, fire, reset):
    with torch.no_grad():
        for neuron, f, r in zip(model.neurons(), fire, reset):
            neuron.fire_threshold.copy_(f)
            neuron.threshold.copy_(r)


def test_folded_mpbn_layers_fire_by_the_scaled_fire_threshold():
    folded = _folded_mpbn()
    neurons = folded.neurons()
    assert all(isinstance(n, FoldedMPBNLeaky) for n in neurons)
    assert all(bool((n.fire_direction < 0).any()) and bool((n.fire_direction > 0).any()) for n in neurons)
    base = [n.fire_threshold.clone() for n in neurons]
    resets = [n.threshold.clone() for n in neurons]
    controller = AHSAR(target_low=0.4, target_high=0.4).attach(folded)
    folded.train()
    with torch.no_grad():
        for i in range(3):
            folded(_batch(i)[0])
    factors = controller.scales * controller.gain  # what the next pass runs with
    assert any(abs(float(f) - 1) > 0.05 for f in factors), "the test needs moved thresholds"
    for announced, b, f in zip(controller.thresholds(), base, factors):
        assert announced.shape == (8,) and torch.equal(announced, b * f)  # per channel
    by_hand, unscaled = copy.deepcopy(folded), copy.deepcopy(folded)  # copies are not regulated
    _set_by_hand(by_hand, [b * f for b, f in zip(base, factors)], [r * f for r, f in zip(resets, factors)])
    _set_by_hand(unscaled, base, resets)
    x = _batch(9)[0]
    regulated, output = _spikes_of(folded, x)  # the controller writes the thresholds at the start
    expected, expected_output = _spikes_of(by_hand, x)
    assert all(torch.equal(a, b) for a, b in zip(regulated, expected)) and torch.equal(output, expected_output)
    for neuron, twin in zip(folded.neurons(), by_hand.neurons()):
        assert torch.equal(neuron.fire_threshold, twin.fire_threshold) and torch.equal(neuron.threshold, twin.threshold)
    plain, _ = _spikes_of(unscaled, x)
    assert not all(torch.equal(a, b) for a, b in zip(regulated, plain))  # the scaling did change the spikes
    controller.detach()
    for neuron, b, r in zip(folded.neurons(), base, resets):
        assert torch.equal(neuron.fire_threshold, b) and torch.equal(neuron.threshold, r)


def test_scaling_a_folded_neuron_is_dividing_its_input_current():
    """The documented meaning of the factor on a folded neuron: fire threshold and reset times f
    is the neuron fed x / f. With f = 2 every operation is exact, so the spikes are identical."""
    torch.manual_seed(0)
    neuron = MPBNLeaky(4)
    with torch.no_grad():
        neuron.membrane_norm.weight[1].neg_()
    neuron(torch.randn(4, 8, 4, 5, 5))  # training pass: running statistics
    folded = neuron.eval().fold()
    assert bool((folded.fire_direction < 0).any())
    scaled = copy.deepcopy(folded)
    with torch.no_grad():
        scaled.fire_threshold.mul_(2.0)
        scaled.threshold.mul_(2.0)
    x = torch.randn(6, 3, 4, 5, 5) * 3
    assert torch.equal(scaled(x), folded(x / 2))
    assert not torch.equal(scaled(x), folded(x))


@pytest.mark.parametrize(
    "fire, direction, wrong",
    [
        ([1.0, -0.5], [1.0, 1.0], [1]),  # fires above -0.5: at rest
        ([1.0, 0.5], [1.0, -1.0], [1]),  # fires below 0.5: at rest
        ([0.0, 2.0], [1.0, 1.0], [0]),  # scaling a zero threshold changes nothing
    ],
)
def test_folded_layers_with_channels_firing_at_rest_are_refused(fire, direction, wrong):
    neuron = FoldedMPBNLeaky(torch.tensor(fire), torch.tensor(direction), beta=0.9, threshold=1.0)
    with pytest.raises(ValueError, match=rf"layer 0 \(FoldedMPBNLeaky\): channels {re_list(wrong)} fire at rest"):
        AHSAR().attach(nn.Sequential(neuron))
    assert not neuron._forward_hooks


def re_list(values):
    return str(values).replace("[", r"\[").replace("]", r"\]")


def test_folded_channels_that_never_or_always_fire_are_left_as_they_are():
    fire = torch.tensor([1.0, -0.5, math.inf, -math.inf, math.inf])
    neuron = FoldedMPBNLeaky(fire, torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0]), beta=0.9, threshold=1.0)
    controller = AHSAR().attach(nn.Sequential(neuron))
    controller.state.scales = torch.tensor([1.5])  # as after a pass far above the band
    controller._write_thresholds()
    assert neuron.fire_threshold.tolist() == [1.5, -0.75, math.inf, -math.inf, math.inf]
    assert float(neuron.threshold) == 1.5


# -- loading a state ------------------------------------------------------------------------------


def _trained_state():
    model = _model()
    controller = AHSAR(ema=0.5).attach(model)
    _train_steps(model, 2)
    controller.on_epoch(model, History(val_accuracy=[40.0]))
    return controller.state_dict()


def _without(state, key):
    return {k: v for k, v in state.items() if k != key}


def _changed(state, **changes):
    return {**state, **changes}


GOOD = _trained_state()
BAD_STATES = {
    "not a dict": ([("gain", 1.0)], TypeError, "expected a dict"),
    "missing key": (_without(GOOD, "gain"), ValueError, r"missing key\(s\) \['gain'\]; expected exactly"),
    "unknown key": (_changed(GOOD, extra=1), ValueError, r"unknown key\(s\) \['extra'\]"),
    "config not a dict": (_changed(GOOD, config=AHSARConfig()), TypeError, "config: expected a dict"),
    "config missing field": (_changed(GOOD, config=_without(GOOD["config"], "ema")), ValueError, r"config: missing key\(s\) \['ema'\]"),
    "config unknown field": (_changed(GOOD, config={**GOOD["config"], "emma": 0.5}), ValueError, r"config: unknown key\(s\) \['emma'\]"),
    "config bad value": (_changed(GOOD, config={**GOOD["config"], "ema": "0.5"}), TypeError, "AHSARConfig: ema"),
    "config bad flag": (_changed(GOOD, config={**GOOD["config"], "record_history": 1}), TypeError, "record_history must be True or False"),
    "gain a float": (_changed(GOOD, gain=1.0), TypeError, "gain must be a floating-point tensor, got float"),
    "gain 1-D": (_changed(GOOD, gain=torch.tensor([1.0])), ValueError, r"gain must have 0 dimension\(s\), got shape \(1,\)"),
    "gain NaN": (_changed(GOOD, gain=torch.tensor(math.nan)), ValueError, "gain holds NaN"),
    "gain infinite": (_changed(GOOD, gain=torch.tensor(math.inf)), ValueError, "gain must be finite"),
    "gain out of bounds": (_changed(GOOD, gain=torch.tensor(5.0)), ValueError, r"gain 5.0 lies outside \[gain_min, gain_max\]"),
    "gain an int tensor": (_changed(GOOD, gain=torch.tensor(1)), TypeError, "dtype torch.int64"),
    "passes a float": (_changed(GOOD, passes=2.0), TypeError, "passes must be an int"),
    "passes negative": (_changed(GOOD, passes=-1), ValueError, "passes must be an int >= 0"),
    "epochs a bool": (_changed(GOOD, epochs=True), TypeError, "epochs must be an int"),
    "epoch_passes a str": (_changed(GOOD, epoch_passes="0"), TypeError, "epoch_passes must be an int"),
    "accuracy a str": (_changed(GOOD, previous_accuracy="40"), TypeError, "previous_accuracy must be a real number"),
    "accuracy NaN": (_changed(GOOD, previous_accuracy=math.nan), ValueError, "previous_accuracy must be a finite number"),
    "energy negative": (_changed(GOOD, epoch_energy=torch.tensor(-1.0)), ValueError, "epoch_energy must be >= 0"),
    "rates too short": (_changed(GOOD, rate_ema=GOOD["rate_ema"][:2]), ValueError, "must have one entry per layer"),
    "rates 2-D": (_changed(GOOD, rate_ema=GOOD["rate_ema"][None]), ValueError, "rate_ema must have 1 dimension"),
    "rates above 1": (_changed(GOOD, rate_ema=GOOD["rate_ema"] + 2), ValueError, r"rates must lie in \[0, 1\]"),
    "scales NaN": (_changed(GOOD, scales=torch.full((3,), math.nan)), ValueError, "scales holds NaN"),
    "scales without rates": (_changed(GOOD, scales=None), ValueError, "both be tensors or both None"),
    "base a list of floats": (_changed(GOOD, base_thresholds=[1.0] * 3), TypeError, r"base_thresholds\[0\] must be a floating"),
    "base not a list": (_changed(GOOD, base_thresholds=torch.ones(3)), TypeError, "base_thresholds must be a non-empty list"),
    "base 2-D": (_changed(GOOD, base_thresholds=[torch.ones(1, 1)] * 3), ValueError, r"base_thresholds\[0\] must have 0 or 1"),
    "base for 2 layers": (_changed(GOOD, base_thresholds=GOOD["base_thresholds"][:2], base_resets=[None] * 2), ValueError,
                          r"rate_ema \(3\), scales \(3\) and base_thresholds \(2\)"),
    "resets missing": (_changed(GOOD, base_resets=None), ValueError, "both be lists or both None"),
    "reset 1-D": (_changed(GOOD, base_resets=[torch.ones(2)] * 3), ValueError, r"base_resets\[0\] must have 0 dimension"),
}


@pytest.mark.parametrize("case", BAD_STATES)
def test_load_state_dict_refuses_malformed_states_and_changes_nothing(case):
    state, error, message = BAD_STATES[case]
    controller = AHSAR(ema=0.3)
    before = controller.state_dict()
    with pytest.raises(error, match=message):
        controller.load_state_dict(state)
    after = controller.state_dict()
    assert controller.config == AHSARConfig(ema=0.3) and after["base_thresholds"] is None
    assert after["passes"] == before["passes"] and torch.equal(after["gain"], before["gain"])


def test_load_state_dict_checks_the_thresholds_against_the_attached_layers():
    controller = AHSAR().attach(_model())
    with pytest.raises(ValueError, match="the state is for 2 layers, the model has 3"):
        controller.load_state_dict({**_changed(GOOD, base_thresholds=GOOD["base_thresholds"][:2], base_resets=[None] * 2),
                                    "rate_ema": None, "scales": None})
    with pytest.raises(ValueError, match=r"layer 0 \(MultiStepLeaky\) fires by a threshold of shape \(\); the state has shape \(2,\)"):
        controller.load_state_dict(_changed(GOOD, base_thresholds=[torch.ones(2)] * 3))
    with pytest.raises(ValueError, match=r"layer 1 \(MultiStepLeaky\) has threshold -1.0"):
        controller.load_state_dict(_changed(GOOD, base_thresholds=[torch.tensor(1.0), torch.tensor(-1.0), torch.tensor(1.0)]))
    assert controller.passes == 0 and [float(t) for t in controller.thresholds()] == [1.0, 1.0, 1.0]
    detached = AHSAR()
    detached.load_state_dict(_changed(GOOD, base_thresholds=[torch.ones(2)] * 3))  # fits no layer yet: checked on attach
    with pytest.raises(ValueError, match=r"AHSAR.attach: the loaded state: layer 0 \(MultiStepLeaky\) fires by a threshold"):
        detached.attach(_model())
    assert not detached.attached
    controller.load_state_dict(GOOD)  # a good state loads
    assert controller.passes == 2 and controller.epochs == 1


def test_a_folded_layer_state_round_trips():
    folded = _folded_mpbn()
    controller = AHSAR().attach(folded)
    with torch.no_grad():
        folded.train()(_batch()[0])
    state = controller.state_dict()
    assert [r is not None for r in state["base_resets"]] == [True] * 3
    resumed = AHSAR()
    resumed.load_state_dict(state)
    controller.detach()
    resumed.attach(folded)
    for a, b in zip(resumed.thresholds(), controller.thresholds()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="with a separate reset value"):
        AHSAR().attach(_model()).load_state_dict(_changed(state, base_thresholds=[torch.tensor(1.0)] * 3))


# -- saving a model with a controller attached ----------------------------------------------------


def test_a_model_with_a_controller_attached_can_be_saved_and_loaded():
    model = _model(threshold=0.5)
    controller = AHSAR(target_low=0.3, target_high=0.3).attach(model)
    _train_steps(model, 3)
    assert pickle.loads(pickle.dumps(model)) is not None
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    saved_thresholds = _thresholds(model)
    assert all(torch.equal(a, b) for a, b in zip(saved_thresholds, _thresholds(loaded)))
    assert any(abs(float(t) - 0.5) > 1e-3 for t in saved_thresholds), "the test needs regulated thresholds"
    x, y = _batch(5)
    assert torch.equal(model.eval()(x), loaded.eval()(x))  # the same network
    # it trains, unregulated: its hooks came back inert; the original controller sees nothing
    passes = controller.passes
    loaded.train()
    nn.functional.cross_entropy(loaded(x), y).backward()
    assert controller.passes == passes and all(torch.equal(a, b) for a, b in zip(saved_thresholds, _thresholds(loaded)))
    # a new controller, given the saved state, resumes on the loaded model where the original stands
    resumed = AHSAR()
    resumed.load_state_dict(controller.state_dict())
    resumed.attach(loaded)
    model.train()
    for a, b in zip(resumed.thresholds(), controller.thresholds()):
        assert torch.equal(a, b)
    _train_steps(loaded, 1, seed=11)
    assert resumed.passes == passes + 1
    # the controller itself is pickled only while detached
    with pytest.raises(TypeError, match=r"an attached controller cannot be pickled .*controller\.state_dict\(\)"):
        pickle.dumps(controller)
    controller.detach()
    copied = pickle.loads(pickle.dumps(controller))
    assert copied.passes == controller.passes and torch.equal(copied.scales, controller.scales)
    assert all(torch.equal(a, b) for a, b in zip(copied.thresholds(), controller.thresholds()))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_model_moved_after_attaching_is_regulated_where_it_is():
    model = _model(threshold=0.5)
    controller = AHSAR().attach(model)  # on the CPU, as training.fit does before moving the model
    model.cuda()
    x, y = _batch()
    for _ in range(2):
        model.zero_grad()
        nn.functional.cross_entropy(model(x.cuda()), y.cuda()).backward()
    assert controller.passes == 2 and controller.scales.device.type == "cuda"
    assert all(t.device.type == "cuda" for t in _thresholds(model))


# -- NaN batches --------------------------------------------------------------------------------


class NaNShowingNeuron(nn.Module):
    """A stateless threshold unit whose spike is NaN where its input is NaN (as the package's neurons show it)."""

    def __init__(self, threshold=0.5):
        super().__init__()
        self.register_buffer("threshold", torch.tensor(threshold))

    def forward(self, x):
        spikes = (x > self.threshold).to(x.dtype)
        return torch.where(torch.isnan(x), x, spikes)


def _nan_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), NaNShowingNeuron(), nn.Linear(16, 4), NaNShowingNeuron())


def test_a_nan_batch_leaves_the_controller_state_and_the_thresholds_as_they_were():
    model = _nan_model()
    controller = AHSAR(target_low=0.1, target_high=0.1, ema=0.5).attach(model)
    x = torch.rand(8, 6)
    with torch.no_grad():
        model(x), model(x)
    before = controller.state_dict()
    thresholds = [t.clone() for t in controller.thresholds()]
    assert any(abs(float(t) - 0.5) > 1e-3 for t in thresholds), "the test needs moved thresholds"
    with torch.no_grad():
        output = model(torch.full((8, 6), math.nan))
    assert torch.isnan(output).all()  # the output shows the NaN
    assert torch.isnan(controller.last_rates).all() and controller.passes == 3
    after = controller.state_dict()
    for key in ("rate_ema", "scales", "gain"):
        assert torch.equal(before[key], after[key]), key
    # the NaN pass added the energy budget: a neutral pass
    assert float(after["epoch_energy"]) == pytest.approx(float(before["epoch_energy"]) + controller.energy_budget)
    with torch.no_grad():
        model(x)  # written at the start of this pass: the same thresholds as before the NaN pass
    assert all(torch.equal(model[i].threshold, t) for i, t in zip((1, 3), thresholds))
    assert all(torch.isfinite(b).all() for b in model.buffers())


def test_a_pass_with_nan_samples_is_no_measurement():
    model = _nan_model()  # training passes: measured and regulated
    controller = AHSAR(ema=0.5).attach(model)
    x = torch.rand(8, 6)
    with torch.no_grad():
        model(x[:4])
        smoothed, scales = controller.rate_ema.clone(), controller.scales.clone()
        assert torch.isfinite(smoothed).all()
        model(torch.cat([x[:4], torch.full((4, 6), math.nan)]))
        assert torch.isnan(controller.last_rates).all()  # the NaN shows in the measurement ...
        torch.testing.assert_close(controller.rate_ema, smoothed)  # ... and moves nothing
        torch.testing.assert_close(controller.scales, scales)
        model(x[4:])
    assert torch.isfinite(controller.rate_ema).all() and not torch.equal(controller.rate_ema, smoothed)


def test_a_layer_first_measured_after_a_nan_pass_starts_from_its_first_finite_rate():
    model = _nan_model()
    controller = AHSAR(ema=0.5).attach(model)
    with torch.no_grad():
        model(torch.full((4, 6), math.nan))
        assert torch.isnan(controller.rate_ema).all() and torch.equal(controller.scales, torch.ones(2))
        model(torch.rand(4, 6))
    torch.testing.assert_close(controller.rate_ema, controller.last_rates)
    assert torch.isfinite(controller.scales).all()
    resumed = AHSAR()
    state = controller.state_dict()
    state["rate_ema"] = torch.tensor([math.nan, 0.1])  # a layer not measured yet: a valid state
    resumed.load_state_dict(state)
    assert torch.isnan(resumed.rate_ema[0])
