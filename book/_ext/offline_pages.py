"""A Sphinx extension that keeps the rendered book readable without a network.

The pages are read on trains and behind firewalls, so every script and style sheet a page loads
must come from the site itself (MathJax is bundled by ``sphinx-mathjax-offline``; the widget
manager is not loaded at all, see ``_config.yml``). This extension does two things at the moment
each page is written (Sphinx's ``html-page-context`` event):

* it drops a script that is declared twice with the same source, attributes and body (the
  launch-button configuration is otherwise declared twice, and the browser refuses the second
  ``const`` with "Identifier 'THEBE_JS_URL' has already been declared");
* it warns, and so fails a ``-W`` build, when a page would load a script or a style sheet from
  outside the site. Links to other sites (Colab, the repository, the papers) are not loads and
  stay as they are.
"""

from __future__ import annotations

from sphinx.util import logging

logger = logging.getLogger(__name__)

_EXTERNAL = ("http://", "https://", "//")


def _key(asset) -> tuple:
    """What makes two script entries the same script: source, attributes and inline body (an inline
    script's source is ``None`` or ``""`` depending on the extension that added it)."""
    filename = getattr(asset, "filename", asset) or ""
    attributes = tuple(sorted((k, str(v)) for k, v in getattr(asset, "attributes", {}).items()))
    return (str(filename), attributes)


def _without_repeats(assets) -> list:
    seen, kept = set(), []
    for asset in assets:
        key = _key(asset)
        if key not in seen:
            seen.add(key)
            kept.append(asset)
    return kept


def _source(asset) -> str:
    return str(getattr(asset, "filename", asset) or "")


def keep_pages_offline(app, pagename, templatename, context, doctree) -> None:
    for kind in ("script_files", "css_files"):
        if kind not in context:
            continue
        context[kind] = _without_repeats(context[kind])
        for asset in context[kind]:
            if _source(asset).startswith(_EXTERNAL):
                logger.warning(
                    "page %r loads %s from outside the site; the book must read offline "
                    "(bundle it or drop it)",
                    pagename,
                    _source(asset),
                    location=pagename,
                )


def setup(app):
    # After every other extension has added its files to the page.
    app.connect("html-page-context", keep_pages_offline, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
