"""Train spiking networks while tracing each layer's current scale: does it stay where it started?

An initialisation sets the scale of every layer's input current relative to its threshold,
``rho_l = std(I_l) / V_th`` (:mod:`snn_norm_lite.initialisation`), once, before training. A
normaliser sets it again at every training step. This module trains a network and measures
``rho_l`` before training and after every epoch, so the two can be compared:

    drift = max_l | rho_l(after training) / rho_l(before training) - 1 |,

the largest relative change of any layer's scale over training (0: every layer kept its scale).

Every measurement runs on a copy of the network in training mode, on a fixed batch of
validation images: normalisers use that batch's statistics, as they would in a training step,
and the copy keeps the measurement from moving the network's running statistics.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Sequence

import torch

from .data import load_dataset
from .experiments import TrainConfig, train_once
from .initialisation import current_scale, threshold_scaled_init_
from .stats import Summary
from .training import History


def scale_drift(scales: Sequence[Sequence[float]]) -> float:
    """``max_l |rho_l(last) / rho_l(first) - 1|`` for a trace ``scales[epoch][layer]``.

    >>> scale_drift([[1.0, 2.0], [1.5, 2.0], [1.2, 1.0]])              # layer 2 halved: drift 0.5
    0.5
    """
    if len(scales) < 2:
        raise ValueError(f"scale_drift: needs a trace of at least two measurements, got {len(scales)}")
    first, last = torch.as_tensor(scales[0], dtype=torch.float64), torch.as_tensor(scales[-1], dtype=torch.float64)
    if first.shape != last.shape or first.dim() != 1:
        raise ValueError(f"scale_drift: every measurement must be a list of per-layer scales, got {first.shape} and {last.shape}")
    if not bool((first > 0).all()):
        raise ValueError("scale_drift: a layer started with scale 0 (a constant current); its relative drift is undefined")
    return float((last / first - 1).abs().max())


def _scale_now(model, x) -> list[float]:
    return current_scale(copy.deepcopy(model), x, train_mode=True).tolist()


@dataclass
class TracedRun:
    """One trained network: its history and ``scales[epoch][layer]`` (epoch 0: before training).

    >>> from snn_norm_lite.data import load_digits
    >>> from snn_norm_lite.experiments import TrainConfig
    >>> tiny, config = load_digits().subset(64, 32, 32), TrainConfig(depth=2, width=4, num_steps=2, epochs=1, batch_size=32)
    >>> _, run = train_with_scale_trace("bn", 0, config, tiny)
    >>> len(run.scales), run.drift >= 0                                # before training and after epoch 1
    (2, True)
    """

    history: History
    scales: list[list[float]]

    @property
    def drift(self) -> float:
        return scale_drift(self.scales)


def train_with_scale_trace(
    norm: str,
    seed: int,
    config: TrainConfig,
    split=None,
    init_gain: float | None = None,
    probe_samples: int = 128,
    init_samples: int = 256,
) -> tuple[torch.nn.Module, TracedRun]:
    """Train the reference SNN (registry name ``norm``) like ``experiments.train_once``, tracing ``rho_l``.

    With ``init_gain`` set, the network is first given :func:`threshold_scaled_init_` with that
    gain, computed on ``init_samples`` training images drawn with ``seed``. The scales are
    measured on the first ``probe_samples`` validation images. Without ``init_gain`` the run is
    the same as ``experiments.train_once("snn", norm, seed, config, split)``.

    >>> from snn_norm_lite.data import load_digits
    >>> from snn_norm_lite.experiments import TrainConfig
    >>> tiny, config = load_digits().subset(64, 32, 32), TrainConfig(depth=2, width=4, num_steps=2, epochs=1, batch_size=32)
    >>> model, run = train_with_scale_trace("none", 0, config, tiny, init_gain=1.0)
    >>> all(abs(s - 1) < 0.05 for s in run.scales[0])                 # std(I) ~= V_th at initialisation
    True
    """
    split = load_dataset(config.dataset) if split is None else split
    probe = split.x_val[:probe_samples]
    scales = []

    def prepare(model):
        if init_gain is not None:
            order = torch.randperm(len(split.y_train), generator=torch.Generator().manual_seed(seed))
            threshold_scaled_init_(model, split.x_train[order[:init_samples]], gain=init_gain)
        scales.append(_scale_now(model, probe))

    model, history = train_once(
        "snn", norm, seed, config, split, prepare=prepare, on_epoch=lambda trained, _: scales.append(_scale_now(trained, probe))
    )
    return model, TracedRun(history, scales)


@dataclass
class ScaleDriftResult:
    """Per setup (a label): validation and test accuracy and drift over seeds, and the traces.

    >>> from snn_norm_lite.data import load_digits
    >>> from snn_norm_lite.experiments import TrainConfig
    >>> tiny, config = load_digits().subset(64, 32, 32), TrainConfig(depth=2, width=4, num_steps=2, epochs=1, batch_size=32)
    >>> _, run = train_with_scale_trace("bn", 0, config, tiny)
    >>> result = ScaleDriftResult([0], {"BN": [run]}, {"BN": {"norm": "bn"}}, {}, num_test=32)
    >>> result.drift("BN").n, len(result.mean_scales("BN"))
    (1, 2)
    >>> print(result.table().splitlines()[1])
    setup                                     val %       test %        drift
    """

    seeds: list[int]
    runs: dict[str, list[TracedRun]]
    setups: dict[str, dict]
    config: dict
    num_test: int = 0

    def test_accuracy(self, label: str) -> Summary:
        return Summary.of([run.history.final_test_accuracy for run in self.runs[label]])

    def val_accuracy(self, label: str) -> Summary:
        return Summary.of([run.history.final_val_accuracy for run in self.runs[label]])

    def drift(self, label: str) -> Summary:
        """Largest relative change of any layer's scale over training, one value per seed."""
        return Summary.of([run.drift for run in self.runs[label]])

    def merged(self, other: "ScaleDriftResult") -> "ScaleDriftResult":
        """One result with the setups of both (same seeds and base configuration required)."""
        if self.seeds != other.seeds or self.config != other.config:
            raise ValueError("ScaleDriftResult.merged: the results must share their seeds and base configuration")
        overlap = set(self.runs) & set(other.runs)
        if overlap:
            raise ValueError(f"ScaleDriftResult.merged: both results have the setup(s) {sorted(overlap)}")
        return ScaleDriftResult(
            self.seeds, {**self.runs, **other.runs}, {**self.setups, **other.setups}, self.config, self.num_test
        )

    def mean_scales(self, label: str) -> list[list[float]]:
        """``scales[epoch][layer]`` averaged over seeds."""
        traces = torch.tensor([run.scales for run in self.runs[label]], dtype=torch.float64)
        return traces.mean(dim=0).tolist()

    def table(self) -> str:
        lines = [
            f"mean ± std over {len(self.seeds)} seeds; drift = largest relative change of a layer's std(I)/V_th over training",
            f"{'setup':<34}{'val %':>13}{'test %':>13}{'drift':>13}",
        ]
        for label in self.runs:
            d = self.drift(label)
            lines.append(
                f"{label:<34}{self._pm(self.val_accuracy(label)):>13}{self._pm(self.test_accuracy(label)):>13}"
                f"{f'{d.mean:.2f} ± {d.std:.2f}':>13}"
            )
        return "\n".join(lines)

    @staticmethod
    def _pm(s: Summary) -> str:
        return f"{s.mean:.1f} ± {s.std:.1f}"


