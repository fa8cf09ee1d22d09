"""Findings over seeds: a mean with its spread, and whether a difference is resolved.

A finding of the book is a mean over at least three seeds with its spread. Two means are said
to differ only when the difference is larger than both what the seeds scatter and what one
test image can change::

    resolved(a, b)  <=>  |mean_a - mean_b| > max(std_a, std_b)  and  |mean_a - mean_b| > 100 / N_test

(``std`` is the sample standard deviation over seeds, ``N_test`` the number of test images, so
``100 / N_test`` is one image in percentage points.) This is a deliberately simple rule for a
teaching text, stated before any measurement, not a significance test.

>>> s = Summary.of([90.0, 92.0, 94.0])
>>> s.mean, s.std, s.n
(92.0, 2.0, 3)
>>> str(s)
'92.0 ± 2.0 (n=3)'
>>> resolved(s, Summary.of([10.0, 10.0, 10.0]), num_test=360)
True
>>> resolved(s, Summary.of([91.0, 93.0, 95.0]), num_test=360)
False
"""

from __future__ import annotations

import math
import numbers
import statistics
from dataclasses import dataclass
from typing import Sequence

MIN_SEEDS = 3  # a finding is a mean over at least this many seeds


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation, minimum and maximum of one quantity over seeds.

    >>> s = Summary.of([97.0, 98.0, 96.0])
    >>> s.min, s.max, s.is_finding
    (96.0, 98.0, True)
    >>> str(Summary.of([95.5]))
    '95.5 (1 seed)'
    """

    values: tuple[float, ...]

    def __post_init__(self):
        if not isinstance(self.values, tuple) or not all(type(v) is float for v in self.values):
            raise TypeError(f"Summary: values must be a tuple of floats (build it with Summary.of), got {self.values!r}")
        if not self.values:
            raise ValueError("Summary: needs at least one value (one per seed), got none")
        if not all(math.isfinite(v) for v in self.values):
            raise ValueError(f"Summary: every value must be finite, got {self.values}")

    @classmethod
    def of(cls, values: Sequence[float]) -> "Summary":
        """A summary of ``values``, one real number per seed (at least one, each finite).

        >>> Summary.of([])
        Traceback (most recent call last):
            ...
        ValueError: Summary.of: needs at least one value (one per seed), got none
        >>> Summary.of(["90"])
        Traceback (most recent call last):
            ...
        TypeError: Summary.of: every value must be a real number (int or float), got str '90' at index 0
        """
        if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
            raise TypeError(f"Summary.of: values must be a sequence of numbers, got {type(values).__name__}")
        values = list(values)
        for index, value in enumerate(values):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                hint = " (pass .item() for a tensor)" if hasattr(value, "item") else ""
                raise TypeError(
                    f"Summary.of: every value must be a real number (int or float), got "
                    f"{type(value).__name__} {value!r} at index {index}{hint}"
                )
        if not values:
            raise ValueError("Summary.of: needs at least one value (one per seed), got none")
        values = tuple(float(v) for v in values)
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"Summary.of: every value must be finite, got {values}")
        return cls(values)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        """Sample standard deviation (n - 1 in the denominator); 0 for a single value."""
        return statistics.stdev(self.values) if self.n > 1 else 0.0

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def max(self) -> float:
        return max(self.values)

    @property
    def is_finding(self) -> bool:
        """True when the summary averages enough seeds to be stated as a finding."""
        return self.n >= MIN_SEEDS

    def __str__(self) -> str:
        if self.n == 1:
            return f"{self.mean:.1f} (1 seed)"
        return f"{self.mean:.1f} ± {self.std:.1f} (n={self.n})"

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "min": self.min, "max": self.max, "seeds": list(self.values)}


def one_image(num_test: int) -> float:
    """What one test image is worth, in percentage points: ``100 / num_test``.

    >>> round(one_image(360), 3)
    0.278
    """
    if isinstance(num_test, bool) or not isinstance(num_test, int):
        raise TypeError(f"one_image: num_test must be an int (the number of test images), got {type(num_test).__name__} {num_test!r}")
    if num_test < 1:
        raise ValueError(f"one_image: num_test must be a positive int (the number of test images), got {num_test}")
    return 100.0 / num_test


def _check_summaries(caller: str, **summaries) -> None:
    for name, summary in summaries.items():
        if not isinstance(summary, Summary):
            raise TypeError(f"{caller}: {name} must be a Summary (Summary.of(values)), got {type(summary).__name__}")


def resolved(a: Summary, b: Summary, num_test: int) -> bool:
    """True when the means of ``a`` and ``b`` differ by more than both spreads and one test image.

    >>> resolved(Summary.of([97.0, 97.5, 98.0]), Summary.of([93.0, 93.5, 94.0]), num_test=360)
    True
    """
    _check_summaries("resolved", a=a, b=b)
    difference = abs(a.mean - b.mean)
    return difference > max(a.std, b.std) and difference > one_image(num_test)


def compare_text(name_a: str, a: Summary, name_b: str, b: Summary, num_test: int) -> str:
    """One sentence: which is higher and by how much, or that the difference is not resolved.

    >>> compare_text("BN", Summary.of([97.0, 97.5, 98.0]), "none", Summary.of([93.0, 93.5, 94.0]), 360)
    'BN beats none by 4.0 points (BN: 97.5 ± 0.5 (n=3); none: 93.5 ± 0.5 (n=3))'
    >>> print(compare_text("A", Summary.of([90.0, 92.0, 94.0]), "B", Summary.of([91.0, 93.0, 95.0]), 360))
    A (92.0 ± 2.0 (n=3)) vs B (93.0 ± 2.0 (n=3)): a difference of -1.0 points is not resolved (spread 2.0, one test image 0.28)
    """
    _check_summaries("compare_text", a=a, b=b)
    for name, value in (("name_a", name_a), ("name_b", name_b)):
        if not isinstance(value, str):
            raise TypeError(f"compare_text: {name} must be a str, got {type(value).__name__}")
    difference = a.mean - b.mean
    if not resolved(a, b, num_test):
        return (
            f"{name_a} ({a}) vs {name_b} ({b}): a difference of {difference:+.1f} points is not resolved "
            f"(spread {max(a.std, b.std):.1f}, one test image {one_image(num_test):.2f})"
        )
    higher, lower = (name_a, name_b) if difference > 0 else (name_b, name_a)
    return f"{higher} beats {lower} by {abs(difference):.1f} points ({name_a}: {a}; {name_b}: {b})"
