"""What backpropagation through time costs: memory kept for the backward pass, and time.

A spiking network is trained by unrolling it over its ``T`` steps and backpropagating through
the unrolled graph (BPTT). Every node of that graph keeps what its backward pass needs: a
convolution keeps its input, a BatchNorm its input and batch statistics, a LIF layer its
membrane potential at every step. For a network whose activations at one step take ``a``
bytes, the memory kept for the backward pass is therefore linear in ``T``::

    saved_bytes(T) = c + a * T

(``c``: what does not grow with ``T``, e.g. per-channel statistics). Measured here, not
estimated:

* :func:`saved_tensor_bytes` counts the bytes of every distinct tensor the autograd graph of
  one call keeps for its backward pass (``torch.autograd.graph.saved_tensors_hooks``), not
  counting parameters, which exist whether or not anything is trained;
* :func:`bptt_cost` measures that for a forward pass of the reference spiking network, and the
  median wall-clock time of one forward and backward pass, for several ``T``.

>>> from snn_norm_lite.neurons import MultiStepLeaky
>>> x = torch.rand(4, 2, 3, requires_grad=True)                 # [T, B, features]
>>> saved_tensor_bytes(MultiStepLeaky(), x)                      # the membranes: 4 * 2 * 3 float32
96
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from .checks import check_floating, check_nonnegative_int, check_positive_int, check_rank
from .timing import median_seconds


def saved_tensor_bytes(function: Callable[..., torch.Tensor], *args) -> int:
    """Bytes of the tensors that ``function(*args)`` keeps for its backward pass.

    Runs ``function(*args)`` once with gradients enabled. Every tensor the autograd graph saves
    is seen by a pack hook, which records the bytes of memory it spans. Memory is counted once
    however many saved tensors share it (the union of the byte ranges saved from each storage),
    a view counts only the part of its storage it spans (an image batch sliced from a data set
    is not the data set), and parameters (leaf tensors that require a gradient) and views of
    them are not counted::

        saved_bytes = sum over storages s of |union of the byte ranges saved from s|

    The count is of what the graph *keeps*, not of the peak memory of the call. For it to be
    non-zero, some input or parameter must require a gradient.

    >>> w = torch.ones(3, requires_grad=True)
    >>> saved_tensor_bytes(lambda x: (x * w).sum(), torch.ones(5, 3))  # keeps x (60 bytes), not w
    60
    >>> saved_tensor_bytes(lambda x: (x * w).sum(), torch.ones(50, 3)[:5])  # a view: its 60 bytes only
    60
    >>> saved_tensor_bytes("model", torch.ones(2))
    Traceback (most recent call last):
        ...
    TypeError: saved_tensor_bytes: function must be callable (a model or a function), got str
    """
    if not callable(function):
        raise TypeError(
            f"saved_tensor_bytes: function must be callable (a model or a function), got {type(function).__name__}"
        )
    ranges: dict[int, list[tuple[int, int]]] = {}
    kept = []  # a counted storage stays alive until the count is done, so its address is not reused

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        base = tensor if tensor._base is None else tensor._base
        if not (base.is_leaf and base.requires_grad) and tensor.numel() > 0:
            ranges.setdefault(tensor.untyped_storage().data_ptr(), []).append(_byte_range(tensor))
            kept.append(tensor)
        return tensor

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = function(*args)
    del output, kept  # the graph (and what it saved) is freed here; the count is kept
    return sum(_union_length(spans) for spans in ranges.values())


def _byte_range(tensor: torch.Tensor) -> tuple[int, int]:
    """``[first, last + 1)`` bytes of its storage that a non-empty tensor (or view) reaches."""
    size = tensor.element_size()
    start = tensor.storage_offset() * size
    reach = sum((n - 1) * abs(stride) for n, stride in zip(tensor.shape, tensor.stride()))
    return start, start + (reach + 1) * size


def _union_length(spans: list[tuple[int, int]]) -> int:
    """Total length of the union of half-open intervals ``[a, b)``.

    >>> _union_length([(0, 10), (5, 20), (30, 40)])
    30
    """
    total, end = 0, None
    for a, b in sorted(spans):
        if end is None or a >= end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total


@dataclass(frozen=True)
class BPTTCost:
    """Memory and time of training a network through time, one entry per ``T``.

    ``saved_bytes[i]``: bytes kept for the backward pass by one forward pass at ``num_steps[i]``
    (:func:`saved_tensor_bytes`); ``seconds[i]``: median wall-clock time of one forward and
    backward pass (this machine, this moment: compare ratios within one run only).

    >>> cost = BPTTCost(num_steps=(1, 2), saved_bytes=(100, 200), seconds=(0.01, 0.02), batch_size=8)
    >>> cost.bytes_ratio(2, 1)
    2.0
    >>> cost.bytes_ratio(4, 1)
    Traceback (most recent call last):
        ...
    ValueError: BPTTCost.bytes_ratio: T=4 was not measured; measured: (1, 2)
    """

    num_steps: tuple[int, ...]
    saved_bytes: tuple[int, ...]
    seconds: tuple[float, ...]
    batch_size: int

    def _index(self, steps: int, caller: str) -> int:
        if steps not in self.num_steps:
            raise ValueError(f"{caller}: T={steps} was not measured; measured: {self.num_steps}")
        return self.num_steps.index(steps)

    def bytes_ratio(self, steps: int, reference: int) -> float:
        """``saved_bytes(steps) / saved_bytes(reference)``: 2 for twice the steps if the cost is linear."""
        caller = "BPTTCost.bytes_ratio"
        return self.saved_bytes[self._index(steps, caller)] / self.saved_bytes[self._index(reference, caller)]

    def time_ratio(self, steps: int, reference: int) -> float:
        """``seconds(steps) / seconds(reference)``, two timings of the same run."""
        caller = "BPTTCost.time_ratio"
        return self.seconds[self._index(steps, caller)] / self.seconds[self._index(reference, caller)]

    def table(self) -> str:
        """One row per T: saved MiB, MiB per step, milliseconds per forward and backward pass.

        >>> print(BPTTCost((1, 2), (2**20, 2**21), (0.01, 0.02), 8).table())
            T   saved (MiB)   per step (MiB)   forward+backward (ms)
            1          1.00             1.00                    10.0
            2          2.00             1.00                    20.0
        """
        lines = [f"{'T':>5}{'saved (MiB)':>14}{'per step (MiB)':>17}{'forward+backward (ms)':>24}"]
        for steps, size, seconds in zip(self.num_steps, self.saved_bytes, self.seconds):
            mib = size / 2**20
            lines.append(f"{steps:>5}{mib:>14.2f}{mib / steps:>17.2f}{seconds * 1e3:>24.1f}")
        return "\n".join(lines)


def _check_steps(num_steps, caller: str) -> tuple[int, ...]:
    if isinstance(num_steps, (str, bytes)) or not hasattr(num_steps, "__iter__"):
        raise TypeError(f"{caller}: num_steps must be a sequence of ints (e.g. (1, 2, 4, 8)), got {num_steps!r}")
    steps = tuple(check_positive_int(t, "every entry of num_steps", caller) for t in num_steps)
    if not steps:
        raise ValueError(f"{caller}: num_steps must hold at least one T, got {num_steps!r}")
    if len(set(steps)) != len(steps):
        raise ValueError(f"{caller}: a T appears twice in num_steps {steps}")
    return steps


def bptt_cost(
    images: torch.Tensor,
    labels: torch.Tensor,
    num_steps=(1, 2, 4, 8, 16),
    norm: str = "bn",
    depth: int = 4,
    width: int = 32,
    repeats: int = 3,
    seed: int = 0,
) -> BPTTCost:
    """Memory kept for backward and time of a forward+backward pass, for each ``T`` in ``num_steps``.

    For every ``T``: the reference spiking network (``models.build_snn(norm, depth, width, T)``,
    the same weights for every ``T``, built after ``torch.manual_seed(seed)``) in training mode
    sees the static batch ``images`` ``[B, C, H, W]`` at every step (direct encoding);
    :func:`saved_tensor_bytes` measures one forward pass, then one untimed forward and backward
    pass (cross-entropy against ``labels``) warms up, and ``repeats`` more are timed (median).
    The loss and the optimiser are not part of the memory count. Gradients are not applied.

    >>> from snn_norm_lite.data import load_digits
    >>> split = load_digits()
    >>> cost = bptt_cost(split.x_val[:8], split.y_val[:8], num_steps=(1, 2), depth=2, width=4, repeats=1)
    >>> cost.num_steps, cost.saved_bytes[1] > cost.saved_bytes[0]
    ((1, 2), True)
    """
    from .models import build_snn  # models imports most of the package: import it when measuring

    caller = "bptt_cost"
    steps = _check_steps(num_steps, caller)
    check_floating(images, caller)
    check_rank(images, (4,), caller, "[B, C, H, W] (a static image batch)")
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.shape != images.shape[:1]:
        raise ValueError(
            f"{caller}: labels must be an int64 tensor [B] of class indices, one per image, got "
            f"{type(labels).__name__} {getattr(labels, 'dtype', '')} of shape {tuple(getattr(labels, 'shape', ()))} "
            f"for {images.shape[0]} images"
        )
    repeats = check_positive_int(repeats, "repeats", caller)
    seed = check_nonnegative_int(seed, "seed", caller)
    saved, seconds = [], []
    for t in steps:
        torch.manual_seed(seed)
        model = build_snn(norm, depth, width, t, in_channels=images.shape[1], image_size=images.shape[-1])
        model.train()
        saved.append(saved_tensor_bytes(model, images))
        seconds.append(_forward_backward_seconds(model, images, labels, repeats))
    return BPTTCost(steps, tuple(saved), tuple(seconds), images.shape[0])


def _forward_backward_seconds(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, repeats: int) -> float:
    def step():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()

    step()  # warm-up: allocations and first-call costs are not timed
    return median_seconds(step, repeats)
