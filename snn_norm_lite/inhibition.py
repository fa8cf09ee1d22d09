"""E-I circuits with lateral inhibition: normalisation by circuit structure instead of batch statistics.

DeepEISNN (Liu, Ding and Yu, "Training deep normalization-free spiking neural networks with
lateral inhibition", ICLR 2026, arXiv:2509.23253) replaces every ``conv -> BatchNorm`` pair of
a spiking network by a small cortical circuit. The layer's input ``x`` (spikes, pooled spikes
or pixel intensities, so ``x >= 0``) drives ``n_E`` excitatory (E) units and
``n_I = max(1, n_E // ei_ratio)`` inhibitory (I) units (E:I = 4:1 by default, as in cortex).
The I units are fast and linear (they do not spike); they feed back onto the E units::

    I_EE  = W_EE x                    excitatory drive                    [n_E]
    s_I   = W_IE x                    inhibitory activity                 [n_I]
    I_sub = W_EI s_I                  subtractive inhibition              [n_E]
    I_div = W_EI (g_I * s_I)          divisive (shunting) inhibition      [n_E]
    I     = g_E * (I_EE - I_sub) / I_div + b_E

``I`` is the current integrated by the E units' LIF neurons. The output (read-out) layer has no
division and no neurons: its logits are ``I_EE - I_sub``, averaged over time by the network.

Why it normalises. ``I_sub`` is a blurred copy of ``I_EE`` (both are non-negative sums over
the same input), so the difference removes the part of the drive every E unit shares: the
mean. ``I_div`` grows with the total input activity, so dividing by it removes the scale.
Unlike BatchNorm nothing is averaged over the batch: each sample is normalised by its own
inhibitory units, in training and in evaluation alike.

Dale's law. A neuron is either excitatory or inhibitory, so every weight and gain is
non-negative: ``W_EE, W_IE, W_EI, g_I, g_E >= 0``; only the bias ``b_E`` is free. The forward
pass uses the clamped values ``max(w, 0)``; :func:`enforce_dale` clamps the stored parameters
in place (projected gradient descent: call it after every optimiser step, e.g.
``training.fit(..., on_step=enforce_dale)``; :class:`~snn_norm_lite.models.EISpikingConvNet`
calls it itself at the start of every training forward pass). The paper's official code,
https://github.com/vwOvOwv/DeepEISNN (``modules/conv2d.py``, ``modules/norm2d.py``,
``modules/optimizers.py``), clamps the stored parameters in place at every forward pass, in
training and evaluation, and again after every step of its SGD; the outputs are the same.
:func:`dale_violation_share` measures how much of the network the last step pushed below 0.

E-I Init (data dependent; on the first batch, time merged into the batch). With ``d`` the
fan-in, ``Ex = mean(x)``, ``Ex2 = mean(x^2)`` and ``Vx`` the variance of each input element
over the batch, averaged over the elements::

    W_EE, W_IE ~ Exponential(scale sigma),   sigma = sqrt(Vx / (d * (Ex2 + Vx)))
    W_EI = 1 / n_I,   g_E = 1,   b_E = 0,   g_I = sqrt(Ex2 + Vx) / (sqrt(d) * Ex)

The paper's argument: an exponential weight has mean sigma and second moment 2 sigma^2, so
over random weights and inputs ``Var(I_EE) = d sigma^2 (2 Ex2 - Ex^2) = d sigma^2 (Ex2 + Vx)
= Vx`` (input elements alike, so ``Vx = Ex2 - Ex^2``), while
``I_div ~= g_I * sigma * d * Ex = sqrt(Vx)``: the current starts with zero mean and about unit
variance. The exact second moment is a little smaller, because ``I_sub`` is correlated with
``I_EE`` (the subtraction cancels the shared part of the input) and brings its own weight
noise: pooled over channels and in expectation over the weights, for independent input
elements, ``E[I^2] ~= (1 + 1/n_I) * Ex2 / (Ex2 + Vx)`` -- about 0.6 for sparse spikes and 0.75
at rate 1/2 with n_I = 8. Order one, like BatchNorm's 1, from circuit structure alone. (Part
of it is a fixed offset of each channel, from its random weights; BatchNorm removes that too,
so a single channel varies less over the batch than the pooled figure says.)

E-I Prop (the backward pass). Three parts, each switchable for ablations:

* ``stabilize``: zeros in ``I_div`` (a sample whose inhibitory units are silent) are replaced,
  per sample (one ``(t, b)`` slice), by the smallest positive value of that sample; a sample
  with no positive value at all uses 1. Without it, ``0 / 0`` and ``x / 0`` appear.
* ``straight_through``: the replacement is invisible to the gradient,
  ``out = replaced.detach() + I_div - I_div.detach()``: every entry of ``I_div``, replaced or
  not, gets the gradient of the value that was used. Without it ("no STE") the replacement
  keeps its natural gradient: a replaced entry's gradient flows to the sample's smallest
  positive entry (the one whose value was copied), and none to the zero entry itself.
* ``scale_inhibitory_grad``: the gradient of ``W_EI`` is divided by the fan-in ``d``.
  ``W_EI`` multiplies ``s_I``, a sum over d inputs, and appears in both the numerator and the
  divisor, so without the scaling its gradient dwarfs those of the feed-forward weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .checks import (
    check_bool,
    check_channels,
    check_finite_number,
    check_floating,
    check_nonnegative_int,
    check_positive_int,
    check_positive_number,
    check_rank,
    check_unit_interval,
)
from .sequences import check_sequence, merge_time, split_time


@dataclass(frozen=True)
class EIInitStatistics:
    """What E-I Init measured on a layer's first batch and the scales it chose.

    >>> layer = EILinear(16, 8)
    >>> statistics = layer.ei_init(torch.bernoulli(torch.full((4, 32, 16), 0.5), generator=torch.Generator().manual_seed(0)))
    >>> statistics.fan_in, statistics.weight_scale > 0
    (16, True)
    """

    fan_in: int  # d
    mean: float  # Ex = mean(x)
    second_moment: float  # Ex2 = mean(x^2)
    variance: float  # Vx: per-element variance over the batch, averaged over elements
    weight_scale: float  # sigma = sqrt(Vx / (d (Ex2 + Vx))), the mean of W_EE and W_IE
    inhibitory_gain: float  # g_I = sqrt(Ex2 + Vx) / (sqrt(d) Ex)


def input_moments(x: torch.Tensor, layer: str = "input_moments") -> tuple[float, float, float]:
    """``(Ex, Ex2, Vx)`` of a batch ``[N, ...]`` (N samples, time already merged into N).

    ``Vx`` is the unbiased variance of every input element over the N samples, averaged over
    the elements.

    >>> x = torch.tensor([[0.0, 1.0], [1.0, 1.0]])           # 2 samples, 2 input elements
    >>> input_moments(x)                                     # Ex, Ex2, Vx
    (0.75, 0.75, 0.25)

    ``layer`` names the caller in error messages: fewer than 2 samples, or a batch holding
    NaN or Inf (its moments would be meaningless), is a ``ValueError``.
    """
    check_floating(x, layer)
    if x.dim() < 1 or x.shape[0] < 2:
        raise ValueError(f"{layer}: E-I Init needs at least 2 samples, got shape {tuple(x.shape)}")
    x = x.detach().double()
    moments = torch.stack([x.mean(), x.square().mean(), x.var(dim=0, correction=1).mean()]).tolist()
    if not all(math.isfinite(m) for m in moments):
        raise ValueError(
            f"{layer}: E-I Init needs a finite batch, got one holding NaN or Inf (moments Ex, Ex2, Vx = "
            f"{moments}); initialise on clean data"
        )
    return tuple(moments)


def ei_init_scales(fan_in: int, mean: float, second_moment: float, variance: float) -> tuple[float, float]:
    """E-I Init's ``(sigma, g_I)`` for input moments ``(Ex, Ex2, Vx)`` and fan-in ``d``.

    >>> sigma, gain_i = ei_init_scales(fan_in=9, mean=0.5, second_moment=0.5, variance=0.25)
    >>> round(sigma, 4), round(gain_i, 4)                    # sqrt(0.25 / (9 * 0.75)), sqrt(0.75) / (3 * 0.5)
    (0.1925, 0.5774)
    """
    name = "ei_init_scales"
    fan_in = check_positive_int(fan_in, "fan_in", name)
    mean = check_finite_number(mean, "mean", name)
    second_moment = check_finite_number(second_moment, "second_moment", name)
    variance = check_finite_number(variance, "variance", name)
    if second_moment < 0 or variance < 0:
        raise ValueError(
            f"{name}: second_moment and variance must be >= 0, got {second_moment} and {variance}"
        )
    if not mean > 0:
        raise ValueError(
            f"E-I Init: the input has mean {mean:.3g}; the inhibitory gain g_I = sqrt(Ex2 + Vx) / "
            "(sqrt(d) * Ex) needs a positive mean. The layer received no activity on its first batch "
            "(e.g. the layer before it never spiked): initialise on a batch that makes it fire"
        )
    if not variance > 0:
        raise ValueError(
            "E-I Init: the input does not vary over the batch (Vx = 0), so the weight scale "
            "sigma = sqrt(Vx / (d (Ex2 + Vx))) would be 0; initialise on a batch of different samples"
        )
    sigma = math.sqrt(variance / (fan_in * (second_moment + variance)))
    gain_i = math.sqrt(second_moment + variance) / (math.sqrt(fan_in) * mean)
    return sigma, gain_i


class _ScaleGradient(torch.autograd.Function):
    """Identity in the forward pass; multiplies the gradient by ``factor`` in the backward pass.

    The backward pass is a differentiable torch operation (``grad * factor``), so second-order
    gradients are exact: the map is linear, ``d/dgrad (grad * factor) = factor``.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.factor, None


