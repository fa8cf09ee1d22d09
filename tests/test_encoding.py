"""Input encodings: what each code emits, how networks use them, and what they refuse."""

import math

import pytest
import torch

from snn_norm_lite import experiments
from snn_norm_lite.data import load_digits
from snn_norm_lite.encoding import (
    ENCODINGS,
    InputEncoder,
    direct_encoding,
    encode,
    latency_encoding,
    latency_steps,
    rate_encoding,
)
from snn_norm_lite.models import EISpikingConvNet, SpikingConvNet, build_snn


def images(seed: int = 0, batch: int = 3) -> torch.Tensor:
    return torch.rand(batch, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


# -- direct ---------------------------------------------------------------------------------------


def test_direct_is_the_image_repeated_at_every_step():
    x = images()
    out = direct_encoding(x, 4)
    assert out.shape == (4, 3, 1, 8, 8)
    assert torch.equal(out, x.unsqueeze(0).repeat(4, 1, 1, 1, 1))
    assert torch.equal(encode("direct", x, 4), out)
    # no range is required of an analogue input (e.g. standardised images)
    assert torch.equal(direct_encoding(x - 0.5, 2)[1], x - 0.5)


# -- rate -----------------------------------------------------------------------------------------


def test_rate_spike_count_matches_the_intensity_within_binomial_tolerance():
    steps = 4000
    p = torch.tensor([0.0, 0.1, 0.3, 0.5, 0.9, 1.0]).view(1, 1, 1, 6)
    spikes = rate_encoding(p, steps, generator=torch.Generator().manual_seed(1))
    assert spikes.dtype == p.dtype and spikes.shape == (steps, 1, 1, 1, 6)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    rate = spikes.mean(dim=0).flatten()
    # the count is Binomial(T, p): its mean rate has standard error sqrt(p (1 - p) / T);
    # allow 5 standard errors (a chance failure about 1 in 10^6 per pixel for a fresh seed)
    tolerance = 5 * torch.sqrt(p.flatten() * (1 - p.flatten()) / steps)
    assert torch.all((rate - p.flatten()).abs() <= tolerance), (rate, tolerance)
    assert rate[0] == 0.0 and rate[-1] == 1.0  # p = 0 never spikes, p = 1 always does


def test_rate_steps_are_independent_draws():
    spikes = rate_encoding(torch.full((1, 1, 16, 16), 0.5), 400, generator=torch.Generator().manual_seed(2))
    flat = spikes.flatten(1)  # [T, pixels]
    # correlation of consecutive steps: 0 for independent draws, within about 5 / sqrt(T * pixels)
    a, b = flat[:-1] - 0.5, flat[1:] - 0.5
    correlation = (a * b).mean() / 0.25
    assert abs(correlation) < 5 / math.sqrt(a.numel())


def test_rate_is_reproducible_under_one_seed_and_differs_under_another():
    x = images()
    draw = lambda seed: rate_encoding(x, 8, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(draw(0), draw(0))
    assert not torch.equal(draw(0), draw(1))
    torch.manual_seed(5)
    a = encode("rate", x, 8)
    torch.manual_seed(5)
    assert torch.equal(a, encode("rate", x, 8))  # the global generator when none is given


def test_rate_keeps_the_dtype():
    x = images().double()
    assert rate_encoding(x, 2).dtype == torch.float64


# -- latency --------------------------------------------------------------------------------------


def test_latency_spikes_once_at_the_exact_step():
    # T = 5: t = round((1 - x) * 4); 0.625 gives 1.5, rounded half to even: 2
    x = torch.tensor([1.0, 0.75, 0.5, 0.25, 0.1, 0.625, 0.0]).view(1, 1, 1, 7)
    expected = [0, 1, 2, 3, 4, 2, None]
    spikes = latency_encoding(x, 5)[:, 0, 0, 0]  # [T, pixel]
    for pixel, step in enumerate(expected):
        column = spikes[:, pixel]
        if step is None:
            assert column.sum() == 0, "a pixel of intensity 0 must never spike"
        else:
            assert column.sum() == 1 and column[step] == 1, (pixel, column)
    assert latency_steps(x, 5)[0, 0, 0, :6].tolist() == expected[:6]


def test_latency_with_one_step_puts_every_lit_pixel_at_step_zero():
    x = torch.tensor([[[[0.0, 0.2, 1.0]]]])
    assert latency_encoding(x, 1)[0, 0, 0, 0].tolist() == [0.0, 1.0, 1.0]


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("function", [direct_encoding, rate_encoding, latency_encoding])
def test_every_encoding_checks_rank_dtype_and_steps(function):
    name = function.__name__
    with pytest.raises(ValueError, match=rf"{name}.*4-D"):
        function(torch.rand(1, 8, 8), 2)
    with pytest.raises(ValueError, match=rf"{name}.*4-D"):
        function(torch.rand(2, 1, 1, 8, 8), 2)
    with pytest.raises(TypeError, match=rf"{name}.*floating"):
        function(torch.ones(1, 1, 8, 8, dtype=torch.long), 2)
    for steps, error in [(0, ValueError), (-1, ValueError), (2.0, TypeError), (True, TypeError)]:
        with pytest.raises(error, match=rf"{name}: num_steps"):
            function(images(), steps)


@pytest.mark.parametrize("function", [rate_encoding, latency_encoding])
@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan])
def test_rate_and_latency_refuse_intensities_outside_the_unit_interval(function, bad):
    x = images()
    x[0, 0, 3, 3] = bad
    with pytest.raises(ValueError, match=r"intensities in \[0, 1\].*never clamped"):
        function(x, 4)


