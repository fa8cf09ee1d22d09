"""The package on a GPU: every layer, every network, mixed precision, the command line, the benchmark.

These tests need CUDA and are skipped, saying so, on a machine without it (``-rs`` prints the
reason in the summary). The data-parallel test needs two GPUs.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from snn_norm_lite.__main__ import main
from snn_norm_lite.models import build_snn
from snn_norm_lite.norms import available_norms, build_norm, get_spec
from test_data import write_fake_cifar

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False on this machine)"
    ),
]
ROOT = Path(__file__).resolve().parents[1]


def _layers():
    for name in available_norms():
        spec = get_spec(name)
        if not spec.circuit:
            yield name, lambda name=name: build_norm(name, 4, 3)
        if spec.neuron is not None:
            yield f"{name} neuron", lambda spec=spec: spec.neuron(4, threshold=0.5, beta=0.9)


@pytest.mark.parametrize("label, build", list(_layers()), ids=[label for label, _ in _layers()])
def test_every_layer_computes_on_the_gpu_what_it_computes_on_the_cpu(label, build):
    torch.manual_seed(0)
    on_cpu = build().double()
    on_gpu = build().double().cuda()
    on_gpu.load_state_dict(on_cpu.state_dict())
    x = (torch.randn(3, 8, 4, 5, 5, dtype=torch.float64) * 2 + 1).requires_grad_()
    x_gpu = x.detach().cuda().requires_grad_()
    weights = torch.randn_like(x)
    y, y_gpu = on_cpu(x), on_gpu(x_gpu)
    torch.testing.assert_close(y_gpu.detach().cpu(), y.detach(), rtol=1e-9, atol=1e-9)
    (y * weights).sum().backward()
    (y_gpu * weights.cuda()).sum().backward()
    torch.testing.assert_close(x_gpu.grad.cpu(), x.grad, rtol=1e-9, atol=1e-9)
    for (name, a), (_, b) in zip(on_cpu.state_dict().items(), on_gpu.state_dict().items()):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-9, atol=1e-9, msg=name)


@pytest.mark.parametrize("amp", [False, True], ids=["float32", "bfloat16 autocast"])
@pytest.mark.parametrize("norm", available_norms())
def test_every_network_trains_a_step_on_cifar10_sized_input(norm, amp):
    torch.manual_seed(0)
    model = build_snn(norm, depth=2, width=8, num_steps=2, in_channels=3, image_size=32).cuda()
    x, y = torch.rand(8, 3, 32, 32, device="cuda"), torch.randint(0, 10, (8,), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        logits = model(x)
    loss = nn.functional.cross_entropy(logits.float(), y)
    loss.backward()
    assert torch.isfinite(loss)
    for buffer in model.buffers():
        assert buffer.dtype in (torch.float32, torch.long, torch.bool)  # statistics stay float32 under autocast


def test_compare_on_cifar10_with_amp_on_the_gpu(tmp_path, capsys):
    write_fake_cifar(tmp_path, images_per_batch=20)
    code = main(["compare", "--json", "--device", "cuda", "--amp", "--dataset", "cifar10", "--data-dir", str(tmp_path),
                 "--depth", "2", "--width", "4", "--steps", "2", "--epochs", "1", "--seeds", "1",
                 "--norms", "bn,tdbn,mpbn", "--ahsar", "bn"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["config"]["device"] == "cuda" and result["config"]["amp"] is True


def test_the_step_benchmark_runs_on_the_gpu():
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_snn_step.py"), "--device", "cuda",
                          "--data", "cifar10", "--repeats", "2"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "reference SNN" in run.stdout and "per-step loop" in run.stdout


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices for a 2-process NCCL run")
def test_torchrun_on_two_gpus(tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "snn_norm_lite", "compare", "--json", "--device", "cuda", "--depth", "2", "--width", "4",
               "--steps", "2", "--epochs", "1", "--seeds", "1", "--norms", "bn,tebn", "--ahsar", "bn"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ})
    assert run.returncode == 0, run.stderr[-3000:]
    assert list(json.loads(run.stdout)["results"]) == ["bn", "tebn", "bn+ahsar"]
