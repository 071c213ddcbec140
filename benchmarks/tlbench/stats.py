"""Summaries of repeated measurements: median with min and max, percentiles, ratios."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    """The rounds of one measurement: their median, min, max and count."""

    median: float
    min: float
    max: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        """Return the summary as a JSON-ready dict."""
        return {"median": self.median, "min": self.min, "max": self.max, "n": self.n}


def summarize(values: Sequence[float]) -> Summary | None:
    """Return the summary of *values*, or None if there are none."""
    if not values:
        return None
    return Summary(statistics.median(values), min(values), max(values), len(values))


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Return the *fraction* percentile (0..1) of already sorted values, by the
    nearest-rank method (an actual sample, no interpolation).

    Raises:
        ValueError: no values, or *fraction* outside 0..1.
    """
    if not sorted_values:
        raise ValueError("no values")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in 0..1, not {fraction}")
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def ratio(value: Summary | None, reference: Summary | None) -> float | None:
    """Return the ratio of two medians, or None if either is missing or zero."""
    if value is None or reference is None or reference.median == 0:
        return None
    return value.median / reference.median
