"""tdBN in the reference networks: built for the neurons' threshold, options checked, trained by train_once."""

import pytest
import torch

from snn_norm_lite import experiments, probes
from snn_norm_lite.data import load_digits
from snn_norm_lite.experiments import TrainConfig
from snn_norm_lite.models import build_snn
from snn_norm_lite.training import seed_everything


def test_the_builder_scales_tdbn_to_the_neurons_threshold_so_spikes_are_threshold_invariant():
    x = torch.rand(16, 1, 8, 8)
    rates = []
    for threshold in (1.0, 4.0):
        seed_everything(0)
        model = build_snn("tdbn", depth=3, width=4, num_steps=4, threshold=threshold, norm_options={"alpha": 0.5})
        assert all(block.norm.v_th == threshold and block.norm.alpha == 0.5 for block in model.blocks)
        assert all(float(block.neuron.threshold) == threshold for block in model.blocks)
        rates.append(probes.firing_rates(model, x, train_mode=True))
    assert torch.equal(rates[0], rates[1])  # LIF is homogeneous: scaling input and threshold by 4 keeps the spikes


def test_the_training_config_threshold_reaches_tdbn():
    model = experiments.build_model("snn", "tdbn", TrainConfig(depth=2, width=4, num_steps=2, threshold=2.5))
    assert [block.norm.v_th for block in model.blocks] == [2.5, 2.5]


def test_norm_options_are_checked_against_the_method():
    with pytest.raises(ValueError, match="alpha"):
        build_snn("tdbn", depth=2, width=4, num_steps=2, norm_options={"alpha": 0})
    with pytest.raises(ValueError, match="has no option"):
        build_snn("bn", depth=2, width=4, num_steps=2, norm_options={"alpha": 0.5})
    with pytest.raises(ValueError, match="has no option"):
        build_snn("tdbn", depth=2, width=4, num_steps=2, norm_options={"alhpa": 0.5})


def test_prepare_runs_on_the_built_model_before_training():
    split = load_digits()
    config = TrainConfig(depth=2, width=4, num_steps=2, epochs=1)
    _, reference = experiments.train_once("snn", "tdbn", 0, config, split)
    seen = []
    model, history = experiments.train_once("snn", "tdbn", 0, config, split, prepare=lambda m: seen.append(m))
    assert seen == [model]
    assert history.test_accuracy == reference.test_accuracy
    assert history.val_accuracy == reference.val_accuracy
