"""The scale of a spiking layer's input current relative to its threshold: measure it, set it.

A LIF neuron fires only when its membrane crosses the threshold ``V_th``, so what decides
whether a layer is active is not the size of its input current ``I_l`` but its size *relative
to* ``V_th``. This module measures that ratio,

    rho_l = std(I_l) / V_th        (std over time steps, samples, channels and positions),

and sets it at initialisation without any normaliser.

Why the default initialisation gets it wrong. For a convolution with fan-in ``n`` (input
channels times kernel area), zero-mean independent weights of variance ``Var(w)`` and inputs
``x`` independent of the weights, the argument of He et al. (2015) gives

    Var(I_l) = n Var(w) E[x^2].

PyTorch's default (``kaiming_uniform_`` with ``a = sqrt(5)``) draws ``Var(w) = 1 / (3n)``, so
``Var(I_l) = E[x^2] / 3``. The input of a spiking layer is the spike train of the layer before,
``x in {0, 1}``, so ``E[x^2]`` is that layer's firing rate ``r_{l-1}``:

    std(I_l) ~ sqrt(r_{l-1} / 3),   independent of V_th.

A layer with rate ``r`` produces a current whose scale relative to the threshold,
``sqrt(r / 3) / V_th``, sets the rate of the next layer. If that is too small the next rate is
smaller still, and the ratio shrinks layer after layer: the decay compounds over depth. (Zero
padding and pooling lower ``E[x^2]`` a little further; the measured ratio accounts for both.)

The remedy without a normaliser: :func:`threshold_scaled_init_` multiplies each convolution,
in depth order, by the one number ``c_l`` that makes the measured ratio equal to a chosen
``gain`` on a batch of training images,

    c_l = gain * V_th / std(I_l),      W_l <- c_l W_l,   b_l <- c_l b_l,

measuring ``I_l`` with the layers before ``l`` already rescaled (layer-sequential, as LSUV of
Mishkin and Matas, 2016, does for unit variance). The weights keep their random directions;
only each layer's scale changes. With ``gain = 1`` every layer starts where BatchNorm (with
its initial gain 1 and shift 0) puts a layer of threshold 1: input current of standard
deviation ``V_th``.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn

from .checks import check_bool, check_floating, check_nonnegative_int, check_positive_int, check_positive_number
from .probes import firing_rates, per_step_statistics, spiking_layers
from .training import check_seeds


def _check_model(model: nn.Module, name: str) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name}: expected a spiking network (an nn.Module such as SpikingConvNet), got {type(model).__name__}")


def _check_blocks(model: nn.Module, name: str) -> list[nn.Module]:
    blocks = getattr(model, "blocks", None)
    if blocks is None or not all(hasattr(b, "conv") and hasattr(b, "neuron") for b in blocks):
        raise TypeError(
            f"{name}: expected a spiking network whose blocks have .conv and .neuron "
            f"(e.g. SpikingConvNet), got {type(model).__name__}"
        )
    return list(blocks)


def _thresholds(model: nn.Module) -> torch.Tensor:
    return torch.stack([torch.as_tensor(layer.threshold, dtype=torch.float32).reshape(()) for layer in spiking_layers(model)])


@torch.no_grad()
def current_scale(model: nn.Module, x: torch.Tensor, train_mode: bool = False) -> torch.Tensor:
    """``std(I_l) / V_th`` of every spiking layer, shape ``[L]``.

    ``I_l`` is what the layer's neurons receive (after the normaliser, if any); the standard
    deviation is taken over all its elements (steps, samples, channels, positions). The model
    runs once on ``x`` in evaluation mode, which changes nothing. With ``train_mode=True`` it
    runs in training mode, so normalisers use the batch's statistics and, as in a training
    step, move their running ones; :func:`layer_profile` measures a copy instead.

    >>> from snn_norm_lite.models import build_snn
    >>> _ = torch.manual_seed(0)
    >>> scale = current_scale(build_snn("tdbn", depth=3, width=4, num_steps=2), torch.rand(16, 1, 8, 8), train_mode=True)
    >>> scale.shape, torch.allclose(scale, torch.ones(3), atol=0.01)   # tdBN sets std(I) = V_th
    (torch.Size([3]), True)
    """
    _check_model(model, "current_scale")
    check_floating(x, "current_scale")
    check_bool(train_mode, "train_mode", "current_scale")
    stats = per_step_statistics(model, x, train_mode=train_mode)
    mean_t, var_t = stats["current_mean"], stats["current_var"]  # [L, T], equal-sized groups per step
    second_moment = (var_t + mean_t.square()).mean(dim=1)
    variance = (second_moment - mean_t.mean(dim=1).square()).clamp_min(0.0)
    return variance.sqrt() / _thresholds(model)


@torch.no_grad()
def layer_profile(model: nn.Module, x: torch.Tensor) -> dict[str, list[float]]:
    """What every spiking layer sees and does during a training step on ``x``, per layer.

    ``{"scale": [std(I_l) / V_th], "rate": [firing rate]}``, measured on a copy of the model in
    training mode (normalisers use the statistics of ``x``; the model itself is not changed).

    >>> from snn_norm_lite.models import build_snn
    >>> _ = torch.manual_seed(0)
    >>> profile = layer_profile(build_snn("bn", depth=3, width=4, num_steps=2), torch.rand(16, 1, 8, 8))
    >>> sorted(profile), len(profile["rate"])
    (['rate', 'scale'], 3)
    """
    _check_model(model, "layer_profile")
    check_floating(x, "layer_profile")
    scale = current_scale(copy.deepcopy(model), x, train_mode=True)
    rate = firing_rates(copy.deepcopy(model), x, train_mode=True)
    return {"scale": scale.tolist(), "rate": rate.tolist()}


def profile_at_init(
    norm: str = "none",
    depth: int = 12,
    threshold: float = 1.0,
    beta: float = 0.9,
    init_gain: float | None = None,
    seeds=(0, 1, 2),
    samples: int = 256,
    width: int = 32,
    num_steps: int = 8,
) -> dict[str, list[float]]:
    """:func:`layer_profile` of untrained reference SNNs on digits, averaged over ``seeds``.

    ``norm`` is a registry name; with ``init_gain`` set the network (``norm="none"``) first
    gets :func:`threshold_scaled_init_` on the first ``samples`` training images. Measured on the
    first ``samples`` validation images, in training mode (as during the first training step).

    >>> profile = profile_at_init("bn", depth=2, width=4, num_steps=2, seeds=(0,), samples=16)
    >>> [round(s, 2) for s in profile["scale"]]                       # BatchNorm: unit standard deviation
    [1.0, 1.0]
    """
    from .data import load_digits
    from .experiments import TrainConfig, build_model
    from .training import seed_everything

    name = "profile_at_init"
    seeds = check_seeds(seeds, name)
    check_positive_int(samples, "samples", name)
    if init_gain is not None:
        check_positive_number(init_gain, "init_gain", name)
    split = load_digits()
    config = TrainConfig(depth=depth, width=width, num_steps=num_steps, beta=beta, threshold=threshold)
    profiles = []
    for seed in seeds:
        seed_everything(seed)
        model = build_model("snn", norm, config)
        if init_gain is not None:
            threshold_scaled_init_(model, split.x_train[:samples], gain=init_gain)
        profiles.append(layer_profile(model, split.x_val[:samples]))
    return {key: torch.tensor([p[key] for p in profiles]).mean(dim=0).tolist() for key in ("scale", "rate")}


@torch.no_grad()
def threshold_scaled_init_(model: nn.Module, x: torch.Tensor, gain: float = 1.0) -> list[float]:
    """Rescale each convolution of a normaliser-free SNN so ``std(I_l) = gain * V_th`` on ``x``.

    In place, layer by layer in depth order (see the module docstring for the equation):
    layer ``l`` is measured with layers ``0 .. l-1`` already rescaled. ``x`` is a batch of
    training images ``[B, C, H, W]`` (or a sequence ``[T, B, C, H, W]``). Returns the factors
    ``c_l`` that multiplied each convolution's weight and bias.

    Only for networks without normalisers: a normaliser would undo the rescaling.

    >>> from snn_norm_lite.models import build_snn
    >>> _ = torch.manual_seed(0)
    >>> model, x = build_snn("none", depth=3, width=4, num_steps=2), torch.rand(32, 1, 8, 8)
    >>> factors = threshold_scaled_init_(model, x, gain=1.0)
    >>> len(factors), torch.allclose(current_scale(model, x), torch.ones(3), atol=1e-3)
    (3, True)
    """
    name = "threshold_scaled_init_"
    blocks = _check_blocks(model, name)
    check_floating(x, name)
    check_positive_number(gain, "gain", name)
    if not bool(torch.isfinite(x).all()):  # once, at initialisation
        raise ValueError(f"{name}: the calibration batch x holds NaN or Inf; calibrate on clean images")
    for i, block in enumerate(blocks):
        if not isinstance(getattr(block, "norm", nn.Identity()), nn.Identity):
            raise ValueError(
                f"{name}: block {i} has a normaliser ({type(block.norm).__name__}), which would undo the "
                "rescaling; use a network built with norm='none'"
            )
    factors = []
    for i, block in enumerate(blocks):
        ratio = float(current_scale(model, x)[i])
        if not ratio > 0:
            raise ValueError(f"{name}: layer {i + 1} receives a constant current on this batch; cannot set its scale")
        factor = gain / ratio
        block.conv.weight.mul_(factor)
        if block.conv.bias is not None:
            block.conv.bias.mul_(factor)
        factors.append(factor)
    return factors


def activity_at_init(
    depth: int = 8,
    threshold: float = 1.0,
    beta: float = 0.9,
    norms: Sequence[str] = ("none", "bn"),
    samples: int = 256,
    seed: int = 0,
    width: int = 32,
    num_steps: int = 8,
) -> dict[str, list[float]]:
    """Firing rate of each layer of untrained SNNs on digits, one entry per normaliser.

    The networks run in training mode, as during the first training step: normalisers use the
    statistics of the batch of ``samples`` validation images.

    >>> rates = activity_at_init(depth=2, width=4, num_steps=2, samples=16, norms=("none", "bn"))
    >>> sorted(rates), len(rates["bn"])
    (['bn', 'none'], 2)
    """
    from .data import load_dataset
    from .experiments import TrainConfig, build_model
    from .training import seed_everything

    name = "activity_at_init"
    if isinstance(norms, str) or not hasattr(norms, "__iter__"):
        raise TypeError(f"{name}: norms must be a sequence of registry names, e.g. ('none', 'bn'), got {norms!r}")
    norms = list(norms)
    if not norms:
        raise ValueError(f"{name}: give at least one registry name in norms, e.g. ('none', 'bn')")
    for norm in norms:
        if not isinstance(norm, str):
            raise TypeError(f"{name}: every entry of norms must be a registry name (str), got {type(norm).__name__} {norm!r}")
    check_positive_int(samples, "samples", name)
    check_nonnegative_int(seed, "seed", name)
    split = load_dataset("digits")
    config = TrainConfig(depth=depth, width=width, num_steps=num_steps, beta=beta, threshold=threshold)
    rates = {}
    for norm in norms:
        seed_everything(seed)
        model = build_model("snn", norm, config)
        rates[norm] = firing_rates(model, split.x_val[:samples], train_mode=True).tolist()
    return rates
