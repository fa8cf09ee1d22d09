"""All methods side by side: one spiking network, one budget, the same seeds and data.

A *row* of the comparison is one method trained on the reference spiking network
(:func:`snn_norm_lite.models.build_snn`) with a stated neuron: a registry name, the LIF leak
``beta`` and threshold ``V_th`` it trains with, and optionally an AHSAR controller that
regulates its thresholds while it trains. Every row shares the architecture (depth, width,
T), the optimiser (Adam, learning rate, batch size, epochs), the data split and the seeds.
The only neuron that differs is the E-I network's: it keeps its paper's neuron (tau = 2, so
``beta = 0.5``; ``PAPER_NEURONS``).

Each row is trained once per seed; the result holds per-seed validation curves, the test
accuracy measured once after training, and the per-layer firing rates and the synaptic
operations per image (accumulates, multiply-accumulates and the normaliser's own operations at
inference, :func:`snn_norm_lite.synops.synaptic_operations`) of the trained networks on
validation images. :func:`measure_properties` measures, on a trained network, the
properties a comparison table claims (causal in training and in evaluation, whether a
sample's output depends on the rest of its batch, whether the evaluation-mode normaliser is
the same map at every step), so that those columns are measurements of this package's code
rather than statements copied from papers. :func:`method_statistics` describes, per method, the
statistics it normalises with in training and in evaluation, as implemented here.

The measured properties, for a network whose spiking layers map an input sequence ``x`` of
shape ``[T, B, ...]`` to currents and spikes ``y_t[b]`` (every layer, every step)::

    causal:            x_s = x'_s for all s < k   =>  y_t(x) = y_t(x')   for all t < k
    batch-dependent:   x[0] = x'[0], x[b] != x'[b] for b > 0   =>  y_t(x)[0] != y_t(x')[0] for some t
    one map per step:  norm(z, z, ..., z)_t = norm(z, z, ..., z)_0       for all t   (evaluation)

each tested on one pair of inputs built from validation images (``k = T // 2``).
Differences between rows are judged with :func:`snn_norm_lite.stats.resolved`::

    resolved(a, b)  <=>  |mean_a - mean_b| > max(std_a, std_b)  and  > 100 / N_test
"""

from __future__ import annotations

import copy
import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import torch

from .checks import check_bool, check_positive_int
from .data import load_dataset
from .norms import available_norms, get_spec
from .norms.registry import STATISTICS_KEYS
from .probes import firing_rates, spiking_layers
from .stats import Summary, one_image, resolved
from .synops import synaptic_operations
from .training import History, check_seeds

# The chapter's budget (see chapter 12): small enough for 11 rows x 3 seeds on two CPU cores;
# its depth is the shallowest at which the network without normalisation collapses, chosen on
# VALIDATION accuracy only (mean over seeds 0, 1, 2 below 20 %, chance 10 %; width 16, T 4,
# 6 epochs). Measured: depth 6, 23.1 ± 2.3 %; depth 7, 10.1 ± 0.2 %; depths 8-10, 9.9-10.1 %.
COMPARISON_DEPTH, COMPARISON_WIDTH, COMPARISON_STEPS, COMPARISON_EPOCHS = 7, 16, 4, 6

# The AHSAR rows of the chapter and of ``python -m snn_norm_lite compare`` (AHSAR on the
# BatchNorm network and on the un-normalised one).
DEFAULT_AHSAR = ("bn", "none")

# Files written by :func:`save_comparison` (``python -m snn_norm_lite compare --out DIR``).
OUTPUT_FILES = {"json": "results.json", "csv": "results.csv", "figure": "comparison.png"}

# Rows that keep their paper's neuron: the E-I paper's LIF has tau = 2, so beta = 1 - 1/tau.
PAPER_NEURONS: dict[str, dict[str, float]] = {"ei": {"beta": 0.5}}

def method_statistics(name: str) -> dict[str, str]:
    """What method ``name`` normalises with in training and evaluation, and what is left at
    inference, as its module states it (``NormSpec.statistics``).

    >>> method_statistics("bn")["inference"]
    'folds into the convolution'
    """
    described = get_spec(name).statistics
    return dict(described) if described is not None else {key: "not described" for key in STATISTICS_KEYS}


