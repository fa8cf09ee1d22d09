"""Baselines: plain BatchNorm, and BatchNorm applied to a whole spike sequence.

``y = weight * (x - mu_B) / sqrt(var_B + eps) + bias`` per channel, with ``mu_B, var_B`` the
mean and biased variance of the batch in training and the running statistics in evaluation
(Ioffe and Szegedy, 2015). For a conventional network this is ``nn.BatchNorm2d`` itself.

For a spiking network the input is a sequence ``[T, B, C, H, W]``. The plainest choice, and the
one most SNN code uses when it says "BatchNorm", is to treat the T steps as extra samples: merge
time into the batch, normalise ``[T*B, C, H, W]``, split again. The statistics are then shared by
all steps (taken over T, B, H and W), which is also what tdBN does before its threshold scaling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import NormSpec, register
from ..checks import check_bool, check_channels, check_floating, check_positive_int, check_rank, keep_finite
from ..sequences import merge_time, split_time
from ..precision import full_precision_forward
from .step_statistics import check_enough_values, check_eps_and_momentum, check_same_dtype
from .synchronised import BatchStatisticsNorm, batch_norm_across_processes


class BatchNorm2d(BatchStatisticsNorm, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` with the package's checks: the conventional network's BatchNorm.

    The same computation, parameters, buffers and ``state_dict`` keys as ``nn.BatchNorm2d``
    (a checkpoint of one loads into the other). In addition:

    * the constructor refuses a ``num_features`` that is not a positive int, ``eps`` <= 0,
      ``momentum`` outside (0, 1] (``None``, the cumulative average, included) and non-bool flags;
    * the input must be a floating ``[B, C, H, W]`` of the layer's dtype with C channels, and a
      training batch must hold more than one value per channel (an empty batch, B = 0 or
      H = W = 0, is refused before anything changes);
    * a training batch with NaN/Inf leaves the running statistics as they were, element-wise
      (:func:`~snn_norm_lite.checks.keep_finite`), while the output shows the NaN;
    * after :func:`~snn_norm_lite.distributed.convert_sync_norms`, the training statistics span
      every process of a data-parallel run (:mod:`~snn_norm_lite.norms.synchronised`);
    * under autocast the statistics and the output stay in the layer's dtype
      (:mod:`~snn_norm_lite.precision`).

    >>> bn = BatchNorm2d(3)
    >>> bn(torch.randn(8, 3, 5, 5)).shape
    torch.Size([8, 3, 5, 5])
    >>> bn(torch.randn(1, 3, 1, 1))
    Traceback (most recent call last):
        ...
    ValueError: BatchNorm2d: expected more than 1 value per channel when training (got 1, input shape (1, 3, 1, 1)); ...
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device=None,
        dtype=None,
    ):
        name = type(self).__name__
        check_positive_int(num_features, "num_features", name)
        eps, momentum = check_eps_and_momentum(eps, momentum, name)
        check_bool(affine, "affine", name)
        check_bool(track_running_stats, "track_running_stats", name)
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)

    def _check_dtype(self, x: torch.Tensor) -> None:
        reference = self.weight if self.weight is not None else self.running_mean
        if reference is not None:
            check_same_dtype(x, reference, type(self).__name__)

    def _batch_norm(self, merged: torch.Tensor, weight, bias) -> torch.Tensor:
        """``F.batch_norm`` on the time-merged batch with ``nn.BatchNorm2d``'s conventions.

        In training the running statistics are updated on copies, which are written back with
        :func:`~snn_norm_lite.checks.keep_finite`: where a NaN/Inf batch would make an entry
        non-finite, it keeps its old value (element-wise, no synchronisation). The buffers
        themselves are never handed to the kernel, so writing them back cannot invalidate
        anything autograd saved.
        """
        update = self.training and self.track_running_stats
        running_mean, running_var = self.running_mean, self.running_var
        if update:
            self.num_batches_tracked.add_(1)
            running_mean, running_var = running_mean.clone(), running_var.clone()
        use_batch_statistics = self.training or running_mean is None  # nn.BatchNorm2d's rule
        group = self.statistics_group() if self.training else None  # as nn.SyncBatchNorm: training only
        if group is None:
            y = F.batch_norm(merged, running_mean, running_var, weight, bias, use_batch_statistics, self.momentum, self.eps)
        else:  # statistics over every process of a data-parallel run
            running = (running_mean, running_var) if update else (None, None)
            y = batch_norm_across_processes(merged, *running, weight, bias, self.momentum, self.eps, group)
        if update:
            with torch.no_grad():
                self.running_mean.copy_(keep_finite(running_mean, self.running_mean))
                self.running_var.copy_(keep_finite(running_var, self.running_var))
        return y

    @full_precision_forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        name = type(self).__name__
        check_floating(x, name)
        check_rank(x, (4,), name, "[B, C, H, W]")
        check_channels(x, 1, self.num_features, name)
        self._check_dtype(x)
        if self.training:
            check_enough_values(x[:, 0].numel(), name, per="channel", shape=x.shape)
        return self._batch_norm(x, self.weight, self.bias)


class SequenceBatchNorm2d(BatchNorm2d):
    """``nn.BatchNorm2d`` over a sequence ``[T, B, C, H, W]`` with time merged into the batch.

    Statistics over (T, B, H, W) per channel in training; running statistics in evaluation
    (PyTorch's convention: biased variance in the forward pass, unbiased one in
    ``running_var``). Needs the whole sequence in training: a single step would give
    statistics of that step only, which is a different method (see BNTT).

    >>> _ = torch.manual_seed(0)
    >>> bn = SequenceBatchNorm2d(3)
    >>> x = torch.randn(4, 8, 3, 5, 5) * 3 + 1                  # [T, B, C, H, W]
    >>> y = bn(x).detach()
    >>> y.shape
    torch.Size([4, 8, 3, 5, 5])
    >>> y.mean(dim=(0, 1, 3, 4)).abs().max() < 1e-5             # statistics over (T, B, H, W)
    tensor(True)
    """

    def _check_sequence(self, x: torch.Tensor) -> None:
        """Input checks (shapes and dtype only, no synchronisation): a floating ``[T, B, C, H, W]``
        with ``T >= 1``, C channels, the layer's dtype, and in training more than one value per
        channel and step (B * H * W >= 2)."""
        name = type(self).__name__
        check_floating(x, name)
        check_rank(x, (5,), name, "[T, B, C, H, W]")
        check_channels(x, 2, self.num_features, name)
        if x.shape[0] == 0:
            raise ValueError(f"{name}: got a sequence of 0 time steps (input shape {tuple(x.shape)}); T must be >= 1")
        self._check_dtype(x)
        if self.training:
            check_enough_values(x[0, :, 0].numel(), name, shape=x.shape)

    @full_precision_forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``[T, B, C, H, W]``; a NaN/Inf batch leaves the running statistics as they were
        (element-wise) while the output shows the NaN.

        >>> bn = SequenceBatchNorm2d(2)
        >>> x = torch.randn(3, 4, 2, 5, 5)
        >>> x[:, :, 1] = float("nan")                               # channel 1 is all NaN
        >>> bool(bn(x)[:, :, 1].isnan().all()), bn.running_var[1].item()
        (True, 1.0)
        """
        self._check_sequence(x)
        merged, steps_and_batch = merge_time(x)
        return split_time(self._batch_norm(merged, self.weight, self.bias), steps_and_batch)


