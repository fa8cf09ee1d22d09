"""Reference networks: shapes, registry-driven construction, sequence handling, bad input."""

import pytest
import torch
from torch import nn

from snn_norm_lite.models import ConvNet, SpikingBlock, SpikingConvNet, build_ann, build_snn
from snn_norm_lite.neurons import MultiStepLeaky
from snn_norm_lite.norms import (
    HomeostaticNorm,
    SequenceBatchNorm2d,
    TemporalHomeostaticNorm2d,
    available_norms,
    build_norm,
    fold_batchnorms,
    get_spec,
)


@pytest.mark.parametrize("norm, layer", [("none", nn.Identity), ("bn", nn.BatchNorm2d), ("homeostatic", HomeostaticNorm)])
def test_ann_uses_the_registered_layer(norm, layer):
    model = build_ann(norm, depth=3, width=8)
    assert all(isinstance(block[1], layer) for block in model.blocks)
    assert all(type(block[1]) is type(build_norm(norm, 8)) for block in model.blocks)  # the registry's class
    assert model(torch.rand(5, 1, 8, 8)).shape == (5, 10)
    assert (model.blocks[0][0].bias is not None) == (norm == "none")


@pytest.mark.parametrize(
    "norm, layer", [("none", nn.Identity), ("bn", SequenceBatchNorm2d), ("homeostatic", TemporalHomeostaticNorm2d)]
)
def test_snn_uses_the_registered_layer(norm, layer):
    model = build_snn(norm, depth=3, width=8, num_steps=4)
    assert all(isinstance(block.norm, layer) for block in model.blocks)
    assert all(type(block.norm) is type(build_norm(norm, 8, 4)) for block in model.blocks)  # the registry's class
    assert all(isinstance(n, MultiStepLeaky) for n in model.neurons())
    assert model(torch.rand(5, 1, 8, 8)).shape == (5, 10)


def test_static_input_equals_the_repeated_sequence():
    torch.manual_seed(0)
    model = build_snn("bn", depth=2, width=8, num_steps=3).eval()
    x = torch.rand(4, 1, 8, 8)
    torch.testing.assert_close(model(x), model(x.unsqueeze(0).repeat(3, 1, 1, 1, 1)))


def test_layer_by_layer_equals_a_step_by_step_loop():
    """The time-merged convolution gives what a per-step snntorch-style loop gives."""
    import snntorch
    from snntorch import surrogate

    torch.manual_seed(1)
    model = build_snn("none", depth=2, width=6, num_steps=5, beta=0.5)
    x = torch.rand(3, 1, 8, 8)
    neurons = [snntorch.Leaky(beta=0.5, threshold=1.0, spike_grad=surrogate.atan()) for _ in model.blocks]
    members = [torch.zeros(1)] * len(neurons)
    outputs = []
    for t in range(5):
        h = x
        for i, (block, leaky) in enumerate(zip(model.blocks, neurons)):
            h, members[i] = leaky(block.conv(h), members[i])
            if i == 0:
                h = model.pool(h)
        outputs.append(model.readout(h.flatten(1)))
    torch.testing.assert_close(model(x), torch.stack(outputs).mean(0))


def test_every_registered_conventional_norm_builds_and_trains_a_step():
    for name in available_norms():
        spec = get_spec(name)
        if spec.circuit:
            continue
        model = build_snn(name, depth=2, width=8, num_steps=2)
        loss = nn.functional.cross_entropy(model(torch.rand(4, 1, 8, 8)), torch.tensor([0, 1, 2, 3]))
        loss.backward()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad), name


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown normaliser 'nope'"):
        build_snn("nope")
    with pytest.raises(TypeError, match="must be a str"):
        build_norm(3, 4)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: SpikingConvNet("bn", depth=2, width=8, num_steps=4)(torch.rand(3, 2, 1, 8, 8)), ValueError, "num_steps=4"),
        (lambda: SpikingConvNet("bn", depth=2, width=8)(torch.rand(2, 3, 8, 8)), ValueError, r"built for \[B, 1, 8, 8\]"),
        (lambda: SpikingConvNet("bn", depth=2, width=8)(torch.ones(2, 1, 8, 8, dtype=torch.uint8)), TypeError, "floating"),
        (lambda: ConvNet("bn", depth=2, width=8)(torch.rand(2, 1, 8)), ValueError, "4-D"),
        (lambda: ConvNet("bn", depth=0), ValueError, "depth must be positive"),
        (lambda: ConvNet("bn", image_size=7), ValueError, "even"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_folding_batchnorm_keeps_the_function():
    torch.manual_seed(2)
    model = build_ann("bn", depth=3, width=8)
    for _ in range(3):
        model(torch.rand(16, 1, 8, 8) * 3)  # move the running statistics away from 0 and 1
    with torch.no_grad():
        for block in model.blocks:
            block[1].weight.uniform_(-2, 2)
            block[1].bias.uniform_(-1, 1)
    folded = fold_batchnorms(model)
    model.eval()
    x = torch.rand(10, 1, 8, 8)
    torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-5)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    with pytest.raises(ValueError, match="no Conv2d followed by BatchNorm2d"):
        fold_batchnorms(build_ann("none", depth=2, width=4))


