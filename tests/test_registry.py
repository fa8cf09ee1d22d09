"""The registry: one method per module, the builder carries the neuron, plugins, no upward imports."""

import ast
import importlib
from pathlib import Path

import pytest
import torch
from torch import nn

import snn_norm_lite.norms as norms
from snn_norm_lite import experiments
from snn_norm_lite.experiments import TrainConfig
from snn_norm_lite.models import SpikingConvNet, build_ann, build_snn
from snn_norm_lite.norms import NormSpec, available_norms, build_norm, get_spec, register, unregister

PACKAGE = Path(norms.__file__).resolve().parents[1]


class ScaledToThreshold(nn.Module):
    """A test plugin: per-channel standardisation over (T, B, H, W), scaled to the threshold."""

    def __init__(self, num_features: int, threshold: float, gain: float = 1.0):
        super().__init__()
        self.num_features, self.threshold, self.gain = num_features, threshold, gain

    def forward(self, x):
        dims = (0, 1, 3, 4) if x.dim() == 5 else (0, 2, 3)
        shape = [1] * x.dim()
        shape[-3] = self.num_features
        mean, std = x.mean(dim=dims).view(shape), x.std(dim=dims).view(shape)
        return self.gain * self.threshold * (x - mean) / (std + 1e-5)


@pytest.fixture
def plugin():
    received = []

    def build(num_features, num_steps, *, threshold, beta, gain=1.0):
        received.append(dict(num_features=num_features, num_steps=num_steps, threshold=threshold, beta=beta, gain=gain))
        return ScaledToThreshold(num_features, threshold, gain)

    spec = register(NormSpec("scaled_test", "test plugin: standardised, scaled to V_th", build, options=("gain",)))
    yield spec, received
    unregister("scaled_test")


def test_a_plugin_registered_from_a_test_file_is_usable_everywhere(plugin):
    spec, received = plugin
    assert "scaled_test" in available_norms() and "scaled_test" in available_norms("ann")
    snn = build_snn("scaled_test", depth=2, width=4, num_steps=3, threshold=2.5, beta=0.8)
    assert all(isinstance(block.norm, ScaledToThreshold) for block in snn.blocks)
    assert received[0] == dict(num_features=4, num_steps=3, threshold=2.5, beta=0.8, gain=1.0)
    assert isinstance(build_ann("scaled_test", depth=2, width=4).blocks[0][1], ScaledToThreshold)
    assert received[-1]["num_steps"] is None
    assert snn(torch.rand(5, 1, 8, 8)).shape == (5, 10)
    model, history = experiments.train_once(
        "snn", "scaled_test", 0, TrainConfig(depth=2, width=4, num_steps=2, epochs=1, norm_options={"gain": 0.5})
    )
    assert model.blocks[0].norm.gain == 0.5 and 0 <= history.final_test_accuracy <= 100


def test_a_plugin_is_gone_after_unregister_and_a_name_is_registered_once(plugin):
    spec, _ = plugin
    with pytest.raises(ValueError, match="already registered"):
        register(spec)
    unregister("scaled_test")
    assert "scaled_test" not in available_norms()
    with pytest.raises(ValueError, match="unknown normaliser 'scaled_test'"):
        build_snn("scaled_test")
    register(spec)  # the fixture unregisters it again


@pytest.mark.parametrize("threshold", [0.5, 2.0, 4.0])
def test_the_builder_hands_the_neuron_to_the_normaliser(threshold):
    model = build_snn("tdbn", depth=3, width=4, num_steps=2, threshold=threshold, beta=0.7)
    for block in model.blocks:
        assert block.norm.v_th == threshold and block.norm.alpha == 1.0
        assert float(block.neuron.threshold) == threshold and float(block.neuron.beta) == pytest.approx(0.7)
    mpbn = build_snn("mpbn", depth=2, width=4, num_steps=2, threshold=threshold, beta=0.7)
    assert all(float(block.neuron.threshold) == threshold for block in mpbn.blocks)


def test_build_norm_passes_threshold_and_options_and_refuses_unknown_options():
    assert build_norm("tdbn", 8, 4, threshold=3.0, alpha=0.5).v_th == 3.0
    assert build_norm("tdbn", 8, 4, threshold=3.0, alpha=0.5).alpha == 0.5
    with pytest.raises(ValueError, match=r"'bn' has no option\(s\) \['alpha'\]; its options: none"):
        build_norm("bn", 8, 4, alpha=0.5)
    with pytest.raises(ValueError, match="spiking-network normaliser"):
        build_norm("tebn", 8)
    with pytest.raises(ValueError, match="circuit"):
        build_norm("ei", 8, 4)
    with pytest.raises(ValueError, match="num_features must be positive"):
        build_norm("bn", 0)
    with pytest.raises(ValueError, match="num_steps must be positive"):
        build_norm("tdbn", 4, 0)


