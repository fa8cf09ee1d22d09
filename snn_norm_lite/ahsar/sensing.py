"""AHSAR's sensor: forward hooks that measure every spiking layer's firing rate in a forward pass."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import nn

from ..distributed import average_over_processes


class SensorHook:
    """One forward hook of a :class:`LayerRateSensor`: ``role`` is ``"begin"`` (the model's
    pre-hook), ``"end"`` (the model's hook) or ``"layer"`` (the hook of layer ``index``).

    A small callable object rather than a closure, so that a model carrying it can be pickled
    and saved (``torch.save(model)``). Copies never regulate anything:

    * ``copy.deepcopy(model)`` shares this very object (``__deepcopy__`` returns it), which
      still refers to the original model and layers, so it ignores the copy's passes;
    * pickling stores an inert hook (``sensor`` None): a loaded model runs exactly as the saved
      one with the thresholds it was saved with, and is neither measured nor regulated.

    >>> import pickle
    >>> hook = pickle.loads(pickle.dumps(SensorHook(None, "begin")))
    >>> hook.sensor is None, hook(nn.Identity(), ())  # inert: does nothing
    (True, None)
    """

    ROLES = ("begin", "end", "layer")

    def __init__(self, sensor: Optional["LayerRateSensor"], role: str, index: Optional[int] = None):
        if role not in self.ROLES:
            raise ValueError(f"SensorHook: role must be one of {self.ROLES}, got {role!r}")
        self.sensor, self.role, self.index = sensor, role, index

    def __call__(self, module, args, output=None):
        sensor = self.sensor
        if sensor is None:
            return None
        if self.role == "begin":
            sensor._begin(module)
        elif self.role == "end":
            sensor._end(module)
        else:
            sensor._sense(self.index, module, output)
        return None

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        return (type(self), (None, self.role, self.index))

    @property
    def live(self) -> bool:
        """Whether this hook still belongs to a sensor that has not been removed."""
        return self.sensor is not None and bool(self.sensor._handles)


def sensors_on(module: nn.Module) -> list["LayerRateSensor"]:
    """The live sensors that measure ``module``, as their model or as one of their layers.

    Hooks that only a copy carries (a deep copy, a loaded model) do not count: they refer to
    another module.

    >>> from snn_norm_lite.models import build_snn
    >>> model = build_snn("none", depth=2, width=4, num_steps=2)
    >>> sensor = LayerRateSensor(model, model.neurons(), lambda: None, lambda r, t: None)
    >>> sensors_on(model) == [sensor], sensors_on(model.neurons()[1]) == [sensor]
    (True, True)
    >>> sensor.remove(); sensors_on(model)
    []
    """
    found = []
    for hook in list(module._forward_pre_hooks.values()) + list(module._forward_hooks.values()):
        if not isinstance(hook, SensorHook) or not hook.live:
            continue
        sensor = hook.sensor
        mine = sensor.model is module if hook.role != "layer" else sensor.layers[hook.index] is module
        if mine and sensor not in found:
            found.append(sensor)
    return found


class LayerRateSensor:
    """Hooks on ``model`` and its spiking ``layers`` that measure one rate per layer and pass.

    ``r_l`` is the mean of the layer's output spikes (spikes per neuron and step; a NaN spike,
    which a NaN membrane gives, makes the rate NaN, which the controller treats as no
    measurement for that layer in that pass); a layer the
    forward pass calls once per time step (snntorch style) is averaged over its calls. At the
    start of a training pass ``on_training_pass()`` runs (the controller writes thresholds
    there, never between a forward pass and its backward pass); at the end of a measured pass
    ``on_rates(rates, training)`` receives the ``[L]`` rates. Training passes are measured,
    evaluation passes only with ``sense_in_eval``; a pass in which a layer did not run gives
    no measurement. The hooks do not synchronise with the device. In a data-parallel run a
    training pass's rates are averaged over the processes (each holds an equal part of the
    global batch), so every process's controller sees the rates of the whole batch. Copies of ``model`` (deep
    copies, pickled or saved models) carry the hooks but are neither measured nor regulated
    (see :class:`SensorHook`). :meth:`remove` takes them off.

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
        self._handles = [
            model.register_forward_pre_hook(SensorHook(self, "begin")),
            model.register_forward_hook(SensorHook(self, "end")),
        ]
        self._handles += [layer.register_forward_hook(SensorHook(self, "layer", i)) for i, layer in enumerate(self.layers)]

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

    def _begin(self, module: nn.Module) -> None:
        if module is not self.model:  # a copy of the model
            return
        self._measuring = module.training or self.sense_in_eval
        if self._measuring:
            self._sums, self._calls = [None] * len(self.layers), [0] * len(self.layers)
        if module.training:
            self._on_training_pass()

    def _sense(self, index: int, module: nn.Module, output) -> None:
        if module is not self.layers[index] or not self._measuring:
            return
        spikes = output[0] if isinstance(output, tuple) else output
        rate = spikes.detach().float().mean()  # NaN if any spike is NaN: no measurement for this layer
        self._sums[index] = rate if self._sums[index] is None else self._sums[index] + rate
        self._calls[index] += 1

    def _end(self, module: nn.Module) -> None:
        if module is not self.model or not self._measuring:
            return
        self._measuring = False
        if 0 in self._calls:  # a layer did not run in this pass: no complete measurement
            return
        rates = torch.stack([s / c for s, c in zip(self._sums, self._calls)])
        if module.training:  # data-parallel: every process regulates by the rates of the whole global batch
            rates = average_over_processes(rates)
        self._on_rates(rates, module.training)
