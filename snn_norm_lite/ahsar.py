"""AHSAR: a parameter-free controller that keeps every spiking layer's firing rate in a band.

Adaptive homeostatic spiking activity regulation (Chen et al., 2025, arXiv:2512.05015) adapts
the firing thresholds of a spiking network while it trains. It adds no parameter, and changes
neither the architecture, nor the loss, nor the gradients: it only reads the layers' spikes and
writes their thresholds between forward passes, the way homeostatic plasticity in cortex tunes
excitability from a neuron's recent activity.

What is published (the abstract): a per-layer homeostatic state built from layer-average firing
rates during the forward pass; smoothing and centring of those rates; a bounded nonlinearity
from centred deviations to threshold scales; diffusion of the corrections across neighbouring
layers (Laplacian smoothing over the layer index) so that no layer is corrected in isolation;
and a slow, across-epoch global gain that combines validation progress with activity energy.
The paper's equations and constants are not public. **Everything below is our design built
from that description**, not the paper's code: every constant is named, documented and a
constructor argument.

Fast timescale: after every training forward pass, for the spiking layers l = 1..L in depth
order::

    r_l      = mean spike count per neuron and step of layer l in this pass
    rbar_l  <- ema * rbar_l + (1 - ema) * r_l             (rbar_l = r_l on the first pass)
    e_l      = rbar_l - high   if rbar_l > high
               rbar_l - low    if rbar_l < low             (centring: 0 inside [low, high])
               0               otherwise
    d_l      = e_l + D * (e_{l-1} - 2 e_l + e_{l+1})       (reflecting ends: e_0 = e_1, e_{L+1} = e_L)
    scale_l  = 1 + k * tanh(d_l / width)                   (bounded: 1 - k < scale_l < 1 + k)

A layer firing above the band gets a higher threshold (it fires less), one below it a lower
threshold. ``D <= 1/2`` keeps the diffusion step a weighted average of neighbours.

Slow timescale: at the end of every epoch (``on_epoch``, e.g. ``training.fit(on_epoch=...)``)::

    energy  = mean over the epoch's training passes of  mean_l r_l^2      (activity energy)
    z       = (energy - energy_target) / energy_target + accuracy_weight * (acc - acc_previous)
    gain   <- clip(gain * exp(gain_rate * tanh(z)), gain_min, gain_max)

(``acc`` is the validation accuracy in percent, the last entry of ``history.val_accuracy``;
the accuracy term is 0 on the first epoch or without a validation loader. The test set never
reaches the controller: ``training.fit`` measures it once, after the last epoch.) Activity above its
energy budget raises all thresholds; a rise in validation accuracy lets the controller trim
activity a little further, a fall gives activity back. Each step changes the gain by at most
a factor ``exp(gain_rate)``.

Thresholds: at the start of every training forward pass, under ``torch.no_grad``::

    V_th,l = base_l * scale_l * gain

with ``base_l`` the layer's threshold when the controller was attached. Writing at the start
of a pass (never between a forward pass and its backward pass) means a pass is computed, and
differentiated, with one fixed set of thresholds: exactly the network you would get by setting
those thresholds by hand. Thresholds change at most once per training forward pass. In
evaluation mode nothing is written and, unless ``sense_in_eval=True``, nothing is measured.

The controller attaches to any module with a tensor ``threshold`` (this package's
``MultiStepLeaky``, ``snntorch.Leaky``), found through ``model.neurons()`` when the model has it
and by type otherwise, through forward hooks: the model's code is not changed. A model whose
forward pass calls a layer once per time step (snntorch style) is handled: the rate of a pass
averages all calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import nn

DEFAULTS = dict(
    target_low=0.05,  # lower edge of the target firing-rate band (spikes per neuron per step)
    target_high=0.25,  # upper edge of the band
    ema=0.9,  # smoothing of the measured rates, per training pass (time constant ~ 1/(1-ema) passes)
    diffusion=0.25,  # Laplacian coupling D between neighbouring layers, in [0, 1/2]
    strength=0.5,  # k: thresholds are scaled by at most 1 +- k by the fast loop
    width=0.05,  # rate deviation at which tanh reaches 0.76 of its bound
    gain_rate=0.05,  # largest change of log(gain) per epoch
    gain_min=0.5,  # bounds of the global gain
    gain_max=2.0,
    energy_target=None,  # mean squared rate the slow loop aims at; None: ((low + high) / 2)^2
    accuracy_weight=0.1,  # weight of one percentage point of validation-accuracy change in z
    sense_in_eval=False,  # measure rates in evaluation passes too (never updates the state)
    record_history=True,  # keep per-pass rates, scales and gain for plotting
)


def find_spiking_layers(model: nn.Module) -> list[nn.Module]:
    """The model's layers with a firing threshold, in depth order.

    ``model.neurons()`` when the model defines it, otherwise every submodule with a tensor
    attribute ``threshold``, in registration order.
    """
    if hasattr(model, "neurons"):
        return list(model.neurons())
    return [m for m in model.modules() if m is not model and isinstance(getattr(m, "threshold", None), torch.Tensor)]


def band_deviation(rates: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``e = rate - high`` above the band, ``rate - low`` below it, ``0`` inside."""
    return (rates - high).clamp(min=0) + (rates - low).clamp(max=0)