@torch.no_grad()
def fold_batchnorm_into_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new convolution equal to ``bn(conv(x))`` with ``bn`` in evaluation mode.

    In evaluation BatchNorm is a fixed per-channel affine map, so it folds into the preceding
    convolution::

        s = weight_bn / sqrt(running_var + eps)
        W' = W * s   (per output channel),     b' = (b - running_mean) * s + bias_bn

    Inference then costs one convolution and no normalisation at all.

    >>> _ = torch.manual_seed(0)
    >>> conv, bn = nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3)
    >>> _ = bn(conv(torch.randn(16, 2, 6, 6)))                   # one training batch: running statistics
    >>> bn.eval()
    BatchNorm2d(...)
    >>> x = torch.randn(4, 2, 6, 6)
    >>> torch.allclose(fold_batchnorm_into_conv(conv, bn)(x), bn(conv(x)), atol=1e-5)
    True
    """
    if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
        raise TypeError(
            f"fold_batchnorm_into_conv: expected (nn.Conv2d, nn.BatchNorm2d), got "
            f"({type(conv).__name__}, {type(bn).__name__})"
        )
    if conv.out_channels != bn.num_features:
        raise ValueError(
            f"fold_batchnorm_into_conv: the convolution has {conv.out_channels} output channels "
            f"but the BatchNorm normalises {bn.num_features}"
        )
    if bn.running_mean is None:
        raise ValueError("fold_batchnorm_into_conv: the BatchNorm tracks no running statistics")
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.affine:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.affine:
        shift = shift + bn.bias
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    folded = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    folded.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
    folded.bias.copy_(shift)
    return folded


def fold_batchnorms(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in which every ``Conv2d`` followed by a ``BatchNorm2d`` (``nn.BatchNorm2d``
    or this package's :class:`BatchNorm2d`, not a subclass that computes something else) in the same
    ``nn.Sequential`` is replaced by the folded convolution and an ``nn.Identity``.

    The copy is in evaluation mode and computes what ``model.eval()`` computes.

    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    >>> _ = model(torch.randn(16, 1, 6, 6))                      # training mode: running statistics
    >>> folded = fold_batchnorms(model)
    >>> folded[1]
    Identity()
    >>> x = torch.randn(2, 1, 6, 6)
    >>> torch.allclose(folded(x), model.eval()(x), atol=1e-5)
    True
    """
    import copy

    if not isinstance(model, nn.Module):
        raise TypeError(f"fold_batchnorms: expected an nn.Module, got {type(model).__name__}")
    folded_model = copy.deepcopy(model).eval()
    count = 0
    for module in folded_model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in zip(names, names[1:]):
            conv, bn = module._modules[first], module._modules[second]
            if isinstance(conv, nn.Conv2d) and type(bn) in (nn.BatchNorm2d, BatchNorm2d):
                module._modules[first] = fold_batchnorm_into_conv(conv, bn)
                module._modules[second] = nn.Identity()
                count += 1
    if count == 0:
        raise ValueError("fold_batchnorms: found no Conv2d followed by BatchNorm2d inside an nn.Sequential")
    return folded_model


def _build(num_features, num_steps, **neuron):
    return BatchNorm2d(num_features) if num_steps is None else SequenceBatchNorm2d(num_features)


SPEC = register(
    NormSpec(
        "bn",
        "BatchNorm; in an SNN over (T, B, H, W), time merged into the batch",
        _build,
        statistics={
            "training": "batch, over (T, B, H, W): all steps pooled",
            "evaluation": "running averages: one per-channel affine for all steps",
            "inference": "folds into the convolution",
        },
    )
)
