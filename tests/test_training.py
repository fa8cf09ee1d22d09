"""fit / evaluate / seeding, probes, and the experiment functions at toy size."""

import json

import pytest
import torch

from snn_norm_lite import norms, probes
from snn_norm_lite import experiments
from snn_norm_lite.data import load_digits
from snn_norm_lite.models import build_snn
from snn_norm_lite.probes import firing_rates, gradient_norms, per_step_statistics
from snn_norm_lite.stats import Summary
from snn_norm_lite.training import History, evaluate, fit, seed_everything


def tiny_loaders(n=128):
    split = load_digits()
    split.x_train, split.y_train = split.x_train[:n], split.y_train[:n]
    split.x_val, split.y_val = split.x_val[:n], split.y_val[:n]
    split.x_test, split.y_test = split.x_test[:n], split.y_test[:n]
    return split.loaders(batch_size=32, seed=0)


def test_fit_records_history_and_learns():
    seed_everything(0)
    model = build_snn("bn", depth=2, width=8, num_steps=2)
    train, val, test = tiny_loaders(256)
    before = evaluate(model, test)
    history = fit(model, train, val, test_loader=test, epochs=3, lr=3e-3, progress=False)
    assert len(history.train_loss) == len(history.val_accuracy) == 3
    assert history.train_loss[-1] < history.train_loss[0]
    assert history.final_test_accuracy > before
    assert history.final_test_accuracy == evaluate(model, test)  # measured once, on the final model


def test_the_test_set_is_measured_once_after_training_and_never_seen_by_callbacks():
    seen_by_callbacks = []
    model = build_snn("bn", depth=1, width=4, num_steps=2)
    train, val, test = tiny_loaders(64)
    history = fit(
        model, train, val, test_loader=test, epochs=3, progress=False,
        on_epoch=lambda m, h: seen_by_callbacks.append((h.test_accuracy, list(h.val_accuracy))),
    )
    assert [test for test, _ in seen_by_callbacks] == [None, None, None]
    assert [len(val) for _, val in seen_by_callbacks] == [1, 2, 3]
    assert isinstance(history.test_accuracy, float)
    without_test = fit(build_snn("bn", depth=1, width=4, num_steps=2), train, val, epochs=1, progress=False)
    assert without_test.test_accuracy is None
    with pytest.raises(ValueError, match="no test accuracy"):
        without_test.final_test_accuracy


def test_seeding_repeats_a_run_exactly():
    results = []
    for _ in range(2):
        seed_everything(7)
        model = build_snn("bn", depth=2, width=8, num_steps=2)
        train, val, _ = tiny_loaders()
        results.append(fit(model, train, val, epochs=1, progress=False).train_loss)
    assert results[0] == results[1]


def test_callbacks_run_per_step_and_per_epoch():
    calls = {"step": 0, "epoch": 0}
    model = build_snn("none", depth=1, width=4, num_steps=2)
    train, val, _ = tiny_loaders(64)
    fit(
        model, train, val, epochs=2, progress=False,
        on_step=lambda m: calls.__setitem__("step", calls["step"] + 1),
        on_epoch=lambda m, h: calls.__setitem__("epoch", calls["epoch"] + 1),
    )
    assert calls == {"step": 4, "epoch": 2}


def test_history_helpers_and_errors():
    h = History(val_accuracy=[10.0, 50.0, 90.0])
    assert h.epochs_to_reach(50.0) == 2 and h.epochs_to_reach(95.0) is None
    assert h.final_val_accuracy == 90.0
    with pytest.raises(ValueError, match="no validation accuracy"):
        History().final_val_accuracy
    with pytest.raises(ValueError, match="no samples"):
        fit(build_snn("none", depth=1, width=4, num_steps=1), [], epochs=1, progress=False)
    with pytest.raises(TypeError, match="seed must be an int"):
        seed_everything(1.5)
    with pytest.raises(ValueError, match="epochs"):
        fit(build_snn("none", depth=1, width=4, num_steps=1), [], epochs=-1)


def test_probes_measure_without_changing_the_model():
    seed_everything(0)
    model = build_snn("bn", depth=3, width=8, num_steps=4)
    x = torch.rand(16, 1, 8, 8)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rates = firing_rates(model, x)
    assert rates.shape == (3,) and ((0 <= rates) & (rates <= 1)).all()
    stats = per_step_statistics(model, x)
    assert stats["current_mean"].shape == stats["rate"].shape == (3, 4)
    torch.testing.assert_close(stats["rate"].mean(dim=1), rates)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    norms = gradient_norms(model, x, torch.zeros(16, dtype=torch.long))
    assert len(norms) == 3 and all(n >= 0 for n in norms)
    assert all(p.grad is None for p in model.parameters())


