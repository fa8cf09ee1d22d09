"""Per-step batch statistics and the per-(step, channel) affine map that BNTT, TEBN and TAB share.

BNTT, TEBN and TAB differ only in how they *pool* batch statistics over time. Each of them
takes, for a sequence ``x`` of shape ``[T, B, C, H, W]``, the per-step statistics::

    m[t, c] = mean of x[t, :, c] over (B, H, W)
    v[t, c] = biased variance of x[t, :, c] over (B, H, W)

turns them into pooled statistics (BNTT: none, step t alone; TEBN: all steps; TAB: steps
0..t), and applies one affine map per step and channel::

    y[t, b, c, h, w] = scale[t, c] * (x[t, b, c, h, w] - center[t, c]) + bias[t, c]

where ``scale``, ``center`` and ``bias`` are small ``[T, C]`` functions of ``m``, ``v`` and the
layer's parameters. :func:`normalise_per_step` runs this with four vectorised passes over the
data in each direction (no Python loop over T), whatever the pooling, and lets autograd
differentiate only the small ``[T, C]`` function. This is what keeps the three methods close
to the cost of one ``BatchNorm2d`` on the time-merged batch; ``benchmarks/bench_norms.py``
measures it, next to a Python loop of T BatchNorms and TAB's O(T^2) window loop.

Numerics. Raw moments ``sum(x^2)/n - mean^2`` lose all precision when the mean is large
compared with the standard deviation (float32 keeps about 7 digits of ``sum(x^2)``, so at
mean/std = 1000 the variance keeps about one). The forward pass therefore first takes the per-step mean ``K`` (a plain
sum), writes the centred ``x - K`` into the output buffer and takes the second moment of
that: the two-pass algorithm, stable at any offset. ``K`` is a constant for autograd
(``mean(x) = K + mean(x - K)`` holds for any constant), so gradients stay exact. The backward
pass works with raw products ``sum(g * x)`` with ``K`` removed afterwards; its relative
rounding error grows only linearly with mean/std (about float32's 1e-7 times mean/std), which
is harmless for a gradient.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..checks import (
    check_channels,
    check_first_order,
    check_floating,
    check_num_steps,
    check_positive_int,
    check_positive_number,
    check_rank,
    check_step_index,
    check_unit_interval,
    keep_finite,
)
from .synchronised import BatchStatisticsNorm, batch_var_mean, total_count

Coefficients = Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def check_layer_input(x, t, num_features: int, num_steps: int, layer: str, reference: torch.Tensor):
    """Validate the input of a per-step layer and return it as a sequence with its rows.

    ``t=None``: ``x`` must be ``[T, B, C, H, W]`` with ``T == num_steps``; returns
    ``(x, slice(None))``. ``t`` an int: ``x`` must be one step ``[B, C, H, W]`` and
    ``0 <= t < num_steps``; returns ``(x[None], slice(t, t + 1))``, the rows of the per-step
    parameters and statistics that step uses. ``reference`` (a parameter or buffer of the layer)
    fixes the floating dtype the input must have.

    >>> weight = torch.ones(4, 3)                          # a layer built for T = 4, C = 3
    >>> x, rows = check_layer_input(torch.zeros(2, 3, 5, 5), 1, 3, 4, "MyNorm", weight)
    >>> x.shape, rows
    (torch.Size([1, 2, 3, 5, 5]), slice(1, 2, None))
    >>> check_layer_input(torch.zeros(2, 3, 5, 5), 4, 3, 4, "MyNorm", weight)
    Traceback (most recent call last):
        ...
    ValueError: MyNorm: time step t=4 is outside 0..3 (the layer was built for num_steps=4); steps are never clamped
    """
    check_floating(x, layer)
    if t is None:
        check_rank(x, (5,), layer, "[T, B, C, H, W] (or call it as layer(x_t, t=t) with x_t of shape [B, C, H, W])")
        check_num_steps(x, num_steps, layer)
        check_channels(x, 2, num_features, layer)
        rows = slice(None)
    else:
        t = check_step_index(t, num_steps, layer)
        check_rank(x, (4,), layer, f"[B, C, H, W] for a single step t={t}")
        check_channels(x, 1, num_features, layer)
        x, rows = x.unsqueeze(0), slice(t, t + 1)
    check_same_dtype(x, reference, layer)
    return x, rows


def check_eps_and_momentum(eps, momentum, layer: str) -> tuple[float, float]:
    """``eps`` must be a positive number and ``momentum`` lie in (0, 1]; returns them as floats.

    >>> check_eps_and_momentum(1e-5, 0.1, "MyNorm")
    (1e-05, 0.1)
    """
    return check_positive_number(eps, "eps", layer), check_unit_interval(momentum, "momentum", layer)


_CONVERSIONS = {torch.float16: ".half()", torch.bfloat16: ".bfloat16()", torch.float32: ".float()", torch.float64: ".double()"}


def check_same_dtype(x: torch.Tensor, reference: torch.Tensor, layer: str) -> None:
    """Raise ``TypeError`` unless ``x`` has the floating dtype of the layer's own tensors.

    >>> check_same_dtype(torch.zeros(2), torch.zeros(2), "MyNorm")
    >>> check_same_dtype(torch.zeros(2, dtype=torch.float64), torch.zeros(2), "MyNorm")
    Traceback (most recent call last):
        ...
    TypeError: MyNorm: input dtype torch.float64 differs from the layer's dtype torch.float32; convert the input with .float() or the layer with layer.double()
    """
    if x.dtype != reference.dtype:
        to_layer = _CONVERSIONS.get(reference.dtype, f".to({reference.dtype})")
        to_input = _CONVERSIONS.get(x.dtype, f".to({x.dtype})")
        raise TypeError(
            f"{layer}: input dtype {x.dtype} differs from the layer's dtype {reference.dtype}; convert the input "
            f"with {to_layer} or the layer with layer{to_input}"
        )


def values_per_step_and_channel(x: torch.Tensor) -> int:
    """How many values one (step, channel) statistic averages: B * H * W for ``[T, B, C, H, W]``.

    >>> values_per_step_and_channel(torch.zeros(4, 8, 3, 5, 5))   # B * H * W
    200
    """
    return x[0, :, 0].numel()


def check_enough_values(count: int, layer: str, per: str = "channel and step", shape=None) -> None:
    """Training statistics need at least two values per ``per`` (the unbiased running variance).

    An empty batch (``count == 0``: B = 0, or H = W = 0) has no statistics at all; one value
    gives a variance of 0 and an unbiased variance of 0/0. Both are refused, as ``nn.BatchNorm2d``
    refuses one value per channel, before anything (running statistics included) changes.
    ``shape``, when given, is quoted in the message.

    >>> check_enough_values(2, "MyNorm")
    >>> check_enough_values(1, "MyNorm")
    Traceback (most recent call last):
        ...
    ValueError: MyNorm: expected more than 1 value per channel and step when training (got 1); ...
    >>> check_enough_values(0, "MyNorm", shape=(4, 0, 3, 5, 5))
    Traceback (most recent call last):
        ...
    ValueError: MyNorm: got an empty training batch (input shape (4, 0, 3, 5, 5)): no values per channel and step ...
    """
    where = "" if shape is None else f"input shape {tuple(shape)}"
    if count == 0:
        raise ValueError(
            f"{layer}: got an empty training batch ({where or 'no values'}): no values per {per} to take batch "
            "statistics from; skip empty batches (nothing was updated)"
        )
    if count < 2:
        raise ValueError(
            f"{layer}: expected more than 1 value per {per} when training (got {count}"
            f"{', ' + where if where else ''}); use a batch of at least 2 samples or call .eval()"
        )


@torch.no_grad()
def update_running(running: torch.Tensor, batch: torch.Tensor, momentum: float) -> None:
    """PyTorch's running-statistics rule, in place: ``running = (1 - m) * running + m * batch``.

    Element-wise, an entry whose new value would not be finite (a NaN or Inf in the batch) keeps
    its old value (:func:`~snn_norm_lite.checks.keep_finite`): one bad batch does not poison the
    statistics evaluation uses. No host-device synchronisation.

    >>> running = torch.zeros(3)
    >>> update_running(running, torch.tensor([1.0, 2.0, 3.0]), momentum=0.1)
    >>> running
    tensor([0.1000, 0.2000, 0.3000])
    >>> update_running(running, torch.tensor([float("nan"), 2.0, float("inf")]), momentum=0.1)
    >>> running
    tensor([0.1000, 0.3800, 0.3000])
    """
    new = torch.add(running * (1.0 - momentum), batch.detach().to(running.dtype), alpha=momentum)
    running.copy_(keep_finite(new, running))


def unbiased(variance: torch.Tensor, count) -> torch.Tensor:
    """The unbiased variance ``var * n / (n - 1)`` from a biased one over ``n`` values.

    >>> x = torch.tensor([1.0, 2.0, 3.0, 6.0])
    >>> bool(torch.isclose(unbiased(x.var(correction=0), 4), x.var(correction=1)))
    True
    """
    return variance * (count / (count - 1))


def _per_row_sum(x4: torch.Tensor) -> torch.Tensor:
    """Sum of ``[T, B, C, L]`` over B and L: ``[T, C]``."""
    return x4.sum(dim=3).sum(dim=1)


def _per_row_dot(a4: torch.Tensor, b4: torch.Tensor) -> torch.Tensor:
    """``sum(a * b)`` over B and L for ``[T, B, C, L]`` tensors, without an ``a * b`` temporary."""
    steps, batch, channels, length = a4.shape
    rows = torch.bmm(a4.reshape(-1, 1, length), b4.reshape(-1, length, 1))
    return rows.view(steps, batch, channels).sum(dim=1)


class _PerStepAffineNorm(torch.autograd.Function):
    """``y = scale * (x - center) + bias`` per (step, channel), coefficients from per-step moments.

    See the module docstring. Inputs: ``x`` ``[T, B, C, *]`` contiguous, the coefficient
    function and its tensor arguments. Outputs: ``y`` and the detached per-step mean and
    biased variance ``[T, C]`` (for the caller's running statistics).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, coefficients: Coefficients, *params: torch.Tensor):
        steps, batch, channels = x.shape[:3]
        x4 = x.view(steps, batch, channels, -1)
        count = batch * x4.shape[3]
        shift = _per_row_sum(x4).div_(count)  # K: the per-step mean, a constant for autograd
        y = torch.sub(x, shift.view(steps, 1, channels, *([1] * (x.dim() - 3))))  # x - K
        y4 = y.view_as(x4)
        centred_square = _per_row_dot(y4, y4).div_(count)  # mean of (x - K)^2
        track = any(ctx.needs_input_grad)
        with torch.enable_grad() if track else torch.no_grad():
            # s1 = mean(x - K) is zero up to the rounding of K; its square, (eps * mean)^2, is far
            # below the variance, so its value is taken as 0. It stays a variable for autograd:
            # d s1 / dx = 1/n carries the gradient through the mean.
            s1 = torch.zeros_like(shift).requires_grad_(track)
            s2 = centred_square.requires_grad_(track)
            leaves = [p.detach().requires_grad_(p.requires_grad and track) for p in params]
            step_mean = shift + s1
            step_var = (s2 - s1 * s1).clamp_min(0.0)
            scale, center, bias = coefficients(step_mean, step_var, *leaves)
            scale = scale.expand(steps, channels)
            # y = scale * (x - K) + offset: centred form, accurate at any mean/std ratio
            offset = (bias + scale * (shift - center)).expand(steps, channels)
        view = (steps, 1, channels) + (1,) * (x.dim() - 3)
        torch.addcmul(offset.detach().view(view), y, scale.detach().view(view), out=y)
        if track:
            ctx.save_for_backward(x, shift)
            ctx.graph = (s1, s2, leaves, scale, offset)
            ctx.count = count
        step_mean, step_var = step_mean.detach(), step_var.detach()
        ctx.mark_non_differentiable(step_mean, step_var)
        return y, step_mean, step_var

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor, _grad_mean, _grad_var):
        check_first_order("normalise_per_step (the per-step normalisation of BNTT, TEBN and TAB)")
        x, shift = ctx.saved_tensors
        s1, s2, leaves, scale, offset = ctx.graph
        steps, batch, channels = x.shape[:3]
        view = (steps, 1, channels) + (1,) * (x.dim() - 3)
        grad_y = grad_y.contiguous()
        g4 = grad_y.view(steps, batch, channels, -1)
        grad_offset = _per_row_sum(g4)  # dL/d offset = sum g
        grad_scale = _per_row_dot(g4, x.view_as(g4)) - shift * grad_offset  # sum g * (x - K)
        inputs = [s1, s2] + [leaf for leaf in leaves if leaf.requires_grad]
        grads = torch.autograd.grad(
            (scale, offset), inputs, (grad_scale, grad_offset), allow_unused=True, retain_graph=True
        )
        grad_s1, grad_s2 = [torch.zeros_like(s1) if g is None else g for g in grads[:2]]
        leaf_grads = iter(grads[2:])
        param_grads = [next(leaf_grads) if leaf.requires_grad else None for leaf in leaves]
        grad_x = None
        if ctx.needs_input_grad[0]:
            # dx = scale * g + d s1/dx + d s2/dx = scale * g + grad_s1 / n + 2 grad_s2 (x - K) / n
            slope = grad_s2 * (2.0 / ctx.count)
            constant = grad_s1 / ctx.count - slope * shift
            grad_x = torch.addcmul(constant.view(view), grad_y, scale.detach().view(view))
            grad_x.addcmul_(x, slope.view(view))
        return (grad_x, None, *param_grads)