# -- what a network accepts, and what it says otherwise ------------------------------------------


@pytest.mark.parametrize("kind", ["ann", "snn", "ei"])
def test_networks_say_what_they_were_built_for(kind):
    model = {"ann": lambda: build_ann("bn", depth=2, width=4), "snn": lambda: build_snn("bn", depth=2, width=4, num_steps=2),
             "ei": lambda: build_snn("ei", depth=2, width=8, num_steps=2)}[kind]()
    name, builder = type(model).__name__, "build_ann" if kind == "ann" else "build_snn"
    norm = "ei" if kind == "ei" else "bn"
    with pytest.raises(ValueError, match=rf"{name}: built for \[B, 1, 8, 8\] images \(digits-sized: in_channels=1, "
                                         rf"image_size=8\), got shape \(2, 3, 32, 32\); for this input build a network "
                                         rf"with {builder}\('{norm}', \.\.\., in_channels=3, image_size=32\)"):
        model(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match=rf"{name}: built for .* square images"):
        model(torch.rand(2, 1, 8, 16))
    with pytest.raises(ValueError, match=rf"{name}: built for .* image_size must be even"):
        model(torch.rand(2, 1, 9, 9))
    with pytest.raises(TypeError, match=rf"{name}: the model's parameters are torch.float32, got an input of dtype "
                                        r"torch.float64; .*model.double\(\)"):
        model(torch.rand(2, 1, 8, 8, dtype=torch.float64))
    with pytest.raises(TypeError, match=rf"{name}: the model's parameters are torch.float32, .*torch.float16"):
        model(torch.rand(2, 1, 8, 8).half())
    with pytest.raises(TypeError, match=rf"{name}: expected a floating-point tensor"):
        model(torch.ones(2, 1, 8, 8, dtype=torch.int64))
    assert model.double()(torch.rand(2, 1, 8, 8, dtype=torch.float64)).dtype == torch.float64


def test_a_cifar_sized_network_is_described_as_such():
    model = build_snn("none", depth=1, width=4, num_steps=2, in_channels=3, image_size=32)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match=r"built for \[B, 3, 32, 32\] images \(CIFAR-10-sized"):
        model(torch.rand(2, 1, 8, 8))


