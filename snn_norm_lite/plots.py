"""Figures for the chapters: each function takes results and returns a matplotlib Figure.

Functions never train or measure anything themselves (that is ``experiments`` and
``probes``), so a widget can redraw a figure without re-running an experiment.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

ANN_COLOUR, SNN_COLOUR = "#4C72B0", "#DD8452"
RATE_FLOOR = 1e-4  # rates below this are drawn at the floor of a log axis (labelled "silent")


def headline_bars(result) -> plt.Figure:
    """Test accuracy of ANN and SNN for each normaliser, as grouped bars (a HeadlineResult).

    Bars are means over seeds; error bars span the standard deviation over seeds. A method
    without a conventional-network form (no ANN entry) has an SNN bar only.
    """
    names = list(result.accuracy["snn"])
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for offset, kind, label, colour in ((-0.2, "ann", "ANN (ReLU)", ANN_COLOUR), (0.2, "snn", "SNN (LIF)", SNN_COLOUR)):
        present = [i for i, n in enumerate(names) if n in result.accuracy[kind]]
        summaries = [result.accuracy[kind][names[i]] for i in present]
        ax.bar(x[present] + offset, [s.mean for s in summaries], 0.4, yerr=[s.std for s in summaries], capsize=3,
               label=label, color=colour)
    ax.axhline(10, color="grey", linestyle=":", linewidth=1, label="chance (10 %)")
    ax.set_xticks(x, names)
    ax.set_ylabel(f"test accuracy (%), mean ± std of {len(result.seeds)} seeds")
    ax.set_ylim(0, 100)
    depth = result.config.get("depth")
    ax.set_title(f"digits, depth {depth}: accuracy with and without normalisation", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def _floored(rates):
    return np.maximum(np.asarray(rates, dtype=float), RATE_FLOOR)


def depth_transition(sweep, selected_depth: int | None = None) -> plt.Figure:
    """Left: final accuracy against depth (ANN and SNN). Right: SNN firing rate per layer.

    ``sweep`` is an ``experiments.DepthSweep``. The right panel shows the rates before
    training for every depth (faint) and, for ``selected_depth``, before and after training.
    """
    depths = sweep.depths
    selected_depth = depths[-1] if selected_depth is None else selected_depth
    if selected_depth not in depths:
        raise ValueError(f"depth_transition: selected_depth {selected_depth} is not one of the swept depths {depths}")
    index = depths.index(selected_depth)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for kind, marker, colour, label in (("ann", "o-", ANN_COLOUR, "ANN"), ("snn", "s-", SNN_COLOUR, "SNN")):
        if kind in sweep.test_accuracy:
            summaries = sweep.test_accuracy[kind]
            left.errorbar(depths, [s.mean for s in summaries], yerr=[s.std for s in summaries], fmt=marker,
                          capsize=3, color=colour, label=f"{label}, no normalisation")
    left.axhline(10, color="grey", linestyle=":", linewidth=1, label="chance")
    left.axvline(selected_depth, color="black", alpha=0.15, linewidth=6)
    left.set_xlabel("depth (convolution blocks)")
    left.set_ylabel(f"test accuracy (%), {len(sweep.seeds)} seeds")
    left.set_ylim(0, 100)
    left.set_xticks(depths)
    left.legend(fontsize=8)
    for d, rates in zip(depths, sweep.rates_at_init):
        right.plot(range(1, d + 1), _floored(rates), color="grey", alpha=0.25)
    right.plot(range(1, selected_depth + 1), _floored(sweep.rates_at_init[index]), "o-", color=SNN_COLOUR, label="before training")
    right.plot(range(1, selected_depth + 1), _floored(sweep.rates_trained[index]), "s--", color="black", label="after training")
    right.set_yscale("log")
    right.set_ylim(RATE_FLOOR / 2, 1)
    right.set_xlabel("layer")
    right.set_ylabel("firing rate (spikes / neuron / step)")
    right.set_title(f"SNN of depth {selected_depth} (seed {sweep.seeds[0]}); rates < {RATE_FLOOR:g} at the floor", fontsize=9)
    right.legend(fontsize=8)
    fig.tight_layout()
    return fig


def layer_rates(rates_by_label: dict[str, Sequence[float]], title: str = "") -> plt.Figure:
    """Firing rate per layer (log axis) for one or more labelled networks."""
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for label, rates in rates_by_label.items():
        ax.plot(range(1, len(rates) + 1), _floored(rates), "o-", label=label)
    ax.set_yscale("log")
    ax.set_ylim(RATE_FLOOR / 2, 1)
    ax.set_xlabel("layer")
    ax.set_ylabel("firing rate (spikes / neuron / step)")
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def learning_curves(histories: dict, title: str = "") -> plt.Figure:
    """Validation accuracy per epoch for several labelled ``training.History`` objects.

    A label may also map to a list of histories (one per seed, same number of epochs): the
    line is then their mean and a shaded band spans their minimum to maximum.
    The curves are validation curves: the test set is measured once, after training, and is
    never plotted per epoch.
    """
    for label, history in histories.items():  # check before drawing, so an error leaves no figure open
        if isinstance(history, (list, tuple)) and (not history or len({len(h.val_accuracy) for h in history}) != 1):
            raise ValueError(f"learning_curves: {label!r} needs histories with the same number of epochs")
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for label, history in histories.items():
        if isinstance(history, (list, tuple)):
            curves = np.asarray([h.val_accuracy for h in history], dtype=float)
            epochs = range(1, curves.shape[1] + 1)
            (line,) = ax.plot(epochs, curves.mean(axis=0), "o-", label=f"{label} (mean of {len(curves)} seeds)")
            ax.fill_between(epochs, curves.min(axis=0), curves.max(axis=0), color=line.get_color(), alpha=0.2)
            continue
        epochs = range(1, len(history.val_accuracy) + 1)
        ax.plot(epochs, history.val_accuracy, "o-", label=label)
    ax.axhline(10, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("validation accuracy (%)")
    ax.set_ylim(0, 100)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def warmup_agreement(steps, discrepancy, mean_error, std_error, title: str = "") -> plt.Figure:
    """A normaliser's agreement with BatchNorm against the number of warm-up batches."""
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    ax.plot(steps, discrepancy, "o-", label="mean |y - y_BN|")
    ax.plot(steps, mean_error, "s-", label="max |channel mean|")
    ax.plot(steps, std_error, "^-", label="max |channel std - 1|")
    ax.set_yscale("log")
    ax.set_xlabel("warm-up batches")
    ax.set_ylabel("error (log scale)")
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig



