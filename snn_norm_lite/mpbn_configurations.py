"""MPBN (chapter 7): the package's neuron against the public code's, and folding for inference.

Two configurations of the same network (``build_snn("mpbn", ...)``):

* ``"package"``: :class:`~snn_norm_lite.norms.MPBNLeaky` with the book's reference neuron
  (leak ``config.beta``, threshold ``config.threshold``, subtractive reset, arctan surrogate).
* ``"official"``: every neuron replaced by :meth:`MPBNLeaky.official`, the neuron of the
  authors' public code (https://github.com/yfguo91/MPBN, ``models/spike_layer.py``)::

      u_t = 0.25 * u_{t-1} * (1 - s_{t-1}) + x_t,     s_t = H(BN(u_t) - 0.5)

  with its clipped-tanh surrogate and the gradient through the reset.

For one seed both start from the same convolution and read-out weights and see the data in
the same order: building the network draws the same random numbers, and swapping the neurons
draws none. Training and evaluation are those of :func:`~snn_norm_lite.experiments.train_once`
(validation accuracy per epoch, the test set measured once after the last epoch).

:func:`mpbn_fold_check` folds a trained network's membrane BatchNorms into per-channel
thresholds (:func:`~snn_norm_lite.norms.fold_mpbn`) and checks, spike for spike, that the folded
network computes the same thing, and times both.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch

from .experiments import TrainConfig, build_model, train_once
from .norms.mpbn import fold_mpbn, use_official_neurons
from .probes import spiking_layers
from .timing import median_seconds

CONFIGURATIONS = ("package", "official")


def build_mpbn_network(configuration: str, config: TrainConfig, in_channels: int = 1, image_size: int = 8):
    """The reference MPBN spiking network with the ``"package"`` or the ``"official"`` neuron.

    >>> config = TrainConfig(depth=2, width=4, num_steps=2)
    >>> build_mpbn_network("official", config).blocks[0].neuron.beta
    0.25
    >>> build_mpbn_network("package", config).blocks[0].neuron.beta
    0.9
    """
    if configuration not in CONFIGURATIONS:
        raise ValueError(
            f"build_mpbn_network: configuration must be one of {', '.join(map(repr, CONFIGURATIONS))}, "
            f"got {configuration!r}"
        )
    model = build_model("snn", "mpbn", config, in_channels=in_channels, image_size=image_size)
    if configuration == "official":
        use_official_neurons(model)
    return model


def train_mpbn(configuration: str, seed: int, config: TrainConfig, split=None):
    """Train one seeded MPBN network in ``configuration``; return ``(model, history)``.

    >>> from snn_norm_lite.data import load_digits
    >>> config = TrainConfig(depth=2, width=4, num_steps=2, epochs=1, batch_size=32)
    >>> model, history = train_mpbn("official", 0, config, load_digits().subset(64, 32, 32))
    >>> model.blocks[0].neuron.reset, len(history.val_accuracy)
    ('zero', 1)
    """
    if configuration not in CONFIGURATIONS:
        raise ValueError(
            f"train_mpbn: configuration must be one of {', '.join(map(repr, CONFIGURATIONS))}, got {configuration!r}"
        )
    prepare = use_official_neurons if configuration == "official" else None
    return train_once("snn", "mpbn", seed, config, split, prepare=prepare)


@dataclass
class FoldCheck:
    """An evaluation-mode MPBN network against its folded copy on the same inputs.

    >>> _ = torch.manual_seed(0)
    >>> check = mpbn_fold_check(build_mpbn_network("package", TrainConfig(depth=2, width=4, num_steps=2)),
    ...                         torch.rand(8, 1, 8, 8), repeats=1)
    >>> check.layers_identical, check.predictions_identical
    ([True, True], True)
    """

    layers_identical: list[bool]  # per spiking layer: every spike equal
    spikes_per_layer: list[int]  # spikes the unfolded network emitted, per layer
    predictions_identical: bool
    max_logit_difference: float
    unfolded_seconds: float  # median forward time of the whole network
    folded_seconds: float
    unfolded_neuron_seconds: float  # median time of the neurons alone (every layer, recorded currents)
    folded_neuron_seconds: float


@torch.no_grad()
def mpbn_fold_check(model, x: torch.Tensor, repeats: int = 5) -> FoldCheck:
    """Fold ``model``'s MPBN neurons (:func:`fold_mpbn`) and compare the two networks on ``x``.

    Both run in evaluation mode. Forward hooks record every spiking layer's output (and input
    current); the spikes are compared exactly. Then both networks, and their neurons alone on
    the recorded currents, are timed: median of ``repeats`` runs each, interleaved.
    ``model``'s training mode is restored afterwards.

    >>> _ = torch.manual_seed(0)
    >>> model = build_mpbn_network("official", TrainConfig(depth=2, width=4, num_steps=2))
    >>> check = mpbn_fold_check(model, torch.rand(8, 1, 8, 8), repeats=1)
    >>> all(check.layers_identical), check.max_logit_difference
    (True, 0.0)
    """
    was_training = model.training
    model.eval()
    folded = fold_mpbn(model)
    try:
        runs = []
        for network in (model, folded):
            layers = spiking_layers(network)
            records = [dict() for _ in layers]
            handles = [
                layer.register_forward_hook(lambda m, i, o, r=r: r.update(current=i[0], spikes=o))
                for layer, r in zip(layers, records)
            ]
            try:
                logits = network(x)
            finally:
                for handle in handles:
                    handle.remove()
            runs.append((layers, records, logits))
        (layers, records, logits), (folded_layers, folded_records, folded_logits) = runs
        identical = [torch.equal(a["spikes"], b["spikes"]) for a, b in zip(records, folded_records)]
        spikes = [int(r["spikes"].sum().item()) for r in records]
        timings = {"model": [], "folded": [], "neurons": [], "folded_neurons": []}
        jobs = {
            "model": lambda: model(x),
            "folded": lambda: folded(x),
            "neurons": lambda: [layer(r["current"]) for layer, r in zip(layers, records)],
            "folded_neurons": lambda: [layer(r["current"]) for layer, r in zip(folded_layers, records)],
        }
        for _ in range(repeats):
            for key, job in jobs.items():
                timings[key].append(median_seconds(job, 1))
        return FoldCheck(
            identical,
            spikes,
            bool(torch.equal(logits.argmax(dim=1), folded_logits.argmax(dim=1))),
            float((logits - folded_logits).abs().max().item()),
            statistics.median(timings["model"]),
            statistics.median(timings["folded"]),
            statistics.median(timings["neurons"]),
            statistics.median(timings["folded_neurons"]),
        )
    finally:
        model.train(was_training)
