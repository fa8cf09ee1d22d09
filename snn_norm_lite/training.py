"""Training and evaluation with a history, one seeding function, and tqdm progress.

``fit`` trains with Adam and cross-entropy on logits ``[B, classes]``, which both reference
networks return, and records per epoch the training loss and accuracy and the test accuracy.
Callbacks run after every optimiser step (``on_step(model)``, e.g. to enforce Dale's law) and
after every epoch (``on_epoch(model, history)``, e.g. AHSAR's slow gain).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch so a run can be repeated exactly on the same machine."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed_everything: seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class History:
    """Per-epoch record of a training run (accuracies in percent)."""

    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)

    @property
    def final_test_accuracy(self) -> float:
        if not self.test_accuracy:
            raise ValueError("History: no epoch has been recorded yet")
        return self.test_accuracy[-1]

    def epochs_to_reach(self, accuracy: float) -> Optional[int]:
        """First epoch (1-based) whose test accuracy is at least ``accuracy``; None if never."""
        for epoch, value in enumerate(self.test_accuracy, start=1):
            if value >= accuracy:
                return epoch
        return None


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: str | torch.device = "cpu") -> float:
    """Accuracy of ``model`` on ``loader`` in percent, in evaluation mode (restored after)."""
    was_training = model.training
    model.eval()
    correct = total = 0
    for x, y in loader:
        logits = model(x.to(device))
        correct += (logits.argmax(dim=1) == y.to(device)).sum().item()
        total += y.numel()
    model.train(was_training)
    if total == 0:
        raise ValueError("evaluate: the loader yielded no samples")
    return 100.0 * correct / total


def fit(
    model: nn.Module,
    train_loader,
    test_loader=None,
    epochs: int = 8,
    lr: float = 1e-3,
    device: str | torch.device = "cpu",
    progress: bool = True,
    on_step: Optional[Callable[[nn.Module], None]] = None,
    on_epoch: Optional[Callable[[nn.Module, History], None]] = None,
    description: str = "training",
) -> History:
    """Train ``model`` with Adam for ``epochs`` epochs and return its :class:`History`."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"fit: epochs must be a non-negative int, got {epochs!r}")
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    history = History()
    bar = tqdm(range(epochs), desc=description, disable=not progress, leave=False)
    for _ in bar:
        model.train()
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
        history.train_loss.append(loss_sum / seen)
        history.train_accuracy.append(100.0 * correct / seen)
        if test_loader is not None:
            history.test_accuracy.append(evaluate(model, test_loader, device))
            bar.set_postfix(test_acc=f"{history.test_accuracy[-1]:.1f}")
        if on_epoch is not None:
            on_epoch(model, history)
    return history
