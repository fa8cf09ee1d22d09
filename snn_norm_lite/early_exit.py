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

    >>> exit_step([[80.0, 95.0, 96.5, 97.0], [82.0, 94.0, 96.0, 97.0]], tolerance=1.0)   # 2 seeds, T = 4
    3
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


@torch.no_grad()
def accuracy_by_steps(model, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Accuracy (%) on ``(x, y)`` of a reference SNN when it stops after k steps, for k = 1 .. T.

    Pass validation images for anything that chooses (e.g. where to exit early) and test
    images only for the final report. Runs the model once in evaluation mode, records the
    read-out of every step (a hook on ``model.readout``, output ``[T, B, classes]``) and
    classifies with the mean over the first k steps. In evaluation every layer of the reference
    SNN is causal (LIF neurons, and normalisers with fixed per-step or shared statistics), so
    this equals running only k steps.

    >>> from snn_norm_lite.models import build_snn
    >>> _ = torch.manual_seed(0)
    >>> model = build_snn("bntt", depth=2, width=4, num_steps=3)
    >>> accuracies = accuracy_by_steps(model, torch.rand(20, 1, 8, 8), torch.randint(0, 10, (20,)))
    >>> len(accuracies), all(0.0 <= a <= 100.0 for a in accuracies)
    (3, True)
    """
    records = []
    handle = model.readout.register_forward_hook(lambda module, inputs, output: records.append(output.detach()))
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        handle.remove()
        model.train(was_training)
    per_step = records[0]
    if per_step.dim() != 3:
        raise ValueError(f"accuracy_by_steps: expected a per-step read-out [T, B, classes], got {tuple(per_step.shape)}")
    steps = torch.arange(1, per_step.shape[0] + 1, dtype=per_step.dtype).view(-1, 1, 1)
    cumulative = per_step.cumsum(dim=0) / steps
    return [100.0 * (logits.argmax(dim=1) == y).float().mean().item() for logits in cumulative]
