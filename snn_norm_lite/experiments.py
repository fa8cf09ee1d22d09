"""The experiments the chapters and the command line run.

Each experiment is a plain function that trains the package's reference networks on a data
set and returns a small result object; nothing here plots. Every number a chapter shows as the
book's own comes from one of these functions, run in that chapter.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from typing import Sequence

import torch

from .data import load_dataset
from .models import build_ann, build_snn
from .norms import available_norms, get_spec
from .probes import firing_rates
from .stats import Summary, one_image
from .training import History, fit, seed_everything

KINDS = ("ann", "snn")


@dataclass
class TrainConfig:
    """Everything that defines one training run besides the normaliser and the seed."""

    depth: int = 6
    width: int = 32
    num_steps: int = 8
    epochs: int = 8
    lr: float = 1e-3
    batch_size: int = 64
    beta: float = 0.9
    threshold: float = 1.0
    dataset: str = "digits"
    device: str = "cpu"


def build_model(kind: str, norm: str, config: TrainConfig, in_channels: int = 1, image_size: int = 8):
    """The reference ANN or SNN for ``kind`` (``"ann"`` or ``"snn"``) and a registry name."""
    if kind == "ann":
        return build_ann(norm, config.depth, config.width, in_channels=in_channels, image_size=image_size)
    if kind == "snn":
        return build_snn(
            norm,
            config.depth,
            config.width,
            config.num_steps,
            beta=config.beta,
            threshold=config.threshold,
            in_channels=in_channels,
            image_size=image_size,
        )
    raise ValueError(f"kind must be 'ann' or 'snn', got {kind!r}")


def train_once(kind: str, norm: str, seed: int, config: TrainConfig, split=None, progress: bool = False):
    """Train one seeded reference network; return ``(model, history)``.

    The history holds the validation accuracy of every epoch and the test accuracy measured
    once, after the last epoch.
    """
    split = load_dataset(config.dataset) if split is None else split
    seed_everything(seed)
    channels, size = split.image_shape[0], split.image_shape[1]
    model = build_model(kind, norm, config, in_channels=channels, image_size=size)
    train_loader, val_loader, test_loader = split.loaders(config.batch_size, seed=seed)
    history = fit(
        model,
        train_loader,
        val_loader,
        test_loader=test_loader,
        epochs=config.epochs,
        lr=config.lr,
        device=config.device,
        progress=progress,
        description=f"{kind} {norm} seed {seed}",
    )
    return model, history


def paired_gap(with_norm: Summary, without: Summary) -> Summary:
    """Per-seed difference ``with_norm - without`` (runs paired by seed), summarised."""
    if with_norm.n != without.n:
        raise ValueError(f"paired_gap: needs the same seeds on both sides, got {with_norm.n} and {without.n} values")
    return Summary.of([a - b for a, b in zip(with_norm.values, without.values)])


@dataclass
class HeadlineResult:
    """Test accuracy (percent) of the ANN and SNN for each normaliser, over seeds.

    ``accuracy[kind][name]`` is a :class:`~snn_norm_lite.stats.Summary` of the per-seed test
    accuracies; ``ann`` and ``snn`` give their means.
    """

    accuracy: dict[str, dict[str, Summary]]
    config: dict
    seeds: list[int]
    num_test: int

    @property
    def ann(self) -> dict[str, float]:
        return {name: s.mean for name, s in self.accuracy["ann"].items()}

    @property
    def snn(self) -> dict[str, float]:
        return {name: s.mean for name, s in self.accuracy["snn"].items()}

    def gap(self, kind: str) -> dict[str, Summary]:
        """Dependency gap per normaliser: accuracy with it minus accuracy with none, paired by seed."""
        accuracy = self.accuracy[kind]
        if "none" not in accuracy:
            raise ValueError("the dependency gap needs 'none' among the normalisers")
        return {name: paired_gap(value, accuracy["none"]) for name, value in accuracy.items() if name != "none"}

    def gap_resolved(self, kind: str, name: str) -> bool:
        """True when the gap of ``name`` is larger than its spread over seeds and than one test image."""
        gap = self.gap(kind)[name]
        return abs(gap.mean) > gap.std and abs(gap.mean) > one_image(self.num_test)

    def gap_ratio(self) -> dict[str, float | None]:
        """Mean SNN gap over mean ANN gap per normaliser.

        None where the ANN gap is not resolved (not larger than its spread and one test image,
        or not positive): a ratio over a denominator indistinguishable from 0 means nothing.
        """
        ann, snn = self.gap("ann"), self.gap("snn")
        return {
            name: (snn[name].mean / ann[name].mean if self.gap_resolved("ann", name) and ann[name].mean > 0 else None)
            for name in ann
        }

    def to_dict(self) -> dict:
        out = {
            kind: {name: s.to_dict() for name, s in self.accuracy[kind].items()} for kind in KINDS
        }
        out.update(config=self.config, seeds=self.seeds, num_test=self.num_test)
        if "none" in self.accuracy["ann"]:
            out["gap"] = {kind: {name: g.to_dict() for name, g in self.gap(kind).items()} for kind in KINDS}
            out["gap_ratio"] = self.gap_ratio()
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def table(self) -> str:
        """Mean ± std of the test accuracy and of the dependency gaps, as fixed-width text."""
        lines = [
            f"test accuracy, mean ± std over {len(self.seeds)} seed(s); "
            f"one test image = {one_image(self.num_test):.2f} points",
            f"{'norm':<12}{'ANN %':>14}{'SNN %':>14}{'ANN gap':>14}{'SNN gap':>14}{'ratio':>8}",
        ]
        has_gap = "none" in self.accuracy["ann"]
        gaps = (self.gap("ann"), self.gap("snn"), self.gap_ratio()) if has_gap else None
        pm = lambda s, sign="": f"{s.mean:{sign}.1f} ± {s.std:.1f}"  # noqa: E731
        for name, ann in self.accuracy["ann"].items():
            row = f"{name:<12}{pm(ann):>14}{pm(self.accuracy['snn'][name]):>14}"
            if has_gap and name != "none":
                ratio = gaps[2][name]
                ratio_text = f"{ratio:>7.1f}x" if ratio is not None else f"{'n/a':>8}"
                row += f"{pm(gaps[0][name], '+'):>14}{pm(gaps[1][name], '+'):>14}{ratio_text}"
            lines.append(row)
        if has_gap and None in gaps[2].values():
            lines.append("n/a: the ANN gap is not resolved (not above its spread and one test image), so no ratio")
        return "\n".join(lines)


def headline(
    norms: Sequence[str] = ("none", "bn", "homeostatic"),
    seeds: Sequence[int] = (0, 1, 2),
    config: TrainConfig | None = None,
    progress: bool = False,
) -> HeadlineResult:
    """Train the ANN and the SNN of one architecture with each normaliser; return test accuracies.

    This is the book's opening experiment: the dependency gap (accuracy with a normaliser minus
    accuracy without) of the spiking network against that of the conventional one.
    """
    config = TrainConfig() if config is None else config
    norms = list(norms)
    seeds = list(seeds)
    if not norms or not seeds:
        raise ValueError("headline: give at least one normaliser and one seed")
    for name in norms:
        spec = get_spec(name)
        if spec.spiking_only or spec.circuit:
            raise ValueError(f"headline: {name!r} has no conventional-network form; choose from names that do")
    split = load_dataset(config.dataset)
    accuracy: dict[str, dict[str, Summary]] = {kind: {} for kind in KINDS}
    for kind in KINDS:
        for name in norms:
            accuracy[kind][name] = Summary.of(
                [train_once(kind, name, seed, config, split, progress)[1].final_test_accuracy for seed in seeds]
            )
    return HeadlineResult(accuracy, asdict(config), seeds, len(split.y_test))


@dataclass
class DepthSweep:
    """Accuracy and per-layer firing rates of the ANN and SNN at several depths, over seeds.

    ``val_accuracy`` and ``test_accuracy`` map a kind to one :class:`Summary` per depth. Firing
    rates are those of the first seed's networks.
    """

    depths: list[int]
    seeds: list[int]
    val_accuracy: dict[str, list[Summary]]
    test_accuracy: dict[str, list[Summary]]
    rates_at_init: list[list[float]]  # SNN, per depth: rate of each layer before training (first seed)
    rates_trained: list[list[float]]  # SNN, per depth: rate of each layer after training (first seed)
    histories: dict[str, list[History]]  # kind -> per depth, the first seed's history
    config: dict

    @property
    def accuracy(self) -> dict[str, list[float]]:
        """Mean test accuracy per kind and depth."""
        return {kind: [s.mean for s in values] for kind, values in self.test_accuracy.items()}

    def collapse_depth(self, kind: str = "snn", chance_level: float = 20.0) -> int | None:
        """The shallowest depth whose mean **validation** accuracy is below ``chance_level``.

        Chosen on validation data only, so the test accuracy at that depth is an honest report.
        None when no depth collapses.
        """
        for depth, summary in zip(self.depths, self.val_accuracy[kind]):
            if summary.mean < chance_level:
                return depth
        return None


def depth_sweep(
    depths: Sequence[int] = (2, 4, 6, 8, 10),
    norm: str = "none",
    seeds: Sequence[int] = (0, 1, 2),
    config: TrainConfig | None = None,
    kinds: Sequence[str] = KINDS,
    probe_samples: int = 256,
) -> DepthSweep:
    """Train ANN and SNN with normaliser ``norm`` at each depth and seed; record accuracy and rates.

    Firing rates are measured on the first ``probe_samples`` validation images.
    """
    config = TrainConfig() if config is None else config
    seeds = list(seeds)
    if not seeds:
        raise ValueError("depth_sweep: give at least one seed")
    split = load_dataset(config.dataset)
    probe_x = split.x_val[:probe_samples]
    val = {kind: [] for kind in kinds}
    test = {kind: [] for kind in kinds}
    histories = {kind: [] for kind in kinds}
    rates_init, rates_trained = [], []
    for depth in depths:
        run_config = TrainConfig(**{**asdict(config), "depth": depth})
        for kind in kinds:
            if kind == "snn":
                seed_everything(seeds[0])
                untrained = build_model("snn", norm, run_config)
                rates_init.append(firing_rates(untrained, probe_x).tolist())
            runs = [train_once(kind, norm, seed, run_config, split) for seed in seeds]
            val[kind].append(Summary.of([history.final_val_accuracy for _, history in runs]))
            test[kind].append(Summary.of([history.final_test_accuracy for _, history in runs]))
            histories[kind].append(runs[0][1])
            if kind == "snn":
                rates_trained.append(firing_rates(runs[0][0], probe_x).tolist())
    return DepthSweep(list(depths), seeds, val, test, rates_init, rates_trained, histories, asdict(config))


def registered_norms_for(kind: str) -> list[str]:
    """Registry names that can build a network of ``kind``."""
    names = []
    for name in available_norms():
        spec = get_spec(name)
        if kind == "ann" and (spec.spiking_only or spec.circuit):
            continue
        names.append(name)
    return names



def activity_at_init(
    depth: int = 8,
    threshold: float = 1.0,
    beta: float = 0.9,
    norms: Sequence[str] = ("none", "bn"),
    samples: int = 256,
    seed: int = 0,
    width: int = 32,
    num_steps: int = 8,
) -> dict[str, list[float]]:
    """Firing rate of each layer of untrained SNNs on digits, one entry per normaliser.

    The networks run in training mode, as during the first training step: normalisers use the
    statistics of the batch of ``samples`` validation images.
    """
    split = load_dataset("digits")
    config = TrainConfig(depth=depth, width=width, num_steps=num_steps, beta=beta, threshold=threshold)
    rates = {}
    for name in norms:
        seed_everything(seed)
        model = build_model("snn", name, config)
        rates[name] = firing_rates(model, split.x_val[:samples], train_mode=True).tolist()
    return rates


def set_batch_free(model, batch_free: bool) -> int:
    """Switch every homeostatic layer of ``model`` between batch-free and batch-statistics mode.

    Returns how many layers were switched (an error if there were none).
    """
    switched = 0
    for module in model.modules():
        if hasattr(module, "batch_free"):
            module.batch_free = bool(batch_free)
            switched += 1
    if switched == 0:
        raise ValueError("set_batch_free: the model has no homeostatic normalisation layer")
    return switched


@torch.no_grad()
def accuracy_with_batch_statistics(model, x, y, batch_size: int, seed: int = 0, sorted_by_class: bool = False) -> float:
    """Test accuracy (%) when every BatchNorm normalises with the statistics of its own test batch.

    This is what a network sees if it is left in training mode at inference: each sample's
    output depends on the ``batch_size - 1`` others. The samples are shuffled (seeded) so batches
    mix classes, or, with ``sorted_by_class``, ordered by label so that batches hold one or two
    classes (a non-i.i.d. stream). The model is not changed.
    """
    import copy

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"accuracy_with_batch_statistics: batch_size must be a positive int, got {batch_size!r}")
    probe = copy.deepcopy(model).eval()
    for module in probe.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.train()
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    if sorted_by_class:
        order = order[torch.argsort(y[order], stable=True)]
    correct = 0
    for start in range(0, len(y), batch_size):
        index = order[start : start + batch_size]
        correct += (probe(x[index]).argmax(dim=1) == y[index]).sum().item()
    return 100.0 * correct / len(y)


@dataclass
class WarmupAgreement:
    """How closely a normaliser matches BatchNorm after a number of warm-up batches."""

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
    training-mode output, normalised with each fresh batch's own statistics."""
    from .data import synthetic_channel_batch
    from .norms import HomeostaticNorm

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
            probe, probe_reference = copy_module(norm).eval(), copy_module(reference)
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