def diffuse(values: torch.Tensor, coefficient: float) -> torch.Tensor:
    """One explicit Laplacian step over the layer index, reflecting ends: ``v + D * (v[l-1] - 2 v[l] + v[l+1])``."""
    padded = torch.cat([values[:1], values, values[-1:]])
    return values + coefficient * (padded[:-2] - 2 * values + padded[2:])


def threshold_scale(deviation: torch.Tensor, strength: float, width: float) -> torch.Tensor:
    """``1 + k * tanh(d / width)``: a bounded map from rate deviations to threshold scales."""
    return 1 + strength * torch.tanh(deviation / width)


class AHSAR:
    """Threshold controller (our design of AHSAR; equations in the module docstring).

    Usage::

        controller = AHSAR()                  # every constant is a keyword argument
        controller.attach(model)
        fit(model, train_loader, val_loader, test_loader=test_loader, on_epoch=controller.on_epoch)
        controller.history                    # per-pass rates, scales, gain, for plots
        controller.detach()                   # original thresholds back, hooks removed

    Args (defaults in ``DEFAULTS``):
        target_low, target_high: the target band of layer firing rates, ``0 <= low <= high <= 1``.
        ema: smoothing of the rates per pass, in [0, 1).
        diffusion: Laplacian coupling D across layers, in [0, 1/2].
        strength: k in (0, 1): the fast loop scales thresholds within (1 - k, 1 + k).
        width: > 0, the deviation scale of the tanh.
        gain_rate: >= 0, the largest change of log(gain) per epoch.
        gain_min, gain_max: bounds of the global gain, ``0 < gain_min <= 1 <= gain_max``.
        energy_target: the mean squared rate the slow loop aims at (None: mid-band squared).
        accuracy_weight: weight of one percentage point of validation-accuracy change.
        sense_in_eval: also measure rates in evaluation passes (``last_rates``); no update.
        record_history: keep the per-pass history.
    """

    def __init__(self, **config):
        unknown = set(config) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"AHSAR: unknown argument(s) {sorted(unknown)}; known: {', '.join(DEFAULTS)}")
        self._set_config({**DEFAULTS, **config})
        self._model: Optional[nn.Module] = None
        self._layers: list[nn.Module] = []
        self._handles = []
        self._reset_state()

    # -- configuration ---------------------------------------------------------------------

    def _set_config(self, config: dict) -> None:
        number = lambda key: _number(config[key], key)  # noqa: E731
        low, high = number("target_low"), number("target_high")
        if not 0 <= low <= high <= 1:
            raise ValueError(f"AHSAR: need 0 <= target_low <= target_high <= 1, got [{low}, {high}]")
        checks = {
            "ema": lambda v: 0 <= v < 1,
            "diffusion": lambda v: 0 <= v <= 0.5,
            "strength": lambda v: 0 < v < 1,
            "width": lambda v: v > 0,
            "gain_rate": lambda v: v >= 0,
            "accuracy_weight": lambda v: v >= 0,
        }
        ranges = {"ema": "[0, 1)", "diffusion": "[0, 0.5]", "strength": "(0, 1)", "width": "> 0", "gain_rate": ">= 0",
                  "accuracy_weight": ">= 0"}
        for key, ok in checks.items():
            if not ok(number(key)):
                raise ValueError(f"AHSAR: {key} must be {ranges[key]}, got {config[key]}")
        gain_min, gain_max = number("gain_min"), number("gain_max")
        if not 0 < gain_min <= 1 <= gain_max:
            raise ValueError(f"AHSAR: need 0 < gain_min <= 1 <= gain_max, got {gain_min}, {gain_max}")
        if config["energy_target"] is not None and not number("energy_target") > 0:
            raise ValueError(f"AHSAR: energy_target must be positive or None, got {config['energy_target']}")
        self.config = dict(config)
        for key, value in config.items():
            setattr(self, key, value)

    @property
    def energy_budget(self) -> float:
        """The energy target in use: ``energy_target`` or ``((low + high) / 2)^2``."""
        if self.energy_target is not None:
            return float(self.energy_target)
        return ((self.target_low + self.target_high) / 2) ** 2

    def __repr__(self) -> str:
        state = f"attached to {len(self._layers)} layers" if self.attached else "detached"
        return f"AHSAR({', '.join(f'{k}={v}' for k, v in self.config.items())}; {state})"

    # -- attaching -------------------------------------------------------------------------

    @property
    def attached(self) -> bool:
        return self._model is not None

    def attach(self, model: nn.Module, layers: Optional[Sequence[nn.Module]] = None) -> "AHSAR":
        """Hook into ``model``'s spiking layers (``layers``, or found by :func:`find_spiking_layers`).

        Records each layer's threshold as its base (and, separately, to restore on
        :meth:`detach`). The first pass after attaching runs with exactly those thresholds.
        """
        if self.attached:
            raise RuntimeError("AHSAR.attach: this controller is already attached; detach() it first")
        if not isinstance(model, nn.Module):
            raise TypeError(f"AHSAR.attach: expected an nn.Module, got {type(model).__name__}")
        layers = find_spiking_layers(model) if layers is None else list(layers)
        if not layers:
            raise TypeError(f"AHSAR.attach: {type(model).__name__} has no layers with a threshold tensor to regulate")
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
        if self._base is not None and len(self._base) != len(layers):
            raise ValueError(
                f"AHSAR.attach: the loaded state is for {len(self._base)} layers, the model has {len(layers)}"
            )
        self._model, self._layers = model, layers
        self._original = [layer.threshold.detach().clone() for layer in layers]
        if self._base is None:
            self._base = [t.clone() for t in self._original]
        device = layers[0].threshold.device
        self._move_state(device)
        self._handles = [model.register_forward_pre_hook(self._make_begin_hook(model))]
        self._handles.append(model.register_forward_hook(self._make_end_hook(model)))
        for index, layer in enumerate(layers):
            self._handles.append(layer.register_forward_hook(self._make_sense_hook(layer, index)))
        return self

    def detach(self) -> None:
        """Remove the hooks and put back the exact thresholds the layers had at :meth:`attach`.

        The controller keeps its state, so attaching it again resumes; :meth:`reset` forgets it.
        """
        if not self.attached:
            return
        for handle in self._handles:
            handle.remove()
        with torch.no_grad():
            for layer, original in zip(self._layers, self._original):
                layer.threshold.copy_(original)
        self._model, self._layers, self._handles, self._original = None, [], [], []

    # -- state -----------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget all state (base thresholds, rates, scales, gain, history); only when detached."""
        if self.attached:
            raise RuntimeError("AHSAR.reset: detach() the controller first")
        self._reset_state()

    def _reset_state(self) -> None:
        self._base: Optional[list[torch.Tensor]] = None  # thresholds the scales multiply
        self._original: list[torch.Tensor] = []
        self.rate_ema: Optional[torch.Tensor] = None  # [L], rbar
        self.scales: Optional[torch.Tensor] = None  # [L], scale_l
        self.gain = torch.tensor(1.0)
        self.passes = 0  # training passes seen
        self.epochs = 0  # on_epoch calls seen
        self._previous_accuracy: Optional[float] = None
        self._epoch_energy = torch.tensor(0.0)
        self._epoch_passes = 0
        self.last_rates: Optional[torch.Tensor] = None
        self._records: dict[str, list] = {"rate": [], "rate_ema": [], "scale": [], "gain": []}
        self._epoch_records: dict[str, list] = {"gain": [], "energy": [], "accuracy_change": []}
        self._sensing = False
        self._sums: list = []
        self._calls: list[int] = []

    def _move_state(self, device) -> None:
        self.gain = self.gain.to(device)
        self._epoch_energy = self._epoch_energy.to(device)
        if self.rate_ema is not None:
            self.rate_ema, self.scales = self.rate_ema.to(device), self.scales.to(device)
        self._base = [b.to(device) for b in self._base]

    def state_dict(self) -> dict:
        """Everything needed to resume: configuration, base thresholds and controller state."""
        clone = lambda t: None if t is None else t.detach().clone()  # noqa: E731
        return {
            "config": dict(self.config),
            "base_thresholds": None if self._base is None else [clone(b) for b in self._base],
            "rate_ema": clone(self.rate_ema),
            "scales": clone(self.scales),
            "gain": clone(self.gain),
            "passes": self.passes,
            "epochs": self.epochs,
            "previous_accuracy": self._previous_accuracy,
            "epoch_energy": clone(self._epoch_energy),
            "epoch_passes": self._epoch_passes,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` (attached or not; the history is not part of the state)."""
        base = state["base_thresholds"]
        if self.attached and base is not None and len(base) != len(self._layers):
            raise ValueError(f"AHSAR.load_state_dict: state for {len(base)} layers, attached to {len(self._layers)}")
        self._set_config(state["config"])
        device = self._layers[0].threshold.device if self.attached else None
        to = lambda t: None if t is None else t.detach().clone().to(device or t.device)  # noqa: E731
        self._base = None if base is None else [to(b) for b in base]
        if self._base is None and self.attached:
            self._base = [t.clone() for t in self._original]
        self.rate_ema, self.scales, self.gain = to(state["rate_ema"]), to(state["scales"]), to(state["gain"])
        self.passes, self.epochs = int(state["passes"]), int(state["epochs"])
        self._previous_accuracy = state["previous_accuracy"]
        self._epoch_energy, self._epoch_passes = to(state["epoch_energy"]), int(state["epoch_passes"])

    # -- the hooks (hot path: no host synchronisation) --------------------------------------

    def _make_begin_hook(self, model):
        def begin(module, args):
            if module is not model:  # a deep copy of the model: not regulated
                return
            self._sensing = module.training or self.sense_in_eval
            if self._sensing:
                self._sums = [None] * len(self._layers)
                self._calls = [0] * len(self._layers)
            if module.training:
                self._write_thresholds()

        return begin

    def _make_sense_hook(self, layer, index):
        def sense(module, args, output):
            if module is not layer or not self._sensing:
                return
            spikes = output[0] if isinstance(output, tuple) else output
            rate = spikes.detach().float().mean()
            self._sums[index] = rate if self._sums[index] is None else self._sums[index] + rate
            self._calls[index] += 1

        return sense

    def _make_end_hook(self, model):
        def end(module, args, output):
            if module is not model or not self._sensing:
                return
            self._sensing = False
            if 0 in self._calls:  # a layer did not run in this pass: no complete measurement
                return
            rates = torch.stack([s / c for s, c in zip(self._sums, self._calls)])
            self.last_rates = rates
            if module.training:
                self._update(rates)

        return end

    @torch.no_grad()
    def _update(self, rates: torch.Tensor) -> None:
        """The fast loop: EMA, centring, diffusion and the bounded map (module docstring)."""
        if self.rate_ema is None:
            self.rate_ema = rates.clone()
        else:
            self.rate_ema.mul_(self.ema).add_(rates, alpha=1 - self.ema)
        deviation = diffuse(band_deviation(self.rate_ema, self.target_low, self.target_high), self.diffusion)
        self.scales = threshold_scale(deviation, self.strength, self.width)
        self._epoch_energy = self._epoch_energy + rates.square().mean()
        self._epoch_passes += 1
        self.passes += 1
        if self.record_history:
            for key, value in (("rate", rates), ("rate_ema", self.rate_ema.clone()), ("scale", self.scales),
                               ("gain", self.gain.clone())):
                self._records[key].append(value)

    @torch.no_grad()
    def _write_thresholds(self) -> None:
        if self.scales is None:
            factors = self.gain.expand(len(self._layers))
        else:
            factors = self.scales * self.gain
        for layer, base, factor in zip(self._layers, self._base, factors):
            torch.mul(base, factor, out=layer.threshold)

    # -- the slow loop ---------------------------------------------------------------------

    def on_epoch(self, model: nn.Module, history=None) -> None:
        """End-of-epoch global gain step from the activity energy and the validation accuracy.

        Signature of ``training.fit``'s ``on_epoch(model, history)``; ``history`` needs a
        ``val_accuracy`` list (may be empty or None): the controller steers by validation data
        only. The new gain takes effect at the next
        training pass.
        """
        if model is not self._model:
            raise ValueError("AHSAR.on_epoch: called with a model this controller is not attached to")
        accuracies = getattr(history, "val_accuracy", None) or []
        accuracy = float(accuracies[-1]) if accuracies else None
        change = 0.0
        if accuracy is not None and self._previous_accuracy is not None:
            change = accuracy - self._previous_accuracy
        if accuracy is not None:
            self._previous_accuracy = accuracy
        if self._epoch_passes == 0:
            energy = self.energy_budget  # no training pass this epoch: the energy term is 0
        else:
            energy = (self._epoch_energy / self._epoch_passes).item()
        drive = (energy - self.energy_budget) / self.energy_budget + self.accuracy_weight * change
        new_gain = float(self.gain) * math.exp(self.gain_rate * math.tanh(drive))
        self.gain.fill_(min(max(new_gain, self.gain_min), self.gain_max))
        self._epoch_energy.zero_()
        self._epoch_passes = 0
        self.epochs += 1
        self._epoch_records["gain"].append(float(self.gain))
        self._epoch_records["energy"].append(energy)
        self._epoch_records["accuracy_change"].append(change)

    # -- reading it ------------------------------------------------------------------------

    def thresholds(self) -> list[torch.Tensor]:
        """The thresholds the next training pass will use, ``base_l * scale_l * gain``, one per layer."""
        if self._base is None:
            raise RuntimeError("AHSAR.thresholds: attach the controller to a model first")
        scales = torch.ones(len(self._base), device=self.gain.device) if self.scales is None else self.scales
        return [base * s * self.gain for base, s in zip(self._base, scales)]

    @property
    def history(self) -> dict[str, list]:
        """Per training pass: ``rate``, ``rate_ema``, ``scale`` (lists of per-layer lists) and
        ``gain``; per epoch: ``epoch_gain``, ``epoch_energy``, ``epoch_accuracy_change``."""
        out = {}
        for key, values in self._records.items():
            out[key] = torch.stack(values).tolist() if values else []
        for key, values in self._epoch_records.items():
            out[f"epoch_{key}"] = list(values)
        return out


def _number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"AHSAR: {name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"AHSAR: {name} must be finite, got {value}")
    return float(value)


# -- training runs regulated by a controller (chapter 11 and the comparison) -----------------


@dataclass
class ControlledRun:
    """One SNN training run, with or without an AHSAR controller, and its activity per epoch."""

    model: nn.Module
    history: object  # training.History
    rates: list[list[float]]  # per epoch (index 0: before training): firing rate of each layer
    thresholds: list[list[float]]  # per epoch (index 0: before training): threshold of each layer
    controller: object | None  # the (still attached) AHSAR controller, or None


def train_with_controller(norm: str, seed: int, config, split=None, controller=None, probe_samples: int = 256) -> ControlledRun:
    """Train the reference SNN as :func:`~snn_norm_lite.experiments.train_once` does, optionally
    regulated by ``controller``.

    ``controller`` (e.g. ``AHSAR(...)``, not attached) is attached to the freshly built model
    before training and its ``on_epoch`` runs after every epoch. Before training and after every
    epoch the firing rate of each layer is measured on the first ``probe_samples`` validation
    images (evaluation mode), together with the thresholds the layers hold. The controller's
    slow loop reads the validation accuracy only; the test accuracy is measured once, after
    training. The controller is left attached, so the returned model keeps the thresholds it
    trained with.
    """
    from .data import load_dataset
    from .experiments import train_once
    from .probes import firing_rates

    split = load_dataset(config.dataset) if split is None else split
    probe_x = split.x_val[:probe_samples]
    rates, thresholds = [], []

    def measure(model):
        rates.append(firing_rates(model, probe_x).tolist())
        thresholds.append([float(layer.threshold) for layer in find_spiking_layers(model)])

    def prepare(model):
        if controller is not None:
            controller.attach(model)
        measure(model)

    def on_epoch(model, history):
        if controller is not None:
            controller.on_epoch(model, history)
        measure(model)

    model, history = train_once("snn", norm, seed, config, split, prepare=prepare, on_epoch=on_epoch)
    return ControlledRun(model, history, rates, thresholds, controller)


def controller_fast_loop(model: torch.nn.Module, controller, x: torch.Tensor, passes: int = 30, batch_size: int = 64,
                         seed: int = 0) -> dict:
    """Run only AHSAR's fast loop: ``passes`` training-mode forward passes, no gradient, no optimiser.

    Each pass takes a seeded random batch of ``batch_size`` rows of ``x``. Attaches
    ``controller`` to ``model``, and detaches it at the end (thresholds restored). Returns
    ``rate`` and ``threshold``, each a list over passes of per-layer lists: the rate a pass
    measured and the threshold it ran with.
    """
    generator = torch.Generator().manual_seed(seed)
    layers = find_spiking_layers(model)
    controller.attach(model)
    rates, thresholds = [], []
    was_training = model.training
    model.train()
    try:
        with torch.no_grad():
            for _ in range(passes):
                batch = x[torch.randint(0, len(x), (batch_size,), generator=generator)]
                model(batch)  # the controller writes the thresholds at the start of the pass
                thresholds.append([float(layer.threshold) for layer in layers])
                rates.append(controller.last_rates.tolist())
    finally:
        model.train(was_training)
        controller.detach()
    return {"rate": rates, "threshold": thresholds}
