"""The runs that exist, as the CLI's ``clo runs`` and the app's Runs, Compare and Train pages list them
(docs/design.md, "Run directories").

    >>> from clo.runs.catalog import list_runs
    >>> [r["id"] for r in list_runs("runs")]        # newest first, lost runs marked interrupted
"""
from __future__ import annotations

from pathlib import Path

from clo.core.languages import language_name
from clo.models.registry import display_name
from clo.runs.resume import resume_check
from clo.runs.rundir import RunDir, iter_runs, recover_lost

__all__ = ["list_runs", "run_summary", "run_table", "run_file_text", "runs_with_model", "model_choices",
           "default_picks", "RESUME_HINT"]


def _text(value) -> str | None:
    return value if isinstance(value, str) else None


def _number(value) -> int | float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def run_summary(run: RunDir) -> dict:
    """What the listings show of one run: state, settings, last step, times, model and resume facts. A run whose
    files cannot be used is state ``unreadable`` with the reason in ``error`` (:meth:`RunDir.status`,
    ``shown=True``); a value of the wrong type in a file is shown as missing."""
    config = run.read_config()
    status, cfg = run.status(shown=True, config=config), config[0]
    rows = run.metrics()
    last = rows[-1] if rows else {}
    resume_step, why_not = resume_check(run, status)
    return {
        "id": run.id,
        "path": str(run.path),
        "state": status.get("state", "unknown"),
        "method": _text(cfg.get("method")),
        "objective": _text(cfg.get("objective")) or ("clo" if cfg.get("method") in ("clo", "sft-dpo") else None),
        "lang": _text(cfg.get("lang")),
        "model": _text(cfg.get("model")),
        "scope": _text(cfg.get("scope")),
        "lr": _number(cfg.get("lr")),
        "epochs": _number(cfg.get("epochs")),
        "step": _number(last.get("step")),
        "loss": _number(last.get("loss")),
        "started": _text(status.get("started")),
        "ended": _text(status.get("ended")),
        "duration_s": _number(status.get("duration_s")),
        "precision": _text(status.get("precision")),  # what it computed in (clo/core/precision.py); older runs: none
        "error": None if status.get("error") is None else str(status.get("error")),
        "lost_at": _text(status.get("lost_at")),
        "interrupted_at": _text(status.get("interrupted_at")),
        "resumed_from_step": _number(status.get("resumed_from_step")),
        "checkpoint_step": run.checkpoint_step(),
        "has_model": run.has_model(),
        "resumable": resume_step is not None,
        "resume_step": resume_step,
        "not_resumable": why_not,
        "resume_queued": status.get("state") == "queued" and isinstance(status.get("resume_of"), dict),
        "resume_error": _text(status.get("resume_error")),
        "note": _text(status.get("note")),
    }


_SUMMARY_KEYS = ("id", "path", "state", "method", "lang", "model", "scope", "lr", "epochs", "step", "loss", "started",
                 "ended", "duration_s", "error", "lost_at", "interrupted_at", "resumed_from_step", "checkpoint_step",
                 "has_model", "resumable", "resume_step", "not_resumable", "resume_queued", "resume_error", "note")


def _unreadable_summary(run: RunDir, e: Exception) -> dict:
    """The row of a run that :func:`run_summary` could not read at all (so that one run never hides the rest)."""
    row = dict.fromkeys(_SUMMARY_KEYS)
    row.update(id=run.id, path=str(run.path), state="unreadable", has_model=False, resumable=False,
               resume_queued=False, error=f"its files cannot be read ({type(e).__name__}: {e}). Fix them or delete "
                                          "the run; the other runs are not affected.")
    return row


def list_runs(root: str | Path | None = None) -> list[dict]:
    """Summaries of every run under ``root`` (default ``./runs`` or ``$CLO_RUNS``), newest first, after
    marking lost runs ``interrupted``. One run's files never keep the others from being listed."""
    recover_lost(root)
    rows = []
    for run in iter_runs(root):
        try:
            rows.append(run_summary(run))
        except Exception as e:  # noqa: BLE001 - a run folder the readers above did not foresee
            rows.append(_unreadable_summary(run, e))
    return sorted(rows, key=lambda r: r.get("started") or "", reverse=True)


def runs_with_model(root: str | Path | None = None) -> list[dict]:
    """Runs that saved a model and no longer train: what Compare and ``clo eval`` can load."""
    return [r for r in list_runs(root) if r["has_model"] and r["state"] in ("finished", "stopped", "interrupted")]


def model_choices(runs: list[dict], bases=()) -> dict[str, str]:
    """What a model picker offers (Compare, Arena): value (what ``load_model`` takes) → label. ``bases`` first,
    as "Base · <name>" (empty ones left out), then each of ``runs`` (rows of :func:`runs_with_model`) as
    "<id> · <method> · <languages>"."""
    opts = {b: f"Base · {display_name(b)}" for b in bases if b}
    for r in runs:
        opts[r["path"]] = f"{r['id']} · {r['method']} · {language_name(r['lang'])}"
    return opts


def default_picks(opts: dict[str, str], base: str | None, runs: list[dict]) -> list[str]:
    """What a model picker starts with (Compare, Arena): the base model, then the newest of ``runs`` (rows of
    :func:`runs_with_model`, newest first as :func:`list_runs` orders them) that ``opts`` offers; the base alone
    when there is no run, the newest run alone when ``opts`` lacks the base."""
    newest = [r["path"] for r in runs if r["path"] in opts and r["path"] != base][:1]
    return ([base] if base in opts else []) + newest


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
        models = (run.eval() or {}).get("models")
        per_lang = next(iter(models.values()), {}) if isinstance(models, dict) and models else {}
        per_lang = per_lang if isinstance(per_lang, dict) else {}
        codes = [c for c in str(s["lang"] or "").split(",") if c]
        scored = {c: per_lang[c] for c in codes if isinstance(per_lang.get(c), dict)}
        tgt = {k: _mean([_number(v.get(k)) for v in scored.values()]) for k in ("clean_lpr", "lpr")}
        english = per_lang.get("en") if isinstance(per_lang.get("en"), dict) else {}
        rows.append({
            "run": s["id"], "state": s["state"], "method": s["method"], "objective": s["objective"],
            "lang": s["lang"], "model": s["model"], "english_anchor": _number(cfg.get("english_anchor")),
            "english_nll": _number(cfg.get("english_nll")),
            "scope": s["scope"], "lr": s["lr"], "lambda": _number(cfg.get("lambda")), "beta": _number(cfg.get("beta")),
            "epochs": s["epochs"], "batch": _number(cfg.get("batch_size")), "steps": s["step"],
            "loss": _number(last.get("loss")), "margin": _number(last.get("margin")),
            "accuracy": _number(last.get("accuracy")),
            "clean_lpr": tgt.get("clean_lpr"), "lpr": tgt.get("lpr"),
            "clean_lpr_by_lang": {c: _number(v.get("clean_lpr")) for c, v in scored.items()},
            "en_clean_lpr": _number(english.get("clean_lpr")),
            "duration_s": s["duration_s"], "precision": s["precision"], "started": s["started"], "has_model": s["has_model"],
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


