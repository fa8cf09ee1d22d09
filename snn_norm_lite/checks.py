"""Input checks shared by every layer of the package.

Each function raises a ``TypeError`` or ``ValueError`` whose message names the layer, what it
expected and what it received. Nothing here clamps, broadcasts or reshapes: a layer either gets
what it documents or the caller is told why not.
"""

from __future__ import annotations

import math
import numbers
from typing import Iterable

import torch


def check_floating(x: torch.Tensor, layer: str) -> None:
    """Raise ``TypeError`` unless ``x`` is a floating-point tensor.

    >>> check_floating(torch.zeros(2), "MyLayer")
    >>> check_floating(torch.zeros(2, dtype=torch.int64), "MyLayer")
    Traceback (most recent call last):
        ...
    TypeError: MyLayer: expected a floating-point tensor (float32 or float64), got dtype torch.int64; ...
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{layer}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{layer}: expected a floating-point tensor (float32 or float64), got dtype {x.dtype}; "
            "convert it with .float() first"
        )


def check_rank(x: torch.Tensor, ranks: Iterable[int], layer: str, layout: str) -> None:
    """Raise ``ValueError`` unless ``x.dim()`` is one of ``ranks``; ``layout`` describes them.

    >>> check_rank(torch.zeros(2, 3), (4, 5), "MyLayer", "[B, C, H, W]")
    Traceback (most recent call last):
        ...
    ValueError: MyLayer: expected a 4-D or 5-D input [B, C, H, W], got shape (2, 3)
    """
    ranks = tuple(ranks)
    if x.dim() not in ranks:
        raise ValueError(
            f"{layer}: expected a {' or '.join(f'{r}-D' for r in ranks)} input {layout}, "
            f"got shape {tuple(x.shape)}"
        )


def check_channels(x: torch.Tensor, dim: int, expected: int, layer: str) -> None:
    """Raise ``ValueError`` unless ``x.shape[dim] == expected``.

    >>> check_channels(torch.zeros(2, 3, 4, 4), 1, 3, "MyLayer")
    >>> check_channels(torch.zeros(2, 5, 4, 4), 1, 3, "MyLayer")
    Traceback (most recent call last):
        ...
    ValueError: MyLayer: expected 3 channels in dimension 1, got 5 (input shape (2, 5, 4, 4))
    """
    if x.shape[dim] != expected:
        raise ValueError(
            f"{layer}: expected {expected} channels in dimension {dim}, got {x.shape[dim]} "
            f"(input shape {tuple(x.shape)})"
        )


def check_num_steps(x: torch.Tensor, num_steps: int, layer: str) -> None:
    """Raise ``ValueError`` unless the leading (time) dimension of ``x`` is ``num_steps``.

    >>> check_num_steps(torch.zeros(4, 2, 3), 4, "MyLayer")
    >>> check_num_steps(torch.zeros(6, 2, 3), 4, "MyLayer")
    Traceback (most recent call last):
        ...
    ValueError: MyLayer: built for num_steps=4, got a sequence of 6 steps ...
    """
    if x.shape[0] != num_steps:
        raise ValueError(
            f"{layer}: built for num_steps={num_steps}, got a sequence of {x.shape[0]} steps "
            f"(input shape {tuple(x.shape)}, layout [T, B, C, ...]); build a layer for that T "
            "instead of reusing this one"
        )


def check_step_index(t, num_steps: int, layer: str) -> int:
    """Return ``t`` as an int, or raise if it is not an integer in ``0 .. num_steps - 1``.

    >>> check_step_index(torch.tensor(2), 4, "MyLayer")
    2
    >>> check_step_index(-1, 4, "MyLayer")
    Traceback (most recent call last):
        ...
    ValueError: MyLayer: time step t=-1 is outside 0..3 (the layer was built for num_steps=4); steps are never clamped
    """
    if isinstance(t, torch.Tensor):
        if t.numel() != 1 or t.is_floating_point():
            raise TypeError(f"{layer}: time step t must be a single integer, got tensor {t!r}")
        t = int(t.item())
    if isinstance(t, bool) or not isinstance(t, int):
        raise TypeError(f"{layer}: time step t must be an int, got {type(t).__name__}")
    if not 0 <= t < num_steps:
        raise ValueError(
            f"{layer}: time step t={t} is outside 0..{num_steps - 1} (the layer was built for "
            f"num_steps={num_steps}); steps are never clamped"
        )
    return t


def _check_integer(value, name: str, layer: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{layer}: {name} must be an int, got {type(value).__name__} {value!r}")
    return int(value)


def check_positive_int(value, name: str, layer: str) -> int:
    """Return ``value`` as an int if it is a positive integer (not a bool), else raise.

    >>> check_positive_int(8, "width", "MyLayer")
    8
    >>> check_positive_int(8.0, "width", "MyLayer")
    Traceback (most recent call last):
        ...
    TypeError: MyLayer: width must be an int, got float 8.0
    >>> check_positive_int(0, "num_steps", "MyLayer")
    Traceback (most recent call last):
        ...
    ValueError: MyLayer: num_steps must be positive (an int >= 1), got 0
    """
    value = _check_integer(value, name, layer)
    if value <= 0:
        raise ValueError(f"{layer}: {name} must be positive (an int >= 1), got {value}")
    return value


def check_nonnegative_int(value, name: str, layer: str) -> int:
    """Return ``value`` as an int if it is an integer >= 0 (not a bool), else raise.

    >>> check_nonnegative_int(0, "seed", "MyLayer")
    0
    >>> check_nonnegative_int(-1, "limit", "MyLayer")
    Traceback (most recent call last):
        ...
    ValueError: MyLayer: limit must be an int >= 0, got -1
    """
    value = _check_integer(value, name, layer)
    if value < 0:
        raise ValueError(f"{layer}: {name} must be an int >= 0, got {value}")
    return value


def check_finite_number(value, name: str, layer: str) -> float:
    """Return ``value`` as a float if it is a finite real number, else raise.

    Refused: bools (``True`` is not a threshold), strings (``"0.1"``), tensors (pass
    ``.item()``), NaN and infinities.

    >>> check_finite_number(-2, "offset", "MyLayer")
    -2.0
    >>> check_finite_number("0.1", "eps", "MyLayer")
    Traceback (most recent call last):
        ...
    TypeError: MyLayer: eps must be a real number (int or float), got str '0.1'
    >>> check_finite_number(float("nan"), "beta", "MyLayer")
    Traceback (most recent call last):
        ...
    ValueError: MyLayer: beta must be a finite number, got nan
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{layer}: {name} must be a real number (int or float), got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{layer}: {name} must be a finite number, got {value}")
    return value


