"""The threshold-scaled initialisation and the measurement of a layer's current scale."""

import pytest
import torch

from snn_norm_lite.initialisation import (
    activity_at_init,
    current_scale,
    layer_profile,
    profile_at_init,
    threshold_scaled_init_,
)
from snn_norm_lite.models import build_snn
from snn_norm_lite.training import seed_everything


def images(n=32, seed=0):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_current_scale_is_the_std_of_the_current_over_threshold():
    seed_everything(0)
    model = build_snn("none", depth=2, width=8, num_steps=4, threshold=0.5)
    x = images()
    recorded = []
    handle = model.blocks[1].neuron.register_forward_hook(lambda m, inputs, out: recorded.append(inputs[0]))
    scale = current_scale(model, x)
    handle.remove()
    assert scale.shape == (2,)
    assert scale[1].item() == pytest.approx(recorded[0].std(correction=0).item() / 0.5, rel=1e-4)


def test_default_initialisation_silences_a_deep_network_at_threshold_one():
    seed_everything(0)
    model = build_snn("none", depth=6, width=16, num_steps=4, threshold=1.0)
    scale = current_scale(model, images(64))
    assert scale[0] < 0.5  # the first layer's current is already well below the threshold
    assert scale[-1] < 0.1  # deep layers receive (almost) no spikes: only their bias


def test_threshold_scaled_init_sets_every_layer_to_the_gain():
    seed_everything(0)
    model = build_snn("none", depth=6, width=16, num_steps=4, threshold=2.0)
    x = images(64)
    factors = threshold_scaled_init_(model, x, gain=0.75)
    assert len(factors) == 6 and all(f > 0 for f in factors)
    assert torch.allclose(current_scale(model, x), torch.full((6,), 0.75), rtol=1e-4)


def test_threshold_scaled_init_only_rescales_each_convolution():
    seed_everything(0)
    model = build_snn("none", depth=3, width=8, num_steps=4)
    before = [block.conv.weight.clone() for block in model.blocks]
    factors = threshold_scaled_init_(model, images())
    for weight, block, factor in zip(before, model.blocks, factors):
        assert torch.allclose(block.conv.weight, weight * factor)


def test_threshold_scaled_init_rejects_networks_with_a_normaliser_and_bad_gains():
    model = build_snn("bn", depth=2, width=8, num_steps=4)
    with pytest.raises(ValueError, match="threshold_scaled_init_: block 0 has a normaliser"):
        threshold_scaled_init_(model, images())
    plain = build_snn("none", depth=2, width=8, num_steps=4)
    for gain in (0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="gain must be a (positive|finite) number"):
            threshold_scaled_init_(plain, images(), gain=gain)
    for gain in (True, "1"):
        with pytest.raises(TypeError, match="gain must be a real number"):
            threshold_scaled_init_(plain, images(), gain=gain)
    with pytest.raises(TypeError, match="threshold_scaled_init_: expected a spiking network"):
        threshold_scaled_init_(torch.nn.Linear(2, 2), images())
    with pytest.raises(TypeError):
        threshold_scaled_init_(plain, images().long())


def test_layer_profile_measures_a_copy_in_training_mode():
    seed_everything(0)
    model = build_snn("bn", depth=3, width=8, num_steps=4)
    before = model.blocks[0].norm.running_mean.clone()
    profile = layer_profile(model, images(64))
    assert set(profile) == {"scale", "rate"} and len(profile["scale"]) == len(profile["rate"]) == 3
    assert profile["scale"] == pytest.approx([1.0, 1.0, 1.0], rel=1e-3)  # batch statistics: std(I) = 1 = V_th
    assert all(0 <= r <= 1 for r in profile["rate"])
    assert torch.equal(model.blocks[0].norm.running_mean, before)  # the model itself is untouched


def test_profile_at_init_averages_untrained_networks_over_seeds():
    small = dict(depth=3, width=4, num_steps=2, samples=64)
    plain = profile_at_init("none", threshold=1.0, seeds=(0, 1), **small)
    scaled = profile_at_init("none", threshold=1.0, seeds=(0, 1), init_gain=1.0, **small)
    assert len(plain["scale"]) == len(plain["rate"]) == 3
    assert plain["scale"][-1] < 0.5  # default initialisation: far below the threshold
    assert all(0.5 < value < 2.0 for value in scaled["scale"])  # calibrated on training images, measured on validation ones
    with pytest.raises(ValueError, match="profile_at_init: give at least one seed"):
        profile_at_init(seeds=())


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: current_scale("model", images()), TypeError, "current_scale: expected a spiking network"),
        (lambda: current_scale(build_snn("none", depth=1, width=4, num_steps=2), images(), train_mode=1), TypeError,
         "current_scale: train_mode must be True or False"),
        (lambda: layer_profile(build_snn("none", depth=1, width=4, num_steps=2), images().long()), TypeError, "layer_profile"),
        (lambda: profile_at_init(seeds=(0, -1)), ValueError, "profile_at_init: every seed must be an int >= 0"),
        (lambda: profile_at_init(seeds=0), TypeError, "profile_at_init: seeds must be a sequence"),
        (lambda: profile_at_init(samples=0), ValueError, "profile_at_init: samples must be positive"),
        (lambda: profile_at_init(init_gain=float("nan")), ValueError, "profile_at_init: init_gain must be a finite"),
        (lambda: activity_at_init(norms="bn"), TypeError, "activity_at_init: norms must be a sequence"),
        (lambda: activity_at_init(norms=()), ValueError, "activity_at_init: give at least one registry name"),
        (lambda: activity_at_init(norms=("bn", 3)), TypeError, "activity_at_init: every entry of norms"),
        (lambda: activity_at_init(seed=1.5), TypeError, "activity_at_init: seed must be an int"),
    ],
)
def test_public_functions_refuse_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_threshold_scaled_init_refuses_a_non_finite_batch_and_changes_nothing():
    model = build_snn("none", depth=2, width=4, num_steps=2)
    before = [block.conv.weight.clone() for block in model.blocks]
    x = images()
    x[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="threshold_scaled_init_: the calibration batch x holds NaN or Inf"):
        threshold_scaled_init_(model, x)
    assert all(torch.equal(block.conv.weight, w) for block, w in zip(model.blocks, before))
