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

    Bars are means over seeds; error bars span the standard deviation over seeds.
    """
    names = list(result.ann)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for offset, kind, label, colour in ((-0.2, "ann", "ANN (ReLU)", ANN_COLOUR), (0.2, "snn", "SNN (LIF)", SNN_COLOUR)):
        summaries = [result.accuracy[kind][n] for n in names]
        ax.bar(x + offset, [s.mean for s in summaries], 0.4, yerr=[s.std for s in summaries], capsize=3,
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

    The curves are validation curves: the test set is measured once, after training, and is
    never plotted per epoch.
    """
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for label, history in histories.items():
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



def per_step_statistics(stats_by_label: dict, title: str = "", selected_step: int | None = None) -> plt.Figure:
    """Input-current mean, variance and firing rate of every layer against the time step.

    ``stats_by_label`` maps a label (one row of panels each) to what
    ``probes.per_step_statistics`` returns (tensors ``[L, T]``).
    """
    names = (("current_mean", "input current: mean"), ("current_var", "input current: variance"), ("rate", "firing rate"))
    rows = len(stats_by_label)
    fig, axes = plt.subplots(rows, 3, figsize=(11, 3.0 * rows), squeeze=False)
    for row, (label, stats) in enumerate(stats_by_label.items()):
        layers, steps = stats["rate"].shape
        colours = plt.cm.viridis(np.linspace(0, 0.9, layers))
        for ax, (key, panel_title) in zip(axes[row], names):
            values = stats[key].detach().cpu().numpy()
            for layer in range(layers):
                ax.plot(range(steps), values[layer], "o-", markersize=3, color=colours[layer], label=f"layer {layer + 1}")
            if selected_step is not None:
                ax.axvline(selected_step, color="black", alpha=0.15, linewidth=6)
            ax.set_title(f"{label}: {panel_title}", fontsize=9)
            if row == rows - 1:
                ax.set_xlabel("time step t")
        axes[row][0].legend(fontsize=7)
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
