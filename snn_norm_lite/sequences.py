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


def merge_time(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """``[T, B, ...] -> [T*B, ...]``; also returns ``(T, B)`` for :func:`split_time`.

    >>> merged, steps_and_batch = merge_time(torch.zeros(4, 2, 3))
    >>> merged.shape, steps_and_batch
    (torch.Size([8, 3]), (4, 2))
    """
    if x.dim() < 2:
        raise ValueError(f"merge_time: expected a sequence [T, B, ...], got shape {tuple(x.shape)}")
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
    steps, batch = steps_and_batch
    if y.dim() < 1 or y.shape[0] != steps * batch:
        raise ValueError(f"split_time: expected {steps} x {batch} = {steps * batch} rows, got shape {tuple(y.shape)}")
    return y.unflatten(0, (steps, batch))


def over_time(layer: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``layer`` applied to every step of ``x`` ``[T, B, ...]`` in one call: ``[T, B, ...]`` out.

    >>> over_time(torch.nn.Linear(3, 5), torch.zeros(4, 2, 3)).shape
    torch.Size([4, 2, 5])
    """
    merged, steps_and_batch = merge_time(x)
    return split_time(layer(merged), steps_and_batch)
