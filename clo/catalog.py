"""The runs that exist, as the CLI's ``clo runs`` and the app's Runs, Compare and Train pages list them
(docs/design.md, "Run directories").

    >>> from clo.catalog import list_runs
    >>> [r["id"] for r in list_runs("runs")]        # newest first, lost runs marked interrupted
"""
from __future__ import annotations

from pathlib import Path

from clo.resume import resume_check
from clo.runs import RunDir, iter_runs, recover_lost

__all__ = ["list_runs", "run_summary", "run_table", "run_file_text", "runs_with_model", "RESUME_HINT"]


def run_summary(run: RunDir) -> dict:
    """What the listings show of one run: state, settings, last step, times, model and resume facts."""
    status, cfg = run.status(), run.config()
    rows = run.metrics()
    last = rows[-1] if rows else {}
    resume_step, why_not = resume_check(run, status)
    return {
        "id": run.id,
        "path": str(run.path),
        "state": status.get("state", "unknown"),
        "method": cfg.get("method"),
        "objective": cfg.get("objective") or ("clo" if cfg.get("method") in ("clo", "sft-dpo") else None),
        "lang": cfg.get("lang"),
        "model": cfg.get("model"),
        "scope": cfg.get("scope"),
        "lr": cfg.get("lr"),
        "epochs": cfg.get("epochs"),
        "step": last.get("step"),
        "loss": last.get("loss"),
        "started": status.get("started"),
        "ended": status.get("ended"),
        "duration_s": status.get("duration_s"),
        "error": status.get("error"),
        "lost_at": status.get("lost_at"),
        "interrupted_at": status.get("interrupted_at"),
        "resumed_from_step": status.get("resumed_from_step"),
        "checkpoint_step": run.checkpoint_step(),
        "has_model": run.has_model(),
        "resumable": resume_step is not None,
        "resume_step": resume_step,
        "not_resumable": why_not,
        "resume_queued": status.get("state") == "queued" and isinstance(status.get("resume_of"), dict),
        "resume_error": status.get("resume_error"),
        "note": status.get("note"),
    }


def list_runs(root: str | Path | None = None) -> list[dict]:
    """Summaries of every run under ``root`` (default ``./runs`` or ``$CLO_RUNS``), newest first, after
    marking lost runs ``interrupted``."""
    recover_lost(root)
    rows = [run_summary(run) for run in iter_runs(root)]
    return sorted(rows, key=lambda r: r.get("started") or "", reverse=True)


def runs_with_model(root: str | Path | None = None) -> list[dict]:
    """Runs that saved a model and no longer train: what Compare and ``clo eval`` can load."""
    return [r for r in list_runs(root) if r["has_model"] and r["state"] in ("finished", "stopped", "interrupted")]


def run_file_text(run_dir: str | Path, name: str, max_chars: int | None = None) -> str | None:
    """The text of ``name`` inside a run directory (its last ``max_chars``), or None when it is missing — or
    when it is a link or leads outside the run directory: the Runs page never shows a file from elsewhere."""
    run_dir = Path(run_dir)
    path = run_dir / name
    try:
        if path.is_symlink() or not path.is_file() or path.resolve().parent != run_dir.resolve():
            return None
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return text[-max_chars:] if max_chars else text


def run_table(root: str | Path | None = None) -> list[dict]:
    """One row per run for the Runs page: status, method, objective, language(s), key settings, last-step
    metrics, duration, and the target-language (clean) LPR of its last evaluation when there is one. A run with
    several target languages (``lang: sw,yo``) gets the mean over those of them that were evaluated, and each
    one in ``clean_lpr_by_lang``."""
    rows = []
    for s in list_runs(root):
        run = RunDir(s["path"])
        cfg, metrics = run.config(), run.metrics()
        last = metrics[-1] if metrics else {}
        ev = (run.eval() or {}).get("models", {})
        per_lang = next(iter(ev.values()), {}) if ev else {}
        per_lang = per_lang if isinstance(per_lang, dict) else {}
        codes = [c for c in str(cfg.get("lang") or "").split(",") if c]
        scored = {c: per_lang[c] for c in codes if isinstance(per_lang.get(c), dict)}
        tgt = {k: _mean([s.get(k) for s in scored.values()]) for k in ("clean_lpr", "lpr")}
        rows.append({
            "run": s["id"], "state": s["state"], "method": s["method"], "objective": s["objective"],
            "lang": s["lang"], "model": s["model"], "english_anchor": cfg.get("english_anchor"),
            "english_nll": cfg.get("english_nll"),
            "scope": s["scope"], "lr": s["lr"], "lambda": cfg.get("lambda"), "beta": cfg.get("beta"),
            "epochs": s["epochs"], "batch": cfg.get("batch_size"), "steps": s["step"],
            "loss": last.get("loss"), "margin": last.get("margin"), "accuracy": last.get("accuracy"),
            "clean_lpr": tgt.get("clean_lpr"), "lpr": tgt.get("lpr"),
            "clean_lpr_by_lang": {c: v.get("clean_lpr") for c, v in scored.items()},
            "en_clean_lpr": (per_lang.get("en") or {}).get("clean_lpr") if isinstance(per_lang.get("en"), dict) else None,
            "duration_s": s["duration_s"], "started": s["started"], "has_model": s["has_model"],
            "error": s["error"], "path": s["path"], "note": s["note"],
            "resumable": s["resumable"] and not s["resume_queued"], "resume_step": s["resume_step"],
            "resume_queued": s["resume_queued"], "resume_error": s["resume_error"],
            "not_resumable": _why_not_resumable(s, cfg),
        })
    return rows


def _mean(values: list) -> float | None:
    values = [v for v in values if isinstance(v, (int, float))]
    return sum(values) / len(values) if values else None


RESUME_HINT = "train with “Save every N steps” to be able to resume"


def _why_not_resumable(summary: dict, cfg: dict) -> str | None:
    """Why an interrupted, stopped or failed run cannot be resumed, in the app's words (None: it can be, or the
    question does not arise: queued, running, finished)."""
    if summary["resumable"] or summary["state"] not in ("interrupted", "stopped", "failed"):
        return None
    why = summary["not_resumable"] or "it cannot be resumed"
    if summary["checkpoint_step"] is None and cfg.get("method") != "sft-dpo":
        return f"No checkpoint: {why}; {RESUME_HINT}."
    return f"{why[0].upper()}{why[1:]}."


