"""Measurements of a network while it runs: firing rates, per-step statistics, gradient norms.

Probes attach forward hooks to the spiking layers (any module whose output is a spike
sequence ``[T, B, ...]``), run the model once without gradients, and remove the hooks. They
never change the model.
"""

from __future__ import annotations

import itertools
from contextlib import contextmanager
from typing import Iterable

import torch
from torch import nn

from .checks import check_bool, check_floating, check_nonnegative_int, check_positive_int


def spiking_layers(model: nn.Module) -> list[nn.Module]:
    """The model's spiking layers, in depth order: the one finder probes and AHSAR share.

    ``model.neurons()`` when the model defines it (every reference network of the package);
    otherwise every submodule with a tensor attribute ``threshold`` (this package's neurons,
    ``snntorch.Leaky``), in registration order. An error if there are none.

    >>> from snn_norm_lite.models import build_snn
    >>> len(spiking_layers(build_snn("bn", depth=3, width=4, num_steps=2)))
    3
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"spiking_layers: expected an nn.Module, got {type(model).__name__}")
    if hasattr(model, "neurons"):
        layers = list(model.neurons())
    else:
        layers = [m for m in model.modules() if m is not model and isinstance(getattr(m, "threshold", None), torch.Tensor)]
    if not layers:
        raise ValueError(f"spiking_layers: {type(model).__name__} has no spiking layer (no neurons() and no module with a threshold)")
    return layers


def _probe_inputs(model, x, layers, train_mode, caller: str) -> list[nn.Module]:
    """Check a probe's arguments; return the layers to record (the model's spiking layers by default)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{caller}: expected an nn.Module, got {type(model).__name__}")
    check_floating(x, caller)
    check_bool(train_mode, "train_mode", caller)
    if layers is None:
        return spiking_layers(model)
    layers = list(layers)
    if not layers or not all(isinstance(layer, nn.Module) for layer in layers):
        raise ValueError(f"{caller}: layers must hold at least one layer (nn.Module), got {layers!r}")
    return layers


def _check_labels(x: torch.Tensor, y, caller: str) -> None:
    if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"{caller}: y must be a tensor of integer class labels, got {getattr(y, 'dtype', type(y).__name__)}")
    if y.dim() != 1 or x.dim() == 0 or len(y) != len(x):
        raise ValueError(
            f"{caller}: expected one label per image, labels [B] for images [B, ...], got shapes "
            f"{tuple(y.shape)} and {tuple(x.shape)}"
        )


@contextmanager
def _record(layers: Iterable[nn.Module], keep_input: bool):
    records: list[dict] = []
    handles = []
    for layer in layers:
        record: dict = {}
        records.append(record)

        def hook(module, inputs, output, record=record):
            record["spikes"] = output.detach()
            if keep_input:
                record["current"] = inputs[0].detach()

        handles.append(layer.register_forward_hook(hook))
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def firing_rates(model: nn.Module, x: torch.Tensor, layers=None, train_mode: bool = False) -> torch.Tensor:
    """Mean firing rate (spikes per neuron per step) of each spiking layer, shape ``[L]``.

    ``train_mode=True`` runs the model in training mode, so normalisers use the batch's own
    statistics (and update their running ones, as a training step would).

    >>> from snn_norm_lite.models import build_snn
    >>> _ = torch.manual_seed(0)
    >>> rates = firing_rates(build_snn("bn", depth=3, width=4, num_steps=2), torch.rand(8, 1, 8, 8))
    >>> rates.shape, bool(((rates >= 0) & (rates <= 1)).all())
    (torch.Size([3]), True)
    """
    layers = _probe_inputs(model, x, layers, train_mode, "firing_rates")
    with _record(layers, keep_input=False) as records:
        _run_in_eval(model, x, train_mode=train_mode)
    return torch.stack([r["spikes"].float().mean() for r in records])


