"""BNTT: batch normalisation through time, one BatchNorm per time step (Kim and Panda, 2021).

A spiking layer's input statistics drift from step to step: early steps see few spikes, later
ones more. BNTT gives every step its own statistics and its own gain::

    y_t = gamma_t * (x_t - mu_t) / sqrt(var_t + eps)          (no bias)

* ``mu_t, var_t``: mean and biased variance of step t alone, per channel, over (B, H, W).
* ``gamma_t``: a learnable gain per step and channel (``weight``, shape ``[T, C]``, init 1).
  The method has no bias: the firing threshold plays that role.
* Training: the batch statistics of each step; each step's running statistics follow PyTorch's
  rule (``running = (1 - momentum) * running + momentum * batch``, unbiased variance).
* Evaluation: the running statistics of that step, so ``y_t`` is a fixed per-step affine map.

Causal: step t never looks at another step, so the layer can be called one step at a time,
``layer(x_t, t=t)``, as well as on the whole sequence; both give the same numbers. A step
outside ``0 .. num_steps - 1`` is an error, never clamped to the last slot.

Paper: Y. Kim and P. Panda, "Revisiting batch normalization for training low-latency deep
spiking neural networks from scratch", Frontiers in Neuroscience 15 (2021). snntorch ships the
same idea as ``BatchNormTT2d`` (a list of T ``BatchNorm2d``); here the T steps are computed in
one vectorised pass (see :mod:`snn_norm_lite.norms.step_statistics`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..precision import full_precision_forward
from .registry import NormSpec, register
from .step_statistics import PerStepNorm, apply_per_step_affine, normalise_per_step, unbiased, update_running


def bntt_coefficients(eps: float):
    """BNTT as per-step coefficients: ``scale = gamma_t / sqrt(var_t + eps)``, ``center = mu_t``, no bias.

    >>> scale, center, bias = bntt_coefficients(0.0)(torch.tensor([[1.0]]), torch.tensor([[4.0]]), torch.tensor([[3.0]]))
    >>> scale, center, bias
    (tensor([[1.5000]]), tensor([[1.]]), 0.0)
    """

    def coefficients(step_mean, step_var, weight):
        return weight * torch.rsqrt(step_var + eps), step_mean, 0.0

    return coefficients


class BatchNormThroughTime2d(PerStepNorm):
    """One BatchNorm per time step with a per-step gain and no bias (BNTT).

    ``y_t = weight[t] * (x_t - mu_t) / sqrt(var_t + eps)``, statistics of step t over (B, H, W)
    in training, the running statistics of step t in evaluation (see the module docstring).

    Call it on a sequence ``[T, B, C, H, W]`` with ``T == num_steps``, or one step at a time,
    ``layer(x_t, t=t)`` with ``x_t`` of shape ``[B, C, H, W]``.

    Args:
        num_features: number of channels C.
        num_steps: number of time steps T (one set of statistics and gains each).
        eps: added to the variance before the square root.
        momentum: weight of the newest batch in the running statistics, in (0, 1].

    Shapes: ``weight``, ``running_mean``, ``running_var``: ``[num_steps, num_features]``.

    >>> _ = torch.manual_seed(0)
    >>> bntt = BatchNormThroughTime2d(3, num_steps=4)
    >>> bntt
    BatchNormThroughTime2d(3, num_steps=4, eps=1e-05, momentum=0.1)
    >>> x = torch.randn(4, 8, 3, 5, 5) * torch.arange(1.0, 5.0).view(4, 1, 1, 1, 1)  # spread grows with t
    >>> y = bntt(x).detach()
    >>> y.std(dim=(1, 2, 3, 4)).round(decimals=2)        # every step: unit spread
    tensor([1., 1., 1., 1.])
    >>> bntt.eval()(x[2], t=2).shape                     # one step at a time
    torch.Size([8, 3, 5, 5])
    """

    def __init__(self, num_features: int, num_steps: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__(num_features, num_steps, eps, momentum, statistics_per_step=True)
        self.weight = nn.Parameter(torch.ones(num_steps, num_features))

    @full_precision_forward
    def forward(self, x: torch.Tensor, t: int | None = None) -> torch.Tensor:
        x, rows = self._check_input(x, t)
        weight = self.weight[rows]
        if self.training:
            group = self.statistics_group()
            count = self._statistics_count(x, group)
            y, step_mean, step_var = normalise_per_step(
                x, bntt_coefficients(self.eps), weight, group=group, count=count
            )
            update_running(self.running_mean[rows], step_mean, self.momentum)
            update_running(self.running_var[rows], unbiased(step_var, count), self.momentum)
            if t is None or t == self.num_steps - 1:
                self.num_batches_tracked.add_(1)
        else:
            scale = weight * torch.rsqrt(self.running_var[rows] + self.eps)
            y = apply_per_step_affine(x, scale, -self.running_mean[rows] * scale)
        return y if t is None else y[0]


SPEC = register(
    NormSpec(
        "bntt",
        "BNTT: one BatchNorm per time step, statistics of that step, per-step gain, no bias",
        lambda num_features, num_steps, **neuron: BatchNormThroughTime2d(num_features, num_steps),
        spiking_only=True,
        statistics={
            "training": "batch, over (B, H, W) of step t",
            "evaluation": "running averages of step t: per-step affine",
            "inference": "a per-step affine after the convolution",
        },
    )
)
