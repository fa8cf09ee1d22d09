"""The rendered book, read in a real browser with no network.

Every page of the table of contents is opened in headless Chromium (driven by Playwright), served
from the build folder over ``http://127.0.0.1``, with every request that leaves the machine
refused, as for a student on a train. A page passes when the browser logs no error, loads nothing
from outside the site, decodes every image, typesets every equation, links its chapter to Colab
(the address built from ``_config.yml``) and shows each widget's default figure. A screenshot of
every page is saved in ``_build/screenshots`` for a reviewer to look at.

The browser is the system's Chromium (Debian's ``chromium`` package; ``SNN_CHROMIUM`` names
another executable), since Playwright's own browser download is not reachable everywhere. Without
one the tests are skipped with the reason in the summary; ``.ci/run`` installs Chromium and sets
``SNN_REQUIRE_BROWSER=1``, which turns a missing browser into a failure, so CI always runs them.
"""

import contextlib
import json
import os
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from offline_browser import launch, refuse_other_hosts, serve, wait_until_rendered  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
PAGES = [TOC["root"]] + [entry["file"] for part in TOC["parts"] for entry in part["chapters"]]
CHAPTERS = [page for page in PAGES if (ROOT / f"{page}.ipynb").exists()]
SCREENSHOTS = ROOT / "_build" / "screenshots"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def colab_link(page):
    """The Colab address of a chapter, from the repository and branch of ``_config.yml``."""
    owner_repo = urlparse(CONFIG["repository"]["url"]).path.strip("/")
    base = CONFIG["launch_buttons"]["colab_url"].rstrip("/")
    return f"{base}/github/{owner_repo}/blob/{CONFIG['repository']['branch']}/{page}.ipynb"


def widget_count(page):
    """How many widget panels the committed chapter displays."""
    notebook = json.loads((ROOT / f"{page}.ipynb").read_text())
    return sum(
        WIDGET_VIEW in output.get("data", {})
        for cell in notebook["cells"]
        if cell["cell_type"] == "code"
        for output in cell.get("outputs", [])
    )


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium, or a skip (a failure under ``SNN_REQUIRE_BROWSER=1``) saying what is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    with contextlib.ExitStack() as stack:
        try:
            if sync_playwright is None:
                raise FileNotFoundError("Playwright is not installed (pip install playwright)")
            chromium = launch(stack.enter_context(sync_playwright()))
        except FileNotFoundError as missing:
            message = f"the rendered-book browser tests did not run: {missing}"
            if os.environ.get("SNN_REQUIRE_BROWSER") == "1":
                pytest.fail(message)
            pytest.skip(message)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def site(built_book):
    """The built pages served on 127.0.0.1 (a free port) for as long as the module runs."""
    assert built_book.returncode == 0, built_book.stdout[-3000:] + built_book.stderr[-3000:]
    with serve(built_book.html) as address:
        yield address


# What the browser sees once a page has loaded, its images have decoded and MathJax has finished.
INSPECT = """() => {
  const article = document.querySelector('article') || document.body;
  const prose = article.cloneNode(true);
  prose.querySelectorAll('pre, code, script, style, mjx-container, .highlight').forEach(e => e.remove());
  const text = prose.textContent;
  const raw = ['\\\\(', '\\\\[', '$$'].filter(mark => text.includes(mark))
      .map(mark => mark + ' ... ' + text.slice(text.indexOf(mark), text.indexOf(mark) + 60));
  // A panel's outputs: its default figure, then (next output) the note that replaces its controls.
  const widgets = [...document.querySelectorAll('.snn-widget-controls')].map(note => {
    const output = note.closest('.output') || note;
    const figure = output.previousElementSibling;
    const img = figure && (figure.tagName === 'IMG' ? figure : figure.querySelector('img'));
    return Boolean(img && img.complete && img.naturalWidth > 0);
  });
  return {
    title: document.title,
    images: document.images.length,
    brokenImages: [...document.images].filter(img => !(img.complete && img.naturalWidth > 0)).map(img => img.src),
    mathElements: document.querySelectorAll('.math').length,
    untypesetMath: [...document.querySelectorAll('.math')].filter(m => !m.querySelector('mjx-container'))
        .map(m => m.textContent.slice(0, 60)),
    rawMath: raw,
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
    widgetFigures: widgets,
  };
}"""


