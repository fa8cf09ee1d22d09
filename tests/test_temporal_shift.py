"""Measures of temporal covariate shift and the choice of an early-exit step."""

import pytest
import torch

from snn_norm_lite.early_exit import exit_step
from snn_norm_lite.temporal_shift import step_mean_offset, step_variance_ratio


def _stats():
    variance = torch.tensor([[1.0, 1.0, 1.0, 1.0, 1.0], [0.01, 0.5, 2.0, 2.0, 2.0]])
    mean = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, -1.0]])
    return {"current_var": variance, "current_mean": mean, "rate": torch.zeros(2, 5)}


def test_step_variance_ratio_compares_a_step_with_the_late_steps():
    ratio = step_variance_ratio(_stats())
    assert torch.allclose(ratio, torch.tensor([1.0, 0.005]))
    assert torch.allclose(step_variance_ratio(_stats(), step=1, late_from=2), torch.tensor([1.0, 0.25]))


def test_step_mean_offset_ignores_a_shift_shared_by_all_steps():
    shifted = _stats()
    shifted["current_mean"] = shifted["current_mean"] + 5.0  # a bias that moves every step alike
    assert torch.allclose(step_mean_offset(shifted), torch.tensor([0.0, 1.0]))
    assert torch.allclose(step_mean_offset(shifted, step=None), torch.tensor([0.0, 1.0]))
    assert torch.allclose(step_mean_offset(_stats(), step=2), torch.tensor([0.0, 0.0]))


def test_temporal_shift_measures_reject_bad_input():
    with pytest.raises(TypeError, match="step_variance_ratio"):
        step_variance_ratio(torch.ones(2, 3))
    with pytest.raises(ValueError, match="step_mean_offset"):
        step_mean_offset({"current_mean": torch.ones(3)})
    with pytest.raises(ValueError, match="late_from"):
        step_variance_ratio(_stats(), late_from=5)
    with pytest.raises(ValueError, match="step"):
        step_mean_offset(_stats(), step=-1)


def test_exit_step_is_the_first_step_within_tolerance_of_the_full_run():
    accuracy = [[80.0, 95.0, 97.5, 98.0], [84.0, 96.0, 96.5, 98.0]]  # means 82, 95.5, 97, 98
    assert exit_step(accuracy, tolerance=1.0) == 3
    assert exit_step(accuracy, tolerance=3.0) == 2
    assert exit_step(accuracy, tolerance=0.0) == 4
    assert exit_step([50.0, 60.0, 70.0], tolerance=100.0) == 1
    with pytest.raises(ValueError, match="exit_step"):
        exit_step([], tolerance=1.0)
    with pytest.raises(ValueError, match="tolerance"):
        exit_step(accuracy, tolerance=-1.0)