def test_spiking_networks_check_sequences_too():
    model = build_snn("bn", depth=2, width=4, num_steps=3)
    assert model.as_sequence(torch.rand(3, 2, 1, 8, 8)).shape == (3, 2, 1, 8, 8)
    with pytest.raises(ValueError, match="SpikingConvNet: expected at least one time step"):
        model(torch.rand(0, 2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"SpikingConvNet: built for \[B, 1, 8, 8\].*image_size=16"):
        model(torch.rand(3, 2, 1, 16, 16))
    with pytest.raises(TypeError, match="SpikingConvNet: the model's parameters are torch.float32"):
        model(torch.rand(3, 2, 1, 8, 8, dtype=torch.float64))


def test_the_ei_network_checks_its_input_before_projecting_its_weights():
    model = build_snn("ei", depth=1, width=8, num_steps=2)
    with torch.no_grad():
        model.blocks[0].circuit.weight_ee.fill_(-1.0)
    with pytest.raises(ValueError, match="EISpikingConvNet: built for"):
        model(torch.rand(2, 3, 8, 8))
    assert (model.blocks[0].circuit.weight_ee == -1.0).all()  # a refused input changes nothing


def test_nan_input_shows_in_the_logits():
    torch.manual_seed(0)
    model = build_snn("none", depth=2, width=4, num_steps=2)
    x = torch.rand(3, 1, 8, 8)
    x[1, 0, 0, 0] = float("nan")
    logits = model(x)
    assert torch.isnan(logits[1]).all() and torch.isfinite(logits[[0, 2]]).all()


@pytest.mark.parametrize(
    "build, kwargs, error, match",
    [
        (build_snn, {"num_classes": 0}, ValueError, "num_classes must be positive"),
        (build_snn, {"in_channels": 2.0}, TypeError, "in_channels must be an int"),
        (build_snn, {"num_steps": True}, TypeError, "num_steps must be an int"),
        (build_snn, {"beta": float("nan")}, ValueError, "SpikingConvNet: beta must be a finite"),
        (build_snn, {"threshold": "1"}, TypeError, "SpikingConvNet: threshold must be a real number"),
        (build_snn, {"backend": "cuda"}, ValueError, "SpikingConvNet: backend"),
        (build_snn, {"norm_options": "alpha=0.7"}, TypeError, "norm_options must be a dict"),
        (lambda **kw: build_snn("ei", **kw), {"ei_ratio": 0}, ValueError, "EISpikingConvNet: ei_ratio must be positive"),
        (lambda **kw: build_snn("ei", **kw), {"norm_options": {"stabilize": 1}}, TypeError, "stabilize must be True"),
        (lambda **kw: build_snn("ei", **kw), {"threshold": 0.0}, ValueError, "EISpikingConvNet: threshold"),
        (lambda **kw: build_snn("ei", **kw), {"norm_options": [("ei_ratio", 2)]}, TypeError, "build_snn: norm_options"),
        (lambda **kw: build_snn("mpbn", **kw), {"backend": "snntorch"}, ValueError, "brings its own neuron"),
        (build_ann, {"num_classes": -1}, ValueError, "ConvNet: num_classes must be positive"),
        (build_ann, {"in_channels": 0}, ValueError, "ConvNet: in_channels must be positive"),
        (build_ann, {"norm_options": 3}, TypeError, "ConvNet: norm_options"),
    ],
)
def test_constructors_refuse_bad_arguments(build, kwargs, error, match):
    with pytest.raises(error, match=match):
        build(**{"depth": 1, "width": 4, **kwargs})


def test_blocks_refuse_what_is_not_a_module():
    with pytest.raises(TypeError, match="SpikingBlock: norm must be an nn.Module"):
        SpikingBlock(nn.Conv2d(1, 4, 3), "bn", MultiStepLeaky())


@pytest.mark.parametrize("norm", available_norms())
def test_every_method_builds_a_cifar10_network_with_a_small_read_out(norm):
    """3 x 32 x 32 input: after the first pool the map is 16 x 16, average-pooled to 4 x 4 for the read-out."""
    torch.manual_seed(0)
    model = build_snn(norm, depth=2, width=4, num_steps=2, in_channels=3, image_size=32)
    readout = model.readout
    assert (readout.in_features if hasattr(readout, "in_features") else readout.weight_ee.shape[1]) == 4 * 4 * 4
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    logits = model(x)
    assert logits.shape == (4, 10)
    nn.functional.cross_entropy(logits, y).backward()  # trains
    if norm in available_norms("ann"):
        assert build_ann(norm, depth=2, width=4, in_channels=3, image_size=32)(x).shape == (4, 10)


def test_digits_networks_have_no_read_out_pool():
    """The book's networks are unchanged: the 4 x 4 map after the first pool goes to the read-out as it is."""
    assert build_snn("bn", depth=2, width=4, num_steps=2).readout_pool is None
    assert build_ann("bn", depth=2, width=4).readout.in_features == 4 * 4 * 4


@pytest.mark.parametrize("norm", available_norms())
def test_every_network_trains_a_step_under_bfloat16_autocast(norm):
    """Mixed precision (meant for CUDA; CPU autocast runs the same code): finite loss and gradients,
    float32 statistics, and the same network outside autocast afterwards."""
    torch.manual_seed(0)
    model = build_snn(norm, depth=2, width=4, num_steps=2)
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
    loss = nn.functional.cross_entropy(logits.float(), y)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert all(b.dtype in (torch.float32, torch.long, torch.bool) for b in model.buffers())
    assert model(x).dtype == torch.float32
