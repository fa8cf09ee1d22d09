"""Helpers of the AHSAR chapter: controlled training, noisy images, the fast loop alone."""

import pytest
import torch

from snn_norm_lite import ahsar, data, probes, training
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


TINY = TrainConfig(depth=2, width=4, num_steps=2, epochs=1, batch_size=16)
BAD_RUN_ARGUMENTS = {
    "norm not a str": (dict(norm=3), TypeError, "norm must be a registry name"),
    "norm unknown": (dict(norm="batchnorm"), ValueError, "unknown norm 'batchnorm'; registered: none, bn"),
    "seed a float": (dict(seed=1.0), TypeError, "seed must be an int"),
    "seed a bool": (dict(seed=True), TypeError, "seed must be an int"),
    "seed negative": (dict(seed=-1), ValueError, "seed must be an int >= 0"),
    "config a dict": (dict(config={"depth": 2}), TypeError, "config must be a TrainConfig, got dict"),
    "split a tuple": (dict(split=(1, 2)), TypeError, "split must be a data.Split or None, got tuple"),
    "controller a config": (dict(controller=ahsar.AHSARConfig()), TypeError, "controller must be an AHSAR or None"),
    "probe_samples zero": (dict(probe_samples=0), ValueError, "probe_samples must be positive"),
    "probe_samples a float": (dict(probe_samples=8.0), TypeError, "probe_samples must be an int"),
}


@pytest.mark.parametrize("case", BAD_RUN_ARGUMENTS)
def test_train_with_controller_checks_its_arguments(case):
    changes, error, message = BAD_RUN_ARGUMENTS[case]
    arguments = dict(norm="bn", seed=0, config=TINY, split=tiny_split(), controller=AHSAR(), probe_samples=8)
    arguments.update(changes)
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        ahsar.train_with_controller(**arguments)


def test_train_with_controller_needs_a_detached_controller():
    controller = AHSAR().attach(experiments.build_model("snn", "bn", TINY))
    with pytest.raises(RuntimeError, match=r"train_with_controller: the controller is already attached .*detach\(\)"):
        ahsar.train_with_controller("bn", 0, TINY, tiny_split(), controller, probe_samples=8)
    assert controller.passes == 0


def test_a_split_smaller_than_probe_samples_is_probed_on_all_its_validation_images():
    run = ahsar.train_with_controller("bn", 0, TINY, tiny_split(), AHSAR(), probe_samples=1000)
    model = run.model
    torch.testing.assert_close(torch.tensor(run.rates[-1]), probes.firing_rates(model, tiny_split().x_val))


BAD_LOOP_ARGUMENTS = {
    "model not a module": (dict(model="net"), TypeError, "model must be an nn.Module, got str"),
    "controller None": (dict(controller=None), TypeError, "controller must be an AHSAR, got NoneType"),
    "x integers": (dict(x=torch.zeros(8, 1, 8, 8, dtype=torch.int64)), TypeError, "expected a floating-point tensor"),
    "x a list": (dict(x=[[0.0]]), TypeError, "expected a torch.Tensor, got list"),
    "x empty": (dict(x=torch.zeros(0, 1, 8, 8)), ValueError, "x must hold at least one input row"),
    "passes zero": (dict(passes=0), ValueError, "passes must be positive"),
    "passes a float": (dict(passes=2.5), TypeError, "passes must be an int"),
    "batch_size a bool": (dict(batch_size=True), TypeError, "batch_size must be an int"),
    "batch_size negative": (dict(batch_size=-4), ValueError, "batch_size must be positive"),
    "seed a str": (dict(seed="0"), TypeError, "seed must be an int"),
}


@pytest.mark.parametrize("case", BAD_LOOP_ARGUMENTS)
def test_controller_fast_loop_checks_its_arguments(case):
    changes, error, message = BAD_LOOP_ARGUMENTS[case]
    model = experiments.build_model("snn", "none", TINY)
    arguments = dict(model=model, controller=AHSAR(), x=torch.rand(8, 1, 8, 8), passes=2, batch_size=4, seed=0)
    arguments.update(changes)
    with pytest.raises(error, match=f"controller_fast_loop: {message}"):
        ahsar.controller_fast_loop(**arguments)
    assert not model._forward_hooks and not model._forward_pre_hooks  # nothing was attached


def test_controller_fast_loop_needs_a_detached_controller():
    model = experiments.build_model("snn", "none", TINY)
    controller = AHSAR().attach(experiments.build_model("snn", "none", TINY))
    with pytest.raises(RuntimeError, match="controller_fast_loop: the controller is already attached"):
        ahsar.controller_fast_loop(model, controller, torch.rand(8, 1, 8, 8), passes=2, batch_size=4)


def test_controller_fast_loop_on_a_folded_mpbn_network_reports_per_channel_thresholds():
    from snn_norm_lite.norms.mpbn import fold_mpbn

    seed_everything(0)
    folded = fold_mpbn(experiments.build_model("snn", "mpbn", TINY))
    before = [n.fire_threshold.tolist() for n in folded.neurons()]
    controller = AHSAR(target_low=0.6, target_high=0.6)  # a band the network is not in
    result = ahsar.controller_fast_loop(folded, controller, torch.rand(16, 1, 8, 8), passes=3, batch_size=4)
    assert result["threshold"][0] == before and len(result["threshold"][-1][0]) == 4  # per channel
    assert result["threshold"][-1] != before
    assert [n.fire_threshold.tolist() for n in folded.neurons()] == before  # detached, restored