def normalise_per_step(x: torch.Tensor, coefficients: Coefficients, *params: torch.Tensor, group=None, count=None):
    """Apply ``y = scale * (x - center) + bias`` with coefficients computed from per-step moments.

    Args:
        x: a sequence ``[T, B, C, *]`` (time first).
        coefficients: ``coefficients(step_mean, step_var, *params) -> (scale, center, bias)``,
            where ``step_mean`` and ``step_var`` are the per-step mean and biased variance
            ``[T, C]`` over (B, *) and each result broadcasts to ``[T, C]``. Autograd
            differentiates through it; it must use only differentiable tensor operations.
        params: the tensors ``coefficients`` needs besides the statistics (parameters).
        group: ``None`` (statistics of this batch), or a process group whose processes each
            hold part of the batch: the statistics are then taken over all of them
            (:mod:`~snn_norm_lite.norms.synchronised`), with plain autograd operations instead
            of the fused node below (slower, the same numbers).
        count: with ``group``, the values per (step, channel) over all its processes when the
            caller has it already (it saves an all-reduce); found by itself otherwise.

    Returns:
        ``(y, step_mean, step_var)``: the output, shaped like ``x``, and the detached per-step
        statistics for the caller's running averages.

    First-order gradients only: the backward pass is not itself differentiable, and asking for
    second-order gradients (``create_graph=True``) raises a ``RuntimeError`` instead of silently
    dropping their terms.

    BatchNorm per step (BNTT's coefficients, gain 1): every step comes out with mean 0, variance 1.

    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(3, 8, 2, 4, 4) * torch.tensor([1.0, 5.0, 9.0]).view(3, 1, 1, 1, 1)
    >>> per_step_bn = lambda mean, var: (torch.rsqrt(var + 1e-5), mean, 0.0)
    >>> y, step_mean, step_var = normalise_per_step(x, per_step_bn)
    >>> y.shape, step_var.shape
    (torch.Size([3, 8, 2, 4, 4]), torch.Size([3, 2]))
    >>> torch.allclose(y.var(dim=(1, 3, 4), correction=0), torch.ones(3, 2), atol=1e-3)
    True
    """
    if group is not None:
        step_var, step_mean, _ = batch_var_mean(x, (1,) + tuple(range(3, x.dim())), group, count)
        scale, center, bias = coefficients(step_mean, step_var, *params)
        steps, channels = step_mean.shape
        scale, shift = scale.expand(steps, channels), (bias - scale * center).expand(steps, channels)
        return apply_per_step_affine(x, scale, shift), step_mean.detach(), step_var.detach()
    return _PerStepAffineNorm.apply(x.contiguous(), coefficients, *params)


