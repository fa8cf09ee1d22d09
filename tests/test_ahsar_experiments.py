"""Helpers of the AHSAR chapter: controlled training, noisy images, the fast loop alone."""

import pytest
import torch

from snn_norm_lite import ahsar, data, training
from snn_norm_lite import experiments
from snn_norm_lite.ahsar import AHSAR
from snn_norm_lite.data import Split
from snn_norm_lite.experiments import TrainConfig
from snn_norm_lite.training import seed_everything


def tiny_split():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 8, 8, generator=generator)
    y = torch.randint(0, 10, (64,), generator=generator)
    return Split("tiny", x[:32], y[:32], x[32:48], y[32:48], x[48:], y[48:], 10)


def test_train_with_controller_records_rates_and_attaches():
    config = TrainConfig(depth=2, width=4, num_steps=2, epochs=2, batch_size=16)
    run = ahsar.train_with_controller("bn", 0, config, tiny_split(), controller=AHSAR(), probe_samples=8)
    assert len(run.rates) == len(run.thresholds) == 3 and all(len(r) == 2 for r in run.rates)
    assert run.controller.attached and run.controller.epochs == 2
    assert run.thresholds[0] == [1.0, 1.0]  # measured before the first pass
    plain = ahsar.train_with_controller("bn", 0, config, tiny_split())
    assert plain.controller is None and all(t == [1.0, 1.0] for t in plain.thresholds)
    # without a controller, the same run as train_once
    _, history = experiments.train_once("snn", "bn", 0, config, tiny_split())
    assert history.test_accuracy == plain.history.test_accuracy
    assert history.val_accuracy == plain.history.val_accuracy


def test_the_test_labels_cannot_steer_a_regulated_run():
    """AHSAR's slow loop reads validation accuracy only: permuting the test labels changes nothing
    that training sees, so the thresholds and the validation curve come out identical."""
    from snn_norm_lite.data import load_digits

    config = TrainConfig(depth=2, width=4, num_steps=2, epochs=3, batch_size=64)
    real = load_digits()
    permuted = load_digits()
    permuted.y_test = permuted.y_test[torch.randperm(len(permuted.y_test), generator=torch.Generator().manual_seed(1))]
    assert not torch.equal(real.y_test, permuted.y_test)
    runs = [ahsar.train_with_controller("bn", 0, config, split, controller=AHSAR()) for split in (real, permuted)]
    assert runs[0].thresholds == runs[1].thresholds
    assert runs[0].history.val_accuracy == runs[1].history.val_accuracy
    assert runs[0].controller.history["epoch_gain"] == runs[1].controller.history["epoch_gain"]
    assert runs[0].controller.history["epoch_accuracy_change"] != [0.0, 0.0, 0.0]  # the slow loop did read something


def test_noisy_images_is_seeded_and_clamped():
    x = torch.rand(5, 1, 8, 8)
    a, b = data.noisy_images(x, 0.5, seed=3), data.noisy_images(x, 0.5, seed=3)
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1 and not torch.equal(a, x)
    assert torch.equal(data.noisy_images(x, 0.0), x)
    with pytest.raises(ValueError):
        data.noisy_images(x, -1.0)


def test_evaluate_on_tensors_matches_a_direct_count():
    seed_everything(0)
    model = experiments.build_model("snn", "bn", TrainConfig(depth=2, width=4, num_steps=2))
    x, y = torch.rand(10, 1, 8, 8), torch.randint(0, 10, (10,))
    model.train()
    accuracy = training.evaluate(model, (x, y), batch_size=3)
    assert model.training
    model.eval()
    assert accuracy == pytest.approx(100.0 * (model(x).argmax(dim=1) == y).float().mean().item())


def test_controller_fast_loop_moves_thresholds_towards_the_band_and_restores_them():
    seed_everything(0)
    model = experiments.build_model("snn", "none", TrainConfig(depth=3, width=4, num_steps=4, threshold=5.0))
    result = ahsar.controller_fast_loop(model, AHSAR(), torch.rand(40, 1, 8, 8), passes=5, batch_size=8)
    assert len(result["rate"]) == len(result["threshold"]) == 5
    assert result["threshold"][0] == [5.0, 5.0, 5.0]  # the first pass runs with the attached thresholds
    assert all(t < 5.0 for t in result["threshold"][-1])  # a silent network gets lower thresholds
    assert [float(n.threshold) for n in model.neurons()] == [5.0, 5.0, 5.0]  # detached, restored
