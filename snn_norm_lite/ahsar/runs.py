"""Training runs regulated by an AHSAR controller (chapter 11 and the comparison of methods)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..checks import check_floating, check_nonnegative_int, check_positive_int
from ..data import Split, load_dataset
from ..experiments import TrainConfig, train_once
from ..norms.registry import available_norms
from ..probes import firing_rates, spiking_layers
from .attachment import firing_threshold
from .controller import AHSAR


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
    thresholds: list[list]  # per epoch (index 0: before training): firing threshold of each layer (a float)
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

    Arguments are checked before anything is built: ``norm`` a registered name, ``seed`` an
    int >= 0, ``config`` a ``TrainConfig``, ``split`` a ``Split`` or None, ``controller`` a
    detached ``AHSAR`` or None, ``probe_samples`` an int >= 1 (a split with fewer validation
    images is probed on all of them).

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
    where = "train_with_controller"
    if not isinstance(norm, str):
        raise TypeError(f"{where}: norm must be a registry name (str), got {type(norm).__name__} {norm!r}")
    if norm not in available_norms():
        raise ValueError(f"{where}: unknown norm {norm!r}; registered: {', '.join(available_norms())}")
    seed = check_nonnegative_int(seed, "seed", where)
    if not isinstance(config, TrainConfig):
        raise TypeError(f"{where}: config must be a TrainConfig, got {type(config).__name__}")
    if split is not None and not isinstance(split, Split):
        raise TypeError(f"{where}: split must be a data.Split or None, got {type(split).__name__}")
    _check_controller(controller, where, optional=True)
    probe_samples = check_positive_int(probe_samples, "probe_samples", where)
    split = load_dataset(config.dataset) if split is None else split
    probe_x = split.x_val[:probe_samples]
    rates, thresholds = [], []

    def measure(model):
        rates.append(firing_rates(model, probe_x).tolist())
        thresholds.append([firing_threshold(layer).tolist() for layer in spiking_layers(model)])

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
    measured and the firing threshold it ran with (a float; a list of per-channel floats for a
    folded MPBN neuron).

    Checked first: ``model`` an ``nn.Module``, ``controller`` a detached ``AHSAR``, ``x`` a
    floating-point tensor with at least one row, ``passes`` and ``batch_size`` ints >= 1,
    ``seed`` an int >= 0.

    >>> from snn_norm_lite.ahsar import AHSAR
    >>> from snn_norm_lite.models import build_snn
    >>> model = build_snn("none", depth=2, width=4, num_steps=2, threshold=100.0)  # silent
    >>> result = controller_fast_loop(model, AHSAR(), torch.rand(16, 1, 8, 8), passes=2, batch_size=4)
    >>> [[round(t, 2) for t in pass_] for pass_ in result["threshold"]]  # the first pass: as attached
    [[100.0, 100.0], [61.92, 61.92]]
    """
    where = "controller_fast_loop"
    if not isinstance(model, nn.Module):
        raise TypeError(f"{where}: model must be an nn.Module, got {type(model).__name__}")
    _check_controller(controller, where, optional=False)
    check_floating(x, where)
    if x.dim() == 0 or len(x) == 0:
        raise ValueError(f"{where}: x must hold at least one input row, got shape {tuple(x.shape)}")
    passes = check_positive_int(passes, "passes", where)
    batch_size = check_positive_int(batch_size, "batch_size", where)
    seed = check_nonnegative_int(seed, "seed", where)
    generator = torch.Generator().manual_seed(seed)
    controller.attach(model)
    layers = controller.layers
    rates, thresholds = [], []
    was_training = model.training
    model.train()
    try:
        with torch.no_grad():
            for _ in range(passes):
                batch = x[torch.randint(0, len(x), (batch_size,), generator=generator)]
                model(batch)  # the controller writes the thresholds at the start of the pass
                thresholds.append([firing_threshold(layer).tolist() for layer in layers])
                if controller.last_rates is None:
                    raise RuntimeError(f"{where}: a training pass of {type(model).__name__} did not run every regulated layer")
                rates.append(controller.last_rates.tolist())
    finally:
        model.train(was_training)
        controller.detach()
    return {"rate": rates, "threshold": thresholds}


def _check_controller(controller, where: str, optional: bool) -> None:
    if controller is None and optional:
        return
    if not isinstance(controller, AHSAR):
        raise TypeError(f"{where}: controller must be an AHSAR{' or None' if optional else ''}, got {type(controller).__name__}")
    if controller.attached:
        raise RuntimeError(f"{where}: the controller is already attached to a model; pass a detached one (detach() it first)")
