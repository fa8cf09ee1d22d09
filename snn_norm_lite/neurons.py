"""Multi-step leaky integrate-and-fire (LIF) neurons on sequences ``[T, B, ...]``.

The neuron is snntorch's ``Leaky`` with subtractive reset, run over a whole sequence::

    u_t = beta * u_{t-1} + x_t - V_th * s_{t-1}        (u_{-1} = 0, s_{-1} = 0)
    s_t = H(u_t - V_th)                                 (H: Heaviside, H(0) = 0)

The reset term ``V_th * s_{t-1}`` is detached from the graph, as in snntorch. In the backward
pass the Heaviside step is replaced by snntorch's arctan surrogate::

    dH/du ~= (alpha / 2) / (1 + (pi / 2 * alpha * (u - V_th))^2),     alpha = 2

Two interchangeable backends compute exactly this:

* ``"fused"`` (default): one autograd node for the whole sequence. The forward loop over T
  touches only element-wise tensors, and the backward pass is the same recurrence run in
  reverse, ``g_t = dL/ds_t * dH/du_t + beta * g_{t+1}``, ``dL/dx_t = g_t``. This keeps the
  autograd graph small, which is most of the cost of an SNN on a CPU.
* ``"snntorch"``: snntorch's own ``Leaky`` called once per step; the reference the fused
  backend is tested against.

Non-finite input. A NaN input current makes the membrane NaN, and ``NaN > V_th`` is false: the
plain recurrence would silently stop firing and hand the next layer zeros. Both backends
instead output ``NaN`` at every step (and element) where the membrane is not finite::

    out_t = s_t      if u_t is finite,
            NaN      otherwise (u_t NaN, +inf or -inf),

so the NaN shows in the network's output. ``u_t`` stays non-finite from then on (for
``beta > 0``), and so does the output. The mask is one element-wise pass over the whole
``[T, ...]`` output after the loop (:func:`show_non_finite`: no per-step check, no host-device
sync). Gradients of finite inputs are unchanged.

The fused backend's backward pass is first-order only: second-order gradients
(``create_graph=True``) raise a ``RuntimeError``. The neuron has no parameters of its own
(``threshold`` is a number); it computes in the dtype of its input.
"""

from __future__ import annotations

import math

import snntorch
import torch
from snntorch import surrogate
from torch import nn

from .checks import check_first_order, check_floating, check_positive_number, check_unit_interval
from .precision import full_precision_forward
from .sequences import check_sequence

SURROGATE_ALPHA = 2.0  # snntorch's default arctan slope


def arctan_surrogate_grad(v: torch.Tensor, alpha: float = SURROGATE_ALPHA) -> torch.Tensor:
    """Derivative of snntorch's arctan surrogate at ``v = u - V_th``.

    >>> arctan_surrogate_grad(torch.tensor([0.0, 1.0]))      # alpha / 2 at the threshold, smaller away from it
    tensor([1.0000, 0.0920])
    >>> arctan_surrogate_grad(torch.tensor([0.0]), alpha=0)
    Traceback (most recent call last):
        ...
    ValueError: arctan_surrogate_grad: alpha must be a positive number, got 0.0
    """
    check_floating(v, "arctan_surrogate_grad")
    alpha = check_positive_number(alpha, "alpha", "arctan_surrogate_grad")
    return (alpha / 2) / (1 + (math.pi / 2 * alpha * v) ** 2)


def show_non_finite(spikes: torch.Tensor, membranes: torch.Tensor) -> torch.Tensor:
    """Write NaN into ``spikes`` wherever ``membranes`` is NaN or infinite, in place; return ``spikes``.

    ``spikes + 0 * u`` is ``spikes`` for a finite ``u`` and NaN otherwise (``0 * inf`` is NaN), so
    one element-wise pass marks every non-finite membrane, with no host-device sync. Every
    spiking layer of the package calls it, so that a NaN never turns into "no spike".

    >>> show_non_finite(torch.tensor([1.0, 0.0, 0.0, 1.0]), torch.tensor([2.0, 0.5, float("nan"), float("inf")]))
    tensor([1., 0., nan, nan])
    """
    return spikes.add_(membranes, alpha=0.0)


