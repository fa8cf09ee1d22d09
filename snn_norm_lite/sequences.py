"""Sequences ``[T, B, ...]``: run a per-sample layer on every step at once.

A convolution, a pooling layer or BatchNorm treats its first dimension as the batch. To apply
one to a whole spike sequence, merge time into the batch, ``[T, B, ...] -> [T*B, ...]``, apply
it, and split the result again, ``[T*B, ...] -> [T, B, ...]``. This is exact for any layer that
treats samples independently (in evaluation mode, BatchNorm included) and is how the package
runs its networks layer by layer: one large call instead of T small ones.

>>> import torch
>>> x = torch.randn(4, 2, 3, 8, 8)                     # T = 4 steps, B = 2 samples
>>> over_time(torch.nn.AvgPool2d(2), x).shape
torch.Size([4, 2, 3, 4, 4])
>>> merged, steps_and_batch = merge_time(x)
>>> merged.shape, steps_and_batch
(torch.Size([8, 3, 8, 8]), (4, 2))
>>> torch.equal(split_time(merged, steps_and_batch), x)
True
"""

from __future__ import annotations

from typing import Callable

import torch

from .checks import check_nonnegative_int, check_positive_int


def check_sequence(x: torch.Tensor, layer: str, layout: str = "[T, B, ...]") -> None:
    """Raise unless ``x`` is a sequence: a tensor of rank >= 2 with at least one time step.

    Shape only (free: no value of ``x`` is read). ``layout`` describes the expected layout in
    the message. A batch of zero samples (``B = 0``) passes; zero steps (``T = 0``) do not.

    >>> check_sequence(torch.zeros(4, 2, 3), "MyLayer")
    >>> check_sequence(torch.zeros(0, 2, 3), "MyLayer")
    Traceback (most recent call last):
        ...
    ValueError: MyLayer: expected at least one time step, got a sequence of 0 steps (input shape (0, 2, 3), layout [T, B, ...])
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{layer}: expected a torch.Tensor sequence {layout}, got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"{layer}: expected a sequence {layout}, got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(
            f"{layer}: expected at least one time step, got a sequence of 0 steps "
            f"(input shape {tuple(x.shape)}, layout {layout})"
        )


def merge_time(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """``[T, B, ...] -> [T*B, ...]``; also returns ``(T, B)`` for :func:`split_time`.

    ``T`` must be at least 1 (:func:`check_sequence`); ``B = 0`` gives an empty batch.

    >>> merged, steps_and_batch = merge_time(torch.zeros(4, 2, 3))
    >>> merged.shape, steps_and_batch
    (torch.Size([8, 3]), (4, 2))
    """
    check_sequence(x, "merge_time")
    return x.flatten(0, 1), (x.shape[0], x.shape[1])


def split_time(y: torch.Tensor, steps_and_batch: tuple[int, int]) -> torch.Tensor:
    """``[T*B, ...] -> [T, B, ...]``, the inverse of :func:`merge_time`.

    >>> split_time(torch.zeros(8, 3), (4, 2)).shape
    torch.Size([4, 2, 3])
    >>> split_time(torch.zeros(7, 3), (4, 2))
    Traceback (most recent call last):
        ...
    ValueError: split_time: expected 4 x 2 = 8 rows, got shape (7, 3)
    """
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"split_time: expected a torch.Tensor [T*B, ...], got {type(y).__name__}")
    if not isinstance(steps_and_batch, (tuple, list)) or len(steps_and_batch) != 2:
        raise TypeError(f"split_time: steps_and_batch must be the pair (T, B) merge_time returned, got {steps_and_batch!r}")
    steps = check_positive_int(steps_and_batch[0], "the number of steps T", "split_time")
    batch = check_nonnegative_int(steps_and_batch[1], "the batch size B", "split_time")
    if y.dim() < 1 or y.shape[0] != steps * batch:
        raise ValueError(f"split_time: expected {steps} x {batch} = {steps * batch} rows, got shape {tuple(y.shape)}")
    return y.unflatten(0, (steps, batch))


def over_time(layer: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``layer`` applied to every step of ``x`` ``[T, B, ...]`` in one call: ``[T, B, ...]`` out.

    >>> over_time(torch.nn.Linear(3, 5), torch.zeros(4, 2, 3)).shape
    torch.Size([4, 2, 5])
    """
    if not callable(layer):
        raise TypeError(f"over_time: layer must be callable (a module or a function), got {type(layer).__name__}")
    merged, steps_and_batch = merge_time(x)
    return split_time(layer(merged), steps_and_batch)
