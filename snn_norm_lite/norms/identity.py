"""No normalisation: the baseline every method is measured against.

``y = x``. The convolutions before it keep their bias (a normaliser's own shift would make
that bias redundant, so they drop it when there is one). In a spiking network the layer still
checks that it receives a sequence ``[T, B, C, ...]`` with at least one step.
"""

import torch
from torch import nn

from .registry import NormSpec, register
from ..checks import check_floating


class SequenceIdentity(nn.Identity):
    """``y = x`` for a sequence ``[T, B, C, ...]`` of floating values with ``T >= 1``.

    It has no state and no statistics; it only refuses what no normaliser in its place would
    accept (an integer tensor, fewer than 3 dimensions, zero time steps).

    >>> x = torch.randn(4, 2, 3, 5, 5)
    >>> SequenceIdentity()(x) is x
    True
    >>> SequenceIdentity()(torch.zeros(0, 2, 3, 5, 5))
    Traceback (most recent call last):
        ...
    ValueError: SequenceIdentity: got a sequence of 0 time steps (input shape (0, 2, 3, 5, 5)); T must be >= 1
    """

    def __init__(self):  # no arguments (nn.Identity accepts and ignores any)
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        name = type(self).__name__
        check_floating(x, name)
        if x.dim() < 3:
            raise ValueError(f"{name}: expected a sequence [T, B, C, ...], got shape {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError(f"{name}: got a sequence of 0 time steps (input shape {tuple(x.shape)}); T must be >= 1")
        return x


def _build(num_features, num_steps, **neuron):
    return nn.Identity() if num_steps is None else SequenceIdentity()


SPEC = register(
    NormSpec(
        "none",
        "no normalisation",
        _build,
        statistics={"training": "none", "evaluation": "none", "inference": "nothing to fold"},
    )
)
