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
only because the reset acts on the raw membrane: the folded neuron carries the same ``u``. The
channel's firing rule is never "fixed" by clipping gamma away from zero or from negative values
(clipping gamma to 1e-8 gives a threshold of ~1e8 and a channel that never fires).

In floating point, ``V~`` computed from the formula can be a few units in the last place off the
boundary where ``scale * u + shift`` actually crosses ``V_th`` (and, when ``scale`` is tiny,
much more: then ``scale * u + shift`` rounds to the same value over a wide range of ``u``).
:func:`exact_fold` therefore finds the boundary itself, by bisection over the representable
floats, evaluating the very operations the unfolded neuron runs; the folded neuron is then
spike-for-spike identical to the unfolded one in evaluation mode, in float32 and float64, for
every finite input. :func:`fold_formula` gives the textbook ``V~`` for comparison.

Paper: Y. Guo, Y. Zhang, Y. Chen, W. Peng, X. Liu, L. Zhang, X. Huang and Z. Ma, "Membrane
potential batch normalization for spiking neural networks", ICCV 2023.
"""

from __future__ import annotations

import torch
from torch import nn

from ..checks import check_channels, check_floating, check_positive_int, check_unit_interval
from ..neurons import SURROGATE_ALPHA, arctan_surrogate_grad
from .step_statistics import check_enough_values, check_eps_and_momentum, check_same_dtype


class _MembraneSpike(torch.autograd.Function):
    """``s = H(v - V_th)`` computed as the comparison ``v > V_th``; arctan surrogate in the backward pass."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(v, threshold)
        return torch.gt(v, threshold).to(v.dtype)

    @staticmethod
    def backward(ctx, grad_spikes: torch.Tensor):
        v, threshold = ctx.saved_tensors
        return grad_spikes * arctan_surrogate_grad(v - threshold, SURROGATE_ALPHA), None


class _MPBNTrainingSequence(torch.autograd.Function):
    """The training-mode MPBN neuron over a whole sequence as one autograd node.

    Forward: the membrane recurrence, one BatchNorm per step with that step's batch statistics
    (PyTorch's native kernel, which also updates the running statistics), the comparison with
    ``V_th``. Backward, from the last step to the first::

        g_v  = dL/ds_t * arctan'(v_t - V_th)                   (surrogate, v_t = BN(u_t))
        g_u  = BN_t backward(g_v)  +  beta * g_u(t+1)          (through the batch statistics, then the leak)
        dL/dx_t = g_u,   dL/dgamma += ..., dL/dbeta_bn += ...  (from the BN backward)

    The same numbers as a per-step autograd loop, with a much smaller graph.
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
            means.append(mean)
            inverse_stds.append(inverse_std)
        ctx.save_for_backward(membranes, normalised, weight, torch.stack(means), torch.stack(inverse_stds))
        ctx.beta, ctx.threshold, ctx.eps = beta, threshold, eps
        return spikes

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_spikes):
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
    check_same_dtype(x, reference, layer)


def _check_threshold(threshold, layer: str) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold > 0:
        raise ValueError(f"{layer}: threshold must be a positive number, got {threshold!r}")
    return float(threshold)


def _membrane_step(x_t: torch.Tensor, u: torch.Tensor, spikes: torch.Tensor, beta: float, threshold: float):
    """``u_t = beta * u_{t-1} + x_t - V_th * s_{t-1}``: the exact operations both MPBN neurons run."""
    return torch.sub(torch.add(x_t, u, alpha=beta), spikes, alpha=threshold)


class MPBNLeaky(nn.Module):
    """Multi-step LIF neurons with a BatchNorm on the membrane potential before the threshold (MPBN).

    ``[T, B, C, ...]`` input currents in, spikes of the same shape out (see the module docstring
    for the equations, the statistics in training and evaluation, and folding).

    Args:
        num_features: number of channels C (dimension 2 of the input).
        beta: membrane decay per step, in [0, 1].
        threshold: firing threshold ``V_th`` (> 0), compared with the *normalised* membrane and
            subtracted from the raw one at reset. Stored as a buffer, like
            :class:`~snn_norm_lite.neurons.MultiStepLeaky`.
        eps, momentum: of the membrane BatchNorm (``membrane_norm``).
    """

    def __init__(
        self, num_features: int, beta: float = 0.9, threshold: float = 1.0, eps: float = 1e-5, momentum: float = 0.1
    ):
        super().__init__()
        name = type(self).__name__
        self.num_features = check_positive_int(num_features, "num_features", name)
        self.beta = check_unit_interval(beta, "beta", name, closed_low=True)
        eps, momentum = check_eps_and_momentum(eps, momentum, name)
        self.membrane_norm = nn.BatchNorm2d(num_features, eps=eps, momentum=momentum)
        self.register_buffer("threshold", torch.tensor(_check_threshold(threshold, name)))

    def extra_repr(self) -> str:
        return f"{self.num_features}, beta={self.beta}, threshold={float(self.threshold):.4g}"

    def membrane_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The evaluation-mode BatchNorm as ``BN(u) = scale * u + shift`` (per channel, ``[C]`` each)."""
        bn = self.membrane_norm
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        return scale, bn.bias - bn.running_mean * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        name = type(self).__name__
        bn = self.membrane_norm
        _check_sequence(x, self.num_features, bn.weight, name)
        if self.training:
            check_enough_values(x[0, :, 0].numel(), name)
            bn.num_batches_tracked.add_(x.shape[0])  # the BatchNorm runs once per step
            return _MPBNTrainingSequence.apply(
                x, bn.weight, bn.bias, bn.running_mean, bn.running_var,
                self.beta, float(self.threshold), bn.momentum, bn.eps,
            )
        scale, shift = self.membrane_affine()
        channel_view = (self.num_features,) + (1,) * (x.dim() - 3)
        scale, shift = scale.view(channel_view), shift.view(channel_view)
        threshold = self.threshold
        reset = float(threshold)
        spikes = []
        for t in range(x.shape[0]):
            u = x[t] if t == 0 else _membrane_step(x[t], u, spikes[-1].detach(), self.beta, reset)
            normalised = u * scale + shift  # two roundings, mul then add: what exact_fold reproduces
            spikes.append(_MembraneSpike.apply(normalised, threshold))
        return torch.stack(spikes)

    @torch.no_grad()
    def fold(self) -> "FoldedMPBNLeaky":
        """The evaluation-mode neuron with its BatchNorm folded into per-channel thresholds.

        Uses the running statistics: the result equals ``self.eval()`` spike for spike (not the
        training-mode neuron, which normalises with batch statistics). See :func:`exact_fold`.
        """
        scale, shift = self.membrane_affine()
        fire_threshold, fire_direction = exact_fold(scale, shift, self.threshold)
        return FoldedMPBNLeaky(fire_threshold, fire_direction, beta=self.beta, threshold=float(self.threshold))


