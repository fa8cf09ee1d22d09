"""Training runs regulated by an AHSAR controller (chapter 11 and the comparison of methods)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..data import load_dataset
from ..experiments import train_once
from ..probes import firing_rates, spiking_layers


@dataclass
class ControlledRun:
    """One SNN training run, with or without an AHSAR controller, and its activity per epoch.

    >>> run = ControlledRun(nn.Identity(), None, rates=[[0.1, 0.2]], thresholds=[[1.0, 1.0]], controller=None)
    >>> run.thresholds[0]
    [1.0, 1.0]
    """

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

    >>> from snn_norm_lite.ahsar import AHSAR
    >>> from snn_norm_lite.data import Split
    >>> from snn_norm_lite.experiments import TrainConfig
    >>> x, y = torch.rand(48, 1, 8, 8), torch.arange(48) % 10
    >>> split = Split("tiny", x[:32], y[:32], x[32:40], y[32:40], x[40:], y[40:], 10)
    >>> config = TrainConfig(depth=2, width=4, num_steps=2, epochs=1, batch_size=16)
    >>> run = train_with_controller("bn", 0, config, split, AHSAR(), probe_samples=8)
    >>> len(run.rates), run.thresholds[0], run.controller.epochs
    (2, [1.0, 1.0], 1)
    """
    split = load_dataset(config.dataset) if split is None else split
    probe_x = split.x_val[:probe_samples]
    rates, thresholds = [], []

    def measure(model):
        rates.append(firing_rates(model, probe_x).tolist())
        thresholds.append([float(layer.threshold) for layer in spiking_layers(model)])

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


def controller_fast_loop(model: nn.Module, controller, x: torch.Tensor, passes: int = 30, batch_size: int = 64,
                         seed: int = 0) -> dict:
    """Run only AHSAR's fast loop: ``passes`` training-mode forward passes, no gradient, no optimiser.

    Each pass takes a seeded random batch of ``batch_size`` rows of ``x``. Attaches
    ``controller`` to ``model``, and detaches it at the end (thresholds restored). Returns
    ``rate`` and ``threshold``, each a list over passes of per-layer lists: the rate a pass
    measured and the threshold it ran with.

    >>> from snn_norm_lite.ahsar import AHSAR
    >>> from snn_norm_lite.models import build_snn
    >>> model = build_snn("none", depth=2, width=4, num_steps=2, threshold=100.0)  # silent
    >>> result = controller_fast_loop(model, AHSAR(), torch.rand(16, 1, 8, 8), passes=2, batch_size=4)
    >>> [[round(t, 2) for t in pass_] for pass_ in result["threshold"]]  # the first pass: as attached
    [[100.0, 100.0], [61.92, 61.92]]
    """
    generator = torch.Generator().manual_seed(seed)
    layers = spiking_layers(model)
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