AHSAR_STATISTICS = {  # what an AHSAR controller adds to a row (snn_norm_lite.ahsar)
    "training": "+ AHSAR: firing rates of earlier passes set each pass's thresholds; "
    "validation accuracy and activity set a gain once per epoch",
    "evaluation": "+ AHSAR: none; the thresholds of the last training pass, fixed",
    "inference": "+ AHSAR: nothing (the thresholds are constants)",
}


@dataclass(frozen=True)
class Row:
    """One row of the comparison: a method, the neuron it trains with, and whether AHSAR regulates it."""

    label: str
    norm: str
    beta: float
    threshold: float
    ahsar: bool = False

    @property
    def neuron(self) -> str:
        """The neuron in words, e.g. ``"LIF, beta 0.9, V_th 1"`` (``"... V_th 1 + AHSAR"``: the
        threshold the controller starts from)."""
        text = f"LIF, beta {self.beta:g}, V_th {self.threshold:g}"
        return text + " + AHSAR" if self.ahsar else text

    def statistics(self) -> dict[str, str]:
        """What the row's method normalises with (its ``NormSpec.statistics``), with AHSAR's part
        added for a regulated row; "not described" where the method's spec gives no text."""
        facts = method_statistics(self.norm)
        if self.ahsar:
            facts = {key: f"{value} {AHSAR_STATISTICS[key]}" for key, value in facts.items()}
        return facts


def method_rows(
    norms: Sequence[str] | None = None,
    ahsar_on: Sequence[str] = (),
    config=None,
    overrides: Mapping[str, dict] | None = None,
) -> list[Row]:
    """The rows of a comparison: each name of ``norms`` (default: every registered one), then
    each name of ``ahsar_on`` again with an AHSAR controller (label ``"<name>+ahsar"``).

    A row's neuron is ``config``'s ``beta`` and ``threshold`` unless ``overrides`` (default
    ``PAPER_NEURONS``) changes them for that name.
    """
    from .experiments import check_config

    config = check_config(config, "method_rows")
    overrides = PAPER_NEURONS if overrides is None else overrides
    for value, name in ((norms, "norms"), (ahsar_on, "ahsar_on")):
        if isinstance(value, str):
            raise TypeError(f"method_rows: {name} must be a sequence of registry names, got the str {value!r}; wrap it in a list")
    names = available_norms() if norms is None else list(norms)
    known = available_norms()
    for name in list(names) + list(ahsar_on):
        if name not in known:
            raise ValueError(f"method_rows: unknown method {name!r}; registered: {', '.join(known)}")
    for name, changes in overrides.items():
        unknown = set(changes) - {"beta", "threshold"}
        if unknown:
            raise ValueError(f"method_rows: overrides may change only beta and threshold, got {sorted(unknown)} for {name!r}")

    def row(name: str, ahsar: bool) -> Row:
        neuron = {"beta": config.beta, "threshold": config.threshold, **overrides.get(name, {})}
        return Row(f"{name}+ahsar" if ahsar else name, name, float(neuron["beta"]), float(neuron["threshold"]), ahsar)

    rows = [row(name, False) for name in names] + [row(name, True) for name in ahsar_on]
    labels = [r.label for r in rows]
    if len(set(labels)) != len(labels):
        raise ValueError(f"method_rows: a method appears twice: {labels}")
    return rows


