"""Helpers of the tdBN chapter: scaling tdBN to the neurons' threshold, training a built model."""

import pytest
import torch

from snn_norm_lite import experiments, probes
from snn_norm_lite.data import load_digits
from snn_norm_lite.experiments import TrainConfig
from snn_norm_lite.training import seed_everything


def test_tdbn_to_threshold_sets_every_layer_and_makes_spikes_threshold_invariant():
    x = torch.rand(16, 1, 8, 8)
    rates = []
    for threshold in (1.0, 4.0):
        seed_everything(0)
        model = experiments.build_model("snn", "tdbn", TrainConfig(depth=3, width=4, num_steps=4, threshold=threshold))
        assert experiments.tdbn_to_threshold(model, alpha=0.5) == 3
        assert all(block.norm.v_th == threshold and block.norm.alpha == 0.5 for block in model.blocks)
        rates.append(probes.firing_rates(model, x, train_mode=True))
    assert torch.equal(rates[0], rates[1])  # LIF is homogeneous: scaling input and threshold by 4 keeps the spikes


def test_tdbn_to_threshold_rejects_models_without_tdbn_and_bad_alpha():
    model = experiments.build_model("snn", "bn", TrainConfig(depth=2, width=4, num_steps=2))
    with pytest.raises(ValueError, match="no tdBN layer"):
        experiments.tdbn_to_threshold(model)
    tdbn_model = experiments.build_model("snn", "tdbn", TrainConfig(depth=2, width=4, num_steps=2))
    with pytest.raises(ValueError, match="alpha"):
        experiments.tdbn_to_threshold(tdbn_model, alpha=0)


def test_fit_model_matches_train_once():
    split = load_digits()
    config = TrainConfig(depth=2, width=4, num_steps=2, epochs=1)
    _, reference = experiments.train_once("snn", "tdbn", 0, config, split)
    seed_everything(0)
    model = experiments.build_model("snn", "tdbn", config)
    history = experiments.fit_model(model, config, split, seed=0)
    assert history.test_accuracy == reference.test_accuracy
    assert history.val_accuracy == reference.val_accuracy
