"""The MPBN network with the package's neuron and with the public code's neuron (chapter 07)."""

import pytest
import torch

from snn_norm_lite.data import load_digits
from snn_norm_lite.experiments import TrainConfig
from snn_norm_lite.mpbn_configurations import CONFIGURATIONS, build_mpbn_network, train_mpbn
from snn_norm_lite.norms import MPBNLeaky

TINY = TrainConfig(depth=2, width=4, num_steps=2, epochs=1)


def test_both_configurations_share_every_weight_but_the_neurons():
    networks = {}
    for name in CONFIGURATIONS:
        torch.manual_seed(3)
        networks[name] = build_mpbn_network(name, TINY)
    package, official = networks["package"], networks["official"]
    assert all(isinstance(n, MPBNLeaky) for n in package.neurons() + official.neurons())
    assert [n.reset for n in package.neurons()] == ["subtract"] * 2
    assert [n.reset for n in official.neurons()] == ["zero"] * 2
    assert all(n.beta == TINY.beta for n in package.neurons()) and all(n.beta == 0.25 for n in official.neurons())
    for (name, a), (_, b) in zip(package.named_parameters(), official.named_parameters()):
        assert torch.equal(a, b), name


def test_train_mpbn_trains_and_measures_validation_and_test():
    split = load_digits()
    for name in CONFIGURATIONS:
        model, history = train_mpbn(name, 0, TINY, split)
        assert len(history.val_accuracy) == 1 and 0 <= history.final_test_accuracy <= 100
        assert isinstance(model.blocks[0].neuron, MPBNLeaky)
    with pytest.raises(ValueError, match=r"train_mpbn: configuration must be one of 'package', 'official'"):
        train_mpbn("paper", 0, TINY, split)
