"""One registry of normalisation methods, so models, widgets, the CLI and the comparison switch
them by name.

Each method's module (``norms/<method>.py``) defines its layers and ends with one
``register(NormSpec(...))``; a method defined outside the package is added the same way, with
one call, and is then usable by :func:`snn_norm_lite.models.build_snn`, the command line
(``--plugin your.module``) and :func:`snn_norm_lite.comparison.compare_methods`.

An entry says how to build the layer that sits between a convolution and its neuron:

* ``build(num_features, num_steps, *, threshold, beta, **options)`` returns an ``nn.Module``.
  ``num_steps=None`` asks for the conventional-network form (input ``[B, C, H, W]``); an int
  asks for the spiking form (input ``[T, B, C, H, W]`` with ``T == num_steps`` where the method
  depends on T). ``threshold`` and ``beta`` are those of the neurons the layer feeds (tdBN scales
  its output to the threshold); a method that does not need them accepts and ignores them
  (``**neuron``). ``options`` are the method's own hyperparameters, only those named in
  ``NormSpec.options`` (e.g. tdBN's ``alpha``).
* ``neuron`` is ``None`` for methods that leave the neuron alone, or a builder
  ``neuron(num_features, *, threshold, beta)`` for methods that live inside the neuron (MPBN
  normalises the membrane potential).
* ``circuit`` is True for methods that replace the whole convolution-norm block rather than add
  a layer (the E-I circuit). For those, ``build`` builds the whole spiking network:
  ``build(depth=..., width=..., num_steps=..., **kwargs)``, and ``models.build_snn`` calls it.
* ``spiking_only`` is True for methods with no conventional-network form (they need T).
* ``statistics`` (optional) says in words what the method normalises with in ``"training"``,
  in ``"evaluation"``, and what is left of it at ``"inference"`` (folding); the comparison
  prints it next to each row.

Example, a plugin (any module can do this; the test suite does it from a test file):

>>> import torch
>>> from torch import nn
>>> from snn_norm_lite.norms import NormSpec, build_norm, register, unregister
>>> from snn_norm_lite.sequences import over_time
>>> class StepGroupNorm(nn.GroupNorm):          # GroupNorm on every step of [T, B, C, H, W]
...     def forward(self, x):
...         return over_time(super().forward, x) if x.dim() == 5 else super().forward(x)
>>> spec = register(NormSpec("groupnorm4", "GroupNorm with 4 groups on every time step",
...                          lambda num_features, num_steps, **neuron: StepGroupNorm(4, num_features)))
>>> build_norm("groupnorm4", 16, num_steps=3)(torch.randn(3, 2, 16, 8, 8)).shape
torch.Size([3, 2, 16, 8, 8])
>>> unregister("groupnorm4")

``examples/step_groupnorm.py`` in the repository is the same method as a module, with its
equation and an option; the README walks through adding a method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional

from torch import nn

from ..checks import check_positive_int, check_positive_number, check_unit_interval

NEURON_DEFAULTS = {"threshold": 1.0, "beta": 0.9}  # the book's LIF neuron
STATISTICS_KEYS = ("training", "evaluation", "inference")  # what NormSpec.statistics describes


@dataclass(frozen=True)
class NormSpec:
    """What the registry knows about one method (see the module docstring for each field).

    >>> spec = NormSpec("scaled", "multiply by 2", lambda num_features, num_steps, **neuron: nn.Identity())
    >>> spec.spiking_only, spec.options
    (False, ())
    >>> NormSpec("two words", "bad name", lambda *args, **kwargs: nn.Identity())
    Traceback (most recent call last):
        ...
    ValueError: NormSpec: name must be a non-empty str without commas or spaces, got 'two words'
    """

    name: str
    summary: str
    build: Callable[..., nn.Module]
    spiking_only: bool = False
    neuron: Optional[Callable[..., nn.Module]] = None
    circuit: bool = False
    options: tuple[str, ...] = ()
    statistics: Optional[Mapping[str, str]] = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name or any(c in self.name for c in ", \t\n"):
            raise ValueError(f"NormSpec: name must be a non-empty str without commas or spaces, got {self.name!r}")
        if not isinstance(self.summary, str) or not self.summary:
            raise ValueError(f"NormSpec {self.name!r}: summary must be a non-empty str, got {self.summary!r}")
        if not callable(self.build):
            raise TypeError(f"NormSpec {self.name!r}: build must be callable, got {type(self.build).__name__}")
        if self.neuron is not None and not callable(self.neuron):
            raise TypeError(f"NormSpec {self.name!r}: neuron must be callable or None, got {type(self.neuron).__name__}")
        for flag in ("spiking_only", "circuit"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"NormSpec {self.name!r}: {flag} must be a bool, got {getattr(self, flag)!r}")
        if not isinstance(self.options, tuple) or not all(isinstance(o, str) for o in self.options):
            raise TypeError(f"NormSpec {self.name!r}: options must be a tuple of str, got {self.options!r}")
        if self.statistics is not None:
            if not isinstance(self.statistics, Mapping) or set(self.statistics) != set(STATISTICS_KEYS) or not all(
                isinstance(v, str) and v for v in self.statistics.values()
            ):
                raise ValueError(
                    f"NormSpec {self.name!r}: statistics must map exactly {', '.join(STATISTICS_KEYS)} to non-empty "
                    f"texts, got {self.statistics!r}"
                )


_REGISTRY: dict[str, NormSpec] = {}


def register(spec: NormSpec) -> NormSpec:
    """Add a method to the registry and return its spec; a name can be registered only once.

    >>> spec = register(NormSpec("demo_identity", "no-op", lambda num_features, num_steps, **neuron: nn.Identity()))
    >>> "demo_identity" in available_norms()
    True
    >>> register(spec)
    Traceback (most recent call last):
        ...
    ValueError: normaliser 'demo_identity' is already registered
    >>> unregister("demo_identity")
    """
    if not isinstance(spec, NormSpec):
        raise TypeError(f"register: expected a NormSpec, got {type(spec).__name__}")
    if spec.name in _REGISTRY:
        raise ValueError(f"normaliser {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a method from the registry (a plugin's, e.g. at the end of a test).

    >>> _ = register(NormSpec("demo_plugin", "no-op", lambda num_features, num_steps, **neuron: nn.Identity()))
    >>> unregister("demo_plugin")
    >>> "demo_plugin" in available_norms()
    False
    """
    get_spec(name)
    del _REGISTRY[name]