FLAT_TOLERANCE = 1e-6  # a panel whose values span less than this (relative) is drawn as constant


def flat_axis_limits(values, tolerance: float = FLAT_TOLERANCE) -> tuple[float, float] | None:
    """Y-limits for values that are constant up to rounding, or None when they really vary.

    A panel whose values span less than ``tolerance * max(1, max |value|)`` would otherwise be
    auto-scaled onto floating-point noise (an axis spanning 1e-8 that looks like structure).
    The limits returned centre the constant with a half-width of ``max(0.5, |centre| / 2)``.
    """
    values = np.asarray(values, dtype=float)
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError(f"flat_axis_limits: needs a non-empty array of finite values, got {values!r}")
    low, high = float(values.min()), float(values.max())
    if high - low >= tolerance * max(1.0, float(np.abs(values).max())):
        return None
    centre = (low + high) / 2
    half = max(0.5, abs(centre) / 2)
    return centre - half, centre + half


def per_step_statistics(
    stats_by_label: dict, title: str = "", selected_step: int | None = None, share_columns: bool = False
) -> plt.Figure:
    """Input-current mean, variance and firing rate of every layer against the time step.

    ``stats_by_label`` maps a label (one row of panels each) to what
    ``probes.per_step_statistics`` returns (tensors ``[L, T]``). ``share_columns=True`` gives
    every row the same y-axis per column, so rows can be compared by eye. A panel whose values
    are constant up to rounding (:func:`flat_axis_limits`) is drawn on sensible limits and
    labelled as constant, never auto-scaled onto the rounding noise.
    """
    names = (("current_mean", "input current: mean"), ("current_var", "input current: variance"), ("rate", "firing rate"))
    rows = len(stats_by_label)
    fig, axes = plt.subplots(rows, 3, figsize=(11, 3.0 * rows), squeeze=False, sharey="col" if share_columns else False)
    for row, (label, stats) in enumerate(stats_by_label.items()):
        layers, steps = stats["rate"].shape
        colours = plt.cm.viridis(np.linspace(0, 0.9, layers))
        for ax, (key, panel_title) in zip(axes[row], names):
            values = stats[key].detach().cpu().numpy()
            for layer in range(layers):
                ax.plot(range(steps), values[layer], "o-", markersize=3, color=colours[layer], label=f"layer {layer + 1}")
            if selected_step is not None:
                ax.axvline(selected_step, color="black", alpha=0.15, linewidth=6)
            if flat_axis_limits(values) is not None:
                ax.text(0.5, 0.9, f"constant to {FLAT_TOLERANCE:g}", transform=ax.transAxes, ha="center",
                        fontsize=7, color="grey")
            ax.set_title(f"{label}: {panel_title}", fontsize=9)
            if row == rows - 1:
                ax.set_xlabel("time step t")
        axes[row][0].legend(fontsize=7)
    for column, (key, _) in enumerate(names):  # never auto-scale a flat panel (or column) onto rounding noise
        groups = [list(range(rows))] if share_columns else [[row] for row in range(rows)]
        for group in groups:
            rows_stats = list(stats_by_label.values())
            values = np.concatenate([np.ravel(rows_stats[row][key].detach().cpu().numpy()) for row in group])
            limits = flat_axis_limits(values)
            if limits is not None:
                axes[group[0]][column].set_ylim(*limits)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def per_step_parameters(values, ylabel: str, title: str = "", reference: float | None = 1.0) -> plt.Figure:
    """A learned per-step quantity (e.g. BNTT's mean gamma_t, TEBN's p_t), one line per layer.

    ``values``: array-like ``[L, T]``. ``reference`` draws a dotted horizontal line (the
    initial value, 1 by default; None for none).
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"per_step_parameters: values must be [layers, steps], got shape {values.shape}")
    layers, steps = values.shape
    colours = plt.cm.viridis(np.linspace(0, 0.9, layers))
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for layer in range(layers):
        ax.plot(range(steps), values[layer], "o-", markersize=4, color=colours[layer], label=f"layer {layer + 1}")
    if reference is not None:
        ax.axhline(reference, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("time step t")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def method_comparison(comparison, highlight: Sequence[str] | None = None, title: str = "") -> plt.Figure:
    """Every row of a ``comparison.MethodComparison``, side by side, in three panels.

    Left: test accuracy, bars at the mean over seeds with error bars of one standard deviation
    and a dot per seed (rows in ``highlight`` coloured, the others grey). Middle: validation
    accuracy per epoch of the highlighted rows (mean over seeds). Right: firing rate of each
    layer of the trained networks on validation images (mean over seeds; rates below
    ``RATE_FLOOR`` drawn at the floor). ``highlight`` None highlights every row; names that
    are not rows are an error. ``title`` (e.g. the budget) goes above the panels.
    """
    labels = list(comparison.labels)
    chosen = labels if highlight is None else list(highlight)
    unknown = [name for name in chosen if name not in labels]
    if unknown:
        raise ValueError(f"method_comparison: no row(s) {unknown}; rows: {', '.join(labels)}")
    palette = list(plt.cm.tab10.colors) + ["#000000"] + list(plt.cm.Dark2.colors)
    colours = {label: palette[i % len(palette)] for i, label in enumerate(labels)}
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(13, 3.9), gridspec_kw={"width_ratios": [1.5, 1, 1]})
    x = np.arange(len(labels))
    summaries = [comparison.summary(label) for label in labels]
    left.bar(x, [s.mean for s in summaries], yerr=[s.std for s in summaries], capsize=3,
             color=[colours[label] if label in chosen else "#DDDDDD" for label in labels])
    for i, s in enumerate(summaries):
        left.plot([i] * s.n, s.values, "k.", markersize=4)
    left.axhline(10, color="grey", linestyle=":", linewidth=1)
    left.set_xticks(x, labels, rotation=40, ha="right")
    left.set_ylabel(f"test accuracy (%), mean ± std of {len(comparison.seeds)} seeds")
    left.set_ylim(0, 100)
    for label in chosen:
        curves = np.asarray([h.val_accuracy for h in comparison.histories[label]], dtype=float)
        middle.plot(range(1, curves.shape[1] + 1), curves.mean(axis=0), "o-", markersize=3, color=colours[label], label=label)
        rates = _floored(comparison.mean_rates(label))
        right.plot(range(1, len(rates) + 1), rates, "o-", markersize=3, color=colours[label], label=label)
    middle.axhline(10, color="grey", linestyle=":", linewidth=1)
    epochs = max(len(h.val_accuracy) for runs in comparison.histories.values() for h in runs)
    middle.set_xlim(0.5, epochs + 0.5)
    middle.set_xlabel("epoch")
    middle.xaxis.set_major_locator(MaxNLocator(integer=True))
    middle.set_ylabel("validation accuracy (%), mean")
    middle.set_ylim(0, 100)
    right.set_yscale("log")
    right.set_ylim(RATE_FLOOR / 2, 1)
    right.set_xlabel("layer")
    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    right.set_ylabel("firing rate after training")
    right.legend(fontsize=7, ncol=2, loc="lower left")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def scale_and_rate_profiles(profiles: dict, title: str = "") -> plt.Figure:
    """Per layer: input-current scale ``std(I_l) / V_th`` (left) and firing rate (right).

    ``profiles`` maps a label to ``{"scale": [...], "rate": [...]}`` (what
    ``initialisation.layer_profile`` returns). Both axes are logarithmic; a dotted line marks
    ``std(I_l) = V_th``, and rates below ``RATE_FLOOR`` are drawn at the floor.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, profile in profiles.items():
        scale, rate = np.asarray(profile["scale"], dtype=float), profile["rate"]
        if len(scale) != len(rate):
            raise ValueError(f"scale_and_rate_profiles: {label!r} has {len(scale)} scales but {len(rate)} rates")
        layers = range(1, len(scale) + 1)
        (line,) = left.plot(layers, np.maximum(scale, 1e-3), "o-", markersize=4, label=label)
        right.plot(layers, _floored(rate), "o-", markersize=4, color=line.get_color(), label=label)
    left.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    left.set_yscale("log")
    left.set_ylim(1e-3, 10)
    left.set_ylabel("std of input current / threshold")
    right.set_yscale("log")
    right.set_ylim(RATE_FLOOR / 2, 1)
    right.set_ylabel(f"firing rate (rates < {RATE_FLOOR:g} at the floor)")
    for ax in (left, right):
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def scale_traces(result, labels: Sequence[str] | None = None, relative: bool = True) -> plt.Figure:
    """Each layer's current scale against the epoch, one panel per setup (mean over seeds).

    ``result`` is a ``scale_drift.ScaleDriftResult``; epoch 0 is before training. With
    ``relative`` (default) each layer is drawn relative to its own value before training,
    ``rho_l(epoch) / rho_l(0)`` (1: unchanged), which is what the drift measures; otherwise
    ``rho_l = std(I_l) / V_th`` itself. All panels share one linear y-axis starting at 0.
    """
    labels = list(result.runs) if labels is None else list(labels)
    unknown = [label for label in labels if label not in result.runs]
    if unknown:
        raise ValueError(f"scale_traces: no setup(s) {unknown}; setups: {', '.join(result.runs)}")
    fig, axes = plt.subplots(1, len(labels), figsize=(3.3 * len(labels), 3.3), sharey=True, squeeze=False)
    top = 0.0
    for ax, label in zip(axes[0], labels):
        scales = np.asarray(result.mean_scales(label), dtype=float)  # [epochs + 1, layers]
        if relative:
            scales = scales / scales[0]
        colours = plt.cm.viridis(np.linspace(0, 0.9, scales.shape[1]))
        for layer in range(scales.shape[1]):
            ax.plot(range(scales.shape[0]), scales[:, layer], "o-", markersize=3, color=colours[layer],
                    label=f"layer {layer + 1}")
        if relative:
            ax.axhline(1.0, color="grey", linestyle=":", linewidth=1)
        top = max(top, float(scales.max()))
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("epoch (0: before training)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    quantity = "scale / scale before training" if relative else "std of input current / threshold"
    axes[0][0].set_ylabel(f"{quantity}\n(mean of {len(result.seeds)} seeds)")
    axes[0][0].set_ylim(0, max(1.5, 1.1 * top))
    axes[0][-1].legend(fontsize=6, ncol=2, loc="lower right")
    fig.tight_layout()
    return fig
