"""No normalisation: the baseline every method is measured against.

``y = x``. The convolutions before it keep their bias (a normaliser's own shift would make
that bias redundant, so they drop it when there is one).
"""

from torch import nn

from .registry import NormSpec, register

SPEC = register(
    NormSpec(
        "none",
        "no normalisation",
        lambda num_features, num_steps, **neuron: nn.Identity(),
        statistics={"training": "none", "evaluation": "none", "inference": "nothing to fold"},
    )
)