def check_positive_number(value, name: str, layer: str) -> float:
    """Return ``value`` as a float if it is a finite real number > 0 (not a bool), else raise.

    >>> check_positive_number(2, "v_th", "MyLayer")
    2.0
    >>> check_positive_number(0.0, "eps", "MyLayer")
    Traceback (most recent call last):
        ...
    ValueError: MyLayer: eps must be a positive number, got 0.0
    >>> check_positive_number(True, "threshold", "MyLayer")
    Traceback (most recent call last):
        ...
    TypeError: MyLayer: threshold must be a real number (int or float), got bool True
    """
    value = check_finite_number(value, name, layer)
    if not value > 0:
        raise ValueError(f"{layer}: {name} must be a positive number, got {value}")
    return value


def check_bool(value, name: str, layer: str) -> bool:
    """Return ``value`` if it is a bool; anything else (``0``, ``"yes"``, ``None``) is a ``TypeError``.

    >>> check_bool(True, "affine", "MyLayer")
    True
    >>> check_bool("false", "affine", "MyLayer")
    Traceback (most recent call last):
        ...
    TypeError: MyLayer: affine must be True or False, got str 'false'
    """
    if not isinstance(value, bool):
        raise TypeError(f"{layer}: {name} must be True or False, got {type(value).__name__} {value!r}")
    return value


def check_unit_interval(value: float, name: str, layer: str, *, closed_low: bool = False) -> float:
    """Return ``value`` if it lies in (0, 1] (or [0, 1] with ``closed_low``), else raise.

    >>> check_unit_interval(1, "momentum", "MyLayer")
    1.0
    >>> check_unit_interval(0.0, "beta", "MyLayer", closed_low=True)
    0.0
    >>> check_unit_interval(0.0, "momentum", "MyLayer")
    Traceback (most recent call last):
        ...
    ValueError: MyLayer: momentum must lie in (0, 1], got 0.0
    """
    value = check_finite_number(value, name, layer)
    low_ok = value >= 0 if closed_low else value > 0
    if not (low_ok and value <= 1):
        interval = "[0, 1]" if closed_low else "(0, 1]"
        raise ValueError(f"{layer}: {name} must lie in {interval}, got {value}")
    return float(value)


def check_first_order(function: str) -> None:
    """Call at the top of a custom ``backward``: refuse to run it inside a graph being recorded.

    The package's hand-written backward passes (the fused LIF neuron, the per-step normalisers,
    MPBN's fused training pass) compute first-order gradients only. With
    ``create_graph=True`` autograd would run them with gradient recording on and silently drop
    every second-order term; this check turns that into an error.

    >>> with torch.enable_grad():
    ...     check_first_order("MyFunction")
    Traceback (most recent call last):
        ...
    RuntimeError: MyFunction: the backward pass is first-order only; ...
    """
    if torch.is_grad_enabled():
        raise RuntimeError(
            f"{function}: the backward pass is first-order only; second-order gradients "
            "(create_graph=True, double backward) are not supported"
        )


def keep_finite(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """``new`` where it is finite, ``old`` elsewhere: how running state survives a NaN/Inf batch.

    Element-wise and on the tensors' device (``torch.where``): no host-device sync per step.

    >>> keep_finite(torch.tensor([2.0, float("nan"), float("inf")]), torch.tensor([1.0, 1.0, 1.0]))
    tensor([2., 1., 1.])
    """
    return torch.where(torch.isfinite(new), new, old)