def test_encode_and_the_module_check_their_arguments():
    with pytest.raises(ValueError, match="encode: encoding must be one of 'direct', 'rate', 'latency', got 'poisson'"):
        encode("poisson", images(), 4)
    with pytest.raises(TypeError, match="encode: encoding must be a str"):
        encode(None, images(), 4)
    with pytest.raises(TypeError, match="generator"):
        rate_encoding(images(), 4, generator=0)
    with pytest.raises(ValueError, match="deterministic"):
        encode("latency", images(), 4, generator=torch.Generator())
    with pytest.raises(ValueError, match="InputEncoder: encoding"):
        InputEncoder("spikes", 4)
    with pytest.raises(ValueError, match="InputEncoder: num_steps"):
        InputEncoder("rate", 0)
    with pytest.raises(ValueError, match="InputEncoder"):
        InputEncoder("rate", 4)(torch.rand(4, 2, 1, 8, 8))


def test_the_encoder_module_has_no_parameters_or_state():
    for name in ENCODINGS:
        encoder = InputEncoder(name, 3)
        assert list(encoder.parameters()) == [] and list(encoder.buffers()) == []
        assert encoder(images()).shape == (3, 3, 1, 8, 8)


# -- networks -------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["bn", "ei"])
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_network_with_each_encoding_trains_one_step(norm, encoding):
    torch.manual_seed(0)
    model = build_snn(norm, depth=2, width=8, num_steps=3, encoding=encoding)
    assert model.encoding == encoding and model.encoder.name == encoding
    x, y = images(batch=6), torch.arange(6)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimiser.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_the_network_encodes_static_input_and_takes_sequences_as_given():
    torch.manual_seed(0)
    # a low threshold, so that the untrained network's output depends on its input spikes
    model = build_snn("bn", depth=2, width=4, num_steps=3, threshold=0.05, encoding="rate").eval()
    x = images()
    assert not torch.equal(model.as_sequence(x), model.as_sequence(x))
    assert not torch.equal(model(x), model(x)), "a rate network draws new spikes on every forward pass"
    torch.manual_seed(3)
    a = model(x)
    torch.manual_seed(3)
    assert torch.equal(a, model(x))
    sequence = encode("latency", x, 3)
    assert torch.equal(model(sequence), model(sequence))  # a sequence is used as given: nothing is drawn
    direct = build_snn("bn", depth=2, width=4, num_steps=3).eval()
    assert torch.equal(direct(x), direct(direct_encoding(x, 3)))


