"""The step benchmark runs and says what it measured (its timings are for people, not for asserts)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_snn_step.py"


def _run(*arguments):
    return subprocess.run([sys.executable, str(BENCHMARK), *arguments], capture_output=True, text=True, timeout=300)


def test_the_step_benchmark_prints_every_network_and_the_ratio_to_the_floor():
    run = _run("--repeats", "1", "--norms", "none", "--threads", "1")
    assert run.returncode == 0, run.stderr
    assert "input 1x8x8" in run.stdout and "1 CPU threads" in run.stdout
    for network in ("floor (ReLU)", "reference SNN", "per-step loop"):
        assert f"none  {network}" in run.stdout
    assert "norm=none: reference SNN" in run.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the refusal cannot be seen")
def test_the_step_benchmark_refuses_cuda_where_there_is_none():
    run = _run("--device", "cuda")
    assert run.returncode == 2 and "torch.cuda.is_available() is False" in run.stderr