@dataclass
class MethodComparison:
    """Every row trained on the same spiking network over the same seeds, side by side.

    ``test_accuracy`` and ``val_accuracy`` map a row label to a :class:`Summary` over seeds
    (final validation accuracy; test accuracy measured once, after training). ``histories``
    keeps every seed's history (validation accuracy per epoch), ``rates`` every seed's
    per-layer firing rate of the trained network on validation images, and ``thresholds``
    every seed's per-layer threshold at the end of training (set by AHSAR in regulated rows).
    ``threshold_history`` holds, for the regulated rows only, every seed's per-layer
    thresholds before training (index 0) and after each epoch. ``operations`` holds every
    seed's synaptic operations per image on validation images, summed over the T steps
    (``{"ac", "mac", "normaliser"}``, :meth:`SynapticOperations.per_image
    <snn_norm_lite.synops.SynapticOperations.per_image>`); ``normaliser`` is NaN for a method
    whose normaliser has no cost rule there.
    """

    rows: list[Row]
    seeds: list[int]
    test_accuracy: dict[str, Summary]
    val_accuracy: dict[str, Summary]
    histories: dict[str, list[History]]
    rates: dict[str, list[list[float]]]
    thresholds: dict[str, list[list[float]]]
    threshold_history: dict[str, list[list[list[float]]]]
    config: dict
    num_test: int
    operations: dict[str, list[dict[str, float]]] = field(default_factory=dict)

    OPERATION_KEYS = ("ac", "mac", "normaliser")

    @property
    def labels(self) -> list[str]:
        return [row.label for row in self.rows]

    norms = labels  # the row labels (a registry name, or "<name>+ahsar")

    @property
    def accuracy(self) -> dict[str, list[float]]:
        """Test accuracy per seed of each row (%)."""
        return {label: list(summary.values) for label, summary in self.test_accuracy.items()}

    def row(self, label: str) -> Row:
        for row in self.rows:
            if row.label == label:
                return row
        raise ValueError(f"MethodComparison: no row {label!r}; rows: {', '.join(self.labels)}")

    def summary(self, label: str) -> Summary:
        """Test accuracy of a row over seeds: mean, spread and the values."""
        self.row(label)
        return self.test_accuracy[label]

    def mean_accuracy(self, label: str) -> float:
        return self.summary(label).mean

    def mean_rates(self, label: str) -> list[float]:
        """Per-layer firing rate of the trained networks, averaged over seeds."""
        self.row(label)
        per_seed = torch.tensor(self.rates[label])
        return per_seed.mean(dim=0).tolist()

    def mean_rate(self, label: str) -> float:
        """Firing rate of the trained networks averaged over layers and seeds (spikes per neuron and step)."""
        rates = self.mean_rates(label)
        return sum(rates) / len(rates)

    def operations_summary(self, label: str) -> dict[str, Summary | None]:
        """Synaptic operations per image of a row over seeds: ``{"ac", "mac", "normaliser"}``,
        each a :class:`Summary` (None for ``normaliser`` when its cost has no rule, NaN)."""
        self.row(label)
        per_seed = self.operations.get(label)
        if not per_seed:
            raise ValueError(f"MethodComparison: row {label!r} has no measured synaptic operations")
        out = {}
        for key in self.OPERATION_KEYS:
            values = [entry[key] for entry in per_seed]
            out[key] = None if any(v != v for v in values) else Summary.of(values)
        return out

    def seconds_per_epoch(self, label: str) -> float:
        """Wall-clock seconds of one epoch's training passes (``History.epoch_seconds``), mean over
        epochs and seeds. A measurement of the machine it ran on, not a property of the method."""
        self.row(label)
        seconds = [s for history in self.histories[label] for s in history.epoch_seconds]
        if not seconds:
            raise ValueError(f"MethodComparison: row {label!r} recorded no epoch times")
        return sum(seconds) / len(seconds)

    def resolved(self, a: str, b: str) -> bool:
        """True when the test accuracies of rows ``a`` and ``b`` differ by more than both spreads
        and one test image (:func:`snn_norm_lite.stats.resolved`)."""
        return resolved(self.summary(a), self.summary(b), self.num_test)

    def best(self) -> str:
        """The row with the highest mean test accuracy."""
        return max(self.labels, key=self.mean_accuracy)

    def not_resolved_from_best(self) -> list[str]:
        """The rows (the best included) whose difference from the best row is not resolved."""
        best = self.best()
        return [label for label in self.labels if label == best or not self.resolved(label, best)]

    def table(self) -> str:
        """One line per row: neuron, validation and test accuracy (mean ± std, min-max), mean
        firing rate, where measured the synaptic operations per image in thousands (ACs and MACs,
        mean ± std; the normaliser's operations at inference, mean; "?" where it has no cost
        rule), and seconds per epoch last (training passes, this machine)."""
        w = max([13] + [len(label) + 2 for label in self.labels])  # the width of the row column
        measured = all(self.operations.get(label) for label in self.labels)
        header = f"{'row':<{w}}{'neuron':<31}{'val %':>12}{'test %':>12}{'test min-max':>15}{'rate':>7}"
        note = ""
        if measured:
            header += f"{'kAC/image':>15}{'kMAC/image':>14}{'k norm':>8}"
            note = "; kAC, kMAC, k norm: thousands of operations per image on validation images, summed over T"
        lines = [
            f"mean ± std over {len(self.seeds)} seeds {tuple(self.seeds)}; one test image = "
            f"{one_image(self.num_test):.2f} points; s/epoch: training passes, mean over epochs and seeds{note}",
            header + f"{'s/epoch':>9}",
        ]
        pm = lambda s: f"{s.mean:.1f} ± {s.std:.1f}"  # noqa: E731
        for row in self.rows:
            test = self.test_accuracy[row.label]
            line = (
                f"{row.label:<{w}}{row.neuron:<31}{pm(self.val_accuracy[row.label]):>12}{pm(test):>12}"
                f"{f'{test.min:.1f}-{test.max:.1f}':>15}{self.mean_rate(row.label):>7.3f}"
            )
            if measured:
                ops = self.operations_summary(row.label)
                thousands = lambda s: f"{s.mean / 1e3:.1f} ± {s.std / 1e3:.1f}"  # noqa: E731
                norm = "?" if ops["normaliser"] is None else f"{ops['normaliser'].mean / 1e3:.1f}"
                line += f"{thousands(ops['ac']):>15}{thousands(ops['mac']):>14}{norm:>8}"
            lines.append(line + f"{self.seconds_per_epoch(row.label):>9.2f}")
        return "\n".join(lines)

    def results(self) -> dict[str, dict]:
        """Per row label: the test accuracy (``mean``, ``std``, ``min``, ``max``, per-seed
        ``seeds``), the validation accuracy (``val``, same keys), the mean firing ``rate`` and the
        per-layer ``rates``, ``seconds_per_epoch``, the neuron (``norm``, ``beta``,
        ``threshold``, ``ahsar``, ``neuron``) and the per-seed final ``thresholds``; a regulated
        row adds ``threshold_history`` (per seed, before training and after each epoch). Where
        measured, ``operations`` holds the synaptic operations per image (``ac``, ``mac``,
        ``normaliser``: each ``mean``, ``std``, ``min``, ``max``, per-seed ``seeds``; ``normaliser``
        is None without a cost rule)."""
        out = {}
        for row in self.rows:
            entry = dict(self.test_accuracy[row.label].to_dict())
            entry.update(
                val=self.val_accuracy[row.label].to_dict(),
                rate=self.mean_rate(row.label),
                rates=self.mean_rates(row.label),
                seconds_per_epoch=self.seconds_per_epoch(row.label),
                norm=row.norm,
                beta=row.beta,
                threshold=row.threshold,
                ahsar=row.ahsar,
                neuron=row.neuron,
                thresholds=self.thresholds[row.label],
            )
            if row.label in self.threshold_history:
                entry["threshold_history"] = self.threshold_history[row.label]
            if self.operations.get(row.label):
                entry["operations"] = {
                    key: None if summary is None else summary.to_dict()
                    for key, summary in self.operations_summary(row.label).items()
                }
            out[row.label] = entry
        return out

    def to_dict(self) -> dict:
        """``{"config", "results", "seeds", "num_test"}``: :meth:`results` under ``"results"``
        (the object ``python -m snn_norm_lite compare --json`` prints)."""
        return {"config": self.config, "results": self.results(), "seeds": self.seeds, "num_test": self.num_test}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    CSV_COLUMNS = (
        "label", "norm", "ahsar", "beta", "threshold", "test_mean", "test_std", "test_min", "test_max",
        "val_mean", "val_std", "rate", "seconds_per_epoch", "test_seeds",
        "ac_mean", "ac_std", "mac_mean", "mac_std", "normaliser_ops_mean",
    )

    def to_csv(self) -> str:
        """One line per row (columns :attr:`CSV_COLUMNS`; ``test_seeds`` joins the per-seed test
        accuracies with spaces; the operation columns are per image, empty where not measured or,
        for ``normaliser_ops_mean``, without a cost rule)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.CSV_COLUMNS)
        for label, entry in self.results().items():
            ops = entry.get("operations") or {}
            number = lambda key, part: "" if ops.get(key) is None else f"{ops[key][part]:.1f}"  # noqa: E731
            writer.writerow([
                label, entry["norm"], entry["ahsar"], entry["beta"], entry["threshold"],
                f"{entry['mean']:.4f}", f"{entry['std']:.4f}", f"{entry['min']:.4f}", f"{entry['max']:.4f}",
                f"{entry['val']['mean']:.4f}", f"{entry['val']['std']:.4f}", f"{entry['rate']:.6f}",
                f"{entry['seconds_per_epoch']:.4f}", " ".join(f"{v:.4f}" for v in entry["seeds"]),
                number("ac", "mean"), number("ac", "std"), number("mac", "mean"), number("mac", "std"),
                number("normaliser", "mean"),
            ])
        return buffer.getvalue()


def comparison_config(**changes):
    """The chapter's budget as a ``TrainConfig`` (depth 7, width 16, T 4, 6 epochs), with ``changes``.

    >>> config = comparison_config(epochs=2)
    >>> (config.depth, config.width, config.num_steps, config.epochs)
    (7, 16, 4, 2)
    """
    from .experiments import TrainConfig

    budget = dict(depth=COMPARISON_DEPTH, width=COMPARISON_WIDTH, num_steps=COMPARISON_STEPS, epochs=COMPARISON_EPOCHS)
    return TrainConfig(**{**budget, **changes})


def compare_methods(
    norms: Sequence[str] | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    config=None,
    probe_samples: int = 256,
    overrides: Mapping[str, dict] | None = None,
    ahsar_on: Sequence[str] = (),
    ahsar_config: Mapping | None = None,
    keep_models: bool = False,
    progress: bool = False,
    split=None,
):
    """Train the reference SNN once per row and seed on the same data; return a :class:`MethodComparison`.

    This is the one function behind chapter 12 and ``python -m snn_norm_lite compare`` (which
    calls it with ``config=comparison_config(...)``, ``seeds=range(--seeds)`` and
    ``ahsar_on=DEFAULT_AHSAR`` unless told otherwise), so both print the same table for the
    same settings.

    ``norms=None`` takes every registered name; ``ahsar_on`` adds a row per name regulated by
    ``ahsar.AHSAR(**ahsar_config)`` (trained with ``ahsar.train_with_controller``, whose
    slow loop reads validation accuracy only). ``overrides`` (default ``PAPER_NEURONS``: the E-I
    network keeps its paper's neuron, beta = 0.5) changes a row's neuron. Every other row
    trains with ``config`` (default: :func:`experiments.TrainConfig`'s defaults).

    Each trained network's synaptic operations per image
    (:func:`snn_norm_lite.synops.synaptic_operations`, normalisers without a cost rule reported
    as unknown) are measured on the same ``probe_samples`` validation images as its firing rates.

    ``split`` (a :class:`~snn_norm_lite.data.Split`) is the data every row trains on; by default
    ``config.dataset`` is loaded.

    ``keep_models=True`` returns ``(comparison, trained)`` with ``trained[label]`` the first
    seed's ``(model, controller)``: the trained network and, for a regulated row, its AHSAR
    controller, still attached (None otherwise). ``progress`` shows a progress bar per run
    (unregulated rows).

    >>> tiny = comparison_config(depth=1, width=4, num_steps=2, epochs=1)
    >>> result = compare_methods(["none", "bn"], seeds=(0,), config=tiny)
    >>> result.labels, sorted(result.to_dict())
    (['none', 'bn'], ['config', 'num_test', 'results', 'seeds'])
    """
    from .ahsar import AHSAR, train_with_controller
    from .experiments import TrainConfig, check_config, check_split, train_once

    config = check_config(config, "compare_methods")
    seeds = check_seeds(seeds, "compare_methods")
    check_positive_int(probe_samples, "probe_samples", "compare_methods")
    check_bool(keep_models, "keep_models", "compare_methods")
    check_bool(progress, "progress", "compare_methods")
    if ahsar_config is not None and not isinstance(ahsar_config, Mapping):
        raise TypeError(f"compare_methods: ahsar_config must be a mapping of AHSAR options or None, got {type(ahsar_config).__name__}")
    rows = method_rows(norms, ahsar_on, config, overrides)
    split = check_split(split, config, "compare_methods")
    probe_x = split.x_val[:probe_samples]
    test, val, histories, rates, thresholds, threshold_history, models = {}, {}, {}, {}, {}, {}, {}
    operations: dict[str, list[dict[str, float]]] = {}
    for row in rows:
        run_config = TrainConfig(**{**asdict(config), "beta": row.beta, "threshold": row.threshold})
        histories[row.label], rates[row.label], thresholds[row.label], operations[row.label] = [], [], [], []
        for seed in seeds:
            if row.ahsar:
                run = train_with_controller(row.norm, seed, run_config, split, AHSAR(**dict(ahsar_config or {})))
                model, history, controller = run.model, run.history, run.controller
                threshold_history.setdefault(row.label, []).append(run.thresholds)
            else:
                (model, history), controller = train_once("snn", row.norm, seed, run_config, split, progress), None
            histories[row.label].append(history)
            rates[row.label].append(firing_rates(model, probe_x).tolist())
            operations[row.label].append(synaptic_operations(model, probe_x, unknown_normaliser="nan").per_image())
            thresholds[row.label].append([float(layer.threshold) for layer in spiking_layers(model)])
            if seed == seeds[0]:
                models[row.label] = (model, controller)
        test[row.label] = Summary.of([h.final_test_accuracy for h in histories[row.label]])
        val[row.label] = Summary.of([h.final_val_accuracy for h in histories[row.label]])
    result = MethodComparison(
        rows, seeds, test, val, histories, rates, thresholds, threshold_history, asdict(config), len(split.y_test),
        operations,
    )
    return (result, models) if keep_models else result


def save_comparison(result: MethodComparison, directory, highlight: Sequence[str] | None = None) -> dict[str, Path]:
    """Write ``result`` to ``directory`` (created if missing): :data:`OUTPUT_FILES`, i.e.
    ``results.json`` (:meth:`MethodComparison.to_dict`), ``results.csv`` (one line per row,
    :meth:`MethodComparison.to_csv`) and ``comparison.png`` (:func:`plots.method_comparison`).
    Returns the paths by kind (``"json"``, ``"csv"``, ``"figure"``). Existing files of these
    names are replaced.
    """
    import matplotlib.pyplot as plt

    from .plots import method_comparison

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"save_comparison: expected a directory, got the file {directory}")
    directory.mkdir(parents=True, exist_ok=True)
    paths = {kind: directory / name for kind, name in OUTPUT_FILES.items()}
    paths["json"].write_text(result.to_json() + "\n")
    paths["csv"].write_text(result.to_csv())
    config = result.config
    title = (f"{config.get('dataset', 'digits')}, SNN depth {config['depth']}, width {config['width']}, T {config['num_steps']}, "
             f"{config['epochs']} epochs, seeds {', '.join(map(str, result.seeds))}")
    figure = method_comparison(result, highlight=highlight, title=title)
    try:
        figure.savefig(paths["figure"], dpi=120)
    finally:
        plt.close(figure)
    return paths


def validation_accuracy_by_depth(
    depths: Sequence[int], norm: str = "none", seeds: Sequence[int] = (0, 1, 2), config=None
) -> dict[int, Summary]:
    """Final **validation** accuracy of the reference SNN with ``norm`` at each depth, over seeds.

    A pilot for choosing the comparison's depth: it trains with ``config`` (depth replaced)
    with ``measure_test=False``: the test set is never evaluated, so nothing in it can read it.
    """
    from .experiments import TrainConfig, check_config, check_depths, train_once

    config = check_config(config, "validation_accuracy_by_depth")
    seeds = check_seeds(seeds, "validation_accuracy_by_depth")
    depths = check_depths(depths, "validation_accuracy_by_depth")
    split = load_dataset(config.dataset)
    result = {}
    for depth in depths:
        run_config = TrainConfig(**{**asdict(config), "depth": depth})
        values = [
            train_once("snn", norm, seed, run_config, split, measure_test=False)[1].final_val_accuracy for seed in seeds
        ]
        result[depth] = Summary.of(values)
    return result


@torch.no_grad()
def running_variance_ratio(model, x: torch.Tensor) -> list[float]:
    """Per block: the variance a normaliser assumes in evaluation over the variance it is given.

    For each block of a reference SNN whose normaliser keeps a ``running_var`` (BatchNorm and
    its variants, the homeostatic layer, whose ``running_var`` is ``1/g^2 - eps``), runs the
    model in evaluation mode on ``x`` (static images, e.g. validation images), records the
    normaliser's input ``[T, B, C, H, W]`` and returns the mean over channels (and steps) of::

        running_var / var        var: over (T, B, H, W) for a [C] state, over (B, H, W) of step t for a [T, C] one

    1 means the evaluation-time estimate is right; a ratio r > 1 means the layer divides by a
    standard deviation sqrt(r) times too large, so its output is sqrt(r) times too small.
    Blocks without such a normaliser give ``nan``. The model is not changed.
    """
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise TypeError(f"running_variance_ratio: {type(model).__name__} has no blocks of conv -> norm -> neuron")
    inputs: dict[int, torch.Tensor] = {}
    handles = [
        block.norm.register_forward_hook(lambda m, i, o, k=k: inputs.__setitem__(k, i[0]))
        for k, block in enumerate(blocks)
        if isinstance(getattr(block.norm, "running_var", None), torch.Tensor)
    ]
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    ratios = []
    for k, block in enumerate(blocks):
        if k not in inputs:
            ratios.append(float("nan"))
            continue
        current, running = inputs[k], block.norm.running_var
        dims = (0, 1, 3, 4) if running.dim() == 1 else (1, 3, 4)
        actual = current.var(dim=dims, correction=0)
        ratios.append(float((running / actual).mean()))
    return ratios


# -- the properties a comparison table claims, measured --------------------------------------


@torch.no_grad()
def _layer_records(model, x: torch.Tensor, training: bool, controller=None) -> list[dict]:
    """Run ``model`` once on ``x`` in the given mode; return every spiking layer's input current
    and spikes. In training mode the model's state (running statistics, homeostatic state,
    thresholds) and the controller's state are put back afterwards, so two calls see the same
    network."""
    layers = spiking_layers(model)
    records = [dict() for _ in layers]
    handles = [
        layer.register_forward_hook(lambda m, i, o, r=r: r.update(current=i[0].detach().clone(), spikes=o.detach().clone()))
        for layer, r in zip(layers, records)
    ]
    state = copy.deepcopy(model.state_dict())
    controller_state = controller.state_dict() if controller is not None else None
    was_training = model.training
    model.train(training)
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
        model.load_state_dict(state)
        if controller is not None:
            controller.load_state_dict(controller_state)
    return records


def _same(a: list[dict], b: list[dict], steps=slice(None), samples=slice(None), tolerance: float = 1e-5) -> bool:
    """True when every layer's currents agree within ``tolerance`` and its spikes exactly, on the selection."""
    for ra, rb in zip(a, b):
        ca, cb = ra["current"][steps][:, samples], rb["current"][steps][:, samples]
        if not torch.allclose(ca, cb, rtol=tolerance, atol=tolerance):
            return False
        if not torch.equal(ra["spikes"][steps][:, samples], rb["spikes"][steps][:, samples]):
            return False
    return True


@torch.no_grad()
def same_map_at_every_step(model, x: torch.Tensor) -> bool | None:
    """In evaluation, is every block's normaliser one map shared by all steps?

    Feeds each normaliser (``block.norm``) the same input at every step (``x``'s first
    convolution output, repeated) and checks that every step's output is identical. True means
    the evaluation-mode normaliser can fold into the convolution before it, which the T steps
    share; False means it is a different affine map at each step. None for a network without
    normalisation layers (no normaliser, or the E-I circuits).
    """
    blocks = getattr(model, "blocks", None)
    if blocks is None or not all(hasattr(block, "norm") for block in blocks):
        return None
    if all(isinstance(block.norm, torch.nn.Identity) for block in blocks):
        return None
    was_training = model.training
    model.eval()
    try:
        steps = model.num_steps
        for block in blocks:
            norm = block.norm
            channels = block.conv.out_channels
            generator = torch.Generator().manual_seed(0)
            one_step = torch.randn((x.shape[0], channels) + tuple(x.shape[-2:]), generator=generator, dtype=x.dtype)
            y = norm(one_step.unsqueeze(0).expand(steps, *one_step.shape).contiguous())
            if not all(torch.equal(y[0], y[t]) for t in range(1, steps)):
                return False
        return True
    finally:
        model.train(was_training)


def measure_properties(model, x: torch.Tensor, controller=None, split_step: int | None = None) -> dict[str, bool | None]:
    """Measure, on a (trained) spiking network, the properties a comparison table claims.

    ``x``: static images ``[B, C, H, W]`` (validation images), presented at every step as a
    sequence. ``controller``: the AHSAR controller attached to ``model``, if any (its state is
    restored between passes like the model's). Returns:

    * ``causal_training`` / ``causal_evaluation``: replacing the input at steps ``>= k``
      (``k = split_step``, default ``T // 2``) by other images leaves every layer's currents
      and spikes at steps ``< k`` unchanged, in training / evaluation mode;
    * ``batch_dependent_training`` / ``batch_dependent_evaluation``: replacing every other
      sample of the batch changes the first sample's currents or spikes;
    * ``same_map_every_step``: :func:`same_map_at_every_step` (None without normalisation layers).

    Two passes of the same mode run with the same state (it is restored after each training
    pass), so differences come from the inputs only. The model is left unchanged.
    """
    if x.dim() != 4 or x.shape[0] < 2:
        raise ValueError(f"measure_properties: expected static images [B, C, H, W] with B >= 2, got {tuple(x.shape)}")
    from .inhibition import circuits

    if any(not circuit.initialised for circuit in circuits(model)):
        raise ValueError(
            "measure_properties: the model's E-I circuits are not initialised yet (E-I Init would run on the "
            "first measured batch); train it or call inhibition.ei_init(model, x) first"
        )
    steps = model.num_steps
    k = steps // 2 if split_step is None else split_step
    if not 0 < k < steps:
        raise ValueError(f"measure_properties: split_step must be in 1..{steps - 1}, got {k}")
    sequence = x.unsqueeze(0).expand(steps, *x.shape).contiguous()
    other = x.roll(1, dims=0).flip(0)  # other images of the same batch, in another order
    future = sequence.clone()
    future[k:] = other
    neighbours = sequence.clone()
    neighbours[:, 1:] = other[1:]
    result = {}
    for mode, training in (("training", True), ("evaluation", False)):
        base = _layer_records(model, sequence, training, controller)
        changed_future = _layer_records(model, future, training, controller)
        changed_neighbours = _layer_records(model, neighbours, training, controller)
        result[f"causal_{mode}"] = _same(base, changed_future, steps=slice(0, k))
        result[f"batch_dependent_{mode}"] = not _same(base, changed_neighbours, samples=slice(0, 1))
    result["same_map_every_step"] = same_map_at_every_step(model, x)
    return result
