"""AHSAR's sensor: forward hooks that measure every spiking layer's firing rate in a forward pass."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn


class LayerRateSensor:
    """Hooks on ``model`` and its spiking ``layers`` that measure one rate per layer and pass.

    ``r_l`` is the mean of the layer's output spikes (spikes per neuron and step); a layer the
    forward pass calls once per time step (snntorch style) is averaged over its calls. At the
    start of a training pass ``on_training_pass()`` runs (the controller writes thresholds
    there, never between a forward pass and its backward pass); at the end of a measured pass
    ``on_rates(rates, training)`` receives the ``[L]`` rates. Training passes are measured,
    evaluation passes only with ``sense_in_eval``; a pass in which a layer did not run gives
    no measurement. The hooks do not synchronise with the device. Deep copies of ``model``
    carry the hooks but are neither measured nor regulated. :meth:`remove` takes them off.

    >>> from snn_norm_lite.models import build_snn
    >>> model = build_snn("none", depth=2, width=4, num_steps=2, threshold=100.0)  # silent
    >>> seen = []
    >>> sensor = LayerRateSensor(model, model.neurons(), lambda: None, lambda r, t: seen.append(r))
    >>> _ = model.train()(torch.rand(3, 1, 8, 8))
    >>> seen
    [tensor([0., 0.])]
    >>> sensor.remove()
    """

    def __init__(self, model: nn.Module, layers: Sequence[nn.Module], on_training_pass: Callable[[], None],
                 on_rates: Callable[[torch.Tensor, bool], None], sense_in_eval: bool = False):
        self.model, self.layers, self.sense_in_eval = model, list(layers), sense_in_eval
        self._on_training_pass, self._on_rates = on_training_pass, on_rates
        self._measuring = False
        self._sums: list = []
        self._calls: list[int] = []
        # closures, not bound methods: a deep copy of the model copies its hooks, and a copied
        # closure still refers to this sensor and this model, so the copy is recognised and skipped
        self._handles = [model.register_forward_pre_hook(self._begin_hook()), model.register_forward_hook(self._end_hook())]
        self._handles += [layer.register_forward_hook(self._layer_hook(i, layer)) for i, layer in enumerate(self.layers)]

    def remove(self) -> None:
        """Take every hook off the model and its layers.

        >>> from snn_norm_lite.models import build_snn
        >>> model = build_snn("bn", depth=2, width=4, num_steps=2)
        >>> LayerRateSensor(model, model.neurons(), lambda: None, lambda r, t: None).remove()
        >>> len(model._forward_hooks), len(model._forward_pre_hooks)
        (0, 0)
        """
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _begin_hook(self):
        def begin(module, args):
            if module is not self.model:  # a deep copy of the model
                return
            self._measuring = module.training or self.sense_in_eval
            if self._measuring:
                self._sums, self._calls = [None] * len(self.layers), [0] * len(self.layers)
            if module.training:
                self._on_training_pass()

        return begin

    def _layer_hook(self, index: int, layer: nn.Module):
        def sense(module, args, output):
            if module is not layer or not self._measuring:
                return
            spikes = output[0] if isinstance(output, tuple) else output
            rate = spikes.detach().float().mean()
            self._sums[index] = rate if self._sums[index] is None else self._sums[index] + rate
            self._calls[index] += 1

        return sense

    def _end_hook(self):
        def end(module, args, output):
            if module is not self.model or not self._measuring:
                return
            self._measuring = False
            if 0 in self._calls:  # a layer did not run in this pass: no complete measurement
                return
            self._on_rates(torch.stack([s / c for s, c in zip(self._sums, self._calls)]), module.training)

        return end
