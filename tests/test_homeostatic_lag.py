"""The set-point lag of homeostatic layers: the measurement, the recorder, the warm start, the experiment."""

import math

import pytest
import torch

from snn_norm_lite import homeostatic_lag as hl
from snn_norm_lite.data import Split, load_digits
from snn_norm_lite.experiments import TrainConfig, build_model
from snn_norm_lite.norms import HomeostaticNorm, TemporalHomeostaticNorm2d


def test_batch_set_point_and_lag_of_a_plain_layer():
    norm = HomeostaticNorm(2, eps=1e-5)
    x = torch.tensor([[1.0, 0.0], [3.0, 4.0]])  # variances (biased) 1 and 4
    target = hl.batch_set_point(norm, x)
    torch.testing.assert_close(target, torch.tensor([1 / math.sqrt(1 + 1e-5), 1 / math.sqrt(4 + 1e-5)]))
    gain, _ = norm.gain_and_bias()  # the fresh state: 1/sqrt(1 + eps)
    torch.testing.assert_close(hl.set_point_lag(norm, x), (gain / target - 1).abs())
    assert int(norm.num_batches_tracked) == 0  # measuring changes nothing


def test_lag_of_the_temporal_layer_per_step_and_for_one_step():
    torch.manual_seed(0)
    norm = TemporalHomeostaticNorm2d(3, 4)
    x = torch.randn(4, 6, 3, 2, 2) * torch.arange(1.0, 5.0).view(4, 1, 1, 1, 1)
    whole = hl.set_point_lag(norm, x)
    assert whole.shape == (4, 3)
    for t in range(4):
        torch.testing.assert_close(hl.set_point_lag(norm, x[t], t), whole[t : t + 1])
    norm(x)  # one update: the state moves towards the set point, so the lag shrinks
    assert (hl.set_point_lag(norm, x) < whole).all()


def test_lag_is_zero_at_the_set_point():
    norm = HomeostaticNorm(3, momentum=1.0)  # eta = 1: the state jumps to the set point
    x = torch.randn(32, 3) * 5
    norm(x)
    assert hl.set_point_lag(norm, x).max() < 1e-6


def test_bad_layers_and_shapes_are_rejected():
    with pytest.raises(TypeError, match="homeostatic layer"):
        hl.batch_set_point(torch.nn.BatchNorm2d(3), torch.randn(4, 3, 2, 2))
    with pytest.raises(ValueError, match=r"\[T, B, C, H, W\]"):
        hl.batch_set_point(TemporalHomeostaticNorm2d(3, 2), torch.randn(4, 3, 2, 2))
    with pytest.raises(ValueError, match="one step"):
        hl.batch_set_point(TemporalHomeostaticNorm2d(3, 2), torch.randn(2, 4, 3, 2, 2), t=0)
    with pytest.raises(ValueError, match=r"t=2 is outside 0\.\.1"):
        hl.set_point_lag(TemporalHomeostaticNorm2d(3, 2), torch.randn(4, 3, 2, 2), t=2)
    with pytest.raises(ValueError, match="no homeostatic"):
        hl.LagRecorder(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="passes"):
        hl.warm_up_state(torch.nn.Identity(), [], passes=-1)
    with pytest.raises(ValueError, match="unknown variants"):
        hl.batch_free_cost(variants=("nonsense",))


def tiny_split():
    """96 training images, 32 for validation, 32 for testing: enough to run the experiment's code."""
    split = load_digits()
    return Split("tiny", split.x_train[:96], split.y_train[:96], split.x_val[:32], split.y_val[:32],
                 split.x_test[:32], split.y_test[:32], 10)


def tiny_split_loader(batches=3, batch=8):
    split = load_digits()
    data = torch.utils.data.TensorDataset(split.x_train[: batches * batch], split.y_train[: batches * batch])
    return torch.utils.data.DataLoader(data, batch_size=batch)


@pytest.mark.parametrize("kind", ["ann", "snn"])
def test_recorder_records_training_passes_only_and_matches_a_direct_measurement(kind):
    torch.manual_seed(1)
    model = build_model(kind, "homeostatic", TrainConfig(depth=2, width=4, num_steps=2))
    loader = tiny_split_loader()
    x, _ = next(iter(loader))
    first_layer = [m for m in model.modules() if isinstance(m, hl.HOMEOSTATIC_LAYERS)][0]
    with hl.LagRecorder(model) as recorder:
        model.eval()
        model(x)  # not recorded
        model.train()
        expected_first = float(hl.set_point_lag(first_layer, first_layer_input(model, x, kind)).mean())
        model(x)
    assert len(recorder.per_pass) == 1
    assert recorder.per_layer[0][0] == pytest.approx(expected_first, rel=1e-5)
    model(x)  # hooks removed on exit
    assert len(recorder.per_pass) == 1


