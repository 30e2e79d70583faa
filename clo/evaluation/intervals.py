"""Confidence intervals for the small samples an evaluation has (tens of prompts): Wilson for rates, a seeded
percentile bootstrap for corpus statistics and means (docs/evaluation.md).

    >>> from clo.evaluation.intervals import wilson_interval
    >>> [round(x, 3) for x in wilson_interval(45, 48)]
    [0.832, 0.979]
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["wilson_interval", "bootstrap_interval", "mean_interval", "seeds_bootstrap"]


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


def seeds_bootstrap(a, b=None, score: Callable[[np.ndarray], float] | None = None, n_resamples: int = 2000,
                    seed: int = 0) -> dict:
    """A method's score over several seeds — or the difference of two methods' — with a 95% interval that holds
    both sources of chance: which prompts were asked and which seeds were run.

    ``a`` (and ``b``) have shape (seeds, prompts, k): one row of additive statistics per answer, the prompts in
    the same order in both (``[passed, 1]`` for a rate, ``[0, 0]`` for an answer left out; ``[value, 1]`` for a
    mean; chrF's character n-gram statistics). ``score`` turns a row summed over prompts into the metric
    (default: ``row[0] / row[1]``). A method's score is the mean over its seeds of the score of each seed's
    answers. Each resample draws the prompts with replacement (the same draw for both methods: they answered
    the same prompts) and each method's seeds with replacement, independently (a seed of one method is not
    paired with the same seed of the other). With three seeds the seed draw has few distinct outcomes: the
    interval is approximate, and wide where seeds disagree — which is what it should say.

    Returns ``{"value", "ci", "per_seed"}`` (``per_seed`` of ``a``, or of both as ``[a, b]`` for a difference).
    """
    score = score or (lambda row: row[0] / row[1] if row[1] else float("nan"))
    arrs = [np.asarray(x, dtype=np.float64) for x in ((a,) if b is None else (a, b))]
    n_prompts = arrs[0].shape[1]
    if any(x.ndim != 3 or x.shape[1] != n_prompts or x.shape[0] == 0 for x in arrs):
        raise ValueError("each method needs shape (seeds ≥ 1, prompts, k) with the same prompts")

    def stat(x, prompts, seeds):
        vals = [score(x[s, prompts].sum(axis=0)) for s in seeds]
        return float(np.nanmean(vals)) if not all(math.isnan(v) for v in vals) else float("nan")

    def estimate(prompts, draws):
        vals = [stat(x, prompts, d) for x, d in zip(arrs, draws)]
        return vals[0] if b is None else vals[0] - vals[1]

    all_prompts = np.arange(n_prompts)
    value = estimate(all_prompts, [range(x.shape[0]) for x in arrs])
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n_resamples):
        prompts = rng.integers(0, n_prompts, size=n_prompts)
        samples.append(estimate(prompts, [rng.integers(0, x.shape[0], size=x.shape[0]) for x in arrs]))
    samples = np.asarray([v for v in samples if not math.isnan(v)])
    ci = (float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5))) if len(samples) else None
    per_seed = [[score(x[s].sum(axis=0)) for s in range(x.shape[0])] for x in arrs]
    return {"value": value, "ci": ci, "per_seed": per_seed[0] if b is None else per_seed}
