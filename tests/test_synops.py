"""Synaptic operations (snn_norm_lite.synops): hand-computed counts, the AC/MAC split, normaliser costs."""

import pytest
import torch
from torch import nn

from snn_norm_lite import inhibition
from snn_norm_lite.models import build_snn
from snn_norm_lite.synops import SynapticOperations, conv_operations, synaptic_operations


def test_linear_on_a_known_binary_input_counts_nonzero_inputs_times_outputs():
    layer = nn.Linear(5, 4)
    spikes = torch.tensor([[1.0, 0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0, 1.0], [0.0] * 5])
    ops = synaptic_operations(layer, spikes)
    assert (ops.ac, ops.mac) == (4 * 4.0, 0.0)  # 4 spikes, each reaching the 4 outputs
    assert ops.per_image() == {"ac": 16.0 / 3, "mac": 0.0, "normaliser": 0.0}


def test_analogue_input_is_counted_as_multiply_accumulates():
    layer = nn.Linear(3, 2)
    ops = synaptic_operations(layer, torch.tensor([[0.5, 0.0, 1.0]]))  # one value is neither 0 nor 1
    assert (ops.ac, ops.mac) == (0.0, 4.0)


def test_conv2d_with_padding_counts_the_outputs_each_input_reaches():
    conv = nn.Conv2d(1, 2, 3, padding=1)
    corner, centre = torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)
    corner[0, 0, 0, 0] = 1.0  # reaches outputs (0,0), (0,1), (1,0), (1,1): 4 per channel
    centre[0, 0, 1, 1] = 1.0  # reaches all 3x3 outputs around it: 9 per channel
    assert synaptic_operations(conv, corner).ac == 8.0
    assert synaptic_operations(conv, centre).ac == 18.0
    edge = torch.zeros(1, 1, 4, 4)
    edge[0, 0, 0, 2] = 1.0  # top edge: rows 0-1, columns 1-3: 6 per channel
    assert synaptic_operations(conv, edge).ac == 12.0


def test_conv2d_with_stride_counts_only_the_outputs_that_are_computed():
    conv = nn.Conv2d(1, 1, 3, stride=2, padding=1)  # 4x4 -> 2x2 outputs centred at (0,0), (0,2), (2,0), (2,2)
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 1] = 1.0  # inside all four receptive fields
    x[0, 0, 3, 3] = 1.0  # only inside the one centred at (2, 2)
    assert conv_operations(x, conv) == 5.0
    ops = synaptic_operations(conv, 0.3 * x)
    assert (ops.ac, ops.mac) == (0.0, 5.0)


def test_a_spiking_network_that_never_spikes_performs_no_accumulates():
    torch.manual_seed(0)
    model = build_snn("none", depth=2, width=4, num_steps=3, threshold=1e6)  # no neuron reaches threshold
    images = torch.rand(5, 1, 8, 8)
    ops = synaptic_operations(model, images)
    assert ops.ac == 0.0
    # only the encoder convolution multiplies: the analogue image at each of the 3 steps
    per_step = conv_operations(images, model.blocks[0].conv)
    assert ops.mac == 3 * per_step
    assert ops.per_image()["mac"] == 3 * per_step / 5 and ops.per_image_per_step()["mac"] == per_step / 5


def test_reference_network_layers_and_a_sequence_input():
    torch.manual_seed(0)
    model = build_snn("bn", depth=3, width=4, num_steps=2, threshold=0.05)
    images = torch.rand(6, 1, 8, 8)
    static = synaptic_operations(model, images)
    names = [c.name for c in static.connections]
    assert names == ["blocks.0.conv", "blocks.1.conv", "blocks.2.conv", "readout"]
    kinds = {c.name: ("AC" if c.ac else "MAC") for c in static.connections if c.ac or c.mac}
    assert kinds["blocks.0.conv"] == "MAC"  # the image (direct encoding)
    assert kinds["blocks.1.conv"] == "MAC"  # average-pooled spikes
    assert kinds.get("blocks.2.conv", "AC") == "AC"  # spikes
    sequence = images.unsqueeze(0).expand(2, *images.shape)
    assert synaptic_operations(model, sequence) == static  # [T, B, ...]: B is dimension 1