def apply_per_step_affine(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``y = scale * x + shift`` with ``[T, C]`` coefficients on ``[T, B, C, *]`` (evaluation path).

    >>> x = torch.ones(2, 1, 3, 1, 1)                                  # T = 2, B = 1, C = 3
    >>> scale, shift = torch.tensor([[1.0, 2, 3], [4, 5, 6]]), torch.zeros(2, 3)
    >>> apply_per_step_affine(x, scale, shift).flatten(1)
    tensor([[1., 2., 3.],
            [4., 5., 6.]])
    """
    view = (scale.shape[0], 1, scale.shape[1]) + (1,) * (x.dim() - 3)
    return torch.addcmul(shift.to(x.dtype).view(view), x, scale.to(x.dtype).view(view))


class PerStepNorm(BatchStatisticsNorm, nn.Module):
    """What BNTT, TEBN and TAB share: arguments, running statistics, ``repr`` and their reset.

    Checks ``num_features`` and ``num_steps`` (positive ints), ``eps`` (> 0) and ``momentum``
    (in (0, 1]), and registers PyTorch's three BatchNorm buffers: ``running_mean`` (zeros),
    ``running_var`` (ones), each ``[num_steps, num_features]`` when every step keeps its own
    statistics (``statistics_per_step=True``: BNTT, TAB) or ``[num_features]`` when the steps
    share them (TEBN), and ``num_batches_tracked``. Subclasses add their parameters and the
    forward pass; :meth:`_check_input` and :meth:`_training_count` are the input checks they
    all run.

    >>> class Demo(PerStepNorm):
    ...     def __init__(self):
    ...         super().__init__(3, 4, statistics_per_step=True)
    ...         self.weight = nn.Parameter(torch.ones(4, 3))
    >>> layer = Demo()
    >>> layer
    Demo(3, num_steps=4, eps=1e-05, momentum=0.1)
    >>> layer.running_mean.shape, int(layer.num_batches_tracked)
    (torch.Size([4, 3]), 0)
    """

    def __init__(
        self,
        num_features: int,
        num_steps: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        *,
        statistics_per_step: bool,
    ):
        super().__init__()
        name = type(self).__name__
        self.num_features = check_positive_int(num_features, "num_features", name)
        self.num_steps = check_positive_int(num_steps, "num_steps", name)
        self.eps, self.momentum = check_eps_and_momentum(eps, momentum, name)
        shape = (num_steps, num_features) if statistics_per_step else (num_features,)
        self.register_buffer("running_mean", torch.zeros(shape))
        self.register_buffer("running_var", torch.ones(shape))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def extra_repr(self) -> str:
        return f"{self.num_features}, num_steps={self.num_steps}, eps={self.eps}, momentum={self.momentum}"

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, no batch tracked (as ``nn.BatchNorm2d``)."""
        self.running_mean.zero_()
        self.running_var.fill_(1.0)
        self.num_batches_tracked.zero_()

    def _check_input(self, x: torch.Tensor, t: int | None):
        """:func:`check_layer_input` for this layer: ``(x as [T', B, C, H, W], rows of the step parameters)``."""
        return check_layer_input(x, t, self.num_features, self.num_steps, type(self).__name__, self.weight)

    def _training_count(self, x: torch.Tensor) -> int:
        """Values per (step, channel) of a training batch ``[T', B, C, H, W]``; at least 2, else an error."""
        count = values_per_step_and_channel(x)
        check_enough_values(count, type(self).__name__, shape=x.shape)
        return count

    def _statistics_count(self, x: torch.Tensor, group):
        """:meth:`_training_count` of this process, summed over ``group`` when the statistics span processes."""
        return total_count(self._training_count(x), group, x)