def scale_drift_experiment(
    setups: dict[str, dict],
    seeds: Sequence[int] = (0, 1, 2),
    config: TrainConfig | None = None,
    probe_samples: int = 128,
) -> ScaleDriftResult:
    """Train every setup over ``seeds`` with :func:`train_with_scale_trace`.

    ``setups`` maps a label to keyword arguments: ``norm`` (registry name, required),
    ``init_gain`` (optional) and any ``TrainConfig`` field to override (e.g. ``threshold``).

    >>> from snn_norm_lite.experiments import TrainConfig
    >>> config = TrainConfig(depth=2, width=4, num_steps=2, epochs=1, batch_size=512)
    >>> result = scale_drift_experiment({"tdBN": {"norm": "tdbn"}}, seeds=(0,), config=config)
    >>> result.seeds, list(result.runs), result.num_test
    ([0], ['tdBN'], 360)
    """
    config = TrainConfig() if config is None else config
    seeds = list(seeds)
    if not seeds or not setups:
        raise ValueError("scale_drift_experiment: give at least one setup and one seed")
    fields = set(asdict(config))
    split = load_dataset(config.dataset)
    runs: dict[str, list[TracedRun]] = {}
    for label, setup in setups.items():
        setup = dict(setup)
        if "norm" not in setup:
            raise ValueError(f"scale_drift_experiment: setup {label!r} needs a 'norm'")
        norm, gain = setup.pop("norm"), setup.pop("init_gain", None)
        unknown = set(setup) - fields
        if unknown:
            raise ValueError(f"scale_drift_experiment: setup {label!r} has unknown fields {sorted(unknown)}")
        run_config = TrainConfig(**{**asdict(config), **setup})
        runs[label] = [
            train_with_scale_trace(norm, seed, run_config, split, init_gain=gain, probe_samples=probe_samples)[1]
            for seed in seeds
        ]
    return ScaleDriftResult(seeds, runs, {k: dict(v) for k, v in setups.items()}, asdict(config), len(split.y_test))
