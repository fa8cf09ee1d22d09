"""TEBN: temporal effective batch normalisation (Duan et al., NeurIPS 2022).

TEBN keeps tdBN's statistics, shared by all steps, and adds one learnable scale per step::

    y_t = p_t * ( weight * (x_t - mu) / sqrt(var + eps) + bias )

* ``mu, var``: per-channel mean and biased variance over (T, B, H, W), shared by every step
  (the same statistics as BatchNorm on the time-merged batch).
* ``weight, bias``: a learnable per-channel affine shared over time (init 1 and 0).
* ``p_t``: one learnable scalar per step (``time_weight``, shape ``[T]``, init 1). It
  multiplies the whole affine output, bias included, so each step's distribution can be
  stretched to what the following neurons need at that step.
* Training: the statistics of the whole sequence in the batch; the running statistics are
  updated once per sequence with PyTorch's rule (``running = (1 - momentum) * running +
  momentum * batch``, unbiased variance), honouring ``eps`` and ``momentum``.
* Evaluation: the same *shared* statistics, from the running averages; with ``p_t`` this is a
  fixed affine map per step. Training and evaluation use the same kind of statistics, so a
  trained layer's eval output matches its train output on data like the training data.

Not causal in training: step t is normalised with statistics of all T steps, so training needs
the whole sequence and a one-step call ``layer(x_t, t=t)`` is an error in training. In
evaluation the statistics are fixed and one step at a time is fine.

Paper: C. Duan, J. Ding, S. Chen, Z. Yu and T. Huang, "Temporal effective batch normalization
in spiking neural networks", NeurIPS 2022. (Its public code hard-codes T = 4 and ignores its
eps and momentum arguments; here both are honoured and T is a constructor argument.)
"""

from __future__ import annotations

import torch
from torch import nn

from ..precision import full_precision_forward
from .registry import NormSpec, register
from .step_statistics import PerStepNorm, apply_per_step_affine, normalise_per_step, unbiased, update_running


def pool_over_time(step_mean: torch.Tensor, step_var: torch.Tensor):
    """Mean and biased variance over all steps from per-step ones (equal counts per step).

    ``mu = mean_t mu_t``, ``var = mean_t var_t + mean_t (mu_t - mu)^2`` (law of total variance),
    returned with shape ``[1, C]``.

    >>> mean, var = pool_over_time(torch.tensor([[0.0], [2.0]]), torch.tensor([[1.0], [1.0]]))
    >>> mean, var                                        # var = 1 (within steps) + 1 (between steps)
    (tensor([[1.]]), tensor([[2.]]))
    """
    mean = step_mean.mean(dim=0, keepdim=True)
    var = step_var.mean(dim=0, keepdim=True) + (step_mean - mean).square().mean(dim=0, keepdim=True)
    return mean, var


def tebn_coefficients(eps: float):
    """TEBN as per-step coefficients: ``scale = p_t * weight / sqrt(var + eps)``, ``bias = p_t * bias``.

    >>> coefficients = tebn_coefficients(0.0)
    >>> step_mean, step_var = torch.tensor([[0.0], [2.0]]), torch.tensor([[1.0], [1.0]])
    >>> scale, center, bias = coefficients(step_mean, step_var, torch.ones(1), torch.zeros(1), torch.tensor([1.0, 2.0]))
    >>> scale.flatten(), center.flatten()               # p_t / sqrt(2) per step, the pooled mean 1
    (tensor([0.7071, 1.4142]), tensor([1.]))
    """

    def coefficients(step_mean, step_var, weight, bias, time_weight):
        mean, var = pool_over_time(step_mean, step_var)
        p = time_weight.unsqueeze(1)
        return p * (weight * torch.rsqrt(var + eps)), mean, p * bias

    return coefficients


class TemporalEffectiveBatchNorm2d(PerStepNorm):
    """BatchNorm with statistics and affine shared over time, then a learnable scale per step (TEBN).

    ``y_t = time_weight[t] * (weight * (x_t - mu) / sqrt(var + eps) + bias)``, ``mu, var`` over
    (T, B, H, W) (see the module docstring).

    Input: a sequence ``[T, B, C, H, W]`` with ``T == num_steps``. In evaluation only, one step
    ``layer(x_t, t=t)`` with ``x_t`` of shape ``[B, C, H, W]`` is also accepted.

    Args:
        num_features: number of channels C.
        num_steps: number of time steps T (one scale ``p_t`` each).
        eps: added to the variance before the square root.
        momentum: weight of the newest batch in the running statistics, in (0, 1].

    Shapes: ``weight``, ``bias``, ``running_mean``, ``running_var``: ``[num_features]``;
    ``time_weight``: ``[num_steps]``.

    >>> _ = torch.manual_seed(0)
    >>> tebn = TemporalEffectiveBatchNorm2d(3, num_steps=4)
    >>> with torch.no_grad():
    ...     _ = tebn.time_weight.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    >>> x = torch.randn(1, 8, 3, 5, 5).expand(4, -1, -1, -1, -1)   # the same input at every step
    >>> y = tebn(x).detach()
    >>> (y.std(dim=(1, 2, 3, 4)) / y[0].std()).round(decimals=3)   # step t scaled by p_t
    tensor([1., 2., 3., 4.])
    >>> tebn(torch.randn(8, 3, 5, 5), t=0)
    Traceback (most recent call last):
        ...
    ValueError: TemporalEffectiveBatchNorm2d: in training the statistics are shared by all 4 steps, ...
    """

    def __init__(self, num_features: int, num_steps: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__(num_features, num_steps, eps, momentum, statistics_per_step=False)
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.time_weight = nn.Parameter(torch.ones(num_steps))

    @full_precision_forward
    def forward(self, x: torch.Tensor, t: int | None = None) -> torch.Tensor:
        if self.training and t is not None:
            raise ValueError(
                f"{type(self).__name__}: in training the statistics are shared by all {self.num_steps} steps, so the layer "
                "needs the whole sequence [T, B, C, H, W]; one-step calls layer(x_t, t=t) work in eval() only"
            )
        x, rows = self._check_input(x, t)
        if self.training:
            group = self.statistics_group()
            count = self._statistics_count(x, group)
            y, step_mean, step_var = normalise_per_step(
                x, tebn_coefficients(self.eps), self.weight, self.bias, self.time_weight, group=group, count=count
            )
            mean, var = pool_over_time(step_mean, step_var)
            update_running(self.running_mean, mean[0], self.momentum)
            update_running(self.running_var, unbiased(var[0], count * self.num_steps), self.momentum)
            self.num_batches_tracked.add_(1)
            return y
        gain = self.weight * torch.rsqrt(self.running_var + self.eps)
        p = self.time_weight[rows].unsqueeze(1)
        y = apply_per_step_affine(x, p * gain, p * (self.bias - self.running_mean * gain))
        return y if t is None else y[0]


SPEC = register(
    NormSpec(
        "tebn",
        "TEBN: BatchNorm over (T, B, H, W) with a shared affine, then a learnable scale p_t per step",
        lambda num_features, num_steps, **neuron: TemporalEffectiveBatchNorm2d(num_features, num_steps),
        spiking_only=True,
        statistics={
            "training": "batch, over (T, B, H, W), then a learned scale p_t",
            "evaluation": "running averages times p_t: per-step affine",
            "inference": "a per-step affine after the convolution",
        },
    )
)
