"""Synaptic operations: what a network computes per image, counted on a real batch.

The energy argument for spiking hardware: a spike is a 0 or a 1, so the product ``w * s`` of a
weight and an input spike is either nothing or ``w`` itself. A connection driven by spikes
therefore only *accumulates* (adds ``w`` to the target's sum), and only where a spike arrived;
a connection driven by real numbers must multiply first. :func:`synaptic_operations` runs a
model once on a batch and counts, for every connection layer (each ``nn.Conv2d`` and
``nn.Linear``, and both pathways of every E-I circuit of :mod:`snn_norm_lite.inhibition`),
how many operations it performs, counting only non-zero inputs::

    Linear:  ops = (number of non-zero input elements) * out_features
    Conv2d:  ops = sum( conv2d(1[x != 0], ones_like(W), stride, padding, dilation, groups) )

The convolution count is each non-zero input element times the number of outputs its kernel
reaches (fewer at the borders, where part of the kernel falls on the zero padding). An
operation is an **accumulate (AC)** when the layer's input is binary (every element 0 or 1:
spikes) and a **multiply-accumulate (MAC)** otherwise: the analogue image that enters the first
convolution under direct encoding, average-pooled spikes, and the inhibitory pathway of an E-I
circuit (its inhibitory units do not spike). The decision is made per call of the layer.

An E-I circuit (``EIConv2d``, ``EILinear``) runs its own ``F.conv2d`` / ``F.linear`` calls, so
it is counted from its input here, as two connections::

    drive:       W_EE and W_IE on the input x          ops = count(x; n_E + n_I outputs)    AC or MAC as x
    inhibition:  W_EI on s_I = W_IE x (analogue)        ops = nnz(s_I) * n_E * k             MAC
                 (k = 2: I_sub and I_div, two pointwise maps; k = 1 for the read-out, which has no I_div)

Counts are totals over the batch and over the T steps (the network runs its convolutions on
the time-merged batch ``[T*B, ...]``); :meth:`SynapticOperations.per_image` divides by the
number of images B (summed over the steps: the cost of classifying one image),
:meth:`SynapticOperations.per_image_per_step` also by T. Not counted: the neuron updates (the
same for every method), biases, and the average pool (a fixed sum of 4 inputs per output).

**The normaliser's cost at inference**, a separate column (never added to AC or MAC): what each
normaliser still computes after everything foldable is folded, in operations per neuron and
step it feeds, times the neurons and steps of the batch. The rule, by layer type, as this
package implements it (conservative: when in doubt, counted):

* BatchNorm and tdBN (``nn.BatchNorm2d`` and subclasses), the single-state ``HomeostaticNorm``:
  one affine map for every step, which folds into the convolution before it: **0**.
* MPBN (``MPBNLeaky``, ``FoldedMPBNLeaky``): the membrane affine folds into one threshold per
  channel (``MPBNLeaky.fold``), the BatchNorm before it into the convolution: **0**.
* BNTT, TEBN, TAB (``PerStepNorm``) and the per-step homeostatic layer
  (``TemporalHomeostaticNorm2d``): a different affine map at each step; the T steps share one
  convolution, so it cannot fold into it: **1** multiply-add per neuron and step.
* E-I circuit (hidden layers): per excitatory neuron and step, the division by ``I_div``, the
  gain and bias ``g_E * (.) + b_E`` (one multiply-add) and the stabiliser's test for a zero
  divisor: **3**. Its synapses (both pathways) are counted above as connections. The E-I
  read-out (``output=True``) has no division, gain or bias: **0**.
* Identity layers (no normalisation): nothing. Any other normalisation layer (a ``_NormBase``,
  ``GroupNorm``, ``LayerNorm`` or ``LocalResponseNorm`` not listed, or any module a block holds
  as its ``norm``) has no rule here: :func:`synaptic_operations` refuses it with a
  ``ValueError``, or, with ``unknown_normaliser="nan"``, reports its cost as NaN (unknown, so
  the total is NaN too, never a silent 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from .checks import check_floating, check_nonnegative_int, check_positive_int
from .inhibition import EIConv2d, _EICircuit
from .norms.homeostatic import HomeostaticNorm, TemporalHomeostaticNorm2d
from .norms.mpbn import FoldedMPBNLeaky, MPBNLeaky
from .norms.step_statistics import PerStepNorm
from .probes import _run_in_eval

# (layer types, operations per neuron and step at inference, the rule in words); first match wins.
NORMALISER_RULES: tuple[tuple[tuple[type, ...], int, str], ...] = (
    ((MPBNLeaky, FoldedMPBNLeaky), 0, "membrane affine folds into per-channel thresholds"),
    ((PerStepNorm, TemporalHomeostaticNorm2d), 1, "a per-step affine: one multiply-add per neuron and step"),
    ((nn.BatchNorm2d, HomeostaticNorm), 0, "one affine for all steps: folds into the convolution"),
)
EI_HIDDEN_OPS = 3  # division, multiply-add (g_E, b_E), zero-divisor test, per excitatory neuron and step
_UNRULED_NORMS = (_NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


@dataclass(frozen=True)
class ConnectionCount:
    """One connection layer's operations on the batch (totals over images and steps).

    ``name``: the module's path in the model (an E-I circuit's two pathways get the suffixes
    ``":drive"`` and ``":inhibition"``); ``kind``: ``"Conv2d"``, ``"Linear"``, ``"E-I drive"``
    or ``"E-I inhibition"``; ``ac``: operations on binary input; ``mac``: on analogue input.
    """

    name: str
    kind: str
    ac: float
    mac: float


@dataclass(frozen=True)
class NormaliserCost:
    """One normaliser's cost at inference: ``ops_per_neuron_step`` (the rule in
    :data:`NORMALISER_RULES`, in words in ``rule``) times the neurons and steps it fed: ``ops``."""

    name: str
    rule: str
    ops_per_neuron_step: int | None  # None: no rule (ops is then NaN)
    ops: float


@dataclass(frozen=True)
class SynapticOperations:
    """The operations of one pass over ``num_images`` images of ``num_steps`` steps each.

    ``ac``, ``mac`` and ``normaliser`` are totals over the batch and the steps.

    >>> ops = SynapticOperations((ConnectionCount("fc", "Linear", 12.0, 4.0),), (), num_images=2, num_steps=2)
    >>> ops.ac, ops.per_image(), ops.per_image_per_step()["ac"]
    (12.0, {'ac': 6.0, 'mac': 2.0, 'normaliser': 0.0}, 3.0)
    """

    connections: tuple[ConnectionCount, ...]
    normalisers: tuple[NormaliserCost, ...]
    num_images: int
    num_steps: int

    def __post_init__(self):
        check_positive_int(self.num_images, "num_images", "SynapticOperations")
        check_positive_int(self.num_steps, "num_steps", "SynapticOperations")

    @property
    def ac(self) -> float:
        """Accumulates, all layers, summed over the batch and the steps."""
        return float(sum(c.ac for c in self.connections))

    @property
    def mac(self) -> float:
        """Multiply-accumulates, all layers, summed over the batch and the steps."""
        return float(sum(c.mac for c in self.connections))

    @property
    def normaliser(self) -> float:
        """The normalisers' own operations at inference, summed over the batch and the steps."""
        return float(sum(n.ops for n in self.normalisers))

    def per_image(self) -> dict[str, float]:
        """``{"ac", "mac", "normaliser"}`` per image, summed over the T steps."""
        return {key: getattr(self, key) / self.num_images for key in ("ac", "mac", "normaliser")}

    def per_image_per_step(self) -> dict[str, float]:
        """:meth:`per_image` divided by the number of steps T."""
        return {key: value / self.num_steps for key, value in self.per_image().items()}

    def table(self) -> str:
        """One line per connection layer and per normaliser with a cost: operations per image,
        summed over the T steps; totals last."""
        w = max([12] + [len(c.name) + 2 for c in self.connections] + [len(n.name) + 2 for n in self.normalisers])
        lines = [f"per image, summed over T = {self.num_steps} steps ({self.num_images} images)",
                 f"{'layer':<{w}}{'kind':<16}{'AC':>12}{'MAC':>12}"]
        for c in self.connections:
            lines.append(f"{c.name:<{w}}{c.kind:<16}{c.ac / self.num_images:>12.0f}{c.mac / self.num_images:>12.0f}")
        totals = self.per_image()
        lines.append(f"{'total':<{w}}{'':<16}{totals['ac']:>12.0f}{totals['mac']:>12.0f}")
        for n in self.normalisers:
            if n.ops_per_neuron_step != 0:
                lines.append(f"{n.name:<{w}}normaliser: {n.ops / self.num_images:.0f} ops ({n.rule})")
        lines.append(f"normalisers at inference, total: {totals['normaliser']:.0f} ops per image")
        return "\n".join(lines)


