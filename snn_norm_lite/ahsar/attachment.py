"""The link between an AHSAR controller and one model: which thresholds it may write, and the way back.

Which tensor a layer fires by:

* a neuron with one threshold (this package's ``MultiStepLeaky`` and ``MPBNLeaky``,
  ``snntorch.Leaky``): its ``threshold``, which is also the value its reset subtracts;
* a folded MPBN neuron (:class:`~snn_norm_lite.norms.mpbn.FoldedMPBNLeaky`, made by
  ``fold_mpbn``): its per-channel ``fire_threshold`` ``V~_c`` decides firing (``u > V~_c``, or
  ``u < V~_c`` where ``fire_direction`` is -1), and its ``threshold`` is only the reset value
  ``V_th``. The controller multiplies *both* by the same factor ``f``:
  ``V~_c <- f * V~0_c`` and ``V_th <- f * V_th0``. That is exactly the layer fed the input
  current ``x / f`` (the raw membrane scales by ``1/f``, with either reset), the same thing a
  factor ``f`` does to a neuron with one threshold. A higher factor makes a channel fire less
  only where ``fire_direction * V~0 > 0``; a channel that fires at rest (``u = 0``) would fire
  *more*, so a folded layer with such a finite channel is refused. Channels with ``V~ = +-inf``
  (never or always fire) stay as they are.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import nn

from ..norms.mpbn import FoldedMPBNLeaky
from .sensing import LayerRateSensor, sensors_on


def firing_threshold(layer: nn.Module) -> torch.Tensor:
    """The tensor that decides when ``layer`` fires: ``fire_threshold`` (``[C]``) of a folded MPBN
    neuron, ``threshold`` of any other.

    >>> from snn_norm_lite.norms.mpbn import MPBNLeaky
    >>> from snn_norm_lite.neurons import MultiStepLeaky
    >>> firing_threshold(MultiStepLeaky(threshold=0.5)), firing_threshold(MPBNLeaky(2).fold()).shape
    (tensor(0.5000), torch.Size([2]))
    """
    if isinstance(layer, FoldedMPBNLeaky):
        return layer.fire_threshold
    return layer.threshold


def reset_threshold(layer: nn.Module) -> Optional[torch.Tensor]:
    """A reset value separate from the firing threshold, scaled with it (a folded MPBN neuron's
    ``threshold``), or None when the firing threshold is also the reset.

    >>> from snn_norm_lite.norms.mpbn import MPBNLeaky
    >>> from snn_norm_lite.neurons import MultiStepLeaky
    >>> reset_threshold(MultiStepLeaky()) is None, reset_threshold(MPBNLeaky(2, threshold=0.5).fold())
    (True, tensor(0.5000))
    """
    if isinstance(layer, FoldedMPBNLeaky):
        return layer.threshold
    return None


def _describe(i: int, layer: nn.Module) -> str:
    return f"layer {i} ({type(layer).__name__})"


def check_regulable(layers: Sequence[nn.Module]) -> None:
    """Every layer must fire by a fixed (not learned), finite, floating-point tensor that scaling
    up makes fire less: a positive ``threshold``, or, in a folded MPBN neuron, per-channel
    ``fire_threshold`` values with ``fire_direction * fire_threshold > 0`` (or infinite).

    >>> from snn_norm_lite.models import build_snn
    >>> check_regulable(build_snn("bn", depth=2, width=4, num_steps=2).neurons())  # no error
    >>> from snn_norm_lite.neurons import MultiStepLeaky
    >>> layer = MultiStepLeaky()
    >>> _ = layer.threshold.fill_(-1.0)
    >>> check_regulable([layer])
    Traceback (most recent call last):
        ...
    ValueError: AHSAR.attach: layer 0 (MultiStepLeaky) has threshold -1.0; AHSAR scales thresholds, ...
    """
    if not layers:
        raise ValueError("AHSAR.attach: no layers to regulate (got an empty list)")
    for i, layer in enumerate(layers):
        if not isinstance(layer, nn.Module):
            raise TypeError(f"AHSAR.attach: layer {i} must be an nn.Module, got {type(layer).__name__}")
        tensors = [("threshold", getattr(layer, "threshold", None))]
        if isinstance(layer, FoldedMPBNLeaky):
            tensors.append(("fire_threshold", layer.fire_threshold))
        for name, tensor in tensors:
            if isinstance(tensor, nn.Parameter):
                raise TypeError(
                    f"AHSAR.attach: {_describe(i, layer)} learns its {name} (an nn.Parameter); "
                    "AHSAR only regulates fixed thresholds (buffers)"
                )
            if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
                raise TypeError(
                    f"AHSAR.attach: {_describe(i, layer)} has no floating-point tensor {name!r} "
                    f"(got {type(tensor).__name__})"
                )
        check_base_values(i, layer, firing_threshold(layer), reset_threshold(layer))


def check_base_values(i: int, layer: nn.Module, firing: torch.Tensor, reset: Optional[torch.Tensor],
                      where: str = "AHSAR.attach") -> None:
    """Refuse thresholds the control law cannot scale correctly (see :func:`check_regulable`).

    >>> from snn_norm_lite.neurons import MultiStepLeaky
    >>> check_base_values(0, MultiStepLeaky(), torch.tensor(0.5), None)  # no error
    """
    where = f"{where}: {_describe(i, layer)}"
    if isinstance(layer, FoldedMPBNLeaky):
        if torch.isnan(firing).any():
            raise ValueError(f"{where} has NaN in fire_threshold {firing.tolist()}")
        signed = (layer.fire_direction.to(firing.device, firing.dtype) * firing).cpu()
        wrong = [c for c, v in enumerate(signed.tolist()) if v <= 0 and v != float("-inf")]
        if wrong:
            raise ValueError(
                f"{where}: channels {wrong} fire at rest or at the threshold 0 (fire_direction * fire_threshold "
                f"= {[signed[c].item() for c in wrong]}, need > 0); scaling their threshold up would make them "
                "fire more, or change nothing, instead of less. Regulate the unfolded network (MPBNLeaky) "
                "instead, or pass layers=[...] without this layer"
            )
        if reset is None or reset.dim() != 0 or not bool(torch.isfinite(reset)) or not float(reset) > 0:
            raise ValueError(f"{where} needs a positive finite reset threshold, got {reset}")
        return
    if firing.dim() != 0:
        raise ValueError(
            f"{where} has a threshold of shape {tuple(firing.shape)}; AHSAR regulates one threshold per layer "
            "(a 0-d tensor)"
        )
    value = float(firing)
    if not (value > 0 and value != float("inf")):
        raise ValueError(
            f"{where} has threshold {value}; AHSAR scales thresholds, which needs a positive finite one "
            "(a larger threshold must mean fewer spikes)"
        )


class Attachment:
    """A model's regulated ``layers``, their thresholds at attach time, and the sensor's hooks.

    :meth:`write` sets the thresholds, :meth:`close` removes the hooks and restores the exact
    original thresholds. ``on_training_pass`` and ``on_rates`` go to the
    :class:`~snn_norm_lite.ahsar.sensing.LayerRateSensor`. ``original`` holds each layer's
    :func:`firing_threshold` at attach time, ``original_reset`` its :func:`reset_threshold`
    (None for a layer whose firing threshold is its reset). Refuses a model or a layer that
    another controller's live hooks already regulate, and layers that are not part of ``model``.

    >>> from snn_norm_lite.models import build_snn
    >>> model = build_snn("bn", depth=2, width=4, num_steps=2)
    >>> link = Attachment(model, model.neurons(), lambda: None, lambda r, t: None)
    >>> link.write([torch.tensor(1.0)] * 2, [None] * 2, torch.tensor([0.5, 2.0]))
    >>> [float(n.threshold) for n in model.neurons()]
    [0.5, 2.0]
    >>> link.close(); [float(n.threshold) for n in model.neurons()]
    [1.0, 1.0]
    """

    def __init__(self, model: nn.Module, layers: Sequence[nn.Module], on_training_pass: Callable[[], None],
                 on_rates: Callable[[torch.Tensor, bool], None], sense_in_eval: bool = False):
        layers = list(layers)
        check_regulable(layers)
        name = type(model).__name__
        members = {id(m) for m in model.modules()}
        for i, layer in enumerate(layers):
            if id(layer) not in members:
                raise ValueError(f"AHSAR.attach: {_describe(i, layer)} is not a submodule of the {name} being attached to")
        if len({id(layer) for layer in layers}) != len(layers):
            raise ValueError("AHSAR.attach: the same layer appears twice in layers")
        if sensors_on(model):
            raise RuntimeError(
                f"AHSAR.attach: this {name} already has an AHSAR controller attached; detach() that controller "
                "first (two controllers would both write its thresholds)"
            )
        for i, layer in enumerate(layers):
            if sensors_on(layer):
                raise RuntimeError(
                    f"AHSAR.attach: {_describe(i, layer)} of this {name} is already regulated by another AHSAR "
                    "controller (attached to a model that contains it); detach() that controller first"
                )
        self.model, self.layers = model, layers
        self.original = [firing_threshold(layer).detach().clone() for layer in layers]
        self.original_reset = [None if reset_threshold(layer) is None else reset_threshold(layer).detach().clone()
                               for layer in layers]
        self.sensor = LayerRateSensor(model, layers, on_training_pass, on_rates, sense_in_eval)

    @property
    def device(self) -> torch.device:
        """The device of the (first) regulated threshold."""
        return firing_threshold(self.layers[0]).device

    @torch.no_grad()
    def write(self, base: Sequence[torch.Tensor], reset_base: Sequence[Optional[torch.Tensor]], factors: torch.Tensor) -> None:
        """``V_l = base_l * factor_l`` (and ``reset_l = reset_base_l * factor_l`` where a layer has a
        separate reset value), in place, without gradient (see the class example)."""
        for layer, b, r, factor in zip(self.layers, base, reset_base, factors):
            torch.mul(b, factor, out=firing_threshold(layer))
            if r is not None:
                torch.mul(r, factor, out=reset_threshold(layer))

    def close(self) -> None:
        """Remove the hooks and put back the original thresholds (see the class example)."""
        self.sensor.remove()
        with torch.no_grad():
            for layer, original, reset in zip(self.layers, self.original, self.original_reset):
                firing_threshold(layer).copy_(original)
                if reset is not None:
                    reset_threshold(layer).copy_(reset)
