"""Where to stop a causal spiking network early, chosen on validation data.

A network whose layers are causal in evaluation can stop after ``k`` of its ``T`` steps and
classify with the read-out of those ``k`` steps (``experiments.accuracy_by_steps``). The exit
step is a choice, so it is made on validation accuracy, never on test accuracy::

    k* = min { k : mean_seeds acc_val(k) >= mean_seeds acc_val(T) - tolerance }

the first ``k`` whose validation accuracy (mean over seeds) is within ``tolerance`` points of
the full run's. The test set is then read once, at ``k*``, to report.
"""

from __future__ import annotations

from typing import Sequence

import torch


def exit_step(val_accuracy_by_steps: Sequence[Sequence[float]] | torch.Tensor, tolerance: float = 1.0) -> int:
    """The smallest ``k`` (1-based) whose mean validation accuracy is within ``tolerance`` of step ``T``.

    ``val_accuracy_by_steps``: accuracies in percent, ``[seeds, T]`` (or ``[T]`` for one seed),
    entry ``k - 1`` for stopping after ``k`` steps.
    """
    accuracy = torch.as_tensor(val_accuracy_by_steps, dtype=torch.float64)
    if accuracy.dim() == 1:
        accuracy = accuracy.unsqueeze(0)
    if accuracy.dim() != 2 or accuracy.numel() == 0:
        raise ValueError(f"exit_step: expected accuracies [seeds, T] or [T], got shape {tuple(accuracy.shape)}")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance < 0:
        raise ValueError(f"exit_step: tolerance must be a non-negative number of points, got {tolerance!r}")
    mean = accuracy.mean(dim=0)
    good_enough = (mean >= mean[-1] - tolerance).nonzero()
    return int(good_enough[0]) + 1
