"""Batch statistics over every process of a data-parallel run.

Under ``torch.nn.parallel.DistributedDataParallel`` each process (one per GPU) sees its own
slice of the global batch. A normaliser that takes batch statistics would take them over that
slice only, and so normalise differently from the same network trained on one device with the
whole batch. A synchronised layer takes them over the whole batch instead: for a per-channel
statistic over the dimensions ``D`` (and, for BNTT, TEBN and TAB, per step)::

    N    = sum_r n_r                                  (n_r: values on process r)
    mu   = (1/N) sum_r sum_{i in D} x_{r,i}
    var  = (1/N) sum_r sum_{i in D} (x_{r,i} - mu)^2   (two passes: stable at any offset)

Each sum over processes is one all-reduce. Gradients flow through the statistics as they do on
one device: the backward pass of an all-reduce of sums is the all-reduce of the incoming
gradients, so the gradient reaching ``x_r`` is that of the *sum* of every process's loss,
exactly what ``nn.SyncBatchNorm`` computes. (DDP then averages the parameter gradients of the
processes, which turns that sum into the gradient of the mean loss over the global batch.)

A layer opts in by inheriting :class:`BatchStatisticsNorm`; ``snn_norm_lite.distributed.
convert_sync_norms`` switches it on. A switched-on layer reduces only while
``torch.distributed`` is initialised with more than one process, and only in training (the
running statistics that evaluation uses are then the same on every process); otherwise it
computes exactly what it always did, on its own batch.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

from ..checks import check_first_order


def active_group(process_group=None):
    """The process group to reduce over now, or ``None`` when there is nothing to reduce over.

    ``None`` when ``torch.distributed`` is unavailable or not initialised, or when the group
    (``process_group``, or the default group when it is ``None``) has a single process.

    >>> active_group() is None                   # a plain single-process run
    True
    """
    if not (dist.is_available() and dist.is_initialized()):
        return None
    group = dist.group.WORLD if process_group is None else process_group
    return group if dist.get_world_size(group) > 1 else None


class BatchStatisticsNorm:
    """Mixin for a normaliser whose training pass takes batch statistics that may span processes.

    ``sync_statistics`` (False unless :func:`snn_norm_lite.distributed.convert_sync_norms` sets
    it) and ``process_group`` (``None``: the default group) are plain attributes, not part of
    the ``state_dict``. :meth:`statistics_group` is what the forward pass asks.

    >>> from snn_norm_lite.norms import SequenceBatchNorm2d
    >>> layer = SequenceBatchNorm2d(3)
    >>> isinstance(layer, BatchStatisticsNorm), layer.sync_statistics, layer.statistics_group()
    (True, False, None)
    """

    sync_statistics: bool = False
    process_group = None

    def statistics_group(self):
        """The group the current training pass reduces its statistics over, or ``None`` (this batch only)."""
        if not self.sync_statistics:
            return None
        return active_group(self.process_group)


class _AllReduceSum(torch.autograd.Function):
    """``sum_r x_r`` on every process; the backward pass sums the gradients the same way.

    First-order only: the collective in the backward pass is not recorded by autograd, so
    ``create_graph=True`` raises instead of silently dropping the other processes' terms.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        total = x.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        check_first_order("all_reduce_sum (the synchronised statistics)")  # the collective is not recorded
        total = grad.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=ctx.group)
        return total, None


def all_reduce_sum(x: torch.Tensor, group) -> torch.Tensor:
    """Differentiable sum of ``x`` over the processes of ``group`` (``x`` itself when ``group`` is None).

    >>> all_reduce_sum(torch.tensor([1.0, 2.0]), None)
    tensor([1., 2.])
    """
    if group is None:
        return x
    return _AllReduceSum.apply(x, group)


def total_count(count: int, group, like: torch.Tensor):
    """How many values a statistic averages over all processes: ``count`` itself on one process,
    else the all-reduced sum (a tensor of ``like``'s dtype and device, so no host synchronisation).

    >>> total_count(200, None, torch.zeros(1))
    200
    """
    if group is None:
        return count
    total = torch.tensor(float(count), dtype=like.dtype, device=like.device)
    dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
    return total


def batch_var_mean(x: torch.Tensor, dims: tuple[int, ...], group=None, count=None):
    """Biased variance and mean of ``x`` over ``dims`` (and over every process of ``group``), and their count.

    Returns ``(var, mean, count)``. With ``group=None`` this is ``torch.var_mean(x, dims,
    correction=0)`` and ``count`` the number of values per statistic (an int). With a group it is
    the two-pass computation of the module docstring over all processes, differentiable, and
    ``count`` is the total, a tensor; a caller that already has that total (:func:`total_count`)
    passes it as ``count`` and saves an all-reduce.

    >>> x = torch.tensor([[1.0, 3.0], [5.0, 7.0]])
    >>> batch_var_mean(x, (0,))
    (tensor([4., 4.]), tensor([3., 5.]), 2)
    """
    dims = tuple(dims)
    local_count = math.prod(x.shape[d] for d in dims)
    if group is None:
        var, mean = torch.var_mean(x, dim=dims, correction=0)
        return var, mean, local_count
    count = total_count(local_count, group, x) if count is None else count
    mean = all_reduce_sum(x.sum(dim=dims), group) / count
    centred = x - mean.view(_kept_shape(x, dims))
    var = all_reduce_sum(centred.square().sum(dim=dims), group) / count
    return var, mean, count


def _kept_shape(x: torch.Tensor, dims: tuple[int, ...]) -> list[int]:
    """The shape of a statistic over ``dims`` with those dimensions kept as 1 (for broadcasting)."""
    return [1 if d in dims or d - x.dim() in dims else size for d, size in enumerate(x.shape)]


def batch_norm_across_processes(x, running_mean, running_var, weight, bias, momentum: float, eps: float, group):
    """``F.batch_norm`` in training, with the statistics taken over every process of ``group``.

    ``x`` is ``[N, C, *]``; per channel, ``y = weight * (x - mu) / sqrt(var + eps) + bias`` with
    ``mu, var`` from :func:`batch_var_mean` over ``N`` and ``*``. ``running_mean`` and
    ``running_var`` (or ``None``) are updated in place with PyTorch's rule, the unbiased
    variance over the global count: ``running = (1 - momentum) * running + momentum * batch``.
    Differentiable in ``x``, ``weight`` and ``bias``.

    >>> import torch.nn.functional as F
    >>> x = torch.randn(8, 3, 4, 4, dtype=torch.float64)
    >>> mean, var = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    >>> y = batch_norm_across_processes(x, mean, var, None, None, 0.1, 1e-5, None)
    >>> torch.allclose(y, F.batch_norm(x, None, None, training=True, eps=1e-5))
    True
    """
    dims = (0,) + tuple(range(2, x.dim()))
    var, mean, count = batch_var_mean(x, dims, group)
    shape = _kept_shape(x, dims)
    y = (x - mean.view(shape)) * torch.rsqrt(var + eps).view(shape)
    if weight is not None:
        y = y * weight.view(shape)
    if bias is not None:
        y = y + bias.view(shape)
    if running_mean is not None:
        with torch.no_grad():
            running_mean.mul_(1.0 - momentum).add_(mean.detach().to(running_mean.dtype), alpha=momentum)
            unbiased_var = var.detach() * (count / (count - 1))
            running_var.mul_(1.0 - momentum).add_(unbiased_var.to(running_var.dtype), alpha=momentum)
    return y
