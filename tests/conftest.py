"""Fixtures shared by the book's tests."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def built_book():
    """The book built exactly as ``make book`` builds it (committed outputs, no execution, ``-W``),
    every page rebuilt, into the repository's build folder ``_build/html``.

    Returns the finished process; its ``html`` attribute is the folder of the pages.
    """
    jupyter_book = shutil.which("jupyter-book", path=str(Path(sys.executable).parent))
    assert jupyter_book, "jupyter-book is not installed in this environment (make env)"
    result = subprocess.run(
        [jupyter_book, "build", str(ROOT), "--path-output", str(ROOT), "--all", "-W", "--keep-going"],
        capture_output=True,
        text=True,
    )
    result.html = ROOT / "_build" / "html"
    return result
