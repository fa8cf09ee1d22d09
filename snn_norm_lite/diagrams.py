"""Explanatory figures of the primer: a LIF neuron's trace, the unrolled graph, the reference network.

Each figure is drawn from the package's own objects, so the book shows what the code does:

* :func:`lif_trace_figure` runs :class:`~snn_norm_lite.neurons.MultiStepLeaky` (subtractive
  reset) on one input current per panel and reads its membrane with
  :func:`~snn_norm_lite.neurons.membrane_potentials`; a hard-reset neuron (snntorch's
  ``Leaky(reset_mechanism="zero")``) is drawn beside it for comparison.
* :func:`unrolled_graph_figure` draws one neuron unrolled over a few steps, with the forward
  edges of the recurrence ``u_t = beta u_{t-1} + I_t - V_th s_{t-1}`` and the path a gradient
  takes back in time.
* :func:`reference_network_stages` gives the tensor shape between every two stages of the
  reference spiking network from its arguments, :func:`record_stages` records the same shapes
  from a real forward pass (forward hooks), and :func:`reference_network_figure` draws the
  network with the shapes it is given.

>>> reference_network_stages(depth=2, width=4, num_steps=3, batch_size=5)["block 1"]
(3, 5, 4, 8, 8)
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import snntorch
import torch
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from torch import nn

from .checks import check_floating, check_positive_int, check_positive_number, check_unit_interval
from .neurons import MultiStepLeaky, membrane_potentials

# The edges of the reference network's drawing, in order: the tensor that leaves each box.
STAGES = ("image", "encoded", "block 1", "block 1 conv", "pool", "last block", "read-out", "logits")


def hard_reset_membranes(x: torch.Tensor, beta: float, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes and membranes of snntorch's hard-reset LIF neuron on ``x`` ``[T, ...]``.

    ``snntorch.Leaky(reset_mechanism="zero")``: after a spike the membrane restarts from zero
    instead of losing ``V_th``, i.e. ``u_t = beta u_{t-1} (1 - s_{t-1}) + I_t`` (the reset
    is on the membrane snntorch carries from step to step).

    >>> spikes, membranes = hard_reset_membranes(torch.full((4, 1), 0.6), beta=0.5, threshold=1.0)
    >>> membranes.flatten(), spikes.flatten()                 # 0.6, 0.9, 1.05 (fires), then 0.6 again
    (tensor([0.6000, 0.9000, 1.0500, 0.6000]), tensor([0., 0., 1., 0.]))
    """
    check_floating(x, "hard_reset_membranes")
    beta = check_unit_interval(beta, "beta", "hard_reset_membranes", closed_low=True)
    threshold = check_positive_number(threshold, "threshold", "hard_reset_membranes")
    leaky = snntorch.Leaky(beta=beta, threshold=threshold, reset_mechanism="zero")
    mem = torch.zeros_like(x[0])
    spikes, membranes = [], []
    with torch.no_grad():
        for t in range(x.shape[0]):
            spike, mem = leaky(x[t], mem)  # mem: the u_t that decided this step's spike
            spikes.append(spike.to(x.dtype))
            membranes.append(mem)
    return torch.stack(spikes), torch.stack(membranes)


