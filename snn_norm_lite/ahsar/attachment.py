"""The link between an AHSAR controller and one model: which thresholds it may write, and the way back."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from .sensing import LayerRateSensor


def check_regulable(layers: Sequence[nn.Module]) -> None:
    """Every layer must hold a fixed (not learned) floating-point tensor ``threshold``.

    >>> from snn_norm_lite.models import build_snn
    >>> check_regulable(build_snn("bn", depth=2, width=4, num_steps=2).neurons())  # no error
    """
    if not layers:
        raise ValueError("AHSAR.attach: no layers to regulate (got an empty list)")
    for i, layer in enumerate(layers):
        threshold = getattr(layer, "threshold", None)
        if isinstance(threshold, nn.Parameter):
            raise TypeError(
                f"AHSAR.attach: layer {i} ({type(layer).__name__}) learns its threshold (an nn.Parameter); "
                "AHSAR only regulates fixed thresholds (buffers)"
            )
        if not isinstance(threshold, torch.Tensor) or not threshold.is_floating_point():
            raise TypeError(
                f"AHSAR.attach: layer {i} ({type(layer).__name__}) has no floating-point tensor 'threshold' "
                f"(got {type(threshold).__name__})"
            )


class Attachment:
    """A model's regulated ``layers``, their thresholds at attach time, and the sensor's hooks.

    :meth:`write` sets the thresholds, :meth:`close` removes the hooks and restores the exact
    original thresholds. ``on_training_pass`` and ``on_rates`` go to the
    :class:`~snn_norm_lite.ahsar.sensing.LayerRateSensor`.

    >>> from snn_norm_lite.models import build_snn
    >>> model = build_snn("bn", depth=2, width=4, num_steps=2)
    >>> link = Attachment(model, model.neurons(), lambda: None, lambda r, t: None)
    >>> link.write([torch.tensor(1.0)] * 2, torch.tensor([0.5, 2.0]))
    >>> [float(n.threshold) for n in model.neurons()]
    [0.5, 2.0]
    >>> link.close(); [float(n.threshold) for n in model.neurons()]
    [1.0, 1.0]
    """

    def __init__(self, model: nn.Module, layers: Sequence[nn.Module], on_training_pass: Callable[[], None],
                 on_rates: Callable[[torch.Tensor, bool], None], sense_in_eval: bool = False):
        check_regulable(layers)
        self.model, self.layers = model, list(layers)
        self.original = [layer.threshold.detach().clone() for layer in self.layers]
        self.sensor = LayerRateSensor(model, self.layers, on_training_pass, on_rates, sense_in_eval)

    @torch.no_grad()
    def write(self, base: Sequence[torch.Tensor], factors: torch.Tensor) -> None:
        """``V_th,l = base_l * factor_l``, in place, without gradient (see the class example)."""
        for layer, b, factor in zip(self.layers, base, factors):
            torch.mul(b, factor, out=layer.threshold)

    def close(self) -> None:
        """Remove the hooks and put back the original thresholds (see the class example)."""
        self.sensor.remove()
        with torch.no_grad():
            for layer, original in zip(self.layers, self.original):
                layer.threshold.copy_(original)
