"""scripts/offline_browser.py: which Chromium is driven, and the site served on 127.0.0.1."""

import sys
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import offline_browser  # noqa: E402


def test_snn_chromium_names_the_browser_and_must_exist(monkeypatch, tmp_path):
    executable = tmp_path / "chrome"
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    monkeypatch.setenv("SNN_CHROMIUM", str(executable))
    assert offline_browser.find_browser() == str(executable)
    monkeypatch.setenv("SNN_CHROMIUM", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="SNN_CHROMIUM=.*missing.* is not an executable file"):
        offline_browser.find_browser()


def test_without_any_browser_there_is_none_and_launch_says_so(monkeypatch):
    monkeypatch.delenv("SNN_CHROMIUM", raising=False)
    monkeypatch.setattr(offline_browser.shutil, "which", lambda name: None)
    assert offline_browser.find_browser() is None
    with pytest.raises(FileNotFoundError, match="apt-get install chromium"):
        offline_browser.launch(playwright=None)


def test_serve_needs_a_built_site_and_serves_it_on_loopback(tmp_path):
    with pytest.raises(FileNotFoundError, match="make book"):
        with offline_browser.serve(tmp_path):
            pass
    (tmp_path / "index.html").write_text("<p>the book</p>")
    with offline_browser.serve(tmp_path) as address:
        assert address.startswith("http://127.0.0.1:")
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        assert no_proxy.open(f"{address}/index.html", timeout=10).read() == b"<p>the book</p>"
