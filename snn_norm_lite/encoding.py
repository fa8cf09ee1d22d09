"""Input encodings: how a static image becomes a sequence of ``T`` inputs for a spiking network.

A spiking network runs for ``T`` time steps, so a static image ``x`` (a batch ``[B, C, H, W]``
of pixel intensities) has to be turned into a sequence ``[T, B, C, H, W]``. Three encodings:

* **direct** ``s_t = x`` for every ``t``: the analogue image at every step; the first
  convolution and its neurons act as the encoder. Deterministic, and the same at every step.
* **rate** ``s_t ~ Bernoulli(x)``, drawn independently per step and pixel: a pixel of
  intensity ``x`` spikes with probability ``x`` at each step, so over ``T`` steps its spike
  count is Binomial(``T``, ``x``) with mean ``T x`` (a Poisson-like rate code). The input is
  new random spikes at every step.
* **latency** one spike per pixel at step ``t(x) = round((1 - x) (T - 1))`` for ``x > 0``
  (brighter pixels spike earlier: ``x = 1`` at step 0, the faintest at step ``T - 1``);
  a pixel with ``x = 0`` never spikes. Deterministic; each step sees a different set of pixels.

Rate and latency codes need intensities in ``[0, 1]`` (a probability; a step inside the
window): anything else, NaN included, is a ``ValueError``, never clamped. Checking that reads
the values, one host-device synchronisation per encoded batch (at the network's input, not
per layer).

>>> images = torch.tensor([[[[0.0, 0.5, 1.0]]]])            # one 1 x 1 x 3 image
>>> encode("latency", images, num_steps=3)[:, 0, 0, 0]      # [T, pixel]: spike steps 2 (never), 1, 0
tensor([[0., 0., 1.],
        [0., 1., 0.],
        [0., 0., 0.]])
"""

from __future__ import annotations

import torch
from torch import nn

from .checks import check_floating, check_positive_int, check_rank

ENCODINGS = ("direct", "rate", "latency")


def check_encoding(name, caller: str) -> str:
    """Return ``name`` if it is one of :data:`ENCODINGS`, else raise naming ``caller``.

    >>> check_encoding("rate", "MyNet")
    'rate'
    >>> check_encoding("poisson", "MyNet")
    Traceback (most recent call last):
        ...
    ValueError: MyNet: encoding must be one of 'direct', 'rate', 'latency', got 'poisson'
    """
    choices = ", ".join(repr(e) for e in ENCODINGS)
    if not isinstance(name, str):
        raise TypeError(f"{caller}: encoding must be a str (one of {choices}), got {type(name).__name__} {name!r}")
    if name not in ENCODINGS:
        raise ValueError(f"{caller}: encoding must be one of {choices}, got {name!r}")
    return name


def _check_images(images, num_steps, caller: str) -> int:
    check_floating(images, caller)
    check_rank(images, (4,), caller, "[B, C, H, W] (a static image batch)")
    return check_positive_int(num_steps, "num_steps", caller)


def _check_intensities(images: torch.Tensor, caller: str) -> None:
    """Raise unless every value lies in [0, 1] (NaN does not)."""
    inside = (images >= 0) & (images <= 1)
    if not bool(inside.all()):
        outside = images[~inside]
        raise ValueError(
            f"{caller}: expected pixel intensities in [0, 1], got {outside.numel()} value(s) outside it "
            f"(for example {outside[0].item()!r}); rescale the images (e.g. x / x.max()), they are never clamped"
        )


def _check_generator(generator, caller: str) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{caller}: generator must be a torch.Generator or None, got {type(generator).__name__}")


def direct_encoding(images: torch.Tensor, num_steps: int) -> torch.Tensor:
    """``s_t = x`` for ``t = 0 .. T-1``: ``[B, C, H, W]`` -> ``[T, B, C, H, W]``.

    Returns a view that repeats the batch ``num_steps`` times (no copy: do not write into it).

    >>> direct_encoding(torch.rand(5, 1, 8, 8), num_steps=3).shape
    torch.Size([3, 5, 1, 8, 8])
    """
    num_steps = _check_images(images, num_steps, "direct_encoding")
    return images.unsqueeze(0).expand(num_steps, *images.shape)


