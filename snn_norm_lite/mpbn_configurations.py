"""Train the reference MPBN network with the package's neuron or with the public code's neuron.

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
"""

from __future__ import annotations

from .data import load_dataset
from .experiments import TrainConfig, build_model, fit_model
from .norms.mpbn import use_official_neurons
from .training import seed_everything

CONFIGURATIONS = ("package", "official")


def build_mpbn_network(configuration: str, config: TrainConfig, in_channels: int = 1, image_size: int = 8):
    """The reference MPBN spiking network with the ``"package"`` or the ``"official"`` neuron."""
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
    """Train one seeded MPBN network in ``configuration``; return ``(model, history)``."""
    split = load_dataset(config.dataset) if split is None else split
    seed_everything(seed)
    model = build_mpbn_network(configuration, config, in_channels=split.image_shape[0], image_size=split.image_shape[1])
    return model, fit_model(model, config, split, seed)