def test_normaliser_costs_at_inference():
    torch.manual_seed(0)
    images = torch.rand(3, 1, 8, 8)
    depth, width, steps = 3, 4, 2
    neurons = width * (8 * 8 + (depth - 1) * 4 * 4)  # block 1 at 8x8, the others after the pool
    for name, per_neuron_step in (("none", 0), ("bn", 0), ("tdbn", 0), ("mpbn", 0),
                                  ("bntt", 1), ("tebn", 1), ("tab", 1), ("homeostatic", 1)):
        model = build_snn(name, depth=depth, width=width, num_steps=steps)
        ops = synaptic_operations(model, images)
        assert ops.per_image()["normaliser"] == per_neuron_step * neurons * steps, name


def test_ei_circuits_count_both_pathways_and_must_be_initialised():
    torch.manual_seed(0)
    model = build_snn("ei", depth=2, width=8, num_steps=2)
    images = torch.rand(4, 1, 8, 8)
    with pytest.raises(ValueError, match="not initialised"):
        synaptic_operations(model, images)
    inhibition.ei_init(model, images)
    ops = synaptic_operations(model, images)
    first = model.blocks[0].circuit  # n_E = 8, n_I = 2, on the analogue image
    drive = {c.name: c for c in ops.connections}["blocks.0.circuit:drive"]
    reached = conv_operations(images, nn.Conv2d(1, first.num_excitatory + first.num_inhibitory, 3, padding=1))
    assert (drive.ac, drive.mac) == (0.0, 2 * reached)
    inhibitory = {c.name: c for c in ops.connections}["blocks.0.circuit:inhibition"]
    assert inhibitory.ac == 0.0 and inhibitory.mac > 0
    readout = {c.name: c for c in ops.connections}["readout:inhibition"]
    assert readout.mac % model.readout.num_excitatory == 0  # one pathway (I_sub) into every output
    costs = {n.name: n for n in ops.normalisers}
    assert costs["blocks.0.circuit"].ops == 3 * 4 * 2 * 8 * 8 * 8  # 3 per neuron and step
    assert costs["readout"].ops == 0.0


def test_the_model_is_left_as_it_was():
    torch.manual_seed(0)
    model = build_snn("bn", depth=2, width=4, num_steps=2)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    synaptic_operations(model, torch.rand(3, 1, 8, 8))
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())  # evaluation: no update


def test_unknown_normalisers_are_refused_or_reported_as_unknown():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4))
    x = torch.rand(2, 1, 5, 5)
    with pytest.raises(ValueError, match="no rule for the inference cost.*GroupNorm"):
        synaptic_operations(model, x)
    ops = synaptic_operations(model, x, unknown_normaliser="nan")
    assert ops.mac > 0 and ops.normaliser != ops.normaliser  # NaN, not 0


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: synaptic_operations("model", torch.rand(2, 3)), TypeError, "model must be an nn.Module"),
        (lambda: synaptic_operations(nn.Linear(3, 2), [[0.0, 1.0, 1.0]]), TypeError, "x must be a torch.Tensor"),
        (lambda: synaptic_operations(nn.Linear(3, 2), torch.ones(2, 3, dtype=torch.long)), TypeError, "synaptic_operations"),
        (lambda: synaptic_operations(nn.Linear(3, 2), torch.rand(2, 3), batch_dim=2), ValueError, "batch_dim"),
        (lambda: synaptic_operations(nn.Linear(3, 2), torch.rand(0, 3)), ValueError, "no images"),
        (lambda: synaptic_operations(nn.ReLU(), torch.rand(2, 3)), ValueError, "ran no nn.Conv2d"),
        (lambda: synaptic_operations(nn.Linear(3, 2), torch.rand(2, 3), unknown_normaliser="zero"), ValueError, "unknown_normaliser"),
        (lambda: synaptic_operations(nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect"), torch.rand(1, 1, 4, 4)),
         ValueError, "zero padding"),
        (lambda: conv_operations(torch.rand(1, 1, 4, 4), nn.Linear(3, 2)), TypeError, "expected an nn.Conv2d"),
        (lambda: SynapticOperations((), (), num_images=0, num_steps=1), ValueError, "num_images"),
    ],
)
def test_bad_input_is_refused_naming_the_function(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_a_refused_count_leaves_no_hook_behind():
    model = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect"))
    with pytest.raises(ValueError, match="zero padding only"):
        synaptic_operations(model, torch.rand(1, 1, 4, 4))
    assert all(not m._forward_hooks for m in model.modules())
