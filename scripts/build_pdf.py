"""The whole book as one PDF, made offline from the rendered pages.

    make pdf          # = make book, then: python scripts/build_pdf.py

Every page of the table of contents, as ``make book`` rendered it, is opened in the system's
headless Chromium (served from 127.0.0.1, every other request refused), printed to PDF once its
images have decoded and MathJax has typeset every equation (the theme's print style drops the
navigation; solutions in dropdowns print open), and the pages are joined in the order of the
table of contents, one bookmark per page. The PDF is written inside the site,
``_build/html/snn-norm-lite.pdf``, so it is published beside the pages.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from offline_browser import launch, refuse_other_hosts, serve, wait_until_rendered  # noqa: E402

PDF_NAME = "snn-norm-lite.pdf"
# Paper is narrower than a screen: long code lines wrap instead of running off the page, and a
# code cell moves to the next page whole rather than leaving its empty frame behind.
PRINT_CSS = "pre { white-space: pre-wrap; overflow-wrap: anywhere; } div.cell_input { break-inside: avoid; }"
PAGE_TITLE = "() => (document.querySelector('h1')?.textContent || document.title).replace('#', '').trim()"


def book_pages(root: Path = ROOT) -> list[str]:
    """The pages in the order of ``_toc.yml``: the root, then every chapter of every part."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    return [toc["root"]] + [entry["file"] for part in toc["parts"] for entry in part["chapters"]]


def print_book(browser, site: str, out: Path) -> list[str]:
    """Print every page of the book served at ``site`` with ``browser`` and join them into
    ``out``; returns the bookmarks (each page's title), in the order of the table of contents."""
    from pypdf import PdfWriter

    writer, titles = PdfWriter(), []
    page = browser.new_page()
    refuse_other_hosts(page)
    page.emulate_media(media="print")
    for name in book_pages():
        page.goto(f"{site}/{name}.html", wait_until="load")
        page.add_style_tag(content=PRINT_CSS)
        wait_until_rendered(page)
        titles.append(page.evaluate(PAGE_TITLE))
        printed = page.pdf(format="A4", print_background=True, margin={"top": "14mm", "bottom": "14mm"})
        writer.append(io.BytesIO(printed), outline_item=titles[-1])
    page.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as stream:
        writer.write(stream)
    return titles


def build_pdf(html: Path, out: Path) -> list[str]:
    """Serve the rendered book in ``html``, start Chromium, and print the book into ``out``."""
    from playwright.sync_api import sync_playwright

    with serve(html) as site, sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            return print_book(browser, site, out)
        finally:
            browser.close()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="The whole book as one PDF, from the rendered pages (make book first).")
    parser.add_argument("--html", type=Path, default=ROOT / "_build" / "html", help="the rendered book (make book)")
    parser.add_argument("--out", type=Path, default=None, help=f"the PDF (default: HTML folder / {PDF_NAME})")
    args = parser.parse_args(argv)
    out = args.out or args.html / PDF_NAME
    start = time.perf_counter()
    titles = build_pdf(args.html, out)
    print(f"build_pdf: {out}, {len(titles)} pages of the book, {out.stat().st_size / 1e6:.1f} MB, "
          f"in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
