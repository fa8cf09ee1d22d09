"""The side-by-side comparison of every method (chapter 12): rows, results, measured properties."""

import copy
import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch

from snn_norm_lite import ahsar, comparison, experiments, norms, plots
from snn_norm_lite.__main__ import main
from snn_norm_lite.ahsar import AHSAR
from snn_norm_lite.comparison import (
    method_statistics,
    compare_methods,
    comparison_config,
    measure_properties,
    method_rows,
    same_map_at_every_step,
    validation_accuracy_by_depth,
)
from snn_norm_lite.data import load_digits
from snn_norm_lite.experiments import TrainConfig, build_model
from snn_norm_lite.norms import NormSpec, available_norms, get_spec, register, unregister
from snn_norm_lite.training import seed_everything

TINY = TrainConfig(depth=1, width=4, num_steps=2, epochs=1)


def test_every_method_of_the_package_describes_its_statistics_in_its_own_spec():
    for name in available_norms():
        facts = method_statistics(name)
        assert set(facts) == {"training", "evaluation", "inference"} and "not described" not in facts.values(), name
        assert facts == dict(get_spec(name).statistics)


def test_a_method_without_a_description_is_said_to_be_not_described():
    spec = register(NormSpec("undescribed_test", "no text", lambda num_features, num_steps, **neuron: torch.nn.Identity()))
    try:
        assert method_statistics("undescribed_test") == dict.fromkeys(("training", "evaluation", "inference"), "not described")
        assert method_rows(["undescribed_test"])[0].statistics()["training"] == "not described"
    finally:
        unregister(spec.name)
    with pytest.raises(ValueError, match="statistics must map exactly"):
        NormSpec("x", "y", lambda *a, **k: None, statistics={"training": "batch"})


def test_rows_state_each_neuron_and_the_ahsar_rows():
    rows = method_rows(ahsar_on=("bn", "none"), config=TrainConfig(beta=0.9, threshold=1.0))
    labels = [row.label for row in rows]
    assert labels == available_norms() + ["bn+ahsar", "none+ahsar"]
    by_label = {row.label: row for row in rows}
    assert by_label["ei"].beta == comparison.PAPER_NEURONS["ei"]["beta"] == 0.5
    assert all(row.beta == 0.9 and row.threshold == 1.0 for row in rows if row.norm != "ei")
    assert by_label["bn+ahsar"].ahsar and by_label["bn+ahsar"].norm == "bn"
    assert by_label["ei"].neuron == "LIF, beta 0.5, V_th 1"
    assert by_label["none+ahsar"].neuron.endswith("+ AHSAR")
    assert "AHSAR" in by_label["bn+ahsar"].statistics()["training"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(norms=["nope"]), "unknown method"),
        (dict(ahsar_on=["nope"]), "unknown method"),
        (dict(norms=["bn", "bn"]), "appears twice"),
        (dict(overrides={"ei": {"depth": 3}}), "only beta and threshold"),
    ],
)
def test_rows_reject_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        method_rows(**kwargs)


def test_the_comparison_budget():
    config = comparison_config()
    assert (config.depth, config.width, config.num_steps, config.epochs) == (7, 16, 4, 6)
    assert (config.batch_size, config.lr, config.beta, config.threshold) == (64, 1e-3, 0.9, 1.0)
    assert comparison_config(epochs=2).epochs == 2


@pytest.fixture(scope="module")
def small_comparison():
    return compare_methods(["none", "bn", "ei"], seeds=(0, 1, 2), config=TINY, ahsar_on=("none",), keep_models=True)


def test_compare_methods_runs_every_row_on_every_seed(small_comparison):
    result, trained = small_comparison
    assert result.labels == ["none", "bn", "ei", "none+ahsar"]
    assert result.num_test == 360 and result.seeds == [0, 1, 2]
    for label in result.labels:
        assert result.summary(label).n == 3 and result.val_accuracy[label].n == 3
        assert len(result.histories[label]) == 3 and len(result.rates[label][0]) == TINY.depth
        assert 0 <= result.mean_accuracy(label) <= 100
    assert result.accuracy["bn"] == list(result.test_accuracy["bn"].values)
    assert float(trained["ei"][0].neurons()[0].beta) == 0.5  # the E-I row keeps its paper's neuron
    assert float(trained["bn"][0].neurons()[0].beta) == 0.9
    assert trained["bn"][1] is None and isinstance(trained["none+ahsar"][1], AHSAR)
    assert trained["none+ahsar"][1].attached
    assert result.best() in result.not_resolved_from_best()
    table = result.table()
    assert all(label in table for label in result.labels) and "one test image = 0.28" in table
    data = json.loads(result.to_json())
    assert list(data["results"]) == result.labels and data["results"]["ei"]["beta"] == 0.5
    assert data["config"]["depth"] == TINY.depth and data["seeds"] == [0, 1, 2] and data["num_test"] == 360
    with pytest.raises(ValueError, match="no row"):
        result.summary("tab")


