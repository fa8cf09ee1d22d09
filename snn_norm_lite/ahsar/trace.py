"""AHSAR's trace: what the controller did, per training pass and per epoch, for plots."""

from __future__ import annotations

import torch


class Trace:
    """Records of the fast loop (per training pass) and the slow loop (per epoch).

    Not part of the controller's state: :meth:`AHSAR.state_dict` leaves it out.

    >>> trace = Trace()
    >>> trace.add_epoch(gain=1.05, energy=0.03, change=0.0)
    >>> trace.as_dict()["epoch_gain"], trace.as_dict()["rate"]
    ([1.05], [])
    """

    def __init__(self):
        self._passes: dict[str, list[torch.Tensor]] = {"rate": [], "rate_ema": [], "scale": [], "gain": []}
        self._epochs: dict[str, list[float]] = {"gain": [], "energy": [], "accuracy_change": []}

    def add_pass(self, rates: torch.Tensor, rate_ema: torch.Tensor, scales: torch.Tensor, gain: torch.Tensor) -> None:
        """Keep copies of one training pass's rates, smoothed rates, scales and gain.

        >>> trace = Trace()
        >>> trace.add_pass(torch.tensor([0.1]), torch.tensor([0.1]), torch.tensor([1.0]), torch.tensor(1.0))
        >>> trace.as_dict()["scale"]
        [[1.0]]
        """
        for key, value in (("rate", rates), ("rate_ema", rate_ema), ("scale", scales), ("gain", gain)):
            self._passes[key].append(value.detach().clone())

    def add_epoch(self, gain: float, energy: float, change: float) -> None:
        """Keep one slow-loop step: the new gain, the epoch's energy and its accuracy change.

        >>> trace = Trace()
        >>> trace.add_epoch(1.0, 0.02, -3.0); trace.as_dict()["epoch_accuracy_change"]
        [-3.0]
        """
        for key, value in (("gain", gain), ("energy", energy), ("accuracy_change", change)):
            self._epochs[key].append(value)

    def as_dict(self) -> dict[str, list]:
        """Per pass ``rate``, ``rate_ema``, ``scale`` (lists of per-layer lists) and ``gain``;
        per epoch ``epoch_gain``, ``epoch_energy``, ``epoch_accuracy_change``.

        >>> sorted(Trace().as_dict())
        ['epoch_accuracy_change', 'epoch_energy', 'epoch_gain', 'gain', 'rate', 'rate_ema', 'scale']
        """
        out = {key: torch.stack(values).tolist() if values else [] for key, values in self._passes.items()}
        out.update({f"epoch_{key}": list(values) for key, values in self._epochs.items()})
        return out
