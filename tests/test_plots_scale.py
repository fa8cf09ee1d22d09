"""Figures of each layer's current scale: profiles at initialisation and traces over training."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from snn_norm_lite import plots  # noqa: E402
from snn_norm_lite.scale_drift import ScaleDriftResult, TracedRun  # noqa: E402
from snn_norm_lite.training import History  # noqa: E402


def test_scale_and_rate_profiles_draws_two_log_panels_and_checks_lengths():
    fig = plots.scale_and_rate_profiles({"a": {"scale": [1.0, 0.1, 0.0], "rate": [0.2, 0.01, 0.0]}}, title="t")
    left, right = fig.axes
    assert left.get_yscale() == "log" and right.get_yscale() == "log"
    assert min(right.lines[0].get_ydata()) == plots.RATE_FLOOR
    plt.close(fig)
    with pytest.raises(ValueError, match="scale_and_rate_profiles: 'b' has 2 scales but 1 rates"):
        plots.scale_and_rate_profiles({"b": {"scale": [1.0, 1.0], "rate": [0.1]}})


def test_scale_traces_one_panel_per_setup_with_a_shared_axis():
    run = TracedRun(History(val_accuracy=[50.0], test_accuracy=50.0), [[1.0, 1.0], [1.2, 0.9]])
    result = ScaleDriftResult([0], {"x": [run], "y": [run]}, {"x": {}, "y": {}}, {})
    fig = plots.scale_traces(result)
    assert len(fig.axes) == 2 and fig.axes[0].get_ylim()[0] == 0
    assert len(fig.axes[0].lines) == 3  # one line per layer, and the reference line at 1
    assert list(fig.axes[0].lines[1].get_ydata()) == pytest.approx([1.0, 0.9])  # relative to epoch 0
    plt.close(fig)
    absolute = plots.scale_traces(result, relative=False)
    assert len(absolute.axes[0].lines) == 2
    plt.close(absolute)
    with pytest.raises(ValueError, match="scale_traces: no setup"):
        plots.scale_traces(result, labels=["z"])