def test_rows_match_the_single_runs_they_stand_for(small_comparison):
    result, _ = small_comparison
    split = load_digits()
    _, history = experiments.train_once("snn", "bn", 1, TINY, split)
    assert result.accuracy["bn"][1] == history.final_test_accuracy
    run = ahsar.train_with_controller("none", 1, TINY, split, AHSAR())
    assert result.accuracy["none+ahsar"][1] == run.history.final_test_accuracy
    assert result.thresholds["none+ahsar"][1] == [float(layer.threshold) for layer in run.model.neurons()]
    assert result.threshold_history["none+ahsar"][1] == run.thresholds
    assert len(run.thresholds) == TINY.epochs + 1 and set(result.threshold_history) == {"none+ahsar"}


def test_validation_pilot_never_evaluates_the_test_set(monkeypatch):
    calls = []
    original = experiments.fit

    def spy(*args, **kwargs):
        calls.append(kwargs.get("test_loader"))
        return original(*args, **kwargs)

    monkeypatch.setattr(experiments, "fit", spy)
    result = validation_accuracy_by_depth((1, 2), "none", seeds=(0, 1, 2), config=TINY)
    assert list(result) == [1, 2] and all(s.n == 3 for s in result.values())
    assert calls == [None] * 6
    with pytest.raises(ValueError, match="at least one depth"):
        validation_accuracy_by_depth((), config=TINY)


def _warmed(norm, **config):
    """A small reference SNN after a few training-mode passes (running statistics that differ per step)."""
    seed_everything(0)
    model = build_model("snn", norm, TrainConfig(depth=2, width=4, num_steps=4, **config))
    x = load_digits().x_train[:32]
    with torch.no_grad():
        for i in range(3):
            model(x * (1 + i))
    return model


@pytest.mark.parametrize(
    "norm, causal_training, batch_dependent_training, same_map",
    [
        ("none", True, False, None),
        ("bn", False, True, True),
        ("tdbn", False, True, True),
        ("bntt", True, True, False),
        ("tab", True, True, False),
        ("mpbn", False, True, True),  # the time-merged BatchNorm after each convolution is not causal
        ("homeostatic", True, True, False),
        ("ei", True, False, None),
    ],
)
def test_measured_properties(norm, causal_training, batch_dependent_training, same_map):
    model = _warmed(norm)
    before = copy.deepcopy(model.state_dict())
    properties = measure_properties(model, load_digits().x_val[:16])
    assert properties == {
        "causal_training": causal_training,
        "batch_dependent_training": batch_dependent_training,
        "causal_evaluation": True,
        "batch_dependent_evaluation": False,
        "same_map_every_step": same_map,
    }
    after = model.state_dict()
    assert all(torch.equal(before[k], v) if torch.is_tensor(v) else before[k] == v for k, v in after.items())


def test_tebn_is_a_different_map_per_step_once_its_scales_differ():
    model = _warmed("tebn")
    x = load_digits().x_val[:8]
    assert same_map_at_every_step(model, x)  # p_t all 1 at initialisation
    with torch.no_grad():
        model.blocks[0].norm.time_weight[1] = 2.0
    assert not same_map_at_every_step(model, x)


def test_batch_free_homeostatic_layer_is_measured_batch_free():
    model = _warmed("homeostatic")
    norms.set_batch_free(model, True)
    properties = measure_properties(model, load_digits().x_val[:16])
    assert properties["batch_dependent_training"] is False and properties["causal_training"] is True


def test_measured_properties_restore_an_attached_controller():
    model = _warmed("none")
    controller = AHSAR().attach(model)
    x = load_digits().x_val[:16]
    with torch.no_grad():
        model.train()
        model(x)  # one regulated pass: the controller has state
    state = controller.state_dict()
    properties = measure_properties(model, x, controller)
    assert properties["causal_training"] and not properties["batch_dependent_training"]
    after = controller.state_dict()
    assert after["passes"] == state["passes"] and torch.equal(after["scales"], state["scales"])


