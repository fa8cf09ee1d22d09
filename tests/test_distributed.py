"""Synchronised normalisers and data-parallel training, checked with 2 gloo processes on the CPU.

The standard: two processes, each given half of a batch, compute exactly (float64, 1e-9) what
one process computes on the whole batch: outputs, gradients (of the sum of the processes'
losses, which is the single process's loss), running statistics. Each check runs in the worker
processes; they write what disagreed to a JSON file that the test reads.
"""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from snn_norm_lite.distributed import (
    convert_sync_norms,
    initialise_from_first_batch,
    is_data_parallel,
    wrap_data_parallel,
)
from snn_norm_lite.data import load_digits
from snn_norm_lite.models import build_snn
from snn_norm_lite.norms import (
    HomeostaticNorm,
    MPBNLeaky,
    SequenceBatchNorm2d,
    TemporalAccumulatedBatchNorm2d,
    TemporalHomeostaticNorm2d,
    available_norms,
    build_norm,
    get_spec,
)
from snn_norm_lite.norms.synchronised import BatchStatisticsNorm
from snn_norm_lite.training import fit, seed_everything

WORLD = 2
TOLERANCE = 1e-9
STEPS, BATCH, CHANNELS, SIDE = 3, 8, 4, 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _layers():
    """(label, builder, conventional) for every registered method's layers, in their spiking and conventional forms."""
    cases = []
    for name in available_norms():
        spec = get_spec(name)
        if spec.circuit:
            continue
        cases.append((f"{name} (T={STEPS})", lambda name=name: build_norm(name, CHANNELS, STEPS), False))
        if not spec.spiking_only:
            cases.append((f"{name} (conventional)", lambda name=name: build_norm(name, CHANNELS), True))
        if spec.neuron is not None:
            cases.append((f"{name} neuron", lambda spec=spec: spec.neuron(CHANNELS, threshold=0.5, beta=0.9), False))
    cases.append(("homeostatic batch_free (T)", lambda: TemporalHomeostaticNorm2d(CHANNELS, STEPS, batch_free=True), False))
    cases.append(("homeostatic batch_free (conventional)", lambda: HomeostaticNorm(CHANNELS, batch_free=True), True))
    cases.append(("mpbn official neuron", lambda: MPBNLeaky.official(CHANNELS), False))
    return cases


def _halves(tensor: torch.Tensor, dim: int, rank: int) -> torch.Tensor:
    size = tensor.shape[dim] // WORLD
    return tensor.narrow(dim, rank * size, size)


def _compare(failures: list, label: str, what: str, got: torch.Tensor, expected: torch.Tensor) -> None:
    if got.shape != expected.shape or not torch.allclose(got, expected, rtol=0, atol=TOLERANCE, equal_nan=True):
        error = (got - expected).abs().max().item() if got.shape == expected.shape else float("nan")
        failures.append(f"{label}: {what} differs (max abs error {error:.3g})")


def _summed(tensor: torch.Tensor) -> torch.Tensor:
    total = tensor.clone()
    dist.all_reduce(total)
    return total


def _check_layer(label: str, build, conventional: bool, rank: int, failures: list, one_step: bool = False) -> None:
    torch.manual_seed(0)
    single = build().double().train()
    synced = convert_sync_norms(build().double().train())
    synced.load_state_dict(single.state_dict())
    batch_dim = 0 if conventional else 1
    shape = (BATCH, CHANNELS, SIDE, SIDE) if conventional else (STEPS, BATCH, CHANNELS, SIDE, SIDE)
    for call in range(2):  # two training batches: the running statistics are compared after both
        x = (torch.randn(shape, dtype=torch.float64) * 3 + 1.5).requires_grad_()
        weights = torch.randn(shape, dtype=torch.float64)
        part = _halves(x.detach(), batch_dim, rank).clone().requires_grad_()
        if one_step:  # TAB and the temporal homeostatic layer fed one step at a time
            y = torch.stack([single(x[t], t) for t in range(STEPS)])
            y_part = torch.stack([synced(part[t], t) for t in range(STEPS)])
        else:
            y, y_part = single(x), synced(part)
        (y * weights).sum().backward()
        (y_part * _halves(weights, batch_dim, rank)).sum().backward()
        _compare(failures, label, f"output of batch {call}", y_part.detach(), _halves(y.detach(), batch_dim, rank))
        _compare(failures, label, f"input gradient of batch {call}", part.grad, _halves(x.grad, batch_dim, rank))
    for (name, p), (_, q) in zip(single.named_parameters(), synced.named_parameters()):
        _compare(failures, label, f"gradient of {name} (summed over processes)", _summed(q.grad), p.grad)
    for (name, b), (_, c) in zip(single.named_buffers(), synced.named_buffers()):
        _compare(failures, label, f"buffer {name}", c.double(), b.double())