def copy_module(module):
    """A deep copy of ``module`` (used to measure without changing the original's state)."""
    import copy

    return copy.deepcopy(module)


PAPER_NEURONS = {"ei": {"beta": 0.5}}  # the E-I paper's LIF neuron: tau = 2, so beta = 1 - 1/tau

# The comparison of every method (chapter 12) lives in its own module; re-exported here.
from .comparison import MethodComparison, compare_methods  # noqa: E402


# -- tdBN, BNTT and TEBN chapters -------------------------------------------------------------


def tdbn_to_threshold(model, alpha: float = 1.0) -> int:
    """Scale every tdBN layer of a reference SNN to the threshold of the neurons it feeds.

    Sets each :class:`~snn_norm_lite.norms.ThresholdDependentBatchNorm2d` (a block's ``norm``)
    to ``alpha`` and ``v_th`` = its block's neuron threshold, so its output has standard
    deviation ``alpha * V_th`` (the registry builds tdBN with ``alpha = v_th = 1``). Returns
    how many layers were set; an error if the model has none.
    """
    from .norms import ThresholdDependentBatchNorm2d

    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise ValueError(f"tdbn_to_threshold: alpha must be a positive number, got {alpha!r}")
    changed = 0
    for block in getattr(model, "blocks", []):
        norm = getattr(block, "norm", None)
        if isinstance(norm, ThresholdDependentBatchNorm2d):
            norm.alpha, norm.v_th = float(alpha), float(block.neuron.threshold)
            changed += 1
    if changed == 0:
        raise ValueError("tdbn_to_threshold: the model has no tdBN layer (build it with norm 'tdbn')")
    return changed


