"""How far a homeostatic state trails the set point of the batches it sees, and what it costs.

A homeostatic layer (:mod:`snn_norm_lite.norms.homeostatic`) moves its gain ``g`` towards the
set point of every training batch, ``g* = 1 / sqrt(var_B + eps)``, by an EMA with rate
``eta``. On a stationary input the state settles within the batch-to-batch noise of ``g*``.
During training the weights in front of the layer change, ``g*`` moves, and the state trails
it. The *lag* of a layer on one batch is::

    lag = mean over channels (and time steps) of |g / g* - 1|

with ``g`` the state *before* this batch's update. It is the quantity that matters in the
batch-free mode: the training forward pass then scales channel c by ``g`` instead of ``g*``,
so the output's standard deviation is ``g / g*`` times what BatchNorm would give (times
``sqrt(var_B / (var_B + eps))``, 1 up to eps), and a lag of 0.3 means a channel 30 % too
loud or too quiet. In the default mode the forward pass uses ``g*`` itself, and the same lag
is the error the state would make if it were used, as it is in evaluation.

:func:`noise_floor` gives the lag that remains with the weights held fixed: the state at the
average set point of a pass over the training data, measured against each batch's own set
point. Only batch-to-batch sampling noise is left in it.

:func:`warm_up_state` moves the states to the set point of the initial weights before training
(forward passes without an optimiser step), so that what remains is the lag behind the weights
and not the start from ``g = 1``.

:func:`batch_free_cost` trains the reference networks with BatchNorm and with the homeostatic
layer in its default and its batch-free mode (each with and without a warm start), over seeds,
and records the test accuracy, the lag of every training step, the noise floor after training
and how far the convolution weights' scale drifted (:func:`weight_growth`). The drift is what
Ioffe and Szegedy (2015, section 2) predict for a normaliser whose statistics are constants of
the backward pass: the gradient does not see that the normalisation undoes a rescaling.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Sequence

import torch

from .checks import check_step_index
from .data import load_dataset
from .norms import HomeostaticNorm, TemporalHomeostaticNorm2d
from .stats import Summary
from .training import History, fit, seed_everything

HOMEOSTATIC_LAYERS = (HomeostaticNorm, TemporalHomeostaticNorm2d)
WARM_UP_SEED_OFFSET = 10_000  # the warm-up loader of seed s shuffles with seed s + this

# label -> (registry name, batch_free, warm-up passes before training); batch_free None leaves
# the layer as built (BatchNorm has no mode).
VARIANTS = {
    "BatchNorm": ("bn", None, 0),
    "homeostatic": ("homeostatic", False, 0),
    "homeostatic, warm start": ("homeostatic", False, 2),
    "homeostatic, batch-free": ("homeostatic", True, 0),
    "homeostatic, batch-free, warm start": ("homeostatic", True, 2),
}


def batch_set_point(layer, x: torch.Tensor, t: int | None = None) -> torch.Tensor:
    """The set point ``g* = 1/sqrt(var_B + eps)`` of the batch ``x`` for a homeostatic layer.

    Shape ``[C]`` for :class:`HomeostaticNorm`, ``[T, C]`` for a sequence ``[T, B, C, H, W]``
    given to :class:`TemporalHomeostaticNorm2d`, ``[1, C]`` for one step ``x_t`` with ``t``.

    >>> from snn_norm_lite.norms import HomeostaticNorm
    >>> x = torch.randn(256, 2, 4, 4, generator=torch.Generator().manual_seed(0)) * 4
    >>> batch_set_point(HomeostaticNorm(2), x).round(decimals=2)      # about 1 / 4
    tensor([0.2500, 0.2500])
    """
    if isinstance(layer, HomeostaticNorm):
        layer._check_input_dim(x)
        dims = [d for d in range(x.dim()) if d != 1]
    elif isinstance(layer, TemporalHomeostaticNorm2d):
        if t is None:
            if x.dim() != 5:
                raise ValueError(f"batch_set_point: expected a sequence [T, B, C, H, W], got shape {tuple(x.shape)}")
            dims = (1, 3, 4)
        else:
            check_step_index(t, layer.num_steps, "batch_set_point")
            if x.dim() != 4:
                raise ValueError(f"batch_set_point: expected one step [B, C, H, W] with t, got shape {tuple(x.shape)}")
            dims = (0, 2, 3)
    else:
        raise TypeError(f"batch_set_point: expected a homeostatic layer, got {type(layer).__name__}")
    var = torch.var(x.detach(), dim=dims, correction=0)
    target = torch.rsqrt(var + layer.eps)
    return target if isinstance(layer, HomeostaticNorm) else target.reshape(-1, layer.num_features)


def set_point_lag(layer, x: torch.Tensor, t: int | None = None) -> torch.Tensor:
    """``|g / g* - 1|`` per channel (and step): the layer's current gain against batch ``x``'s set point.

    Reads the state and changes nothing; call it before the layer's forward pass to get the
    lag of the state that pass starts from.

    >>> from snn_norm_lite.norms import HomeostaticNorm
    >>> x = torch.randn(256, 2, 4, 4, generator=torch.Generator().manual_seed(0)) * 4
    >>> set_point_lag(HomeostaticNorm(2), x).round(decimals=1)         # fresh state g = 1 against g* = 1/4
    tensor([3., 3.])
    """
    target = batch_set_point(layer, x, t)
    gain, _ = layer.gain_and_bias()
    if isinstance(layer, TemporalHomeostaticNorm2d) and t is not None:
        t = int(t)
        gain = gain[t : t + 1]
    return (gain.detach() / target - 1.0).abs()


class LagRecorder:
    """Records the mean set-point lag of every homeostatic layer at each training forward pass.

    Use as a context manager around training; forward passes in evaluation mode are not
    recorded. ``per_pass`` is the lag averaged over layers, one value per forward pass.

    >>> from snn_norm_lite.models import build_ann
    >>> _ = torch.manual_seed(0)
    >>> model = build_ann("homeostatic", depth=2, width=4)
    >>> with LagRecorder(model) as recorder:
    ...     for _ in range(3):
    ...         _ = model(torch.rand(16, 1, 8, 8))
    >>> len(recorder.per_pass), recorder.per_pass[0] > recorder.per_pass[-1]   # the state catches up
    (3, True)
    """

    def __init__(self, model: torch.nn.Module):
        self.layers = [m for m in model.modules() if isinstance(m, HOMEOSTATIC_LAYERS)]
        if not self.layers:
            raise ValueError("LagRecorder: the model has no homeostatic normalisation layer")
        self.per_layer: list[list[float]] = [[] for _ in self.layers]
        self._handles = []

    def _hook(self, index):
        def hook(module, args):
            if module.training:
                x = args[0]
                t = args[1] if len(args) > 1 else None
                self.per_layer[index].append(float(set_point_lag(module, x, t).mean()))

        return hook

    def __enter__(self):
        self._handles = [layer.register_forward_pre_hook(self._hook(i)) for i, layer in enumerate(self.layers)]
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles = []
        return False

    @property
    def per_pass(self) -> list[float]:
        counts = {len(values) for values in self.per_layer}
        if len(counts) != 1:
            raise ValueError(f"LagRecorder: the layers recorded different numbers of passes: {sorted(counts)}")
        return [sum(values) / len(values) for values in zip(*self.per_layer)]


@torch.no_grad()
def set_point_variances(model: torch.nn.Module, x: torch.Tensor) -> list[float]:
    """The batch variance ``1/g*^2 - eps`` each homeostatic layer sees on ``x``, mean over channels (and steps).

    One forward pass in training mode on a copy of ``model`` (nothing of ``model`` changes):
    how large the inputs of the normalisation layers are, e.g. at initialisation.

    >>> from snn_norm_lite.models import build_ann
    >>> _ = torch.manual_seed(0)
    >>> variances = set_point_variances(build_ann("homeostatic", depth=3, width=4), torch.rand(16, 1, 8, 8))
    >>> len(variances), all(v > 0 for v in variances)
    (3, True)
    """
    probe = copy.deepcopy(model).train()
    layers = [m for m in probe.modules() if isinstance(m, HOMEOSTATIC_LAYERS)]
    if not layers:
        raise ValueError("set_point_variances: the model has no homeostatic normalisation layer")
    variances = []

    def hook(module, args):
        target = batch_set_point(module, args[0], args[1] if len(args) > 1 else None)
        variances.append(float((target.pow(-2) - module.eps).mean()))

    handles = [layer.register_forward_pre_hook(hook) for layer in layers]
    try:
        probe(x)
    finally:
        for handle in handles:
            handle.remove()
    return variances


@torch.no_grad()
def warm_up_state(model: torch.nn.Module, loader, passes: int = 1) -> int:
    """Move every homeostatic state to the set point of the current weights; return the batches run.

    Forward passes in training mode without gradients: the states follow the EMA while the
    weights stay as they are (no optimiser step). In the default mode this changes nothing that
    training reads, only the state evaluation will use; in the batch-free mode it is the
    network's starting point. The model is left in training mode.

    >>> from snn_norm_lite.data import load_digits
    >>> from snn_norm_lite.models import build_ann
    >>> _ = torch.manual_seed(0)
    >>> train, _, _ = load_digits().subset(64, 32, 32).loaders(batch_size=16)
    >>> warm_up_state(build_ann("homeostatic", depth=2, width=4), train, passes=2)
    8
    """
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 0:
        raise ValueError(f"warm_up_state: passes must be a non-negative int, got {passes!r}")
    model.train()
    batches = 0
    for _ in range(passes):
        for x, _ in loader:
            model(x)
            batches += 1
    return batches


@torch.no_grad()
def noise_floor(model: torch.nn.Module, loader) -> float:
    """The lag left with the weights fixed: batch-to-batch noise of the set point alone.

    Runs one pass over ``loader`` (on a copy of ``model``, in training mode, so that every
    layer sees batch statistics; nothing of ``model`` changes), collects each homeostatic
    layer's set point ``g*_k`` on every batch k, and returns the mean over layers, channels
    and batches of ``|mean_k(g*_k) / g*_k - 1|``: the lag of a state that sits exactly at the
    average set point.

    >>> from snn_norm_lite.data import load_digits
    >>> from snn_norm_lite.models import build_ann
    >>> _ = torch.manual_seed(0)
    >>> train, _, _ = load_digits().subset(64, 32, 32).loaders(batch_size=16)
    >>> 0.0 < noise_floor(build_ann("homeostatic", depth=2, width=4), train) < 1.0
    True
    """
    probe = copy.deepcopy(model).train()
    layers = [m for m in probe.modules() if isinstance(m, HOMEOSTATIC_LAYERS)]
    if not layers:
        raise ValueError("noise_floor: the model has no homeostatic normalisation layer")
    targets: list[list[torch.Tensor]] = [[] for _ in layers]

    def recorder(index):
        def hook(module, args):
            targets[index].append(batch_set_point(module, args[0], args[1] if len(args) > 1 else None))

        return hook

    handles = [layer.register_forward_pre_hook(recorder(i)) for i, layer in enumerate(layers)]
    try:
        batches = 0
        for x, _ in loader:
            probe(x)
            batches += 1
    finally:
        for handle in handles:
            handle.remove()
    if batches < 2:
        raise ValueError(f"noise_floor: needs at least 2 batches to measure batch-to-batch noise, got {batches}")
    lags = []
    for per_batch in targets:
        stacked = torch.stack(per_batch)  # [K, C] or [K, T, C]
        lags.append(float((stacked.mean(dim=0, keepdim=True) / stacked - 1.0).abs().mean()))
    return sum(lags) / len(lags)


def convolution_weights(model: torch.nn.Module) -> list[torch.Tensor]:
    """The weight tensor of every convolution of ``model``, in order.

    >>> from snn_norm_lite.models import build_ann
    >>> [tuple(w.shape) for w in convolution_weights(build_ann("bn", depth=2, width=4))]
    [(4, 1, 3, 3), (4, 4, 3, 3)]
    """
    return [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]


def weight_growth(before: Sequence[torch.Tensor], after: Sequence[torch.Tensor]) -> float:
    """Mean over layers of ``||W_after|| / ||W_before||``: how much the weights' scale drifted.

    >>> weight_growth([torch.ones(3), torch.ones(2)], [2 * torch.ones(3), torch.ones(2)])   # (2 + 1) / 2
    1.5
    """
    if len(before) != len(after) or not before:
        raise ValueError(f"weight_growth: needs the same non-zero number of tensors, got {len(before)} and {len(after)}")
    ratios = [float(b.norm() / a.norm()) for a, b in zip(before, after)]
    return sum(ratios) / len(ratios)


@dataclass
class BatchFreeCost:
    """Accuracy, set-point lag and weight drift of BatchNorm and the homeostatic variants, over seeds.

    For each kind (``"ann"``, ``"snn"``) and variant label of :data:`VARIANTS`:

    * ``accuracy`` and ``val_accuracy``: Summaries over seeds of the test accuracy (measured
      once, after training) and of the last epoch's validation accuracy (percent);
    * ``histories``: one :class:`~snn_norm_lite.training.History` per seed;
    * ``growth``: Summary of :func:`weight_growth` of the convolutions over training;
    * ``lag`` (homeostatic variants only): per seed, the lag of every training step;
    * ``floor`` (homeostatic variants only): Summary of the noise floor after training;
    * ``models``: the first seed's trained model.

    >>> from snn_norm_lite.experiments import TrainConfig
    >>> config = TrainConfig(depth=2, width=4, num_steps=2, epochs=2, batch_size=512)
    >>> cost = batch_free_cost(config, seeds=(0,), kinds=("ann",), variants=("homeostatic, batch-free",))
    >>> len(cost.lag_per_epoch("ann", "homeostatic, batch-free")), cost.val_accuracy_at("ann", "homeostatic, batch-free", 2).n
    (2, 1)
    """

    seeds: list[int]
    steps_per_epoch: int
    accuracy: dict[str, dict[str, Summary]]
    val_accuracy: dict[str, dict[str, Summary]]
    histories: dict[str, dict[str, list[History]]]
    growth: dict[str, dict[str, Summary]]
    lag: dict[str, dict[str, list[list[float]]]]
    floor: dict[str, dict[str, Summary]]
    models: dict[str, dict[str, torch.nn.Module]]
    config: dict
    num_test: int

    def lag_per_epoch(self, kind: str, label: str) -> list[Summary]:
        """Mean lag of each epoch's training steps, one Summary over seeds per epoch."""
        per_seed = self.lag[kind][label]
        epochs = len(per_seed[0]) // self.steps_per_epoch
        summaries = []
        for epoch in range(epochs):
            window = slice(epoch * self.steps_per_epoch, (epoch + 1) * self.steps_per_epoch)
            summaries.append(Summary.of([sum(steps[window]) / self.steps_per_epoch for steps in per_seed]))
        return summaries

    def val_accuracy_at(self, kind: str, label: str, epoch: int) -> Summary:
        """Validation accuracy after ``epoch`` (1-based) over seeds."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not 1 <= epoch <= self.config["epochs"]:
            raise ValueError(f"BatchFreeCost.val_accuracy_at: epoch must be in 1..{self.config['epochs']}, got {epoch!r}")
        return Summary.of([history.val_accuracy[epoch - 1] for history in self.histories[kind][label]])


def batch_free_cost(
    config=None,
    seeds: Sequence[int] = (0, 1, 2),
    kinds: Sequence[str] = ("ann", "snn"),
    variants: Sequence[str] = tuple(VARIANTS),
    split=None,
) -> BatchFreeCost:
    """Train each kind with each variant of :data:`VARIANTS` and each seed; record accuracy and lag.

    Every run of one seed starts from the same initial weights and sees the same training
    batches in the same order. The homeostatic runs record the lag of every training step
    (:class:`LagRecorder`) and, after training, the noise floor on the training data
    (:func:`noise_floor`); a warm start runs :func:`warm_up_state` on its own loader first.
    Nothing reads the test set before the last epoch: ``fit`` measures it once, at the end.

    >>> from snn_norm_lite.data import load_digits
    >>> from snn_norm_lite.experiments import TrainConfig
    >>> config = TrainConfig(depth=2, width=4, num_steps=2, epochs=1, batch_size=32)
    >>> cost = batch_free_cost(config, seeds=(0,), kinds=("ann",), variants=("BatchNorm", "homeostatic"),
    ...                        split=load_digits().subset(64, 32, 32))
    >>> sorted(cost.accuracy["ann"]), cost.steps_per_epoch, list(cost.lag["ann"])
    (['BatchNorm', 'homeostatic'], 2, ['homeostatic'])
    """
    from .experiments import TrainConfig, build_model
    from .norms import set_batch_free

    config = TrainConfig() if config is None else config
    seeds = list(seeds)
    if not seeds:
        raise ValueError("batch_free_cost: give at least one seed")
    unknown = [label for label in variants if label not in VARIANTS]
    if unknown:
        raise ValueError(f"batch_free_cost: unknown variants {unknown}; choose from {list(VARIANTS)}")
    split = load_dataset(config.dataset) if split is None else split
    channels, size = split.image_shape[0], split.image_shape[1]
    tables = {name: {kind: {} for kind in kinds} for name in ("accuracy", "val", "histories", "growth", "lag", "floor", "models")}
    steps_per_epoch = None
    for kind in kinds:
        for label in variants:
            norm, batch_free, warm_passes = VARIANTS[label]
            tests, vals, histories, growths, lags, floors = [], [], [], [], [], []
            for seed in seeds:
                seed_everything(seed)
                model = build_model(kind, norm, config, in_channels=channels, image_size=size)
                initial = [w.detach().clone() for w in convolution_weights(model)]
                train_loader, val_loader, test_loader = split.loaders(config.batch_size, seed=seed)
                steps_per_epoch = len(train_loader)
                run = dict(epochs=config.epochs, lr=config.lr, device=config.device, progress=False)
                if batch_free is None:
                    history = fit(model, train_loader, val_loader, test_loader=test_loader, **run)
                else:
                    set_batch_free(model, batch_free)
                    # Its own loader, so that the training batches come in the same order as without it.
                    warm_loader = split.loaders(config.batch_size, seed=seed + WARM_UP_SEED_OFFSET)[0]
                    warm_up_state(model, warm_loader, warm_passes)
                    with LagRecorder(model) as recorder:
                        history = fit(model, train_loader, val_loader, test_loader=test_loader, **run)
                    lags.append(recorder.per_pass)
                    floors.append(noise_floor(model, train_loader))
                tests.append(history.final_test_accuracy)
                vals.append(history.final_val_accuracy)
                histories.append(history)
                growths.append(weight_growth(initial, [w.detach() for w in convolution_weights(model)]))
                if seed == seeds[0]:
                    tables["models"][kind][label] = model
            tables["accuracy"][kind][label] = Summary.of(tests)
            tables["val"][kind][label] = Summary.of(vals)
            tables["histories"][kind][label] = histories
            tables["growth"][kind][label] = Summary.of(growths)
            if lags:
                tables["lag"][kind][label] = lags
                tables["floor"][kind][label] = Summary.of(floors)
    return BatchFreeCost(
        seeds=seeds,
        steps_per_epoch=steps_per_epoch,
        accuracy=tables["accuracy"],
        val_accuracy=tables["val"],
        histories=tables["histories"],
        growth=tables["growth"],
        lag=tables["lag"],
        floor=tables["floor"],
        models=tables["models"],
        config=asdict(config),
        num_test=len(split.y_test),
    )


@dataclass
class WarmupAgreement:
    """How closely a normaliser matches BatchNorm after a number of warm-up batches.

    >>> agreement = homeostatic_warmup(checkpoints=(0, 20), channels=4, batch=64, fresh_batches=2)
    >>> agreement.warmup, len(agreement.max_channel_mean)
    ([0, 20], 2)
    """

    warmup: list[int]
    mean_abs_difference: list[float]  # mean |y - y_BN| on fresh batches (y: the state; y_BN: batch statistics)
    max_channel_mean: list[float]  # max over channels of |mean of y|
    max_channel_std_error: list[float]  # max over channels of |std of y - 1|


def homeostatic_warmup(
    checkpoints: Sequence[int] = (0, 5, 10, 20, 50, 100, 200),
    momentum: float = 0.1,
    channels: int = 16,
    batch: int = 256,
    size: int = 8,
    fresh_batches: int = 5,
    seed: int = 0,
) -> WarmupAgreement:
    """Warm up a HomeostaticNorm and a BatchNorm2d on the same stationary synthetic batches and
    measure, at each checkpoint, how the homeostatic state compares with BatchNorm on fresh batches.

    ``y`` is the homeostatic layer's output from its state (evaluation mode: what inference uses,
    and what batch-free training uses; the state is the same in both modes), ``y_BN`` BatchNorm's
    training-mode output, normalised with each fresh batch's own statistics.

    >>> agreement = homeostatic_warmup(checkpoints=(0, 50), momentum=0.1, channels=4, batch=64, fresh_batches=2)
    >>> agreement.mean_abs_difference[1] < agreement.mean_abs_difference[0]   # the state approaches BatchNorm
    True
    """
    from .data import synthetic_channel_batch

    if list(checkpoints) != sorted(checkpoints):
        raise ValueError("homeostatic_warmup: checkpoints must be increasing")
    generator = torch.Generator().manual_seed(seed)
    norm, reference = HomeostaticNorm(channels, momentum=momentum), torch.nn.BatchNorm2d(channels, momentum=momentum)
    result = WarmupAgreement(list(checkpoints), [], [], [])
    seen = 0
    with torch.no_grad():
        for checkpoint in checkpoints:
            while seen < checkpoint:
                x = synthetic_channel_batch(generator, batch, channels, size)
                norm(x)
                reference(x)
                seen += 1
            # Fresh batches are measured on copies, so the measurement does not warm anything up.
            probe, probe_reference = copy.deepcopy(norm).eval(), copy.deepcopy(reference)
            differences, means, stds = [], [], []
            for _ in range(fresh_batches):
                x = synthetic_channel_batch(generator, batch, channels, size)
                y = probe(x)
                differences.append((y - probe_reference(x)).abs().mean().item())
                means.append(y.mean(dim=(0, 2, 3)).abs().max().item())
                stds.append((y.std(dim=(0, 2, 3)) - 1).abs().max().item())
            result.mean_abs_difference.append(max(differences))
            result.max_channel_mean.append(max(means))
            result.max_channel_std_error.append(max(stds))
    return result