def rate_encoding(images: torch.Tensor, num_steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Bernoulli spikes ``s_t = 1[u_t < x]``, ``u_t ~ U[0, 1)`` independent per step and pixel.

    ``P(s_t = 1) = x``, so a pixel's spike count over ``T`` steps is Binomial(``T``, ``x``):
    mean ``T x``, variance ``T x (1 - x)``. Intensities must lie in ``[0, 1]``. The draws come
    from ``generator`` (on the images' device), or from torch's global generator when None.
    Output: ``[T, B, C, H, W]`` of 0. and 1. in the images' dtype.

    >>> g = torch.Generator().manual_seed(0)
    >>> spikes = rate_encoding(torch.full((1, 1, 2, 2), 0.25), num_steps=4000, generator=g)
    >>> spikes.shape, abs(spikes.mean().item() - 0.25) < 0.02   # the rate is the intensity
    (torch.Size([4000, 1, 1, 2, 2]), True)
    """
    num_steps = _check_images(images, num_steps, "rate_encoding")
    _check_generator(generator, "rate_encoding")
    _check_intensities(images, "rate_encoding")
    uniform = torch.rand(
        (num_steps, *images.shape), generator=generator, dtype=images.dtype, device=images.device
    )
    return (uniform < images).to(images.dtype)


def latency_steps(images: torch.Tensor, num_steps: int) -> torch.Tensor:
    """The step ``round((1 - x) (T - 1))`` at which each pixel spikes, as int64 ``[B, C, H, W]``.

    Rounded half to even (``torch.round``). Pixels with ``x == 0`` get the step anyway; they are
    masked out by :func:`latency_encoding`.

    >>> latency_steps(torch.tensor([[[[1.0, 0.5, 0.1]]]]), num_steps=5)
    tensor([[[[0, 2, 4]]]])
    """
    num_steps = _check_images(images, num_steps, "latency_steps")
    _check_intensities(images, "latency_steps")
    return _latency_steps(images, num_steps)


def _latency_steps(images: torch.Tensor, num_steps: int) -> torch.Tensor:
    return torch.round((1 - images) * (num_steps - 1)).long()


def latency_encoding(images: torch.Tensor, num_steps: int) -> torch.Tensor:
    """One spike per pixel with ``x > 0``, at step ``t(x) = round((1 - x) (T - 1))``.

    ``s_t = 1[t = t(x) and x > 0]``: ``[B, C, H, W]`` -> ``[T, B, C, H, W]`` of 0. and 1. in
    the images' dtype. Intensities must lie in ``[0, 1]``.

    >>> spikes = latency_encoding(torch.tensor([[[[1.0, 0.5, 0.0]]]]), num_steps=5)
    >>> spikes[:, 0, 0, 0].T                                     # one row per pixel
    tensor([[1., 0., 0., 0., 0.],
            [0., 0., 1., 0., 0.],
            [0., 0., 0., 0., 0.]])
    """
    num_steps = _check_images(images, num_steps, "latency_encoding")
    _check_intensities(images, "latency_encoding")
    steps = _latency_steps(images, num_steps)
    time = torch.arange(num_steps, device=images.device).view(-1, 1, 1, 1, 1)
    return ((time == steps) & (images > 0)).to(images.dtype)


def encode(name: str, images: torch.Tensor, num_steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Encode ``[B, C, H, W]`` images as ``[T, B, C, H, W]`` with the encoding ``name``.

    ``generator`` is used by the rate code only (and refused for the others, which draw nothing).

    >>> encode("direct", torch.rand(2, 1, 8, 8), 4).shape
    torch.Size([4, 2, 1, 8, 8])
    """
    check_encoding(name, "encode")
    _check_generator(generator, "encode")
    if name == "rate":
        return rate_encoding(images, num_steps, generator=generator)
    if generator is not None:
        raise ValueError(f"encode: the {name!r} encoding is deterministic and draws nothing; pass generator=None")
    if name == "direct":
        return direct_encoding(images, num_steps)
    return latency_encoding(images, num_steps)


class InputEncoder(nn.Module):
    """The encoding ``name`` as a module without parameters: ``[B, C, H, W]`` -> ``[T, B, C, H, W]``.

    A rate encoder draws new spikes at every call, from torch's global generator (seeded by
    :func:`~snn_norm_lite.training.seed_everything`), in training and in evaluation alike.

    >>> encoder = InputEncoder("rate", num_steps=6)
    >>> encoder(torch.rand(2, 1, 8, 8)).shape, len(list(encoder.parameters()))
    (torch.Size([6, 2, 1, 8, 8]), 0)
    """

    def __init__(self, name: str, num_steps: int):
        super().__init__()
        self.name = check_encoding(name, "InputEncoder")
        self.num_steps = check_positive_int(num_steps, "num_steps", "InputEncoder")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_floating(images, "InputEncoder")
        check_rank(images, (4,), "InputEncoder", "[B, C, H, W] (a static image batch)")
        return encode(self.name, images, self.num_steps)

    def extra_repr(self) -> str:
        return f"{self.name!r}, num_steps={self.num_steps}"
