"""Mixed precision: normalisers and neurons keep their statistics and membranes in float32.

Under ``torch.autocast(device, dtype=torch.bfloat16)`` a convolution returns bfloat16, which
keeps about three significant digits. That is enough for a convolution's output, not for what
is *accumulated* from it: a batch mean or variance summed over thousands of values, running
statistics averaged over hundreds of batches, a membrane potential integrated over T steps
(PyTorch's own BatchNorm kernels likewise accumulate in float32 and keep float32 running
statistics). With :func:`full_precision_forward` on their ``forward``, the package's
normalisers and its LIF neuron convert a lower-precision input to their own dtype (that of their
parameters and buffers, float32 unless you changed it) inside an autocast region and switch
autocast off while they run, so statistics, running statistics, membranes and outputs are all in
that dtype. The next convolution converts back to bfloat16 by itself.

Outside autocast nothing changes: a normaliser refuses an input of another dtype than its own,
as before (nothing is converted silently).
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
    """Decorate a layer's ``forward(self, x, ...)`` to run in the layer's dtype under autocast.

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
