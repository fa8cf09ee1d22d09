"""MPBN: membrane-potential batch normalisation (Guo et al., ICCV 2023).

The BatchNorm after a convolution normalises the *input current* ``x_t``. The neuron then
integrates it, ``u_t = beta * u_{t-1} + x_t``, and the membrane ``u_t`` drifts away from that
normalised range again before the neuron decides to fire. MPBN adds a second BatchNorm on the
membrane potential itself, just before the threshold::

    u_t = beta * u_{t-1} + x_t - V_th * s_{t-1}          (u_{-1} = 0, s_{-1} = 0)
    s_t = H( BN(u_t) - V_th )                            (H: Heaviside, H(0) = 0)

    BN(u) = gamma * (u - mu) / sqrt(var + eps) + beta_bn  (per channel)

* The reset ``- V_th * s_{t-1}`` acts on the *raw* membrane ``u``: the normalised value only
  decides whether the neuron fires (as in the official code). The reset term is detached from
  the graph, as in :class:`~snn_norm_lite.neurons.MultiStepLeaky`.
* One BatchNorm (``membrane_norm``) is shared by all steps. In training each step is
  normalised with its own batch statistics (over B and the spatial dimensions), and the running
  statistics are updated at every step (T updates per sequence), as when the official code
  calls the same ``BatchNorm2d`` at each step.
* Evaluation: the running statistics, so ``BN`` is a fixed per-channel affine map
  ``BN(u) = scale * u + shift`` with ``scale = gamma / sqrt(var + eps)`` and
  ``shift = beta_bn - mu * scale``.
* Backward: the Heaviside step gets snntorch's arctan surrogate at ``BN(u_t) - V_th`` (the same
  as :mod:`snn_norm_lite.neurons`); the gradient also flows through the BatchNorm (its batch
  statistics included) and the leak. In training the whole sequence is one autograd node
  (``_MPBNTrainingSequence``), like the fused LIF neuron; in evaluation a plain per-step loop.

Folding. In evaluation ``BN(u) > V_th`` is a comparison of ``u`` with one number per channel::

    scale > 0:  fire when u > V~,     V~ = (V_th - beta_bn) * sqrt(var + eps) / gamma + mu
    scale < 0:  fire when u < V~      (dividing by a negative gamma flips the inequality)
    scale = 0:  BN(u) = beta_bn for every u: the channel fires at every step if
                beta_bn > V_th and never otherwise

so the BatchNorm disappears into per-channel thresholds (:meth:`MPBNLeaky.fold`). This is exact
only because the reset acts on the raw membrane: the folded neuron carries the same ``u``
(with either reset below). The
channel's firing rule is never "fixed" by clipping gamma away from zero or from negative values
(clipping gamma to 1e-8 gives a threshold of ~1e8 and a channel that never fires).

In floating point, ``V~`` computed from the formula can be a few units in the last place off the
boundary where ``scale * u + shift`` actually crosses ``V_th`` (and, when ``scale`` is tiny,
much more: then ``scale * u + shift`` rounds to the same value over a wide range of ``u``).
:func:`exact_fold` therefore finds the boundary itself, by bisection over the representable
floats, evaluating the very operations the unfolded neuron runs; the folded neuron is then
spike-for-spike identical to the unfolded one in evaluation mode, in float32 and float64, for
every finite input. :func:`fold_formula` gives the textbook ``V~`` for comparison.

Options, and the configuration of the authors' public code. The defaults above pair MPBN with the
book's reference neuron (leak 0.9, subtractive reset, arctan surrogate, detached reset). The
neuron in the public code (https://github.com/yfguo91/MPBN, ``models/spike_layer.py``:
``mem_update``, ``spike_activation``, ``LIFAct``) differs in five ways, each an option here:

* ``beta``: its decay is 0.25.
* ``threshold``: it fires when ``BN(u_t) / V_th > 0.5`` with ``V_th = 1``, i.e. ``BN(u_t) > 0.5``.
* ``reset="zero"``: a hard reset, ``u <- u * (1 - s_t)`` (the raw membrane again), so::

      u_t = beta * u_{t-1} * (1 - s_{t-1}) + x_t

* ``surrogate="tanh_window"``: its surrogate gradient. With ``z = BN(u) / (2 theta)`` (theta the
  firing level, 0.5 there, so ``z = BN(u)``) clipped to ``[0, 1]`` and ``k = 3``::

      sigma(z) = (tanh(k (z - 1/2)) + tanh(k / 2)) / (2 tanh(k / 2))
      dS/dBN(u) ~= k (1 - tanh^2(k (z - 1/2))) / (2 tanh(k / 2)) / (2 theta)   for 0 <= z <= 1, else 0

* ``detach_reset=False``: its reset multiplies by the spike *with* its surrogate gradient, so
  the gradient also flows through the reset.

:meth:`MPBNLeaky.official` builds that configuration (``OFFICIAL_CONFIGURATION``) and
:func:`use_official_neurons` puts it into a network. Any option other than the defaults trains
through a per-step autograd loop (:meth:`MPBNLeaky.forward_per_step`) instead of the fused node;
the same loop with the default options gives the fused node's numbers (tested). Both resets
act on the raw membrane, so folding is exact for both.

Paper: Y. Guo, Y. Zhang, Y. Chen, W. Peng, X. Liu, L. Zhang, X. Huang and Z. Ma, "Membrane
potential batch normalization for spiking neural networks", ICCV 2023.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .batchnorm import SequenceBatchNorm2d
from .registry import NormSpec, register
from ..checks import (
    check_bool,
    check_channels,
    check_first_order,
    check_floating,
    check_positive_int,
    check_positive_number,
    check_unit_interval,
    keep_finite,
)
from ..neurons import SURROGATE_ALPHA, arctan_surrogate_grad, show_non_finite
from ..precision import full_precision_forward
from .step_statistics import check_enough_values, check_eps_and_momentum, check_same_dtype
from .synchronised import BatchStatisticsNorm, batch_norm_across_processes

RESETS = ("subtract", "zero")
SURROGATES = ("arctan", "tanh_window")
OFFICIAL_TEMPERATURE = 3.0  # k of the public code's tanh surrogate
OFFICIAL_CONFIGURATION = {  # the neuron of https://github.com/yfguo91/MPBN, models/spike_layer.py
    "beta": 0.25,
    "threshold": 0.5,
    "reset": "zero",
    "surrogate": "tanh_window",
    "detach_reset": False,
}


def tanh_window_surrogate_grad(
    v: torch.Tensor, threshold: torch.Tensor | float, temperature: float = OFFICIAL_TEMPERATURE
) -> torch.Tensor:
    """Surrogate ``dS/dv`` of the public MPBN code, at normalised membrane ``v`` and firing level theta.

    With ``z = v / (2 theta)``: ``k (1 - tanh^2(k (z - 1/2))) / (2 tanh(k / 2)) / (2 theta)`` for
    ``0 <= z <= 1`` and 0 outside (the derivative of its smooth spike, clipped to that window).
    For theta = 0.5 (the public code's ``BN(u) / V_th > 0.5`` with ``V_th = 1``) ``z = v``.

    >>> grad = tanh_window_surrogate_grad(torch.tensor([-0.1, 0.5, 1.5]), 0.5)
    >>> grad[0].item(), grad[1].item() > 0, grad[2].item()      # zero outside the window 0 <= v <= 2 theta
    (0.0, True, 0.0)
    """
    scale = 2.0 * threshold
    z = v / scale
    k = temperature
    inside = (z >= 0) & (z <= 1)
    slope = k * (1 - torch.tanh(k * (z - 0.5)).square()) / (2 * math.tanh(k / 2)) / scale
    return torch.where(inside, slope, torch.zeros_like(slope))


class _MembraneSpike(torch.autograd.Function):
    """``s = H(v - V_th)`` computed as the comparison ``v > V_th``; a surrogate in the backward pass.

    ``surrogate``: ``"arctan"`` (snntorch's, at ``v - V_th``) or ``"tanh_window"``
    (:func:`tanh_window_surrogate_grad`). A NaN or infinite ``v`` gives a NaN spike (:func:`~snn_norm_lite.neurons.show_non_finite`).
    The backward pass is built from differentiable operations on the saved ``v``, so second-order
    gradients (``create_graph=True``) are those of the surrogate: the derivative of
    ``grad_spikes * surrogate'(v)`` (checked with ``gradgradcheck`` in float64).
    """

    @staticmethod
    def forward(ctx, v: torch.Tensor, threshold: torch.Tensor, surrogate: str = "arctan") -> torch.Tensor:
        ctx.save_for_backward(v, threshold)
        ctx.surrogate = surrogate
        return show_non_finite(torch.gt(v, threshold).to(v.dtype), v)

    @staticmethod
    def backward(ctx, grad_spikes: torch.Tensor):
        v, threshold = ctx.saved_tensors
        if ctx.surrogate == "arctan":
            return grad_spikes * arctan_surrogate_grad(v - threshold, SURROGATE_ALPHA), None, None
        return grad_spikes * tanh_window_surrogate_grad(v, threshold), None, None


class _MPBNTrainingSequence(torch.autograd.Function):
    """The training-mode MPBN neuron over a whole sequence as one autograd node.

    Forward: the membrane recurrence, one BatchNorm per step with that step's batch statistics
    (PyTorch's native kernel, which also updates the running statistics), the comparison with
    ``V_th``. Backward, from the last step to the first::

        g_v  = dL/ds_t * arctan'(v_t - V_th)                   (surrogate, v_t = BN(u_t))
        g_u  = BN_t backward(g_v)  +  beta * g_u(t+1)          (through the batch statistics, then the leak)
        dL/dx_t = g_u,   dL/dgamma += ..., dL/dbeta_bn += ...  (from the BN backward)

    The same numbers as a per-step autograd loop, with a much smaller graph. First-order only:
    ``create_graph=True`` raises instead of silently dropping second-order terms.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, beta, threshold, momentum, eps):
        x = x.contiguous()
        membranes = torch.empty_like(x)
        normalised = torch.empty_like(x)
        spikes = torch.empty_like(x)
        means, inverse_stds = [], []
        for t in range(x.shape[0]):
            if t == 0:
                membranes[0].copy_(x[0])
            else:
                torch.add(x[t], membranes[t - 1], alpha=beta, out=membranes[t])
                membranes[t].sub_(spikes[t - 1], alpha=threshold)  # reset on the raw membrane
            v, mean, inverse_std = torch.native_batch_norm(
                membranes[t], weight, bias, running_mean, running_var, True, momentum, eps
            )
            normalised[t].copy_(v)
            torch.gt(v, threshold, out=spikes[t])
            show_non_finite(spikes[t], v)  # a NaN membrane gives a NaN spike
            means.append(mean)
            inverse_stds.append(inverse_std)
        ctx.save_for_backward(membranes, normalised, weight, torch.stack(means), torch.stack(inverse_stds))
        ctx.beta, ctx.threshold, ctx.eps = beta, threshold, eps
        return spikes

    @staticmethod
    def backward(ctx, grad_spikes):
        check_first_order("MPBNLeaky's fused training pass (_MPBNTrainingSequence)")
        membranes, normalised, weight, means, inverse_stds = ctx.saved_tensors
        need_x, need_weight, need_bias = ctx.needs_input_grad[:3]
        grad_spikes = grad_spikes.contiguous()
        # g_v for every step at once: dL/ds * arctan'(v - V_th) (saved tensors stay untouched)
        local = arctan_surrogate_grad(normalised - ctx.threshold, SURROGATE_ALPHA).mul_(grad_spikes)
        grad_x = torch.empty_like(membranes)
        grad_weight = torch.zeros_like(weight) if need_weight else None
        grad_bias = torch.zeros_like(weight) if need_bias else None
        for t in range(membranes.shape[0] - 1, -1, -1):
            grad_u, grad_w, grad_b = torch.ops.aten.native_batch_norm_backward(
                local[t], membranes[t], weight, None, None, means[t], inverse_stds[t], True, ctx.eps,
                [True, need_weight, need_bias],
            )
            if t < membranes.shape[0] - 1:
                grad_u.add_(grad_x[t + 1], alpha=ctx.beta)  # u_{t+1} = beta * u_t + ...
            grad_x[t].copy_(grad_u)
            if need_weight:
                grad_weight.add_(grad_w)
            if need_bias:
                grad_bias.add_(grad_b)
        return (grad_x if need_x else None), grad_weight, grad_bias, None, None, None, None, None, None


def _check_sequence(x: torch.Tensor, num_features: int, reference: torch.Tensor, layer: str) -> None:
    check_floating(x, layer)
    if x.dim() < 3:
        raise ValueError(f"{layer}: expected a sequence [T, B, C, ...] of input currents, got shape {tuple(x.shape)}")
    check_channels(x, 2, num_features, layer)
    if x.shape[0] == 0:
        raise ValueError(f"{layer}: got a sequence of 0 time steps (input shape {tuple(x.shape)}); T must be >= 1")
    check_same_dtype(x, reference, layer)


def _membrane_step(
    x_t: torch.Tensor, u: torch.Tensor, spikes: torch.Tensor, beta: float, threshold: float, reset: str = "subtract"
):
    """The next raw membrane, with the exact operations both MPBN neurons run.

    ``reset="subtract"``: ``u_t = beta * u_{t-1} + x_t - V_th * s_{t-1}``;
    ``reset="zero"``: ``u_t = beta * u_{t-1} * (1 - s_{t-1}) + x_t``.
    """
    if reset == "subtract":
        return torch.sub(torch.add(x_t, u, alpha=beta), spikes, alpha=threshold)
    return torch.add(x_t, u * (1 - spikes), alpha=beta)


def _check_choice(value, choices, argument: str, layer: str) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{layer}: {argument} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
    return value


class MPBNLeaky(BatchStatisticsNorm, nn.Module):
    """Multi-step LIF neurons with a BatchNorm on the membrane potential before the threshold (MPBN).

    ``[T, B, C, ...]`` input currents in, spikes of the same shape out (see the module docstring
    for the equations, the statistics in training and evaluation, and folding).

    Args:
        num_features: number of channels C (dimension 2 of the input).
        beta: membrane decay per step, in [0, 1].
        threshold: firing threshold ``V_th`` (> 0), compared with the *normalised* membrane and
            (with ``reset="subtract"``) subtracted from the raw one at reset. Stored as a
            buffer, like :class:`~snn_norm_lite.neurons.MultiStepLeaky`.
        eps, momentum: of the membrane BatchNorm (``membrane_norm``).
        reset: ``"subtract"`` (``- V_th * s_{t-1}``) or ``"zero"`` (``u * (1 - s_{t-1})``, hard).
        surrogate: ``"arctan"`` (snntorch's) or ``"tanh_window"`` (the public MPBN code's).
        detach_reset: when True the reset carries no gradient; when False the gradient also
            flows through the spike in the reset term.

    :meth:`official` builds the configuration of the public code (see the module docstring).

    >>> _ = torch.manual_seed(0)
    >>> neuron = MPBNLeaky(3, beta=0.9, threshold=1.0)
    >>> neuron.extra_repr()
    '3, beta=0.9, threshold=1'
    >>> spikes = neuron(torch.randn(4, 8, 3, 5, 5))            # [T, B, C, H, W] currents in
    >>> spikes.shape, bool(((spikes == 0) | (spikes == 1)).all())
    (torch.Size([4, 8, 3, 5, 5]), True)
    >>> MPBNLeaky.official(3).extra_repr()
    "3, beta=0.25, threshold=0.5, reset='zero', surrogate='tanh_window', detach_reset=False"
    """

    def __init__(
        self,
        num_features: int,
        beta: float = 0.9,
        threshold: float = 1.0,
        eps: float = 1e-5,
        momentum: float = 0.1,
        reset: str = "subtract",
        surrogate: str = "arctan",
        detach_reset: bool = True,
    ):
        super().__init__()
        name = type(self).__name__
        self.num_features = check_positive_int(num_features, "num_features", name)
        self.beta = check_unit_interval(beta, "beta", name, closed_low=True)
        eps, momentum = check_eps_and_momentum(eps, momentum, name)
        self.reset = _check_choice(reset, RESETS, "reset", name)
        self.surrogate = _check_choice(surrogate, SURROGATES, "surrogate", name)
        self.detach_reset = check_bool(detach_reset, "detach_reset", name)
        self.membrane_norm = nn.BatchNorm2d(num_features, eps=eps, momentum=momentum)
        self.register_buffer("threshold", torch.tensor(check_positive_number(threshold, "threshold", name)))

    @classmethod
    def official(cls, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> "MPBNLeaky":
        """The neuron of the public MPBN code: decay 0.25, fires at ``BN(u) > 0.5``, hard reset,
        its tanh surrogate, gradient through the reset (``OFFICIAL_CONFIGURATION``)."""
        return cls(num_features, eps=eps, momentum=momentum, **OFFICIAL_CONFIGURATION)

    @property
    def uses_fused_training(self) -> bool:
        """True for the default options, which train through the fused sequence node."""
        return self.reset == "subtract" and self.surrogate == "arctan" and self.detach_reset

    def extra_repr(self) -> str:
        text = f"{self.num_features}, beta={self.beta}, threshold={float(self.threshold):.4g}"
        if not self.uses_fused_training:
            text += f", reset={self.reset!r}, surrogate={self.surrogate!r}, detach_reset={self.detach_reset}"
        return text

    def membrane_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The evaluation-mode BatchNorm as ``BN(u) = scale * u + shift`` (per channel, ``[C]`` each).

        >>> scale, shift = MPBNLeaky(2).membrane_affine()            # fresh BatchNorm: BN(u) ~= u
        >>> scale.detach().round(decimals=4), shift.detach()
        (tensor([1., 1.]), tensor([0., 0.]))
        """
        bn = self.membrane_norm
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        return scale, bn.bias - bn.running_mean * scale

    @full_precision_forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        name = type(self).__name__
        bn = self.membrane_norm
        _check_sequence(x, self.num_features, bn.weight, name)
        if self.training:
            if not self.uses_fused_training or self.statistics_group() is not None:
                return self.forward_per_step(x)
            check_enough_values(x[0, :, 0].numel(), name, shape=x.shape)
            running_mean, running_var = bn.running_mean.clone(), bn.running_var.clone()
            bn.num_batches_tracked.add_(x.shape[0])  # the BatchNorm runs once per step
            spikes = _MPBNTrainingSequence.apply(
                x, bn.weight, bn.bias, running_mean, running_var,
                self.beta, float(self.threshold), bn.momentum, bn.eps,
            )
            self._write_running(running_mean, running_var)
            return spikes
        scale, shift = self.membrane_affine()
        channel_view = (self.num_features,) + (1,) * (x.dim() - 3)
        scale, shift = scale.view(channel_view), shift.view(channel_view)
        return self._run(x, lambda u: u * scale + shift)  # two roundings, mul then add: what exact_fold reproduces

    def forward_per_step(self, x: torch.Tensor) -> torch.Tensor:
        """Training mode as a plain per-step autograd loop, for every option.

        Each step: the membrane update (:func:`_membrane_step`), ``F.batch_norm`` with that
        step's batch statistics (which also updates the running statistics), the spike with the
        chosen surrogate. ``forward`` uses it for non-default options, and when the statistics
        span the processes of a data-parallel run (then each step's statistics are taken over
        all of them, :mod:`~snn_norm_lite.norms.synchronised`); with the default options on one
        process it gives the fused node's spikes, gradients and running statistics.

        >>> _ = torch.manual_seed(0)
        >>> x = torch.randn(3, 8, 2, 4, 4)
        >>> fused, looped = MPBNLeaky(2), MPBNLeaky(2)
        >>> torch.equal(fused(x), looped.forward_per_step(x))
        True
        """
        name = type(self).__name__
        bn = self.membrane_norm
        _check_sequence(x, self.num_features, bn.weight, name)
        check_enough_values(x[0, :, 0].numel(), name, shape=x.shape)
        running_mean, running_var = bn.running_mean.clone(), bn.running_var.clone()
        bn.num_batches_tracked.add_(x.shape[0])

        group = self.statistics_group()

        def normalise(u):
            if group is not None:
                return batch_norm_across_processes(
                    u, running_mean, running_var, bn.weight, bn.bias, bn.momentum, bn.eps, group
                )
            return F.batch_norm(u, running_mean, running_var, bn.weight, bn.bias, True, bn.momentum, bn.eps)

        spikes = self._run(x, normalise)
        self._write_running(running_mean, running_var)
        return spikes

    @torch.no_grad()
    def _write_running(self, running_mean: torch.Tensor, running_var: torch.Tensor) -> None:
        """Store the running statistics a training sequence produced (on copies of the buffers).

        Where a NaN/Inf sequence made an entry non-finite, the buffer keeps its old value
        (element-wise, no synchronisation). The buffers are never handed to the kernels, so
        this write cannot invalidate anything autograd saved.
        """
        bn = self.membrane_norm
        bn.running_mean.copy_(keep_finite(running_mean, bn.running_mean))
        bn.running_var.copy_(keep_finite(running_var, bn.running_var))

    def _run(self, x: torch.Tensor, normalise) -> torch.Tensor:
        """The recurrence over T: membrane update, ``normalise``, spike (shared by both modes)."""
        threshold = self.threshold
        reset = float(threshold)
        spikes = []
        for t in range(x.shape[0]):
            if t == 0:
                u = x[0]
            else:
                previous = spikes[-1].detach() if self.detach_reset else spikes[-1]
                u = _membrane_step(x[t], u, previous, self.beta, reset, self.reset)
            spikes.append(_MembraneSpike.apply(normalise(u), threshold, self.surrogate))
        return torch.stack(spikes)

    @torch.no_grad()
    def fold(self) -> "FoldedMPBNLeaky":
        """The evaluation-mode neuron with its BatchNorm folded into per-channel thresholds.

        Returned in evaluation mode (it is inference-only). Uses the running statistics: the
        result equals ``self.eval()`` spike for spike (not the
        training-mode neuron, which normalises with batch statistics). See :func:`exact_fold`.

        >>> folded = MPBNLeaky(2, threshold=1.0).fold()             # fresh statistics: fires at u > ~1
        >>> folded.fire_threshold.round(decimals=3), folded.fire_direction
        (tensor([1., 1.]), tensor([1., 1.]))
        """
        scale, shift = self.membrane_affine()
        fire_threshold, fire_direction = exact_fold(scale, shift, self.threshold)
        folded = FoldedMPBNLeaky(
            fire_threshold, fire_direction, beta=self.beta, threshold=float(self.threshold), reset=self.reset
        )
        return folded.eval()  # inference only


def use_official_neurons(model: nn.Module) -> int:
    """Replace every :class:`MPBNLeaky` in ``model`` by :meth:`MPBNLeaky.official` of the same width.

    The new neurons start with a fresh membrane BatchNorm (gain 1, shift 0, running statistics
    0 and 1), as a network built with them would; nothing random is drawn, so a seeded network
    keeps every other weight. Returns how many were replaced (an error if none).

    >>> from snn_norm_lite.models import build_snn
    >>> model = build_snn("mpbn", depth=2, width=4, num_steps=2)
    >>> use_official_neurons(model)
    2
    >>> model.blocks[0].neuron.beta
    0.25
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"use_official_neurons: expected an nn.Module, got {type(model).__name__}")
    replaced = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, MPBNLeaky):
                bn = child.membrane_norm
                official = MPBNLeaky.official(child.num_features, eps=bn.eps, momentum=bn.momentum)
                setattr(module, name, official.to(device=bn.weight.device, dtype=bn.weight.dtype).train(child.training))
                replaced += 1
    if replaced == 0:
        raise ValueError("use_official_neurons: the model has no MPBNLeaky neuron (build it with norm 'mpbn')")
    return replaced


def fold_formula(neuron: MPBNLeaky) -> tuple[torch.Tensor, torch.Tensor]:
    """The textbook folded threshold ``V~ = (V_th - beta_bn) * sqrt(var + eps) / gamma + mu`` and ``sign(gamma)``.

    Computed in float64; ``V~`` is ``nan``/``inf`` where gamma is 0 (those channels fire always
    or never, see the module docstring). :func:`exact_fold` gives the float threshold that
    reproduces the unfolded comparison exactly.

    >>> neuron = MPBNLeaky(2, threshold=1.0).eval()
    >>> with torch.no_grad():
    ...     _ = neuron.membrane_norm.running_mean.fill_(3.0)
    ...     _ = neuron.membrane_norm.running_var.fill_(4.0 - 1e-5)
    >>> folded, direction = fold_formula(neuron)                  # V~ = (1 - 0) * 2 / 1 + 3
    >>> [round(v, 6) for v in folded.tolist()], direction.tolist()
    ([5.0, 5.0], [1.0, 1.0])
    """
    bn = neuron.membrane_norm
    gamma = bn.weight.detach().double()
    v_th = float(neuron.threshold)
    folded = (v_th - bn.bias.detach().double()) * torch.sqrt(bn.running_var.double() + bn.eps) / gamma
    return folded + bn.running_mean.double(), torch.sign(gamma)


def _order_keys(values: torch.Tensor) -> torch.Tensor:
    """Map floats to int64 keys with the same order (adjacent floats get adjacent keys; -0 and +0 share 0)."""
    if values.dtype == torch.float64:
        bits = values.view(torch.int64)
        magnitude = bits & 0x7FFF_FFFF_FFFF_FFFF
    else:
        bits = values.view(torch.int32).to(torch.int64)
        magnitude = bits & 0x7FFF_FFFF
    return torch.where(bits >= 0, bits, -magnitude)


def _from_keys(keys: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Inverse of :func:`_order_keys`."""
    sign_bit = -(2**63) if dtype == torch.float64 else -(2**31)
    bits = torch.where(keys >= 0, keys, (-keys) | sign_bit)
    if dtype == torch.float64:
        return bits.view(torch.float64)
    return bits.to(torch.int32).view(torch.float32)


@torch.no_grad()
def exact_fold(scale: torch.Tensor, shift: torch.Tensor, threshold: torch.Tensor):
    """Per-channel thresholds that reproduce ``(u * scale + shift) > threshold`` exactly.

    Returns ``(fire_threshold, fire_direction)``, both ``[C]``, such that for every finite float
    ``u`` of the same dtype::

        (u * scale[c] + shift[c] > threshold)  ==  (u > fire_threshold[c])   if fire_direction[c] = +1
                                               ==  (u < fire_threshold[c])   if fire_direction[c] = -1

    ``u * scale + shift`` is monotone in ``u`` (each rounding is monotone), increasing for
    ``scale > 0`` and decreasing for ``scale < 0``, so such a threshold exists. It is found by
    bisection over the representable floats, ordered as integers (about 32 steps in float32, 64
    in float64), evaluating the same two rounded operations the unfolded neuron runs.
    ``scale == 0`` (gamma zero, or so small that the product underflows) gives a constant
    ``shift``: ``fire_threshold = -inf`` (always fire) if ``shift > threshold``, else ``+inf``
    (never). Thresholds of ``+-inf`` also appear where the comparison never changes over the
    finite floats.

    >>> scale, shift = torch.tensor([0.5, -2.0]), torch.tensor([0.0, 1.0])
    >>> fire_threshold, fire_direction = exact_fold(scale, shift, torch.tensor(1.0))
    >>> fire_direction
    tensor([ 1., -1.])
    >>> u = torch.linspace(-5, 5, 1001).unsqueeze(1)              # fires above 2, and below 0
    >>> folded = torch.where(fire_direction > 0, u > fire_threshold, u < fire_threshold)
    >>> torch.equal(folded, u * scale + shift > 1.0)
    True
    """
    dtype = scale.dtype
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"exact_fold: supports float32 and float64, got {dtype}")
    if not (torch.isfinite(scale).all() and torch.isfinite(shift).all()):
        raise ValueError("exact_fold: the BatchNorm's scale gamma/sqrt(var+eps) and shift must be finite")
    threshold = threshold.to(dtype)

    def fires(keys):
        return _from_keys(keys, dtype) * scale + shift > threshold

    increasing = scale > 0
    largest = torch.finfo(dtype).max
    low = _order_keys(torch.full_like(scale, -largest))
    high = _order_keys(torch.full_like(scale, largest))
    # rises(k): False ... False True ... True along the keys, for either direction
    rises = lambda keys: fires(keys) == increasing  # noqa: E731
    true_everywhere, false_everywhere = rises(low), ~rises(high)
    for _ in range(66 if dtype == torch.float64 else 34):
        middle = (low >> 1) + (high >> 1) + (low & high & 1)  # floor((low + high) / 2) without overflow
        up = rises(middle)
        high = torch.where(up, middle, high)
        low = torch.where(up, low, middle)
    # increasing: fire iff key(u) >= high, i.e. u > float(low); decreasing: fire iff key(u) <= low, i.e. u < float(high)
    fire_threshold = torch.where(increasing, _from_keys(low, dtype), _from_keys(high, dtype))
    inf = torch.full_like(scale, float("inf"))
    fire_threshold = torch.where(true_everywhere, -inf, fire_threshold)
    fire_threshold = torch.where(false_everywhere, inf, fire_threshold)
    fire_direction = torch.where(increasing, 1.0, -1.0).to(dtype)

    constant = scale == 0  # BN(u) = shift for every u
    fire_threshold = torch.where(constant, torch.where(shift > threshold, -inf, inf), fire_threshold)
    fire_direction = torch.where(constant, torch.ones_like(fire_direction), fire_direction)
    return fire_threshold, fire_direction


class FoldedMPBNLeaky(nn.Module):
    """MPBN's neuron after folding: LIF neurons with one firing threshold and direction per channel.

    ``u_t = beta * u_{t-1} + x_t - V_th * s_{t-1}`` (the raw membrane, reset by ``V_th``; with
    ``reset="zero"``, ``u_t = beta * u_{t-1} * (1 - s_{t-1}) + x_t``) and
    ``s_t = H(u_t - V~_c)`` for ``fire_direction[c] = +1`` or ``s_t = H(V~_c - u_t)`` for ``-1``
    (``V~ = fire_threshold``, possibly ``+-inf`` for channels that never or always fire). Built
    by :meth:`MPBNLeaky.fold`; equal, spike for spike, to the evaluation-mode ``MPBNLeaky`` it
    came from. Inference only: it has no parameters and computes no surrogate gradient, so
    calling it in training mode with gradients enabled raises a ``RuntimeError`` (train the
    :class:`MPBNLeaky` network, fold it afterwards, use the folded copy in ``eval()`` mode or
    under ``torch.no_grad()``). :meth:`MPBNLeaky.fold` and :func:`fold_mpbn` return it in eval mode.

    Args:
        fire_threshold: ``[C]`` per-channel threshold ``V~``.
        fire_direction: ``[C]`` of +1 (fire above ``V~``) or -1 (fire below).
        beta: membrane decay per step.
        threshold: the reset ``V_th`` subtracted from the raw membrane after a spike.
        reset: ``"subtract"`` or ``"zero"``, as the neuron it was folded from.

    >>> _ = torch.manual_seed(0)
    >>> neuron = MPBNLeaky(3)
    >>> _ = neuron(torch.randn(4, 8, 3, 5, 5))                    # a training pass: running statistics
    >>> _ = neuron.eval()
    >>> x = torch.randn(4, 2, 3, 5, 5)
    >>> torch.equal(neuron.fold()(x), neuron(x))                  # spike for spike
    True
    """

    def __init__(
        self,
        fire_threshold: torch.Tensor,
        fire_direction: torch.Tensor,
        beta: float,
        threshold: float,
        reset: str = "subtract",
    ):
        super().__init__()
        name = type(self).__name__
        self.reset = _check_choice(reset, RESETS, "reset", name)
        for argument, value in (("fire_threshold", fire_threshold), ("fire_direction", fire_direction)):
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"{name}: {argument} must be a torch.Tensor, got {type(value).__name__}")
        check_floating(fire_threshold, name)
        if fire_threshold.dim() != 1 or fire_direction.shape != fire_threshold.shape:
            raise ValueError(
                f"{name}: fire_threshold and fire_direction must be 1-D of the same length, got shapes "
                f"{tuple(fire_threshold.shape)} and {tuple(fire_direction.shape)}"
            )
        if fire_threshold.shape[0] == 0:
            raise ValueError(f"{name}: fire_threshold must hold at least one channel, got shape (0,)")
        if torch.isnan(fire_threshold).any():
            raise ValueError(f"{name}: fire_threshold must not hold NaN (channels that never fire have +inf)")
        if not bool(((fire_direction == 1) | (fire_direction == -1)).all()):
            raise ValueError(f"{name}: fire_direction must hold only +1 and -1")
        self.num_features = fire_threshold.shape[0]
        self.beta = check_unit_interval(beta, "beta", name, closed_low=True)
        self.register_buffer("fire_threshold", fire_threshold.detach().clone())
        self.register_buffer("fire_direction", fire_direction.detach().clone().to(fire_threshold.dtype))
        self.register_buffer("threshold", torch.tensor(check_positive_number(threshold, "threshold", name), dtype=fire_threshold.dtype))

    def extra_repr(self) -> str:
        below = int((self.fire_direction < 0).sum())
        return (
            f"{self.num_features}, beta={self.beta}, threshold={float(self.threshold):.4g}, reset={self.reset!r}, "
            f"channels_firing_below={below}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        name = type(self).__name__
        if self.training and torch.is_grad_enabled():
            raise RuntimeError(
                f"{name} is inference-only: it has no parameters and no surrogate gradient, so it cannot be "
                "trained. Train the MPBNLeaky network, fold it afterwards (MPBNLeaky.fold or fold_mpbn), and call "
                ".eval() on the folded copy (or run it under torch.no_grad())"
            )
        _check_sequence(x, self.num_features, self.fire_threshold, name)
        x = x.detach().contiguous()  # no graph: nothing here has a gradient
        view = (self.num_features,) + (1,) * (x.dim() - 3)
        direction = self.fire_direction.view(view)
        signed_threshold = (self.fire_direction * self.fire_threshold).view(view)
        all_above = bool((self.fire_direction > 0).all())
        reset = float(self.threshold)
        spikes = torch.empty_like(x)
        u = x[0].clone()
        signed = None if all_above else torch.empty_like(u)
        for t in range(x.shape[0]):
            if t > 0:  # the operations of _membrane_step, in place
                if self.reset == "subtract":
                    torch.add(x[t], u, alpha=self.beta, out=u)
                    u.sub_(spikes[t - 1], alpha=reset)
                else:
                    u.mul_(1 - spikes[t - 1])
                    torch.add(x[t], u, alpha=self.beta, out=u)
            if all_above:
                torch.gt(u, signed_threshold, out=spikes[t])
            else:  # -u > -V~ is exactly u < V~
                torch.gt(torch.mul(u, direction, out=signed), signed_threshold, out=spikes[t])
            show_non_finite(spikes[t], u)  # a NaN membrane gives a NaN spike
        return spikes


def fold_mpbn(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in evaluation mode with every ``MPBNLeaky`` replaced by its ``fold()``.

    The original is not changed. Raises if the model has no MPBN neuron.

    >>> from snn_norm_lite.models import build_snn
    >>> folded = fold_mpbn(build_snn("mpbn", depth=2, width=4, num_steps=2))
    >>> type(folded.blocks[0].neuron).__name__
    'FoldedMPBNLeaky'
    """
    import copy

    if not isinstance(model, nn.Module):
        raise TypeError(f"fold_mpbn: expected an nn.Module, got {type(model).__name__}")
    folded = copy.deepcopy(model).eval()
    replaced = 0
    for module in list(folded.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, MPBNLeaky):
                setattr(module, name, child.fold())
                replaced += 1
    if replaced == 0:
        raise ValueError("fold_mpbn: the model has no MPBNLeaky neuron to fold")
    return folded


SPEC = register(
    NormSpec(
        "mpbn",
        "MPBN: BatchNorm after the convolution plus a BatchNorm on the membrane potential before firing",
        lambda num_features, num_steps, **neuron: SequenceBatchNorm2d(num_features),
        spiking_only=True,
        neuron=lambda num_features, *, threshold, beta: MPBNLeaky(num_features, beta=beta, threshold=threshold),
        statistics={
            "training": "after the convolution: batch, over (T, B, H, W); on the membrane: batch, over (B, H, W) of step t",
            "evaluation": "running averages: one affine after the convolution, one on the membrane",
            "inference": "the first folds into the convolution, the second into per-channel thresholds",
        },
    )
)
