"""AHSAR's control law: pure functions from measured rates and state to threshold scales and gain.

Nothing here touches a model or keeps state; :class:`~snn_norm_lite.ahsar.AHSAR` feeds these
functions and writes their results. Fast loop (per training pass)::

    rbar  <- smooth_rates(rbar, r, ema)                        ema * rbar + (1 - ema) * r
    scale  = fast_scales(rbar, config)                         threshold_scale(diffuse(band_deviation(rbar)))

Slow loop (per epoch)::

    E      = epoch_energy(sum of pass_energy(r, E*), passes, E*)
    gain  <- gain_step(gain, E, accuracy_change(acc_previous, acc), config)
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from ..checks import keep_finite
from .config import AHSARConfig


def band_deviation(rates: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``e = rate - high`` above the band, ``rate - low`` below it, ``0`` inside.

    >>> band_deviation(torch.tensor([0.0, 0.1, 0.5]), 0.05, 0.25)
    tensor([-0.0500,  0.0000,  0.2500])
    """
    return (rates - high).clamp(min=0) + (rates - low).clamp(max=0)


def diffuse(values: torch.Tensor, coefficient: float) -> torch.Tensor:
    """One explicit Laplacian step over the layer index, reflecting ends: ``v + D * (v[l-1] - 2 v[l] + v[l+1])``.

    >>> diffuse(torch.tensor([1.0, 0.0, 0.0, 2.0]), 0.5)
    tensor([0.5000, 0.5000, 1.0000, 1.0000])
    """
    padded = torch.cat([values[:1], values, values[-1:]])
    return values + coefficient * (padded[:-2] - 2 * values + padded[2:])


def threshold_scale(deviation: torch.Tensor, strength: float, width: float) -> torch.Tensor:
    """``1 + k * tanh(d / width)``: a bounded map from rate deviations to threshold scales.

    >>> threshold_scale(torch.tensor([-1.0, 0.0, 1.0]), strength=0.5, width=0.05)
    tensor([0.5000, 1.0000, 1.5000])
    """
    return 1 + strength * torch.tanh(deviation / width)


def smooth_rates(smoothed: Optional[torch.Tensor], rates: torch.Tensor, ema: float) -> torch.Tensor:
    """``rbar <- ema * rbar + (1 - ema) * r``; on the first pass (``smoothed`` None) ``rbar = r``.

    A NaN rate (a layer whose spikes were all NaN: a NaN batch) is no measurement: that
    layer's ``rbar`` stays as it was. A NaN ``rbar`` (no finite measurement yet) takes the next
    finite rate as its first. Element-wise, without host synchronisation. Returns a new tensor;
    neither argument is modified.

    >>> first = smooth_rates(None, torch.tensor([0.2, 0.4]), ema=0.5)
    >>> smooth_rates(first, torch.tensor([0.0, float("nan")]), ema=0.5)
    tensor([0.1000, 0.4000])
    """
    if smoothed is None:
        return rates.clone()
    updated = torch.where(torch.isnan(smoothed), rates, torch.add(smoothed * ema, rates, alpha=1 - ema))
    return keep_finite(updated, smoothed)


def fast_scales(smoothed: torch.Tensor, config: AHSARConfig) -> torch.Tensor:
    """The fast loop's threshold scales from the smoothed rates: centring, diffusion, bounded map.

    A layer without a finite measurement yet (NaN ``rbar``) has deviation 0: it is treated as
    inside the band (its neighbours' corrections still diffuse into it).

    >>> fast_scales(torch.tensor([0.1, 0.1]), AHSARConfig())  # inside the band: no correction
    tensor([1., 1.])
    >>> fast_scales(torch.tensor([float("nan"), 0.1]), AHSARConfig())
    tensor([1., 1.])
    """
    deviation = band_deviation(smoothed, config.target_low, config.target_high)
    deviation = torch.where(torch.isnan(deviation), torch.zeros_like(deviation), deviation)
    return threshold_scale(diffuse(deviation, config.diffusion), config.strength, config.width)


def pass_energy(rates: torch.Tensor, budget: float) -> torch.Tensor:
    """One training pass's activity energy ``mean_l r_l^2``, over the layers with a finite rate;
    ``budget`` (a neutral pass) when no layer has one.

    >>> pass_energy(torch.tensor([0.1, 0.3]), 0.0225), pass_energy(torch.tensor([0.1, float("nan")]), 0.0225)
    (tensor(0.0500), tensor(0.0100))
    >>> pass_energy(torch.tensor([float("nan")]), 0.0225)
    tensor(0.0225)
    """
    energy = rates.square().nanmean()
    return torch.where(torch.isnan(energy), torch.full_like(energy, budget), energy)


def accuracy_change(previous: Optional[float], current: Optional[float]) -> float:
    """Validation-accuracy change in percentage points; 0 when either value is missing (None).

    >>> accuracy_change(50.0, 47.0), accuracy_change(None, 47.0)
    (-3.0, 0.0)
    """
    if previous is None or current is None:
        return 0.0
    return current - previous


def epoch_energy(total: torch.Tensor, passes: int, budget: float) -> float:
    """Mean over an epoch's training passes of ``mean_l r_l^2`` from their ``total``.

    An epoch without a training pass returns ``budget``, so its energy term is 0.

    >>> epoch_energy(torch.tensor(0.3), 3, budget=0.0225), epoch_energy(torch.tensor(0.0), 0, budget=0.0225)
    (0.10000000149011612, 0.0225)
    """
    if passes == 0:
        return budget
    return (total / passes).item()


def gain_step(gain: float, energy: float, change: float, config: AHSARConfig) -> float:
    """The slow loop: ``clip(gain * exp(eta * tanh(z)), gain_min, gain_max)``, with
    ``z = (E - E*) / E* + c_acc * change``.

    >>> config = AHSARConfig(gain_rate=0.1)
    >>> round(gain_step(1.0, 2 * config.energy_budget, 0.0, config), 4)  # energy above budget: gain up
    1.0791
    """
    budget = config.energy_budget
    drive = (energy - budget) / budget + config.accuracy_weight * change
    new_gain = gain * math.exp(config.gain_rate * math.tanh(drive))
    return min(max(new_gain, config.gain_min), config.gain_max)
