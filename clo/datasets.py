"""The user's cross-lingual sets: the data folder, uploads, and hand fixes to a translation.

Data folder: ``$CLO_DATA`` or ``$CLO_HOME/datasets`` (default ``~/.cache/clo-studio/datasets``). The Data page
writes each translated set there as ``<source>-<lang>.jsonl`` (cross-lingual records, docs/design.md, "Data flow") and saves
fixes to a translation back into the same file; the Train page offers every file there for the chosen
language. A run's ``config.yaml`` names the file by its absolute path.

    >>> from clo.datasets import parse_upload
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
from clo.importers import import_oasst
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