def lif_trace_figure(inputs: dict, beta: float = 0.9, threshold: float = 1.0) -> plt.Figure:
    """One panel per input current ``[T]``: membrane, threshold, spikes of the package's neuron.

    Each panel shows the input current ``I_t`` (grey bars), the membrane ``u_t`` of
    :class:`~snn_norm_lite.neurons.MultiStepLeaky` (subtractive reset, solid), its spikes (dots
    on the threshold line), and the membrane of a hard-reset neuron with the same ``beta`` and
    ``V_th`` (dashed). The legend gives each neuron's firing rate (spikes per step).

    >>> fig = lif_trace_figure({"constant": torch.full((20,), 0.3)}, beta=0.9, threshold=1.0)
    >>> len(fig.axes)
    1
    >>> lif_trace_figure({"constant": torch.full((2, 20), 0.3)})
    Traceback (most recent call last):
        ...
    ValueError: lif_trace_figure: every input must be a 1-D current [T], got 'constant' of shape (2, 20)
    """
    if not isinstance(inputs, dict) or not inputs:
        raise TypeError(f"lif_trace_figure: inputs must be a non-empty dict of label -> current [T], got {inputs!r}")
    for label, current in inputs.items():
        check_floating(current, "lif_trace_figure")
        if current.dim() != 1 or current.numel() == 0:
            raise ValueError(
                f"lif_trace_figure: every input must be a 1-D current [T], got {label!r} of shape {tuple(current.shape)}"
            )
    neuron = MultiStepLeaky(beta=beta, threshold=threshold)
    fig, axes = plt.subplots(1, len(inputs), figsize=(5.5 * len(inputs), 3.4), squeeze=False)
    for ax, (label, current) in zip(axes[0], inputs.items()):
        x = current.reshape(-1, 1)
        spikes, membranes = membrane_potentials(neuron, x)
        hard_spikes, hard_membranes = hard_reset_membranes(x, beta, threshold)
        steps = torch.arange(len(current)).numpy()
        ax.bar(steps, current.detach().numpy(), color="0.85", width=0.8, label="input current $I_t$")
        ax.plot(steps, membranes.flatten().numpy(), "-", color="C0", label=f"$u_t$, subtractive reset (rate {spikes.mean():.2f})")
        ax.plot(steps, hard_membranes.flatten().numpy(), "--", color="C1", label=f"$u_t$, hard reset (rate {hard_spikes.mean():.2f})")
        fired = (spikes.flatten() > 0).numpy()
        ax.plot(steps[fired], [threshold] * int(fired.sum()), "o", color="C3", ms=4, label="spike (subtractive)")
        ax.axhline(threshold, color="C3", lw=0.8, ls=":")
        ax.set_xlabel("time step t")
        ax.set_title(f"{label}: beta = {beta:g}, V_th = {threshold:g}", fontsize=10)
        ax.legend(fontsize=7, loc="upper right")
    axes[0][0].set_ylabel("membrane potential")
    fig.tight_layout()
    return fig


def _box(ax, x, y, text, width=2.2, height=0.6, color="#dbe9f6"):
    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.03",
                                facecolor=color, edgecolor="0.3"))
    ax.text(x, y, text, ha="center", va="center", fontsize=9)


def _arrow(ax, start, end, style="-|>", color="0.2", dashed=False, rad=0.0):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=12, color=color,
                                 linestyle="--" if dashed else "-", connectionstyle=f"arc3,rad={rad}"))


def unrolled_graph_figure(num_steps: int = 3) -> plt.Figure:
    """One LIF neuron unrolled over ``num_steps`` steps: the graph that BPTT differentiates.

    Nodes: input current ``I_t``, membrane ``u_t``, spike ``s_t``. Solid edges are the forward
    pass (``I_t -> u_t``, ``beta``: ``u_{t-1} -> u_t``, ``H``: ``u_t -> s_t``; the reset
    ``s_{t-1} -> u_t`` is grey: it carries no gradient in the package). Dashed red edges are
    the gradient's way back: through the surrogate at every spike and through ``beta`` from
    every membrane to the one before.

    >>> len(unrolled_graph_figure(3).axes)
    1
    """
    num_steps = check_positive_int(num_steps, "num_steps", "unrolled_graph_figure")
    fig, ax = plt.subplots(figsize=(2.6 * num_steps + 1.2, 3.6))
    for t in range(num_steps):
        x = 2.6 * t
        _box(ax, x, 0.0, f"$I_{t}$", width=0.9, color="#eeeeee")
        _box(ax, x, 1.4, f"$u_{t}$", width=0.9)
        _box(ax, x, 2.8, f"$s_{t}$", width=0.9, color="#f8dcdc")
        _arrow(ax, (x, 0.32), (x, 1.08))
        _arrow(ax, (x - 0.15, 1.72), (x - 0.15, 2.48))
        ax.text(x - 0.3, 2.1, "$H$", ha="right", va="center", fontsize=9)
        _arrow(ax, (x + 0.15, 2.48), (x + 0.15, 1.72), color="C3", dashed=True)
        ax.text(x + 0.3, 2.1, "surrogate", ha="left", va="center", fontsize=8, color="C3")
        if t + 1 < num_steps:
            _arrow(ax, (x + 0.47, 1.5), (x + 2.13, 1.5))
            ax.text(x + 1.3, 1.62, r"$\beta$", ha="center", va="bottom", fontsize=9)
            _arrow(ax, (x + 2.13, 1.25), (x + 0.47, 1.25), color="C3", dashed=True)
            ax.text(x + 1.3, 1.12, r"$\times\beta$", ha="center", va="top", fontsize=8, color="C3")
            _arrow(ax, (x + 0.47, 2.7), (x + 2.13, 1.65), color="0.65")
            ax.text(x + 1.45, 2.35, r"reset $-V_{th}s_t$", ha="left", va="center", fontsize=8, color="0.5")
    ax.text(2.6 * (num_steps - 1) + 0.6, 3.35, "forward: solid;  gradient (backward): dashed", ha="right", fontsize=8)
    ax.set_xlim(-0.8, 2.6 * (num_steps - 1) + 0.8)
    ax.set_ylim(-0.5, 3.6)
    ax.axis("off")
    fig.tight_layout()
    return fig


