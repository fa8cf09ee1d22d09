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
    with pytest.raises(ValueError, match="the training loader is empty"):
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


# -- argument checks of fit and evaluate (on a plain linear model: no layer of the package) -----


def linear_model():
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))


def some_batches(n=2, batch=4):
    generator = torch.Generator().manual_seed(0)
    return [(torch.rand(batch, 1, 8, 8, generator=generator), torch.randint(0, 10, (batch,), generator=generator))
            for _ in range(n)]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"train_loader": []}, ValueError, "the training loader is empty"),
        ({"train_loader": iter([])}, ValueError, "yielded no samples"),
        ({"train_loader": torch.zeros(3)}, TypeError, "train_loader must be a loader"),
        ({"val_loader": 3}, TypeError, "val_loader must be a loader"),
        ({"test_loader": "test"}, TypeError, "test_loader must be a loader"),
        ({"epochs": -1}, ValueError, "epochs must be an int >= 0"),
        ({"epochs": 2.0}, TypeError, "epochs must be an int"),
        ({"epochs": True}, TypeError, "epochs must be an int"),
        ({"lr": 0.0}, ValueError, "lr must be a positive number"),
        ({"lr": float("nan")}, ValueError, "lr must be a finite number"),
        ({"lr": "1e-3"}, TypeError, "lr must be a real number"),
        ({"device": "gpu0"}, ValueError, "'gpu0' is not a device"),
        ({"device": 0}, TypeError, "device must be a str or a torch.device"),
        ({"progress": 1}, TypeError, "progress must be True or False"),
        ({"on_step": "print"}, TypeError, "on_step must be callable"),
        ({"on_epoch": 3}, TypeError, "on_epoch must be callable"),
        ({"description": None}, TypeError, "description must be a str"),
        ({"model": "model"}, TypeError, "model must be a torch.nn.Module"),
        ({"model": torch.nn.Flatten()}, ValueError, "has no parameters to train"),
    ],
)
def test_fit_checks_its_arguments_before_training(kwargs, error, message):
    arguments = {"model": linear_model(), "train_loader": some_batches(), "epochs": 1, "progress": False, **kwargs}
    model = arguments.pop("model")
    state = {k: v.clone() for k, v in model.state_dict().items()} if isinstance(model, torch.nn.Module) else {}
    with pytest.raises(error, match=message):
        fit(model, **arguments)
    if state:
        assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # untouched


def test_fit_and_evaluate_refuse_labels_that_would_broadcast():
    x, y = torch.rand(4, 1, 8, 8), torch.randint(0, 10, (4, 1))  # labels [B, 1]: would compare as [B, B]
    with pytest.raises(ValueError, match=r"expected logits \[B, classes\] and labels \[B\]"):
        evaluate(linear_model(), (x, y))
    with pytest.raises(ValueError, match=r"expected logits \[B, classes\] and labels \[B\]"):
        fit(linear_model(), [(x, y)], epochs=1, progress=False)


@pytest.mark.parametrize(
    "data, kwargs, error, message",
    [
        ([], {}, ValueError, "no samples to evaluate"),
        ((torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long)), {}, ValueError, "no samples to evaluate"),
        ((torch.zeros(3, 1, 8, 8), torch.zeros(2, dtype=torch.long)), {}, ValueError, "same length"),
        ((torch.zeros(3, 1, 8, 8), torch.zeros(3, dtype=torch.long)), {"batch_size": 0}, ValueError, "batch_size"),
        (5, {}, TypeError, "data must be a loader"),
        ([], {"device": 1}, TypeError, "device must be"),
    ],
)
def test_evaluate_checks_its_data(data, kwargs, error, message):
    with pytest.raises(error, match=message):
        evaluate(linear_model(), data, **kwargs)


def test_fit_with_zero_epochs_only_measures_the_test_set():
    model = linear_model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    history = fit(model, some_batches(), test_loader=some_batches(1), epochs=0, progress=False)
    assert history.train_loss == [] and history.test_accuracy is not None
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_seed_everything_refuses_seeds_numpy_cannot_take():
    with pytest.raises(ValueError, match="seed must be an int in 0 .. 2\\*\\*32 - 1"):
        seed_everything(-1)