def test_networks_refuse_a_bad_encoding_by_name():
    for cls in (SpikingConvNet, EISpikingConvNet):
        with pytest.raises(ValueError, match=rf"{cls.__name__}: encoding must be one of"):
            cls(depth=1, width=4, num_steps=2, encoding="poisson")
        with pytest.raises(TypeError, match=rf"{cls.__name__}: encoding must be a str"):
            cls(depth=1, width=4, num_steps=2, encoding=1)
    model = build_snn("bn", depth=1, width=4, num_steps=2, encoding="rate")
    with pytest.raises(ValueError, match=r"rate_encoding: expected pixel intensities in \[0, 1\]"):
        model(images() * 2)


def test_train_config_passes_and_checks_the_encoding():
    with pytest.raises(ValueError, match="TrainConfig: encoding"):
        experiments.TrainConfig(encoding="poisson")
    with pytest.raises(TypeError, match="TrainConfig: encoding"):
        experiments.TrainConfig(encoding=None)
    config = experiments.TrainConfig(depth=2, width=4, encoding="latency")
    assert experiments.build_model("snn", "bn", config).encoding == "latency"
    assert experiments.build_model("snn", "ei", config).encoding == "latency"
    assert experiments.TrainConfig().encoding == "direct"


def test_a_rate_coded_run_is_reproducible_under_its_seed():
    split = load_digits().subset(64, 32, 32)
    config = experiments.TrainConfig(depth=2, width=4, num_steps=3, epochs=1, batch_size=32, encoding="rate")
    runs = [experiments.train_once("snn", "bn", seed, config, split, measure_test=False) for seed in (0, 0, 1)]
    (m0, h0), (m1, h1), (m2, _) = runs
    assert h0.val_accuracy == h1.val_accuracy
    assert all(torch.equal(a, b) for a, b in zip(m0.state_dict().values(), m1.state_dict().values()))
    assert any(not torch.equal(a, b) for a, b in zip(m0.state_dict().values(), m2.state_dict().values()))


# -- the shift measures used to compare input codes (temporal_shift) ------------------------------


def test_standardised_offsets_measure_from_the_late_steps_in_units_of_their_spread():
    from snn_norm_lite.temporal_shift import late_fluctuation, standardised_step_offsets

    statistics = {
        "current_var": torch.tensor([[1.0, 1.0, 1.0, 1.0, 1.0], [0.01, 0.5, 2.0, 2.0, 2.0]]),
        "current_mean": torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, -1.0]]),
    }
    offsets = standardised_step_offsets(statistics, late_from=2)
    # layer 2: late mean (0 + 0 - 1) / 3, late spread sqrt(2)
    expected = (torch.tensor([1.0, 0.0, 0.0, 0.0, -1.0]) + 1.0 / 3.0) / 2.0**0.5
    assert torch.allclose(offsets[1], expected)
    assert torch.equal(offsets[0], torch.zeros(5))  # a stationary layer has no offset at any step
    assert torch.allclose(late_fluctuation(statistics, late_from=2), torch.tensor([0.0, expected[2:].abs().max()]))
    gain = torch.tensor([[1.0], [3.0]])
    scaled = {"current_mean": statistics["current_mean"] * gain, "current_var": statistics["current_var"] * gain**2}
    assert torch.allclose(standardised_step_offsets(scaled, late_from=2), offsets)  # independent of the input's scale
    with pytest.raises(ValueError, match="standardised_step_offsets: late_from"):
        standardised_step_offsets(statistics, late_from=5)
    with pytest.raises(ValueError, match="same shape"):
        standardised_step_offsets({"current_mean": torch.ones(2, 5), "current_var": torch.ones(2, 4)})
