"""Headless Chromium with no network, and the built book served on 127.0.0.1.

Shared by the rendered-book tests (tests/test_rendered_book.py) and the PDF of the book
(scripts/build_pdf.py). The browser is the system's Chromium (Debian's ``chromium``, or Chrome);
``SNN_CHROMIUM`` names another executable. Playwright drives it, but Playwright's own browser
download is never used (it is not reachable everywhere).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import threading
from pathlib import Path
from urllib.parse import urlparse

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Chromium must not reach out on its own (updates, sync, DNS look-ups), and no host name resolves.
OFFLINE_ARGS = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


def find_browser() -> str | None:
    """The Chromium to drive: ``SNN_CHROMIUM`` if set (it must exist), else the first on the PATH."""
    named = os.environ.get("SNN_CHROMIUM")
    if named:
        if not (Path(named).is_file() and os.access(named, os.X_OK)):
            raise FileNotFoundError(f"SNN_CHROMIUM={named!r} is not an executable file")
        return named
    return next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder without logging every request (the callers report what matters)."""

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(folder: Path):
    """Serve ``folder`` on 127.0.0.1 at a free port; yields the base address."""
    if not (Path(folder) / "index.html").is_file():
        raise FileNotFoundError(f"{folder} has no index.html: build the book first (make book)")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def launch(playwright):
    """Headless Chromium (the system's), offline. Raises FileNotFoundError when there is none."""
    executable = find_browser()
    if executable is None:
        raise FileNotFoundError("no Chromium found (apt-get install chromium, or set SNN_CHROMIUM to its path)")
    return playwright.chromium.launch(executable_path=executable, args=OFFLINE_ARGS)


# Resolves once every image of the page has loaded (or failed) and MathJax has typeset the page.
RENDERED = """async () => {
  for (const img of document.images) img.loading = 'eager';
  await Promise.all([...document.images].map(img => img.complete ? null :
      new Promise(done => { img.addEventListener('load', done); img.addEventListener('error', done); })));
  if (window.MathJax && MathJax.startup) await MathJax.startup.promise;
}"""


def wait_until_rendered(page) -> None:
    """Wait until ``page``'s images have decoded (or failed) and its equations are typeset."""
    page.evaluate(RENDERED)


def refuse_other_hosts(page, refused: list | None = None) -> None:
    """Let ``page`` load from 127.0.0.1 only; every other request is aborted (and noted in ``refused``)."""

    def route(request_route):
        if urlparse(request_route.request.url).hostname == "127.0.0.1":
            return request_route.continue_()
        if refused is not None:
            refused.append(request_route.request.url)
        return request_route.abort()

    page.route("**/*", route)
