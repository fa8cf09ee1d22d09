"""tdBN: threshold-dependent batch normalisation (Zheng et al., AAAI 2021).

tdBN is BatchNorm over the whole spike sequence, rescaled to the firing threshold::

    x_hat = (x - mu) / sqrt(var + eps)
    y     = weight * (alpha * V_th * x_hat) + bias         (weight 1, bias 0 at init)

* ``mu, var``: per-channel mean and biased variance over (T, B, H, W): one set of statistics
  shared by all steps, exactly those of BatchNorm on the time-merged batch ``[T*B, C, H, W]``.
* ``alpha * V_th``: the normalised pre-activation gets standard deviation ``alpha * V_th``
  instead of 1, so its spread is measured in units of the threshold the next neuron fires at:
  with ``alpha = 1`` about a sixth of the inputs lie beyond ``V_th`` at any step, and neither
  too few spikes (vanishing signal) nor too many (saturation) reach the next layer.
* ``alpha = 1 / sqrt(2)`` in a residual block. The block adds two branches, each normalised by
  its own tdBN, before the neuron. Two roughly independent branches of variance
  ``(alpha V_th)^2`` sum to variance ``2 alpha^2 V_th^2``; ``alpha = 1/sqrt(2)`` brings the
  sum back to ``V_th^2``, the same pre-activation scale as a plain layer with ``alpha = 1``.
  Use ``alpha=1`` everywhere else.
* Training: batch statistics of the whole sequence; running statistics with PyTorch's rule
  (biased variance in the forward pass, unbiased in ``running_var``, ``running = (1 -
  momentum) * running + momentum * batch``).
* Evaluation: the running statistics: a per-channel affine map, shared by all steps, that folds
  into the preceding convolution (:meth:`ThresholdDependentBatchNorm2d.as_batchnorm2d` gives
  the equivalent ``BatchNorm2d`` for :func:`~snn_norm_lite.norms.fold_batchnorm_into_conv`).

Not causal in training: every step is normalised with statistics of all T steps, so training
needs the whole sequence ``[T, B, C, H, W]``.

Here ``alpha * V_th`` multiplies the normalised value and ``weight`` starts at 1, as in the
paper's equation; SpikingJelly instead starts ``weight`` at ``alpha * V_th``. Both compute the
same function at initialisation, but weight decay sees different numbers: here it penalises
the effective scale divided by ``alpha * V_th``, so it acts ``(alpha * V_th)^-2`` times as
strongly on that scale as in SpikingJelly's form (the same when ``alpha * V_th = 1``).

Paper: H. Zheng, Y. Wu, L. Deng, Y. Hu and G. Li, "Going deeper with directly-trained larger
spiking neural networks", AAAI 2021.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import NormSpec, register
from ..checks import check_positive_number
from ..sequences import merge_time, split_time
from .batchnorm import SequenceBatchNorm2d
from ..precision import full_precision_forward


class ThresholdDependentBatchNorm2d(SequenceBatchNorm2d):
    """BatchNorm over (T, B, H, W) scaled to ``alpha * V_th``, then a learnable affine (tdBN).

    ``y = weight * alpha * v_th * (x - mu) / sqrt(var + eps) + bias`` on a sequence
    ``[T, B, C, H, W]`` (see the module docstring for the statistics and for ``alpha``).

    Args:
        num_features: number of channels C.
        alpha: 1 for a plain layer, ``1/sqrt(2)`` for each of two branches summed in a residual block.
        v_th: firing threshold of the neurons this layer feeds.
        eps: added to the variance before the square root.
        momentum: weight of the newest batch in the running statistics, in (0, 1].

    >>> _ = torch.manual_seed(0)
    >>> norm = ThresholdDependentBatchNorm2d(3, v_th=2.0)
    >>> norm
    ThresholdDependentBatchNorm2d(3, alpha=1, v_th=2, eps=1e-05, momentum=0.1)
    >>> y = norm(torch.randn(4, 8, 3, 5, 5) * 10).detach()     # [T, B, C, H, W]
    >>> round(y.std().item(), 2)                                # standard deviation alpha * V_th
    2.0
    """

    def __init__(
        self, num_features: int, alpha: float = 1.0, v_th: float = 1.0, eps: float = 1e-5, momentum: float = 0.1
    ):
        name = type(self).__name__
        super().__init__(num_features, eps=eps, momentum=momentum)  # checks num_features, eps and momentum
        self.alpha = check_positive_number(alpha, "alpha", name)
        self.v_th = check_positive_number(v_th, "v_th", name)

    def extra_repr(self) -> str:
        return f"{self.num_features}, alpha={self.alpha:.4g}, v_th={self.v_th:.4g}, eps={self.eps}, momentum={self.momentum}"

    @full_precision_forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_sequence(x)  # shapes, dtype, T >= 1, and more than one value per channel in training
        merged, steps_and_batch = merge_time(x)
        # weight * alpha * V_th * x_hat + bias, in one kernel; a NaN/Inf batch leaves the running statistics as they were
        y = self._batch_norm(merged, self.weight * (self.alpha * self.v_th), self.bias)
        return split_time(y, steps_and_batch)

    @torch.no_grad()
    def as_batchnorm2d(self) -> nn.BatchNorm2d:
        """An ``nn.BatchNorm2d`` computing this layer on the time-merged batch ``[T*B, C, H, W]``.

        Its weight is ``weight * alpha * v_th``; bias and running statistics are copied. In
        evaluation mode it is the per-channel affine map that
        :func:`~snn_norm_lite.norms.fold_batchnorm_into_conv` folds into a convolution.

        >>> _ = torch.manual_seed(0)
        >>> norm = ThresholdDependentBatchNorm2d(3, alpha=0.5, v_th=2.0).eval()
        >>> x = torch.randn(4, 2, 3, 5, 5)
        >>> torch.allclose(norm.as_batchnorm2d()(x.flatten(0, 1)).unflatten(0, (4, 2)), norm(x))
        True
        """
        bn = nn.BatchNorm2d(self.num_features, eps=self.eps, momentum=self.momentum)
        bn = bn.to(device=self.weight.device, dtype=self.weight.dtype)
        bn.weight.copy_(self.weight * (self.alpha * self.v_th))
        bn.bias.copy_(self.bias)
        bn.running_mean.copy_(self.running_mean)
        bn.running_var.copy_(self.running_var)
        bn.num_batches_tracked.copy_(self.num_batches_tracked)
        return bn.train(self.training)


def _build(num_features, num_steps, *, threshold, alpha=1.0, **neuron):
    return ThresholdDependentBatchNorm2d(num_features, alpha=alpha, v_th=threshold)


SPEC = register(
    NormSpec(
        "tdbn",
        "tdBN: BatchNorm over (T, B, H, W) scaled to alpha * V_th (alpha 1, V_th the neurons' threshold), then an affine",
        _build,
        spiking_only=True,
        options=("alpha",),
        statistics={
            "training": "batch, over (T, B, H, W), scaled to alpha_td * V_th",
            "evaluation": "running averages: one per-channel affine for all steps",
            "inference": "folds into the convolution",
        },
    )
)