@pytest.mark.parametrize(
    "fields, error, match",
    [
        (dict(name=""), ValueError, "name"),
        (dict(name="a,b"), ValueError, "commas"),
        (dict(summary=""), ValueError, "summary"),
        (dict(build="not callable"), TypeError, "build must be callable"),
        (dict(neuron=3), TypeError, "neuron must be callable"),
        (dict(spiking_only=1), TypeError, "spiking_only must be a bool"),
        (dict(options=["alpha"]), TypeError, "options must be a tuple"),
    ],
)
def test_a_malformed_spec_is_refused_at_construction(fields, error, match):
    good = dict(name="x", summary="a method", build=lambda num_features, num_steps, **neuron: nn.Identity())
    with pytest.raises(error, match=match):
        NormSpec(**{**good, **fields})


def test_register_refuses_what_is_not_a_spec():
    with pytest.raises(TypeError, match="expected a NormSpec"):
        register({"name": "x"})


def test_every_method_module_registers_exactly_its_method():
    """Adding a method means one module in norms/ and one name in norms/__init__.py."""
    listed = [alias.name for node in ast.parse(Path(norms.__file__).read_text()).body
              if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module is None for alias in node.names]
    assert listed == ["identity", "batchnorm", "homeostatic", "tdbn", "bntt", "tebn", "mpbn", "tab"]
    names = []
    for module_name in listed:
        module = importlib.import_module(f"snn_norm_lite.norms.{module_name}")
        assert isinstance(module.SPEC, NormSpec) and get_spec(module.SPEC.name) is module.SPEC
        names.append(module.SPEC.name)
    assert available_norms() == names + ["ei"]  # the E-I network registers where it is defined (models)
    assert get_spec("ei").circuit


def test_norms_never_import_from_above_the_package_layer():
    """norms/ may import checks, neurons, precision and sequences (below it), never models, experiments, ..."""
    allowed = {"checks", "neurons", "precision", "sequences"}
    for path in sorted((PACKAGE / "norms").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 2:
                top = (node.module or "").split(".")[0]
                assert top in allowed, f"{path.name} imports snn_norm_lite.{top}"
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("snn_norm_lite"):
                raise AssertionError(f"{path.name} imports {node.module} absolutely")


def test_spiking_conv_net_refuses_a_circuit_and_build_snn_checks_circuit_options():
    with pytest.raises(ValueError, match="circuit"):
        SpikingConvNet("ei")
    with pytest.raises(ValueError, match=r"'ei' has no option\(s\) \['alpha'\]"):
        build_snn("ei", depth=2, width=8, num_steps=2, norm_options={"alpha": 1.0})
    model = build_snn("ei", depth=2, width=8, num_steps=2, norm_options={"stabilize": False})
    assert model.blocks[0].circuit.stabilize is False


@pytest.fixture
def example_plugin():
    """The README's walkthrough plugin, imported (or re-imported) so that it registers itself."""
    import sys

    name = "examples.step_groupnorm"
    module = importlib.reload(sys.modules[name]) if name in sys.modules else importlib.import_module(name)
    yield module
    unregister("step_groupnorm")


def test_the_example_plugin_of_the_readme_trains_and_is_batch_independent(example_plugin):
    model = build_snn("step_groupnorm", depth=2, width=8, num_steps=2, norm_options={"num_groups": 2})
    assert model.blocks[0].norm.norm.num_groups == 2
    x = torch.rand(6, 1, 8, 8)
    model.train()
    alone, together = model(x[:1]), model(x)[:1]
    torch.testing.assert_close(alone, together)  # GroupNorm: a sample's output ignores its batchmates
    model, history = experiments.train_once("snn", "step_groupnorm", 0, TrainConfig(depth=2, width=8, num_steps=2, epochs=1))
    assert 0 <= history.final_test_accuracy <= 100


# -- sizes and neuron arguments are checked before anything is built --------------------------------


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        (("bn", 0), {}, ValueError, r"build_norm\('bn'\): num_features must be positive"),
        (("tdbn", 4, 0), {}, ValueError, r"build_norm\('tdbn'\): num_steps must be positive"),
        (("tdbn", 4, 2.0), {}, TypeError, r"build_norm\('tdbn'\): num_steps must be an int"),
        (("tdbn", 4), {}, ValueError, "spiking-network normaliser: pass num_steps"),
        (("tdbn", 4, 2), {"threshold": float("nan")}, ValueError, r"build_norm\('tdbn'\): threshold must be a finite"),
        (("mpbn", 4, 2), {"beta": 1.5}, ValueError, r"build_norm\('mpbn'\): beta must lie in \[0, 1\]"),
        (("bntt", 4, 2), {"threshold": True}, TypeError, r"build_norm\('bntt'\): threshold must be a real number"),
    ],
)
def test_build_norm_checks_sizes_and_the_neuron_it_feeds(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        build_norm(*args, **kwargs)


def test_no_normalisation_still_checks_its_sequence():
    layer = build_norm("none", 4, 2)
    x = torch.randn(2, 3, 4, 5, 5)
    assert layer(x) is x and isinstance(layer, nn.Identity)
    with pytest.raises(ValueError, match="SequenceIdentity: got a sequence of 0 time steps"):
        layer(torch.randn(0, 3, 4, 5, 5))
    with pytest.raises(TypeError, match="SequenceIdentity: expected a floating-point tensor"):
        layer(torch.ones(2, 3, 4, 5, 5, dtype=torch.long))
    assert type(build_norm("none", 4)) is nn.Identity and type(build_norm("bn", 4)) is norms.BatchNorm2d
