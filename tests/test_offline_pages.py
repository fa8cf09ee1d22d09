"""The book's Sphinx extension (book/_ext/offline_pages.py): no script twice, nothing from outside."""

import sys
import types
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "book" / "_ext"))
import offline_pages  # noqa: E402


def script(filename, **attributes):
    return types.SimpleNamespace(filename=filename, attributes=attributes, priority=500)


@pytest.fixture
def warnings(monkeypatch):
    said = []
    monkeypatch.setattr(offline_pages, "logger", types.SimpleNamespace(warning=lambda *a, **k: said.append(a[0] % a[1:])))
    return said


def test_a_script_declared_twice_is_kept_once(warnings):
    """The same inline script, once with source None and once with "" (two extensions' habits)."""
    config = "const THEBE_JS_URL = 'x'"
    context = {
        "script_files": [script(None, body=config), script("_static/a.js"), script("", body=config), script("_static/a.js")],
        "css_files": [script("_static/a.css"), script("_static/a.css", media="print")],
    }
    offline_pages.keep_pages_offline(None, "page", "page.html", context, None)
    assert [(s.filename, s.attributes) for s in context["script_files"]] == [(None, {"body": config}), ("_static/a.js", {})]
    assert len(context["css_files"]) == 2  # different attributes: two style sheets
    assert warnings == []


@pytest.mark.parametrize("source", ["https://cdn.example.org/x.js", "http://example.org/x.js", "//cdn.example.org/x.js"])
def test_a_script_from_outside_the_site_is_a_warning(warnings, source):
    context = {"script_files": [script(source)], "css_files": []}
    offline_pages.keep_pages_offline(None, "book/04_tdbn", "page.html", context, None)
    assert len(warnings) == 1 and source in warnings[0] and "book/04_tdbn" in warnings[0]