# -- TrainConfig checks its fields --------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value, error",
    [
        ("depth", 0, ValueError), ("depth", 2.0, TypeError), ("width", True, TypeError), ("num_steps", -1, ValueError),
        ("epochs", 0, ValueError), ("batch_size", "64", TypeError),
        ("lr", 0.0, ValueError), ("lr", float("inf"), ValueError), ("lr", "0.1", TypeError),
        ("beta", 1.5, ValueError), ("beta", float("nan"), ValueError), ("beta", True, TypeError),
        ("threshold", 0.0, ValueError), ("threshold", -1.0, ValueError), ("threshold", None, TypeError),
        ("dataset", "mnist", ValueError), ("dataset", 3, TypeError),
        ("device", "gpu0", ValueError), ("device", torch.device("cpu"), TypeError),
        ("norm_options", None, TypeError), ("norm_options", {1: 2}, TypeError),
    ],
)
def test_train_config_checks_its_fields(field, value, error):
    with pytest.raises(error, match=f"TrainConfig: {field}"):
        experiments.TrainConfig(**{field: value})


def test_train_config_accepts_its_defaults_and_the_chapter_budgets():
    assert experiments.TrainConfig().depth == 6
    assert experiments.TrainConfig(beta=0.0, threshold=0.25, norm_options={"alpha": 0.7}).beta == 0.0
    assert experiments.headline_config(epochs=2).epochs == 2


# -- probes check their arguments --------------------------------------------------------------


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda m: firing_rates(m, torch.rand(4, 1, 8, 8).numpy()), TypeError, "firing_rates: expected a torch.Tensor"),
        (lambda m: firing_rates(m, torch.rand(4, 1, 8, 8), train_mode=1), TypeError, "train_mode must be True or False"),
        (lambda m: firing_rates("model", torch.rand(4, 1, 8, 8)), TypeError, "expected an nn.Module"),
        (lambda m: per_step_statistics(m, torch.ones(4, 1, 8, 8, dtype=torch.long)), TypeError, "floating-point"),
        (lambda m: per_step_statistics(m, torch.rand(4, 1, 8, 8), layers=[]), ValueError, "at least one layer"),
        (lambda m: gradient_norms(m, torch.rand(4, 1, 8, 8), torch.zeros(3, dtype=torch.long)), ValueError, "one label per image"),
        (lambda m: gradient_norms(m, torch.rand(4, 1, 8, 8), torch.zeros(4)), TypeError, "integer class labels"),
    ],
)
def test_probes_check_their_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call(build_snn("none", depth=2, width=4, num_steps=2))


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"x": torch.rand(0, 1, 8, 8), "y": torch.zeros(0, dtype=torch.long)}, ValueError, "no samples"),
        ({"y": torch.zeros(7, dtype=torch.long)}, ValueError, "one label per image"),
        ({"batch_size": 2.0}, TypeError, "batch_size must be an int"),
        ({"seed": -1}, ValueError, "seed must be an int >= 0"),
        ({"sorted_by_class": "yes"}, TypeError, "sorted_by_class must be True or False"),
    ],
)
def test_batch_statistics_accuracy_checks_its_arguments(kwargs, error, message):
    model = experiments.build_model("ann", "none", experiments.TrainConfig(depth=1, width=4))
    arguments = {"x": torch.rand(8, 1, 8, 8), "y": torch.zeros(8, dtype=torch.long), "batch_size": 4, **kwargs}
    with pytest.raises(error, match=message):
        probes.accuracy_with_batch_statistics(model, **arguments)


def test_evaluate_refuses_labels_that_are_not_class_indices():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x = torch.zeros(5, 4)
    with pytest.raises(TypeError, match="integer class indices"):
        evaluate(model, (x, torch.zeros(5)))
    with pytest.raises(ValueError, match=r"labels must lie in 0..2.*from 0 to 3"):
        evaluate(model, (x, torch.tensor([0, 1, 2, 3, 0])))
    with pytest.raises(ValueError, match=r"from -1 to 0"):
        evaluate(model, (x, torch.tensor([0, -1, 0, 0, 0])))
