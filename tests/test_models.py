"""Reference networks: shapes, registry-driven construction, sequence handling, bad input."""

import pytest
import torch
from torch import nn

from snn_norm_lite.models import ConvNet, SpikingConvNet, build_ann, build_snn
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
    assert all(type(block[1]) is layer for block in model.blocks)
    assert model(torch.rand(5, 1, 8, 8)).shape == (5, 10)
    assert (model.blocks[0][0].bias is not None) == (norm == "none")


@pytest.mark.parametrize(
    "norm, layer", [("none", nn.Identity), ("bn", SequenceBatchNorm2d), ("homeostatic", TemporalHomeostaticNorm2d)]
)
def test_snn_uses_the_registered_layer(norm, layer):
    model = build_snn(norm, depth=3, width=8, num_steps=4)
    assert all(type(block.norm) is layer for block in model.blocks)
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
        (lambda: SpikingConvNet("bn", depth=2, width=8)(torch.rand(2, 3, 8, 8)), ValueError, "expected 1 channels"),
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
