"""The user's cross-lingual sets: the data folder, uploads, and hand fixes to a translation.

Data folder: ``$CLO_DATA`` or ``$CLO_HOME/datasets`` (default ``~/.cache/clo-studio/datasets``). The Data page
writes each translated set there as ``<source>-<lang>.jsonl`` (cross-lingual records, docs/design.md, "Data
flow") and saves fixes to a translation back into the same file; the Train page offers every file there for
the chosen language. A run's ``config.yaml`` names the file by its absolute path.

Nothing a user wrote is lost: every overwrite keeps the file it replaces in ``<data folder>/.versions/``
(:func:`save_dataset`, :func:`previous_versions`), and re-translating a set whose records were fixed by hand
(``translator`` ending in ``+edited``) can keep those records (:func:`keep_edits`) or go to a new file
(:func:`free_dataset_path`).

    >>> from clo.data.stored import parse_upload
    >>> kind, rows = parse_upload("mine.jsonl", b'{"id": "1", "instruction": "Hi?", "response": "Hello."}\\n')
    >>> kind, rows[0]["instruction"]
    ('sft', 'Hi?')
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

from clo.core.languages import get_language
from clo.core.paths import clo_home
from clo.data.formats import SFT_FIELDS, XL_FIELDS, DataError, load_sft, parse_bytes, validate_records, write_jsonl
from clo.data.importers import import_oasst

__all__ = [
    "datasets_dir",
    "list_datasets",
    "dataset_path",
    "save_dataset",
    "parse_upload",
    "load_english",
    "edit_record",
    "edited_ids",
    "keep_edits",
    "free_dataset_path",
    "previous_versions",
    "search_records",
    "EDITED",
]

EDITED = "+edited"  # the end of a record's ``translator`` once a person fixed its translation
VERSIONS = ".versions"  # the data folder's subfolder with the files that overwrites replaced


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
    """Write cross-lingual records atomically (a reader never sees half a file), only inside the data folder.
    A file already there is first copied to ``.versions/<name>.<time>.jsonl``, so no overwrite loses a set."""
    folder, path = datasets_dir().resolve(), Path(path)
    if path.resolve().parent != folder or path.is_symlink():
        raise DataError(f"data sets are saved in {folder} only", path)
    validate_records(rows, XL_FIELDS, path)
    if path.is_file():
        versions = folder / VERSIONS
        versions.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        backup = versions / f"{path.stem}.{stamp}.jsonl"
        n = 2
        while backup.exists():
            backup, n = versions / f"{path.stem}.{stamp}-{n}.jsonl", n + 1
        shutil.copy2(path, backup)
    return write_jsonl(path, rows)


def previous_versions(path: str | Path) -> list[Path]:
    """The copies :func:`save_dataset` kept of ``path`` before it overwrote it, newest first."""
    path = Path(path)
    folder = path.parent / VERSIONS
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob(f"{path.stem}.*.jsonl") if p.name[len(path.stem) + 1:][:1].isdigit()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def free_dataset_path(source: str, lang: str) -> Path:
    """:func:`dataset_path`, or the first ``<source>-<lang>-N.jsonl`` not taken yet (a new set beside the old)."""
    path = dataset_path(source, lang)
    n = 2
    while path.exists():
        path = path.with_name(f"{dataset_path(source, lang).stem}-{n}.jsonl")
        n += 1
    return path


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
            if changed and not str(r.get("translator", "")).endswith(EDITED):
                r["translator"] = f"{r.get('translator') or 'unknown'}{EDITED}"
        out.append(r)
    if not found:
        raise DataError(f"no record with id {record_id!r}")
    return out


def edited_ids(rows: list[dict]) -> list[str]:
    """Ids of the records whose translation a person fixed (``translator`` ends in ``+edited``)."""
    return [r["id"] for r in rows if str(r.get("translator", "")).endswith(EDITED)]


def keep_edits(new_rows: list[dict], old_rows: list[dict]) -> tuple[list[dict], list[str]]:
    """``new_rows`` (a fresh translation) with each hand-fixed record of ``old_rows`` in place of its new
    translation, when both hold the same English texts (a changed English text makes the old fix stale).
    Returns (rows, ids kept)."""
    fixed = {r["id"]: r for r in old_rows if str(r.get("translator", "")).endswith(EDITED)}
    out, kept = [], []
    for r in new_rows:
        old = fixed.get(r["id"])
        if old is not None and (old["instruction_en"], old["response_en"]) == (r["instruction_en"], r["response_en"]) \
                and old.get("lang") == r.get("lang"):
            out.append({k: v for k, v in old.items() if not k.startswith("_")})
            kept.append(r["id"])
        else:
            out.append(r)
    return out, kept


def search_records(rows: list[dict], query: str) -> list[dict]:
    """The records whose id or any text (English or translated) contains ``query`` (case-insensitive)."""
    q = query.strip().casefold()
    if not q:
        return rows
    keys = ("id", "instruction_en", "response_en", "instruction", "response", "translator")
    return [r for r in rows if any(q in str(r.get(k, "")).casefold() for k in keys)]


# -- runs --------------------------------------------------------------------------------------------------------
