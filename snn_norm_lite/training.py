"""Training and evaluation with a history, one seeding function, and tqdm progress.

``fit`` trains with Adam and cross-entropy on logits ``[B, classes]``, which both reference
networks return. After every epoch it records the training loss and accuracy and, given a
validation loader, the validation accuracy. Given a test loader, it measures the test accuracy
**once, after the last epoch**: nothing that runs during training (callbacks, early stopping,
AHSAR's slow loop) can read it, because it does not exist yet. Callbacks run after every
optimiser step (``on_step(model)``, e.g. to enforce Dale's law) and after every epoch
(``on_epoch(model, history)``, e.g. AHSAR's slow gain, which reads ``history.val_accuracy``).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from .checks import check_bool, check_nonnegative_int, check_positive_int, check_positive_number
from .distributed import is_data_parallel, sum_over_processes, wrap_data_parallel


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch so a run can be repeated exactly on the same machine.

    >>> seed_everything(0); a = torch.rand(2)
    >>> seed_everything(0); torch.equal(a, torch.rand(2))
    True
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed_everything: seed must be an int, got {type(seed).__name__}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed_everything: seed must be an int in 0 .. 2**32 - 1 (NumPy's range), got {seed}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_seeds(seeds, caller: str) -> list[int]:
    """Return ``seeds`` as a list, or raise unless it holds at least one seed, each a distinct int >= 0.

    >>> check_seeds(range(3), "headline")
    [0, 1, 2]
    >>> check_seeds((0, 0), "headline")
    Traceback (most recent call last):
        ...
    ValueError: headline: a seed appears twice in [0, 0]; runs paired by seed need distinct seeds
    """
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise TypeError(f"{caller}: seeds must be a sequence of ints, got {type(seeds).__name__} {seeds!r}")
    seeds = list(seeds)
    if not seeds:
        raise ValueError(f"{caller}: give at least one seed")
    for seed in seeds:
        check_nonnegative_int(seed, "every seed", caller)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{caller}: a seed appears twice in {seeds}; runs paired by seed need distinct seeds")
    return seeds


@dataclass
class History:
    """Record of a training run (accuracies in percent).

    ``train_loss``, ``train_accuracy``, ``val_accuracy`` and ``epoch_seconds`` have one entry per
    epoch (``val_accuracy`` stays empty without a validation loader; ``epoch_seconds`` is the
    wall-clock time of the epoch's training passes, without evaluation or callbacks).
    ``test_accuracy`` is one number, measured after the last epoch, or None when no test loader
    was given.

    >>> history = History(val_accuracy=[60.0, 85.0, 91.0])
    >>> history.final_val_accuracy, history.epochs_to_reach(80.0), history.epochs_to_reach(95.0)
    (91.0, 2, None)
    >>> history.final_test_accuracy
    Traceback (most recent call last):
        ...
    ValueError: History: no test accuracy was measured (fit without a test_loader?)
    """

    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    test_accuracy: Optional[float] = None
    epoch_seconds: list[float] = field(default_factory=list)

    @property
    def final_val_accuracy(self) -> float:
        if not self.val_accuracy:
            raise ValueError("History: no validation accuracy was recorded (fit without a val_loader?)")
        return self.val_accuracy[-1]

    @property
    def final_test_accuracy(self) -> float:
        if self.test_accuracy is None:
            raise ValueError("History: no test accuracy was measured (fit without a test_loader?)")
        return self.test_accuracy

    def epochs_to_reach(self, accuracy: float) -> Optional[int]:
        """First epoch (1-based) whose validation accuracy is at least ``accuracy``; None if never."""
        for epoch, value in enumerate(self.val_accuracy, start=1):
            if value >= accuracy:
                return epoch
        return None


def _check_model(model, caller: str) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{caller}: model must be a torch.nn.Module, got {type(model).__name__}")


def _check_device(device, caller: str) -> None:
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"{caller}: device must be a str or a torch.device, got {type(device).__name__}")
    try:
        device = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"{caller}: {device!r} is not a device ({error})") from None
    if device.type == "meta":
        raise ValueError(f"{caller}: the meta device holds shapes but no data; train and evaluate on cpu, cuda or mps")


def _check_iterable(data, name: str, caller: str) -> None:
    if isinstance(data, (str, bytes, torch.Tensor)) or not hasattr(data, "__iter__"):
        raise TypeError(f"{caller}: {name} must be a loader (an iterable of (x, y) batches), got {type(data).__name__}")


def _check_logits(logits: torch.Tensor, y: torch.Tensor, caller: str) -> None:
    """Logits ``[B, classes]`` and labels ``[B]``: a shape check, so nothing broadcasts silently."""
    if logits.dim() != 2 or y.shape != logits.shape[:1]:
        raise ValueError(
            f"{caller}: expected logits [B, classes] and labels [B], got shapes {tuple(logits.shape)} and "
            f"{tuple(y.shape)}"
        )
    if y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
        raise TypeError(f"{caller}: labels must be integer class indices (torch.long), got dtype {y.dtype}")


def _check_label_range(y: torch.Tensor, num_classes: int, caller: str) -> None:
    """Labels must lie in 0..num_classes-1 (one host-device sync: used where one happens anyway)."""
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(
            f"{caller}: labels must lie in 0..{num_classes - 1} (the model has {num_classes} outputs), "
            f"got labels from {int(y.min())} to {int(y.max())}"
        )


def mixed_precision(device, amp: bool):
    """The autocast region of a training or evaluation pass: bfloat16 when ``amp``, else a no-op.

    The package's normalisers keep their statistics in float32 inside it
    (:mod:`snn_norm_lite.precision`). Supported on ``cuda`` (its purpose) and ``cpu``.

    >>> with mixed_precision("cpu", amp=True):
    ...     torch.nn.Linear(4, 2)(torch.rand(3, 4)).dtype
    torch.bfloat16
    """
    device_type = torch.device(device).type
    if amp and device_type not in ("cuda", "cpu"):
        raise ValueError(f"amp (bfloat16 autocast) runs on cuda or cpu, got device {device!r}")
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp)


@torch.no_grad()
def evaluate(
    model: nn.Module, data, device: str | torch.device = "cpu", batch_size: int = 512, amp: bool = False
) -> float:
    """Accuracy of ``model`` in percent, in evaluation mode (the mode is restored after).

    ``data`` is a loader of ``(x, y)`` batches, or one pair of tensors ``(x, y)`` (e.g. noisy
    test images), which is then cut into batches of ``batch_size``. ``amp`` runs the forward
    passes under bfloat16 autocast (:func:`mixed_precision`).

    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> evaluate(model, (torch.zeros(3, 4), torch.zeros(3, dtype=torch.long))) in (0.0, 100.0)
    True
    >>> evaluate(model, (torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)))
    Traceback (most recent call last):
        ...
    ValueError: evaluate: no samples to evaluate (an empty loader or empty tensors)
    """
    _check_model(model, "evaluate")
    check_positive_int(batch_size, "batch_size", "evaluate")
    _check_device(device, "evaluate")
    check_bool(amp, "amp", "evaluate")
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        x, y = data
        if x.dim() == 0 or y.dim() == 0 or len(x) != len(y):
            raise ValueError(
                f"evaluate: x and y must have the same length, got shapes {tuple(x.shape)} and {tuple(y.shape)}"
            )
        data = [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(y), batch_size)]
    _check_iterable(data, "data", "evaluate")
    was_training = model.training
    model.eval()
    correct = total = 0
    try:
        for x, y in data:
            with mixed_precision(device, amp):
                logits = model(x.to(device))
            _check_logits(logits, y, "evaluate")
            _check_label_range(y, logits.shape[1], "evaluate")
            correct += (logits.argmax(dim=1) == y.to(device)).sum().item()
            total += y.numel()
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("evaluate: no samples to evaluate (an empty loader or empty tensors)")
    return 100.0 * correct / total


def fit(
    model: nn.Module,
    train_loader,
    val_loader=None,
    *,
    test_loader=None,
    epochs: int = 8,
    lr: float = 1e-3,
    device: str | torch.device = "cpu",
    progress: bool = True,
    on_step: Optional[Callable[[nn.Module], None]] = None,
    on_epoch: Optional[Callable[[nn.Module, History], None]] = None,
    description: str = "training",
    amp: bool = False,
) -> History:
    """Train ``model`` with Adam for ``epochs`` epochs and return its :class:`History`.

    ``val_loader`` is evaluated after every epoch, before ``on_epoch`` runs, so a callback can
    steer by it. ``test_loader`` is evaluated once, after the last epoch and its callback.
    ``amp=True`` trains and evaluates under bfloat16 autocast (:func:`mixed_precision`; meant
    for CUDA), with the normalisers' statistics in float32.

    Data-parallel (``torch.distributed`` initialised with more than one process, e.g. under
    ``torchrun``): the normalisers are synchronised and the model is trained through
    ``DistributedDataParallel`` (:func:`snn_norm_lite.distributed.wrap_data_parallel`), each
    process on its part of every batch (give it the loader of
    :meth:`~snn_norm_lite.data.Split.loaders`, whose ``DistributedSampler`` gets a new order
    every epoch here). ``model`` itself is updated in place, callbacks and evaluation see it,
    and the training loss and accuracy in the history are those of the global batches, so every
    process records the same history.

    >>> from snn_norm_lite.data import load_digits
    >>> from snn_norm_lite.models import build_ann
    >>> seed_everything(0)
    >>> train, val, test = load_digits().subset(128, 64, 64).loaders(batch_size=32)
    >>> history = fit(build_ann("bn", depth=2, width=4), train, val, test_loader=test, epochs=2, progress=False)
    >>> len(history.val_accuracy), len(history.epoch_seconds), history.test_accuracy is not None
    (2, 2, True)
    >>> fit(build_ann("bn", depth=2, width=4), [], progress=False)
    Traceback (most recent call last):
        ...
    ValueError: fit: the training loader is empty (len 0); give it at least one batch
    """
    _check_model(model, "fit")
    _check_iterable(train_loader, "train_loader", "fit")
    for loader, name in ((val_loader, "val_loader"), (test_loader, "test_loader")):
        if loader is not None:
            _check_iterable(loader, name, "fit")
    check_nonnegative_int(epochs, "epochs", "fit")
    lr = check_positive_number(lr, "lr", "fit")
    _check_device(device, "fit")
    check_bool(progress, "progress", "fit")
    for callback, name in ((on_step, "on_step"), (on_epoch, "on_epoch")):
        if callback is not None and not callable(callback):
            raise TypeError(f"fit: {name} must be callable or None, got {type(callback).__name__}")
    if not isinstance(description, str):
        raise TypeError(f"fit: description must be a str, got {type(description).__name__}")
    check_bool(amp, "amp", "fit")
    mixed_precision(device, amp)  # refuses a device autocast cannot run on, before anything is built
    if hasattr(train_loader, "__len__") and len(train_loader) == 0:
        raise ValueError("fit: the training loader is empty (len 0); give it at least one batch")
    if next(iter(model.parameters()), None) is None:
        raise ValueError(f"fit: {type(model).__name__} has no parameters to train")
    model.to(device)
    trained = model  # what the training passes run through: the model, or its DDP wrapper
    if is_data_parallel() and epochs > 0:
        first_batch = next(iter(train_loader))[0]
        trained = wrap_data_parallel(model, device, first_batch)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    history = History()
    bar = tqdm(range(epochs), desc=description, disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        sampler = getattr(train_loader, "sampler", None)
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)  # a new shuffle every epoch, the same on every process
        started = time.perf_counter()
        loss_sum = correct = seen = 0
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            with mixed_precision(device, amp):
                logits = trained(x)
            _check_logits(logits, y, "fit")
            loss = loss_fn(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if on_step is not None:
                on_step(model)
            loss_sum += loss.item() * y.numel()
            correct += (logits.argmax(dim=1) == y).sum().item()
            seen += y.numel()
        if seen == 0:
            raise ValueError("fit: the training loader yielded no samples; give it at least one batch")
        history.epoch_seconds.append(time.perf_counter() - started)
        loss_sum, correct, seen = sum_over_processes([loss_sum, correct, seen], device)  # the global batches
        history.train_loss.append(loss_sum / seen)
        history.train_accuracy.append(100.0 * correct / seen)
        if val_loader is not None:
            history.val_accuracy.append(evaluate(model, val_loader, device, amp=amp))
            bar.set_postfix(val_acc=f"{history.val_accuracy[-1]:.1f}")
        if on_epoch is not None:
            on_epoch(model, history)
    if test_loader is not None:
        history.test_accuracy = evaluate(model, test_loader, device, amp=amp)
    return history
