"""Widget panels: the default figure is drawn once, and a control change redraws with its value."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from snn_norm_lite import widgets  # noqa: E402


def test_panel_draws_defaults_then_redraws_on_change():
    plt.close("all")  # figures other tests left open are not this panel's
    calls = []

    def draw(depth, threshold):
        calls.append((depth, threshold))
        fig, ax = plt.subplots()
        ax.set_title(f"{depth} {threshold}")
        return fig

    depth = widgets.slider(4, 2, 10, 1, "depth", integer=True)
    threshold = widgets.slider(1.0, 0.5, 2.0, 0.5, "threshold")
    box = widgets.panel(draw, {"depth": depth, "threshold": threshold})
    assert calls == [(4, 1.0)]
    depth.value = 6
    assert calls[-1] == (6, 1.0)
    threshold.value = 2.0
    assert calls[-1] == (6, 2.0)
    assert len(box.children) == 2
    assert plt.get_fignums() == []  # every figure is closed after display


def test_button_panel_waits_for_the_button():
    calls = []

    def draw(rate):
        calls.append(rate)
        return plt.figure()

    rate = widgets.slider(0.1, 0.0, 1.0, 0.1, "rate")
    box = widgets.panel(draw, {"rate": rate}, button="run")
    rate.value = 0.5
    assert calls == [0.1]
    box.children[-1].click()
    assert calls == [0.1, 0.5]
