"""ipywidgets panels: sliders that redraw a figure made by a plain function.

Every panel is built the same way: it draws the figure for the controls' default values as an
ordinary output (so the static book shows it), displays the controls below it, and, when a
control changes, redraws the figure *in place* of that output (an IPython display handle).
The experiment code never lives here: a panel only connects controls to a function from
``experiments`` or ``plots`` (or a small one the chapter defines from them).
"""

from __future__ import annotations

from typing import Callable

import matplotlib.pyplot as plt

try:  # widgets are optional: the package works without a notebook front end
    import ipywidgets as widgets
    from IPython.display import display
except ImportError:  # pragma: no cover - ipywidgets is a declared dependency
    widgets = None


def _require_widgets():
    if widgets is None:
        raise ImportError("snn_norm_lite.widgets needs ipywidgets: pip install ipywidgets")
    return widgets


def slider(value, low, high, step, description: str, integer: bool = False):
    """A labelled slider that only fires when released (training runs are not instant)."""
    w = _require_widgets()
    cls = w.IntSlider if integer else w.FloatSlider
    return cls(
        value=value,
        min=low,
        max=high,
        step=step,
        description=description,
        continuous_update=False,
        style={"description_width": "initial"},
    )


def panel(draw: Callable[..., "plt.Figure"], controls: dict, button: str | None = None):
    """Draw ``draw(**defaults)``, show the controls, and redraw in place when they change.

    ``draw`` returns a matplotlib Figure; ``controls`` maps its keyword arguments to widgets
    whose current values are the defaults. With ``button`` set, nothing is redrawn until the
    button (labelled ``button``) is pressed, for experiments that take seconds.
    Returns the controls (an ``ipywidgets.Box``) after displaying them.
    """
    w = _require_widgets()

    def current_figure():
        fig = draw(**{name: control.value for name, control in controls.items()})
        plt.close(fig)  # shown through the display handle only, never twice
        return fig

    handle = display(current_figure(), display_id=True)  # None outside an IPython kernel

    def redraw(*_):
        figure = current_figure()
        if handle is None:
            display(figure)
        else:
            handle.update(figure)

    children = list(controls.values())
    if button is None:
        for control in controls.values():
            control.observe(redraw, names="value")
    else:
        run = w.Button(description=button, button_style="primary")
        run.on_click(redraw)
        children.append(run)
    box = w.HBox(children, layout=w.Layout(flex_flow="row wrap"))
    display(box)
    return box


def text(value: str, description: str):
    """A labelled text box that fires when the reader presses Enter or leaves it."""
    w = _require_widgets()
    return w.Text(value=value, description=description, continuous_update=False, style={"description_width": "initial"})


def dropdown(options, value, description: str):
    """A labelled drop-down list."""
    w = _require_widgets()
    return w.Dropdown(options=list(options), value=value, description=description, style={"description_width": "initial"})