@pytest.fixture(scope="module")
def visit(browser, site):
    """Open a page once (cached) and report what the browser saw, with a full-page screenshot."""
    reports = {}

    def open_page(page):
        if page in reports:
            return reports[page]
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        browser_page = context.new_page()
        errors, outside, failed = [], [], []
        browser_page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
        browser_page.on("pageerror", lambda error: errors.append(str(error)))
        browser_page.on("requestfailed", lambda request: failed.append(f"{request.url} ({request.failure})"))
        browser_page.on("response", lambda response: response.status >= 400 and failed.append(f"{response.url} ({response.status})"))

        refuse_other_hosts(browser_page, outside)
        browser_page.goto(f"{site}/{page}.html", wait_until="load")
        wait_until_rendered(browser_page)
        seen = browser_page.evaluate(INSPECT)
        browser_page.wait_for_load_state("networkidle")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        browser_page.screenshot(path=str(SCREENSHOTS / f"{Path(page).name}.png"), full_page=True)
        context.close()
        reports[page] = {**seen, "errors": errors, "outside": outside, "failed": failed}
        return reports[page]

    return open_page


@pytest.mark.parametrize("page", PAGES)
def test_page_loads_offline_without_errors(visit, page):
    report = visit(page)
    assert report["outside"] == [], f"{page} requests resources from outside the site: {report['outside']}"
    assert report["failed"] == [], f"{page} has requests that failed: {report['failed']}"
    assert report["errors"] == [], f"{page} logs errors in the browser console: {report['errors']}"
    assert (SCREENSHOTS / f"{Path(page).name}.png").stat().st_size > 0


@pytest.mark.parametrize("page", PAGES)
def test_every_image_decodes(visit, page):
    report = visit(page)
    assert report["brokenImages"] == [], f"{page}: images that did not decode: {report['brokenImages']}"


@pytest.mark.parametrize("page", PAGES)
def test_every_equation_is_typeset(visit, page):
    report = visit(page)
    assert report["untypesetMath"] == [], f"{page}: equations MathJax left as TeX: {report['untypesetMath']}"
    assert report["rawMath"] == [], f"{page}: raw TeX delimiters in the text: {report['rawMath']}"


def test_the_checks_see_equations_and_figures(visit):
    """The checks above are not vacuous: the chapters do have equations and figures to check."""
    assert sum(visit(page)["mathElements"] for page in CHAPTERS) > 100
    assert sum(visit(page)["images"] for page in CHAPTERS) > 50


@pytest.mark.parametrize("page", CHAPTERS)
def test_chapter_links_to_colab(visit, page):
    assert colab_link(page) in visit(page)["links"], f"{page} has no launch link {colab_link(page)}"


@pytest.mark.parametrize("page", [page for page in CHAPTERS if widget_count(page)])
def test_every_widget_shows_its_default_figure(visit, page):
    """Each widget panel of the chapter appears on the page as its default figure, decoded, with
    the note of its controls under it (the live controls need a kernel)."""
    figures = visit(page)["widgetFigures"]
    assert len(figures) == widget_count(page), f"{page}: {widget_count(page)} widgets, {len(figures)} on the page"
    assert all(figures), f"{page}: widgets without a decoded default figure above them: {figures}"


def test_search_finds_tdbn(browser, site):
    context = browser.new_context()
    page = context.new_page()
    refuse_other_hosts(page)
    errors = []
    page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{site}/search.html?q=tdBN", wait_until="load")
    page.wait_for_selector("#search-results ul.search li", timeout=30_000)
    results = page.eval_on_selector_all("#search-results ul.search li a", "links => links.map(a => a.href)")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "search-tdBN.png"))
    context.close()
    assert any("04_tdbn.html" in link for link in results), f"searching 'tdBN' found {results}"
    assert errors == [], f"the search page logs errors: {errors}"


def test_the_whole_book_prints_to_one_pdf(browser, site, built_book, visit):
    """`make pdf`: every page printed offline and joined in the order of the table of contents,
    one bookmark per page, into the site's folder (so it is published beside the pages)."""
    from build_pdf import PDF_NAME, print_book
    from pypdf import PdfReader

    out = built_book.html / PDF_NAME
    titles = print_book(browser, site, out)
    reader = PdfReader(out)
    assert [item.title for item in reader.outline] == titles
    assert len(titles) == len(PAGES) and len(reader.pages) > 3 * len(PAGES)
    assert titles[PAGES.index("book/04_tdbn")] == "tdBN: BatchNorm scaled to the threshold"
    assert f"{site}/{PDF_NAME}" in visit(TOC["root"])["links"], "the introduction must link to the PDF"
    text = "".join(page.extract_text() for page in reader.pages[:40])
    assert "\\(" not in text and "$$" not in text, "raw TeX in the printed book"
