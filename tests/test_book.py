"""The book: table of contents, Colab cells, committed execution, and a full build with -W."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


def toc_files():
    return [entry["file"] for part in TOC["parts"] for entry in part["chapters"]]


def load(path):
    return json.loads(path.read_text())


def code_cells(notebook):
    return [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]


def test_every_chapter_is_in_the_toc_and_exists():
    listed = toc_files()
    for file in listed:
        assert list(ROOT.glob(file + ".*")), f"{file} is in _toc.yml but has no file"
    for path in NOTEBOOKS:
        assert f"book/{path.stem}" in listed, f"{path.name} is not in _toc.yml"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_colab_cell_installs_from_the_configured_repository(path):
    url, branch = CONFIG["repository"]["url"], CONFIG["repository"]["branch"]
    first = "".join(code_cells(load(path))[0]["source"])
    assert '"google.colab" in sys.modules' in first, "the first code cell must install only in Colab"
    assert f"git+{url}@{branch}" in first, f"the Colab cell must install from {url}@{branch} (_config.yml)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_executed_in_order_without_errors(path):
    cells = code_cells(load(path))
    counts = [cell["execution_count"] for cell in cells]
    assert counts == list(range(1, len(cells) + 1)), "re-run the notebook top to bottom (make notebooks)"
    for cell in cells:
        assert not any(out["output_type"] == "error" for out in cell["outputs"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_tags_check_key_numbers_and_ignore_widgets(path):
    cells = code_cells(load(path))
    tags = [cell.get("metadata", {}).get("tags", []) for cell in cells]
    assert any("nbval-check-output" in t for t in tags), "tag at least one cell of key numbers nbval-check-output"
    for cell, cell_tags in zip(cells, tags):
        if "widgets.panel(" in "".join(cell["source"]):
            assert "nbval-ignore-output" in cell_tags, "widget cells must be tagged nbval-ignore-output"
            assert any("image/png" in out.get("data", {}) for out in cell["outputs"]), "a widget cell draws its default figure"


def test_citations_resolve_to_the_bibliography():
    keys = set(re.findall(r"@\w+\{([^,]+),", (ROOT / "book" / "references.bib").read_text()))
    for path in NOTEBOOKS:
        text = "".join("".join(c["source"]) for c in load(path)["cells"] if c["cell_type"] == "markdown")
        for group in re.findall(r"\{cite\}`([^`]+)`", text):
            for key in group.split(","):
                assert key.strip() in keys, f"{path.name} cites unknown key {key}"


def test_book_builds_without_warnings(tmp_path):
    """A full Sphinx build with -W, from the committed outputs (nbval re-executes the chapters)."""
    config = dict(CONFIG)
    config["execute"] = {**CONFIG["execute"], "execute_notebooks": "off"}
    config_path = tmp_path / "_config.yml"
    config_path.write_text(yaml.safe_dump(config))
    jupyter_book = shutil.which("jupyter-book", path=str(Path(sys.executable).parent))
    assert jupyter_book, "jupyter-book is not installed in this environment"
    result = subprocess.run(
        [jupyter_book, "build", str(ROOT), "--config", str(config_path), "--path-output", str(tmp_path), "-W", "--keep-going"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert (tmp_path / "_build" / "html" / "book" / "01_why_normalisation.html").exists()