def test_measure_properties_rejects_bad_input():
    model = _warmed("bn")
    with pytest.raises(ValueError, match="static images"):
        measure_properties(model, torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="split_step"):
        measure_properties(model, torch.zeros(4, 1, 8, 8), split_step=4)
    seed_everything(0)
    fresh = build_model("snn", "ei", TrainConfig(depth=1, width=4, num_steps=2))
    with pytest.raises(ValueError, match="not initialised"):
        measure_properties(fresh, load_digits().x_val[:4])


def test_comparison_figure(small_comparison):
    result, _ = small_comparison
    figure = plots.method_comparison(result, highlight=["bn", "none+ahsar"])
    assert len(figure.axes) == 3
    assert len(figure.axes[1].lines) == 3  # two rows and the chance line
    plt.close(figure)
    with pytest.raises(ValueError, match="no row"):
        plots.method_comparison(result, highlight=["tab"])
    assert plt.get_fignums() == []


def test_results_timings_and_csv(small_comparison):
    result, _ = small_comparison
    results = result.results()
    assert list(results) == result.labels
    for label, entry in results.items():
        history_seconds = [s for h in result.histories[label] for s in h.epoch_seconds]
        assert len(history_seconds) == 3 * TINY.epochs
        assert entry["seconds_per_epoch"] == pytest.approx(sum(history_seconds) / len(history_seconds))
        assert entry["seeds"] == list(result.test_accuracy[label].values)
        assert entry["val"]["seeds"] == list(result.val_accuracy[label].values)
        assert entry["rate"] == pytest.approx(sum(result.mean_rates(label)) / TINY.depth)
    assert "threshold_history" in results["none+ahsar"] and "threshold_history" not in results["none"]
    lines = result.to_csv().splitlines()
    assert lines[0].split(",") == list(result.CSV_COLUMNS)
    assert [line.split(",")[0] for line in lines[1:]] == result.labels
    assert "s/epoch" in result.table()


def test_synaptic_operations_of_every_row_are_measured_on_validation_images(small_comparison):
    from snn_norm_lite.synops import synaptic_operations

    result, trained = small_comparison
    split = load_digits()
    for label in result.labels:
        per_seed = result.operations[label]
        assert len(per_seed) == 3 and all(set(entry) == {"ac", "mac", "normaliser"} for entry in per_seed)
        model = trained[label][0]  # seed 0, still in memory: measured again, the same counts
        assert per_seed[0] == synaptic_operations(model, split.x_val[:256]).per_image()
        summary = result.operations_summary(label)
        assert summary["mac"].n == 3 and summary["mac"].mean > 0  # the image enters the first layer
    assert result.operations_summary("bn")["normaliser"].mean == 0.0  # folds into the convolution
    assert result.operations_summary("ei")["normaliser"].mean > 0
    entry = result.results()["bn"]["operations"]
    assert entry["ac"]["seeds"] == [e["ac"] for e in result.operations["bn"]]
    csv_lines = [line.split(",") for line in result.to_csv().splitlines()]
    ac_column = csv_lines[0].index("ac_mean")
    assert float(csv_lines[2][ac_column]) == pytest.approx(entry["ac"]["mean"], abs=0.05)
    header = result.table().splitlines()[1]
    assert "kAC/image" in header and "kMAC/image" in header and header.split()[-1] == "s/epoch"
    with pytest.raises(ValueError, match="no measured synaptic operations"):
        comparison.MethodComparison(
            result.rows, result.seeds, result.test_accuracy, result.val_accuracy, result.histories, result.rates,
            result.thresholds, result.threshold_history, result.config, result.num_test,
        ).operations_summary("bn")


def test_a_normaliser_without_a_cost_rule_is_reported_as_unknown():
    class StepGroupNorm(torch.nn.GroupNorm):
        def forward(self, x):
            return super().forward(x.flatten(0, 1)).view_as(x)

    spec = register(NormSpec("groupnorm_synops_test", "GroupNorm per step",
                             lambda num_features, num_steps, **neuron: StepGroupNorm(2, num_features)))
    try:
        result = compare_methods(["groupnorm_synops_test"], seeds=(0,), config=TINY)
    finally:
        unregister(spec.name)
    summary = result.operations_summary("groupnorm_synops_test")
    assert summary["normaliser"] is None and summary["mac"].mean > 0
    assert result.results()["groupnorm_synops_test"]["operations"]["normaliser"] is None
    assert result.table().splitlines()[2].split()[-2] == "?"
    assert result.to_csv().splitlines()[1].split(",")[-1] == ""


