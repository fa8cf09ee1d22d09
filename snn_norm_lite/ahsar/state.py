"""AHSAR's state between passes and epochs, and its input/output (``state_dict``, device moves)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch


def _copy(tensor: Optional[torch.Tensor], device=None) -> Optional[torch.Tensor]:
    if tensor is None:
        return None
    return tensor.detach().clone().to(device or tensor.device)


@dataclass
class ControllerState:
    """Everything the controller carries from one pass (or epoch) to the next.

    ``base`` holds the thresholds ``V0_l`` the scales multiply (None until attached),
    ``rate_ema`` the smoothed rates ``rbar_l``, ``scales`` the fast loop's ``scale_l``
    (None before the first training pass), ``gain`` the slow loop's global gain (a 0-d
    tensor), ``epoch_energy`` and ``epoch_passes`` the running sum of ``mean_l r_l^2`` over
    this epoch's training passes and their number.

    >>> state = ControllerState()
    >>> float(state.gain), state.passes, state.scales is None
    (1.0, 0, True)
    """

    base: Optional[list[torch.Tensor]] = None
    rate_ema: Optional[torch.Tensor] = None
    scales: Optional[torch.Tensor] = None
    gain: torch.Tensor = field(default_factory=lambda: torch.tensor(1.0))
    passes: int = 0  # training passes seen
    epochs: int = 0  # slow-loop steps taken
    previous_accuracy: Optional[float] = None  # validation accuracy at the last slow-loop step
    epoch_energy: torch.Tensor = field(default_factory=lambda: torch.tensor(0.0))
    epoch_passes: int = 0

    def to(self, device) -> None:
        """Move every tensor to ``device``, in place.

        >>> state = ControllerState(base=[torch.tensor(1.0)])
        >>> state.to("cpu"); state.gain.device.type
        'cpu'
        """
        self.gain, self.epoch_energy = self.gain.to(device), self.epoch_energy.to(device)
        if self.rate_ema is not None:
            self.rate_ema, self.scales = self.rate_ema.to(device), self.scales.to(device)
        if self.base is not None:
            self.base = [b.to(device) for b in self.base]

    def state_dict(self) -> dict:
        """Detached copies of the state, as plain values and tensors (``torch.save``-able).

        >>> sorted(ControllerState().state_dict())[:3]
        ['base_thresholds', 'epoch_energy', 'epoch_passes']
        """
        return {
            "base_thresholds": None if self.base is None else [_copy(b) for b in self.base],
            "rate_ema": _copy(self.rate_ema),
            "scales": _copy(self.scales),
            "gain": _copy(self.gain),
            "passes": self.passes,
            "epochs": self.epochs,
            "previous_accuracy": self.previous_accuracy,
            "epoch_energy": _copy(self.epoch_energy),
            "epoch_passes": self.epoch_passes,
        }

    @classmethod
    def from_state_dict(cls, state: dict, device=None) -> "ControllerState":
        """The state a :meth:`state_dict` describes, copied (to ``device`` when given).

        >>> ControllerState.from_state_dict(ControllerState(passes=7).state_dict()).passes
        7
        """
        base = state["base_thresholds"]
        return cls(
            base=None if base is None else [_copy(b, device) for b in base],
            rate_ema=_copy(state["rate_ema"], device),
            scales=_copy(state["scales"], device),
            gain=_copy(state["gain"], device),
            passes=int(state["passes"]),
            epochs=int(state["epochs"]),
            previous_accuracy=state["previous_accuracy"],
            epoch_energy=_copy(state["epoch_energy"], device),
            epoch_passes=int(state["epoch_passes"]),
        )
