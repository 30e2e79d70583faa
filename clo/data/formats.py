"""Record formats (docs/design.md, "Data flow") and their readers.

- English SFT: ``{"id", "instruction", "response"}`` (+ optional ``source``)
- Cross-lingual: ``{"id", "lang", "instruction_en", "response_en", "instruction", "response", "translator"}``
- Held-out prompts: ``{"id", "lang", "prompt"}`` (+ optional ``reference``)

Every reader reports a malformed line with its file and line number (:class:`DataError`) and never drops a
line silently. ``demo`` names the bundled data set wherever a data file is accepted. Files are read as UTF-8 text
and parsed (JSON, CSV), never executed or unpickled; a file over ``$CLO_MAX_UPLOAD_MB`` (default 50) is refused
before it is read, and a file that is not text (UTF-16, gzip, a pickle, binary) is named as such.

    >>> rows = load_crosslingual("demo", lang="sw")     # bundled English/Swahili pairs
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from contextlib import nullcontext
from pathlib import Path

from clo.core.files import atomic_path
from clo.core.languages import get_language
from clo.core.paths import ASSETS

__all__ = [
    "DATA_DIR",
    "DataError",
    "read_records",
    "write_jsonl",
    "load_sft",
    "load_crosslingual",
    "load_prompts",
    "resolve_data_path",
    "validate_records",
    "parse_jsonl",
    "parse_csv",
    "parse_json_line",
    "decode_bytes",
    "parse_bytes",
    "check_size",
    "max_upload_mb",
    "max_upload_bytes",
    "MAX_UPLOAD_ENV",
    "DEFAULT_MAX_UPLOAD_MB",
    "SFT_FIELDS",
    "XL_FIELDS",
    "PROMPT_FIELDS",
]

DATA_DIR = ASSETS / "data"  # the bundled data sets
SFT_FIELDS = ("id", "instruction", "response")
XL_FIELDS = ("id", "lang", "instruction_en", "response_en", "instruction", "response", "translator")
PROMPT_FIELDS = ("id", "lang", "prompt")
PREFERENCE_FIELDS = ("id", "lang", "prompt", "chosen", "rejected")  # e.g. Arena votes (docs/workshop.md)
# Size cap for data files and uploads, in megabytes (MiB, as Streamlit's server.maxUploadSize counts them). The
# app's uploader and every reader use it; .streamlit/config.toml's maxUploadSize is the same default.
MAX_UPLOAD_ENV = "CLO_MAX_UPLOAD_MB"
DEFAULT_MAX_UPLOAD_MB = 50
MAX_BYTES_DEFAULT = DEFAULT_MAX_UPLOAD_MB * 1024 * 1024


class DataError(ValueError):
    """A data file that cannot be used; the message names the file and, where it applies, the line."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}" + (f", line {line}" if line is not None else "") + ": "
        super().__init__(where + message)
        self.path = str(path) if path is not None else None
        self.line = line


def max_upload_mb() -> float:
    """The size cap in MB: ``$CLO_MAX_UPLOAD_MB`` (a positive number, fractions allowed) or 50."""
    raw = os.environ.get(MAX_UPLOAD_ENV, "").strip()
    if not raw:
        return float(DEFAULT_MAX_UPLOAD_MB)
    try:
        mb = float(raw)
    except ValueError:
        mb = float("nan")
    if not math.isfinite(mb) or mb <= 0:
        raise DataError(f"{MAX_UPLOAD_ENV} must be a positive number of megabytes, got {raw!r}")
    return mb


def max_upload_bytes() -> int:
    return int(max_upload_mb() * 1024 * 1024)


def _size(n: float) -> str:
    return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{n / 1024:.1f} KB"


def check_size(size: int, name: str | Path, max_bytes: int | None = None) -> None:
    """DataError when ``size`` bytes exceed the cap (``max_bytes``, else ``$CLO_MAX_UPLOAD_MB``)."""
    limit = max_upload_bytes() if max_bytes is None else max_bytes
    if size > limit:
        raise DataError(f"file is {_size(size)}, over the {_size(limit)} limit (set {MAX_UPLOAD_ENV} to change it)",
                        name)


