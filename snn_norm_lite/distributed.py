"""Data-parallel training over several processes: one per GPU, or several CPU processes.

``torchrun`` starts ``N`` copies of a program and tells each its rank; PyTorch's
``DistributedDataParallel`` (DDP) then keeps one replica of the network per process, gives
each process its own part of every batch, and averages the parameter gradients after each
backward pass. Two things in a spiking network need more than that, and this module does them:

* **Batch statistics.** tdBN, BNTT, TEBN, TAB, MPBN's membrane BatchNorm, plain BatchNorm and the
  homeostatic layers all normalise with statistics of the batch. Under DDP each process would
  take them over its own slice, a different (noisier) method than on one device.
  :func:`convert_sync_norms` makes every normaliser of the package take them over the whole
  global batch (:mod:`snn_norm_lite.norms.synchronised`), as ``nn.SyncBatchNorm`` does for
  PyTorch's BatchNorm (which knows none of the temporal layers, and does not run on the CPU).
* **Initialisation from data.** An E-I circuit initialises itself from the first batch it sees;
  :func:`initialise_from_first_batch` runs that before DDP copies process 0's parameters to
  every process, so all replicas start from the same network.

:func:`~snn_norm_lite.training.fit` does both by itself when ``torch.distributed`` is
initialised with more than one process, and :meth:`~snn_norm_lite.data.Split.loaders` then gives
each process its part of the training set (``DistributedSampler``, a global batch of
``batch_size`` split evenly). The command line starts the process group from ``torchrun``'s
environment (:func:`init_from_environment`)::

    torchrun --nproc_per_node 4 -m snn_norm_lite compare --device cuda --dataset cifar10

Without ``torchrun`` (one process) nothing here changes anything.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import SyncBatchNorm, _BatchNorm

from .norms.synchronised import BatchStatisticsNorm, active_group


def is_data_parallel() -> bool:
    """True when ``torch.distributed`` is initialised with more than one process.

    >>> is_data_parallel()
    False
    """
    return active_group() is not None


def rank() -> int:
    """This process's rank in the default group (0 when not data-parallel).

    >>> rank()
    0
    """
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of processes in the default group (1 when not data-parallel).

    >>> world_size()
    1
    """
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def convert_sync_norms(module: nn.Module, process_group=None) -> nn.Module:
    """Make every normaliser of the package in ``module`` take its training statistics over all processes.

    Like ``nn.SyncBatchNorm.convert_sync_batchnorm``, for the package's layers
    (:class:`~snn_norm_lite.norms.synchronised.BatchStatisticsNorm`: ``BatchNorm2d``,
    ``SequenceBatchNorm2d``, tdBN, BNTT, TEBN, TAB, MPBN's neuron, ``HomeostaticNorm`` and
    ``TemporalHomeostaticNorm2d``). ``process_group`` (default: every process) is the group the
    statistics span. The layers are switched in place and ``module`` is returned; parameters,
    buffers and the ``state_dict`` are untouched. While ``torch.distributed`` is not initialised
    (or has one process) a switched layer computes exactly what it did before.

    A PyTorch ``BatchNorm`` that is not part of a package layer is refused (``TypeError``): it
    would silently keep per-process statistics. Replace it with the package's ``BatchNorm2d`` or
    use ``nn.SyncBatchNorm.convert_sync_batchnorm`` (not on the CPU) first.

    >>> from snn_norm_lite.models import build_snn
    >>> model = convert_sync_norms(build_snn("tdbn", depth=2, width=4, num_steps=2))
    >>> [block.norm.sync_statistics for block in model.blocks]
    [True, True]
    >>> convert_sync_norms(nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)))
    Traceback (most recent call last):
        ...
    TypeError: convert_sync_norms: '1' is a torch.nn BatchNorm2d, which would keep per-process statistics; ...
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"convert_sync_norms: expected an nn.Module, got {type(module).__name__}")
    owned = set()  # PyTorch BatchNorms inside a package layer (MPBN's membrane BatchNorm): the layer syncs them
    for name, layer in module.named_modules():
        if isinstance(layer, BatchStatisticsNorm):
            layer.sync_statistics = True
            layer.process_group = process_group
            owned.update(id(child) for child in layer.modules() if child is not layer)
        elif isinstance(layer, _BatchNorm) and not isinstance(layer, SyncBatchNorm) and id(layer) not in owned:
            raise TypeError(
                f"convert_sync_norms: {name or 'the module'!r} is a torch.nn {type(layer).__name__}, which would keep "
                "per-process statistics; use snn_norm_lite.norms.BatchNorm2d instead, or convert it with "
                "nn.SyncBatchNorm.convert_sync_batchnorm (not on the CPU)"
            )
    return module


def initialise_from_first_batch(model: nn.Module, x: torch.Tensor) -> int:
    """Run the data-dependent initialisation that ``model`` would run on its first batch, now.

    E-I circuits built with ``auto_init`` initialise from the first input they see. In a
    data-parallel run that must happen before DDP is built: DDP copies process 0's parameters to
    every process once, at construction, and never again. Returns how many layers were
    initialised (0 for a model with nothing to initialise).

    >>> from snn_norm_lite.models import build_snn
    >>> initialise_from_first_batch(build_snn("ei", depth=2, width=8, num_steps=2), torch.rand(4, 1, 8, 8))
    3
    >>> initialise_from_first_batch(build_snn("bn", depth=2, width=4, num_steps=2), torch.rand(4, 1, 8, 8))
    0
    """
    from .inhibition import circuits, ei_init

    pending = [layer for layer in circuits(model) if layer.auto_init and not layer.initialised]
    if not pending:
        return 0
    ei_init(model, x)
    return len(pending)


def wrap_data_parallel(model: nn.Module, device, first_batch: torch.Tensor) -> nn.Module:
    """``model`` prepared for a data-parallel run and wrapped in ``DistributedDataParallel``.

    Its normalisers are synchronised (:func:`convert_sync_norms`), a data-dependent
    initialisation runs on this process's ``first_batch`` (:func:`initialise_from_first_batch`),
    then DDP copies process 0's parameters and buffers to every process. On CUDA the replica
    lives on ``device`` (``cuda:LOCAL_RANK``). Train through the returned wrapper; evaluate,
    probe and save ``model`` itself (the wrapper's ``.module``).
    """
    if not is_data_parallel():
        raise RuntimeError("wrap_data_parallel: torch.distributed is not initialised with more than one process")
    convert_sync_norms(model)
    initialise_from_first_batch(model, first_batch.to(device))
    device = torch.device(device)
    device_ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def init_from_environment(device: str) -> str:
    """Start the default process group when launched by ``torchrun``; return this process's device.

    ``torchrun`` sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``.
    With ``WORLD_SIZE`` above 1 this joins the group: NCCL for ``cuda`` (each process on
    ``cuda:LOCAL_RANK``, so ``device`` must be plain ``"cuda"``), gloo otherwise. Without
    ``torchrun`` it returns ``device`` and starts nothing.

    >>> init_from_environment("cpu")
    'cpu'
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return device
    if not dist.is_available():
        raise RuntimeError("this PyTorch build has no torch.distributed; run one process without torchrun")
    target = torch.device(device)
    if target.type == "cuda":
        if target.index is not None:
            raise ValueError(
                f"under torchrun every process uses the GPU of its LOCAL_RANK; pass --device cuda, not {device}"
            )
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK {local_rank} has no GPU: this machine has {torch.cuda.device_count()}; start at most "
                "that many processes per node (--nproc_per_node)"
            )
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl")
        return f"cuda:{local_rank}"
    if target.type != "cpu":
        raise ValueError(f"data-parallel runs support cpu (gloo) and cuda (NCCL), got --device {device}")
    dist.init_process_group("gloo")
    return device


def average_over_processes(values: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` over every process (``values`` itself when not data-parallel).

    >>> average_over_processes(torch.tensor([0.25, 0.5]))
    tensor([0.2500, 0.5000])
    """
    group = active_group()
    if group is None:
        return values
    total = values.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
    return total / dist.get_world_size(group)


def sum_over_processes(values: list[float], device) -> list[float]:
    """Element-wise sum of ``values`` over every process, in float64 (``values`` when not data-parallel).

    >>> sum_over_processes([1.0, 2.0], "cpu")
    [1.0, 2.0]
    """
    group = active_group()
    if group is None:
        return list(values)
    total = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
    return total.tolist()
