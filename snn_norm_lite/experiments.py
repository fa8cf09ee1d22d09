"""The general runners: one training run, the headline table and the depth sweep.

Each runner is a plain function that trains the package's reference networks on a data set and
returns a small result object; nothing here plots. Every number a chapter shows as the book's
own comes from one of these functions (or from a topic module built on :func:`train_once`, such
as :mod:`~snn_norm_lite.comparison` for the side-by-side comparison), run in that chapter.

Every run has three disjoint data sets: the network trains on the training set, the
validation accuracy is measured after every epoch (anything that chooses or steers reads
only that), and the test accuracy is measured once, after the last epoch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import torch

from .checks import check_bool, check_positive_int, check_positive_number, check_unit_interval
from .data import DATASETS, Split, load_dataset
from .encoding import check_encoding
from .models import build_ann, build_snn
from .norms import available_norms, get_spec
from .probes import firing_rates
from .stats import Summary, one_image
from .training import History, check_seeds, fit, seed_everything

KINDS = ("ann", "snn")


@dataclass
class TrainConfig:
    """Everything that defines one training run besides the normaliser and the seed.

    ``beta`` and ``threshold`` are the LIF neuron's (the normaliser is built for them too);
    ``norm_options`` are the method's own hyperparameters (its ``NormSpec.options``, e.g.
    ``{"alpha": 0.7}`` for tdBN or ``{"stabilize": False}`` for the E-I network), checked
    against the method when the model is built. ``encoding`` is how the spiking network turns
    a static image into its ``num_steps`` inputs, one of
    :data:`~snn_norm_lite.encoding.ENCODINGS` (``"direct"``, ``"rate"``, ``"latency"``); the
    conventional network sees the static image whatever it is. ``amp`` trains under bfloat16
    autocast (:func:`~snn_norm_lite.training.mixed_precision`, meant for CUDA). Every field is
    checked when the config is made:

    >>> TrainConfig(depth=0)
    Traceback (most recent call last):
        ...
    ValueError: TrainConfig: depth must be positive (an int >= 1), got 0
    """

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
    norm_options: dict = field(default_factory=dict)
    encoding: str = "direct"
    amp: bool = False

    def __post_init__(self):
        name = "TrainConfig"
        for key in ("depth", "width", "num_steps", "epochs", "batch_size"):
            check_positive_int(getattr(self, key), key, name)
        check_positive_number(self.lr, "lr", name)
        check_unit_interval(self.beta, "beta", name, closed_low=True)
        check_positive_number(self.threshold, "threshold", name)
        if not isinstance(self.dataset, str):
            raise TypeError(f"{name}: dataset must be a str (one of {', '.join(DATASETS)}), got {type(self.dataset).__name__}")
        if self.dataset not in DATASETS:
            raise ValueError(f"{name}: dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}")
        if not isinstance(self.device, str):
            raise TypeError(
                f"{name}: device must be a str such as 'cpu' or 'cuda:0' (it is saved with the results), got "
                f"{type(self.device).__name__}; pass str(device)"
            )
        try:
            device = torch.device(self.device)
        except RuntimeError as error:
            raise ValueError(f"{name}: device {self.device!r} is not a device ({error})") from None
        if device.type == "meta":
            raise ValueError(f"{name}: device 'meta' holds shapes but no data, so nothing can train on it; use cpu")
        if not isinstance(self.norm_options, dict) or not all(isinstance(k, str) for k in self.norm_options):
            raise TypeError(
                f"{name}: norm_options must be a dict of the method's option names (str) to values, got "
                f"{self.norm_options!r}"
            )
        check_encoding(self.encoding, name)
        check_bool(self.amp, "amp", name)


def check_config(config, caller: str, default: Callable[[], "TrainConfig"] = None) -> "TrainConfig":
    """``config``, or ``default()`` (``TrainConfig()`` unless given) when it is None; else a ``TypeError``.

    >>> check_config(None, "depth_sweep").depth
    6
    >>> check_config({"depth": 8}, "depth_sweep")
    Traceback (most recent call last):
        ...
    TypeError: depth_sweep: config must be a TrainConfig or None, got dict
    """
    if config is None:
        return (default or TrainConfig)()
    if not isinstance(config, TrainConfig):
        raise TypeError(f"{caller}: config must be a TrainConfig or None, got {type(config).__name__}")
    return config


def check_split(split, config: "TrainConfig", caller: str):
    """``split`` (a :class:`~snn_norm_lite.data.Split`), or ``config.dataset`` loaded when it is None.

    >>> check_split(None, TrainConfig(), "headline").name
    'digits'
    >>> check_split("digits", TrainConfig(), "headline")
    Traceback (most recent call last):
        ...
    TypeError: headline: split must be a data.Split or None, got str
    """
    if split is None:
        return load_dataset(config.dataset)
    if not isinstance(split, Split):
        raise TypeError(f"{caller}: split must be a data.Split or None, got {type(split).__name__}")
    return split


def check_depths(depths, caller: str) -> list[int]:
    """``depths`` as a list of at least one positive int, else an error.

    >>> check_depths(range(2, 7, 2), "depth_sweep")
    [2, 4, 6]
    """
    depths = list(depths)
    if not depths:
        raise ValueError(f"{caller}: give at least one depth")
    for depth in depths:
        check_positive_int(depth, "every depth", caller)
    return depths


def build_model(kind: str, norm: str, config: TrainConfig, in_channels: int = 1, image_size: int = 8):
    """The reference ANN or SNN for ``kind`` (``"ann"`` or ``"snn"``) and a registry name.

    The SNN gets the config's ``encoding``; the ANN has no time steps and sees the image.

    >>> build_model("snn", "bn", TrainConfig(depth=2, width=4, encoding="rate")).encoding
    'rate'
    """
    if kind == "ann":
        return build_ann(
            norm, config.depth, config.width, in_channels=in_channels, image_size=image_size,
            norm_options=config.norm_options,
        )
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
            norm_options=config.norm_options,
            encoding=config.encoding,
        )
    raise ValueError(f"kind must be 'ann' or 'snn', got {kind!r}")


def train_once(
    kind: str,
    norm: str,
    seed: int,
    config: TrainConfig,
    split=None,
    progress: bool = False,
    *,
    prepare: Callable[[torch.nn.Module], object] | None = None,
    on_epoch: Callable[[torch.nn.Module, History], object] | None = None,
    measure_test: bool = True,
):
    """Train one seeded reference network; return ``(model, history)``.

    The network is built from ``config`` (for ``split``'s image shape) right after seeding, so
    one seed gives the same initial weights and the same order of batches in every run.

    Args:
        kind, norm: ``"ann"`` or ``"snn"``, and a registry name.
        seed: seeds the weights and the order of the training batches.
        config: architecture, neuron and optimiser (:class:`TrainConfig`).
        split: a :class:`~snn_norm_lite.data.Split` (default: ``config.dataset`` loaded).
        prepare: called as ``prepare(model)`` on the freshly built model before training, e.g.
            to attach a controller, swap neurons or re-initialise (an ablation).
        on_epoch: called as ``on_epoch(model, history)`` after every epoch (after its
            validation accuracy is recorded), as in :func:`~snn_norm_lite.training.fit`.
        measure_test: False builds no test loader at all (pilots that choose a setting).

    The history holds the validation accuracy of every epoch and, with ``measure_test``, the
    test accuracy measured once, after the last epoch.
    """
    if kind not in KINDS:
        raise ValueError(f"train_once: kind must be 'ann' or 'snn', got {kind!r}")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"train_once: config must be a TrainConfig, got {type(config).__name__}")
    for callback, name in ((prepare, "prepare"), (on_epoch, "on_epoch")):
        if callback is not None and not callable(callback):
            raise TypeError(f"train_once: {name} must be callable or None, got {type(callback).__name__}")
    split = load_dataset(config.dataset) if split is None else split
    seed_everything(seed)
    channels, size = split.image_shape[0], split.image_shape[1]
    model = build_model(kind, norm, config, in_channels=channels, image_size=size)
    if prepare is not None:
        prepare(model)
    train_loader, val_loader, test_loader = split.loaders(config.batch_size, seed=seed)
    history = fit(
        model,
        train_loader,
        val_loader,
        test_loader=test_loader if measure_test else None,
        epochs=config.epochs,
        lr=config.lr,
        device=config.device,
        progress=progress,
        on_epoch=on_epoch,
        description=f"{kind} {norm} seed {seed}",
        amp=config.amp,
    )
    return model, history


# The headline's default budget is chapter 1's: depth 8, 6 epochs (width 32, T 8, seeds 0, 1, 2),
# so that `python -m snn_norm_lite headline --norms none,bn` prints chapter 1's table. Chapter 1
# reads that depth off VALIDATION accuracy: the shallowest of depths 2, 4, 6, 8, 10 at which the
# un-normalised SNN's mean validation accuracy is below 20 % (chance is 10 %). A pilot with
# 8 epochs instead (validation only) gave the same depth: 18.8 ± 6.7 % at depth 8.
HEADLINE_DEPTH = 8
HEADLINE_EPOCHS = 6
HEADLINE_NORMS = ("none", "bn", "homeostatic")


def headline_config(**changes) -> TrainConfig:
    """The headline's budget: :class:`TrainConfig`'s defaults at chapter 1's depth and epochs
    (``HEADLINE_DEPTH``, ``HEADLINE_EPOCHS``), with ``changes``.

    >>> headline_config().depth == HEADLINE_DEPTH, headline_config(epochs=2).epochs
    (True, 2)
    """
    return TrainConfig(**{"depth": HEADLINE_DEPTH, "epochs": HEADLINE_EPOCHS, **changes})


def paired_gap(with_norm: Summary, without: Summary) -> Summary:
    """Per-seed difference ``with_norm - without`` (runs paired by seed), summarised.

    >>> paired_gap(Summary.of([95.0, 96.0, 94.0]), Summary.of([90.0, 93.0, 89.0])).values
    (5.0, 3.0, 5.0)
    """
    if with_norm.n != without.n:
        raise ValueError(f"paired_gap: needs the same seeds on both sides, got {with_norm.n} and {without.n} values")
    return Summary.of([a - b for a, b in zip(with_norm.values, without.values)])


@dataclass
class HeadlineResult:
    """Test accuracy (percent) of the ANN and SNN for each normaliser, over seeds.

    ``accuracy[kind][name]`` is a :class:`~snn_norm_lite.stats.Summary` of the per-seed test
    accuracies; ``ann`` and ``snn`` give their means. A method without a conventional-network
    form (spiking-only, or a circuit such as ``"ei"``) has an SNN entry and no ANN entry. The
    dependency gap of a kind is defined where both the method and ``"none"`` were trained in
    that kind; the ratio of the gaps where both kinds have a gap.

    >>> S = Summary.of
    >>> result = HeadlineResult({"ann": {"none": S([90.0, 91.0]), "bn": S([95.0, 96.0])},
    ...                          "snn": {"none": S([10.0, 10.0]), "bn": S([90.0, 92.0]), "tebn": S([91.0, 93.0])}},
    ...                         config={}, seeds=[0, 1], num_test=360)
    >>> result.names, result.gap("snn")["tebn"].mean, sorted(result.gap("ann"))
    (['none', 'bn', 'tebn'], 82.0, ['bn'])
    """

    accuracy: dict[str, dict[str, Summary]]
    config: dict
    seeds: list[int]
    num_test: int

    def __post_init__(self):
        if set(self.accuracy) != set(KINDS):
            raise ValueError(f"HeadlineResult: accuracy needs the kinds {KINDS}, got {sorted(self.accuracy)}")
        missing = [name for name in self.accuracy["ann"] if name not in self.accuracy["snn"]]
        if missing:
            raise ValueError(f"HeadlineResult: every ANN entry needs an SNN entry; missing in 'snn': {missing}")

    @property
    def names(self) -> list[str]:
        """Every method of the table, in order (the SNN's names; the ANN's are a subset)."""
        return list(self.accuracy["snn"])

    @property
    def ann(self) -> dict[str, float]:
        return {name: s.mean for name, s in self.accuracy["ann"].items()}

    @property
    def snn(self) -> dict[str, float]:
        return {name: s.mean for name, s in self.accuracy["snn"].items()}

    def has_gap(self, kind: str) -> bool:
        """True when ``"none"`` was trained in ``kind``, so gaps can be formed."""
        return "none" in self.accuracy[kind]

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
        """Mean SNN gap over mean ANN gap, per normaliser that has both gaps.

        None where the ANN gap is not resolved (not larger than its spread and one test image,
        or not positive): a ratio over a denominator indistinguishable from 0 means nothing.
        """
        ann, snn = self.gap("ann"), self.gap("snn")
        return {
            name: (snn[name].mean / ann[name].mean if self.gap_resolved("ann", name) and ann[name].mean > 0 else None)
            for name in ann
            if name in snn
        }

    def to_dict(self) -> dict:
        out = {kind: {name: s.to_dict() for name, s in self.accuracy[kind].items()} for kind in KINDS}
        out.update(config=self.config, seeds=self.seeds, num_test=self.num_test)
        gaps = {kind: {name: g.to_dict() for name, g in self.gap(kind).items()} for kind in KINDS if self.has_gap(kind)}
        if gaps:
            out["gap"] = gaps
        if self.has_gap("ann") and self.has_gap("snn"):
            out["gap_ratio"] = self.gap_ratio()
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def table(self) -> str:
        """Mean ± std of the test accuracy and of the dependency gaps, as fixed-width text.

        "n/a" stands where a value does not exist: the ANN column of a method without a
        conventional-network form, a gap without its pair, a ratio without a resolved ANN gap.
        """
        w = max([12] + [len(name) + 2 for name in self.names])  # the width of the name column
        lines = [
            f"test accuracy, mean ± std over {len(self.seeds)} seed(s); "
            f"one test image = {one_image(self.num_test):.2f} points",
            f"{'norm':<{w}}{'ANN %':>14}{'SNN %':>14}{'ANN gap':>14}{'SNN gap':>14}{'ratio':>8}",
        ]
        gaps = {kind: self.gap(kind) if self.has_gap(kind) else {} for kind in KINDS}
        ratios = self.gap_ratio() if self.has_gap("ann") and self.has_gap("snn") else {}
        pm = lambda s, sign="": f"{s.mean:{sign}.1f} ± {s.std:.1f}" if s is not None else "n/a"  # noqa: E731
        notes = set()
        for name in self.names:
            ann = self.accuracy["ann"].get(name)
            if ann is None:
                notes.add("n/a in the ANN column: the method has no conventional-network form")
            row = f"{name:<{w}}{pm(ann):>14}{pm(self.accuracy['snn'][name]):>14}"
            if name != "none" and (gaps["ann"] or gaps["snn"]):
                row += f"{pm(gaps['ann'].get(name), '+'):>14}{pm(gaps['snn'].get(name), '+'):>14}"
                ratio = ratios.get(name)
                row += f"{ratio:>7.1f}x" if ratio is not None else f"{'n/a':>8}"
                if name in ratios and ratio is None:
                    notes.add("n/a ratio: the ANN gap is not resolved (not above its spread and one test image)")
            lines.append(row)
        return "\n".join(lines + sorted(notes))


def headline(
    norms: Sequence[str] = HEADLINE_NORMS,
    seeds: Sequence[int] = (0, 1, 2),
    config: TrainConfig | None = None,
    progress: bool = False,
    split=None,
) -> HeadlineResult:
    """Train the ANN and the SNN of one architecture with each normaliser; return test accuracies.

    This is the book's opening experiment: the dependency gap (accuracy with a normaliser minus
    accuracy without) of the spiking network against that of the conventional one. ``config``
    defaults to :func:`headline_config` (a depth at which the un-normalised SNN collapses).
    A method without a conventional-network form (``NormSpec.spiking_only`` or ``circuit``,
    e.g. ``"tebn"`` or ``"ei"``) is trained as an SNN only. ``split`` (a
    :class:`~snn_norm_lite.data.Split`) is the data; by default ``config.dataset`` is loaded.
    """
    config = check_config(config, "headline", default=headline_config)
    if isinstance(norms, str):
        raise TypeError(f"headline: norms must be a sequence of registry names, got the str {norms!r}; wrap it in a list")
    norms = list(norms)
    seeds = check_seeds(seeds, "headline")
    if not norms:
        raise ValueError("headline: give at least one normaliser and one seed")
    if len(set(norms)) != len(norms):
        raise ValueError(f"headline: a normaliser appears twice: {norms}")
    for name in norms:
        get_spec(name)  # an unknown name fails here, before any training
    conventional = set(available_norms("ann"))
    split = check_split(split, config, "headline")
    accuracy: dict[str, dict[str, Summary]] = {kind: {} for kind in KINDS}
    for kind in KINDS:
        for name in norms:
            if kind == "ann" and name not in conventional:
                continue
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
    config = check_config(config, "depth_sweep")
    seeds = check_seeds(seeds, "depth_sweep")
    depths = check_depths(depths, "depth_sweep")
    kinds = list(kinds)
    if not kinds or any(kind not in KINDS for kind in kinds) or len(set(kinds)) != len(kinds):
        raise ValueError(f"depth_sweep: kinds must be distinct names among {KINDS}, got {kinds}")
    check_positive_int(probe_samples, "probe_samples", "depth_sweep")
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


# The comparison of every method (chapter 12) is the fourth general runner; it has its own module.
from .comparison import MethodComparison, compare_methods  # noqa: E402
