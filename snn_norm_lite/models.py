"""Reference networks: a conventional CNN and a spiking CNN of the same architecture.

Both are plain stacks of ``depth`` blocks ``conv3x3 -> norm -> nonlinearity`` of ``width``
channels with PyTorch's default initialisation, a 2x2 average pool after the first block, and a
linear read-out of the flattened feature map (for images larger than digits' 8 x 8, such as
CIFAR-10's 32 x 32, the map is first average-pooled to 4 x 4: :func:`readout_pool`). The only differences between the two are the nonlinearity (ReLU or LIF neurons) and
time: the spiking network turns its static input into a sequence of ``num_steps`` steps with its
input encoding (:mod:`~snn_norm_lite.encoding`; by default direct encoding, the image at every
step, so that the first convolution acts as the encoder) and averages its read-out over time.

The normalisation is chosen by a registry name (``snn_norm_lite.norms.available_norms()``).
Convolutions carry a bias only when there is no normalisation (a norm's own bias makes the
convolution's redundant).

The spiking network runs layer by layer over the whole sequence: each convolution sees the
time-merged batch ``[T*B, C, H, W]``, each neuron loops over T. On a CPU this is much faster
than looping the whole network step by step, and gives the same result.
"""

from __future__ import annotations

import torch
from torch import nn

from collections.abc import Mapping

from .checks import (
    check_bool,
    check_floating,
    check_num_steps,
    check_positive_int,
    check_positive_number,
    check_rank,
    check_unit_interval,
)
from .encoding import InputEncoder, check_encoding
from .neurons import MultiStepLeaky
from .norms import NormSpec, build_norm, get_spec, register
from .norms.registry import check_options
from .sequences import check_sequence, over_time


def _conv(in_channels: int, out_channels: int, norm: str) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=(norm == "none"))


READOUT_SIDE = 4  # the read-out sees at most READOUT_SIDE x READOUT_SIDE positions per channel


