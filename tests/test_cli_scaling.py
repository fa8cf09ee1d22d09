"""The command line beyond digits and one process: CIFAR-10 files, mixed precision, torchrun."""

import json
import os
import subprocess
import sys

import pytest
import torch

from snn_norm_lite import data
from snn_norm_lite.__main__ import main
from snn_norm_lite.neurons import MultiStepLeaky
from snn_norm_lite.norms import available_norms, build_norm, get_spec
from test_data import write_fake_cifar

FAST = ["--depth", "2", "--width", "4", "--steps", "2", "--epochs", "1", "--seeds", "1"]
IMAGES_PER_FILE = 20  # 5 training files and a test file in CIFAR-10's format: 90 train, 10 validation, 20 test


@pytest.fixture
def cifar_dir(tmp_path):
    write_fake_cifar(tmp_path, images_per_batch=IMAGES_PER_FILE)
    return tmp_path


def test_compare_trains_on_cifar10_files_in_the_official_format(cifar_dir, capsys):
    code = main(["compare", "--json", *FAST, "--dataset", "cifar10", "--data-dir", str(cifar_dir),
                 "--norms", "bn,tdbn", "--ahsar", "bn"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["config"]["dataset"] == "cifar10" and result["num_test"] == IMAGES_PER_FILE
    assert list(result["results"]) == ["bn", "tdbn", "bn+ahsar"]


def test_headline_on_cifar10_names_the_data_in_its_table(cifar_dir, capsys):
    code = main(["headline", *FAST, "--dataset", "cifar10", "--data-dir", str(cifar_dir), "--norms", "none,bn"])
    assert code == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header.startswith("cifar10 (90 train, 10 validation, 20 test images), depth 2")


def test_limit_keeps_the_first_cifar10_images(cifar_dir, capsys):
    code = main(["compare", "--json", *FAST, "--dataset", "cifar10", "--data-dir", str(cifar_dir),
                 "--limit", "50", "--norms", "bn", "--ahsar", "bn"])
    assert code == 0 and json.loads(capsys.readouterr().out)["num_test"] == IMAGES_PER_FILE  # the test file holds 20


def test_cifar10_is_downloaded_only_when_asked(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_download(root):  # what download_cifar10 leaves behind: the official folder
        calls.append(root)
        write_fake_cifar(tmp_path / "data", images_per_batch=IMAGES_PER_FILE)
        return tmp_path / "data" / data.CIFAR10_FOLDER

    monkeypatch.setattr(data, "download_cifar10", fake_download)
    arguments = ["compare", "--json", *FAST, "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"),
                 "--norms", "bn", "--ahsar", "bn"]
    assert main(arguments) == 2
    assert calls == [] and "--download" in capsys.readouterr().err
    assert main(arguments + ["--download"]) == 0
    assert len(calls) == 1 and json.loads(capsys.readouterr().out)["num_test"] == IMAGES_PER_FILE


@pytest.mark.parametrize("option", [["--data-dir", "somewhere"], ["--download"], ["--limit", "100"]])
def test_cifar10_options_need_the_cifar10_data_set(option, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["compare", *FAST, *option])
    assert exit_.value.code == 2 and "is for --dataset cifar10" in capsys.readouterr().err


def test_limit_keeps_at_least_two_images(cifar_dir, capsys):
    with pytest.raises(SystemExit):
        main(["compare", *FAST, "--dataset", "cifar10", "--data-dir", str(cifar_dir), "--limit", "1"])
    assert "--limit: expected at least 2" in capsys.readouterr().err


def test_amp_trains_under_bfloat16_autocast(capsys):
    """--amp is meant for CUDA; on the CPU it runs the same code path (slowly), which is what is tested here."""
    code = main(["compare", "--json", *FAST, "--amp", "--norms", "bn,tebn,mpbn", "--ahsar", "bn"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["config"]["amp"] is True
    assert all(0 <= entry["mean"] <= 100 for entry in result["results"].values())


def _layers():
    """Every layer with statistics: not the identity ("none") and not the E-I circuit."""
    for name in available_norms():
        spec = get_spec(name)
        if not spec.circuit and name != "none":
            yield name, lambda name=name: build_norm(name, 4, 3)
        if spec.neuron is not None:
            yield f"{name} neuron", lambda spec=spec: spec.neuron(4, threshold=0.5, beta=0.9)
    yield "LIF neuron", lambda: MultiStepLeaky(beta=0.9, threshold=0.5)


@pytest.mark.parametrize("label, build", list(_layers()), ids=[label for label, _ in _layers()])
def test_under_autocast_a_normaliser_computes_in_float32(label, build):
    """A bfloat16 input inside autocast is normalised (or integrated, by a neuron) exactly as its
    float32 conversion outside it, and the running statistics stay float32."""
    torch.manual_seed(0)
    x = (torch.randn(3, 8, 4, 5, 5) * 2 + 1).bfloat16()
    in_autocast, reference = build(), build()
    reference.load_state_dict(in_autocast.state_dict())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = in_autocast(x)
    assert y.dtype == torch.float32
    assert torch.equal(y, reference(x.float()))
    for (name, a), (_, b) in zip(in_autocast.state_dict().items(), reference.state_dict().items()):
        assert a.dtype == b.dtype and torch.equal(a, b), name


def _torchrun(*arguments, processes=2):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "snn_norm_lite", *arguments]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment)


DDP_BUDGET = ["--depth", "2", "--width", "8", "--steps", "2", "--epochs", "3", "--seeds", "2", "--norms", "bn,tebn",
              "--ahsar", "bn"]


def test_torchrun_compare_gives_the_single_process_table(capsys):
    """Two gloo processes, each half of every batch of 64, against one process with the whole batch.

    Threshold, set before measuring: the sample order differs (DistributedSampler), so the runs
    agree only within run-to-run noise; every row's mean test accuracy over 2 seeds must be above
    50 % (chance is 10 %) on both sides and the two means at most 15 points apart.
    """
    distributed = _torchrun("compare", "--json", *DDP_BUDGET)
    assert distributed.returncode == 0, distributed.stderr[-3000:]
    result = json.loads(distributed.stdout)  # one JSON object: only process 0 printed
    assert main(["compare", "--json", *DDP_BUDGET]) == 0
    single = json.loads(capsys.readouterr().out)
    assert result["config"] == single["config"] and result["num_test"] == single["num_test"]
    assert list(result["results"]) == list(single["results"]) == ["bn", "tebn", "bn+ahsar"]
    for label in single["results"]:
        ours, theirs = result["results"][label]["mean"], single["results"][label]["mean"]
        assert ours > 50 and theirs > 50, (label, ours, theirs)
        assert abs(ours - theirs) <= 15, (label, ours, theirs)


def test_torchrun_headline_prints_once():
    run = _torchrun("headline", "--depth", "2", "--width", "4", "--steps", "2", "--epochs", "1", "--seeds", "1",
                    "--norms", "none,bn")
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert sum(line.startswith("digits (") for line in lines) == 1
    assert "data-parallel over 2 processes (each a batch of 32)" in lines
    assert sum(line.startswith("bn ") for line in lines) == 1


def test_torchrun_refuses_a_batch_the_processes_cannot_share():
    run = _torchrun("headline", *FAST, "--batch-size", "63", "--norms", "bn")
    assert run.returncode != 0 and "must be divisible by the 2 processes" in run.stderr