def _read_text(path: str | Path, max_bytes: int | None = None) -> str:
    p = Path(path)
    if not p.exists():
        raise DataError("file not found", p)
    if p.is_dir():
        raise DataError("is a folder, expected a .jsonl or .csv file", p)
    check_size(p.stat().st_size, p, max_bytes)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read the file ({e.strerror or e})", p) from None
    return decode_bytes(raw, p)


_MAGIC = (  # (prefix, what it is) for files that are not text at all
    (b"\x1f\x8b", "a gzip archive; unpack it first (an OpenAssistant .jsonl.gz goes through `clo data import-oasst`)"),
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx?); export it as CSV or JSON Lines"),
    (b"\x80\x02", "a Python pickle; only JSON Lines or CSV are read (and never unpickled)"),
    (b"\x80\x03", "a Python pickle; only JSON Lines or CSV are read (and never unpickled)"),
    (b"\x80\x04", "a Python pickle; only JSON Lines or CSV are read (and never unpickled)"),
    (b"\x80\x05", "a Python pickle; only JSON Lines or CSV are read (and never unpickled)"),
    (b"SQLite format 3\x00", "an SQLite database; export it as CSV or JSON Lines"),
    (b"%PDF", "a PDF document; JSON Lines or CSV expected"),
)


def _utf16_without_bom(head: bytes) -> bool:
    """Two ASCII characters in UTF-16 (LE or BE): letter, zero, letter, zero (or zero first)."""
    if len(head) < 4:
        return False
    for text, zeros in ((head[0::2], head[1::2]), (head[1::2], head[0::2])):
        if zeros == b"\x00\x00" and all(0x09 <= c < 0x80 for c in text):
            return True
    return False


def decode_bytes(raw: bytes, name: str | Path) -> str:
    """UTF-8 text of a data file; a DataError that says what the file is otherwise (UTF-16, gzip, binary, …)."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or _utf16_without_bom(raw[:4]):
        raise DataError("is UTF-16 (or UTF-32) text, not UTF-8; save the file as UTF-8", name)
    for magic, what in _MAGIC:
        if raw.startswith(magic):
            raise DataError(f"is not a text file: it looks like {what}", name)
    if b"\x00" in raw[:4096]:
        raise DataError("looks like a binary file, not UTF-8 text (JSON Lines or CSV expected)", name)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(f"not valid UTF-8 text (byte 0x{raw[e.start]:02x} at column {col}; Latin-1 or Windows-1252?); "
                        "save the file as UTF-8", name, line) from None


def parse_json_line(line: str, name: str | Path, number: int) -> dict:
    """One JSON Lines record; a clear DataError naming file and line otherwise."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"not valid JSON ({e.msg} at column {e.colno})", name, number) from None
    if not isinstance(obj, dict):
        raise DataError(f"expected a JSON object, got {type(obj).__name__}", name, number)
    return obj


def parse_jsonl(text: str, name: str | Path) -> list[dict]:
    rows = []
    # split on "\n" only: str.splitlines() also breaks at U+2028/U+2029/U+0085, which json.dumps leaves unescaped
    for i, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        obj = parse_json_line(line, name, i)
        obj["_line"] = i
        rows.append(obj)
    if not rows:
        raise DataError("file is empty: no records", name)
    return rows


def parse_csv(text: str, name: str | Path) -> list[dict]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise DataError("file is empty: no header row", name)
    rows = []
    for i, row in enumerate(reader, start=2):
        if None in row:  # more cells than header columns
            raise DataError(f"{len(row[None])} more cell(s) than the header's {len(reader.fieldnames)} columns",
                            name, i)
        if any(v is None for v in row.values()):
            raise DataError(f"fewer cells than the header's {len(reader.fieldnames)} columns", name, i)
        row = dict(row)
        row["_line"] = i
        rows.append(row)
    if not rows:
        raise DataError("file has a header but no records", name)
    return rows


