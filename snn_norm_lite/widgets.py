"""ipywidgets panels: sliders that redraw a figure made by a plain function.

Every panel is built the same way: it draws the figure for the controls' default values as an
ordinary output (so the static book shows it), displays the controls below it, and, when a
control changes, redraws the figure *in place* of that output (an IPython display handle).
A static page has no kernel to redraw anything, so the controls also carry an HTML note of their
values and ranges: the rendered book shows that note in their place, a notebook front end (Jupyter,
Colab) shows the live controls.
The experiment code never lives here: a panel only connects controls to a function from
``experiments`` or ``plots`` (or a small one the chapter defines from them).
"""

from __future__ import annotations

import html
import numbers
from typing import Callable

import matplotlib.pyplot as plt

from .checks import check_bool, check_finite_number

try:  # widgets are optional: the package works without a notebook front end
    import ipywidgets as widgets
    from IPython.display import display
except ImportError:  # pragma: no cover - ipywidgets is a declared dependency
    widgets = None


def _require_widgets():
    if widgets is None:
        raise ImportError("snn_norm_lite.widgets needs ipywidgets: pip install ipywidgets")
    return widgets


def _check_slider(value, low, high, step, description, integer) -> None:
    """Refuse a slider whose default is outside ``[low, high]``, whose range is empty or whose step
    is not positive: ipywidgets would clamp the default or accept a step of 0 without a word."""
    check_bool(integer, "integer", "slider")
    if not isinstance(description, str):
        raise TypeError(f"slider: description must be a str, got {type(description).__name__}")
    caller = f"slider {description!r}"
    names = ("value", "low", "high", "step")
    if integer:
        for number, name in zip((value, low, high, step), names):
            if isinstance(number, bool) or not isinstance(number, numbers.Integral):
                raise TypeError(
                    f"{caller}: {name} must be an int for an integer slider, got {type(number).__name__} {number!r}"
                )
    else:
        for number, name in zip((value, low, high, step), names):
            check_finite_number(number, name, caller)
    if not low < high:
        raise ValueError(f"{caller}: low must be below high, got low={low}, high={high}")
    if not step > 0:
        raise ValueError(f"{caller}: step must be positive, got {step}")
    if not low <= value <= high:
        raise ValueError(
            f"{caller}: the default value {value} is outside [{low}, {high}]; widen the range or change the "
            "default (it is never clamped)"
        )


def slider(value, low, high, step, description: str, integer: bool = False):
    """A labelled slider that only fires when released (training runs are not instant).

    The default ``value`` must lie in ``[low, high]``, ``low < high`` and ``step > 0`` (all ints
    with ``integer=True``); anything else is refused before a widget is made:

    >>> slider(12, 2, 10, 1, "depth", integer=True)
    Traceback (most recent call last):
        ...
    ValueError: slider 'depth': the default value 12 is outside [2, 10]; widen the range or change the default (it is never clamped)
    """
    _check_slider(value, low, high, step, description, integer)
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
    if not callable(draw):
        raise TypeError(f"panel: draw must be a function returning a Figure, got {type(draw).__name__}")
    if not isinstance(controls, dict) or not controls or not all(isinstance(k, str) for k in controls):
        raise TypeError(f"panel: controls must be a non-empty dict of keyword names (str) to widgets, got {controls!r}")
    if button is not None and not isinstance(button, str):
        raise TypeError(f"panel: button must be a str (its label) or None, got {type(button).__name__}")
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
    display(_ControlsWithNote(box, controls_note(controls, button)))
    return box


def describe_control(name: str, control) -> str:
    """One control's default and range in words, e.g. ``depth = 8 (2 to 10, step 2)``, under the
    label the reader sees on the control (``name``, the keyword it feeds, when it has none)."""
    name = getattr(control, "description", "") or name
    value = control.value
    if hasattr(control, "min") and hasattr(control, "max"):
        return f"{name} = {value} ({control.min} to {control.max}, step {control.step})"
    if hasattr(control, "options"):
        options = ", ".join(repr(option) for option in control.options)
        return f"{name} = {value!r} (one of {options})"
    return f"{name} = {value!r}"


def controls_note(controls: dict, button: str | None = None) -> str:
    """The HTML a static page shows in place of a panel's controls.

    >>> controls_note({"depth": slider(8, 2, 10, 2, "depth", integer=True)})  # doctest: +ELLIPSIS
    '<div class="snn-widget-controls"><p><strong>Controls.</strong> The figure above is drawn for depth = 8 (2 to 10, step 2). ...'
    """
    described = "; ".join(html.escape(describe_control(name, control)) for name, control in controls.items())
    redraw = (
        f"press {html.escape(repr(button))} to redraw the figure"
        if button is not None
        else "the figure redraws when one moves"
    )
    return (
        '<div class="snn-widget-controls"><p><strong>Controls.</strong> '
        f"The figure above is drawn for {described}. In a running notebook (open this chapter in Colab "
        f"or Jupyter) the controls are live: {redraw}.</p></div>"
    )


class _ControlsWithNote:
    """A panel's controls as a notebook front end shows them (the live widgets) and as a static page
    shows them (the note of :func:`controls_note`): one display, both representations."""

    def __init__(self, box, note: str):
        self.box, self.note = box, note

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = self.box._repr_mimebundle_()
        bundle["text/html"] = self.note
        return bundle

    def __repr__(self) -> str:
        return repr(self.box)


def text(value: str, description: str):
    """A labelled text box that fires when the reader presses Enter or leaves it.

    >>> text(3, "rows")
    Traceback (most recent call last):
        ...
    TypeError: text: value and description must be str, got int and str
    """
    if not isinstance(value, str) or not isinstance(description, str):
        raise TypeError(
            f"text: value and description must be str, got {type(value).__name__} and {type(description).__name__}"
        )
    w = _require_widgets()
    return w.Text(value=value, description=description, continuous_update=False, style={"description_width": "initial"})


def dropdown(options, value, description: str):
    """A labelled drop-down list; ``value`` (the default) must be one of ``options``.

    >>> dropdown(("none", "bn"), "tebn", "norm")
    Traceback (most recent call last):
        ...
    ValueError: dropdown 'norm': the default 'tebn' is not one of the options 'none', 'bn'
    """
    if not isinstance(description, str):
        raise TypeError(f"dropdown: description must be a str, got {type(description).__name__}")
    if isinstance(options, (str, bytes, dict)) or not hasattr(options, "__iter__"):
        raise TypeError(f"dropdown {description!r}: options must be a list or tuple, got {type(options).__name__}")
    options = list(options)
    if not options:
        raise ValueError(f"dropdown {description!r}: needs at least one option")
    if len(set(map(repr, options))) != len(options):
        raise ValueError(f"dropdown {description!r}: an option appears twice: {options}")
    if value not in options:
        raise ValueError(
            f"dropdown {description!r}: the default {value!r} is not one of the options {', '.join(map(repr, options))}"
        )
    w = _require_widgets()
    return w.Dropdown(options=options, value=value, description=description, style={"description_width": "initial"})
