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
from tqdm.auto import tqdm


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch so a run can be repeated exactly on the same machine.

    >>> seed_everything(0); a = torch.rand(2)
    >>> seed_everything(0); torch.equal(a, torch.rand(2))
    True
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed_everything: seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


@torch.no_grad()
def evaluate(model: nn.Module, data, device: str | torch.device = "cpu", batch_size: int = 512) -> float:
    """Accuracy of ``model`` in percent, in evaluation mode (the mode is restored after).

    ``data`` is a loader of ``(x, y)`` batches, or one pair of tensors ``(x, y)`` (e.g. noisy
    test images), which is then cut into batches of ``batch_size``.

    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> evaluate(model, (torch.zeros(3, 4), torch.zeros(3, dtype=torch.long))) in (0.0, 100.0)
    True
    """
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        x, y = data
        if len(x) != len(y):
            raise ValueError(f"evaluate: x and y must have the same length, got {len(x)} and {len(y)}")
        data = [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(y), batch_size)]
    was_training = model.training
    model.eval()
    correct = total = 0
    try:
        for x, y in data:
            logits = model(x.to(device))
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
) -> History:
    """Train ``model`` with Adam for ``epochs`` epochs and return its :class:`History`.

    ``val_loader`` is evaluated after every epoch, before ``on_epoch`` runs, so a callback can
    steer by it. ``test_loader`` is evaluated once, after the last epoch and its callback.

    >>> from snn_norm_lite.data import load_digits
    >>> from snn_norm_lite.models import build_ann
    >>> seed_everything(0)
    >>> train, val, test = load_digits().subset(128, 64, 64).loaders(batch_size=32)
    >>> history = fit(build_ann("bn", depth=2, width=4), train, val, test_loader=test, epochs=2, progress=False)
    >>> len(history.val_accuracy), len(history.epoch_seconds), history.test_accuracy is not None
    (2, 2, True)
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"fit: epochs must be a non-negative int, got {epochs!r}")
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    history = History()
    bar = tqdm(range(epochs), desc=description, disable=not progress, leave=False)
    for _ in bar:
        model.train()
        started = time.perf_counter()
        loss_sum = correct = seen = 0
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            loss = loss_fn(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if on_step is not None:
                on_step(model)
            loss_sum += loss.item() * y.numel()
            correct += (logits.argmax(dim=1) == y).sum().item()
            seen += y.numel()
        if seen == 0:
            raise ValueError("fit: the training loader yielded no samples")
        history.epoch_seconds.append(time.perf_counter() - started)
        history.train_loss.append(loss_sum / seen)
        history.train_accuracy.append(100.0 * correct / seen)
        if val_loader is not None:
            history.val_accuracy.append(evaluate(model, val_loader, device))
            bar.set_postfix(val_acc=f"{history.val_accuracy[-1]:.1f}")
        if on_epoch is not None:
            on_epoch(model, history)
    if test_loader is not None:
        history.test_accuracy = evaluate(model, test_loader, device)
    return history