def _check_depth_two(depth, caller: str) -> int:
    depth = check_positive_int(depth, "depth", caller)
    if depth < 2:
        raise ValueError(f"{caller}: the drawing shows block 1 and blocks 2..L, so depth must be >= 2, got {depth}")
    return depth


def reference_network_stages(
    depth: int,
    width: int,
    num_steps: int,
    batch_size: int,
    in_channels: int = 1,
    image_size: int = 8,
    num_classes: int = 10,
) -> dict[str, tuple[int, ...]]:
    """The shape of the tensor after each stage of the reference spiking network, from its arguments.

    With ``T`` steps, batch ``B``, ``C`` input channels, ``S x S`` images, ``W`` channels per
    block, ``K`` classes (keys as in :data:`STAGES`)::

        image [B, C, S, S] -> encoded [T, B, C, S, S] -> block 1 [T, B, W, S, S]
        (its convolution sees the time-merged batch: block 1 conv [T*B, W, S, S])
        -> pool [T, B, W, S/2, S/2] -> last block [T, B, W, S/2, S/2]
        -> read-out [T, B, K] -> logits [B, K] (mean over T)

    >>> stages = reference_network_stages(depth=6, width=32, num_steps=8, batch_size=64)
    >>> stages["block 1 conv"], stages["read-out"], stages["logits"]
    ((512, 32, 8, 8), (8, 64, 10), (64, 10))
    >>> reference_network_stages(depth=1, width=32, num_steps=8, batch_size=64)
    Traceback (most recent call last):
        ...
    ValueError: reference_network_stages: the drawing shows block 1 and blocks 2..L, so depth must be >= 2, got 1
    """
    caller = "reference_network_stages"
    _check_depth_two(depth, caller)
    w, t, b, c, s, k = (
        check_positive_int(v, name, caller)
        for v, name in ((width, "width"), (num_steps, "num_steps"), (batch_size, "batch_size"),
                        (in_channels, "in_channels"), (image_size, "image_size"), (num_classes, "num_classes"))
    )
    if s % 2:
        raise ValueError(f"{caller}: image_size must be even (the network pools by 2), got {s}")
    return {
        "image": (b, c, s, s),
        "encoded": (t, b, c, s, s),
        "block 1": (t, b, w, s, s),
        "block 1 conv": (t * b, w, s, s),
        "pool": (t, b, w, s // 2, s // 2),
        "last block": (t, b, w, s // 2, s // 2),
        "read-out": (t, b, k),
        "logits": (b, k),
    }


def record_stages(model: nn.Module, images: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """The same shapes as :func:`reference_network_stages`, recorded by hooks in a forward pass.

    ``model`` is a reference spiking network (``models.build_snn``; it has ``blocks`` with a
    ``conv`` in the first, and ``readout``) of depth >= 2; ``images`` a static batch. The hooks
    are removed afterwards; the model runs in evaluation mode without gradients and is left in
    the mode it was in.

    >>> from snn_norm_lite.models import build_snn
    >>> record_stages(build_snn("bn", depth=2, width=4, num_steps=3), torch.rand(5, 1, 8, 8))["pool"]
    (3, 5, 4, 4, 4)
    """
    caller = "record_stages"
    if not isinstance(model, nn.Module) or not all(hasattr(model, a) for a in ("blocks", "readout")):
        raise TypeError(f"{caller}: expected a reference spiking network (models.build_snn), got {type(model).__name__}")
    _check_depth_two(len(model.blocks), caller)
    shapes: dict[str, tuple[int, ...]] = {}

    def before(key):
        return lambda module, args: shapes.setdefault(key, tuple(args[0].shape)) and None

    def after(key):
        return lambda module, args, output: shapes.setdefault(key, tuple(output.shape)) and None

    first, second, last = model.blocks[0], model.blocks[1], model.blocks[-1]
    handles = [
        model.register_forward_pre_hook(before("image")),
        first.register_forward_pre_hook(before("encoded")),
        first.register_forward_hook(after("block 1")),
        first.conv.register_forward_hook(after("block 1 conv")),
        second.register_forward_pre_hook(before("pool")),
        last.register_forward_hook(after("last block")),
        model.readout.register_forward_hook(after("read-out")),
        model.register_forward_hook(after("logits")),
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return {key: shapes[key] for key in STAGES}


def _shape_text(shape) -> str:
    return "[" + ", ".join(str(n) for n in shape) + "]"


def reference_network_figure(stages: dict, depth: int) -> plt.Figure:
    """Draw the reference spiking network top to bottom, each arrow labelled with its tensor's shape.

    ``stages`` maps the keys of :data:`STAGES` to shapes (from :func:`reference_network_stages`
    or :func:`record_stages`); ``depth`` is the number of blocks ``L``.

    >>> fig = reference_network_figure(reference_network_stages(6, 32, 8, 64), depth=6)
    >>> len(fig.axes)
    1
    """
    depth = _check_depth_two(depth, "reference_network_figure")
    if not isinstance(stages, dict) or set(stages) != set(STAGES):
        raise ValueError(f"reference_network_figure: stages must have exactly the keys {STAGES}, got {stages!r}")
    rest = "block 2" if depth == 2 else f"blocks 2..{depth}"
    boxes = [
        ("input image (static)", "#eeeeee", "image"),
        ("direct encoding: the same image at each of the T steps", "#eeeeee", "encoded"),
        ("block 1:  conv3x3  ->  norm  ->  LIF", "#dbe9f6", "block 1"),
        ("2x2 average pool (each step)", "#e5f2df", "pool"),
        (f"{rest}:  conv3x3  ->  norm  ->  LIF", "#dbe9f6", "last block"),
        ("flatten each step  ->  linear read-out", "#f8ecd4", "read-out"),
        ("mean over the T steps", "#f8ecd4", "logits"),
    ]
    fig, ax = plt.subplots(figsize=(8.0, 0.95 * len(boxes) + 0.6))
    for i, (text, color, key) in enumerate(boxes):
        y = -1.0 * i
        _box(ax, 0.0, y, text, width=5.2, height=0.5, color=color)
        _arrow(ax, (0.0, y - 0.25), (0.0, y - 0.75))
        ax.text(0.15, y - 0.5, _shape_text(stages[key]), ha="left", va="center", fontsize=9, family="monospace")
    ax.text(2.75, -2.0, f"the convolution sees the\ntime-merged batch\n{_shape_text(stages['block 1 conv'])}",
            ha="left", va="center", fontsize=8, color="0.35")
    ax.text(0.0, -1.0 * len(boxes) - 0.05, "logits", ha="center", va="center", fontsize=9)
    ax.set_xlim(-2.8, 4.6)
    ax.set_ylim(-1.0 * len(boxes) - 0.3, 0.4)
    ax.axis("off")
    fig.tight_layout()
    return fig
