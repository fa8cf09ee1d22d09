"""The AHSAR controller: the control law and its state, linked to one model by an attachment."""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import torch
from torch import nn

from ..checks import check_finite_number
from ..probes import spiking_layers
from .attachment import Attachment, check_base_values, firing_threshold, reset_threshold
from .config import AHSARConfig
from .control import accuracy_change, epoch_energy, fast_scales, gain_step, pass_energy, smooth_rates
from .state import STATE_KEYS, WHERE, ControllerState, check_keys
from .trace import Trace


class AHSAR:
    """Threshold controller (our design of AHSAR; equations in :mod:`snn_norm_lite.ahsar`).

    ``AHSAR(config=None, **overrides)``: the constants are ``config`` (an :class:`AHSARConfig`,
    default ``AHSARConfig()``) with ``overrides`` applied, e.g. ``AHSAR(target_low=0.1)``.
    :meth:`attach` hooks a model, :meth:`on_epoch` is the slow loop (``training.fit``'s
    ``on_epoch``), :attr:`history` the record, :meth:`detach` puts the thresholds back.

    One controller per model: attaching a second controller to a model (or to a layer) that one
    already regulates raises ``RuntimeError``, as does attaching a controller twice. A model
    with a controller attached can be deep-copied, pickled and saved (``torch.save(model)``);
    the copy keeps the thresholds it had but is not regulated (its hooks are inert, see
    :class:`~snn_norm_lite.ahsar.sensing.SensorHook`). To resume regulation after loading, save
    :meth:`state_dict` too and attach a new controller that loads it. The controller itself is
    pickled only while detached.

    Folded MPBN neurons (``fold_mpbn``) fire by a per-channel ``fire_threshold``: that is the
    threshold the controller scales, and their reset value ``threshold`` is scaled by the same
    factor, which equals feeding the layer ``1/factor`` times its input current (see
    :mod:`~snn_norm_lite.ahsar.attachment`; layers with a channel that fires at rest are refused).

    >>> from snn_norm_lite.models import build_snn
    >>> model = build_snn("none", depth=2, width=4, num_steps=2, threshold=100.0)  # a silent network
    >>> controller = AHSAR(ema=0.5).attach(model)
    >>> _ = model.train()(torch.rand(4, 1, 8, 8))  # one training pass, measured
    >>> [round(float(t), 2) for t in controller.thresholds()]  # silent: thresholds come down
    [61.92, 61.92]
    """

    def __init__(self, config: Optional[AHSARConfig] = None, **overrides):
        if config is not None and not isinstance(config, AHSARConfig):
            raise TypeError(f"AHSAR: config must be an AHSARConfig or None, got {type(config).__name__}")
        self._config = (config if config is not None else AHSARConfig()).replace(**overrides)
        self._link: Optional[Attachment] = None  # the model, its layers and hooks, while attached
        self._forget()

    def _forget(self) -> None:
        self.state, self._trace = ControllerState(), Trace()
        self.last_rates: Optional[torch.Tensor] = None  # rates of the last measured pass

    def __repr__(self) -> str:
        state = f"attached to {len(self.layers)} layers" if self.attached else "detached"
        values = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(self.config).items())
        return f"AHSAR({values}; {state})"

    # -- views of the configuration and the state ---------------------------------------------

    config = property(lambda self: self._config, doc="The constants (an AHSARConfig; replaced only by load_state_dict).")
    rate_ema = property(lambda self: self.state.rate_ema, doc="Smoothed rates ``rbar_l`` ([L]), None before a pass.")
    scales = property(lambda self: self.state.scales, doc="Fast-loop scales ``scale_l`` ([L]), None before a pass.")
    gain = property(lambda self: self.state.gain, doc="The slow loop's global gain (0-d tensor).")
    passes = property(lambda self: self.state.passes, doc="Training passes seen.")
    epochs = property(lambda self: self.state.epochs, doc="Slow-loop steps taken.")
    energy_budget = property(lambda self: self.config.energy_budget, doc="``E*`` in use (AHSARConfig.energy_budget).")
    attached = property(lambda self: self._link is not None, doc="Whether the controller is attached to a model.")
    layers = property(lambda self: list(self._link.layers) if self._link else [], doc="The regulated layers, in order.")

    # -- attaching ------------------------------------------------------------------------------

    def attach(self, model: nn.Module, layers: Optional[Sequence[nn.Module]] = None) -> "AHSAR":
        """Hook into ``model``'s spiking layers (``layers``, or :func:`~snn_norm_lite.probes.spiking_layers`).

        Records each layer's threshold as its base (unless a loaded state brings one) and,
        separately, to restore on :meth:`detach`. The first pass runs with those thresholds.

        >>> from snn_norm_lite.models import build_snn
        >>> controller = AHSAR().attach(build_snn("bn", depth=2, width=4, num_steps=2))
        >>> controller.attached, len(controller.layers)
        (True, 2)
        """
        if self.attached:
            raise RuntimeError(
                f"AHSAR.attach: this controller is already attached (to a {type(self._link.model).__name__}); "
                "detach() it first"
            )
        if not isinstance(model, nn.Module):
            raise TypeError(f"AHSAR.attach: expected an nn.Module, got {type(model).__name__}")
        if layers is not None and isinstance(layers, nn.Module) and not isinstance(layers, nn.ModuleList):
            raise TypeError(f"AHSAR.attach: layers must be a list of modules or None, got a {type(layers).__name__}")
        layers = spiking_layers(model) if layers is None else list(layers)
        if self.state.base is not None:
            _check_base_fits(self.state, layers, "AHSAR.attach: the loaded state")
        link = Attachment(model, layers, self._write_thresholds, self._on_rates, self.config.sense_in_eval)
        self._link = link
        if self.state.base is None:
            self.state.base = [t.clone() for t in link.original]
            self.state.reset_base = [None if r is None else r.clone() for r in link.original_reset]
        self.state.to(link.device)
        return self

    def detach(self) -> None:
        """Remove the hooks and put back the exact thresholds the layers had at :meth:`attach`.

        The controller keeps its state, so attaching again resumes; :meth:`reset` forgets it.

        >>> from snn_norm_lite.models import build_snn
        >>> controller = AHSAR().attach(build_snn("bn", depth=2, width=4, num_steps=2))
        >>> controller.detach(); controller.attached
        False
        """
        if self.attached:
            self._link.close()
            self._link = None

    # -- the fast loop (hot path: no host synchronisation) ----------------------------------

    @torch.no_grad()
    def _write_thresholds(self) -> None:
        """At the start of a training pass: ``V_th,l = base_l * scale_l * gain``."""
        state = self.state
        if state.device != self._link.device:  # the model was moved after attaching (a Python check, no sync)
            state.to(self._link.device)
        factors = state.gain.expand(len(state.base)) if state.scales is None else state.scales * state.gain
        self._link.write(state.base, state.reset_base, factors)

    @torch.no_grad()
    def _on_rates(self, rates: torch.Tensor, training: bool) -> None:
        """At the end of a measured pass; a training pass updates the fast loop's state."""
        self.last_rates = rates
        if not training:
            return
        state = self.state
        state.rate_ema = smooth_rates(state.rate_ema, rates, self.config.ema)
        state.scales = fast_scales(state.rate_ema, self.config)
        state.epoch_energy = state.epoch_energy + pass_energy(rates, self.config.energy_budget)
        state.epoch_passes += 1
        state.passes += 1
        if self.config.record_history:
            self._trace.add_pass(rates, state.rate_ema, state.scales, state.gain)

    # -- the slow loop ------------------------------------------------------------------------

    def on_epoch(self, model: nn.Module, history=None) -> None:
        """End-of-epoch gain step from the activity energy and the validation accuracy.

        The signature of ``training.fit``'s ``on_epoch(model, history)``. ``history`` needs a
        ``val_accuracy`` list (may be empty, or ``history`` None): the controller steers by
        validation data only. The new gain takes effect at the next training pass.

        >>> from snn_norm_lite.models import build_snn
        >>> model = build_snn("bn", depth=2, width=4, num_steps=2)
        >>> controller = AHSAR(gain_rate=0.1).attach(model)
        >>> controller.on_epoch(model, None)  # no pass this epoch, no accuracy: the gain stays
        >>> controller.history["epoch_gain"]
        [1.0]
        """
        if not self.attached or model is not self._link.model:
            raise ValueError("AHSAR.on_epoch: called with a model this controller is not attached to")
        if history is not None and not isinstance(getattr(history, "val_accuracy", None), (list, tuple)):
            raise TypeError(
                f"AHSAR.on_epoch: history must be None or have a val_accuracy list (a training.History), "
                f"got {type(history).__name__}"
            )
        accuracies = [] if history is None else history.val_accuracy
        accuracy = check_finite_number(accuracies[-1], "the last val_accuracy", "AHSAR.on_epoch") if accuracies else None
        state = self.state
        change = accuracy_change(state.previous_accuracy, accuracy)
        if accuracy is not None:
            state.previous_accuracy = accuracy
        energy = epoch_energy(state.epoch_energy, state.epoch_passes, self.config.energy_budget)
        state.gain.fill_(gain_step(float(state.gain), energy, change, self.config))
        state.epoch_energy.zero_()
        state.epoch_passes = 0
        state.epochs += 1
        self._trace.add_epoch(float(state.gain), energy, change)

    # -- reading and saving it -------------------------------------------------------------------

    def thresholds(self) -> list[torch.Tensor]:
        """The thresholds the next training pass will use, ``base_l * scale_l * gain``, one per layer.

        The firing thresholds: a 0-d tensor per layer, ``[C]`` for a folded MPBN neuron (whose
        reset value is scaled by the same factor).

        >>> from snn_norm_lite.models import build_snn
        >>> AHSAR().attach(build_snn("bn", depth=2, width=4, num_steps=2, threshold=0.5)).thresholds()
        [tensor(0.5000), tensor(0.5000)]
        """
        base = self.state.base
        if base is None:
            raise RuntimeError("AHSAR.thresholds: attach the controller to a model first")
        scales = torch.ones(len(base), device=self.gain.device) if self.scales is None else self.scales
        return [b * s * self.gain for b, s in zip(base, scales)]

    @property
    def history(self) -> dict[str, list]:
        """Per training pass ``rate``, ``rate_ema``, ``scale`` (lists of per-layer lists) and
        ``gain``; per epoch ``epoch_gain``, ``epoch_energy``, ``epoch_accuracy_change``."""
        return self._trace.as_dict()

    def reset(self) -> None:
        """Forget all state (base thresholds, rates, scales, gain, history); only when detached.

        >>> controller = AHSAR()
        >>> controller.reset(); controller.passes
        0
        """
        if self.attached:
            raise RuntimeError("AHSAR.reset: detach() the controller first")
        self._forget()

    def state_dict(self) -> dict:
        """Everything needed to resume: the configuration (a dict), base thresholds and state.

        >>> AHSAR(ema=0.5).state_dict()["config"]["ema"]
        0.5
        """
        return {"config": dataclasses.asdict(self.config), **self.state.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`, attached or not (the history is not part of the state).

        Checked before anything changes: exactly the keys of :meth:`state_dict` (a ``ValueError``
        lists the missing and unknown ones), a complete, valid ``config``, tensors and counts of
        the right type and shape, a gain within the config's bounds and, when attached, base
        thresholds that fit the layers. A failed load leaves the controller as it was.

        >>> resumed = AHSAR()
        >>> resumed.load_state_dict(AHSAR(ema=0.5).state_dict()); resumed.config.ema
        0.5
        >>> resumed.load_state_dict({"config": {}})
        Traceback (most recent call last):
            ...
        ValueError: AHSAR.load_state_dict: missing key(s) ['base_resets', 'base_thresholds', ...
        """
        check_keys(state, ("config",) + STATE_KEYS)
        fields = [f.name for f in dataclasses.fields(AHSARConfig)]
        check_keys(state["config"], fields, f"{WHERE}: config")
        config = AHSARConfig(**state["config"])
        link = self._link
        rest = {key: value for key, value in state.items() if key != "config"}
        loaded = ControllerState.from_state_dict(rest, link.device if link else None)
        low, high = (torch.tensor(v, dtype=loaded.gain.dtype) for v in (config.gain_min, config.gain_max))
        if not low <= loaded.gain.cpu() <= high:
            raise ValueError(
                f"{WHERE}: gain {float(loaded.gain)} lies outside [gain_min, gain_max] = "
                f"[{float(low)}, {float(high)}] of its config"
            )
        if link is not None:
            if loaded.base is None:
                loaded.base = [t.clone() for t in link.original]
                loaded.reset_base = [None if r is None else r.clone() for r in link.original_reset]
            _check_base_fits(loaded, link.layers, f"{WHERE}: the state")
        self._config, self.state = config, loaded
        if link is not None:
            link.sensor.sense_in_eval = config.sense_in_eval

    def __getstate__(self):
        if self.attached:
            raise TypeError(
                "AHSAR: an attached controller cannot be pickled or copied (it holds hooks on its model); "
                "save controller.state_dict() instead, or detach() it first"
            )
        return self.__dict__


def _check_base_fits(state: ControllerState, layers: Sequence[nn.Module], where: str) -> None:
    """Raise ``ValueError`` unless the state's base thresholds match ``layers`` one for one."""
    if len(state.base) != len(layers):
        raise ValueError(f"{where} is for {len(state.base)} layers, the model has {len(layers)}")
    if state.rate_ema is not None and len(state.rate_ema) != len(layers):
        raise ValueError(f"{where} has rates for {len(state.rate_ema)} layers, the model has {len(layers)}")
    for i, (layer, base, reset) in enumerate(zip(layers, state.base, state.reset_base)):
        firing = firing_threshold(layer)
        if base.shape != firing.shape or (reset is None) != (reset_threshold(layer) is None):
            raise ValueError(
                f"{where}: layer {i} ({type(layer).__name__}) fires by a threshold of shape {tuple(firing.shape)}"
                f"{'' if reset_threshold(layer) is None else ' with a separate reset value'}; the state has "
                f"shape {tuple(base.shape)}{'' if reset is None else ' with a separate reset value'}"
            )
        check_base_values(i, layer, base, reset, where)
