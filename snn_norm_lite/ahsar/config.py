"""AHSAR's constants: one frozen, validated dataclass (:class:`AHSARConfig`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from ..checks import check_bool, check_finite_number

# field: (test, the valid range as the errors state it); every number must also be finite
_RANGES = {
    "target_low": (lambda v: 0 <= v <= 1, "[0, 1]"),
    "target_high": (lambda v: 0 <= v <= 1, "[0, 1]"),
    "ema": (lambda v: 0 <= v < 1, "[0, 1)"),
    "diffusion": (lambda v: 0 <= v <= 0.5, "[0, 0.5]"),
    "strength": (lambda v: 0 < v < 1, "(0, 1)"),
    "width": (lambda v: v > 0, "(0, inf)"),
    "gain_rate": (lambda v: v >= 0, "[0, inf)"),
    "gain_min": (lambda v: 0 < v <= 1, "(0, 1]"),
    "gain_max": (lambda v: v >= 1, "[1, inf)"),
    "energy_target": (lambda v: v > 0, "(0, inf) or None"),
    "accuracy_weight": (lambda v: v >= 0, "[0, inf)"),
}
_FLAGS = ("sense_in_eval", "record_history")
_OPTIONAL = ("energy_target",)


@dataclass(frozen=True)
class AHSARConfig:
    """The constants of the AHSAR controller (equations in :mod:`snn_norm_lite.ahsar`).

    Immutable and checked on construction: a number of the wrong type (a bool, a string, a
    tensor) raises ``TypeError``, a non-finite or out-of-range one ``ValueError``; both name the
    field, its valid range and the value. A flag that is not a bool is a ``TypeError``. Change
    constants with :meth:`replace`.

    >>> config = AHSARConfig(target_high=0.3)
    >>> config.target_low, config.target_high, config.sense_in_eval
    (0.05, 0.3, False)
    >>> AHSARConfig(ema=float("nan"))
    Traceback (most recent call last):
        ...
    ValueError: AHSARConfig: ema must be a finite number, got nan (valid: [0, 1))
    """

    target_low: float = 0.05
    """Lower edge ``r_low`` of the target band of layer firing rates (spikes per neuron per step), in [0, 1]."""
    target_high: float = 0.25
    """Upper edge ``r_high`` of the band, in [0, 1] and ``>= target_low``."""
    ema: float = 0.9
    """Smoothing ``lambda`` of the measured rates per training pass, in [0, 1) (memory ~ 1/(1 - ema) passes)."""
    diffusion: float = 0.25
    """Laplacian coupling ``D`` between neighbouring layers, in [0, 1/2] (a weighted average of neighbours)."""
    strength: float = 0.5
    """``k`` in (0, 1): the fast loop scales thresholds within (1 - k, 1 + k)."""
    width: float = 0.05
    """``w`` > 0: the rate deviation at which the tanh reaches 0.76 of its bound."""
    gain_rate: float = 0.05
    """``eta`` >= 0: the largest change of log(gain) per epoch."""
    gain_min: float = 0.5
    """Lower bound of the global gain, in (0, 1]."""
    gain_max: float = 2.0
    """Upper bound of the global gain, >= 1."""
    energy_target: Optional[float] = None
    """``E*`` > 0, the mean squared rate the slow loop aims at; None: the middle of the band, squared."""
    accuracy_weight: float = 0.1
    """``c_acc`` >= 0: weight of one percentage point of validation-accuracy change in the slow loop."""
    sense_in_eval: bool = False
    """Also measure rates in evaluation passes (``AHSAR.last_rates``); they never update the state."""
    record_history: bool = True
    """Keep the per-pass rates, scales and gain (``AHSAR.history``) for plotting."""

    def __post_init__(self) -> None:
        for name in _FLAGS:
            check_bool(getattr(self, name), name, "AHSARConfig")
        for name, (valid, text) in _RANGES.items():
            value = getattr(self, name)
            if value is None and name in _OPTIONAL:
                continue
            try:
                value = check_finite_number(value, name, "AHSARConfig")
            except (TypeError, ValueError) as error:
                raise type(error)(f"{error} (valid: {text})") from None
            if not valid(value):
                raise ValueError(f"AHSARConfig: {name} must lie in {text}, got {value!r}")
            object.__setattr__(self, name, value)
        if self.target_low > self.target_high:
            raise ValueError(
                f"AHSARConfig: need target_low <= target_high, got target_low={self.target_low}, "
                f"target_high={self.target_high}"
            )

    @property
    def energy_budget(self) -> float:
        """The energy target in use, ``E*``: ``energy_target``, or ``((low + high) / 2)^2`` when it is None.

        >>> round(AHSARConfig(target_low=0.1, target_high=0.3).energy_budget, 6), AHSARConfig(energy_target=0.01).energy_budget
        (0.04, 0.01)
        """
        if self.energy_target is not None:
            return self.energy_target
        return ((self.target_low + self.target_high) / 2) ** 2

    def replace(self, **changes) -> "AHSARConfig":
        """A copy with ``changes`` applied (and checked); an unknown name raises ``TypeError``.

        >>> AHSARConfig().replace(ema=0.5).ema
        0.5
        """
        known = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise TypeError(f"AHSARConfig: unknown field(s) {unknown}; known: {', '.join(known)}")
        return dataclasses.replace(self, **changes)
