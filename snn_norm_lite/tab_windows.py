"""TAB's window statistics (chapter 8): their O(T) computation, timed, and what they track.

:func:`tab_window_scaling` checks the cumulative-sum computation of the window statistics
``mu_{0:t}, var_{0:t}`` (:func:`~snn_norm_lite.norms.tab_window_statistics`) against the naive
O(T^2) loop and times both; :func:`window_tracking` compares the window mean with what a leaky
membrane integrates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .norms import tab_window_statistics, tab_window_statistics_naive
from .timing import median_seconds


@dataclass
class WindowStatisticsScaling:
    """TAB's window statistics in O(T) (cumulative sums) against the naive O(T^2) loop.

    >>> result = tab_window_scaling(steps=(2, 4), batch=2, channels=2, size=2, repeats=1)
    >>> result.steps, len(result.fast_seconds)
    ([2, 4], 2)
    """

    steps: list[int]
    max_abs_difference: list[float]  # max over mean and variance, all steps and channels
    fast_seconds: list[float]  # median time of tab_window_statistics
    naive_seconds: list[float]  # median time of tab_window_statistics_naive


@torch.no_grad()
def tab_window_scaling(
    steps: Sequence[int] = (4, 8, 16, 32, 64),
    batch: int = 16,
    channels: int = 8,
    size: int = 8,
    drift: float = 0.1,
    repeats: int = 3,
    seed: int = 0,
) -> WindowStatisticsScaling:
    """Compare and time ``tab_window_statistics`` against ``tab_window_statistics_naive``.

    For each T in ``steps``: a seeded random sequence ``[T, batch, channels, size, size]``
    (standard normal, channel c offset by c / channels, step t by ``drift * t``), the largest
    absolute difference between the two results, and the median of ``repeats`` timings of each.

    >>> result = tab_window_scaling(steps=(4, 8), batch=4, channels=2, size=4, repeats=1)
    >>> max(result.max_abs_difference) < 1e-5                         # the O(T) and O(T^2) results agree
    True
    """
    generator = torch.Generator().manual_seed(seed)
    result = WindowStatisticsScaling(list(steps), [], [], [])
    for num_steps in steps:
        x = torch.randn(num_steps, batch, channels, size, size, generator=generator)
        x += (torch.arange(channels) / channels).view(1, 1, channels, 1, 1)
        x += drift * torch.arange(num_steps, dtype=x.dtype).view(num_steps, 1, 1, 1, 1)
        fast, naive = tab_window_statistics(x), tab_window_statistics_naive(x)
        difference = max((a - b).abs().max().item() for a, b in zip(fast, naive))
        result.max_abs_difference.append(difference)
        result.fast_seconds.append(median_seconds(lambda: tab_window_statistics(x), repeats))
        result.naive_seconds.append(median_seconds(lambda: tab_window_statistics_naive(x), repeats))
    return result


@torch.no_grad()
def window_tracking(x: torch.Tensor, beta: float = 0.9, standardise: bool = False) -> dict[str, torch.Tensor]:
    """How TAB's window mean follows what a leaky membrane integrates, for a sequence ``[T, B, C, ...]``.

    Returns ``[T]`` tensors (averaged over channels): ``step_mean`` (mean of ``x_t``),
    ``window_mean`` (``mu_{0:t}``, mean over steps ``0..t``) and ``leaky_mean``: the membrane of
    a neuron with leak ``beta`` and no reset driven by ``x``, ``u_t = sum_s beta^(t-s) x_s``,
    divided by its total weight ``sum_s beta^(t-s)`` (a leak-weighted average of the inputs so
    far; ``beta = 1`` gives the window mean exactly).

    ``standardise=True``: each channel's three curves are first measured from that channel's
    step-0 mean, in units of its standard deviation over the whole sequence, and their
    *absolute values* are averaged over channels: ``mean_c |stat_{t,c} - m_{0,c}| / sd_c``. This
    shows how far each statistic moves in units of the spread, without channels that drift in
    opposite directions cancelling out.

    >>> x = torch.arange(4.0).view(4, 1, 1).expand(4, 2, 1)           # step t has mean t
    >>> curves = window_tracking(x, beta=1.0)
    >>> curves["window_mean"], torch.allclose(curves["leaky_mean"], curves["window_mean"])
    (tensor([0.0000, 0.5000, 1.0000, 1.5000]), True)
    """
    if x.dim() < 3:
        raise ValueError(f"window_tracking: expected a sequence [T, B, C, ...], got shape {tuple(x.shape)}")
    dims = (1,) + tuple(range(3, x.dim()))
    step_mean = x.mean(dim=dims)  # [T, C]
    steps = torch.arange(1, x.shape[0] + 1, dtype=x.dtype, device=x.device).unsqueeze(1)
    window_mean = step_mean.cumsum(dim=0) / steps
    membrane, weight, leaky = torch.zeros_like(step_mean[0]), 0.0, []
    for t in range(x.shape[0]):
        membrane = beta * membrane + step_mean[t]
        weight = beta * weight + 1.0
        leaky.append(membrane / weight)
    curves = {"step_mean": step_mean, "window_mean": window_mean, "leaky_mean": torch.stack(leaky)}
    if standardise:
        spread = x.transpose(0, 2).reshape(x.shape[2], -1).std(dim=1).clamp_min(torch.finfo(x.dtype).tiny)
        curves = {key: ((value - step_mean[0]) / spread).abs() for key, value in curves.items()}
    return {key: value.mean(dim=1) for key, value in curves.items()}