def read_records(path: str | Path, max_bytes: int | None = None) -> list[dict]:
    """Read a .jsonl/.json or .csv file into dicts; each carries ``_line`` for later error messages. Files over
    the size cap (``max_bytes``, else ``$CLO_MAX_UPLOAD_MB``, default 50 MB) are refused before reading."""
    text = _read_text(path, max_bytes)
    if Path(path).suffix.lower() == ".csv":
        return parse_csv(text, path)
    return parse_jsonl(text, path)


def parse_bytes(name: str, raw: bytes, max_bytes: int | None = None) -> list[dict]:
    """The bytes of an uploaded file → records, exactly as :func:`read_records` reads a file: size cap, UTF-8,
    CSV when ``name`` ends in .csv, JSON Lines otherwise. Parsed only, never executed or unpickled."""
    check_size(len(raw), name, max_bytes)
    text = decode_bytes(raw, name)
    return parse_csv(text, name) if str(name).lower().endswith(".csv") else parse_jsonl(text, name)


def write_jsonl(path: str | Path, rows, *, atomic: bool = True) -> Path:
    """Write records as JSON Lines (UTF-8, one object a line), atomically by default: a failure leaves an
    existing file at ``path`` as it was, and no temporary file behind."""
    path = Path(path)
    if path.is_dir():
        raise DataError("is a folder; give the name of a .jsonl file to write", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) if atomic else nullcontext(path) as target, open(target, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({k: v for k, v in row.items() if not k.startswith("_")}, ensure_ascii=False) + "\n")
    return path


def validate_records(rows: list[dict], fields, name, unique_by: tuple[str, ...] = ("id",)) -> None:
    """Every row has every field as a non-empty string, and ids are unique (the values of ``unique_by``
    together: a cross-lingual file may hold the same sample once per language); else DataError with file and
    line."""
    for row in rows:
        for f in fields:
            v = row.get(f)
            if v is None or (isinstance(v, str) and not v.strip()):
                what = "missing" if f not in row else "empty"
                raise DataError(f"field {f!r} is {what} (needed: {', '.join(fields)})", name, row.get("_line"))
            if not isinstance(v, str):
                raise DataError(f"field {f!r} must be a string, got {type(v).__name__}", name, row.get("_line"))
    seen: dict[tuple, int] = {}
    if "id" in fields and unique_by:
        for row in rows:
            key = tuple(row[k] for k in unique_by)
            if key in seen:
                where = "; an id may repeat only in another language" if "lang" in unique_by else ""
                raise DataError(f"duplicate id {row['id']!r} (first on line {seen[key]}){where}",
                                name, row.get("_line"))
            seen[key] = row.get("_line")


def resolve_data_path(data: str | Path, kind: str, lang: str | None = None) -> Path:
    """``demo`` → the bundled file for ``kind`` ('sft', 'xl' or 'prompts') and ``lang``; else the path itself."""
    if str(data) != "demo":
        return Path(data)
    if kind == "sft":
        return DATA_DIR / "demo" / "en.jsonl"
    if lang is None:
        raise DataError("the bundled demo set needs a language (--lang)")
    code = get_language(lang).code
    if code == "en" and kind != "prompts":
        raise DataError("English is the source side of every sample; pick a target language (e.g. --lang sw)")
    folder = "heldout" if kind == "prompts" else "demo"
    path = DATA_DIR / folder / f"{code}.jsonl"
    if not path.exists():
        have = sorted(p.stem for p in (DATA_DIR / folder).glob("*.jsonl")) if (DATA_DIR / folder).exists() else []
        raise DataError(f"the bundled demo set has no {get_language(code).name} file; "
                        f"it covers: {', '.join(have) or 'nothing yet'}", path)
    return path


