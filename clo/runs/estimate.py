"""How long a run will take, from the runs this machine has already finished (shown beside Train's Launch).

    >>> from clo.runs.estimate import planned_steps
    >>> planned_steps(n_samples=168, batch_size=8, epochs=1.0, max_steps=0)
    21

A finished run's ``status.json`` and ``metrics.jsonl`` hold what it measured: seconds per optimizer step
(the last row's ``elapsed_s`` over the steps of its stage), the reference pass's seconds per sample
(``ref_pass_s`` / ``n_samples``) and the rest (loading and saving). The newest finished run with the same model,
method, batch size, gradient accumulation, device and precision gives the estimate; without one there is none (the
first run measures it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from clo.runs.rundir import iter_runs

__all__ = ["Estimate", "estimate_run", "planned_steps"]

LOOKBACK = 30  # newest runs read at most


@dataclass(frozen=True)
class Estimate:
    seconds: float  # the whole run, reference pass included
    reference_s: float  # the reference pass's part (0 when the method has none)
    steps: int
    basis: str  # the run the rates come from


def planned_steps(*, n_samples: int, batch_size: int, epochs: float, max_steps: int | None, grad_accum: int = 1,
                  processes: int = 1) -> int:
    """Optimizer steps a run takes: ``max_steps`` when set, else its epochs over ``n_samples``, counted as the
    trainer counts them: batches of ``batch_size`` on each of ``processes``, one step every ``grad_accum`` batches
    (the last one of an epoch may be short)."""
    if max_steps:
        return int(max_steps)
    batches = math.ceil(n_samples / max(1, batch_size * max(1, processes)))
    return max(1, math.ceil(math.ceil(batches / max(1, grad_accum)) * epochs))


def _rates(run) -> tuple[float, float, float] | None:
    """(seconds per step, reference seconds per sample, other seconds) measured by a finished run."""
    status = run.status()
    rows = [r for r in run.metrics() if r.get("elapsed_s") is not None]
    steps = status.get("step") or (rows[-1].get("step") if rows else 0)
    if status.get("state") != "finished" or not rows or not steps or not status.get("duration_s"):
        return None
    stage_rows = [r for r in rows if r.get("stage") == rows[-1].get("stage")]
    stage_steps = stage_rows[-1]["step"] - stage_rows[0]["step"] + 1
    per_step = stage_rows[-1]["elapsed_s"] / max(1, stage_steps)
    ref = status.get("ref_pass_s") or 0.0
    per_sample = ref / status["n_samples"] if status.get("n_samples") and not status.get("ref_cache_hit") else None
    other = max(0.0, status["duration_s"] - ref - per_step * steps)
    return per_step, per_sample, other


def _precision_here(spec) -> str:
    """The precision ``spec`` would compute in on this machine (runs from before the setting: fp32)."""
    from clo.core.precision import resolve_precision

    device = spec.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return resolve_precision(getattr(spec, "precision", "auto"), device)


def estimate_run(spec, n_samples: int, root: str | Path, processes: int = 1) -> Estimate | None:
    """The time ``spec`` on ``n_samples`` samples should take here on ``processes`` processes, from the newest
    comparable finished run under ``root`` (same model, method, batch size, gradient accumulation, device and
    precision); None without one. The samples it uses are counted as the run counts them
    (:meth:`clo.core.spec.TrainSpec.n_samples_used`)."""
    used = spec.n_samples_used(n_samples, processes)
    steps = planned_steps(n_samples=used, batch_size=spec.batch_size, epochs=spec.epochs, max_steps=spec.max_steps,
                          grad_accum=spec.grad_accum, processes=processes)
    runs = sorted(iter_runs(root), key=lambda r: r.status().get("ended") or "", reverse=True)[:LOOKBACK]
    precision = _precision_here(spec)
    fallback = None
    for run in runs:
        cfg = run.config()
        if (cfg.get("model"), cfg.get("method"), cfg.get("batch_size"), cfg.get("grad_accum", 1),
                cfg.get("device", "auto")) != (spec.model, spec.method, spec.batch_size, spec.grad_accum, spec.device):
            continue
        if run.status().get("precision", "fp32") != precision:  # bf16 steps take a fraction of fp32's
            continue
        rates = _rates(run)
        if rates is None:
            continue
        per_step, per_sample, other = rates
        if per_sample is None and spec.method in ("clo", "sft-dpo"):
            fallback = fallback or (run, rates)  # its reference pass was cached: look for one that measured it
            continue
        ref = (per_sample or 0.0) * used if spec.method in ("clo", "sft-dpo") else 0.0
        return Estimate(per_step * steps + ref + other, ref, steps, run.id)
    if fallback is not None:
        run, (per_step, _, other) = fallback
        return Estimate(per_step * steps + other, 0.0, steps, run.id)
    return None
