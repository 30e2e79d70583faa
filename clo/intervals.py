"""Confidence intervals for the small samples an evaluation has (tens of prompts): Wilson for rates, a seeded
percentile bootstrap for corpus statistics and means (docs/evaluation.md).

    >>> from clo.intervals import wilson_interval
    >>> [round(x, 3) for x in wilson_interval(45, 48)]
    [0.832, 0.979]
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

__all__ = ["wilson_interval", "bootstrap_interval", "mean_interval"]



def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """95% Wilson score interval for k successes in n trials (``None`` for n = 0).

    Preferred over the normal approximation because n is small here (tens of prompts) and rates sit
    near 0 or 1, where the normal interval leaves [0, 1] or collapses to a point.
    """
    if n <= 0:
        return None
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_interval(
    stats: Sequence[Sequence[float]], score: Callable[[list[float]], float], n_resamples: int = 1000, seed: int = 0
) -> tuple[float, float] | None:
    """95% percentile bootstrap interval of a corpus statistic.

    ``stats`` holds one row of additive statistics per response; each resample draws responses with
    replacement, sums their rows and scores the sum. Seeded, so the interval is reproducible. With tens of
    responses the interval is wide — that is the point of showing it.
    """
    if len(stats) == 0:
        return None
    arr = np.asarray(stats, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(arr), size=(n_resamples, len(arr)))
    sums = arr[idx].sum(axis=1)
    values = np.sort([score(list(row)) for row in sums])
    return (float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5)))



def mean_interval(values: list[float], n_bootstrap: int, seed: int) -> tuple[float, float] | None:
    """Seeded bootstrap interval of a mean (rows ``[value, 1]``: the sum over the count)."""
    if not values:
        return None
    return bootstrap_interval([[v, 1.0] for v in values], lambda row: row[0] / row[1], n_bootstrap, seed)
