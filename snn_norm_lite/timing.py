"""Wall-clock timing for the chapters' speed comparisons (medians, so one slow run does not count).

Timings are measurements of this machine at this moment: chapters print them and compare
ratios measured in the same run, never absolute numbers against a threshold.

>>> median_seconds(lambda: sum(range(1000)), repeats=3) >= 0
True
"""

from __future__ import annotations

import statistics
import time
from typing import Callable


def median_seconds(function: Callable[[], object], repeats: int) -> float:
    """Median wall-clock time of ``repeats`` calls of ``function`` (seconds).

    >>> median_seconds(lambda: None, repeats=5) < 1.0
    True
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"median_seconds: repeats must be a positive int, got {repeats!r}")
    durations = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        durations.append(time.perf_counter() - start)
    return statistics.median(durations)