def _is_binary(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all())


def conv_operations(x: torch.Tensor, conv: nn.Conv2d) -> float:
    """Operations of ``conv`` on ``x [N, C, H, W]``, counting non-zero inputs only: each non-zero
    input element times the outputs its kernel reaches (borders included), i.e.
    ``conv2d(1[x != 0], ones_like(W), stride, padding, dilation, groups).sum()``.

    >>> conv = nn.Conv2d(1, 2, 3, padding=1)
    >>> conv_operations(torch.ones(1, 1, 3, 3), conv)      # (4 corners x 4 + 4 edges x 6 + centre 9) x 2 channels
    98.0
    """
    name = "conv_operations"
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"{name}: expected an nn.Conv2d, got {type(conv).__name__}")
    if conv.padding_mode != "zeros":
        raise ValueError(f"{name}: counts zero padding only, got a convolution with padding_mode={conv.padding_mode!r}")
    check_floating(x, name)
    if x.dim() not in (3, 4):
        raise ValueError(f"{name}: expected an input [N, C, H, W] (or [C, H, W]), got shape {tuple(x.shape)}")
    ones = torch.ones(conv.weight.shape, dtype=torch.float64, device=x.device)
    reached = F.conv2d((x != 0).double(), ones, None, conv.stride, conv.padding, conv.dilation, conv.groups)
    return float(reached.sum())