def fold_formula(neuron: MPBNLeaky) -> tuple[torch.Tensor, torch.Tensor]:
    """The textbook folded threshold ``V~ = (V_th - beta_bn) * sqrt(var + eps) / gamma + mu`` and ``sign(gamma)``.

    Computed in float64; ``V~`` is ``nan``/``inf`` where gamma is 0 (those channels fire always
    or never, see the module docstring). :func:`exact_fold` gives the float threshold that
    reproduces the unfolded comparison exactly.
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

    ``u_t = beta * u_{t-1} + x_t - V_th * s_{t-1}`` (the raw membrane, reset by ``V_th``) and
    ``s_t = H(u_t - V~_c)`` for ``fire_direction[c] = +1`` or ``s_t = H(V~_c - u_t)`` for ``-1``
    (``V~ = fire_threshold``, possibly ``+-inf`` for channels that never or always fire). Built
    by :meth:`MPBNLeaky.fold`; equal, spike for spike, to the evaluation-mode ``MPBNLeaky`` it
    came from. Inference only: it computes no surrogate gradient (no parameters, and train and
    eval mode behave the same).

    Args:
        fire_threshold: ``[C]`` per-channel threshold ``V~``.
        fire_direction: ``[C]`` of +1 (fire above ``V~``) or -1 (fire below).
        beta: membrane decay per step.
        threshold: the reset ``V_th`` subtracted from the raw membrane after a spike.
    """

    def __init__(self, fire_threshold: torch.Tensor, fire_direction: torch.Tensor, beta: float, threshold: float):
        super().__init__()
        name = type(self).__name__
        if fire_threshold.dim() != 1 or fire_direction.shape != fire_threshold.shape:
            raise ValueError(
                f"{name}: fire_threshold and fire_direction must be 1-D of the same length, got shapes "
                f"{tuple(fire_threshold.shape)} and {tuple(fire_direction.shape)}"
            )
        if not bool(((fire_direction == 1) | (fire_direction == -1)).all()):
            raise ValueError(f"{name}: fire_direction must hold only +1 and -1")
        self.num_features = fire_threshold.shape[0]
        self.beta = check_unit_interval(beta, "beta", name, closed_low=True)
        self.register_buffer("fire_threshold", fire_threshold.detach().clone())
        self.register_buffer("fire_direction", fire_direction.detach().clone().to(fire_threshold.dtype))
        self.register_buffer("threshold", torch.tensor(_check_threshold(threshold, name), dtype=fire_threshold.dtype))

    def extra_repr(self) -> str:
        below = int((self.fire_direction < 0).sum())
        return f"{self.num_features}, beta={self.beta}, threshold={float(self.threshold):.4g}, channels_firing_below={below}"

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_sequence(x, self.num_features, self.fire_threshold, type(self).__name__)
        x = x.contiguous()
        view = (self.num_features,) + (1,) * (x.dim() - 3)
        direction = self.fire_direction.view(view)
        signed_threshold = (self.fire_direction * self.fire_threshold).view(view)
        all_above = bool((self.fire_direction > 0).all())
        reset = float(self.threshold)
        spikes = torch.empty_like(x)
        u = x[0].clone()
        signed = None if all_above else torch.empty_like(u)
        for t in range(x.shape[0]):
            if t > 0:
                torch.add(x[t], u, alpha=self.beta, out=u)  # the operations of _membrane_step, in place
                u.sub_(spikes[t - 1], alpha=reset)
            if all_above:
                torch.gt(u, signed_threshold, out=spikes[t])
            else:  # -u > -V~ is exactly u < V~
                torch.gt(torch.mul(u, direction, out=signed), signed_threshold, out=spikes[t])
        return spikes
