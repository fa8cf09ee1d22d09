"""Findings over seeds: summaries and the rule that says when a difference is resolved."""

import doctest

import pytest

from snn_norm_lite import stats
from snn_norm_lite.stats import Summary, compare_text, one_image, resolved


def test_docstring_examples():
    assert doctest.testmod(stats).failed == 0


def test_summary_is_the_sample_statistics():
    s = Summary.of([1.0, 2.0, 4.0])
    assert s.mean == pytest.approx(7 / 3)
    assert s.std == pytest.approx(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) ** 0.5 / 2**0.5)
    assert (s.min, s.max, s.n, s.is_finding) == (1.0, 4.0, 3, True)
    assert not Summary.of([5.0]).is_finding and str(Summary.of([5.0])) == "5.0 (1 seed)"
    assert s.to_dict()["seeds"] == [1.0, 2.0, 4.0]


@pytest.mark.parametrize("values", [[], [1.0, float("nan")], [float("inf")]])
def test_summary_refuses_empty_or_non_finite_values(values):
    with pytest.raises(ValueError):
        Summary.of(values)


def test_a_difference_must_beat_the_spread_and_one_test_image():
    tight_a, tight_b = Summary.of([50.0, 50.0, 50.0]), Summary.of([50.2, 50.2, 50.2])
    assert not resolved(tight_a, tight_b, num_test=360)  # 0.2 points < one image (0.28)
    assert resolved(tight_a, tight_b, num_test=1000)  # one image is 0.1 points here
    noisy = Summary.of([45.0, 50.0, 58.0])
    assert not resolved(noisy, Summary.of([55.0, 55.0, 55.0]), num_test=360)
    assert one_image(360) == pytest.approx(0.2778, abs=1e-4)
    with pytest.raises(ValueError):
        one_image(0)


def test_compare_text_says_which_way_or_that_it_is_unresolved():
    a, b = Summary.of([90.0, 91.0, 92.0]), Summary.of([80.0, 81.0, 82.0])
    assert compare_text("bn", a, "none", b, 360).startswith("bn beats none by 10.0 points")
    assert compare_text("none", b, "bn", a, 360).startswith("bn beats none by 10.0 points")
    assert "not resolved" in compare_text("x", a, "y", Summary.of([91.5, 90.0, 92.5]), 360)


@pytest.mark.parametrize(
    "values, error, message",
    [
        ([], ValueError, "needs at least one value"),
        (iter([]), ValueError, "needs at least one value"),
        (["90"], TypeError, "got str '90' at index 0"),
        ([90.0, True], TypeError, "got bool True at index 1"),
        ([None], TypeError, "got NoneType"),
        ("90", TypeError, "values must be a sequence of numbers"),
        (90.0, TypeError, "values must be a sequence of numbers"),
    ],
)
def test_summary_of_refuses_what_is_not_numbers(values, error, message):
    with pytest.raises(error, match=message):
        Summary.of(values)


def test_summary_of_a_tensor_value_says_to_pass_item():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="pass .item\\(\\)"):
        Summary.of([torch.tensor(90.0)])
    import numpy as np

    assert Summary.of([np.float32(1.5), np.int64(2), 3]).values == (1.5, 2.0, 3.0)


@pytest.mark.parametrize("values, error", [((), ValueError), ((1.0, float("nan")), ValueError), ([1.0], TypeError), (("1",), TypeError)])
def test_summary_made_directly_is_checked_too(values, error):
    with pytest.raises(error, match="Summary: "):
        Summary(values)


def test_comparison_functions_check_their_arguments():
    s = Summary.of([1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="one_image: num_test must be an int"):
        one_image(360.0)
    with pytest.raises(TypeError, match="one_image: num_test must be an int"):
        one_image(True)
    with pytest.raises(TypeError, match="resolved: b must be a Summary"):
        resolved(s, [1.0, 2.0], 360)
    with pytest.raises(TypeError, match="compare_text: name_a must be a str"):
        compare_text(None, s, "b", s, 360)
    with pytest.raises(ValueError, match="num_test must be a positive int"):
        compare_text("a", s, "b", s, 0)
