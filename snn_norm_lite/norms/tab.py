"""TAB: temporal accumulated batch normalisation (Jiang et al., ICLR 2024).

At step t, TAB normalises with the statistics of everything the layer has seen so far in the
sequence, steps 0..t::

    y_t = p_t^2 * ( gamma_t * (x_t - mu_{0:t}) / sqrt(var_{0:t} + eps) + beta_t )

* ``mu_{0:t}, var_{0:t}``: per-channel mean and biased variance over the window of steps
  ``s <= t`` and (B, H, W). Early steps are normalised with few samples, later ones with the
  accumulated history, which follows the membrane potential's own accumulation over time.
* ``gamma_t, beta_t``: a learnable affine per step and channel (``weight``, ``bias``, shape
  ``[T, C]``, init 1 and 0).
* ``p_t``: a learnable temporal weight per step (``time_weight``, shape ``[T]``, init 1),
  applied squared, so the step's scale never changes sign.
* Training: the window statistics of the batch. Gradients flow into earlier steps through
  the window statistics (``x_s`` for ``s <= t`` changes ``mu_{0:t}``). Each step keeps running
  averages of *its window's* statistics (PyTorch's rule, unbiased variance over the
  ``(t + 1) * B * H * W`` window values).
* Evaluation: the running window statistics of step t: a fixed affine map per step.

Causal: step t uses steps 0..t only. The layer works on a whole sequence ``[T, B, C, H, W]``
and one step at a time, ``layer(x_t, t=t)``. In evaluation one-step calls need no state. In
training, a one-step call needs the window of the current sequence: the layer keeps the
running window sums (a graph-carrying state, not a buffer), starts a new window at ``t=0``,
clears it after ``t=num_steps-1``, and raises if steps arrive out of order (or with another
batch shape). Both paths give the same outputs, gradients and running statistics.

Cost. The public code (https://github.com/HaiyanJiang/SNN-TAB, ``models.py``, ``TAB_Layer``)
runs one BatchNorm over the growing window ``x[0..t]`` at every step:
O(T^2) work. The window statistics follow from per-step ones by cumulative sums
(:func:`window_statistics`), so here all T steps cost one pass over the data, like BNTT.
Numerics: cumulative sums of ``x`` and ``x^2`` cancel catastrophically when the mean is large
compared with the spread. Instead, each step's mean and variance are taken by the stable
two-pass method (:mod:`snn_norm_lite.norms.step_statistics`), and only the per-step *means*
are accumulated, shifted by the (detached) mean of step 0: the quantities that are summed are
then deviations of the order of the window's own spread, so the subtraction
``E[d^2] - E[d]^2`` loses at most a factor of about T in relative precision, whatever the
offset of the data. :func:`tab_window_statistics_naive` is the O(T^2) reference.

Paper: H. Jiang, V. Zoonekynd, G. De Masi, B. Gu and H. Xiong, "TAB: Temporal accumulated batch
normalization in spiking neural networks", ICLR 2024.
"""

from __future__ import annotations

import torch
from torch import nn

from ..precision import full_precision_forward
from .registry import NormSpec, register
from ..checks import check_floating, check_rank
from .step_statistics import PerStepNorm, apply_per_step_affine, normalise_per_step, unbiased, update_running
from .synchronised import batch_var_mean


def window_statistics(step_mean: torch.Tensor, step_var: torch.Tensor):
    """Statistics of the windows 0..t from per-step ones, in O(T) with cumulative sums.

    ``step_mean``, ``step_var``: ``[T, C]`` per-step mean and biased variance (equal counts
    per step). With ``d_s = mu_s - mu_0`` (``mu_0`` detached: a constant shift)::

        mu_{0:t}  = mu_0 + (1/(t+1)) * sum_{s<=t} d_s
        var_{0:t} = (1/(t+1)) * sum_{s<=t} (var_s + d_s^2)  -  ((1/(t+1)) * sum_{s<=t} d_s)^2

    (the law of total variance over the steps of the window). Returns ``(mean, var)``, ``[T, C]``.

    >>> mean, var = window_statistics(torch.tensor([[0.0], [2.0]]), torch.tensor([[1.0], [1.0]]))
    >>> mean.flatten(), var.flatten()                    # window 0..1: mean 1, variance 1 + 1
    (tensor([0., 1.]), tensor([1., 2.]))
    """
    shift = step_mean[:1].detach()
    deviation = step_mean - shift
    steps = torch.arange(1, step_mean.shape[0] + 1, dtype=step_mean.dtype, device=step_mean.device).unsqueeze(1)
    mean_deviation = deviation.cumsum(dim=0) / steps
    second_moment = (step_var + deviation.square()).cumsum(dim=0) / steps
    return shift + mean_deviation, (second_moment - mean_deviation.square()).clamp_min(0.0)


