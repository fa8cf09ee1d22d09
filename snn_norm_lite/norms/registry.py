"""One registry of normalisation methods, so models, widgets and the CLI switch them by name.

An entry says how to build the layer that sits between a convolution and its neuron:

* ``build(num_features, num_steps)`` returns an ``nn.Module``. ``num_steps=None`` asks for the
  conventional-network form (input ``[B, C, H, W]``); an int asks for the spiking form (input
  ``[T, B, C, H, W]`` with ``T == num_steps`` where the method depends on T).
* ``neuron`` is ``None`` for methods that leave the neuron alone, or a builder
  ``neuron(num_features, beta=..., threshold=...)`` for methods that live inside the neuron
  (MPBN normalises the membrane potential).
* ``circuit`` is True for methods that replace the whole convolution-norm block rather than
  add a layer (the E-I circuit). For those, ``build`` builds the whole spiking network:
  ``build(depth=..., width=..., num_steps=..., **kwargs)``, and ``models.build_snn`` calls it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from torch import nn


@dataclass(frozen=True)
class NormSpec:
    """What the registry knows about one method."""

    name: str
    summary: str
    build: Callable[[int, Optional[int]], nn.Module]
    spiking_only: bool = False
    neuron: Optional[Callable[..., nn.Module]] = None
    circuit: bool = False


_REGISTRY: dict[str, NormSpec] = {}


def register(spec: NormSpec) -> NormSpec:
    """Add a method to the registry; a name can be registered only once."""
    if spec.name in _REGISTRY:
        raise ValueError(f"normaliser {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def available_norms() -> list[str]:
    """Names of every registered method, in registration order."""
    return list(_REGISTRY)


def get_spec(name: str) -> NormSpec:
    """The registry entry for ``name``; ``ValueError`` listing the known names otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"normaliser name must be a str, got {type(name).__name__}")
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown normaliser {name!r}; registered: {', '.join(_REGISTRY)}") from None


def build_norm(name: str, num_features: int, num_steps: Optional[int] = None) -> nn.Module:
    """Build the layer registered as ``name`` for ``num_features`` channels.

    ``num_steps=None`` builds the conventional-network form; an int the spiking form.
    """
    spec = get_spec(name)
    if spec.circuit:
        raise ValueError(
            f"{name!r} is a circuit that replaces the convolution and its normalisation; "
            "build the whole network with snn_norm_lite.models.build_snn instead"
        )
    if spec.spiking_only and num_steps is None:
        raise ValueError(f"{name!r} is a spiking-network normaliser: pass num_steps (the number of time steps T)")
    return spec.build(num_features, num_steps)
