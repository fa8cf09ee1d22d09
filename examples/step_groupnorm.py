"""An example plugin: GroupNorm applied to every time step, registered as ``"step_groupnorm"``.

The README's developer walkthrough uses this file. GroupNorm (Wu and He, 2018) normalises each
sample on its own, over groups of channels and the pixels of one step::

    y[t, b, c] = weight[c] * (x[t, b, c] - mu[t, b, g]) / sqrt(var[t, b, g] + eps) + bias[c]

with ``mu, var`` over the channels of group ``g = c // (C / G)`` and (H, W). No statistic is
shared across samples or steps, so it is causal and batch-independent in training and in
evaluation, at the price of erasing each step's overall scale.

Use it without changing the package::

    python -m snn_norm_lite compare --plugin examples.step_groupnorm --norms none,bn,step_groupnorm

or, in Python, ``import examples.step_groupnorm`` (from the repository root) and then
``build_snn("step_groupnorm", ...)``.
"""

from __future__ import annotations

import torch
from torch import nn

from snn_norm_lite.norms import NormSpec, register
from snn_norm_lite.sequences import over_time


class StepGroupNorm2d(nn.Module):
    """``nn.GroupNorm`` on every step of a sequence ``[T, B, C, H, W]`` (or on ``[B, C, H, W]``)."""

    def __init__(self, num_features: int, num_groups: int = 4):
        super().__init__()
        if num_features % num_groups:
            raise ValueError(f"StepGroupNorm2d: num_features={num_features} is not divisible by num_groups={num_groups}")
        self.norm = nn.GroupNorm(num_groups, num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return over_time(self.norm, x) if x.dim() == 5 else self.norm(x)


def build(num_features: int, num_steps: int | None, *, threshold: float, beta: float, num_groups: int = 4) -> nn.Module:
    """The registry's builder: the neuron's ``threshold`` and ``beta`` arrive too (unused here)."""
    return StepGroupNorm2d(num_features, num_groups)


SPEC = register(
    NormSpec(
        "step_groupnorm",
        "GroupNorm on every time step: per sample, per step, over groups of channels (an example plugin)",
        build,
        options=("num_groups",),
        statistics={
            "training": "per sample and step, over its channel group and (H, W); nothing shared",
            "evaluation": "the same as in training (no running statistics)",
            "inference": "a per-sample division at every step: nothing folds",
        },
    )
)
