"""What the app's pages need beyond the CLI's functions, kept out of Streamlit so it is testable and reusable:
the data folder for translated and edited sets, upload parsing, and the runs table.

Data folder: ``$CLO_DATA`` or ``$CLO_HOME/datasets`` (default ``~/.cache/clo-studio/datasets``). The Data page
writes each translated set there as ``<source>-<lang>.jsonl`` (cross-lingual records, DESIGN §2) and saves
fixes to a translation back into the same file; the Train page offers every file there for the chosen
language. A run's ``config.yaml`` names the file by its absolute path.

    >>> from clo.ui_state import parse_upload
    >>> kind, rows = parse_upload("mine.jsonl", b'{"id": "1", "instruction": "Hi?", "response": "Hello."}\\n')
    >>> kind, rows[0]["instruction"]
    ('sft', 'Hi?')
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from clo.data import SFT_FIELDS, XL_FIELDS, DataError, load_sft, parse_bytes, validate_records, write_jsonl
from clo.languages import get_language
from clo.models import clo_home

__all__ = [
    "datasets_dir",
    "list_datasets",
    "dataset_path",
    "save_dataset",
    "parse_upload",
    "load_english",
    "edit_record",
    "run_table",
    "run_file_text",
    "RESUME_HINT",
    "csv_safe",
    "rows_to_csv",
]


# -- the data folder ---------------------------------------------------------------------------------------------


def datasets_dir() -> Path:
    return Path(os.environ.get("CLO_DATA") or clo_home() / "datasets").expanduser()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")[:60] or "data"


def dataset_path(source: str, lang: str) -> Path:
    """Where the cross-lingual set made from ``source`` (a name such as ``demo`` or an upload's file name) goes:
    always a plain file name inside the data folder, whatever ``source`` holds (``..``, slashes, an absolute path)."""
    return datasets_dir() / f"{_slug(Path(str(source).replace(chr(92), '/')).stem)}-{get_language(lang).code}.jsonl"


def save_dataset(rows: list[dict], path: str | Path) -> Path:
    """Write cross-lingual records atomically (a reader never sees half a file), only inside the data folder."""
    folder, path = datasets_dir().resolve(), Path(path)
    if path.resolve().parent != folder or path.is_symlink():
        raise DataError(f"data sets are saved in {folder} only", path)
    validate_records(rows, XL_FIELDS, path)
    return write_jsonl(path, rows)


def list_datasets(lang: str | None = None) -> list[Path]:
    """Cross-lingual files in the data folder, newest first; with ``lang``, only those in that language."""
    folder = datasets_dir()
    if not folder.is_dir():
        return []
    out = []
    for p in sorted(folder.glob("*.jsonl"), key=lambda p: p.stat().st_mtime if p.exists() else 0, reverse=True):
        if p.is_symlink() or not p.is_file():  # a link could point anywhere: the page reads and rewrites these files
            continue
        try:
            with open(p, encoding="utf-8") as f:
                first = json.loads(f.readline() or "{}")
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            continue
        if "instruction_en" not in first:
            continue
        if lang is None or first.get("lang") == get_language(lang).code:
            out.append(p)
    return out


# -- reading what the user brings -------------------------------------------------------------------------------


def parse_upload(name: str, raw: bytes) -> tuple[str, list[dict]]:
    """An uploaded JSONL/CSV file → ``("sft" | "xl", records)``. Errors name the file and line (DataError); a file
    over the size cap (``$CLO_MAX_UPLOAD_MB``) is refused. The bytes are parsed as text, never executed."""
    rows = parse_bytes(name, raw)
    kind = "xl" if "instruction_en" in rows[0] else "sft"
    validate_records(rows, XL_FIELDS if kind == "xl" else SFT_FIELDS, name)
    if kind == "xl":
        for row in rows:
            try:
                row["lang"] = get_language(row["lang"]).code
            except ValueError as e:
                raise DataError(str(e), name, row.get("_line")) from None
    return kind, rows


def load_english(path: str | Path, limit: int | None = None) -> list[dict]:
    """English SFT records from a file on this machine: an OpenAssistant export (``.jsonl[.gz]`` with
    ``message_id``s, imported as the paper does) or a file already in the ``{id, instruction, response}`` format
    (for example the output of ``python -m clo data import-oasst``)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError("file not found", p)
    if p.name.endswith(".gz") or p.is_dir() or _first_has(p, "message_id"):
        from clo.importers import import_oasst

        return import_oasst(p, limit=limit)
    rows = load_sft(p)
    return rows[:limit] if limit else rows


def _first_has(path: Path, key: str) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            return key in json.loads(f.readline() or "{}")
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False


def edit_record(rows: list[dict], record_id: str, instruction: str, response: str) -> list[dict]:
    """A copy of ``rows`` with one record's target-language texts replaced; its ``translator`` gains ``+edited``
    (the record now says a person fixed what the translator produced)."""
    if not instruction.strip() or not response.strip():
        raise DataError(f"record {record_id}: the instruction and the response must not be empty")
    out, found = [], False
    for r in rows:
        if r["id"] == record_id:
            found = True
            changed = (r["instruction"], r["response"]) != (instruction, response)
            r = {**r, "instruction": instruction, "response": response}
            if changed and not str(r.get("translator", "")).endswith("+edited"):
                r["translator"] = f"{r.get('translator') or 'unknown'}+edited"
        out.append(r)
    if not found:
        raise DataError(f"no record with id {record_id!r}")
    return out


# -- runs --------------------------------------------------------------------------------------------------------


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
    """One row per run for the Runs page: status, method, language, key settings, last-step metrics, duration,
    and the target-language (clean) LPR of its last evaluation when there is one."""
    from clo.runs import RunDir, list_runs

    rows = []
    for s in list_runs(root):
        run = RunDir(s["path"])
        cfg, metrics = run.config(), run.metrics()
        last = metrics[-1] if metrics else {}
        ev = (run.eval() or {}).get("models", {})
        per_lang = next(iter(ev.values()), {}) if ev else {}
        tgt = per_lang.get(cfg.get("lang"), {}) if isinstance(per_lang, dict) else {}
        rows.append({
            "run": s["id"], "state": s["state"], "method": s["method"], "lang": s["lang"], "model": s["model"],
            "scope": s["scope"], "lr": s["lr"], "lambda": cfg.get("lambda"), "beta": cfg.get("beta"),
            "epochs": s["epochs"], "batch": cfg.get("batch_size"), "steps": s["step"],
            "loss": last.get("loss"), "margin": last.get("margin"), "accuracy": last.get("accuracy"),
            "clean_lpr": tgt.get("clean_lpr"), "lpr": tgt.get("lpr"),
            "duration_s": s["duration_s"], "started": s["started"], "has_model": s["has_model"],
            "error": s["error"], "path": s["path"], "note": s["note"],
            "resumable": s["resumable"] and not s["resume_queued"], "resume_step": s["resume_step"],
            "resume_queued": s["resume_queued"], "resume_error": s["resume_error"],
            "not_resumable": _why_not_resumable(s, cfg),
        })
    return rows


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


# -- downloads -----------------------------------------------------------------------------------------------------

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value):
    """A cell that a spreadsheet will show as text, never run as a formula (OWASP, "CSV injection"): text that
    starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading single quote. Numbers and
    empty cells are left as they are (a negative metric stays a number)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def rows_to_csv(rows: list[dict]) -> str:
    """Rows (dicts with the same keys) as CSV text for a download: a header, every field quoted, and every text
    cell passed through :func:`csv_safe` (the model answers in it are untrusted text)."""
    import csv
    import io

    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[csv_safe(str(k)) for k in rows[0]], quoting=csv.QUOTE_ALL,
                            extrasaction="ignore")
    writer.writeheader()
    writer.writerows({csv_safe(str(k)): csv_safe(v) for k, v in r.items()} for r in rows)
    return buf.getvalue()
