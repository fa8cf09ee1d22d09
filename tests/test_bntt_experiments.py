"""Helpers of the BNTT and TEBN chapters: accuracy after k steps, per-step parameter plots."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch

from snn_norm_lite import early_exit
from snn_norm_lite import experiments, plots
from snn_norm_lite.experiments import TrainConfig
from snn_norm_lite.training import seed_everything


@pytest.mark.parametrize("norm", ["bntt", "tebn"])
def test_accuracy_by_steps_equals_a_shorter_network(norm):
    seed_everything(0)
    config = TrainConfig(depth=2, width=4, num_steps=4)
    model = experiments.build_model("snn", norm, config)
    x, y = torch.rand(20, 1, 8, 8), torch.randint(0, 10, (20,))
    model.train()
    model(x)  # some running statistics
    accuracies = early_exit.accuracy_by_steps(model, x, y)
    assert len(accuracies) == 4 and model.training  # mode restored
    model.eval()
    assert accuracies[-1] == pytest.approx(100.0 * (model(x).argmax(dim=1) == y).float().mean().item())
    # k = 1: the read-out of the first step alone
    records = []
    handle = model.readout.register_forward_hook(lambda m, i, o: records.append(o))
    with torch.no_grad():
        model(x)
    handle.remove()
    assert accuracies[0] == pytest.approx(100.0 * (records[0][0].argmax(dim=1) == y).float().mean().item())


def test_per_step_parameters_plots_one_line_per_layer_and_checks_shape():
    fig = plots.per_step_parameters(torch.ones(3, 5), "gain")
    assert len(fig.axes[0].get_legend().get_texts()) == 3
    plt.close(fig)
    with pytest.raises(ValueError, match="layers, steps"):
        plots.per_step_parameters(torch.ones(5), "gain")
