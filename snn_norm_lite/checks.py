"""Input checks shared by every layer of the package.

Each function raises a ``TypeError`` or ``ValueError`` whose message names the layer, what it
expected and what it received. Nothing here clamps, broadcasts or reshapes: a layer either gets
what it documents or the caller is told why not.
"""

from __future__ import annotations

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


def check_positive_int(value, name: str, layer: str) -> int:
    """Return ``value`` if it is a positive int, else raise.

    >>> check_positive_int(8, "width", "MyLayer")
    8
    >>> check_positive_int(8.0, "width", "MyLayer")
    Traceback (most recent call last):
        ...
    TypeError: MyLayer: width must be an int, got float
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{layer}: {name} must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{layer}: {name} must be positive, got {value}")
    return value


def check_positive_number(value, name: str, layer: str) -> float:
    """Return ``value`` as a float if it is a positive real number (not a bool), else raise ``ValueError``.

    >>> check_positive_number(2, "v_th", "MyLayer")
    2.0
    >>> check_positive_number(0.0, "eps", "MyLayer")
    Traceback (most recent call last):
        ...
    ValueError: MyLayer: eps must be a positive number, got 0.0
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{layer}: {name} must be a positive number, got {value!r}")
    return float(value)


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
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{layer}: {name} must be a number, got {type(value).__name__}")
    low_ok = value >= 0 if closed_low else value > 0
    if not (low_ok and value <= 1):
        interval = "[0, 1]" if closed_low else "(0, 1]"
        raise ValueError(f"{layer}: {name} must lie in {interval}, got {value}")
    return float(value)
