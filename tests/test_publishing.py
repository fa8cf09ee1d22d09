"""Publishing: the GitHub workflows, the README's badges and links, and the Colab install cell.

The workflows cannot run here; they are kept small and standard, and these tests check that they
parse and do what the README says. Every address is built from the repository and branch in
``_config.yml``, the one place they are written.
"""

import json
import re
import shlex
import sys
import types
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
REPOSITORY, BRANCH = CONFIG["repository"]["url"].rstrip("/"), CONFIG["repository"]["branch"]
OWNER, NAME = urlparse(REPOSITORY).path.strip("/").split("/")
README = (ROOT / "README.md").read_text()
CHAPTERS = [
    entry["file"] for part in TOC["parts"] for entry in part["chapters"] if (ROOT / f"{entry['file']}.ipynb").exists()
]
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"


def workflow(name):
    """A workflow as a dict; PyYAML reads the key ``on`` as True, so it is put back as "on"."""
    document = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    if True in document:
        document["on"] = document.pop(True)
    return document


def steps(document):
    return [step for job in document["jobs"].values() for step in job["steps"]]


def test_the_test_workflow_runs_the_ci_script_on_pushes_and_pull_requests():
    document = workflow("test.yml")
    assert {"push", "pull_request"} <= set(document["on"])
    commands = [step["run"] for step in steps(document) if "run" in step]
    assert commands == ["bash .ci/run"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "SNN_REQUIRE_BROWSER=1" in ci and "install_browser.sh" in ci


def test_the_book_workflow_builds_and_deploys_to_pages_from_main():
    document = workflow("book.yml")
    assert document["on"]["push"]["branches"] == [BRANCH]
    assert document["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    build, deploy = document["jobs"]["build"], document["jobs"]["deploy"]
    assert [step["run"] for step in build["steps"] if "run" in step] == ["bash scripts/install_browser.sh", "make pdf"]
    assert re.search(r"^pdf: book\b", (ROOT / "Makefile").read_text(), re.M), "make pdf must build the book first"
    upload = next(step for step in build["steps"] if step.get("uses", "").startswith("actions/upload-pages-artifact@"))
    assert upload["with"]["path"] == "_build/html"
    assert deploy["needs"] == "build" and deploy["environment"]["name"] == "github-pages"
    assert any(step.get("uses", "").startswith("actions/deploy-pages@") for step in deploy["steps"])


@pytest.mark.parametrize("name", ["test.yml", "book.yml"])
def test_workflow_actions_are_pinned_to_a_major_version(name):
    for step in steps(workflow(name)):
        if "uses" in step:
            assert re.fullmatch(r"actions/[a-z-]+@v\d+", step["uses"]), step["uses"]


def test_readme_has_the_badges_and_the_book_address():
    assert f"{REPOSITORY}/actions/workflows/test.yml/badge.svg" in README
    assert f"{REPOSITORY}/actions/workflows/book.yml/badge.svg" in README
    assert f"https://{OWNER}.github.io/{NAME}/" in README


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_readme_opens_every_chapter_in_colab(chapter):
    link = f"https://colab.research.google.com/github/{OWNER}/{NAME}/blob/{BRANCH}/{chapter}.ipynb"
    assert f"[![Open in Colab]({COLAB_BADGE})]({link})" in README, f"README lacks the Colab badge for {chapter}"


# --- The Colab cell ----------------------------------------------------------------------------


def colab_cell(chapter):
    notebook = json.loads((ROOT / f"{chapter}.ipynb").read_text())
    return "".join(next(cell for cell in notebook["cells"] if cell["cell_type"] == "code")["source"])


def run_cell(source, in_colab, monkeypatch):
    """Run the cell as IPython would (its ``%pip`` line becomes a magic call) and return the magic
    calls it made, with ``google.colab`` imported or not."""
    from IPython.core.inputtransformer2 import TransformerManager

    calls = []
    shell = types.SimpleNamespace(run_line_magic=lambda name, line: calls.append((name, line)))
    if in_colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(TransformerManager().transform_cell(source), {"get_ipython": lambda: shell})
    return calls


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_colab_cell_installs_exactly_the_declared_package(chapter, monkeypatch):
    """In Colab the cell installs this package, and so what pyproject.toml declares, from the
    repository and branch of _config.yml; anywhere else it does nothing."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
    source = colab_cell(chapter)
    assert run_cell(source, in_colab=False, monkeypatch=monkeypatch) == []
    calls = run_cell(source, in_colab=True, monkeypatch=monkeypatch)
    assert len(calls) == 1 and calls[0][0] == "pip", calls
    arguments = shlex.split(calls[0][1])
    assert arguments[0] == "install"
    requirements = [Requirement(argument) for argument in arguments[1:] if not argument.startswith("-")]
    assert [(r.name, r.url, r.extras, str(r.specifier)) for r in requirements] == [
        (project, f"git+{REPOSITORY}@{BRANCH}", set(), "")
    ], f"the Colab cell must install only {project} @ git+{REPOSITORY}@{BRANCH}, whose dependencies are pyproject.toml's"
