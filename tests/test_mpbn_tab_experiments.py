"""The experiment helpers of chapters 07 (MPBN folding) and 08 (TAB window statistics)."""

import pytest
import torch

from snn_norm_lite import mpbn_configurations, norms, tab_windows
from snn_norm_lite import experiments
from snn_norm_lite.norms import FoldedMPBNLeaky, MPBNLeaky


def small_mpbn_snn():
    torch.manual_seed(0)
    config = experiments.TrainConfig(depth=2, width=4, num_steps=3)
    model = experiments.build_model("snn", "mpbn", config)
    model.train()
    model(torch.rand(8, 1, 8, 8) * 4)  # one training pass: running statistics away from their init
    with torch.no_grad():
        gamma = model.blocks[1].neuron.membrane_norm.weight
        gamma[0], gamma[1] = -0.7, 0.0  # a flipped and a constant channel
    return model


def test_fold_mpbn_replaces_every_neuron_and_leaves_the_original():
    model = small_mpbn_snn()
    folded = norms.fold_mpbn(model)
    assert all(isinstance(block.neuron, FoldedMPBNLeaky) for block in folded.blocks)
    assert all(isinstance(block.neuron, MPBNLeaky) for block in model.blocks)
    assert model.training and not folded.training


def test_fold_mpbn_needs_an_mpbn_neuron():
    with pytest.raises(ValueError, match="no MPBNLeaky"):
        norms.fold_mpbn(experiments.build_model("snn", "bn", experiments.TrainConfig(depth=1, width=4)))


def test_mpbn_fold_check_finds_identical_spikes():
    model = small_mpbn_snn()
    check = mpbn_configurations.mpbn_fold_check(model, torch.rand(6, 1, 8, 8) * 4, repeats=1)
    assert check.layers_identical == [True, True]
    assert check.predictions_identical and check.max_logit_difference == 0.0
    assert len(check.spikes_per_layer) == 2 and check.spikes_per_layer[0] > 0
    assert min(check.unfolded_seconds, check.folded_seconds) > 0
    assert model.training  # mode restored


def test_tab_window_scaling_agrees_with_the_naive_loop():
    result = tab_windows.tab_window_scaling(steps=(2, 5), batch=3, channels=2, size=2, repeats=1)
    assert result.steps == [2, 5]
    assert max(result.max_abs_difference) < 1e-5
    assert len(result.fast_seconds) == len(result.naive_seconds) == 2


def test_window_tracking_against_a_direct_computation():
    x = torch.randn(5, 3, 2, 4, dtype=torch.float64) + torch.arange(5.0, dtype=torch.float64).view(5, 1, 1, 1)
    out = tab_windows.window_tracking(x, beta=0.5)
    step_mean = x.mean(dim=(1, 3))  # [T, C]
    for t in range(5):
        assert torch.allclose(out["window_mean"][t], step_mean[: t + 1].mean())
        weights = torch.tensor([0.5 ** (t - s) for s in range(t + 1)], dtype=torch.float64)
        leaky = (weights.unsqueeze(1) * step_mean[: t + 1]).sum(0) / weights.sum()
        assert torch.allclose(out["leaky_mean"][t], leaky.mean())
    assert torch.allclose(tab_windows.window_tracking(x, beta=1.0)["leaky_mean"], out["window_mean"])
    with pytest.raises(ValueError):
        tab_windows.window_tracking(torch.zeros(3, 4))


def test_window_tracking_standardised_measures_drift_in_channel_standard_deviations():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 64, 2, 3, 3, generator=generator, dtype=torch.float64)
    x[:, :, 0] = x[:, :, 0] * 3 + torch.arange(4.0, dtype=torch.float64).view(4, 1, 1, 1)  # drifts up
    x[:, :, 1] = x[:, :, 1] * 0.5 - 0.5 * torch.arange(4.0, dtype=torch.float64).view(4, 1, 1, 1)  # drifts down
    out = tab_windows.window_tracking(x, beta=0.9, standardise=True)
    step_mean = x.mean(dim=(1, 3, 4))
    spread = x.transpose(0, 2).reshape(2, -1).std(dim=1)
    expected = ((step_mean - step_mean[0]) / spread).abs().mean(dim=1)
    torch.testing.assert_close(out["step_mean"], expected)
    assert out["step_mean"][0] == 0 and out["window_mean"][0] == 0 and out["leaky_mean"][0] == 0
    assert (out["window_mean"][1:] > 0).all()  # opposite drifts do not cancel
    plain = tab_windows.window_tracking(x, beta=0.9)
    assert plain["step_mean"].shape == out["step_mean"].shape == (4,)