def _check_architecture(
    name: str, depth: int, width: int, in_channels: int, num_classes: int, image_size: int
) -> int:
    """Validate the shape arguments; return the number of features the read-out sees."""
    check_positive_int(depth, "depth", name)
    check_positive_int(width, "width", name)
    check_positive_int(in_channels, "in_channels", name)
    check_positive_int(num_classes, "num_classes", name)
    check_positive_int(image_size, "image_size", name)
    if image_size % 2:
        raise ValueError(f"{name}: image_size must be even (the network pools by 2), got {image_size}")
    return width * min(image_size // 2, READOUT_SIDE) ** 2


def readout_pool(image_size: int) -> nn.Module | None:
    """The pool in front of the read-out: none for digits, an average pool to 4 x 4 for larger images.

    After the first block's 2 x 2 pool the map is ``image_size / 2`` wide: 4 for digits, which the
    read-out takes as it is; 16 for CIFAR-10, which would give a read-out of ``width * 256``
    inputs per class, so it is average-pooled to ``READOUT_SIDE x READOUT_SIDE`` first.

    >>> readout_pool(8) is None, readout_pool(32)
    (True, AdaptiveAvgPool2d(output_size=4))
    """
    return None if image_size // 2 <= READOUT_SIDE else nn.AdaptiveAvgPool2d(READOUT_SIDE)


def _check_norm_options(norm_options, name: str) -> dict:
    """``norm_options`` as a new dict: ``None`` or a mapping of option names to values."""
    if norm_options is None:
        return {}
    if not isinstance(norm_options, Mapping):
        raise TypeError(
            f"{name}: norm_options must be a dict of the method's options (e.g. {{'alpha': 0.7}}) or None, "
            f"got {type(norm_options).__name__} {norm_options!r}"
        )
    return dict(norm_options)


def _check_neuron(name: str, beta: float, threshold: float) -> tuple[float, float]:
    """The LIF leak and threshold every neuron of a spiking network is built with, checked."""
    return (
        check_unit_interval(beta, "beta", name, closed_low=True),
        check_positive_number(threshold, "threshold", name),
    )


def _check_backend(name: str, backend: str) -> str:
    if not isinstance(backend, str) or backend not in ("fused", "snntorch"):
        raise ValueError(f"{name}: backend must be 'fused' or 'snntorch', got {backend!r}")
    return backend


def _build_encoder(name: str, encoding: str, num_steps: int) -> InputEncoder:
    """The network's input encoder; a bad ``encoding`` is an error naming the network."""
    check_encoding(encoding, name)
    return InputEncoder(encoding, num_steps)


def _check_modules(name: str, **modules) -> None:
    for argument, module in modules.items():
        if not isinstance(module, nn.Module):
            raise TypeError(f"{name}: {argument} must be an nn.Module, got {type(module).__name__}")


# Data sets of the package, by (channels, image size): how a network's input is described.
_DATA_SHAPES = {(1, 8): "digits-sized", (3, 32): "CIFAR-10-sized"}


def check_network_input(model: nn.Module, x: torch.Tensor, image_dim: int) -> None:
    """Refuse an input of another dtype or image shape than ``model`` was built for.

    ``model`` has the attributes ``in_channels``, ``image_size`` and ``norm_name``;
    ``image_dim`` is the dimension of ``x`` that holds the channels (1 for ``[B, C, H, W]``,
    2 for ``[T, B, C, H, W]``). Only shapes and dtypes are read (no host-device sync). The
    message says what the network was built for and which build call fits the input.

    >>> model = build_ann("bn", depth=2, width=4)
    >>> check_network_input(model, torch.rand(2, 3, 32, 32), 1)
    Traceback (most recent call last):
        ...
    ValueError: ConvNet: built for [B, 1, 8, 8] images (digits-sized: in_channels=1, image_size=8), got shape (2, 3, 32, 32); for this input build a network with build_ann('bn', ..., in_channels=3, image_size=32)
    >>> check_network_input(model, torch.rand(2, 1, 8, 8, dtype=torch.float64), 1)
    Traceback (most recent call last):
        ...
    TypeError: ConvNet: the model's parameters are torch.float32, got an input of dtype torch.float64; ...
    """
    name = type(model).__name__
    check_floating(x, name)
    layout = "[B, C, H, W]" if image_dim == 1 else "[T, B, C, H, W]"
    check_rank(x, (image_dim + 3,), name, layout)
    dtype = next(model.parameters()).dtype
    if x.dtype != dtype:
        raise TypeError(
            f"{name}: the model's parameters are {dtype}, got an input of dtype {x.dtype}; convert the "
            f"input with x.to({dtype}) (x.float() for float32) or the model with model.to({x.dtype}) "
            "(model.double() for float64)"
        )
    channels, height, width = x.shape[image_dim:]
    size = model.image_size
    if (channels, height, width) == (model.in_channels, size, size):
        return
    kind = _DATA_SHAPES.get((model.in_channels, size))
    built = f"[B, {model.in_channels}, {size}, {size}] images (" + (f"{kind}: " if kind else "")
    built += f"in_channels={model.in_channels}, image_size={size})"
    builder = "build_ann" if isinstance(model, ConvNet) else "build_snn"
    if height != width:
        fix = f"the network takes square images (image_size x image_size); crop or pad these {height} x {width} ones"
    elif height % 2:
        fix = f"image_size must be even (the network pools by 2); crop or pad these {height} x {width} images by one pixel"
    else:
        fix = (
            f"for this input build a network with {builder}({model.norm_name!r}, ..., "
            f"in_channels={channels}, image_size={height})"
        )
    raise ValueError(f"{name}: built for {built}, got shape {tuple(x.shape)}; {fix}")


class ConvNet(nn.Module):
    """Conventional CNN: ``depth`` x (conv3x3 -> norm -> ReLU), pool, linear read-out.

    Input ``[B, C, H, W]`` floats of the model's dtype, with ``C = in_channels`` and
    ``H = W = image_size`` (anything else is refused, saying how to build a network for it);
    output logits ``[B, num_classes]``. ``norm_options`` are the normaliser's own
    hyperparameters (its ``NormSpec.options``).

    >>> ConvNet("bn", depth=2, width=4)(torch.rand(5, 1, 8, 8)).shape
    torch.Size([5, 10])
    """

    def __init__(
        self,
        norm: str = "bn",
        depth: int = 6,
        width: int = 32,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 8,
        norm_options: dict | None = None,
    ):
        super().__init__()
        name = type(self).__name__
        features = _check_architecture(name, depth, width, in_channels, num_classes, image_size)
        options = _check_norm_options(norm_options, name)
        self.norm_name, self.depth, self.width, self.in_channels = norm, depth, width, in_channels
        self.image_size = image_size
        blocks = []
        for i in range(depth):
            blocks.append(
                nn.Sequential(
                    _conv(in_channels if i == 0 else width, width, norm),
                    build_norm(norm, width, **options),
                    nn.ReLU(),
                )
            )
        self.blocks = nn.ModuleList(blocks)
        self.pool = nn.AvgPool2d(2)
        self.readout_pool = readout_pool(image_size)
        self.readout = nn.Linear(features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        name = type(self).__name__
        check_floating(x, name)
        check_rank(x, (4,), name, "[B, C, H, W]")
        check_network_input(self, x, 1)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == 0:
                x = self.pool(x)
        if self.readout_pool is not None:
            x = self.readout_pool(x)
        return self.readout(x.flatten(1))


class SpikingBlock(nn.Module):
    """conv3x3 on the time-merged batch -> normalisation on the sequence -> LIF neurons.

    >>> block = SpikingBlock(nn.Conv2d(1, 4, 3, padding=1), nn.Identity(), MultiStepLeaky())
    >>> block(torch.rand(3, 2, 1, 8, 8)).shape                     # [T, B, C, H, W] spikes
    torch.Size([3, 2, 4, 8, 8])
    """

    def __init__(self, conv: nn.Conv2d, norm: nn.Module, neuron: nn.Module):
        super().__init__()
        _check_modules(type(self).__name__, conv=conv, norm=norm, neuron=neuron)
        self.conv, self.norm, self.neuron = conv, norm, neuron

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neuron(self.norm(over_time(self.conv, x)))


class SpikingNetwork(nn.Module):
    """What every reference spiking network shares: input checks, the forward pass, its neurons.

    A subclass sets ``blocks`` (each maps a sequence ``[T, B, C, H, W]`` to spikes of the same
    layout), ``pool`` (applied after the first block), ``readout_pool`` (None, or a pool applied
    after the last block: :func:`readout_pool`) and ``readout`` (applied to the flattened
    spikes of every step), and the attributes ``norm_name``, ``depth``, ``width``,
    ``in_channels``, ``image_size``, ``num_steps``, ``beta``, ``threshold``.

    A subclass also sets ``encoder``, an :class:`~snn_norm_lite.encoding.InputEncoder` for its
    ``num_steps`` (its name is the attribute ``encoding``).

    The forward pass, for an input sequence ``x`` ``[T, B, C, H, W]`` (a static image batch is
    first encoded by ``encoder``: repeated at every step by direct encoding, Bernoulli spikes
    by rate encoding, one spike per pixel by latency encoding)::

        s^0 = x,   s^l = block_l(s^{l-1})  (pooled by 2 after block 1),
        logits = (1/T) sum_t readout(flatten(s^L_t))

    >>> model = build_snn("bn", depth=2, width=4, num_steps=3)
    >>> isinstance(model, SpikingNetwork), [type(n).__name__ for n in model.neurons()]
    (True, ['MultiStepLeaky', 'MultiStepLeaky'])
    """

    def as_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """Check the input and return it as ``[T, B, C, H, W]`` (a static image is encoded).

        Accepted: a static batch ``[B, C, H, W]`` (returned encoded by the network's
        ``encoder``; with direct encoding a view repeating it ``num_steps`` times) or a
        sequence ``[T, B, C, H, W]`` with ``T == num_steps``, used as given; in both,
        ``C = in_channels``, ``H = W = image_size`` and the dtype of the model's parameters.

        >>> model = build_snn("bn", depth=2, width=4, num_steps=3)
        >>> model.as_sequence(torch.rand(5, 1, 8, 8)).shape
        torch.Size([3, 5, 1, 8, 8])
        >>> model.as_sequence(torch.rand(2, 5, 1, 8, 8))
        Traceback (most recent call last):
            ...
        ValueError: SpikingConvNet: built for num_steps=3, got a sequence of 2 steps ...
        """
        name = type(self).__name__
        check_floating(x, name)
        check_rank(x, (4, 5), name, "[B, C, H, W] (static) or [T, B, C, H, W]")
        if x.dim() == 4:
            check_network_input(self, x, 1)
            return self.encoder(x)
        check_sequence(x, name, "[T, B, C, H, W]")
        check_num_steps(x, self.num_steps, name)
        check_network_input(self, x, 2)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.as_sequence(x)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == 0:
                x = over_time(self.pool, x)
        if self.readout_pool is not None:
            x = over_time(self.readout_pool, x)
        return self.readout(x.flatten(2)).mean(dim=0)  # read-out of [T, B, C*H*W], averaged over T

    def neurons(self) -> list[nn.Module]:
        """The spiking layers, in depth order (what probes and AHSAR attach to)."""
        return [block.neuron for block in self.blocks]


class SpikingConvNet(SpikingNetwork):
    """Spiking CNN with the architecture of :class:`ConvNet` and LIF neurons.

    Input: a static image batch ``[B, C, H, W]`` (encoded by the network's ``encoding``) or a
    sequence ``[T, B, C, H, W]`` with ``T == num_steps`` (used as given), ``C = in_channels``, ``H = W = image_size``,
    in the dtype of the model's parameters (see :meth:`SpikingNetwork.as_sequence`). Output:
    logits ``[B, num_classes]``, the read-out averaged over the T steps.

    Args:
        norm: registry name of the normalisation after each convolution.
        depth, width: number of blocks and channels per block.
        num_steps: T, the number of simulation steps.
        beta, threshold: LIF leak and firing threshold of every neuron; the normaliser is built
            for them too (tdBN scales its output to ``threshold``).
        backend: neuron implementation, ``"fused"`` or ``"snntorch"``.
        norm_options: the method's own hyperparameters (``NormSpec.options``), e.g.
            ``{"alpha": 0.7}`` for tdBN.
        encoding: how a static image batch becomes a sequence, one of
            :data:`~snn_norm_lite.encoding.ENCODINGS`: ``"direct"`` (the image at every step),
            ``"rate"`` (Bernoulli spikes, new ones at every forward pass, intensities in
            [0, 1]) or ``"latency"`` (one spike per pixel, earlier for brighter pixels).

    >>> model = SpikingConvNet("tdbn", depth=2, width=4, num_steps=3, threshold=2.0)
    >>> model.blocks[0].norm.v_th
    2.0
    >>> model(torch.rand(5, 1, 8, 8)).shape
    torch.Size([5, 10])
    """

    def __init__(
        self,
        norm: str = "bn",
        depth: int = 6,
        width: int = 32,
        num_steps: int = 8,
        beta: float = 0.9,
        threshold: float = 1.0,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 8,
        backend: str = "fused",
        norm_options: dict | None = None,
        encoding: str = "direct",
    ):
        super().__init__()
        name = type(self).__name__
        features = _check_architecture(name, depth, width, in_channels, num_classes, image_size)
        check_positive_int(num_steps, "num_steps", name)
        beta, threshold = _check_neuron(name, beta, threshold)
        _check_backend(name, backend)
        spec = get_spec(norm)
        if spec.circuit:
            raise ValueError(f"{name}: {norm!r} is a circuit, not a layer; use build_snn({norm!r}, ...)")
        if spec.neuron is not None and backend != "fused":
            raise ValueError(
                f"{name}: backend={backend!r} selects the implementation of MultiStepLeaky, but {norm!r} brings "
                "its own neuron; leave backend at its default 'fused'"
            )
        options = _check_norm_options(norm_options, name)
        encoder = _build_encoder(name, encoding, num_steps)
        self.norm_name, self.depth, self.width, self.in_channels = norm, depth, width, in_channels
        self.image_size, self.num_steps, self.beta, self.threshold = image_size, num_steps, beta, threshold
        self.encoding, self.encoder = encoding, encoder
        blocks = []
        for i in range(depth):
            if spec.neuron is not None:
                neuron = spec.neuron(width, beta=beta, threshold=threshold)
            else:
                neuron = MultiStepLeaky(beta=beta, threshold=threshold, backend=backend)
            blocks.append(
                SpikingBlock(
                    _conv(in_channels if i == 0 else width, width, norm),
                    build_norm(norm, width, num_steps, threshold=threshold, beta=beta, **options),
                    neuron,
                )
            )
        self.blocks = nn.ModuleList(blocks)
        self.pool = nn.AvgPool2d(2)
        self.readout_pool = readout_pool(image_size)
        self.readout = nn.Linear(features, num_classes)


def build_ann(norm: str = "bn", depth: int = 6, width: int = 32, **kwargs) -> nn.Module:
    """The reference conventional CNN for a registry name.

    >>> build_ann("bn", depth=2, width=4)(torch.rand(5, 1, 8, 8)).shape
    torch.Size([5, 10])
    """
    return ConvNet(norm, depth, width, **kwargs)


def build_snn(norm: str = "bn", depth: int = 6, width: int = 32, num_steps: int = 8, **kwargs) -> nn.Module:
    """The reference spiking CNN for a registry name (E-I circuits included).

    Keywords go to :class:`SpikingConvNet` (or, for a circuit such as ``"ei"``, to the network
    the registry builds): ``beta``, ``threshold``, ``in_channels``, ``image_size``,
    ``norm_options``, ``encoding`` (``"direct"``, ``"rate"`` or ``"latency"``), ...

    >>> build_snn("tdbn", depth=2, width=4, num_steps=3, threshold=4.0).blocks[1].norm.v_th
    4.0
    >>> build_snn("bn", depth=2, width=4, num_steps=3, encoding="rate").encoder
    InputEncoder('rate', num_steps=3)
    """
    spec = get_spec(norm)
    if spec.circuit:
        options = _check_norm_options(kwargs.pop("norm_options", None), "build_snn")
        check_options(spec, options)
        return spec.build(depth=depth, width=width, num_steps=num_steps, **kwargs, **options)
    return SpikingConvNet(norm, depth, width, num_steps, **kwargs)


# -- The E-I circuit network (DeepEISNN): no normalisation layer at all ------------------------

from .inhibition import EIConv2d, EILinear, enforce_dale  # noqa: E402  (kept with the class that uses it)


class EISpikingBlock(nn.Module):
    """E-I circuit (conv3x3 E and I populations with lateral inhibition) -> excitatory LIF neurons."""

    def __init__(self, circuit: EIConv2d, neuron: nn.Module):
        super().__init__()
        _check_modules(type(self).__name__, circuit=circuit, neuron=neuron)
        self.circuit, self.neuron = circuit, neuron

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neuron(self.circuit(x))


class EISpikingConvNet(SpikingNetwork):
    """Spiking CNN of E-I circuits: the shape of :class:`SpikingConvNet`, with no normaliser.

    ``depth`` blocks ``EIConv2d(3x3) -> LIF`` of ``width`` excitatory channels (and
    ``width // ei_ratio`` inhibitory ones), a 2x2 average pool after the first block, and an
    E-I read-out without division (``EILinear(..., output=True)``: logits ``I_EE - I_sub``)
    of the flattened spikes, averaged over the T steps. Input and output as in
    :class:`SpikingConvNet`: ``[B, C, H, W]`` (repeated at every step) or ``[T, B, C, H, W]``,
    non-negative (pixel intensities); logits ``[B, num_classes]``.

    >>> model = EISpikingConvNet(depth=2, width=8, num_steps=2)
    >>> model(torch.rand(3, 1, 8, 8)).shape          # E-I Init ran on this first batch
    torch.Size([3, 10])
    >>> all(circuit.initialised for circuit in model.circuits())
    True

    How to train it (the design is that nothing extra is needed)::

        model = build_snn("ei", depth=6, width=32, num_steps=8)
        history = fit(model, train_loader, val_loader, test_loader=test_loader)

    * E-I Init runs by itself on the first batch the model sees (each circuit is initialised
      on the output of the initialised layers before it). ``inhibition.ei_init(model, x)``
      does it explicitly, e.g. to choose the batch or to re-initialise.
    * Dale's law: the circuits use clamped weights, and at the start of every training forward
      pass the model clamps its stored parameters (``inhibition.enforce_dale``), so they stay
      non-negative after each optimiser step without an ``on_step`` callback.

    The neuron follows the paper (LIF, tau = 2, threshold 1, soft reset, reset detached):
    ``beta = 1 - 1/tau = 0.5`` by default. One difference: the paper subtracts the reset
    before the decay, ``u[t+1] = beta (u[t] - V_th s[t]) + I[t+1]``, our
    :class:`~snn_norm_lite.neurons.MultiStepLeaky` after it, ``u_t = beta u_{t-1} + I_t -
    V_th s_{t-1}`` (the same as every other network of the package).

    Args:
        depth, width, num_steps: blocks, excitatory channels per block, time steps T.
        beta, threshold, backend: of every LIF neuron.
        ei_ratio: excitatory per inhibitory unit (4 in the paper).
        stabilize, straight_through, scale_inhibitory_grad: E-I Prop switches of every circuit.
        in_channels, num_classes, image_size: data shape.
        encoding: input encoding of a static image batch, as for :class:`SpikingConvNet`.
    """

    def __init__(
        self,
        depth: int = 6,
        width: int = 32,
        num_steps: int = 8,
        beta: float = 0.5,
        threshold: float = 1.0,
        ei_ratio: int = 4,
        stabilize: bool = True,
        straight_through: bool = True,
        scale_inhibitory_grad: bool = True,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 8,
        backend: str = "fused",
        encoding: str = "direct",
    ):
        super().__init__()
        name = type(self).__name__
        features = _check_architecture(name, depth, width, in_channels, num_classes, image_size)
        check_positive_int(num_steps, "num_steps", name)
        beta, threshold = _check_neuron(name, beta, threshold)
        _check_backend(name, backend)
        check_positive_int(ei_ratio, "ei_ratio", name)
        for flag, value in (("stabilize", stabilize), ("straight_through", straight_through),
                            ("scale_inhibitory_grad", scale_inhibitory_grad)):
            check_bool(value, flag, name)
        encoder = _build_encoder(name, encoding, num_steps)
        self.norm_name, self.depth, self.width, self.in_channels = "ei", depth, width, in_channels
        self.image_size, self.num_steps, self.beta, self.threshold = image_size, num_steps, beta, threshold
        self.encoding, self.encoder = encoding, encoder
        prop = dict(stabilize=stabilize, straight_through=straight_through, scale_inhibitory_grad=scale_inhibitory_grad)
        self.blocks = nn.ModuleList(
            EISpikingBlock(
                EIConv2d(in_channels if i == 0 else width, width, 3, ei_ratio=ei_ratio, padding=1, **prop),
                MultiStepLeaky(beta=beta, threshold=threshold, backend=backend),
            )
            for i in range(depth)
        )
        self.pool = nn.AvgPool2d(2)
        self.readout_pool = readout_pool(image_size)
        self.readout = EILinear(features, num_classes, ei_ratio=ei_ratio, output=True, **prop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.as_sequence(x)  # checked before anything is changed
        if self.training:
            enforce_dale(self)  # the stored weights back on Dale's law after each optimiser step
        return super().forward(x)  # the read-out gives logits I_EE - I_sub, averaged over T

    def circuits(self) -> list[nn.Module]:
        """The E-I circuits, in depth order, the read-out last."""
        return [block.circuit for block in self.blocks] + [self.readout]


def _build_ei_network(depth: int, width: int, num_steps: int, **kwargs) -> EISpikingConvNet:
    return EISpikingConvNet(depth=depth, width=width, num_steps=num_steps, **kwargs)


SPEC_EI = register(
    NormSpec(
        "ei",
        "E-I circuits with lateral inhibition instead of a normaliser (DeepEISNN); whole network",
        _build_ei_network,
        spiking_only=True,
        circuit=True,
        options=("ei_ratio", "stabilize", "straight_through", "scale_inhibitory_grad"),
        statistics={
            "training": "none: E-I Init sets the weights once, from the first batch",
            "evaluation": "none",
            "inference": "the circuit: an inhibitory population and a division per layer",
        },
    )
)