def _headline(ann_none, ann_bn, snn_none, snn_bn, num_test=100):
    S = Summary.of
    return experiments.HeadlineResult(
        {"ann": {"none": S(ann_none), "bn": S(ann_bn)}, "snn": {"none": S(snn_none), "bn": S(snn_bn)}},
        config={"depth": 6}, seeds=[0, 1, 2], num_test=num_test,
    )


def test_headline_result_gaps_are_paired_by_seed_and_json():
    result = _headline([90.0, 91.0, 89.0], [95.0, 96.0, 94.0], [10.0, 10.0, 10.0], [90.0, 91.0, 89.0])
    assert result.gap("ann")["bn"].values == (5.0, 5.0, 5.0)
    assert result.gap("snn")["bn"].values == (80.0, 81.0, 79.0)
    assert result.gap_ratio() == {"bn": pytest.approx(16.0)}
    assert result.ann == {"none": 90.0, "bn": 95.0}
    data = json.loads(result.to_json())
    assert data["ann"]["bn"]["seeds"] == [95.0, 96.0, 94.0] and data["gap_ratio"]["bn"] == pytest.approx(16.0)
    assert "16.0x" in result.table() and "±" in result.table()


def test_headline_ratio_is_withheld_when_the_ann_gap_is_not_resolved():
    # ANN gap +1 on average but it scatters from -1 to +3 over seeds: not resolved, no ratio.
    result = _headline([90.0, 92.0, 90.0], [93.0, 91.0, 91.0], [10.0, 10.0, 10.0], [90.0, 90.0, 90.0])
    assert not result.gap_resolved("ann", "bn") and result.gap_resolved("snn", "bn")
    assert result.gap_ratio() == {"bn": None}
    assert "n/a" in result.table() and "not resolved" in result.table()


def test_depth_sweep_chooses_the_collapse_depth_on_validation_data():
    S = Summary.of
    sweep = experiments.DepthSweep(
        depths=[2, 4, 6], seeds=[0, 1, 2],
        val_accuracy={"snn": [S([90.0] * 3), S([15.0, 12.0, 30.0]), S([10.0] * 3)]},
        test_accuracy={"snn": [S([90.0] * 3), S([50.0] * 3), S([10.0] * 3)]},
        rates_at_init=[], rates_trained=[], histories={}, config={},
    )
    assert sweep.collapse_depth("snn") == 4  # validation mean 19 < 20, whatever the test set says
    assert sweep.collapse_depth("snn", chance_level=10.0) is None
    assert sweep.accuracy["snn"] == [90.0, 50.0, 10.0]


def test_headline_gives_spiking_only_names_an_snn_row_only():
    from snn_norm_lite.norms import NormSpec, register, unregister

    register(NormSpec("test-only", "spiking only", lambda c, t, **neuron: torch.nn.Identity(), spiking_only=True))
    try:
        config = experiments.TrainConfig(depth=1, width=4, num_steps=2, epochs=1)
        result = experiments.headline(norms=("none", "test-only"), seeds=(0,), config=config)
        assert list(result.accuracy["ann"]) == ["none"] and list(result.accuracy["snn"]) == ["none", "test-only"]
        assert "test-only" not in result.gap("ann") and "test-only" in result.gap("snn")
    finally:
        unregister("test-only")


def test_batch_statistics_accuracy_and_batch_free_switch():
    split = load_digits()
    model = experiments.build_model("ann", "bn", experiments.TrainConfig(depth=2, width=4))
    accuracy = probes.accuracy_with_batch_statistics(model, split.x_test[:40], split.y_test[:40], batch_size=8)
    assert 0 <= accuracy <= 100
    with pytest.raises(ValueError, match="batch_size"):
        probes.accuracy_with_batch_statistics(model, split.x_test, split.y_test, batch_size=0)
    homeostatic = experiments.build_model("snn", "homeostatic", experiments.TrainConfig(depth=2, width=4))
    assert norms.set_batch_free(homeostatic, False) == 2
    with pytest.raises(ValueError, match="no homeostatic"):
        norms.set_batch_free(model, False)
