"""merge_time / split_time / over_time: time merged into the batch and split again, exactly."""

import pytest
import torch
from torch import nn

from snn_norm_lite.sequences import check_sequence, merge_time, over_time, split_time


def test_round_trip_keeps_every_value_in_place():
    x = torch.arange(4 * 3 * 2 * 5, dtype=torch.float32).view(4, 3, 2, 5)
    merged, steps_and_batch = merge_time(x)
    assert merged.shape == (12, 2, 5) and steps_and_batch == (4, 3)
    assert torch.equal(merged[1 * 3 + 2], x[1, 2])  # row t * B + b holds step t of sample b
    assert torch.equal(split_time(merged, steps_and_batch), x)


def test_round_trip_of_a_two_dimensional_sequence():
    x = torch.randn(5, 2)
    merged, steps_and_batch = merge_time(x)
    assert merged.shape == (10,)
    assert torch.equal(split_time(merged, steps_and_batch), x)


@pytest.mark.parametrize("shape", [(), (7,)])
def test_merge_time_rejects_a_tensor_without_time_and_batch(shape):
    with pytest.raises(ValueError, match=r"merge_time: expected a sequence \[T, B, \.\.\.\]"):
        merge_time(torch.zeros(shape))


def test_split_time_rejects_a_row_count_that_is_not_steps_times_batch():
    with pytest.raises(ValueError, match=r"split_time: expected 4 x 3 = 12 rows, got shape \(11, 2\)"):
        split_time(torch.zeros(11, 2), (4, 3))
    with pytest.raises(ValueError, match="split_time"):
        split_time(torch.tensor(1.0), (1, 1))


def test_over_time_equals_a_loop_over_steps_for_a_convolution():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, kernel_size=3, padding=1).double()
    x = torch.randn(4, 2, 3, 6, 6, dtype=torch.float64)
    looped = torch.stack([conv(x[t]) for t in range(x.shape[0])])
    merged = over_time(conv, x)
    assert merged.shape == (4, 2, 5, 6, 6)
    torch.testing.assert_close(merged, looped, rtol=0, atol=1e-12)


def test_over_time_passes_gradients_to_the_layer_and_the_input():
    torch.manual_seed(0)
    linear = nn.Linear(3, 2)
    x = torch.randn(4, 5, 3, requires_grad=True)
    over_time(linear, x).sum().backward()
    # d/dx of sum(W x + b) is the column sums of W, for every step and sample
    torch.testing.assert_close(x.grad, linear.weight.sum(dim=0).expand(4, 5, 3))
    assert linear.weight.grad.shape == (2, 3)


def test_over_time_reports_a_layer_that_changes_the_number_of_rows():
    with pytest.raises(ValueError, match="split_time: expected 4 x 2 = 8 rows"):
        over_time(lambda merged: merged[:-1], torch.zeros(4, 2, 3))


def test_zero_time_steps_are_refused():
    with pytest.raises(ValueError, match="merge_time: expected at least one time step"):
        merge_time(torch.zeros(0, 2, 3))
    with pytest.raises(ValueError, match="merge_time: expected at least one time step"):
        over_time(nn.Identity(), torch.zeros(0, 2, 3))
    with pytest.raises(ValueError, match="MyLayer: expected at least one time step"):
        check_sequence(torch.zeros(0, 4), "MyLayer")


def test_an_empty_batch_is_a_valid_sequence():
    merged, steps_and_batch = merge_time(torch.zeros(3, 0, 5))
    assert merged.shape == (0, 5) and steps_and_batch == (3, 0)
    assert split_time(merged, steps_and_batch).shape == (3, 0, 5)


@pytest.mark.parametrize(
    "steps_and_batch, error",
    [((0, 0), ValueError), ((2.0, 3), TypeError), ((2, -1), ValueError), (6, TypeError), ((1, 2, 3), TypeError)],
)
def test_split_time_refuses_bad_steps_and_batch(steps_and_batch, error):
    with pytest.raises(error, match="split_time"):
        split_time(torch.zeros(6, 2), steps_and_batch)


def test_bad_types_are_named():
    with pytest.raises(TypeError, match="merge_time: expected a torch.Tensor"):
        merge_time([[1.0, 2.0]])
    with pytest.raises(TypeError, match="over_time: layer must be callable"):
        over_time("conv", torch.zeros(2, 2, 3))
