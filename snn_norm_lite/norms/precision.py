"""Normalisers under mixed precision: statistics stay in the layer's own dtype.

Under ``torch.autocast(device, dtype=torch.bfloat16)`` a convolution returns bfloat16. A batch
mean or variance summed in bfloat16 keeps about three significant digits, and the running
statistics averaged from it drift; PyTorch's own BatchNorm therefore computes in float32 under
autocast. The package's normalisers do the same with :func:`full_precision_forward`: inside an
autocast region the input is converted to the layer's dtype (that of its parameters and
buffers, float32 unless you changed it) and autocast is switched off for the layer, so its
statistics, its output and its running statistics are all in that dtype. The next convolution
converts back to bfloat16 by itself.

Outside autocast nothing changes: an input of another dtype than the layer's is an error, as
before (nothing is converted silently).
"""

from __future__ import annotations

import functools

import torch
from torch import nn


def layer_dtype(layer: nn.Module) -> torch.dtype | None:
    """The floating dtype of ``layer``'s first floating parameter or buffer (None if it has none).

    >>> layer_dtype(nn.BatchNorm2d(3).double())
    torch.float64
    """
    for tensor in list(layer.parameters()) + list(layer.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return None


def full_precision_forward(forward):
    """Decorate a normaliser's ``forward(self, x, ...)`` to run in the layer's dtype under autocast.

    >>> from snn_norm_lite.norms import SequenceBatchNorm2d
    >>> norm = SequenceBatchNorm2d(3)
    >>> x = torch.randn(2, 4, 3, 5, 5).bfloat16()
    >>> with torch.autocast("cpu", dtype=torch.bfloat16):
    ...     norm(x).dtype                                   # statistics and output in float32
    torch.float32
    >>> norm(x)
    Traceback (most recent call last):
        ...
    TypeError: SequenceBatchNorm2d: input dtype torch.bfloat16 differs from the layer's dtype torch.float32; ...
    """

    @functools.wraps(forward)
    def run(self, x, *args, **kwargs):
        if not (isinstance(x, torch.Tensor) and x.is_floating_point() and torch.is_autocast_enabled(x.device.type)):
            return forward(self, x, *args, **kwargs)
        dtype = layer_dtype(self)
        if dtype is not None and x.dtype != dtype:
            x = x.to(dtype)
        with torch.autocast(x.device.type, enabled=False):
            return forward(self, x, *args, **kwargs)

    return run