def _split(x: torch.Tensor, ops: float) -> tuple[float, float]:
    return (ops, 0.0) if _is_binary(x) else (0.0, ops)


def _normaliser_rule(module: nn.Module):
    for types, ops, rule in NORMALISER_RULES:
        if isinstance(module, types):
            return ops, rule
    return None


@torch.no_grad()
def synaptic_operations(model: nn.Module, x: torch.Tensor, batch_dim: int | None = None,
                        num_steps: int | None = None, unknown_normaliser: str = "raise") -> SynapticOperations:
    """Run ``model`` once on ``x`` in evaluation mode and count its operations (module docstring).

    ``x``: what ``model`` takes, e.g. static images ``[B, C, H, W]`` for a reference spiking
    network (presented at every step) or a sequence ``[T, B, ...]``. ``batch_dim``: the dimension
    of ``x`` that holds the B images (default: 1 for a 5-dimensional ``x`` ``[T, B, C, H, W]``,
    else 0). ``num_steps``: T, used for per-step figures only (default: ``model.num_steps``,
    else ``x.shape[0]`` when ``batch_dim`` is 1, else 1). Hooks are removed and the model's
    training flag is restored afterwards; nothing else is changed (E-I circuits must be
    initialised already, so that E-I Init does not run on this batch). ``unknown_normaliser``:
    ``"raise"`` (a normalisation layer without a rule is a ``ValueError``) or ``"nan"`` (its
    cost, and the normaliser total, are NaN).

    A Linear layer on a binary input: 5 non-zero inputs reach 3 outputs each, 15 ACs for the
    batch of 2 images, 7.5 per image.

    >>> layer = nn.Linear(4, 3)
    >>> spikes = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    >>> ops = synaptic_operations(layer, spikes)
    >>> ops.ac, ops.mac, ops.per_image()["ac"]
    (15.0, 0.0, 7.5)
    >>> synaptic_operations(layer, 0.5 * spikes).mac                  # analogue input: multiply-accumulates
    15.0
    """
    name = "synaptic_operations"
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name}: model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: x must be a torch.Tensor, got {type(x).__name__}")
    check_floating(x, name)
    if batch_dim is None:
        batch_dim = 1 if x.dim() == 5 else 0
    batch_dim = check_nonnegative_int(batch_dim, "batch_dim", name)
    if batch_dim >= x.dim():
        raise ValueError(f"{name}: batch_dim must name a dimension of x (shape {tuple(x.shape)}), got {batch_dim}")
    num_images = x.shape[batch_dim]
    if num_images == 0:
        raise ValueError(f"{name}: x holds no images (size 0 along batch_dim {batch_dim}, shape {tuple(x.shape)})")
    if num_steps is None:
        num_steps = getattr(model, "num_steps", None) or (x.shape[0] if batch_dim == 1 else 1)
    num_steps = check_positive_int(num_steps, "num_steps", name)
    if unknown_normaliser not in ("raise", "nan"):
        raise ValueError(f"{name}: unknown_normaliser must be 'raise' or 'nan', got {unknown_normaliser!r}")

    connections: dict[str, list] = {}  # name -> [kind, ac, mac], in the order layers first run
    neuron_steps: dict[str, float] = {}  # per-step normalisers and E-I circuits: output elements

    def add(key: str, kind: str, ac: float, mac: float) -> None:
        entry = connections.setdefault(key, [kind, 0.0, 0.0])
        entry[1] += ac
        entry[2] += mac

    def on_conv(key):
        def hook(module, inputs, output):
            add(key, "Conv2d", *_split(inputs[0], conv_operations(inputs[0], module)))
        return hook

    def on_linear(key):
        def hook(module, inputs, output):
            ops = float((inputs[0] != 0).sum()) * module.out_features
            add(key, "Linear", *_split(inputs[0], ops))
        return hook

    def on_circuit(key):
        def hook(module, inputs, output):
            x_in = inputs[0]
            merged = x_in.flatten(0, 1) if x_in.dim() == module._sequence_rank else x_in
            drive_outputs = module.num_excitatory + module.num_inhibitory
            weight_ie = module.weight_ie.clamp(min=0)
            if isinstance(module, EIConv2d):
                ones = torch.ones((drive_outputs,) + tuple(module.weight_ee.shape[1:]), dtype=torch.float64,
                                  device=merged.device)
                drive = float(F.conv2d((merged != 0).double(), ones, None, module.stride, module.padding).sum())
                activity_i = F.conv2d(merged, weight_ie, stride=module.stride, padding=module.padding)
            else:  # EILinear
                drive = float((merged != 0).sum()) * drive_outputs
                activity_i = F.linear(merged, weight_ie)
            add(f"{key}:drive", "E-I drive", *_split(merged, drive))
            pathways = 1 if module.output else 2  # I_sub, and I_div in a hidden layer
            add(f"{key}:inhibition", "E-I inhibition", 0.0,
                float((activity_i != 0).sum()) * module.num_excitatory * pathways)
            neuron_steps[key] = neuron_steps.get(key, 0.0) + output.numel()
        return hook

    def on_norm(key):
        def hook(module, inputs, output):
            neuron_steps[key] = neuron_steps.get(key, 0.0) + output.numel()
        return hook

    held_as_norm = {id(norm) for m in model.modules() if isinstance(norm := getattr(m, "norm", None), nn.Module)}
    handles, rules, inside = [], {}, []
    try:  # every hook is removed, whatever is raised while they are registered or run
        for key, module in model.named_modules():
            key = key or type(module).__name__
            if any(key.startswith(prefix + ".") for prefix in inside):
                continue  # a part of a layer already counted as a whole (MPBN's membrane BatchNorm, ...)
            if isinstance(module, _EICircuit):
                if not module.initialised:
                    raise ValueError(
                        f"{name}: the E-I circuit {key!r} is not initialised (E-I Init would run on the counted "
                        "batch); train the model or call inhibition.ei_init(model, x) first"
                    )
                ops = 0 if module.output else EI_HIDDEN_OPS
                rule = ("read-out: no division, gain or bias" if module.output else
                        "E-I: a division, a multiply-add and a zero test per neuron and step")
                rules[key] = (ops, rule)
                handles.append(module.register_forward_hook(on_circuit(key)))
                inside.append(key)
            elif isinstance(module, nn.Conv2d):
                if module.padding_mode != "zeros":
                    raise ValueError(f"{name}: counts zero padding only; {key!r} has padding_mode={module.padding_mode!r}")
                handles.append(module.register_forward_hook(on_conv(key)))
            elif isinstance(module, nn.Linear):
                handles.append(module.register_forward_hook(on_linear(key)))
            elif (found := _normaliser_rule(module)) is not None:
                rules[key] = found
                if found[0]:
                    handles.append(module.register_forward_hook(on_norm(key)))
                inside.append(key)
            elif isinstance(module, _UNRULED_NORMS) or (id(module) in held_as_norm and not isinstance(module, nn.Identity)):
                if unknown_normaliser == "raise":
                    covered = ", ".join(t.__name__ for types, _, _ in NORMALISER_RULES for t in types)
                    raise ValueError(
                        f"{name}: no rule for the inference cost of the normalisation layer {key!r} "
                        f"({type(module).__name__}); the rules cover {covered} (or pass unknown_normaliser='nan')"
                    )
                rules[key] = (None, "no rule for this layer: cost unknown")
                inside.append(key)
        _run_in_eval(model, x)
    finally:
        for handle in handles:
            handle.remove()
    if not connections:
        raise ValueError(f"{name}: {type(model).__name__} ran no nn.Conv2d, nn.Linear or E-I circuit on this input")
    return SynapticOperations(
        tuple(ConnectionCount(key, kind, ac, mac) for key, (kind, ac, mac) in connections.items()),
        tuple(NormaliserCost(key, rule, ops, float("nan") if ops is None else ops * neuron_steps.get(key, 0.0))
              for key, (ops, rule) in rules.items()),
        num_images,
        num_steps,
    )
