"""Every normalisation layer of the book, one method per module, and the registry of names.

Each module below defines one method's layers and helpers and registers it (``NormSpec``); the
import order is the registry's order (and the order of the comparison's rows). Adding a method
means one new module and one name in this list.
"""

from . import identity, batchnorm, homeostatic, tdbn, bntt, tebn, mpbn, tab  # noqa: F401  (the methods)
from .batchnorm import BatchNorm2d, SequenceBatchNorm2d, fold_batchnorm_into_conv, fold_batchnorms
from .bntt import BatchNormThroughTime2d
from .identity import SequenceIdentity
from .homeostatic import HomeostaticNorm, TemporalHomeostaticNorm2d, set_batch_free
from .mpbn import FoldedMPBNLeaky, MPBNLeaky, fold_mpbn
from .registry import NormSpec, available_norms, build_norm, get_spec, register, unregister
from .tab import TemporalAccumulatedBatchNorm2d, tab_window_statistics, tab_window_statistics_naive
from .tdbn import ThresholdDependentBatchNorm2d
from .tebn import TemporalEffectiveBatchNorm2d

__all__ = [
    "BatchNorm2d",
    "BatchNormThroughTime2d",
    "FoldedMPBNLeaky",
    "HomeostaticNorm",
    "MPBNLeaky",
    "NormSpec",
    "SequenceBatchNorm2d",
    "SequenceIdentity",
    "TemporalAccumulatedBatchNorm2d",
    "TemporalEffectiveBatchNorm2d",
    "TemporalHomeostaticNorm2d",
    "ThresholdDependentBatchNorm2d",
    "available_norms",
    "build_norm",
    "fold_batchnorm_into_conv",
    "fold_batchnorms",
    "fold_mpbn",
    "get_spec",
    "register",
    "set_batch_free",
    "tab_window_statistics",
    "tab_window_statistics_naive",
    "unregister",
]
