"""Helpers of the E-I circuit chapter: current moments at E-I Init, the "no E-I Init" ablation."""

import pytest
import torch

from snn_norm_lite import inhibition
from snn_norm_lite import experiments, inhibition
from snn_norm_lite.experiments import TrainConfig
from snn_norm_lite.training import seed_everything


def test_ei_current_at_init_is_centred_with_order_one_variance():
    for rate in (0.1, 0.5):
        currents = [inhibition.ei_current_at_init(rate, batch=8, num_steps=2, seed=seed) for seed in range(4)]
        assert currents[0].shape == (2, 8, 32, 8, 8)
        # The mean is zero in expectation over weight draws (one draw has a shared offset).
        assert abs(sum(c.mean().item() for c in currents) / 4) < 0.25
        assert all(0.5 < c.var().item() < 1.5 for c in currents)
    again = inhibition.ei_current_at_init(0.1, channels=16, batch=16, num_steps=2, seed=1)
    assert torch.equal(again, inhibition.ei_current_at_init(0.1, channels=16, batch=16, num_steps=2, seed=1))
    with pytest.raises(ValueError, match="rate"):
        inhibition.ei_current_at_init(0.0)


def test_replace_ei_init_with_default_skips_ei_init_and_respects_dale():
    seed_everything(0)
    model = experiments.build_model("snn", "ei", TrainConfig(depth=2, width=8, num_steps=2))
    assert inhibition.replace_ei_init_with_default(model) == 3  # two blocks and the read-out
    before = [p.clone() for p in model.parameters()]
    model.eval()
    model(torch.rand(4, 1, 8, 8))  # E-I Init would run here if it were still pending
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    for layer in inhibition.circuits(model):
        assert all(p.min() >= 0 for p in layer.dale_parameters())
        if not layer.output:
            assert torch.all(layer.gain_i == 1) and torch.all(layer.bias_e == 0)
    with pytest.raises(ValueError, match="no E-I circuits"):
        inhibition.replace_ei_init_with_default(experiments.build_model("snn", "bn", TrainConfig(depth=2, width=4)))
