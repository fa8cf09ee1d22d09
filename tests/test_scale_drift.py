"""Training with a trace of each layer's current scale, and the drift measured from it."""

import pytest

from snn_norm_lite.data import load_digits
from snn_norm_lite.experiments import TrainConfig, train_once
from snn_norm_lite.scale_drift import scale_drift, scale_drift_experiment, train_with_scale_trace

TINY = TrainConfig(depth=2, width=4, num_steps=2, epochs=1)


def test_scale_drift_is_the_largest_relative_change_of_a_layer():
    assert scale_drift([[1.0, 2.0], [1.5, 1.0], [1.1, 1.0]]) == pytest.approx(0.5)
    assert scale_drift([[0.5, 0.5], [0.5, 0.5]]) == 0.0
    with pytest.raises(ValueError, match="scale_drift: needs a trace of at least two"):
        scale_drift([[1.0]])
    with pytest.raises(ValueError, match="scale_drift: every measurement"):
        scale_drift([[1.0, 1.0], [1.0]])
    with pytest.raises(ValueError, match="started with scale 0"):
        scale_drift([[0.0], [1.0]])


def test_traced_run_without_init_is_the_same_run_as_train_once():
    split = load_digits()
    _, run = train_with_scale_trace("bn", seed=1, config=TINY, split=split)
    _, history = train_once("snn", "bn", 1, TINY, split)
    assert run.history.val_accuracy == history.val_accuracy
    assert run.history.test_accuracy == history.test_accuracy
    assert len(run.scales) == TINY.epochs + 1 and len(run.scales[0]) == TINY.depth
    assert run.scales[0] == pytest.approx([1.0, 1.0], rel=1e-3)  # BatchNorm at init: std(I) = 1 = V_th


def test_traced_run_with_init_starts_every_layer_at_the_gain():
    _, run = train_with_scale_trace("none", seed=0, config=TINY, split=load_digits(), init_gain=0.5)
    assert run.scales[0] == pytest.approx([0.5, 0.5], rel=1e-3)
    assert run.drift >= 0


def test_scale_drift_experiment_summarises_each_setup_over_seeds_and_merges():
    first = scale_drift_experiment({"init": {"norm": "none", "init_gain": 1.0, "threshold": 0.5}}, seeds=(0, 1), config=TINY)
    second = scale_drift_experiment({"bn": {"norm": "bn"}}, seeds=(0, 1), config=TINY)
    both = first.merged(second)
    assert list(both.runs) == ["init", "bn"]
    assert both.test_accuracy("init").n == 2 and both.drift("bn").n == 2
    assert "init" in both.table() and "drift" in both.table()
    assert len(both.mean_scales("init")) == TINY.epochs + 1
    with pytest.raises(ValueError, match="both results have the setup"):
        both.merged(second)
    with pytest.raises(ValueError, match="unknown fields"):
        scale_drift_experiment({"x": {"norm": "none", "thresh": 1.0}}, seeds=(0,), config=TINY)
    with pytest.raises(ValueError, match="needs a 'norm'"):
        scale_drift_experiment({"x": {}}, seeds=(0,), config=TINY)
