"""The input contract, as a table: every rule runs over every registered method and public layer.

The rules (the README's developer section states them in a few lines):

* R1 an empty training batch (B = 0, or H = W = 0) into a layer with batch statistics is a
  ``ValueError`` naming the layer, and leaves its state as it was;
* R2 a training batch holding NaN or Inf never corrupts running statistics or homeostatic state
  (an all-NaN batch leaves every floating buffer exactly as it was), and the output shows the NaN;
* R3 one value per statistic in training (batch of 1, 1x1 maps) is a ``ValueError`` naming the layer;
* R4 a sequence of zero time steps is a ``ValueError``;
* R5 an input of the wrong dtype (integers; float64 into a float32 layer) is a ``TypeError`` naming the layer;
* R6 constructors refuse non-finite, mistyped or out-of-range hyperparameters, non-bool flags and
  sizes that are not positive ints;
* R7 every custom autograd function either refuses second-order gradients with an error that says
  it is first-order, or gives them correctly (``gradgradcheck``);
* R8 a network checks its input (rank, channels, image size, dtype) and says what it was built for.

The cases are generated from the registry (``available_norms``) and from the constructors'
signatures, so a method or a layer added tomorrow is covered the day it is registered: a new
required constructor argument or a new autograd function without an entry here fails the test
that collects it, with a message saying what to add.
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch
import torch.distributed as dist
from torch import nn

import snn_norm_lite
from snn_norm_lite import inhibition, models, neurons, norms
from snn_norm_lite.norms.registry import available_norms, build_norm, get_spec
from snn_norm_lite.norms.synchronised import batch_var_mean
from snn_norm_lite.probes import spiking_layers

C, T = 3, 2  # channels and time steps of the layers under test (small: the rules are about shapes)


# -- the layers: every registered method in every form it has -------------------------------------


def registered_layers():
    """``(id, factory, layout)`` for every registered normaliser (and the neuron it builds, if any).

    ``layout`` is ``"sequence"`` (``[T, B, C, H, W]``) or ``"image"`` (``[B, C, H, W]``).
    Circuits (E-I) replace the convolution and are covered through their network and ``EIConv2d``.
    """
    cases = []
    for name in available_norms():
        spec = get_spec(name)
        if spec.circuit:
            continue
        cases.append((f"{name}[snn]", lambda name=name, steps=T: build_norm(name, C, steps), "sequence"))
        if spec.neuron is not None:
            cases.append(
                (f"{name}[neuron]", lambda spec=spec: spec.neuron(C, threshold=1.0, beta=0.9), "sequence")
            )
    for name in available_norms("ann"):
        cases.append((f"{name}[ann]", lambda name=name: build_norm(name, C), "image"))
    return cases


LAYERS = registered_layers()
LAYER_IDS = [case[0] for case in LAYERS]


def has_batch_statistics(layer: nn.Module) -> bool:
    return any(name.endswith("running_mean") for name, _ in layer.named_buffers())


STATEFUL = [case for case in LAYERS if has_batch_statistics(case[1]())]
STATEFUL_IDS = [case[0] for case in STATEFUL]


def batch(layout: str, batch_size: int = 4, size: int = 5, steps: int = T, fill=None) -> torch.Tensor:
    shape = (batch_size, C, size, size) if layout == "image" else (steps, batch_size, C, size, size)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    if fill is not None:
        x.fill_(fill)
    return x


def floating_state(layer: nn.Module) -> dict[str, torch.Tensor]:
    return {name: b.clone() for name, b in layer.named_buffers() if b.is_floating_point()}


def train_once(layer: nn.Module, layout: str) -> nn.Module:
    """One ordinary training batch first, so that the state is not the initial one."""
    layer.train()
    layer(batch(layout))
    return layer


def test_every_registered_method_is_in_the_table():
    names = {case[0].split("[")[0] for case in LAYERS}
    circuits = {name for name in available_norms() if get_spec(name).circuit}
    assert names | circuits == set(available_norms())
    assert {"bn[snn]", "bn[ann]", "homeostatic[snn]", "homeostatic[ann]", "mpbn[neuron]"} <= set(LAYER_IDS)


# -- R1, R2, R3: the state survives bad training batches ------------------------------------------


@pytest.mark.parametrize("empty", ["no samples", "no pixels"])
@pytest.mark.parametrize("case_id, factory, layout", STATEFUL, ids=STATEFUL_IDS)
def test_r1_empty_training_batch_is_refused_and_state_kept(case_id, factory, layout, empty):
    layer = train_once(factory(), layout)
    before = floating_state(layer)
    x = batch(layout, batch_size=0) if empty == "no samples" else batch(layout, size=0)
    with pytest.raises(ValueError, match=type(layer).__name__):
        layer(x)
    for name, value in floating_state(layer).items():
        assert torch.equal(value, before[name]), f"{case_id}: {name} changed by an empty batch"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("case_id, factory, layout", STATEFUL, ids=STATEFUL_IDS)
def test_r2_non_finite_training_batch_never_poisons_the_state(case_id, factory, layout, bad):
    layer = train_once(factory(), layout)
    before = floating_state(layer)
    out = layer(batch(layout, fill=bad))  # every value non-finite
    assert not torch.isfinite(out).all(), f"{case_id}: a non-finite input came out as finite numbers"
    for name, value in floating_state(layer).items():
        assert torch.equal(value, before[name]), f"{case_id}: {name} moved on a batch of {bad}"

    x = batch(layout)
    x[..., 0, 0] = bad  # one pixel of every sample non-finite
    layer(x)
    for name, value in floating_state(layer).items():
        assert torch.isfinite(value).all(), f"{case_id}: {name} became non-finite after one bad pixel"
    layer(batch(layout))  # and it keeps training afterwards
    for name, value in floating_state(layer).items():
        assert torch.isfinite(value).all(), f"{case_id}: {name} did not recover"


@pytest.mark.parametrize("case_id, factory, layout", STATEFUL, ids=STATEFUL_IDS)
def test_r3_one_value_per_statistic_is_refused(case_id, factory, layout):
    layer = factory()
    if layout == "sequence" and getattr(layer, "num_steps", None) not in (None, 1):
        # a layer built for T steps: rebuild it for one step, so that every statistic has one value
        layer = build_norm(case_id.split("[")[0], C, 1)
    layer.train()
    before = floating_state(layer)
    x = batch(layout, batch_size=1, size=1, steps=1)
    with pytest.raises(ValueError, match=type(layer).__name__):
        layer(x)
    for name, value in floating_state(layer).items():
        assert torch.equal(value, before[name])


def test_r3_homeostatic_layers_refuse_one_value_even_batch_free():
    for layer in (norms.HomeostaticNorm(C, batch_free=True), norms.TemporalHomeostaticNorm2d(C, 1, batch_free=True)):
        x = torch.ones(1, C, 1, 1) if isinstance(layer, norms.HomeostaticNorm) else torch.ones(1, 1, C, 1, 1)
        with pytest.raises(ValueError, match=type(layer).__name__):
            layer.train()(x)


# -- R4, R5: time steps and dtypes -----------------------------------------------------------------

SEQUENCE_LAYERS = [case for case in LAYERS if case[2] == "sequence"]


def spiking_layer_cases():
    cases = [("MultiStepLeaky[fused]", lambda: neurons.MultiStepLeaky(backend="fused")),
             ("MultiStepLeaky[snntorch]", lambda: neurons.MultiStepLeaky(backend="snntorch"))]
    for name in available_norms():
        for i, layer in enumerate(spiking_layers(models.build_snn(name, depth=1, width=C, num_steps=T))):
            if type(layer).__name__ not in {case[0].split("[")[0] for case in cases}:
                cases.append((f"{type(layer).__name__}[{name}]", lambda name=name, i=i: spiking_layers(
                    models.build_snn(name, depth=1, width=C, num_steps=T))[i]))
    return cases


SPIKING = spiking_layer_cases()


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("case_id, factory, layout", SEQUENCE_LAYERS, ids=[c[0] for c in SEQUENCE_LAYERS])
def test_r4_zero_time_steps_is_refused_by_every_sequence_layer(case_id, factory, layout, mode):
    layer = factory().train(mode == "train")
    with pytest.raises(ValueError, match=type(layer).__name__):
        layer(torch.zeros(0, 4, C, 5, 5))


@pytest.mark.parametrize("case_id, factory", SPIKING, ids=[c[0] for c in SPIKING])
def test_r4_zero_time_steps_is_refused_by_every_spiking_layer(case_id, factory):
    layer = factory()
    x = torch.zeros(0, 4, C, 5, 5)
    with pytest.raises(ValueError, match=type(layer).__name__):
        layer(x)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("case_id, factory, layout", LAYERS, ids=LAYER_IDS)
def test_r5_wrong_dtype_is_a_type_error_naming_the_layer(case_id, factory, layout, mode):
    layer = factory().train(mode == "train")
    if not any(p.is_floating_point() for p in list(layer.parameters()) + list(layer.buffers())):
        pytest.skip(f"{case_id} has no tensors of its own: any floating input is its input")
    with pytest.raises(TypeError, match=type(layer).__name__):
        layer(batch(layout).double())
    with pytest.raises(TypeError, match=type(layer).__name__):
        layer(batch(layout).long())


@pytest.mark.parametrize("case_id, factory", SPIKING, ids=[c[0] for c in SPIKING])
def test_r5_spiking_layers_refuse_integers_and_show_nan(case_id, factory):
    layer = factory().train()
    with pytest.raises(TypeError, match=type(layer).__name__):
        layer(torch.ones(T, 4, C, 5, 5, dtype=torch.long))
    x = torch.rand(T, 4, C, 5, 5) * 3
    x[0, 0, 0, 0, 0] = math.nan
    spikes = layer(x)
    assert spikes.shape == x.shape
    assert torch.isnan(spikes).any(), f"{case_id}: a NaN membrane silently stopped firing instead of showing NaN"
    if not has_batch_statistics(layer):  # batch statistics in training share a NaN across the batch, as BatchNorm does
        assert torch.isfinite(spikes[:, 1:]).all(), f"{case_id}: the NaN of one sample leaked into the others"
    layer.eval()
    spikes = layer(x)
    assert torch.isnan(spikes[:, 0]).any() and torch.isfinite(spikes[:, 1:]).all(), f"{case_id} in evaluation"


def test_r2_folded_mpbn_neurons_show_nan_too():
    model = norms.fold_mpbn(models.build_snn("mpbn", depth=1, width=C, num_steps=T))
    neuron = spiking_layers(model)[0]
    assert isinstance(neuron, norms.FoldedMPBNLeaky)
    x = torch.rand(T, 4, C, 5, 5) * 3
    x[0, 0, 0, 0, 0] = math.nan
    spikes = neuron(x)
    assert torch.isnan(spikes[:, 0, 0, 0, 0]).all() and torch.isfinite(spikes[:, 1:]).all()


# -- R6: constructors -----------------------------------------------------------------------------


def public_layer_classes():
    classes = {obj for name in norms.__all__ if inspect.isclass(obj := getattr(norms, name)) and issubclass(obj, nn.Module)}
    classes |= {neurons.MultiStepLeaky, inhibition.EIConv2d, inhibition.EILinear,
                models.ConvNet, models.SpikingConvNet, models.EISpikingConvNet}
    return sorted(classes, key=lambda cls: cls.__name__)


# Valid values for the required arguments of the constructors.
REQUIRED = {"num_features": C, "num_steps": T, "in_channels": 2, "out_channels": C, "kernel_size": 3,
            "in_features": 4, "out_features": C, "fire_threshold": torch.ones(C), "fire_direction": torch.ones(C),
            "beta": 0.9, "threshold": 1.0}
SIZES = {"num_features", "num_steps", "depth", "width", "num_classes", "in_channels", "image_size",
         "out_channels", "in_features", "out_features", "kernel_size", "ei_ratio"}
# Out-of-range values, for the hyperparameters that have a range.
OUT_OF_RANGE = {"eps": [0.0, -1e-5], "momentum": [0.0, 1.5, -0.1], "beta": [-0.1, 1.5], "threshold": [0.0, -1.0],
                "v_th": [0.0, -1.0], "alpha": [0.0, -1.0], "stride": [0, -1], "padding": [-1]}
NOT_CHECKED = {"device", "dtype", "norm_options"}  # PyTorch's factory keywords; options are checked by the registry


def constructor_cases():
    cases = []
    for cls in public_layer_classes():
        signature = inspect.signature(cls.__init__)
        required = {}
        for name, parameter in list(signature.parameters.items())[1:]:
            if parameter.default is inspect.Parameter.empty:
                if name not in REQUIRED:
                    raise AssertionError(f"{cls.__name__}: add a valid value for its argument {name!r} to REQUIRED")
                required[name] = REQUIRED[name]
        for name, parameter in list(signature.parameters.items())[1:]:
            if name in NOT_CHECKED:
                continue
            default = REQUIRED.get(name, parameter.default)
            if isinstance(default, bool):
                bad = [1, "yes", None]
            elif isinstance(default, (int, float)):
                bad = [math.nan, math.inf, "0.1", True] + OUT_OF_RANGE.get(name, [])
                if name in SIZES:
                    bad += [0, -1, 2.0]
            elif isinstance(default, str):
                bad = ["no such choice", 1]
            else:
                continue
            for value in bad:
                cases.append(pytest.param(cls, required, name, value, id=f"{cls.__name__}-{name}={value!r}"))
    return cases


@pytest.mark.parametrize("cls, required, name, value", constructor_cases())
def test_r6_constructors_refuse_bad_hyperparameters(cls, required, name, value):
    with pytest.raises((TypeError, ValueError), match=name):
        cls(**{**required, name: value})


@pytest.mark.parametrize("name", available_norms())
@pytest.mark.parametrize("argument, value", [("threshold", math.nan), ("threshold", 0.0), ("threshold", True),
                                             ("beta", 1.5), ("beta", "0.9")])
def test_r6_build_norm_checks_the_neuron_it_feeds(name, argument, value):
    with pytest.raises((TypeError, ValueError), match=argument):
        models.build_snn(name, depth=1, width=C, num_steps=T, **{argument: value})
    if not get_spec(name).circuit:
        with pytest.raises((TypeError, ValueError), match=argument):
            build_norm(name, C, T, **{argument: value})


@pytest.mark.parametrize("name", available_norms())
@pytest.mark.parametrize("num_features, num_steps", [(0, T), (-1, T), (2.0, T), (True, T), (C, 0), (C, -2), (C, 1.5)])
def test_r6_build_norm_refuses_bad_sizes(name, num_features, num_steps):
    with pytest.raises((TypeError, ValueError)):
        build_norm(name, num_features, num_steps)


@pytest.mark.parametrize("name", available_norms())
def test_r6_every_option_of_every_method_is_checked(name):
    spec = get_spec(name)
    for option in spec.options:
        for value in (math.nan, "x"):
            with pytest.raises((TypeError, ValueError), match=option):
                models.build_snn(name, depth=1, width=C, num_steps=T, norm_options={option: value})


@pytest.mark.parametrize("kind", ["snn", "ann"])
@pytest.mark.parametrize("argument", ["depth", "width", "num_classes", "in_channels", "image_size"])
@pytest.mark.parametrize("value", [0, -1, 2.0, True])
def test_r6_model_sizes_are_positive_ints(kind, argument, value):
    build = models.build_snn if kind == "snn" else models.build_ann
    with pytest.raises((TypeError, ValueError), match=argument):
        build("bn", **{"depth": 2, "width": C, argument: value})


# -- R7: custom autograd functions ----------------------------------------------------------------


def _lif_fused():
    x = (torch.rand(3, 2, 4, dtype=torch.float64) * 2).requires_grad_()
    return (lambda v: neurons.MultiStepLeaky(backend="fused")(v)), [x]


def _per_step_norm():
    layer = norms.BatchNormThroughTime2d(2, 3).double()
    x = torch.randn(3, 4, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    return (lambda v, w: layer(v)), [x, layer.weight]


def _mpbn_fused():
    layer = norms.MPBNLeaky(2).double().train()
    assert layer.uses_fused_training
    x = (torch.randn(3, 4, 2, 2, 2, dtype=torch.float64) + 1).requires_grad_()
    return layer, [x]


def _mpbn_per_step():
    layer = norms.MPBNLeaky(2, surrogate="tanh_window").double().train()  # the per-step path (reset detached)
    assert not layer.uses_fused_training
    x = (torch.randn(3, 4, 2, 2, 2, dtype=torch.float64) + 1).requires_grad_()
    return layer, [x]


def _scale_gradient():
    x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    return (lambda v: inhibition.scale_gradient(v * v, 0.25)), [x]


def _all_reduce_sum():
    """The synchronised statistics in a process group of one (the collective is then the identity)."""
    if not dist.is_initialized():
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    x = torch.randn(3, 4, 2, dtype=torch.float64, requires_grad=True)
    return (lambda v: batch_var_mean(v, (0, 2), dist.group.WORLD)[0]), [x]


@pytest.fixture(autouse=True)
def no_process_group_left_behind():
    """A table entry may start a one-process group; no other test sees it."""
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


# function name -> (how to reach it through the public API: a function and its float64 inputs,
#                   first-order only?)
AUTOGRAD_FUNCTIONS = {
    "_FusedLIF": (_lif_fused, True),
    "_PerStepAffineNorm": (_per_step_norm, True),
    "_MPBNTrainingSequence": (_mpbn_fused, True),
    "_MembraneSpike": (_mpbn_per_step, False),
    "_ScaleGradient": (_scale_gradient, False),
    "_AllReduceSum": (_all_reduce_sum, True),
}


def package_autograd_functions() -> set[str]:
    found, stack = set(), [torch.autograd.Function]
    while stack:
        for sub in stack.pop().__subclasses__():
            stack.append(sub)
            if sub.__module__.startswith(snn_norm_lite.__name__):
                found.add(sub.__name__)
    return found


def graph_nodes(output: torch.Tensor) -> set[str]:
    seen, stack, names = set(), [output.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(node.name())
        stack.extend(next_node for next_node, _ in node.next_functions)
    return names


def test_r7_every_custom_autograd_function_is_in_the_table():
    missing = package_autograd_functions() - set(AUTOGRAD_FUNCTIONS)
    assert not missing, f"add these autograd functions to AUTOGRAD_FUNCTIONS: {sorted(missing)}"


@pytest.mark.parametrize("function", sorted(AUTOGRAD_FUNCTIONS))
def test_r7_second_order_gradients_are_refused_or_correct(function):
    make, first_order_only = AUTOGRAD_FUNCTIONS[function]
    run, inputs = make()
    output = run(*inputs)
    assert any(function in node for node in graph_nodes(output)), f"{function} is not reached by its table entry"
    weights = torch.rand_like(output)
    if first_order_only:
        with pytest.raises(RuntimeError, match="first-order"):
            torch.autograd.grad((output * weights).sum(), inputs, create_graph=True)
        grads = torch.autograd.grad((run(*inputs) * weights).sum(), inputs)  # first order still works
        assert all(torch.isfinite(g).all() for g in grads)
    else:
        assert torch.autograd.gradgradcheck(run, tuple(inputs), nondet_tol=1e-10)


# -- R8: networks check their input ---------------------------------------------------------------

NETWORKS = [(f"{name}[snn]", lambda name=name: models.build_snn(name, depth=2, width=C, num_steps=T))
            for name in available_norms()]
NETWORKS += [(f"{name}[ann]", lambda name=name: models.build_ann(name, depth=2, width=C))
             for name in available_norms("ann")]


@pytest.mark.parametrize("case_id, factory", NETWORKS, ids=[c[0] for c in NETWORKS])
def test_r8_networks_say_what_they_were_built_for(case_id, factory):
    model = factory()
    name = type(model).__name__
    good = torch.rand(4, 1, 8, 8)
    assert model(good).shape == (4, 10)
    cifar = torch.rand(4, 3, 32, 32)
    with pytest.raises(ValueError, match=rf"{name}.*built for.*\[B, 1, 8, 8\]"):
        model(cifar)
    with pytest.raises(ValueError, match=rf"{name}.*image_size=16"):
        model(torch.rand(4, 1, 16, 16))
    with pytest.raises(ValueError, match=name):
        model(torch.rand(8, 8))
    with pytest.raises(TypeError, match=rf"{name}.*float64"):
        model(good.double())
    with pytest.raises(TypeError, match=name):
        model((good * 255).long())
    assert model.double()(good.double()).dtype == torch.float64  # converted, it runs


@pytest.mark.parametrize("name", available_norms())
def test_r8_spiking_networks_check_sequences(name):
    model = models.build_snn(name, depth=2, width=C, num_steps=T)
    with pytest.raises(ValueError, match="num_steps"):
        model(torch.rand(T + 1, 4, 1, 8, 8))
    with pytest.raises(ValueError, match=type(model).__name__):
        model(torch.rand(0, 4, 1, 8, 8))
    assert model(torch.rand(T, 4, 1, 8, 8)).shape == (4, 10)