class _FusedLIF(torch.autograd.Function):
    """The LIF recurrence over T as a single autograd node (see the module docstring).

    Written for speed on a CPU: every step is three element-wise kernels writing into
    preallocated ``[T, ...]`` buffers (no temporaries), and the backward recurrence runs in
    place on the surrogate-gradient tensor.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, beta: float, threshold: float, alpha: float) -> torch.Tensor:
        x = x.contiguous()
        membranes = torch.empty_like(x)
        spikes = torch.empty_like(x)
        membranes[0] = x[0]  # u_{-1} = 0 and s_{-1} = 0
        torch.gt(membranes[0], threshold, out=spikes[0])
        for t in range(1, x.shape[0]):
            torch.add(x[t], membranes[t - 1], alpha=beta, out=membranes[t])  # x_t + beta u_{t-1}
            membranes[t].sub_(spikes[t - 1], alpha=threshold)  # - V_th s_{t-1} (reset, no gradient)
            torch.gt(membranes[t], threshold, out=spikes[t])  # s_t = H(u_t - V_th)
        show_non_finite(spikes, membranes)  # NaN where u_t is NaN or infinite
        ctx.save_for_backward(membranes)
        ctx.beta, ctx.threshold, ctx.alpha = beta, threshold, alpha
        return spikes

    @staticmethod
    def backward(ctx, grad_spikes: torch.Tensor):
        check_first_order("_FusedLIF (MultiStepLeaky, backend='fused')")
        (membranes,) = ctx.saved_tensors
        # local_t = dL/ds_t * (alpha/2) / (1 + (pi/2 alpha (u_t - V_th))^2), in place
        grad = membranes.sub(ctx.threshold).square_().mul_((math.pi / 2 * ctx.alpha) ** 2).add_(1.0)
        torch.div(grad_spikes, grad, out=grad)
        if ctx.alpha != 2.0:
            grad.mul_(ctx.alpha / 2)
        # g_t = local_t + beta * g_{t+1}, and dL/dx_t = g_t
        for t in range(grad.shape[0] - 2, -1, -1):
            grad[t].add_(grad[t + 1], alpha=ctx.beta)
        return grad, None, None, None


class MultiStepLeaky(nn.Module):
    """LIF neurons over a whole sequence: ``[T, B, ...]`` input currents in, spikes out.

    Args:
        beta: membrane decay per step, in [0, 1] (1 is a perfect integrator).
        threshold: firing threshold ``V_th`` (> 0). Stored as a buffer so controllers such as
            AHSAR can rescale it without touching any parameter.
        backend: ``"fused"`` or ``"snntorch"`` (same numbers; see the module docstring).

    >>> neuron = MultiStepLeaky(beta=0.5, threshold=1.0)
    >>> x = torch.full((4, 1, 1), 0.6)                       # [T, B, features]: a constant input current
    >>> neuron(x).flatten()                                  # u = 0.6, 0.9, 1.05 (fires), 0.125
    tensor([0., 0., 1., 0.])

    A non-finite membrane is not a silent neuron: the output is NaN from that step on.

    >>> x[1] = float("nan")
    >>> neuron(x).flatten()
    tensor([0., nan, nan, nan])

    Input: a float tensor ``[T, B, ...]`` with ``T >= 1`` (any float dtype; the output has it).
    Under autocast (mixed precision) the membranes are integrated in the dtype of ``threshold``,
    float32 by default (:mod:`snn_norm_lite.precision`).
    """

    def __init__(self, beta: float = 0.9, threshold: float = 1.0, backend: str = "fused"):
        super().__init__()
        name = type(self).__name__
        self.beta = check_unit_interval(beta, "beta", name, closed_low=True)
        threshold = check_positive_number(threshold, "threshold", name)
        if backend not in ("fused", "snntorch"):
            raise ValueError(f"{name}: backend must be 'fused' or 'snntorch', got {backend!r}")
        self.backend = backend
        self.register_buffer("threshold", torch.tensor(float(threshold)))

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={float(self.threshold):.4g}, backend={self.backend!r}"

    @full_precision_forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        name = type(self).__name__
        check_floating(x, name)
        check_sequence(x, name)
        threshold = float(self.threshold)
        if self.backend == "fused":
            return _FusedLIF.apply(x, self.beta, threshold, SURROGATE_ALPHA)
        return self._forward_snntorch(x, threshold)

    def _forward_snntorch(self, x: torch.Tensor, threshold: float) -> torch.Tensor:
        leaky = snntorch.Leaky(
            beta=self.beta,
            threshold=threshold,
            spike_grad=surrogate.atan(alpha=SURROGATE_ALPHA),
            reset_mechanism="subtract",
        )
        mem = torch.zeros_like(x[0])
        spikes, membranes = [], []
        for t in range(x.shape[0]):
            spk, mem = leaky(x[t], mem)
            spikes.append(spk)
            membranes.append(mem.detach())
        spikes = torch.stack(spikes).to(x.dtype)  # snntorch emits float32 spikes
        return show_non_finite(spikes, torch.stack(membranes))


def membrane_potentials(neuron: MultiStepLeaky, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``neuron`` on ``x`` ``[T, B, ...]``; return its spikes and the membranes ``u_t`` it computed.

    The membranes are the ones the fused backend keeps for its backward pass (the recurrence of
    the module docstring, before the reset of step t is applied), read from the autograd node,
    not recomputed. Only the ``"fused"`` backend is supported: the ``"snntorch"`` backend *is*
    ``snntorch.Leaky``, whose membrane its caller can read directly. Both outputs are detached.

    >>> spikes, membranes = membrane_potentials(MultiStepLeaky(beta=0.5), torch.full((4, 1), 0.6))
    >>> membranes.flatten(), spikes.flatten()                  # 0.6, 0.9, 1.05 (fires), 1.125 - 1
    (tensor([0.6000, 0.9000, 1.0500, 0.1250]), tensor([0., 0., 1., 0.]))
    >>> membrane_potentials(MultiStepLeaky(backend="snntorch"), torch.zeros(4, 1))
    Traceback (most recent call last):
        ...
    ValueError: membrane_potentials: expected a MultiStepLeaky with backend='fused', got backend='snntorch'; read snntorch.Leaky's membrane directly instead
    """
    if not isinstance(neuron, MultiStepLeaky):
        raise TypeError(f"membrane_potentials: expected a MultiStepLeaky neuron, got {type(neuron).__name__}")
    if neuron.backend != "fused":
        raise ValueError(
            f"membrane_potentials: expected a MultiStepLeaky with backend='fused', got backend={neuron.backend!r}; "
            "read snntorch.Leaky's membrane directly instead"
        )
    check_floating(x, "membrane_potentials")
    with torch.enable_grad():
        spikes = neuron(x.detach().requires_grad_())
        (membranes,) = spikes.grad_fn.saved_tensors
    return spikes.detach(), membranes.detach()
