"""Resuming a run from its checkpoint (docs/design.md, "Resume"): whether it can be, from which step, and the
bookkeeping before it goes on — rows of the lost attempt moved aside, the attempt recorded in ``attempts``.

    python -m clo runs resume RUN_ID

The training itself is :func:`clo.training.run.resume_training`; the queueing of a resume by the app is
:meth:`clo.runs.jobs.JobManager.submit_resume`.
"""
from __future__ import annotations

import json
import os

from clo.core.files import atomic_write_text
from clo.runs.rundir import RunDir, RunError, now_iso, recover_run

__all__ = ["RESUMABLE_STATES", "REPLACED_METRICS", "resume_check", "resume_point", "prepare_resume"]

RESUMABLE_STATES = ("interrupted", "failed", "stopped")
REPLACED_METRICS = "metrics.replaced.jsonl"  # rows of a lost attempt after the step a resume starts from
_ATTEMPT_KEYS = ("state", "started", "ended", "lost_at", "interrupted_at", "error", "pid", "host", "step",
                 "saved_step", "checkpoint_step")
_DROP_ON_RESUME = ("lost_at", "interrupted_at", "returncode", "traceback", "note", "duration_s", "step", "resume_of",
                   "resume_error", "resume_failed_at", "queued_by", "queued_by_started", "released", "signal")


def _check(run: RunDir, status: dict | None = None) -> tuple[int | None, str | None, bool]:
    """(step, why not, whether training it again from the start is the way out)."""
    status = run.status(shown=True) if status is None else status
    state = status.get("state", "unknown")
    if state in ("unreadable", "unknown") and status.get("error"):
        return None, f"it is {state}: {status['error'].rstrip('.')}", False
    if state == "queued" and isinstance(status.get("resume_of"), dict):  # queued by the app to be resumed
        state = status["resume_of"].get("state", "unknown")
    elif state == "queued":
        return None, "it is waiting in the queue to be trained", False
    if state == "running":
        return None, (f"it is still running (process {status.get('pid')} on {status.get('host')}); stop it first, "
                      "or wait for it"), False
    if state == "finished":
        return None, "it has already finished; there is nothing to resume", False
    if state not in RESUMABLE_STATES:
        return None, f"it is {state}; only an interrupted, failed or stopped run can be resumed", False
    cfg = run.config()
    if cfg.get("method") == "sft-dpo":
        return None, ("sft-dpo trains in two stages (SFT, then DPO on the SFT model), which a single "
                      "checkpoint does not capture"), True
    step = run.checkpoint_step()
    if step is None:
        every = cfg.get("save_steps") or 0
        return None, ("it was started without save_steps, so it kept no checkpoint" if not every else
                      f"it ended before its first checkpoint (save_steps {every})"), True
    return step, None, False


def resume_check(run: RunDir, status: dict | None = None) -> tuple[int | None, str | None]:
    """``(step, None)`` when the run can be resumed from its checkpoint's ``step``, else ``(None, why)``
    with a short reason. Reads only; a lost process is not looked for (see :func:`resume_point`)."""
    step, why, _ = _check(run, status)
    return step, why


def resume_point(run: RunDir) -> int:
    """The step that ``clo runs resume`` would continue from (its checkpoint's). Raises :class:`RunError`
    saying why when the run cannot be resumed. Changes nothing, except that a lost process is recorded
    (:func:`clo.runs.rundir.recover_run`)."""
    recover_run(run)
    step, why, restart = _check(run)
    if step is not None:
        return step
    if not restart:
        raise RunError(f"Run {run.id} cannot be resumed: {why}.")
    raise RunError(f"Run {run.id} cannot be resumed: {why}. Start it again with "
                   f"`python -m clo train --config {run.config_path}` (with --save-steps N to make it resumable).")


def prepare_resume(run: RunDir, step: int) -> int:
    """Before a resume from ``step``: rows that the lost attempt logged after ``step`` move to
    ``metrics.replaced.jsonl`` (annotated, nothing is dropped) so that ``metrics.jsonl`` holds each step once;
    the status becomes ``running`` with ``resumed_from_step`` and the lost attempt in ``attempts``. ``saved_step``
    names the step of the model already in ``model/`` (kept until this attempt saves). A run queued for resume by
    the app (state ``queued`` with ``resume_of``) is recorded as the attempt it was before it was queued, and a
    stop requested since it was queued is kept (the job manager cleared older ones when it queued it).
    Returns how many rows moved."""
    kept, moved = [], []
    try:
        lines = run.metrics_path.read_bytes().splitlines(keepends=True)
    except OSError:
        lines = []
    for line in lines:
        text = line.decode("utf-8", errors="replace")
        try:
            row = json.loads(text)
        except json.JSONDecodeError:
            moved.append({"unparsed": text.rstrip("\n")})  # the torn last line of a kill
            continue
        (kept if isinstance(row, dict) and (row.get("step") or 0) <= step else moved).append(row)
    if moved:  # first the side file, then the rewrite: a kill in between duplicates rows, never loses them
        with open(run.path / REPLACED_METRICS, "a", encoding="utf-8") as f:
            for row in moved:
                f.write(json.dumps({**row, "replaced_at": now_iso(), "resumed_from_step": step},
                                   ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        atomic_write_text(run.metrics_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
    status = run.status()
    queued = status.get("state") == "queued" and isinstance(status.get("resume_of"), dict)
    prev = status.get("resume_of") if queued else status  # the attempt as it ended (before the app queued it)
    attempt = {k: prev.get(k) for k in _ATTEMPT_KEYS if prev.get(k) is not None}
    attempt["last_logged_step"] = max([r.get("step") or 0 for r in kept + moved if "step" in r], default=0)
    # the model now in model/: a stopped run saved it at its last step, any other at its last periodic save
    model_step = (prev.get("step") if prev.get("state") == "stopped" and prev.get("phase") == "done"
                  and prev.get("step") else prev.get("saved_step"))
    fields = {"attempts": list(status.get("attempts") or []) + [attempt], "resumed_from_step": step,
              "rows_replaced": len(moved)}
    if run.has_model() and model_step:
        fields["saved_step"] = model_step
    if not queued:
        run.stop_path.unlink(missing_ok=True)  # a stop request of the lost attempt must not end this one
    run.update_status(drop=_DROP_ON_RESUME, **fields)
    run.phase("resuming", resumed_from_step=step)
    return len(moved)
