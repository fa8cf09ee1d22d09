"""AHSAR's state between passes and epochs, and its input/output (``state_dict``, device moves)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

from ..checks import check_finite_number, check_nonnegative_int

WHERE = "AHSAR.load_state_dict"
STATE_KEYS = (
    "base_thresholds", "base_resets", "rate_ema", "scales", "gain", "passes", "epochs", "previous_accuracy",
    "epoch_energy", "epoch_passes",
)


def _copy(tensor: Optional[torch.Tensor], device=None) -> Optional[torch.Tensor]:
    if tensor is None:
        return None
    return tensor.detach().clone().to(device or tensor.device)


def check_keys(state, expected, where: str = WHERE) -> None:
    """Raise unless ``state`` is a dict with exactly the keys ``expected``: a ``TypeError`` for
    anything but a dict, a ``ValueError`` listing the missing and the unknown keys.

    >>> check_keys({"a": 1, "c": 2}, ("a", "b"), "Demo")
    Traceback (most recent call last):
        ...
    ValueError: Demo: missing key(s) ['b'], unknown key(s) ['c']; expected exactly ['a', 'b']
    """
    if not isinstance(state, dict):
        raise TypeError(f"{where}: expected a dict (from state_dict()), got {type(state).__name__}")
    missing, unknown = sorted(set(expected) - set(state)), sorted(set(state) - set(expected), key=str)
    if missing or unknown:
        found = [f"{what} key(s) {keys}" for what, keys in (("missing", missing), ("unknown", unknown)) if keys]
        raise ValueError(f"{where}: {', '.join(found)}; expected exactly {sorted(expected)}")


def _tensor(value, key: str, dims: tuple, optional: bool = False, nan: bool = False) -> Optional[torch.Tensor]:
    """A floating-point tensor with a dimension count in ``dims`` and no NaN unless ``nan`` (None if ``optional``)."""
    if value is None and optional:
        return None
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise TypeError(
            f"{WHERE}: {key} must be a floating-point tensor{' or None' if optional else ''}, got "
            f"{type(value).__name__}{'' if not isinstance(value, torch.Tensor) else ' of dtype ' + str(value.dtype)}"
        )
    if value.dim() not in dims:
        raise ValueError(f"{WHERE}: {key} must have {' or '.join(map(str, dims))} dimension(s), got shape {tuple(value.shape)}")
    if not nan and bool(torch.isnan(value).any()):
        raise ValueError(f"{WHERE}: {key} holds NaN: {value.tolist()}")
    return value


def _finite(value: torch.Tensor, key: str) -> torch.Tensor:
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{WHERE}: {key} must be finite, got {value.tolist()}")
    return value


@dataclass
class ControllerState:
    """Everything the controller carries from one pass (or epoch) to the next.

    ``base`` holds the firing thresholds ``V0_l`` the scales multiply (None until attached; a
    0-d tensor per layer, ``[C]`` for a folded MPBN neuron), ``reset_base`` the matching reset
    values of layers that have a separate one (else None per layer), ``rate_ema`` the smoothed
    rates ``rbar_l``, ``scales`` the fast loop's ``scale_l`` (None before the first training
    pass), ``gain`` the slow loop's global gain (a 0-d tensor), ``epoch_energy`` and
    ``epoch_passes`` the running sum of ``mean_l r_l^2`` over this epoch's training passes and
    their number.

    >>> state = ControllerState()
    >>> float(state.gain), state.passes, state.scales is None
    (1.0, 0, True)
    """

    base: Optional[list[torch.Tensor]] = None
    reset_base: Optional[list[Optional[torch.Tensor]]] = None
    rate_ema: Optional[torch.Tensor] = None
    scales: Optional[torch.Tensor] = None
    gain: torch.Tensor = field(default_factory=lambda: torch.tensor(1.0))
    passes: int = 0  # training passes seen
    epochs: int = 0  # slow-loop steps taken
    previous_accuracy: Optional[float] = None  # validation accuracy at the last slow-loop step
    epoch_energy: torch.Tensor = field(default_factory=lambda: torch.tensor(0.0))
    epoch_passes: int = 0

    @property
    def device(self) -> torch.device:
        """Where the state's tensors are (those of the gain)."""
        return self.gain.device

    def to(self, device) -> None:
        """Move every tensor to ``device``, in place.

        >>> state = ControllerState(base=[torch.tensor(1.0)], reset_base=[None])
        >>> state.to("cpu"); state.gain.device.type
        'cpu'
        """
        self.gain, self.epoch_energy = self.gain.to(device), self.epoch_energy.to(device)
        if self.rate_ema is not None:
            self.rate_ema, self.scales = self.rate_ema.to(device), self.scales.to(device)
        if self.base is not None:
            self.base = [b.to(device) for b in self.base]
            self.reset_base = [None if r is None else r.to(device) for r in self.reset_base]

    def state_dict(self) -> dict:
        """Detached copies of the state, as plain values and tensors (``torch.save``-able).

        >>> sorted(ControllerState().state_dict())[:3]
        ['base_resets', 'base_thresholds', 'epoch_energy']
        """
        return {
            "base_thresholds": None if self.base is None else [_copy(b) for b in self.base],
            "base_resets": None if self.reset_base is None else [_copy(r) for r in self.reset_base],
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
        """The state a :meth:`state_dict` describes, checked and copied (to ``device`` when given).

        ``state`` must hold exactly the keys of :meth:`state_dict` (``ValueError`` listing the
        missing and unknown ones), each of the type and shape it has there (``TypeError`` /
        ``ValueError`` naming the key). Whether the thresholds fit a model is checked on attach.

        >>> ControllerState.from_state_dict(ControllerState(passes=7).state_dict()).passes
        7
        >>> ControllerState.from_state_dict({**ControllerState().state_dict(), "gain": 2.0})
        Traceback (most recent call last):
            ...
        TypeError: AHSAR.load_state_dict: gain must be a floating-point tensor, got float
        """
        check_keys(state, STATE_KEYS)
        base, resets = state["base_thresholds"], state["base_resets"]
        if (base is None) != (resets is None):
            raise ValueError(f"{WHERE}: base_thresholds and base_resets must both be lists or both None")
        if base is not None:
            for key, value in (("base_thresholds", base), ("base_resets", resets)):
                if not isinstance(value, (list, tuple)) or not value:
                    raise TypeError(f"{WHERE}: {key} must be a non-empty list (one entry per layer) or None, got {value!r}")
            if len(base) != len(resets):
                raise ValueError(f"{WHERE}: base_thresholds has {len(base)} entries, base_resets {len(resets)}")
            base = [_tensor(b, f"base_thresholds[{l}]", (0, 1)) for l, b in enumerate(base)]
            resets = [_tensor(r, f"base_resets[{l}]", (0,), optional=True) for l, r in enumerate(resets)]
        rate_ema = _tensor(state["rate_ema"], "rate_ema", (1,), optional=True, nan=True)  # NaN: not measured yet
        scales = _tensor(state["scales"], "scales", (1,), optional=True)
        if (rate_ema is None) != (scales is None):
            raise ValueError(f"{WHERE}: rate_ema and scales must both be tensors or both None (before the first pass)")
        if rate_ema is not None:
            _finite(scales, "scales")
            layers = {len(rate_ema), len(scales)} | ({len(base)} if base is not None else set())
            if len(layers) != 1:
                raise ValueError(
                    f"{WHERE}: rate_ema ({len(rate_ema)}), scales ({len(scales)})"
                    f"{'' if base is None else f' and base_thresholds ({len(base)})'} must have one entry per layer"
                )
            if not bool(((rate_ema >= 0) & (rate_ema <= 1) | torch.isnan(rate_ema)).all()) or not bool((scales > 0).all()):
                raise ValueError(
                    f"{WHERE}: rates must lie in [0, 1] and scales be > 0, got rate_ema {rate_ema.tolist()}, "
                    f"scales {scales.tolist()}"
                )
        gain = _finite(_tensor(state["gain"], "gain", (0,)), "gain")
        if not float(gain) > 0:
            raise ValueError(f"{WHERE}: gain must be > 0, got {float(gain)}")
        energy = _finite(_tensor(state["epoch_energy"], "epoch_energy", (0,)), "epoch_energy")
        if not float(energy) >= 0:
            raise ValueError(f"{WHERE}: epoch_energy must be >= 0, got {float(energy)}")
        accuracy = state["previous_accuracy"]
        if accuracy is not None:
            accuracy = check_finite_number(accuracy, "previous_accuracy", WHERE)
        return cls(
            base=None if base is None else [_copy(b, device) for b in base],
            reset_base=None if resets is None else [_copy(r, device) for r in resets],
            rate_ema=_copy(rate_ema, device),
            scales=_copy(scales, device),
            gain=_copy(gain, device),
            passes=check_nonnegative_int(state["passes"], "passes", WHERE),
            epochs=check_nonnegative_int(state["epochs"], "epochs", WHERE),
            previous_accuracy=accuracy,
            epoch_energy=_copy(energy, device),
            epoch_passes=check_nonnegative_int(state["epoch_passes"], "epoch_passes", WHERE),
        )