def _check_sequence(x: torch.Tensor, name: str) -> None:
    check_floating(x, name)
    check_rank(x, (5,), name, "[T, B, C, H, W]")
    if 0 in (x.shape[0], x.shape[1], x.shape[3], x.shape[4]):
        raise ValueError(
            f"{name}: expected at least one time step and one value per step and channel, got shape "
            f"{tuple(x.shape)} (an empty sequence has no statistics)"
        )


def tab_window_statistics(x: torch.Tensor):
    """Window statistics ``mu_{0:t}, var_{0:t}`` (``[T, C]``) of a sequence ``[T, B, C, H, W]``, in O(T).

    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(5, 4, 2, 3, 3)
    >>> fast, naive = tab_window_statistics(x), tab_window_statistics_naive(x)
    >>> fast[0].shape, all(torch.allclose(a, b, atol=1e-5) for a, b in zip(fast, naive))
    (torch.Size([5, 2]), True)
    """
    _check_sequence(x, "tab_window_statistics")
    step_var, step_mean = torch.var_mean(x, dim=(1, 3, 4), correction=0)
    return window_statistics(step_mean, step_var)


def tab_window_statistics_naive(x: torch.Tensor):
    """The same statistics the way the paper's code takes them: one BatchNorm over ``x[0..t]`` per step.

    O(T^2) work (step t reads t + 1 steps). The reference :func:`window_statistics` is tested
    against, and the chapter times.

    >>> x = torch.tensor([0.0, 2.0]).view(2, 1, 1, 1, 1).expand(2, 2, 1, 1, 1)   # step 0: all 0, step 1: all 2
    >>> mean, var = tab_window_statistics_naive(x)
    >>> mean.flatten(), var.flatten()
    (tensor([0., 1.]), tensor([0., 1.]))
    """
    _check_sequence(x, "tab_window_statistics_naive")
    means, variances = [], []
    for t in range(x.shape[0]):
        window = x[: t + 1]  # [t+1, B, C, H, W]
        variance, mean = torch.var_mean(window, dim=(0, 1, 3, 4), correction=0)
        means.append(mean)
        variances.append(variance)
    return torch.stack(means), torch.stack(variances)


def tab_coefficients(eps: float):
    """TAB as per-step coefficients: window statistics, then ``p_t^2 * (gamma_t * x_hat + beta_t)``.

    >>> coefficients = tab_coefficients(0.0)
    >>> step_mean, step_var = torch.tensor([[0.0], [2.0]]), torch.tensor([[1.0], [1.0]])
    >>> scale, center, bias = coefficients(step_mean, step_var, torch.ones(2, 1), torch.zeros(2, 1), torch.ones(2))
    >>> scale.flatten(), center.flatten()                # 1 / sqrt(var_{0:t}), mu_{0:t}
    (tensor([1.0000, 0.7071]), tensor([0., 1.]))
    """

    def coefficients(step_mean, step_var, weight, bias, time_weight):
        mean, var = window_statistics(step_mean, step_var)
        p2 = time_weight.square().unsqueeze(1)
        return p2 * weight * torch.rsqrt(var + eps), mean, p2 * bias

    return coefficients


