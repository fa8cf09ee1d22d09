"""The primer's figures and the neuron read-outs they are drawn from."""

import matplotlib
import pytest
import snntorch
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from snn_norm_lite.diagrams import (  # noqa: E402
    STAGES,
    hard_reset_membranes,
    lif_trace_figure,
    record_stages,
    reference_network_figure,
    reference_network_stages,
    unrolled_graph_figure,
)
from snn_norm_lite.models import build_snn  # noqa: E402
from snn_norm_lite.neurons import MultiStepLeaky, membrane_potentials  # noqa: E402


def snntorch_trace(x, beta, threshold, reset):
    leaky = snntorch.Leaky(beta=beta, threshold=threshold, reset_mechanism=reset)
    mem = torch.zeros_like(x[0])
    spikes, membranes = [], []
    for t in range(x.shape[0]):
        spike, mem = leaky(x[t], mem)
        spikes.append(spike)
        membranes.append(mem)
    return torch.stack(spikes).detach(), torch.stack(membranes).detach()


def test_membrane_potentials_equal_snntorch_subtractive_leaky():
    torch.manual_seed(0)
    x = torch.rand(20, 3, 5) * 0.6
    spikes, membranes = membrane_potentials(MultiStepLeaky(beta=0.8, threshold=0.7), x)
    ref_spikes, ref_membranes = snntorch_trace(x, 0.8, 0.7, "subtract")
    assert spikes.sum() > 0
    torch.testing.assert_close(spikes, ref_spikes)
    torch.testing.assert_close(membranes, ref_membranes)


def test_membrane_potentials_are_detached_and_leave_the_input_alone():
    x = torch.rand(5, 2, requires_grad=True)
    spikes, membranes = membrane_potentials(MultiStepLeaky(), x)
    assert not spikes.requires_grad and not membranes.requires_grad
    assert x.grad is None and x.requires_grad


def test_membrane_potentials_refuses_other_inputs():
    with pytest.raises(TypeError, match="membrane_potentials: expected a MultiStepLeaky"):
        membrane_potentials(torch.nn.ReLU(), torch.rand(3, 2))
    with pytest.raises(ValueError, match="backend='fused'"):
        membrane_potentials(MultiStepLeaky(backend="snntorch"), torch.rand(3, 2))
    with pytest.raises(TypeError, match="membrane_potentials: expected a floating-point tensor"):
        membrane_potentials(MultiStepLeaky(), torch.ones(3, 2, dtype=torch.int64))


def test_hard_reset_restarts_from_the_input_and_matches_snntorch():
    spikes, membranes = hard_reset_membranes(torch.full((6, 1), 0.6), beta=1.0, threshold=1.0)
    # beta = 1: 0.6, 1.2 (fires), then 0 + 0.6, 1.2 (fires), ...
    torch.testing.assert_close(membranes.flatten(), torch.tensor([0.6, 1.2, 0.6, 1.2, 0.6, 1.2]))
    torch.testing.assert_close(spikes.flatten(), torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0]))
    torch.manual_seed(1)
    x = torch.rand(15, 4) * 0.8
    ref = snntorch_trace(x, 0.7, 0.9, "zero")
    ours = hard_reset_membranes(x, 0.7, 0.9)
    torch.testing.assert_close(ours[0], ref[0])
    torch.testing.assert_close(ours[1], ref[1])
    with pytest.raises(ValueError, match="hard_reset_membranes: beta"):
        hard_reset_membranes(x, 1.5, 1.0)


def test_subtractive_and_hard_reset_differ_after_the_first_spike():
    x = torch.full((10, 1), 0.7)
    soft, _ = membrane_potentials(MultiStepLeaky(beta=1.0, threshold=1.0), x)
    hard, _ = hard_reset_membranes(x, 1.0, 1.0)
    # subtractive keeps the excess: rate 0.7 in the long run; hard reset: one spike every 2 steps
    assert soft.sum() > hard.sum()


@pytest.mark.parametrize("depth, steps, batch, width", [(2, 1, 3, 4), (3, 4, 2, 6), (6, 8, 5, 8)])
def test_recorded_shapes_equal_the_formula(depth, steps, batch, width):
    model = build_snn("bn", depth=depth, width=width, num_steps=steps)
    recorded = record_stages(model, torch.rand(batch, 1, 8, 8))
    assert list(recorded) == list(STAGES)
    assert recorded == reference_network_stages(depth, width, steps, batch)


def test_record_stages_removes_its_hooks_and_keeps_the_mode():
    model = build_snn("bn", depth=2, width=4, num_steps=2)
    model.train()
    record_stages(model, torch.rand(2, 1, 8, 8))
    assert model.training
    hooks = [m._forward_hooks for m in model.modules()] + [m._forward_pre_hooks for m in model.modules()]
    assert all(len(h) == 0 for h in hooks)


def test_stage_functions_refuse_depth_one_and_odd_images():
    with pytest.raises(ValueError, match="depth must be >= 2"):
        record_stages(build_snn("bn", depth=1, width=4, num_steps=2), torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="image_size must be even"):
        reference_network_stages(2, 4, 2, 2, image_size=7)
    with pytest.raises(TypeError, match="record_stages: expected a reference spiking network"):
        record_stages(torch.nn.Linear(2, 2), torch.rand(2, 2))


def test_figures_are_drawn():
    fig = lif_trace_figure({"constant": torch.full((30,), 0.2), "noisy": torch.rand(30) * 0.4})
    assert len(fig.axes) == 2
    plt.close(fig)
    fig = unrolled_graph_figure(4)
    assert len(fig.axes) == 1
    plt.close(fig)
    fig = reference_network_figure(reference_network_stages(4, 32, 8, 64), depth=4)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "[8, 64, 32, 4, 4]" in texts and "[64, 10]" in texts
    plt.close(fig)
    with pytest.raises(ValueError, match="stages must have exactly the keys"):
        reference_network_figure({"image": (1,)}, depth=4)
    with pytest.raises(ValueError, match="every input must be a 1-D current"):
        lif_trace_figure({"x": torch.rand(2, 3)})
