"""Every normalisation layer of the book, one family per module, and the registry of names.

The registrations below are the single list of methods the models, widgets, CLI and the
comparison chapter can switch between.
"""

from torch import nn

from .batchnorm import SequenceBatchNorm2d, fold_batchnorm_into_conv, fold_batchnorms
from .bntt import BatchNormThroughTime2d
from .homeostatic import HomeostaticNorm, TemporalHomeostaticNorm2d
from .mpbn import FoldedMPBNLeaky, MPBNLeaky
from .registry import NormSpec, available_norms, build_norm, get_spec, register
from .tab import TemporalAccumulatedBatchNorm2d, tab_window_statistics, tab_window_statistics_naive
from .tdbn import ThresholdDependentBatchNorm2d
from .tebn import TemporalEffectiveBatchNorm2d


def _none(num_features, num_steps):
    return nn.Identity()


def _bn(num_features, num_steps):
    return nn.BatchNorm2d(num_features) if num_steps is None else SequenceBatchNorm2d(num_features)


def _homeostatic(num_features, num_steps):
    if num_steps is None:
        return HomeostaticNorm(num_features)
    return TemporalHomeostaticNorm2d(num_features, num_steps)


register(NormSpec("none", "no normalisation", _none))
register(NormSpec("bn", "BatchNorm; in an SNN over (T, B, H, W), time merged into the batch", _bn))
register(
    NormSpec(
        "homeostatic",
        "homeostatic gain and bias: batch statistics in training, an EMA state (batch-free) at inference; per step in an SNN",
        _homeostatic,
    )
)
# -- temporal batch-normalisation methods (tdbn, bntt, tebn, mpbn, tab) register below --
register(
    NormSpec(
        "tdbn",
        "tdBN: BatchNorm over (T, B, H, W) scaled to alpha * V_th (alpha 1, V_th 1), then an affine",
        lambda num_features, num_steps: ThresholdDependentBatchNorm2d(num_features),
        spiking_only=True,
    )
)
register(
    NormSpec(
        "bntt",
        "BNTT: one BatchNorm per time step, statistics of that step, per-step gain, no bias",
        lambda num_features, num_steps: BatchNormThroughTime2d(num_features, num_steps),
        spiking_only=True,
    )
)
register(
    NormSpec(
        "tebn",
        "TEBN: BatchNorm over (T, B, H, W) with a shared affine, then a learnable scale p_t per step",
        lambda num_features, num_steps: TemporalEffectiveBatchNorm2d(num_features, num_steps),
        spiking_only=True,
    )
)
register(
    NormSpec(
        "mpbn",
        "MPBN: BatchNorm after the convolution plus a BatchNorm on the membrane potential before firing",
        lambda num_features, num_steps: SequenceBatchNorm2d(num_features),
        spiking_only=True,
        neuron=lambda num_features, beta, threshold: MPBNLeaky(num_features, beta=beta, threshold=threshold),
    )
)
register(
    NormSpec(
        "tab",
        "TAB: step t normalised with statistics of steps 0..t, per-step affine, scale p_t^2",
        lambda num_features, num_steps: TemporalAccumulatedBatchNorm2d(num_features, num_steps),
        spiking_only=True,
    )
)

# -- the E-I circuit registers below --


def _ei_network(depth, width, num_steps, **kwargs):
    """The whole E-I spiking network (the circuit replaces convolution and normaliser)."""
    from ..models import EISpikingConvNet  # imported here: models imports this package

    return EISpikingConvNet(depth=depth, width=width, num_steps=num_steps, **kwargs)


register(
    NormSpec(
        "ei",
        "E-I circuits with lateral inhibition instead of a normaliser (DeepEISNN); whole network",
        _ei_network,
        spiking_only=True,
        circuit=True,
    )
)

__all__ = [
    "BatchNormThroughTime2d",
    "FoldedMPBNLeaky",
    "HomeostaticNorm",
    "MPBNLeaky",
    "NormSpec",
    "SequenceBatchNorm2d",
    "TemporalAccumulatedBatchNorm2d",
    "TemporalEffectiveBatchNorm2d",
    "TemporalHomeostaticNorm2d",
    "ThresholdDependentBatchNorm2d",
    "available_norms",
    "fold_batchnorm_into_conv",
    "fold_batchnorms",
    "build_norm",
    "get_spec",
    "register",
    "tab_window_statistics",
    "tab_window_statistics_naive",
]
