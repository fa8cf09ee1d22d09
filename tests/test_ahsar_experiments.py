"""Helpers of the AHSAR chapter: controlled training, noisy images, the fast loop alone."""

import pytest
import torch

from snn_norm_lite import experiments
from snn_norm_lite.ahsar import AHSAR
from snn_norm_lite.data import Split
from snn_norm_lite.experiments import TrainConfig
from snn_norm_lite.training import seed_everything


def tiny_split():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(48, 1, 8, 8, generator=generator)
    y = torch.randint(0, 10, (48,), generator=generator)
    return Split("tiny", x[:32], y[:32], x[32:], y[32:], 10)


def test_train_with_controller_records_rates_and_attaches():
    config = TrainConfig(depth=2, width=4, num_steps=2, epochs=2, batch_size=16)
    run = experiments.train_with_controller("bn", 0, config, tiny_split(), controller=AHSAR(), probe_samples=8)
    assert len(run.rates) == len(run.thresholds) == 3 and all(len(r) == 2 for r in run.rates)
    assert run.controller.attached and run.controller.epochs == 2
    assert run.thresholds[0] == [1.0, 1.0]  # measured before the first pass
    plain = experiments.train_with_controller("bn", 0, config, tiny_split())
    assert plain.controller is None and all(t == [1.0, 1.0] for t in plain.thresholds)
    # without a controller, the same run as train_once
    _, history = experiments.train_once("snn", "bn", 0, config, tiny_split())
    assert history.test_accuracy == plain.history.test_accuracy


def test_noisy_images_is_seeded_and_clamped():
    x = torch.rand(5, 1, 8, 8)
    a, b = experiments.noisy_images(x, 0.5, seed=3), experiments.noisy_images(x, 0.5, seed=3)
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1 and not torch.equal(a, x)
    assert torch.equal(experiments.noisy_images(x, 0.0), x)
    with pytest.raises(ValueError):
        experiments.noisy_images(x, -1.0)


def test_accuracy_on_matches_a_direct_count():
    seed_everything(0)
    model = experiments.build_model("snn", "bn", TrainConfig(depth=2, width=4, num_steps=2))
    x, y = torch.rand(10, 1, 8, 8), torch.randint(0, 10, (10,))
    model.train()
    accuracy = experiments.accuracy_on(model, x, y, batch_size=3)
    assert model.training
    model.eval()
    assert accuracy == pytest.approx(100.0 * (model(x).argmax(dim=1) == y).float().mean().item())


def test_controller_fast_loop_moves_thresholds_towards_the_band_and_restores_them():
    seed_everything(0)
    model = experiments.build_model("snn", "none", TrainConfig(depth=3, width=4, num_steps=4, threshold=5.0))
    result = experiments.controller_fast_loop(model, AHSAR(), torch.rand(40, 1, 8, 8), passes=5, batch_size=8)
    assert len(result["rate"]) == len(result["threshold"]) == 5
    assert result["threshold"][0] == [5.0, 5.0, 5.0]  # the first pass runs with the attached thresholds
    assert all(t < 5.0 for t in result["threshold"][-1])  # a silent network gets lower thresholds
    assert [float(n.threshold) for n in model.neurons()] == [5.0, 5.0, 5.0]  # detached, restored