def fit_model(model, config: TrainConfig, split=None, seed: int = 0) -> History:
    """Train an already built (possibly modified) model as :func:`train_once` trains a new one.

    Same loaders (shuffled with ``seed``), optimiser and epochs from ``config``; the caller
    seeds and builds the model, changes it (e.g. :func:`tdbn_to_threshold`), then calls this.
    """
    split = load_dataset(config.dataset) if split is None else split
    train_loader, val_loader, test_loader = split.loaders(config.batch_size, seed=seed)
    return fit(
        model, train_loader, val_loader, test_loader=test_loader, epochs=config.epochs, lr=config.lr,
        device=config.device, progress=False,
    )


@torch.no_grad()
def accuracy_by_steps(model, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Accuracy (%) on ``(x, y)`` of a reference SNN when it stops after k steps, for k = 1 .. T.

    Pass validation images for anything that chooses (e.g. where to exit early) and test
    images only for the final report. Runs the model once in evaluation mode, records the
    read-out of every step (a hook on ``model.readout``, output ``[T, B, classes]``) and
    classifies with the mean over the first k steps. In evaluation every layer of the reference
    SNN is causal (LIF neurons, and normalisers with fixed per-step or shared statistics), so
    this equals running only k steps.
    """
    records = []
    handle = model.readout.register_forward_hook(lambda module, inputs, output: records.append(output.detach()))
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        handle.remove()
        model.train(was_training)
    per_step = records[0]
    if per_step.dim() != 3:
        raise ValueError(f"accuracy_by_steps: expected a per-step read-out [T, B, classes], got {tuple(per_step.shape)}")
    steps = torch.arange(1, per_step.shape[0] + 1, dtype=per_step.dtype).view(-1, 1, 1)
    cumulative = per_step.cumsum(dim=0) / steps
    return [100.0 * (logits.argmax(dim=1) == y).float().mean().item() for logits in cumulative]


# -- AHSAR chapter ------------------------------------------------------------------------------


@dataclass
class ControlledRun:
    """One SNN training run, with or without an AHSAR controller, and its activity per epoch."""

    model: torch.nn.Module
    history: History
    rates: list[list[float]]  # per epoch (index 0: before training): firing rate of each layer
    thresholds: list[list[float]]  # per epoch (index 0: before training): threshold of each layer
    controller: object | None  # the (still attached) AHSAR controller, or None


def train_with_controller(
    norm: str,
    seed: int,
    config: TrainConfig,
    split=None,
    controller=None,
    probe_samples: int = 256,
) -> ControlledRun:
    """Train the reference SNN as :func:`train_once` does, optionally regulated by ``controller``.

    ``controller`` (e.g. ``ahsar.AHSAR(...)``, not attached) is attached to the freshly built
    model before training and its ``on_epoch`` runs after every epoch. Before training and after
    every epoch the firing rate of each layer is measured on the first ``probe_samples``
    validation images (evaluation mode), together with the thresholds the layers hold. The
    controller's slow loop reads the validation accuracy only; the test accuracy is measured
    once, after training. The controller is
    left attached, so the returned model keeps the thresholds it trained with.
    """
    split = load_dataset(config.dataset) if split is None else split
    seed_everything(seed)
    channels, size = split.image_shape[0], split.image_shape[1]
    model = build_model("snn", norm, config, in_channels=channels, image_size=size)
    probe_x = split.x_val[:probe_samples]
    layers = model.neurons()
    rates, thresholds = [], []

    def measure():
        rates.append(firing_rates(model, probe_x).tolist())
        thresholds.append([float(layer.threshold) for layer in layers])

    def on_epoch(trained, history):
        if controller is not None:
            controller.on_epoch(trained, history)
        measure()

    if controller is not None:
        controller.attach(model)
    measure()
    train_loader, val_loader, test_loader = split.loaders(config.batch_size, seed=seed)
    history = fit(
        model, train_loader, val_loader, test_loader=test_loader, epochs=config.epochs, lr=config.lr,
        device=config.device, progress=False, on_epoch=on_epoch,
    )
    return ControlledRun(model, history, rates, thresholds, controller)


def noisy_images(x: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    """``x`` plus seeded Gaussian noise of standard deviation ``sigma``, clamped to [0, 1]."""
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or sigma < 0:
        raise ValueError(f"noisy_images: sigma must be a non-negative number, got {sigma!r}")
    generator = torch.Generator().manual_seed(seed)
    return (x + sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype)).clamp(0.0, 1.0)


@torch.no_grad()
def accuracy_on(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    """Accuracy (%) of ``model`` on tensors ``x``, ``y`` (e.g. noisy test images), in evaluation mode (mode restored)."""
    was_training = model.training
    model.eval()
    try:
        correct = sum((model(x[i : i + batch_size]).argmax(dim=1) == y[i : i + batch_size]).sum().item()
                      for i in range(0, len(y), batch_size))
    finally:
        model.train(was_training)
    return 100.0 * correct / len(y)


def controller_fast_loop(model: torch.nn.Module, controller, x: torch.Tensor, passes: int = 30, batch_size: int = 64,
                         seed: int = 0) -> dict:
    """Run only AHSAR's fast loop: ``passes`` training-mode forward passes, no gradient, no optimiser.

    Each pass takes a seeded random batch of ``batch_size`` rows of ``x``. Attaches
    ``controller`` to ``model``, and detaches it at the end (thresholds restored). Returns
    ``rate`` and ``threshold``, each a list over passes of per-layer lists: the rate a pass
    measured and the threshold it ran with.
    """
    generator = torch.Generator().manual_seed(seed)
    layers = model.neurons()
    controller.attach(model)
    rates, thresholds = [], []
    was_training = model.training
    model.train()
    try:
        with torch.no_grad():
            for _ in range(passes):
                batch = x[torch.randint(0, len(x), (batch_size,), generator=generator)]
                model(batch)  # the controller writes the thresholds at the start of the pass
                thresholds.append([float(layer.threshold) for layer in layers])
                rates.append(controller.last_rates.tolist())
    finally:
        model.train(was_training)
        controller.detach()
    return {"rate": rates, "threshold": thresholds}


# -- MPBN folding and TAB window statistics (chapters 07 and 08) ---------------------------------


def fold_mpbn(model):
    """A deep copy of ``model`` in evaluation mode with every ``MPBNLeaky`` replaced by its ``fold()``.

    The original is not changed. Raises if the model has no MPBN neuron.
    """
    import copy

    from .norms import MPBNLeaky

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


def _median_seconds(function, repeats: int) -> float:
    import time

    durations = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        durations.append(time.perf_counter() - start)
    return statistics.median(durations)


@dataclass
class FoldCheck:
    """An evaluation-mode MPBN network against its folded copy on the same inputs."""

    layers_identical: list[bool]  # per spiking layer: every spike equal
    spikes_per_layer: list[int]  # spikes the unfolded network emitted, per layer
    predictions_identical: bool
    max_logit_difference: float
    unfolded_seconds: float  # median forward time of the whole network
    folded_seconds: float
    unfolded_neuron_seconds: float  # median time of the neurons alone (every layer, recorded currents)
    folded_neuron_seconds: float


@torch.no_grad()
def mpbn_fold_check(model, x: torch.Tensor, repeats: int = 5) -> FoldCheck:
    """Fold ``model``'s MPBN neurons (:func:`fold_mpbn`) and compare the two networks on ``x``.

    Both run in evaluation mode. Forward hooks record every spiking layer's output (and input
    current); the spikes are compared exactly. Then both networks, and their neurons alone on
    the recorded currents, are timed: median of ``repeats`` runs each, interleaved.
    ``model``'s training mode is restored afterwards.
    """
    from .probes import spiking_layers

    was_training = model.training
    model.eval()
    folded = fold_mpbn(model)
    try:
        runs = []
        for network in (model, folded):
            layers = spiking_layers(network)
            records = [dict() for _ in layers]
            handles = [
                layer.register_forward_hook(lambda m, i, o, r=r: r.update(current=i[0], spikes=o))
                for layer, r in zip(layers, records)
            ]
            try:
                logits = network(x)
            finally:
                for handle in handles:
                    handle.remove()
            runs.append((layers, records, logits))
        (layers, records, logits), (folded_layers, folded_records, folded_logits) = runs
        identical = [torch.equal(a["spikes"], b["spikes"]) for a, b in zip(records, folded_records)]
        spikes = [int(r["spikes"].sum().item()) for r in records]
        timings = {"model": [], "folded": [], "neurons": [], "folded_neurons": []}
        jobs = {
            "model": lambda: model(x),
            "folded": lambda: folded(x),
            "neurons": lambda: [layer(r["current"]) for layer, r in zip(layers, records)],
            "folded_neurons": lambda: [layer(r["current"]) for layer, r in zip(folded_layers, records)],
        }
        for _ in range(repeats):
            for key, job in jobs.items():
                timings[key].append(_median_seconds(job, 1))
        return FoldCheck(
            identical,
            spikes,
            bool(torch.equal(logits.argmax(dim=1), folded_logits.argmax(dim=1))),
            float((logits - folded_logits).abs().max().item()),
            statistics.median(timings["model"]),
            statistics.median(timings["folded"]),
            statistics.median(timings["neurons"]),
            statistics.median(timings["folded_neurons"]),
        )
    finally:
        model.train(was_training)


@dataclass
class WindowStatisticsScaling:
    """TAB's window statistics in O(T) (cumulative sums) against the naive O(T^2) loop."""

    steps: list[int]
    max_abs_difference: list[float]  # max over mean and variance, all steps and channels
    fast_seconds: list[float]  # median time of tab_window_statistics
    naive_seconds: list[float]  # median time of tab_window_statistics_naive