def available_norms(kind: str | None = None) -> list[str]:
    """Names of the registered methods, in registration order.

    ``kind="ann"``: only those with a conventional-network form; ``kind="snn"`` or None: all.

    >>> available_norms("ann")[:3]
    ['none', 'bn', 'homeostatic']
    >>> "tdbn" in available_norms("ann"), "tdbn" in available_norms("snn")
    (False, True)
    """
    if kind not in (None, "ann", "snn"):
        raise ValueError(f"available_norms: kind must be None, 'ann' or 'snn', got {kind!r}")
    if kind == "ann":
        return [name for name, spec in _REGISTRY.items() if not (spec.spiking_only or spec.circuit)]
    return list(_REGISTRY)


def get_spec(name: str) -> NormSpec:
    """The registry entry for ``name``; ``ValueError`` listing the known names otherwise.

    >>> get_spec("tdbn").options
    ('alpha',)
    >>> get_spec("batchnorm")
    Traceback (most recent call last):
        ...
    ValueError: unknown normaliser 'batchnorm'; registered: ...
    """
    if not isinstance(name, str):
        raise TypeError(f"normaliser name must be a str, got {type(name).__name__}")
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown normaliser {name!r}; registered: {', '.join(_REGISTRY)}") from None


def check_options(spec: NormSpec, options: dict) -> None:
    """Refuse options the method does not declare (nothing is silently ignored).

    >>> check_options(get_spec("tdbn"), {"alpha": 0.7})
    >>> check_options(get_spec("bntt"), {"alpha": 0.7})
    Traceback (most recent call last):
        ...
    ValueError: normaliser 'bntt' has no option(s) ['alpha']; its options: none
    """
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        allowed = ", ".join(spec.options) if spec.options else "none"
        raise ValueError(f"normaliser {spec.name!r} has no option(s) {unknown}; its options: {allowed}")


def build_norm(
    name: str,
    num_features: int,
    num_steps: Optional[int] = None,
    *,
    threshold: float = NEURON_DEFAULTS["threshold"],
    beta: float = NEURON_DEFAULTS["beta"],
    **options,
) -> nn.Module:
    """Build the layer registered as ``name`` for ``num_features`` channels.

    ``num_steps=None`` builds the conventional-network form; an int the spiking form.
    ``threshold`` and ``beta`` describe the neurons the layer feeds; ``options`` are the
    method's own hyperparameters (only those in its ``NormSpec.options``).

    >>> build_norm("tdbn", 8, 4, threshold=2.0)
    ThresholdDependentBatchNorm2d(8, alpha=1, v_th=2, eps=1e-05, momentum=0.1)
    >>> type(build_norm("bn", 8)).__name__         # num_steps=None: the conventional-network form
    'BatchNorm2d'
    >>> build_norm("tdbn", 8, 0)
    Traceback (most recent call last):
        ...
    ValueError: build_norm('tdbn'): num_steps must be positive (an int >= 1), got 0
    """
    spec = get_spec(name)
    where = f"build_norm({name!r})"
    check_positive_int(num_features, "num_features", where)
    if num_steps is not None:
        check_positive_int(num_steps, "num_steps", where)
    check_positive_number(threshold, "threshold", where)
    check_unit_interval(beta, "beta", where, closed_low=True)
    if spec.circuit:
        raise ValueError(
            f"{name!r} is a circuit that replaces the convolution and its normalisation; "
            "build the whole network with snn_norm_lite.models.build_snn instead"
        )
    if spec.spiking_only and num_steps is None:
        raise ValueError(f"{name!r} is a spiking-network normaliser: pass num_steps (the number of time steps T)")
    check_options(spec, options)
    return spec.build(num_features, num_steps, threshold=threshold, beta=beta, **options)
