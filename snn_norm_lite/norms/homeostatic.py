"""Homeostatic normalisation: a per-channel gain and bias that settle by slow feedback.

Biology keeps neurons in a working range with two slow mechanisms: *synaptic scaling*
multiplies all input weights of a neuron by a common gain, and *intrinsic excitability* shifts
its firing threshold. Here each channel has a gain ``g`` (synaptic scaling) and a bias ``b``
(intrinsic excitability), and the normalised output is::

    y = weight * (g * x + b) + bias            (weight, bias: the usual learnable affine)

The homeostatic state (g, b) is moved towards a set point after every training batch.

Derivation (our design; the seed paper describes the method but its equations are not public).
For a batch with per-channel mean ``mu_B`` and biased variance ``var_B`` the gain and bias that
would make the channel exactly zero-mean and unit-variance are::

    g* = 1 / sqrt(var_B + eps),     b* = -mu_B * g*

A homeostatic controller should not jump to ``g*``: one batch is a noisy sample. It solves the
proximal quadratic programme (per channel, eta = momentum)::

    min_{g, b}  (1 - eta) * [(g - g_old)^2 + (b - b_old)^2]  +  eta * [(g - g*)^2 + (b - b*)^2]

Setting the derivative to zero gives the exponential moving average::

    g_new = (1 - eta) * g_old + eta * g*,      b_new = (1 - eta) * b_old + eta * b*

Two modes, one state. The EMA above runs after every training batch in both modes; what
differs is the gain and bias the *training* forward pass uses.

* ``batch_free=False`` (the default): the training forward pass normalises each batch with its
  own set point ``(g*, b*)``, and gradients flow through ``mu_B`` and ``var_B``. This forward
  and backward pass are exactly BatchNorm's in training (BatchNorm also normalises with the
  biased batch variance). The homeostatic state, moved by the EMA in gain space, is what
  evaluation uses. It differs from BatchNorm's running statistics only in how they are
  averaged: BatchNorm averages ``mu_B`` and the *unbiased* variance in variance space; this
  layer averages ``g*`` and ``b*`` of the *biased* statistics in gain space.
* ``batch_free=True``: the training forward pass uses the state from *before* the update too;
  the update happens afterwards, under ``torch.no_grad``. Consequences, each tested:

  - batch-free: a sample's output never depends on the other samples of its batch, in
    training as in evaluation;
  - no gradient flows through the statistics (they are constants of the forward pass);
  - evaluation uses exactly the same state, so train and eval outputs agree; ``eval()`` only
    stops the state from moving.

  The price is the one Ioffe and Szegedy (2015, section 2) describe: the optimiser does not
  see that the normalisation will undo a shift or a rescaling, so part of each step is spent
  pushing against the controller, and the state trails the set point while the weights in
  front of the layer change (``snn_norm_lite.homeostatic_lag`` measures that lag). This is
  Online Normalization's forward pass (Chiley et al., 2019) without its corrected backward
  pass.

In both modes the layer is batch-free at inference: ``eval()`` applies the fixed per-channel
affine map of the state. Only ``batch_free=True`` is batch-free in training as well.

State layout (drop-in for BatchNorm). The state is stored as BatchNorm-style buffers
``running_mean`` and ``running_var`` so that a ``BatchNorm2d`` checkpoint loads into this layer
and code that reads those names keeps working. The map between the two is one-to-one::

    g = 1 / sqrt(running_var + eps),   b = -running_mean * g
    running_var = 1 / g^2 - eps,       running_mean = -b / g

Note that, unlike BatchNorm, ``running_var`` here tracks the *biased* batch variance through
its gain (``g*`` uses the biased variance), and the average is taken in gain space, not in
variance space. At construction g = 1/sqrt(1 + eps) and b = 0: the layer starts as the
identity (up to eps), like an untrained BatchNorm in evaluation mode.

Reference: the homeostatic layers of "Why does normalization matter more for spiking neural
networks than for conventional ones?" (companion repository snn-normalization).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from .registry import NormSpec, register
from ..checks import (
    check_bool,
    check_channels,
    check_floating,
    check_num_steps,
    check_positive_int,
    check_rank,
    check_step_index,
)
from ..precision import full_precision_forward
from .step_statistics import check_enough_values, check_eps_and_momentum, check_same_dtype
from .synchronised import BatchStatisticsNorm, batch_var_mean


def gain_and_bias(running_mean: torch.Tensor, running_var: torch.Tensor, eps: float):
    """Homeostatic gain and bias from BatchNorm-style buffers: ``g = 1/sqrt(var+eps)``, ``b = -mean*g``.

    >>> gain_and_bias(torch.tensor([2.0]), torch.tensor([4.0]), eps=0.0)
    (tensor([0.5000]), tensor([-1.]))
    """
    gain = torch.rsqrt(running_var + eps)
    return gain, -running_mean * gain


def homeostatic_update(running_mean, running_var, batch_mean, batch_var, eps: float, eta: float):
    """Move the state one proximal-QP step (an EMA in gain space) towards the batch set point.

    Updates ``running_mean`` and ``running_var`` in place and returns nothing. All tensors have
    the same shape (one entry per channel, or per step and channel). An entry whose new state
    would not be finite (a NaN or Inf in the batch, a gain driven to 0) keeps its old mean and
    variance together, element-wise and without a host-device synchronisation: a batch that is
    NaN everywhere leaves the state exactly as it was.

    >>> running_mean, running_var = torch.zeros(1), torch.ones(1)      # g = 1, b = 0
    >>> homeostatic_update(running_mean, running_var, torch.tensor([2.0]), torch.tensor([4.0]), eps=0.0, eta=0.5)
    >>> gain_and_bias(running_mean, running_var, eps=0.0)              # halfway to g* = 0.5, b* = -1
    (tensor([0.7500]), tensor([-0.5000]))
    >>> nan = torch.tensor([float("nan")])
    >>> homeostatic_update(running_mean, running_var, nan, nan, eps=0.0, eta=0.5)
    >>> gain_and_bias(running_mean, running_var, eps=0.0)              # unchanged
    (tensor([0.7500]), tensor([-0.5000]))
    """
    gain_old, bias_old = gain_and_bias(running_mean, running_var, eps)
    gain_target, bias_target = gain_and_bias(batch_mean, batch_var, eps)
    gain_new = (1.0 - eta) * gain_old + eta * gain_target
    bias_new = (1.0 - eta) * bias_old + eta * bias_target
    # Gains are convex combinations of values <= 1/sqrt(eps), so 1/g^2 - eps >= 0 up to
    # rounding; clamp_min(0) only removes a rounding error of order 1e-12, never real state.
    var_new = (gain_new.pow(-2) - eps).clamp_min(0.0)
    mean_new = -bias_new / gain_new
    finite = torch.isfinite(var_new) & torch.isfinite(mean_new)  # (g, b) move together or not at all
    running_var.copy_(torch.where(finite, var_new, running_var))
    running_mean.copy_(torch.where(finite, mean_new, running_mean))


def _channel_view(values: torch.Tensor, x: torch.Tensor, channel_dim: int) -> torch.Tensor:
    shape = [1] * x.dim()
    shape[channel_dim] = values.shape[-1]
    return values.reshape(shape)


def _affine(x, gain, bias, weight, affine_bias, view):
    """``weight * (gain * x + bias) + affine_bias`` as one per-channel scale and shift."""
    scale, shift = gain, bias
    if weight is not None:
        scale = gain * weight
        shift = bias * weight + affine_bias
    return x * view(scale.to(x.dtype)) + view(shift.to(x.dtype))


class HomeostaticNorm(BatchStatisticsNorm, _NormBase):
    """Drop-in replacement for ``BatchNorm1d``/``BatchNorm2d`` driven by homeostatic feedback.

    ``y = weight * (g * x + b) + bias`` with per-channel gain ``g`` and bias ``b`` that track
    ``1/sqrt(var_B + eps)`` and ``-mu_B * g`` by an EMA (the solution of a proximal QP, see the
    module docstring). Accepts ``[N, C]``, ``[N, C, L]`` and ``[N, C, H, W]``. Batch statistics
    are taken over every dimension except the channel one, in training only. By default the
    training forward pass normalises with them (as BatchNorm does) and evaluation uses the
    state; with ``batch_free=True`` the output never depends on the current batch's statistics.

    Args:
        num_features: number of channels C.
        eps: added to the variance before the square root.
        momentum: homeostatic rate ``eta`` in (0, 1]: the weight of the newest set point.
        affine: learnable ``weight`` (init 1) and ``bias`` (init 0) after the normalisation.
        batch_free: False (default) normalises training batches with their own statistics, as
            BatchNorm does (gradients flow through them); True normalises with the homeostatic
            state in training too. Evaluation uses the state in both modes.

    >>> _ = torch.manual_seed(0)
    >>> norm = HomeostaticNorm(3, momentum=0.5)
    >>> for _ in range(20):                                   # the state settles on the data's scale
    ...     _ = norm(torch.randn(64, 3, 4, 4) * 4 + 2)
    >>> gain, bias = norm.gain_and_bias()
    >>> torch.allclose(gain, torch.full((3,), 1 / 4), atol=0.02)   # 1 / std
    True
    >>> torch.allclose(bias, torch.full((3,), -2 / 4), atol=0.05)  # -mean / std
    True
    >>> norm.eval()(torch.randn(5, 3, 4, 4)).shape            # evaluation: the state, no batch statistics
    torch.Size([5, 3, 4, 4])
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        batch_free: bool = False,
    ):
        name = type(self).__name__
        check_positive_int(num_features, "num_features", name)
        eps, momentum = check_eps_and_momentum(eps, momentum, name)
        check_bool(affine, "affine", name)
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine, track_running_stats=True)
        self.batch_free = check_bool(batch_free, "batch_free", name)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", batch_free={self.batch_free}"

    def _check_input_dim(self, x: torch.Tensor) -> None:
        name = type(self).__name__
        check_floating(x, name)
        check_rank(x, (2, 3, 4), name, "[N, C], [N, C, L] or [N, C, H, W]")
        check_channels(x, 1, self.num_features, name)
        check_same_dtype(x, self.running_mean, name)
        if self.training:  # the state update takes batch statistics in both modes (batch_free too)
            check_enough_values(x.numel() // self.num_features, name, per="channel", shape=x.shape)

    def gain_and_bias(self):
        """The current homeostatic state (g, b), one value per channel."""
        return gain_and_bias(self.running_mean, self.running_var, self.eps)

    @full_precision_forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if self.training:
            dims = tuple(d for d in range(x.dim()) if d != 1)
            batch_var, batch_mean, _ = batch_var_mean(
                x if not self.batch_free else x.detach(), dims, self.statistics_group()
            )
        if self.training and not self.batch_free:
            gain, bias = gain_and_bias(batch_mean, batch_var, self.eps)
        else:
            gain, bias = self.gain_and_bias()
        y = _affine(x, gain, bias, self.weight, self.bias, lambda v: _channel_view(v, x, 1))
        if self.training:
            with torch.no_grad():
                homeostatic_update(
                    self.running_mean, self.running_var, batch_mean.detach(), batch_var.detach(), self.eps, self.momentum
                )
                self.num_batches_tracked.add_(1)
        return y


class TemporalHomeostaticNorm2d(BatchStatisticsNorm, nn.Module):
    """Homeostatic normalisation with a separate state (g_t, b_t) for every time step.

    ``y_t = weight * (g_t * x_t + b_t) + bias`` for ``x_t`` of shape ``[B, C, H, W]``; the
    learnable affine is shared over time, the homeostatic state is not, because the input
    statistics of a spiking layer drift from step to step (temporal covariate shift). Each
    state follows the EMA of :class:`HomeostaticNorm` using the statistics of its own step
    (over B, H, W). Causal: step t only ever sees step t.

    Two ways to call it:

    * ``norm(x_t, t)`` inside a time loop, ``x_t`` of shape ``[B, C, H, W]``;
    * ``norm(x)`` on a whole sequence ``[T, B, C, H, W]`` with ``T == num_steps`` (one
      vectorised update of all T states; identical to calling it step by step).

    Buffers ``running_mean`` and ``running_var`` have shape ``[num_steps, C]``. ``batch_free``
    has the meaning it has in :class:`HomeostaticNorm`: by default the training forward pass
    normalises step t with the batch statistics of step t (BNTT's statistics, with one affine
    shared over time instead of BNTT's per-step gain), and evaluation uses the per-step state.

    >>> _ = torch.manual_seed(0)
    >>> norm = TemporalHomeostaticNorm2d(3, num_steps=4)
    >>> x = torch.randn(4, 8, 3, 5, 5)
    >>> whole = norm(x)
    >>> norm.running_mean.shape
    torch.Size([4, 3])
    >>> norm.eval()(x[1], 1).shape                            # one step inside a time loop
    torch.Size([8, 3, 5, 5])
    """

    def __init__(
        self,
        num_features: int,
        num_steps: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        batch_free: bool = False,
    ):
        super().__init__()
        name = type(self).__name__
        check_positive_int(num_features, "num_features", name)
        check_positive_int(num_steps, "num_steps", name)
        eps, momentum = check_eps_and_momentum(eps, momentum, name)
        self.num_features = num_features
        self.num_steps = num_steps
        self.eps = eps
        self.momentum = momentum
        self.affine = check_bool(affine, "affine", name)
        self.batch_free = check_bool(batch_free, "batch_free", name)
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.register_buffer("running_mean", torch.zeros(num_steps, num_features))
        self.register_buffer("running_var", torch.ones(num_steps, num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, num_steps={self.num_steps}, eps={self.eps}, "
            f"momentum={self.momentum}, affine={self.affine}, batch_free={self.batch_free}"
        )

    def gain_and_bias(self):
        """The current state: gains and biases of shape ``[num_steps, C]``."""
        return gain_and_bias(self.running_mean, self.running_var, self.eps)

    @full_precision_forward
    def forward(self, x: torch.Tensor, t: int | None = None) -> torch.Tensor:
        name = type(self).__name__
        check_floating(x, name)
        if t is None:
            check_rank(x, (5,), name, "[T, B, C, H, W] (or call norm(x_t, t) with x_t of shape [B, C, H, W])")
            check_num_steps(x, self.num_steps, name)
            check_channels(x, 2, self.num_features, name)
            steps = slice(None)
            stat_dims = (1, 3, 4)
            view = (self.num_steps, 1, self.num_features, 1, 1)
        else:
            t = check_step_index(t, self.num_steps, name)
            check_rank(x, (4,), name, "[B, C, H, W] for a single step t")
            check_channels(x, 1, self.num_features, name)
            steps = slice(t, t + 1)
            stat_dims = (0, 2, 3)
            view = (1, self.num_features, 1, 1)
        check_same_dtype(x, self.running_mean, name)
        if self.training:  # batch statistics for the state update, in both modes (batch_free too)
            count = x.shape[stat_dims[0]] * x.shape[stat_dims[1]] * x.shape[stat_dims[2]]
            check_enough_values(count, name, shape=x.shape)
            batch_var, batch_mean, _ = batch_var_mean(
                x if not self.batch_free else x.detach(), stat_dims, self.statistics_group()
            )
        if self.training and not self.batch_free:
            gain, bias = gain_and_bias(batch_mean.reshape(-1, self.num_features), batch_var.reshape(-1, self.num_features), self.eps)
        else:
            gain, bias = gain_and_bias(self.running_mean[steps], self.running_var[steps], self.eps)
        y = _affine(x, gain, bias, self.weight, self.bias, lambda v: v.reshape(view))
        if self.training:
            with torch.no_grad():
                homeostatic_update(
                    self.running_mean[steps],
                    self.running_var[steps],
                    batch_mean.detach().reshape(-1, self.num_features),
                    batch_var.detach().reshape(-1, self.num_features),
                    self.eps,
                    self.momentum,
                )
                if t is None or t == self.num_steps - 1:
                    self.num_batches_tracked.add_(1)
        return y


def set_batch_free(model: nn.Module, batch_free: bool) -> int:
    """Switch every homeostatic layer of ``model`` between batch-free and batch-statistics mode.

    Returns how many layers were switched (an error if there were none).

    >>> from snn_norm_lite.models import build_snn
    >>> set_batch_free(build_snn("homeostatic", depth=2, width=4, num_steps=2), True)
    2
    """
    if not isinstance(batch_free, bool):
        raise TypeError(f"set_batch_free: batch_free must be a bool, got {batch_free!r}")
    switched = 0
    for module in model.modules():
        if isinstance(module, (HomeostaticNorm, TemporalHomeostaticNorm2d)):
            module.batch_free = batch_free
            switched += 1
    if switched == 0:
        raise ValueError("set_batch_free: the model has no homeostatic normalisation layer")
    return switched


def _build(num_features, num_steps, **neuron):
    if num_steps is None:
        return HomeostaticNorm(num_features)
    return TemporalHomeostaticNorm2d(num_features, num_steps)


SPEC = register(
    NormSpec(
        "homeostatic",
        "homeostatic gain and bias: batch statistics in training, an EMA state (batch-free) at inference; "
        "per step in an SNN",
        _build,
        statistics={
            "training": "batch, over (B, H, W) of step t (batch_free=False, the default)",
            "evaluation": "EMA state of step t, averaged in gain space: per-step affine",
            "inference": "a per-step affine after the convolution",
        },
    )
)
