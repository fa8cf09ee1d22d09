"""Measures of temporal covariate shift, computed from per-step statistics.

Both functions take what :func:`snn_norm_lite.probes.per_step_statistics` returns (tensors
``[L, T]`` per layer and time step) and return one number per layer:

* :func:`step_variance_ratio`: how far the variance of step ``t`` is from the late steps,
  ``var_t / mean(var_s for s >= late_from)``; 1 means no shift, values far below 1 mean the
  layer's input has hardly started at step ``t``.
* :func:`step_mean_offset`: how far the mean of step ``t`` is from the layer's mean over all
  steps, ``|mean_t - mean(mean_s for all s)|``. Measuring from the layer's own average (and
  not from 0) ignores a shift that moves every step alike, such as BatchNorm's learned bias.
* :func:`standardised_step_offsets`: every step's mean measured from the late steps' mean, in
  units of the late steps' spread, ``(mean_t - m_late) / sqrt(v_late)``; comparable across
  layers and networks whatever the scale of their input.
* :func:`late_fluctuation`: the largest of those offsets over the late steps, how far the
  statistics wander from step to step once the start-up transient is over.

The term *temporal covariate shift* is from Jiang et al. (TAB, ICLR 2024).
"""

from __future__ import annotations

import torch


def _per_step(statistics: dict, key: str, caller: str) -> torch.Tensor:
    if not isinstance(statistics, dict) or key not in statistics:
        raise TypeError(
            f"{caller}: expected the dict of probes.per_step_statistics (with {key!r}), got {type(statistics).__name__}"
        )
    values = statistics[key]
    if not isinstance(values, torch.Tensor) or values.dim() != 2:
        shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise ValueError(f"{caller}: {key!r} must be a tensor [layers, steps], got {shape}")
    return values


def _check_step(step: int, steps: int, name: str, caller: str) -> None:
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < steps:
        raise ValueError(f"{caller}: {name} must be an int in 0..{steps - 1}, got {step!r}")


def step_variance_ratio(statistics: dict, step: int = 0, late_from: int = 3) -> torch.Tensor:
    """Per layer: ``var_step / mean(var_s for s >= late_from)`` of the input current, shape ``[L]``.

    >>> statistics = {"current_var": torch.tensor([[0.1, 0.5, 1.0, 1.0, 1.0]])}   # one layer, T = 5
    >>> step_variance_ratio(statistics, step=0, late_from=3)
    tensor([0.1000])
    """
    variance = _per_step(statistics, "current_var", "step_variance_ratio")
    steps = variance.shape[1]
    _check_step(step, steps, "step", "step_variance_ratio")
    _check_step(late_from, steps, "late_from", "step_variance_ratio")
    return variance[:, step] / variance[:, late_from:].mean(dim=1)


def step_mean_offset(statistics: dict, step: int | None = 0) -> torch.Tensor:
    """Per layer: ``|mean_step - mean over all steps|`` of the input current, shape ``[L]``.

    ``step=None`` gives, per layer, the largest offset of any step.

    >>> statistics = {"current_mean": torch.tensor([[0.0, 1.0, 2.0]])}
    >>> step_mean_offset(statistics, step=0), step_mean_offset(statistics, step=None)
    (tensor([1.]), tensor([1.]))
    """
    mean = _per_step(statistics, "current_mean", "step_mean_offset")
    offsets = (mean - mean.mean(dim=1, keepdim=True)).abs()
    if step is None:
        return offsets.max(dim=1).values
    _check_step(step, mean.shape[1], "step", "step_mean_offset")
    return offsets[:, step]


def standardised_step_offsets(statistics: dict, late_from: int = 3) -> torch.Tensor:
    """Per layer and step: ``(mean_t - m_late) / sqrt(v_late)``, shape ``[L, T]``.

    ``m_late`` and ``v_late`` are the averages of the per-step mean and variance over the late
    steps ``s >= late_from``. Column 0 is the start-up offset of step 0. A layer whose late
    input has zero variance (a silent layer) gives inf or nan: nothing is clamped.

    >>> statistics = {"current_mean": torch.tensor([[0.0, 1.0, 2.0, 2.0]]),
    ...               "current_var": torch.tensor([[1.0, 4.0, 4.0, 4.0]])}
    >>> standardised_step_offsets(statistics, late_from=2)            # (mean_t - 2) / 2
    tensor([[-1.0000, -0.5000,  0.0000,  0.0000]])
    """
    mean = _per_step(statistics, "current_mean", "standardised_step_offsets")
    variance = _per_step(statistics, "current_var", "standardised_step_offsets")
    if mean.shape != variance.shape:
        raise ValueError(
            f"standardised_step_offsets: 'current_mean' and 'current_var' must have the same shape [layers, steps], "
            f"got {tuple(mean.shape)} and {tuple(variance.shape)}"
        )
    _check_step(late_from, mean.shape[1], "late_from", "standardised_step_offsets")
    late_mean = mean[:, late_from:].mean(dim=1, keepdim=True)
    late_spread = variance[:, late_from:].mean(dim=1, keepdim=True).sqrt()
    return (mean - late_mean) / late_spread


def late_fluctuation(statistics: dict, late_from: int = 3) -> torch.Tensor:
    """Per layer: ``max over s >= late_from of |standardised offset of step s|``, shape ``[L]``.

    0 when every late step has the same mean (a stationary input); compare it with the
    start-up offset, ``standardised_step_offsets(...)[:, 0]``.

    >>> statistics = {"current_mean": torch.tensor([[0.0, 1.0, 2.0, 2.2, 1.8]]),
    ...               "current_var": torch.tensor([[1.0, 4.0, 4.0, 4.0, 4.0]])}
    >>> late_fluctuation(statistics, late_from=2)                     # |2.2 - 2| / 2
    tensor([0.1000])
    """
    offsets = standardised_step_offsets(statistics, late_from)
    return offsets[:, late_from:].abs().max(dim=1).values