def first_layer_input(model, x, kind):
    """The first convolution's output, as the first normalisation layer sees it."""
    conv = model.blocks[0][0] if kind == "ann" else model.blocks[0].conv
    if kind == "ann":
        return conv(x)
    steps = model.blocks[0].norm.num_steps
    return conv(x).unsqueeze(0).expand(steps, *conv(x).shape)


def test_warm_up_moves_the_state_but_not_the_weights():
    torch.manual_seed(2)
    model = build_model("ann", "homeostatic", TrainConfig(depth=2, width=4))
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    loader = tiny_split_loader()
    with hl.LagRecorder(model) as recorder:
        assert hl.warm_up_state(model, loader, passes=3) == 9
    for key, value in weights.items():
        torch.testing.assert_close(model.state_dict()[key], value)
    assert recorder.per_pass[-1] < recorder.per_pass[0]


def test_noise_floor_is_zero_for_identical_batches_and_leaves_the_model_alone():
    torch.manual_seed(3)
    model = build_model("ann", "homeostatic", TrainConfig(depth=2, width=4))
    split = load_digits()
    x, y = split.x_train[:16], split.y_train[:16]
    same = [(x, y), (x, y), (x, y)]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert hl.noise_floor(model, same) < 1e-6
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key])
    assert hl.noise_floor(model, tiny_split_loader()) > 0
    with pytest.raises(ValueError, match="at least 2 batches"):
        hl.noise_floor(model, same[:1])


def test_batch_free_cost_runs_records_and_summarises():
    config = TrainConfig(depth=2, width=4, num_steps=2, epochs=2, batch_size=32)
    variants = ("BatchNorm", "homeostatic, warm start", "homeostatic, batch-free")
    result = hl.batch_free_cost(config, seeds=(0, 1), kinds=("snn",), variants=variants, split=tiny_split())
    assert set(result.accuracy["snn"]) == set(variants)
    assert result.accuracy["snn"]["BatchNorm"].n == 2
    assert result.num_test == 32
    assert "BatchNorm" not in result.lag["snn"]
    assert result.steps_per_epoch == 3
    per_seed = result.lag["snn"]["homeostatic, batch-free"]
    assert len(per_seed) == 2 and len(per_seed[0]) == 2 * result.steps_per_epoch
    per_epoch = result.lag_per_epoch("snn", "homeostatic, batch-free")
    assert len(per_epoch) == 2 and per_epoch[0].n == 2
    assert result.floor["snn"]["homeostatic, warm start"].n == 2
    assert set(result.models["snn"]) == set(variants)


def test_warm_start_does_not_change_training_in_the_default_mode():
    """In the default mode training never reads the state: the same weights with and without a warm start."""
    config = TrainConfig(depth=2, width=4, epochs=1, batch_size=16)
    result = hl.batch_free_cost(
        config, seeds=(0,), kinds=("ann",), variants=("homeostatic", "homeostatic, warm start"), split=tiny_split()
    )
    cold, warm = result.models["ann"]["homeostatic"], result.models["ann"]["homeostatic, warm start"]
    for (name, a), (_, b) in zip(cold.named_parameters(), warm.named_parameters()):
        torch.testing.assert_close(a, b, msg=name)


def test_weight_growth_and_convolution_weights():
    before = [torch.ones(2, 2), torch.ones(3)]
    assert hl.weight_growth(before, [2 * torch.ones(2, 2), torch.ones(3)]) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="same non-zero number"):
        hl.weight_growth(before, before[:1])
    model = build_model("snn", "homeostatic", TrainConfig(depth=3, width=4, num_steps=2))
    assert len(hl.convolution_weights(model)) == 3


def test_validation_accuracy_at_an_epoch():
    config = TrainConfig(depth=2, width=4, epochs=2, batch_size=32)
    result = hl.batch_free_cost(config, seeds=(0, 1), kinds=("ann",), variants=("BatchNorm",), split=tiny_split())
    first = result.val_accuracy_at("ann", "BatchNorm", 1)
    assert first.n == 2 and first.values[0] == result.histories["ann"]["BatchNorm"][0].val_accuracy[0]
    assert result.val_accuracy_at("ann", "BatchNorm", 2).mean == pytest.approx(result.val_accuracy["ann"]["BatchNorm"].mean)
    assert result.growth["ann"]["BatchNorm"].n == 2
    with pytest.raises(ValueError, match="epoch must be in 1..2"):
        result.val_accuracy_at("ann", "BatchNorm", 3)


def test_set_point_variances_per_layer_leave_the_model_alone():
    torch.manual_seed(4)
    model = build_model("snn", "homeostatic", TrainConfig(depth=3, width=4, num_steps=2))
    x = load_digits().x_val[:16]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    variances = hl.set_point_variances(model, x)
    assert len(variances) == 3 and all(v >= 0 for v in variances)
    first = model.blocks[0].conv(x)
    assert variances[0] == pytest.approx(first.var(dim=(0, 2, 3), correction=0).mean().item(), rel=1e-4)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key])
    with pytest.raises(ValueError, match="no homeostatic"):
        hl.set_point_variances(torch.nn.Identity(), x)
