"""BPTT cost: the saved-for-backward count, and the measurement over T."""

import pytest
import torch

from snn_norm_lite.bptt_cost import BPTTCost, bptt_cost, saved_tensor_bytes
from snn_norm_lite.data import load_digits
from snn_norm_lite.neurons import MultiStepLeaky


def test_fused_neuron_saves_exactly_one_membrane_per_step():
    for steps in (1, 3, 7):
        x = torch.rand(steps, 2, 4, 5, requires_grad=True)
        assert saved_tensor_bytes(MultiStepLeaky(), x) == steps * 2 * 4 * 5 * 4


def test_float64_counts_eight_bytes_per_element():
    x = torch.rand(3, 2, 5, dtype=torch.float64, requires_grad=True)
    assert saved_tensor_bytes(MultiStepLeaky(), x) == 3 * 2 * 5 * 8


def test_parameters_are_not_counted_but_inputs_are():
    layer = torch.nn.Linear(6, 3)
    x = torch.rand(4, 6)
    # addmm keeps its input x (for the weight's gradient) and a view of the weight: only x counts
    assert saved_tensor_bytes(layer, x) == 4 * 6 * 4


def test_a_tensor_saved_twice_counts_once():
    x = torch.rand(10, requires_grad=True)
    assert saved_tensor_bytes(lambda v: (v * v).sum(), x) == 0  # v is a leaf that requires a gradient
    y = torch.rand(10)
    w = torch.rand(10, requires_grad=True)
    assert saved_tensor_bytes(lambda v: (v * w + v * 2 * w).sum(), y) == 2 * 10 * 4  # y and 2y


def test_no_graph_saves_nothing():
    assert saved_tensor_bytes(lambda v: v + 1, torch.rand(100)) == 0


def test_saved_tensor_bytes_refuses_a_non_callable():
    with pytest.raises(TypeError, match="saved_tensor_bytes: function must be callable"):
        saved_tensor_bytes(torch.rand(3), torch.rand(3))


def test_network_memory_is_linear_in_T():
    split = load_digits()
    cost = bptt_cost(split.x_val[:16], split.y_val[:16], num_steps=(1, 2, 4), depth=2, width=8, repeats=1)
    b1, b2, b4 = cost.saved_bytes
    assert b1 < b2 < b4
    # a + b T: the increments per step agree to within 1 %
    assert abs((b4 - b2) / 2 - (b2 - b1)) <= 0.01 * (b2 - b1)
    assert len(cost.seconds) == 3 and all(s > 0 for s in cost.seconds)
    assert cost.batch_size == 16


def test_same_weights_for_every_T():
    split = load_digits()
    a = bptt_cost(split.x_val[:8], split.y_val[:8], num_steps=(2,), depth=2, width=4, repeats=1, seed=3)
    b = bptt_cost(split.x_val[:8], split.y_val[:8], num_steps=(2,), depth=2, width=4, repeats=1, seed=3)
    assert a.saved_bytes == b.saved_bytes


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"num_steps": ()}, ValueError, "at least one T"),
        ({"num_steps": (1, 1)}, ValueError, "appears twice"),
        ({"num_steps": (0,)}, ValueError, "num_steps must be positive"),
        ({"num_steps": 4}, TypeError, "sequence of ints"),
        ({"repeats": 0}, ValueError, "repeats must be positive"),
    ],
)
def test_bptt_cost_refuses_bad_arguments(kwargs, error, message):
    split = load_digits()
    with pytest.raises(error, match=message):
        bptt_cost(split.x_val[:4], split.y_val[:4], **kwargs)


def test_bptt_cost_refuses_bad_images_and_labels():
    split = load_digits()
    with pytest.raises(ValueError, match="bptt_cost: expected a 4-D input"):
        bptt_cost(split.x_val[:4].flatten(1), split.y_val[:4])
    with pytest.raises(ValueError, match="bptt_cost: labels must be an int64 tensor"):
        bptt_cost(split.x_val[:4], split.y_val[:3])
    with pytest.raises(ValueError, match="bptt_cost: labels must be an int64 tensor"):
        bptt_cost(split.x_val[:4], split.y_val[:4].float())


def test_ratios_and_table():
    cost = BPTTCost((1, 2, 4), (10, 20, 40), (1.0, 3.0, 5.0), 8)
    assert cost.bytes_ratio(4, 2) == 2.0
    assert cost.time_ratio(2, 1) == 3.0
    with pytest.raises(ValueError, match="T=8 was not measured"):
        cost.time_ratio(8, 1)
    assert len(cost.table().splitlines()) == 4