def load_sft(data: str | Path) -> list[dict]:
    """English SFT records ``{id, instruction, response}``."""
    path = resolve_data_path(data, "sft")
    rows = read_records(path)
    if "instruction_en" in rows[0]:
        raise DataError("this is a cross-lingual set (it has instruction_en); an English SFT file "
                        "({id, instruction, response}) is expected here", path, rows[0].get("_line"))
    validate_records(rows, SFT_FIELDS, path)
    return rows


def load_crosslingual(data: str | Path, lang: str | None = None) -> list[dict]:
    """Cross-lingual records for one target language; ``lang`` filters (and is checked) when given. A file may
    hold several languages (each id once per language); without ``lang`` it must hold one."""
    path = resolve_data_path(data, "xl", lang)
    rows = read_records(path)
    if rows and "instruction_en" not in rows[0] and "instruction" in rows[0] and "response" in rows[0]:
        raise DataError(
            "this is an English SFT file (instruction/response only); CLO needs a cross-lingual set. "
            "Translate it first (on the Data page, or with python -m clo translate).",
            path,
        )
    if rows and "chosen" in rows[0] and "instruction_en" not in rows[0]:
        rows = _preference_rows(rows, path)
    validate_records(rows, XL_FIELDS, path, unique_by=())
    for row in rows:
        try:
            row["lang"] = get_language(row["lang"]).code
        except ValueError as e:
            raise DataError(str(e), path, row.get("_line")) from None
    validate_records(rows, XL_FIELDS, path, unique_by=("lang", "id"))  # one sample may appear once per language
    if lang is not None:
        code = get_language(lang).code
        rows = [r for r in rows if r["lang"] == code]
        if not rows:
            raise DataError(f"no records for language {code!r}", path)
    langs = {r["lang"] for r in rows}
    if len(langs) > 1:
        raise DataError(f"records mix several languages ({', '.join(sorted(langs))}); pass --lang to pick one", path)
    return rows


def _preference_rows(rows: list[dict], path) -> list[dict]:
    """Preference pairs ``{id, lang, prompt, chosen, rejected}`` (docs/workshop.md) as records that every method
    reads: DPO pairs come from ``chosen``/``rejected`` (:func:`clo.data.pairs.build_pairs`); SFT rows are the prompt
    with its chosen answer (in both the English and the target slot)."""
    validate_records(rows, PREFERENCE_FIELDS, path)
    return [{**r, "instruction_en": r["prompt"], "response_en": r["chosen"], "instruction": r["prompt"],
             "response": r["chosen"], "translator": r.get("translator") or "preference"} for r in rows]


def load_prompts(data: str | Path, langs: list[str] | None = None, per_lang: int | None = None) -> list[dict]:
    """Held-out prompts ``{id, lang, prompt[, reference]}``; ``demo`` loads every bundled language. With
    ``per_lang``, the first N of each language (in the order of ``langs`` when given)."""
    if per_lang:
        rows = load_prompts(data, langs)
        order = [get_language(l).code for l in langs] if langs else list(dict.fromkeys(r["lang"] for r in rows))
        return [r for code in order for r in [q for q in rows if q["lang"] == code][:per_lang]]
    if str(data) == "demo":
        folder = DATA_DIR / "heldout"
        codes = [get_language(l).code for l in langs] if langs else sorted(p.stem for p in folder.glob("*.jsonl"))
        rows = []
        for code in codes:
            rows.extend(load_prompts(resolve_data_path("demo", "prompts", code)))
        return rows
    path = Path(data)
    rows = read_records(path)
    validate_records(rows, PROMPT_FIELDS, path)
    for row in rows:
        try:
            row["lang"] = get_language(row["lang"]).code
        except ValueError as e:
            raise DataError(str(e), path, row.get("_line")) from None
    if langs:
        codes = {get_language(l).code for l in langs}
        rows = [r for r in rows if r["lang"] in codes]
    return rows
