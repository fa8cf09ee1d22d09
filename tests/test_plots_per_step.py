"""Per-step figures never auto-scale an axis onto rounding noise."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from snn_norm_lite import plots  # noqa: E402


def _stats(mean, var, rate):
    return {"current_mean": mean, "current_var": var, "rate": rate}


def test_flat_axis_limits_spots_values_constant_up_to_rounding():
    assert plots.flat_axis_limits([1e-9, -2e-9, 3e-9]) == pytest.approx((-0.5, 0.5), abs=1e-8)
    low, high = plots.flat_axis_limits([4.0, 4.0 + 1e-7])
    assert low < 4.0 < high and high - low == pytest.approx(4.0)
    assert plots.flat_axis_limits([0.0, 0.1]) is None
    with pytest.raises(ValueError, match="flat_axis_limits"):
        plots.flat_axis_limits([])
    with pytest.raises(ValueError, match="flat_axis_limits"):
        plots.flat_axis_limits([0.0, float("nan")])


def test_per_step_statistics_draws_a_flat_panel_on_sensible_limits():
    noise = 1e-8 * torch.randn(3, 5)
    fig = plots.per_step_statistics({"BNTT": _stats(noise, 1 + noise, torch.rand(3, 5))})
    mean_axis = fig.axes[0]
    low, high = mean_axis.get_ylim()
    assert high - low >= 0.99  # not a 1e-8 axis
    assert any("constant" in text.get_text() for text in mean_axis.texts)
    rate_axis = fig.axes[2]
    assert not rate_axis.texts  # a panel that really varies is left alone
    plt.close(fig)


def test_per_step_statistics_can_share_each_column_across_rows():
    flat = _stats(torch.zeros(2, 4), torch.ones(2, 4), torch.full((2, 4), 0.2))
    varying = _stats(torch.linspace(-2, 2, 8).view(2, 4), torch.rand(2, 4) * 3, torch.rand(2, 4))
    fig = plots.per_step_statistics({"flat": flat, "varying": varying}, share_columns=True)
    top, bottom = fig.axes[0], fig.axes[3]
    assert top.get_ylim() == bottom.get_ylim()
    assert top.get_ylim()[1] - top.get_ylim()[0] >= 4
    plt.close(fig)


def test_learning_curves_draws_mean_and_band_over_seeds():
    from snn_norm_lite.training import History

    seeds = [History(val_accuracy=[10.0, 50.0, 90.0]), History(val_accuracy=[20.0, 60.0, 80.0])]
    fig = plots.learning_curves({"BNTT": seeds, "one run": History(val_accuracy=[30.0, 40.0, 50.0])})
    ax = fig.axes[0]
    mean_line = ax.lines[0]
    assert list(mean_line.get_ydata()) == [15.0, 55.0, 85.0]
    assert len(ax.collections) == 1  # the min-max band of the seeds
    plt.close(fig)
    with pytest.raises(ValueError, match="learning_curves"):
        plots.learning_curves({"ragged": [History(val_accuracy=[1.0]), History(val_accuracy=[1.0, 2.0])]})


def test_learning_curves_rejects_ragged_seeds_without_leaving_a_figure_open():
    from snn_norm_lite.training import History

    before = set(plt.get_fignums())
    with pytest.raises(ValueError, match="same number of epochs"):
        plots.learning_curves({"ragged": [History(val_accuracy=[1.0]), History(val_accuracy=[1.0, 2.0])]})
    assert set(plt.get_fignums()) == before