def _check_network(norm: str, rank: int, failures: list) -> None:
    """One data-parallel step of the reference SNN (DDP) equals one step on the whole batch."""
    torch.manual_seed(0)
    x = torch.rand(BATCH, 1, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 10, (BATCH,))
    torch.manual_seed(1)
    single = build_snn(norm, depth=2, width=8, num_steps=STEPS, threshold=0.5).double()
    torch.manual_seed(1)
    replica = build_snn(norm, depth=2, width=8, num_steps=STEPS, threshold=0.5).double()
    torch.manual_seed(2)  # E-I Init draws its weights: the same draws on both sides
    initialise_from_first_batch(single, x[: BATCH // WORLD])  # on process 0's half, which DDP copies everywhere
    torch.manual_seed(2)
    trained = wrap_data_parallel(replica, "cpu", _halves(x, 0, rank))
    loss = nn.functional.cross_entropy(single(x), y)
    loss.backward()
    local_loss = nn.functional.cross_entropy(trained(_halves(x, 0, rank)), _halves(y, 0, rank))
    local_loss.backward()  # DDP averages the gradients of the processes' mean losses
    for (name, p), (_, q) in zip(single.named_parameters(), replica.named_parameters()):
        if p.grad is None and q.grad is None:
            continue
        _compare(failures, f"network {norm}", f"gradient of {name}", q.grad, p.grad)


def _check_loaders_and_fit(rank: int, failures: list) -> None:
    """Split.loaders shards the training set; fit trains through DDP and every process ends equal."""
    split = load_digits().subset(96, 32, 32)
    train, _, _ = split.loaders(batch_size=32, seed=0)
    if train.batch_size != 16:
        failures.append(f"loaders: a process's batch is {train.batch_size}, not 32 / 2")
    shards = [None] * WORLD
    dist.all_gather_object(shards, sorted(train.sampler))
    if sorted(shards[0] + shards[1]) != list(range(96)):
        failures.append("loaders: the processes' parts of the training set are not disjoint and complete")
    seed_everything(0)
    model = build_snn("tebn", depth=2, width=4, num_steps=2)
    history = fit(model, *split.loaders(batch_size=32, seed=0)[:2], epochs=2, progress=False)
    records = [None] * WORLD
    state = {key: value.tolist() for key, value in model.state_dict().items()}
    dist.all_gather_object(records, (history.train_loss, history.train_accuracy, history.val_accuracy, state))
    if records[0] != records[1]:
        failures.append("fit: the processes ended with different histories or networks")
    if not all(block.norm.sync_statistics for block in model.blocks):
        failures.append("fit: the normalisers were not synchronised")


def _worker(rank: int, port: int, report: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    failures: list[str] = []
    try:
        assert is_data_parallel()
        for label, build, conventional in _layers():
            _check_layer(label, build, conventional, rank, failures)
        tab = lambda: TemporalAccumulatedBatchNorm2d(CHANNELS, STEPS)  # noqa: E731
        homeostatic = lambda: TemporalHomeostaticNorm2d(CHANNELS, STEPS)  # noqa: E731
        _check_layer("tab one step at a time", tab, False, rank, failures, one_step=True)
        _check_layer("homeostatic one step at a time", homeostatic, False, rank, failures, one_step=True)
        for norm in available_norms():
            _check_network(norm, rank, failures)
        _check_loaders_and_fit(rank, failures)
    finally:
        if rank == 0:
            with open(report, "w") as handle:
                json.dump({"failures": failures, "checked": [case[0] for case in _layers()]}, handle)
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_report(tmp_path_factory):
    report = tmp_path_factory.mktemp("distributed") / "report.json"
    mp.spawn(_worker, args=(_free_port(), str(report)), nprocs=WORLD, join=True)
    return json.loads(report.read_text())


def test_two_processes_with_half_batches_match_one_process_with_the_whole_batch(two_process_report):
    """Every registered method: outputs, input and parameter gradients, running statistics (1e-9);
    then the sharded loader and fit's data-parallel training."""
    assert two_process_report["failures"] == []


def test_every_registered_layer_was_checked(two_process_report):
    checked = " ".join(two_process_report["checked"])
    for name in available_norms():
        if not get_spec(name).circuit:
            assert f"{name} (T=" in checked


def test_conversion_switches_every_package_normaliser_and_nothing_else():
    model = convert_sync_norms(build_snn("mpbn", depth=2, width=4, num_steps=2))
    switched = [m for m in model.modules() if isinstance(m, BatchStatisticsNorm)]
    assert len(switched) == 4  # two SequenceBatchNorm2d after the convolutions, two MPBN neurons
    assert all(m.sync_statistics for m in switched)


def test_conversion_changes_nothing_without_a_process_group():
    """Not initialised: a converted network computes bit for bit what the original does, state included."""
    assert not dist.is_initialized()
    for norm in ("bn", "tdbn", "bntt", "tebn", "tab", "mpbn", "homeostatic"):
        torch.manual_seed(0)
        original = build_snn(norm, depth=2, width=4, num_steps=3)
        converted = convert_sync_norms(build_snn(norm, depth=2, width=4, num_steps=3))
        converted.load_state_dict(original.state_dict())
        x = torch.rand(6, 1, 8, 8)
        assert torch.equal(original(x), converted(x)), norm
        for (name, a), (_, b) in zip(original.state_dict().items(), converted.state_dict().items()):
            assert torch.equal(a, b), (norm, name)
        assert original.state_dict().keys() == converted.state_dict().keys()


def test_conversion_refuses_a_pytorch_batchnorm_it_cannot_synchronise():
    with pytest.raises(TypeError, match=r"'0' is a torch.nn BatchNorm1d, which would keep per-process statistics"):
        convert_sync_norms(nn.Sequential(nn.BatchNorm1d(3)))
    with pytest.raises(TypeError, match="expected an nn.Module"):
        convert_sync_norms("model")


def test_conversion_keeps_the_process_group_it_is_given():
    layer = convert_sync_norms(SequenceBatchNorm2d(3), process_group="group-object")
    assert layer.process_group == "group-object" and layer.sync_statistics


def test_wrapping_needs_a_process_group():
    with pytest.raises(RuntimeError, match="not initialised with more than one process"):
        wrap_data_parallel(build_snn("bn", depth=1, width=4, num_steps=2), "cpu", torch.rand(2, 1, 8, 8))