@torch.no_grad()
def tab_window_scaling(
    steps: Sequence[int] = (4, 8, 16, 32, 64),
    batch: int = 16,
    channels: int = 8,
    size: int = 8,
    drift: float = 0.1,
    repeats: int = 3,
    seed: int = 0,
) -> WindowStatisticsScaling:
    """Compare and time ``tab_window_statistics`` against ``tab_window_statistics_naive``.

    For each T in ``steps``: a seeded random sequence ``[T, batch, channels, size, size]``
    (standard normal, channel c offset by c / channels, step t by ``drift * t``), the largest
    absolute difference between the two results, and the median of ``repeats`` timings of each.
    """
    from .norms import tab_window_statistics, tab_window_statistics_naive

    generator = torch.Generator().manual_seed(seed)
    result = WindowStatisticsScaling(list(steps), [], [], [])
    for num_steps in steps:
        x = torch.randn(num_steps, batch, channels, size, size, generator=generator)
        x += (torch.arange(channels) / channels).view(1, 1, channels, 1, 1)
        x += drift * torch.arange(num_steps, dtype=x.dtype).view(num_steps, 1, 1, 1, 1)
        fast, naive = tab_window_statistics(x), tab_window_statistics_naive(x)
        difference = max((a - b).abs().max().item() for a, b in zip(fast, naive))
        result.max_abs_difference.append(difference)
        result.fast_seconds.append(_median_seconds(lambda: tab_window_statistics(x), repeats))
        result.naive_seconds.append(_median_seconds(lambda: tab_window_statistics_naive(x), repeats))
    return result