@torch.no_grad()
def per_step_statistics(model: nn.Module, x: torch.Tensor, layers=None, train_mode: bool = False) -> dict:
    """Per layer and time step: mean and variance of the input current, and the firing rate.

    Returns a dict of tensors of shape ``[L, T]``: ``current_mean``, ``current_var`` and
    ``rate``. ``train_mode=True`` runs the model in training mode, so normalisers use the
    batch's statistics (and update their running ones, as a training step would).

    >>> from snn_norm_lite.models import build_snn
    >>> _ = torch.manual_seed(0)
    >>> statistics = per_step_statistics(build_snn("bntt", depth=3, width=4, num_steps=2), torch.rand(8, 1, 8, 8))
    >>> sorted(statistics), statistics["current_var"].shape           # [layers, steps]
    (['current_mean', 'current_var', 'rate'], torch.Size([3, 2]))
    """
    layers = _probe_inputs(model, x, layers, train_mode, "per_step_statistics")
    with _record(layers, keep_input=True) as records:
        _run_in_eval(model, x, train_mode=train_mode)
    reduce_dims = lambda v: tuple(range(1, v.dim()))  # noqa: E731 - everything but time
    return {
        "current_mean": torch.stack([r["current"].mean(dim=reduce_dims(r["current"])) for r in records]),
        "current_var": torch.stack([r["current"].var(dim=reduce_dims(r["current"]), correction=0) for r in records]),
        "rate": torch.stack([r["spikes"].float().mean(dim=reduce_dims(r["spikes"])) for r in records]),
    }


def _run_in_eval(model: nn.Module, x: torch.Tensor, train_mode: bool = False) -> None:
    """Run ``model`` on ``x`` (moved to the model's device, as ``evaluate`` moves its batches) in
    evaluation mode, or training mode with ``train_mode``; the model's mode is restored after."""
    tensors = itertools.chain(model.parameters(), model.buffers())
    device = next((tensor.device for tensor in tensors), None)
    if device is not None:
        x = x.to(device)
    was_training = model.training
    model.train(train_mode)
    try:
        model(x)
    finally:
        model.train(was_training)


def gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """L2 norm of the loss gradient of each convolution's weight, in depth order.

    Runs one forward and backward pass in training mode; the model's gradients are cleared
    before and after, so no optimiser state is touched.

    >>> from snn_norm_lite.models import build_ann
    >>> _ = torch.manual_seed(0)
    >>> norms = gradient_norms(build_ann("bn", depth=3, width=4), torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,)))
    >>> len(norms), all(n > 0 for n in norms)
    (3, True)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"gradient_norms: expected an nn.Module, got {type(model).__name__}")
    check_floating(x, "gradient_norms")
    _check_labels(x, y, "gradient_norms")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise TypeError(f"gradient_norms: {type(model).__name__} has no Conv2d layers")
    model.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    norms = [conv.weight.grad.norm().item() for conv in convs]
    model.zero_grad(set_to_none=True)
    return norms


@torch.no_grad()
def accuracy_with_batch_statistics(model, x, y, batch_size: int, seed: int = 0, sorted_by_class: bool = False) -> float:
    """Test accuracy (%) when every BatchNorm normalises with the statistics of its own test batch.

    This is what a network sees if it is left in training mode at inference: each sample's
    output depends on the ``batch_size - 1`` others. The samples are shuffled (seeded) so batches
    mix classes, or, with ``sorted_by_class``, ordered by label so that batches hold one or two
    classes (a non-i.i.d. stream). The model is not changed.

    >>> from snn_norm_lite.models import build_ann
    >>> _ = torch.manual_seed(0)
    >>> model = build_ann("bn", depth=2, width=4).eval()
    >>> x, y = torch.rand(40, 1, 8, 8), torch.randint(0, 10, (40,))
    >>> 0.0 <= accuracy_with_batch_statistics(model, x, y, batch_size=8) <= 100.0
    True
    >>> model.training                                               # the model itself is not changed
    False
    """
    import copy

    caller = "accuracy_with_batch_statistics"
    if not isinstance(model, nn.Module):
        raise TypeError(f"{caller}: expected an nn.Module, got {type(model).__name__}")
    check_floating(x, caller)
    _check_labels(x, y, caller)
    if len(y) == 0:
        raise ValueError(f"{caller}: no samples to evaluate (x and y are empty)")
    check_positive_int(batch_size, "batch_size", caller)
    check_nonnegative_int(seed, "seed", caller)
    check_bool(sorted_by_class, "sorted_by_class", caller)
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