def scale_gradient(x: torch.Tensor, factor: float) -> torch.Tensor:
    """``x`` unchanged, with its gradient multiplied by ``factor`` (E-I Prop: ``1 / d`` for W_EI).

    >>> x = torch.ones(3, requires_grad=True)
    >>> scale_gradient(x, 0.25).sum().backward()
    >>> x.grad
    tensor([0.2500, 0.2500, 0.2500])
    """
    check_floating(x, "scale_gradient")
    factor = check_finite_number(factor, "factor", "scale_gradient")
    return _ScaleGradient.apply(x, factor)


def stabilize_divisor(divisor: torch.Tensor, straight_through: bool = True, fallback: float = 1.0) -> torch.Tensor:
    """Replace the zeros of each sample of ``divisor [N, ...]`` by that sample's smallest positive value.

    A sample is one row ``divisor[n]`` (one ``(t, b)`` slice of the time-merged batch). A row
    without any positive value uses ``fallback``. ``divisor`` is non-negative in an E-I
    circuit, so "not positive" means zero.

    ``straight_through=True``: ``replaced.detach() + divisor - divisor.detach()`` (the value of
    the replacement, the gradient of the identity). ``False``: the natural gradient of
    ``where(divisor > 0, divisor, smallest)``, which sends a replaced entry's gradient to the
    entry whose value it copied.

    >>> divisor = torch.tensor([[0.0, 2.0, 0.5], [0.0, 0.0, 0.0]])
    >>> stabilize_divisor(divisor)                           # row 0: smallest positive 0.5; row 1: fallback 1
    tensor([[0.5000, 2.0000, 0.5000],
            [1.0000, 1.0000, 1.0000]])
    """
    name = "stabilize_divisor"
    check_floating(divisor, name)
    if divisor.dim() < 2:
        raise ValueError(f"{name}: expected a divisor [N, ...] of rank >= 2 (one row per sample), got shape {tuple(divisor.shape)}")
    check_bool(straight_through, "straight_through", name)
    fallback = check_positive_number(fallback, "fallback", name)
    flat = divisor.flatten(1)
    positive = flat > 0
    smallest = torch.where(positive, flat, math.inf).amin(dim=1, keepdim=True)
    smallest = torch.where(torch.isinf(smallest), torch.full_like(smallest, fallback), smallest)
    replaced = torch.where(positive, flat, smallest)
    if straight_through:
        replaced = replaced.detach() + (flat - flat.detach())
    return replaced.view_as(divisor)