@torch.no_grad()
def window_tracking(x: torch.Tensor, beta: float = 0.9, standardise: bool = False) -> dict[str, torch.Tensor]:
    """How TAB's window mean follows what a leaky membrane integrates, for a sequence ``[T, B, C, ...]``.

    Returns ``[T]`` tensors (averaged over channels): ``step_mean`` (mean of ``x_t``),
    ``window_mean`` (``mu_{0:t}``, mean over steps ``0..t``) and ``leaky_mean``: the membrane of
    a neuron with leak ``beta`` and no reset driven by ``x``, ``u_t = sum_s beta^(t-s) x_s``,
    divided by its total weight ``sum_s beta^(t-s)`` (a leak-weighted average of the inputs so
    far; ``beta = 1`` gives the window mean exactly).

    ``standardise=True``: each channel's three curves are first measured from that channel's
    step-0 mean, in units of its standard deviation over the whole sequence, and their
    *absolute values* are averaged over channels: ``mean_c |stat_{t,c} - m_{0,c}| / sd_c``. This
    shows how far each statistic moves in units of the spread, without channels that drift in
    opposite directions cancelling out.
    """
    if x.dim() < 3:
        raise ValueError(f"window_tracking: expected a sequence [T, B, C, ...], got shape {tuple(x.shape)}")
    dims = (1,) + tuple(range(3, x.dim()))
    step_mean = x.mean(dim=dims)  # [T, C]
    steps = torch.arange(1, x.shape[0] + 1, dtype=x.dtype, device=x.device).unsqueeze(1)
    window_mean = step_mean.cumsum(dim=0) / steps
    membrane, weight, leaky = torch.zeros_like(step_mean[0]), 0.0, []
    for t in range(x.shape[0]):
        membrane = beta * membrane + step_mean[t]
        weight = beta * weight + 1.0
        leaky.append(membrane / weight)
    curves = {"step_mean": step_mean, "window_mean": window_mean, "leaky_mean": torch.stack(leaky)}
    if standardise:
        spread = x.transpose(0, 2).reshape(x.shape[2], -1).std(dim=1).clamp_min(torch.finfo(x.dtype).tiny)
        curves = {key: ((value - step_mean[0]) / spread).abs() for key, value in curves.items()}
    return {key: value.mean(dim=1) for key, value in curves.items()}