class TemporalAccumulatedBatchNorm2d(PerStepNorm):
    """Normalise step t with the statistics of steps 0..t, then a per-step affine and ``p_t^2`` (TAB).

    ``y_t = time_weight[t]^2 * (weight[t] * (x_t - mu_{0:t}) / sqrt(var_{0:t} + eps) + bias[t])``
    (see the module docstring for where the statistics come from in training and evaluation).

    Call it on a sequence ``[T, B, C, H, W]`` with ``T == num_steps``, or one step at a time,
    ``layer(x_t, t=t)`` with ``x_t`` of shape ``[B, C, H, W]`` (in training: steps 0, 1, ...,
    T-1 in order, one sequence at a time).

    Args:
        num_features: number of channels C.
        num_steps: number of time steps T.
        eps: added to the variance before the square root.
        momentum: weight of the newest batch in the running statistics, in (0, 1].

    Shapes: ``weight``, ``bias``, ``running_mean``, ``running_var``: ``[num_steps, num_features]``;
    ``time_weight``: ``[num_steps]``.

    >>> _ = torch.manual_seed(0)
    >>> tab = TemporalAccumulatedBatchNorm2d(3, num_steps=4)
    >>> x = torch.randn(4, 8, 3, 5, 5)
    >>> whole = tab(x)
    >>> steps = torch.stack([tab(x[t], t=t) for t in range(4)])   # one step at a time, in order
    >>> whole.shape, torch.allclose(whole, steps, atol=1e-5)
    (torch.Size([4, 8, 3, 5, 5]), True)
    """

    def __init__(self, num_features: int, num_steps: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__(num_features, num_steps, eps, momentum, statistics_per_step=True)
        self.weight = nn.Parameter(torch.ones(num_steps, num_features))
        self.bias = nn.Parameter(torch.zeros(num_steps, num_features))
        self.time_weight = nn.Parameter(torch.ones(num_steps))
        self._window = None  # running window sums of a sequence fed one step at a time (training)

    def reset_window(self) -> None:
        """Forget a sequence that was being fed one step at a time (its window sums and graph).

        >>> tab = TemporalAccumulatedBatchNorm2d(2, num_steps=3)
        >>> _ = tab(torch.randn(4, 2, 3, 3), t=0)                     # a sequence started one step at a time
        >>> tab(torch.randn(4, 2, 3, 3), t=2)
        Traceback (most recent call last):
            ...
        ValueError: TemporalAccumulatedBatchNorm2d: in training, one-step calls must come in order ...
        >>> tab.reset_window()                                      # forget it; the next sequence starts at t=0
        """
        self._window = None

    def train(self, mode: bool = True):
        self.reset_window()
        return super().train(mode)

    @full_precision_forward
    def forward(self, x: torch.Tensor, t: int | None = None) -> torch.Tensor:
        x, rows = self._check_input(x, t)
        if not self.training:
            p2 = self.time_weight[rows].square().unsqueeze(1)
            scale = p2 * self.weight[rows] * torch.rsqrt(self.running_var[rows] + self.eps)
            y = apply_per_step_affine(x, scale, p2 * self.bias[rows] - self.running_mean[rows] * scale)
            return y if t is None else y[0]
        group = self.statistics_group()
        count = self._statistics_count(x, group)
        if t is not None:
            return self._training_step(x[0], t, count, group)
        self.reset_window()
        y, step_mean, step_var = normalise_per_step(
            x, tab_coefficients(self.eps), self.weight, self.bias, self.time_weight, group=group, count=count
        )
        mean, var = window_statistics(step_mean, step_var)
        window_counts = count * torch.arange(1, self.num_steps + 1, dtype=var.dtype, device=var.device)
        update_running(self.running_mean, mean, self.momentum)
        update_running(self.running_var, unbiased(var, window_counts.unsqueeze(1)), self.momentum)
        self.num_batches_tracked.add_(1)
        return y

    def _training_step(self, x_t: torch.Tensor, t: int, count, group) -> torch.Tensor:
        """One step of a sequence in training: update the window sums, normalise with them.

        ``count`` values per channel in this step (over all processes of ``group``, when not None).
        """
        name = type(self).__name__
        if t == 0:
            self._window = None
        expected = 0 if self._window is None else self._window["next_step"]
        if t != expected:
            raise ValueError(
                f"{name}: in training, one-step calls must come in order t=0, 1, ..., {self.num_steps - 1} "
                f"(the window 0..t needs every earlier step); expected t={expected}, got t={t}. "
                "t=0 starts a new sequence; or pass the whole sequence [T, B, C, H, W]"
            )
        if self._window is not None and x_t.shape != self._window["shape"]:
            raise ValueError(
                f"{name}: step t={t} has shape {tuple(x_t.shape)} but the earlier steps of this sequence had "
                f"shape {tuple(self._window['shape'])}"
            )
        step_var, step_mean, _ = batch_var_mean(x_t, (0, 2, 3), group, count)
        if t == 0:
            window = {"shift": step_mean.detach(), "sum_deviation": 0.0, "sum_second": 0.0, "shape": x_t.shape}
        else:
            window = self._window
        deviation = step_mean - window["shift"]
        window["sum_deviation"] = window["sum_deviation"] + deviation
        window["sum_second"] = window["sum_second"] + step_var + deviation.square()
        window["next_step"] = t + 1
        mean_deviation = window["sum_deviation"] / (t + 1)
        mean = window["shift"] + mean_deviation
        var = (window["sum_second"] / (t + 1) - mean_deviation.square()).clamp_min(0.0)
        self._window = window if t < self.num_steps - 1 else None

        p2 = self.time_weight[t].square()
        scale = p2 * self.weight[t] * torch.rsqrt(var + self.eps)
        view = (1, self.num_features, 1, 1)
        y = (x_t - mean.view(view)) * scale.view(view) + (p2 * self.bias[t]).view(view)
        update_running(self.running_mean[t], mean, self.momentum)
        update_running(self.running_var[t], unbiased(var, count * (t + 1)), self.momentum)
        if t == self.num_steps - 1:
            self.num_batches_tracked.add_(1)
        return y


SPEC = register(
    NormSpec(
        "tab",
        "TAB: step t normalised with statistics of steps 0..t, per-step affine, scale p_t^2",
        lambda num_features, num_steps, **neuron: TemporalAccumulatedBatchNorm2d(num_features, num_steps),
        spiking_only=True,
        statistics={
            "training": "batch, over the window of steps 0..t and (B, H, W)",
            "evaluation": "running window averages of step t: per-step affine",
            "inference": "a per-step affine after the convolution",
        },
    )
)
