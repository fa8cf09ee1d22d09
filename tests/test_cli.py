"""The command line: options, JSON output, and errors."""

import json
import subprocess
import sys

import pytest

from snn_norm_lite.__main__ import build_parser, main


def test_headline_json_small_run(capsys):
    code = main(["headline", "--json", "--seeds", "3", "--depth", "1", "--width", "4", "--epochs", "1", "--steps", "2", "--norms", "none,bn"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["ann"]) == set(result["snn"]) == {"none", "bn"}
    assert all(0 <= v["mean"] <= 100 and len(v["seeds"]) == 3 for v in result["ann"].values())
    assert result["config"]["depth"] == 1 and result["config"]["num_steps"] == 2
    assert set(result["gap"]) == {"ann", "snn"}


def test_table_output(capsys):
    assert main(["headline", "--depth", "1", "--width", "4", "--epochs", "1", "--steps", "1", "--norms", "none,homeostatic"]) == 0
    out = capsys.readouterr().out
    assert "homeostatic" in out and "SNN gap" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["headline", "--norms", "none,nope"], "unknown normaliser"),
        (["headline", "--depth", "0"], "positive integer"),
        (["headline", "--device", "cuda:0"], "CUDA"),
    ],
)
def test_bad_options_exit_with_a_message(argv, message, capsys):
    import torch

    if "cuda:0" in argv and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    assert message in capsys.readouterr().err


def test_module_entry_point_lists_norms():
    out = subprocess.run([sys.executable, "-m", "snn_norm_lite", "norms"], capture_output=True, text=True, check=True).stdout
    assert "homeostatic" in out and "bn" in out