class _EICircuit(nn.Module):
    """What the linear and the convolutional E-I circuits share (see the module docstring).

    Subclasses provide ``weight_ee``/``weight_ie``, ``_drive`` (the two feed-forward maps on the
    time-merged batch), ``_check_layout`` (the input's rank and channels) and ``_channel_view``.
    """

    def __init__(
        self,
        num_excitatory: int,
        ei_ratio: int,
        fan_in: int,
        output: bool,
        stabilize: bool,
        straight_through: bool,
        scale_inhibitory_grad: bool,
        auto_init: bool,
    ):
        super().__init__()
        name = type(self).__name__
        check_positive_int(ei_ratio, "ei_ratio", name)
        flags = dict(output=output, stabilize=stabilize, straight_through=straight_through,
                     scale_inhibitory_grad=scale_inhibitory_grad, auto_init=auto_init)
        for flag, value in flags.items():
            check_bool(value, flag, name)
        self.num_excitatory = num_excitatory
        self.num_inhibitory = max(1, num_excitatory // ei_ratio)
        self.ei_ratio = ei_ratio
        self.fan_in = fan_in
        self.output = bool(output)
        self.stabilize = bool(stabilize)
        self.straight_through = bool(straight_through)
        self.scale_inhibitory_grad = bool(scale_inhibitory_grad)
        self.auto_init = bool(auto_init)
        self.initialised = False
        self.init_statistics: Optional[EIInitStatistics] = None
        self.weight_ei = nn.Parameter(torch.empty(self.num_excitatory, self.num_inhibitory))
        if self.output:
            for name_ in ("gain_i", "gain_e", "bias_e"):
                self.register_parameter(name_, None)
        else:
            self.gain_i = nn.Parameter(torch.empty(self.num_inhibitory))
            self.gain_e = nn.Parameter(torch.empty(self.num_excitatory))
            self.bias_e = nn.Parameter(torch.empty(self.num_excitatory))

    # -- parameters ------------------------------------------------------------------------

    def dale_parameters(self) -> list[nn.Parameter]:
        """The parameters Dale's law keeps non-negative (every one but ``bias_e``).

        >>> [tuple(p.shape) for p in EILinear(6, 8).dale_parameters()]    # W_EE, W_IE, W_EI, g_I, g_E
        [(8, 6), (2, 6), (8, 2), (2,), (8,)]
        """
        names = ("weight_ee", "weight_ie", "weight_ei", "gain_i", "gain_e")
        return [p for p in (getattr(self, n) for n in names) if p is not None]

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Placeholder values until E-I Init sees real data: E-I Init for Bernoulli(1/2) input.

        (Ex = 1/2, Ex2 = 1/2, Vx = 1/4; a spike train at rate 1/2.) The layer is marked
        uninitialised, so with ``auto_init`` the first batch it sees replaces these values.

        >>> layer = EILinear(6, 8)
        >>> layer.reset_parameters()
        >>> layer.initialised, bool((layer.weight_ee >= 0).all())
        (False, True)
        """
        self._apply_ei_init(0.5, 0.5, 0.25)
        self.initialised = False
        self.init_statistics = None

    @torch.no_grad()
    def _apply_ei_init(self, mean: float, second_moment: float, variance: float) -> EIInitStatistics:
        sigma, gain_i = ei_init_scales(self.fan_in, mean, second_moment, variance)
        self.weight_ee.exponential_(1.0 / sigma)  # Exponential with mean (scale) sigma
        self.weight_ie.exponential_(1.0 / sigma)
        self.weight_ei.fill_(1.0 / self.num_inhibitory)
        if not self.output:
            self.gain_i.fill_(gain_i)
            self.gain_e.fill_(1.0)
            self.bias_e.zero_()
        return EIInitStatistics(self.fan_in, mean, second_moment, variance, sigma, gain_i)

    @torch.no_grad()
    def ei_init(self, x: torch.Tensor) -> EIInitStatistics:
        """E-I Init from the layer's input ``x`` (a sequence ``[T, B, ...]`` or one step ``[B, ...]``).

        Time is merged into the batch. Sets ``W_EE, W_IE ~ Exponential(sigma)``,
        ``W_EI = 1/n_I``, ``g_E = 1``, ``b_E = 0``, ``g_I = sqrt(Ex2 + Vx) / (sqrt(d) Ex)``
        (see the module docstring), marks the layer initialised and returns the statistics.
        Raises ``ValueError`` when the input has zero mean (nothing to normalise by), fewer than
        2 samples, or NaN/Inf (the layer stays as it was).

        >>> _ = torch.manual_seed(0)
        >>> layer = EIConv2d(2, 8, 3, padding=1)
        >>> statistics = layer.ei_init(torch.rand(4, 16, 2, 6, 6))          # [T, B, C, H, W]
        >>> layer.initialised, round(statistics.mean, 1)
        (True, 0.5)
        """
        check_floating(x, type(self).__name__)
        merged, _ = self._merge(x, one_step=x.dim() == self._sequence_rank - 1)
        statistics = self._apply_ei_init(*input_moments(merged, type(self).__name__))
        self.initialised = True
        self.init_statistics = statistics
        return statistics

    def get_extra_state(self):
        return {"initialised": self.initialised}

    def set_extra_state(self, state) -> None:
        self.initialised = bool(state["initialised"])

    # -- forward ---------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, t: Optional[int] = None) -> torch.Tensor:
        """Integrated current ``I`` (logits ``I_EE - I_sub`` for an output layer).

        ``x``: a sequence ``[T, B, ...]``, or one step ``[B, ...]`` when ``t`` is given (the
        circuit has no memory, so ``t`` is only checked). Output: the same leading layout.

        >>> _ = torch.manual_seed(0)
        >>> layer = EILinear(16, 8)
        >>> x = torch.rand(4, 32, 16)                                      # [T, B, features], non-negative
        >>> current = layer(x)                                             # E-I Init runs on this first batch
        >>> current.shape, layer.initialised
        (torch.Size([4, 32, 8]), True)
        >>> layer(x[0], t=0).shape                                         # one step
        torch.Size([32, 8])
        """
        if t is not None and (isinstance(t, bool) or not isinstance(t, int) or t < 0):
            raise TypeError(f"{type(self).__name__}: time step t must be a non-negative int, got {t!r}")
        merged, leading = self._merge(x, one_step=t is not None)
        if not self.initialised and self.auto_init:
            self.ei_init(merged.unsqueeze(0) if t is None else merged)
        current_ee, activity_i = self._drive(merged, self.weight_ee.clamp(min=0), self.weight_ie.clamp(min=0))
        weight_ei = self.weight_ei.clamp(min=0)
        if self.scale_inhibitory_grad:
            weight_ei = scale_gradient(weight_ei, 1.0 / self.fan_in)
        balanced = current_ee - self._inhibit(activity_i, weight_ei)  # I_EE - I_sub
        if self.output:
            current = balanced
        else:
            view = self._channel_view
            shunting = self._inhibit(activity_i * view(self.gain_i.clamp(min=0)), weight_ei)  # I_div
            if self.stabilize:
                shunting = stabilize_divisor(shunting, self.straight_through)
            current = view(self.gain_e.clamp(min=0)) * balanced / shunting + view(self.bias_e)
        return current if leading is None else split_time(current, leading)

    def _merge(self, x: torch.Tensor, one_step: bool):
        """Check ``x`` and return it with time merged into the batch: ``(x [T*B, ...], (T, B))``.

        A single step (``one_step``) is returned as it is, with ``None`` for the leading shape.
        """
        name = type(self).__name__
        check_floating(x, name)
        if x.dtype != self.weight_ee.dtype:
            raise TypeError(
                f"{name}: the layer's parameters are {self.weight_ee.dtype}, got an input of dtype {x.dtype}; "
                f"convert the input with x.to({self.weight_ee.dtype}) or the layer with layer.to({x.dtype}) "
                "(.float() / .double())"
            )
        self._check_layout(x, one_step)
        if not one_step:
            check_sequence(x, name, f"[T, B, ...] of rank {self._sequence_rank}")
        if x.numel() and bool(x.amin() < 0):
            raise ValueError(
                f"{type(self).__name__}: an E-I circuit needs non-negative input (spikes, pooled spikes or "
                f"pixel intensities in [0, 1]); got a minimum of {x.min().item():.4g}"
            )
        return (x, None) if one_step else merge_time(x)

    def extra_repr(self) -> str:
        switches = ("stabilize", "straight_through", "scale_inhibitory_grad")
        flags = ", ".join(f"{k}=False" for k in switches if not getattr(self, k))
        return (
            f"n_E={self.num_excitatory}, n_I={self.num_inhibitory}, fan_in={self.fan_in}"
            + (", output=True" if self.output else "")
            + (f", {flags}" if flags else "")
            + ("" if self.initialised else ", not initialised")
        )


class EILinear(_EICircuit):
    """Fully connected E-I circuit on ``[T, B, in_features]`` (or one step ``[B, in_features]``).

    ``I = g_E * (W_EE x - W_EI s_I) / (W_EI (g_I * s_I)) + b_E`` with ``s_I = W_IE x``; with
    ``output=True`` the logits ``W_EE x - W_EI s_I``. See the module docstring for Dale's law,
    E-I Init and E-I Prop.

    Args:
        in_features: input features (the fan-in d).
        out_features: number of excitatory units n_E (the output features).
        ei_ratio: n_E per inhibitory unit; ``n_I = max(1, n_E // ei_ratio)``.
        output: the read-out form, without division, gains or bias.
        stabilize, straight_through, scale_inhibitory_grad: the three parts of E-I Prop.
        auto_init: run E-I Init on the first input the layer sees (in training or evaluation).

    Parameters: ``weight_ee [n_E, d]``, ``weight_ie [n_I, d]``, ``weight_ei [n_E, n_I]``,
    ``gain_i [n_I]``, ``gain_e [n_E]``, ``bias_e [n_E]``.

    >>> _ = torch.manual_seed(0)
    >>> layer = EILinear(16, 8)
    >>> layer
    EILinear(n_E=8, n_I=2, fan_in=16, not initialised)
    >>> layer(torch.rand(4, 32, 16)).shape
    torch.Size([4, 32, 8])
    >>> EILinear(16, 10, output=True)(torch.rand(4, 32, 16)).shape    # the read-out: I_EE - I_sub
    torch.Size([4, 32, 10])
    """

    _sequence_rank = 3

    def __init__(
        self,
        in_features: int,
        out_features: int,
        ei_ratio: int = 4,
        output: bool = False,
        stabilize: bool = True,
        straight_through: bool = True,
        scale_inhibitory_grad: bool = True,
        auto_init: bool = True,
    ):
        check_positive_int(in_features, "in_features", type(self).__name__)
        check_positive_int(out_features, "out_features", type(self).__name__)
        super().__init__(
            out_features, ei_ratio, in_features, output, stabilize, straight_through, scale_inhibitory_grad, auto_init
        )
        self.in_features, self.out_features = in_features, out_features
        self.weight_ee = nn.Parameter(torch.empty(self.num_excitatory, in_features))
        self.weight_ie = nn.Parameter(torch.empty(self.num_inhibitory, in_features))
        self.reset_parameters()

    def _check_layout(self, x: torch.Tensor, one_step: bool) -> None:
        name = type(self).__name__
        if one_step:
            check_rank(x, (2,), name, "[B, features] (one time step)")
        else:
            check_rank(x, (3,), name, "[T, B, features] (or pass t= for one step [B, features])")
        check_channels(x, -1, self.in_features, name)

    def _drive(self, x, weight_ee, weight_ie):
        both = F.linear(x, torch.cat([weight_ee, weight_ie]))  # one matmul for E and I
        return both.split([self.num_excitatory, self.num_inhibitory], dim=1)

    def _inhibit(self, activity_i, weight_ei):
        return F.linear(activity_i, weight_ei)

    def _channel_view(self, values):
        return values


def _pair(value, name: str, layer: str, check) -> tuple[int, int]:
    """An int or a pair of ints (as ``nn.Conv2d`` takes them) as a checked pair."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2:
        raise ValueError(f"{layer}: {name} must be an int or a pair of ints, got {value!r}")
    return tuple(check(v, name, layer) for v in pair)


class EIConv2d(_EICircuit):
    """Convolutional E-I circuit on ``[T, B, C, H, W]`` (or one step ``[B, C, H, W]``).

    ``W_EE`` and ``W_IE`` are convolutions, run once on the time-merged batch
    ``[T*B, C, H, W]``; ``W_EI`` is a pointwise (1x1) map from the I channels to the E
    channels; gains and bias are per channel. Otherwise as :class:`EILinear`; the fan-in is
    ``d = in_channels * kernel_height * kernel_width``.

    Args:
        in_channels: input channels.
        out_channels: number of excitatory channels n_E.
        kernel_size, stride, padding: of the two convolutions, as in ``nn.Conv2d`` (an int or a
            pair of ints; kernel_size and stride >= 1, padding >= 0). An input smaller than the
            kernel after padding is refused at the forward pass.
        ei_ratio, output, stabilize, straight_through, scale_inhibitory_grad, auto_init: as in
            :class:`EILinear`.

    Parameters: ``weight_ee [n_E, C, kh, kw]``, ``weight_ie [n_I, C, kh, kw]``,
    ``weight_ei [n_E, n_I]``, ``gain_i [n_I]``, ``gain_e [n_E]``, ``bias_e [n_E]``.

    >>> _ = torch.manual_seed(0)
    >>> layer = EIConv2d(3, 8, 3, padding=1)
    >>> current = layer(torch.rand(4, 16, 3, 6, 6))                   # [T, B, C, H, W] in
    >>> current.shape, layer
    (torch.Size([4, 16, 8, 6, 6]), EIConv2d(n_E=8, n_I=2, fan_in=27))
    """

    _sequence_rank = 5

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        ei_ratio: int = 4,
        stride=1,
        padding=0,
        output: bool = False,
        stabilize: bool = True,
        straight_through: bool = True,
        scale_inhibitory_grad: bool = True,
        auto_init: bool = True,
    ):
        name = type(self).__name__
        check_positive_int(in_channels, "in_channels", name)
        check_positive_int(out_channels, "out_channels", name)
        kernel = _pair(kernel_size, "kernel_size", name, check_positive_int)
        stride = _pair(stride, "stride", name, check_positive_int)
        padding = _pair(padding, "padding", name, check_nonnegative_int)
        super().__init__(
            out_channels,
            ei_ratio,
            in_channels * kernel[0] * kernel[1],
            output,
            stabilize,
            straight_through,
            scale_inhibitory_grad,
            auto_init,
        )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel, stride, padding
        self.weight_ee = nn.Parameter(torch.empty(self.num_excitatory, in_channels, *kernel))
        self.weight_ie = nn.Parameter(torch.empty(self.num_inhibitory, in_channels, *kernel))
        self.reset_parameters()

    def _check_layout(self, x: torch.Tensor, one_step: bool) -> None:
        name = type(self).__name__
        if one_step:
            check_rank(x, (4,), name, "[B, C, H, W] (one time step)")
            check_channels(x, 1, self.in_channels, name)
        else:
            check_rank(x, (5,), name, "[T, B, C, H, W] (or pass t= for one step [B, C, H, W])")
            check_channels(x, 2, self.in_channels, name)
        padded = [size + 2 * pad for size, pad in zip(x.shape[-2:], self.padding)]
        if any(p < k for p, k in zip(padded, self.kernel_size)):
            raise ValueError(
                f"{name}: the {self.kernel_size[0]}x{self.kernel_size[1]} kernel is larger than the input "
                f"{x.shape[-2]}x{x.shape[-1]} padded by {self.padding} ({padded[0]}x{padded[1]}; input shape "
                f"{tuple(x.shape)}); use larger images, more padding or a smaller kernel_size"
            )

    def _drive(self, x, weight_ee, weight_ie):
        both = F.conv2d(x, torch.cat([weight_ee, weight_ie]), stride=self.stride, padding=self.padding)
        return both.split([self.num_excitatory, self.num_inhibitory], dim=1)  # one convolution for E and I

    def _inhibit(self, activity_i, weight_ei):
        return F.conv2d(activity_i, weight_ei[:, :, None, None])

    def _channel_view(self, values):
        return values.view(-1, 1, 1)


def circuits(model: nn.Module) -> list[_EICircuit]:
    """Every E-I circuit (:class:`EILinear`, :class:`EIConv2d`) in ``model``, in registration order.

    >>> from snn_norm_lite.models import build_snn
    >>> [type(c).__name__ for c in circuits(build_snn("ei", depth=2, width=8, num_steps=2))]
    ['EIConv2d', 'EIConv2d', 'EILinear']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"circuits: expected an nn.Module, got {type(model).__name__}")
    return [m for m in model.modules() if isinstance(m, _EICircuit)]


@torch.no_grad()
def enforce_dale(model: nn.Module) -> None:
    """Clamp every Dale-constrained parameter of ``model``'s E-I circuits to ``>= 0``, in place.

    The projection step of projected gradient descent: call it after each optimiser step
    (``training.fit(..., on_step=enforce_dale)``). ``bias_e`` is left free. The parameters are
    written only when one of them is negative, so calling it at the start of a forward pass
    never invalidates a graph built earlier.

    >>> model = torch.nn.Sequential(EILinear(4, 8))
    >>> with torch.no_grad():
    ...     _ = model[0].weight_ee.fill_(-1.0)
    >>> enforce_dale(model)
    >>> float(model[0].weight_ee.detach().min())
    0.0
    """
    layers = circuits(model)
    if not layers:
        raise TypeError(f"enforce_dale: {type(model).__name__} has no E-I circuits (EILinear, EIConv2d)")
    parameters = [p for layer in layers for p in layer.dale_parameters()]
    if bool(torch.stack([p.min() for p in parameters]).lt(0).any()):
        for p in parameters:
            p.clamp_(min=0)


@torch.no_grad()
def ei_init(model: nn.Module, x: torch.Tensor) -> list[EIInitStatistics]:
    """E-I Init for every circuit of ``model``, layer by layer, on the batch ``x``.

    Runs ``model(x)`` once in evaluation mode without gradients; each circuit initialises from
    the input it receives, so layer l is initialised on the output of the already initialised
    layers before it (the network's prefix). Returns each layer's statistics in order.
    Use it to re-initialise a model, or on a model built with ``auto_init=False``; models
    built with the default ``auto_init=True`` do the same on the first batch they see.

    >>> from snn_norm_lite.models import build_snn
    >>> _ = torch.manual_seed(0)
    >>> model = build_snn("ei", depth=2, width=8, num_steps=2)
    >>> statistics = ei_init(model, torch.rand(16, 1, 8, 8))
    >>> len(statistics), [s.fan_in for s in statistics][:2]           # layer 1 sees pixels, layer 2 spikes
    (3, [9, 72])
    """
    layers = circuits(model)
    if not layers:
        raise TypeError(f"ei_init: {type(model).__name__} has no E-I circuits (EILinear, EIConv2d)")
    check_floating(x, "ei_init")
    auto = [layer.auto_init for layer in layers]
    was_training = model.training
    for layer in layers:
        layer.initialised, layer.auto_init = False, True
    model.eval()
    try:
        model(x)
    finally:
        model.train(was_training)
        for layer, flag in zip(layers, auto):
            layer.auto_init = flag
    skipped = [i for i, layer in enumerate(layers) if not layer.initialised]
    if skipped:
        raise ValueError(f"ei_init: the forward pass of {type(model).__name__} never reached E-I circuits {skipped}")
    return [layer.init_statistics for layer in layers]


@torch.no_grad()
def dale_violation_share(model: nn.Module) -> float:
    """Share of the Dale-constrained entries of ``model``'s E-I circuits that are negative.

    Measured right after an optimiser step (e.g. at the end of training, before any further
    training forward pass), it is the share of weights and gains the last step pushed below 0:
    what the next projection (:func:`enforce_dale`) will clamp back to 0. Right after a
    projection it is 0. A measure of how hard the optimiser pushes against Dale's law.

    >>> model = torch.nn.Sequential(EILinear(4, 8))
    >>> dale_violation_share(model)
    0.0
    >>> with torch.no_grad():
    ...     _ = model[0].weight_ee.fill_(-1.0)                        # 32 of the 32 + 8 + 16 + 2 + 8 entries
    >>> round(dale_violation_share(model), 3)
    0.485
    """
    layers = circuits(model)
    if not layers:
        raise TypeError(f"dale_violation_share: {type(model).__name__} has no E-I circuits (EILinear, EIConv2d)")
    parameters = [p for layer in layers for p in layer.dale_parameters()]
    negative = sum(int((p < 0).sum()) for p in parameters)
    return negative / sum(p.numel() for p in parameters)


def straight_through_gradient_gap(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Largest absolute difference between the gradients with and without E-I Prop's STE.

    Computes the gradient of the cross-entropy of ``model(x)`` (logits ``[B, classes]``) against
    ``y`` with respect to every parameter twice, with ``straight_through=True`` and ``False`` in
    every circuit, and returns ``max |g_STE - g_noSTE|`` over all entries (0.0: identical).
    The forward values are the same either way; only where a zero of ``I_div`` was replaced
    can the gradients differ (see :func:`stabilize_divisor`). Runs in evaluation mode, so the
    model is not changed (its ``.grad`` fields are not touched either); flags and mode are restored.

    >>> from snn_norm_lite.models import build_snn
    >>> _ = torch.manual_seed(0)
    >>> model = build_snn("ei", depth=2, width=8, num_steps=2)
    >>> x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    >>> straight_through_gradient_gap(model, x, y)                 # no divisor was zero: the same gradients
    0.0
    """
    layers = circuits(model)
    if not layers:
        raise TypeError(
            f"straight_through_gradient_gap: {type(model).__name__} has no E-I circuits (EILinear, EIConv2d)"
        )
    check_floating(x, "straight_through_gradient_gap")
    if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.dim() != 1:
        raise TypeError(
            "straight_through_gradient_gap: y must be a 1-D tensor of integer class labels [B], got "
            + (f"{y.dtype} tensor of shape {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__)
        )
    parameters = [p for p in model.parameters() if p.requires_grad]
    flags = [layer.straight_through for layer in layers]
    was_training = model.training
    model.eval()
    gradients = []
    try:
        for straight_through in (True, False):
            for layer in layers:
                layer.straight_through = straight_through
            with torch.enable_grad():
                loss = F.cross_entropy(model(x), y)
                grads = torch.autograd.grad(loss, parameters, allow_unused=True)
            gradients.append([torch.zeros_like(p) if g is None else g for p, g in zip(parameters, grads)])
    finally:
        model.train(was_training)
        for layer, flag in zip(layers, flags):
            layer.straight_through = flag
    return max((a - b).abs().max().item() for a, b in zip(*gradients))


@torch.no_grad()
def ei_current_at_init(
    rate: float,
    ei_ratio: int = 4,
    channels: int = 32,
    batch: int = 64,
    num_steps: int = 4,
    size: int = 8,
    seed: int = 0,
) -> torch.Tensor:
    """Integrated current ``I`` of a freshly E-I-initialised convolutional circuit on spikes.

    Builds ``EIConv2d(channels, channels, 3, padding=1, ei_ratio=ei_ratio)`` (the block of the
    reference E-I network), runs E-I Init on one batch of Bernoulli(``rate``) spike trains
    ``[num_steps, batch, channels, size, size]`` and returns the current it produces on a
    second, independent batch drawn the same way (same shape). Everything is seeded by ``seed``.

    >>> current = ei_current_at_init(rate=0.2, channels=8, batch=8, num_steps=2, size=4)
    >>> current.shape, bool(torch.isfinite(current).all())
    (torch.Size([2, 8, 8, 4, 4]), True)
    """
    name = "ei_current_at_init"
    rate = check_unit_interval(rate, "rate", name)
    for argument, value in (("ei_ratio", ei_ratio), ("channels", channels), ("batch", batch),
                            ("num_steps", num_steps), ("size", size)):
        check_positive_int(value, argument, name)
    check_nonnegative_int(seed, "seed", name)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    layer = EIConv2d(channels, channels, 3, ei_ratio=ei_ratio, padding=1)
    shape = (num_steps, batch, channels, size, size)
    layer.ei_init(torch.bernoulli(torch.full(shape, float(rate)), generator=generator))
    return layer(torch.bernoulli(torch.full(shape, float(rate)), generator=generator))


@torch.no_grad()
def replace_ei_init_with_default(model) -> int:
    """The "no E-I Init" ablation: give every E-I circuit a generic initialisation instead.

    Each circuit of ``model`` gets PyTorch's default initialisation of a convolution or linear
    layer (Kaiming uniform, ``a = sqrt(5)``) for ``W_EE``, ``W_IE`` and ``W_EI``, projected onto
    Dale's law (negative weights set to 0), with ``g_I = g_E = 1`` and ``b_E = 0``; its
    ``auto_init`` is switched off and it is marked initialised, so the data-dependent E-I Init
    never runs. Returns the number of circuits changed (an error if there are none).

    >>> from snn_norm_lite.models import build_snn
    >>> model = build_snn("ei", depth=2, width=8, num_steps=2)
    >>> replace_ei_init_with_default(model)
    3
    >>> all(c.initialised and not c.auto_init for c in circuits(model))
    True
    """
    layers = circuits(model)
    if not layers:
        raise ValueError("replace_ei_init_with_default: the model has no E-I circuits (build it with 'ei')")
    for layer in layers:
        for weight in (layer.weight_ee, layer.weight_ie, layer.weight_ei):
            torch.nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        if not layer.output:
            layer.gain_i.fill_(1.0)
            layer.gain_e.fill_(1.0)
            layer.bias_e.zero_()
        layer.auto_init, layer.initialised = False, True
    enforce_dale(model)
    return len(layers)