def test_save_comparison(small_comparison, tmp_path):
    result, _ = small_comparison
    paths = comparison.save_comparison(result, tmp_path / "new" / "dir", highlight=["bn"])
    assert {kind: path.name for kind, path in paths.items()} == comparison.OUTPUT_FILES
    assert json.loads(paths["json"].read_text()) == json.loads(result.to_json())
    assert paths["csv"].read_text() == result.to_csv()
    assert paths["figure"].read_bytes()[:4] == b"\x89PNG"
    assert plt.get_fignums() == []


def test_command_line_compare(capsys):
    code = main(["compare", "--norms", "none,bn", "--ahsar", "bn", "--depth", "1", "--width", "4", "--epochs", "1",
                 "--steps", "2", "--seeds", "3", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result["results"]) == ["none", "bn", "bn+ahsar"]
    assert len(result["results"]["bn+ahsar"]["seeds"]) == 3 and result["results"]["bn+ahsar"]["ahsar"]


def test_command_line_compare_reports_bad_rows(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--norms", "bn,bn", "--depth", "1", "--width", "4", "--epochs", "1", "--steps", "2"])
    assert exit_info.value.code == 2
    assert "appears twice" in capsys.readouterr().err


def test_experiments_re_exports_the_comparison():
    assert experiments.compare_methods is comparison.compare_methods
    assert experiments.MethodComparison is comparison.MethodComparison


def test_running_variance_ratio():
    model = _warmed("bn")
    x = load_digits().x_val[:64]
    ratios = comparison.running_variance_ratio(model, x)
    assert len(ratios) == 2 and all(r > 0 for r in ratios)
    # After many passes on the same images the running variance matches the actual one
    # (up to the unbiased correction of a large sample).
    with torch.no_grad():
        for norm in (block.norm for block in model.blocks):
            norm.momentum = 1.0
        model.train()
        model(x)
    assert comparison.running_variance_ratio(model, x)[0] == pytest.approx(1.0, rel=1e-2)
    assert all(r != r for r in comparison.running_variance_ratio(_warmed("none"), x))  # nan: no running_var
    with pytest.raises(TypeError, match="no blocks"):
        comparison.running_variance_ratio(torch.nn.Linear(2, 2), x)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: compare_methods(["none"], seeds=()), ValueError, "compare_methods: give at least one seed"),
        (lambda: compare_methods(["none"], seeds=(0, 0)), ValueError, "a seed appears twice"),
        (lambda: compare_methods(["none"], seeds=(1.0,)), TypeError, "every seed must be an int"),
        (lambda: compare_methods(["none"], seeds=(-1,)), ValueError, "every seed must be an int >= 0"),
        (lambda: compare_methods(["none"], seeds=(0,), config={"depth": 1}), TypeError, "config must be a TrainConfig"),
        (lambda: compare_methods(["none"], seeds=(0,), probe_samples=0), ValueError, "probe_samples must be positive"),
        (lambda: compare_methods(["none"], seeds=(0,), keep_models=1), TypeError, "keep_models must be True or False"),
        (lambda: compare_methods(["none"], seeds=(0,), ahsar_config=[1]), TypeError, "ahsar_config must be a mapping"),
        (lambda: method_rows("bn"), TypeError, "norms must be a sequence of registry names"),
        (lambda: method_rows(["bn"], ahsar_on="bn"), TypeError, "ahsar_on must be a sequence"),
        (lambda: validation_accuracy_by_depth([0], seeds=(0,)), ValueError, "every depth must be positive"),
        (lambda: validation_accuracy_by_depth([2], seeds=(0, 0)), ValueError, "a seed appears twice"),
        (lambda: experiments.headline(["none"], seeds=[]), ValueError, "headline: give at least one seed"),
        (lambda: experiments.headline("bn", seeds=[0]), TypeError, "wrap it in a list"),
        (lambda: experiments.depth_sweep([2, 2.5], seeds=[0]), TypeError, "every depth must be an int"),
        (lambda: experiments.depth_sweep([2], seeds=[0], kinds=("cnn",)), ValueError, "kinds must be distinct names"),
        (lambda: experiments.train_once("cnn", "bn", 0, TINY), ValueError, "kind must be 'ann' or 'snn'"),
        (lambda: experiments.train_once("snn", "bn", 0, {"depth": 1}), TypeError, "config must be a TrainConfig"),
    ],
)
def test_runners_check_their_arguments_before_training(call, error, message, monkeypatch):
    def no_training(*args, **kwargs):  # pragma: no cover - reached only if a check is missing
        raise AssertionError("trained before checking its arguments")

    monkeypatch.setattr(experiments, "fit", no_training)
    with pytest.raises(error, match=message):
        call()
