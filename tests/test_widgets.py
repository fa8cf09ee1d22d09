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


def test_controls_carry_a_note_for_static_pages(monkeypatch):
    """A notebook front end gets the live widget; a static page (no kernel) gets a note of every
    control's default and range in its place, under the default figure."""
    shown = []
    monkeypatch.setattr(widgets, "display", lambda obj, **kwargs: shown.append(obj))
    depth = widgets.slider(4, 2, 10, 2, "depth", integer=True)
    norm = widgets.dropdown(("none", "bn"), "bn", "norm type")
    box = widgets.panel(lambda depth, norm: plt.figure(), {"depth": depth, "norm": norm}, button="run")
    figure, controls = shown
    assert isinstance(figure, plt.Figure)
    bundle = controls._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == box.model_id
    note = bundle["text/html"]
    assert note.startswith('<div class="snn-widget-controls">')
    assert "depth = 4 (2 to 10, step 2)" in note
    assert "norm type = &#x27;bn&#x27; (one of &#x27;none&#x27;, &#x27;bn&#x27;)" in note
    assert "press &#x27;run&#x27; to redraw the figure" in note


# -- slider and dropdown refuse what ipywidgets would clamp or accept silently -----------------

import ast  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.mark.parametrize(
    "args, kwargs, error, message",
    [
        ((12, 2, 10, 1, "depth"), {"integer": True}, ValueError, "default value 12 is outside \\[2, 10\\]"),
        ((-0.5, 0.0, 1.0, 0.1, "rate"), {}, ValueError, "default value -0.5 is outside"),
        ((0.5, 0.0, 1.0, 0.0, "rate"), {}, ValueError, "step must be positive, got 0.0"),
        ((0.5, 0.0, 1.0, -0.1, "rate"), {}, ValueError, "step must be positive"),
        ((1.0, 1.0, 1.0, 0.1, "rate"), {}, ValueError, "low must be below high"),
        ((1.0, 2.0, 0.0, 0.1, "rate"), {}, ValueError, "low must be below high"),
        ((0.5, 0.0, float("nan"), 0.1, "rate"), {}, ValueError, "high must be a finite number"),
        (("0.5", 0.0, 1.0, 0.1, "rate"), {}, TypeError, "value must be a real number"),
        ((4.5, 2, 10, 1, "depth"), {"integer": True}, TypeError, "value must be an int for an integer slider"),
        ((4, 2, 10, 0.5, "depth"), {"integer": True}, TypeError, "step must be an int"),
        ((4, 2, 10, 1, "depth"), {"integer": 1}, TypeError, "integer must be True or False"),
        ((4, 2, 10, 1, None), {}, TypeError, "description must be a str"),
    ],
)
def test_slider_refuses_bad_ranges(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        widgets.slider(*args, **kwargs)


def test_slider_accepts_its_ends_and_keeps_the_default():
    assert widgets.slider(2, 2, 10, 1, "depth", integer=True).value == 2
    assert widgets.slider(10, 2, 10, 1, "depth", integer=True).value == 10
    assert widgets.slider(0.25, 0.0, 0.5, 0.05, "rate").value == 0.25


@pytest.mark.parametrize(
    "args, error, message",
    [
        ((("none", "bn"), "tebn", "norm"), ValueError, "the default 'tebn' is not one of the options 'none', 'bn'"),
        (((), "none", "norm"), ValueError, "at least one option"),
        ((("bn", "bn"), "bn", "norm"), ValueError, "appears twice"),
        (("none", "none", "norm"), TypeError, "options must be a list or tuple"),
        ((("none",), "none", 3), TypeError, "description must be a str"),
    ],
)
def test_dropdown_refuses_a_default_not_among_its_options(args, error, message):
    with pytest.raises(error, match=message):
        widgets.dropdown(*args)


def test_dropdown_text_and_panel_arguments():
    assert widgets.dropdown(("none", "bn"), "bn", "norm").value == "bn"
    with pytest.raises(TypeError, match="text: value and description must be str"):
        widgets.text(None, "rows")
    with pytest.raises(TypeError, match="panel: draw must be a function"):
        widgets.panel(None, {"rate": widgets.slider(0.1, 0.0, 1.0, 0.1, "rate")})
    with pytest.raises(TypeError, match="panel: controls must be a non-empty dict"):
        widgets.panel(lambda: plt.figure(), {})
    with pytest.raises(TypeError, match="panel: button must be a str"):
        widgets.panel(lambda rate: plt.figure(), {"rate": widgets.slider(0.1, 0.0, 1.0, 0.1, "rate")}, button=True)


def _chapter_calls():
    """Every ``widgets.slider(...)`` / ``widgets.dropdown(...)`` call of the chapters whose
    arguments are literals, as (chapter, source, function, args, kwargs)."""
    calls = []
    for notebook in sorted((Path(__file__).parent.parent / "book").glob("*.ipynb")):
        for cell in json.loads(notebook.read_text())["cells"]:
            source = "".join(cell["source"])
            if cell["cell_type"] != "code" or "widgets." not in source:
                continue
            try:
                tree = ast.parse(source)
            except SyntaxError:  # a cell with notebook magics
                continue
            for node in ast.walk(tree):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in ("slider", "dropdown")
                        and isinstance(node.func.value, ast.Name) and node.func.value.id == "widgets"):
                    try:
                        args = [ast.literal_eval(a) for a in node.args]
                        kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
                    except ValueError:  # an argument computed in the chapter
                        continue
                    calls.append((notebook.name, ast.get_source_segment(source, node), node.func.attr, args, kwargs))
    return calls


def test_every_literal_slider_and_dropdown_of_the_chapters_passes_the_checks():
    calls = _chapter_calls()
    assert len(calls) >= 20  # the chapters' panels are found
    for chapter, source, function, args, kwargs in calls:
        try:
            getattr(widgets, function)(*args, **kwargs)
        except (TypeError, ValueError) as error:  # pragma: no cover - the message is the report
            pytest.fail(f"{chapter}: {source} is refused: {error}")