# -- E-I circuit chapter (DeepEISNN) ----------------------------------------------------------


@torch.no_grad()
def ei_current_at_init(
    rate: float,
    ei_ratio: int = 4,
    channels: int = 32,
    batch: int = 64,
    num_steps: int = 4,
    size: int = 8,
    seed: int = 0,
) -> torch.Tensor:
    """Integrated current ``I`` of a freshly E-I-initialised convolutional circuit on spikes.

    Builds ``EIConv2d(channels, channels, 3, padding=1, ei_ratio=ei_ratio)`` (the block of the
    reference E-I network), runs E-I Init on one batch of Bernoulli(``rate``) spike trains
    ``[num_steps, batch, channels, size, size]`` and returns the current it produces on a
    second, independent batch drawn the same way (same shape). Everything is seeded by ``seed``.
    """
    from .inhibition import EIConv2d

    if not 0 < rate <= 1:
        raise ValueError(f"ei_current_at_init: rate must be in (0, 1], got {rate!r}")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    layer = EIConv2d(channels, channels, 3, ei_ratio=ei_ratio, padding=1)
    shape = (num_steps, batch, channels, size, size)
    layer.ei_init(torch.bernoulli(torch.full(shape, float(rate)), generator=generator))
    return layer(torch.bernoulli(torch.full(shape, float(rate)), generator=generator))


@torch.no_grad()
def replace_ei_init_with_default(model) -> int:
    """The "no E-I Init" ablation: give every E-I circuit a generic initialisation instead.

    Each circuit of ``model`` gets PyTorch's default initialisation of a convolution or linear
    layer (Kaiming uniform, ``a = sqrt(5)``) for ``W_EE``, ``W_IE`` and ``W_EI``, projected onto
    Dale's law (negative weights set to 0), with ``g_I = g_E = 1`` and ``b_E = 0``; its
    ``auto_init`` is switched off and it is marked initialised, so the data-dependent E-I Init
    never runs. Returns the number of circuits changed (an error if there are none).
    """
    import math

    from .inhibition import circuits, enforce_dale

    layers = circuits(model)
    if not layers:
        raise ValueError("replace_ei_init_with_default: the model has no E-I circuits (build it with 'ei')")
    for layer in layers:
        for weight in (layer.weight_ee, layer.weight_ie, layer.weight_ei):
            torch.nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        if not layer.output:
            layer.gain_i.fill_(1.0)
            layer.gain_e.fill_(1.0)
            layer.bias_e.zero_()
        layer.auto_init, layer.initialised = False, True
    enforce_dale(model)
    return len(layers)
