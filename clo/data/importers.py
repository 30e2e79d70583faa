"""Importers: outside data sets → English SFT records ``{id, instruction, response, source}``
(docs/design.md, "Data flow").

- :func:`import_oasst` reads an OpenAssistant oasst1/oasst2 export in its own schema and keeps what the CLO
  paper trains on: English first-turn prompts with their highest-ranked assistant reply.
- :func:`import_table` maps two columns of a JSONL / CSV file, or of a ``datasets`` folder written with
  ``save_to_disk``, to instruction and response.

Both read local files only and report a malformed line with its file and line number (:class:`DataError`).

    python -m clo data import-oasst 2023-04-12_oasst_ready.messages.jsonl.gz --out data/oasst-en.jsonl --limit 6400
    python -m clo data import alpaca.csv --instruction-col instruction --response-col output --out data/alpaca.jsonl
"""
from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

from clo.data.formats import DataError, parse_json_line, read_records

__all__ = ["import_oasst", "import_table", "read_oasst_messages", "OASST_ROLES"]

OASST_ROLES = ("prompter", "assistant")
_READY = "ready_for_export"


# -- OpenAssistant ---------------------------------------------------------------------------------------------


def _open_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of a .jsonl or .jsonl.gz file, decoding errors reported with their line."""
    if not path.exists():
        raise DataError("file not found", path)
    if path.is_dir():
        raise DataError("is a folder, expected a .jsonl or .jsonl.gz file (or a datasets folder for `data import`)",
                        path)
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    n = 0
    try:
        with opener(path, "rb") as f:
            for n, raw in enumerate(f, start=1):
                try:
                    yield n, raw.decode("utf-8-sig" if n == 1 else "utf-8")
                except UnicodeDecodeError as e:
                    raise DataError(f"not valid UTF-8 text (byte {e.start} of the line)", path, n) from None
    except (gzip.BadGzipFile, EOFError, OSError) as e:
        raise DataError(f"cannot read the file ({e})", path, n + 1 if n else None) from None


def _flatten_tree(node: dict, parent_id, line: int, path: Path, out: list[dict]) -> None:
    if not isinstance(node, dict):
        raise DataError(f"a reply in the message tree is {type(node).__name__}, expected an object", path, line)
    msg = {k: v for k, v in node.items() if k != "replies"}
    msg.setdefault("parent_id", parent_id)
    msg["_line"] = line
    out.append(msg)
    replies = node.get("replies") or []
    if not isinstance(replies, list):
        raise DataError("'replies' must be a list", path, line)
    for child in replies:
        _flatten_tree(child, node.get("message_id"), line, path, out)


def _check_message(msg: dict, path: Path, line: int) -> None:
    for key in ("message_id", "role", "text"):
        if key not in msg:
            raise DataError(f"oasst message without {key!r} (fields: {', '.join(sorted(msg)) or 'none'})", path, line)
    if msg["role"] not in OASST_ROLES:
        raise DataError(f"role {msg['role']!r} is neither 'prompter' nor 'assistant'", path, line)
    if not isinstance(msg["text"], str):
        raise DataError(f"'text' must be a string, got {type(msg['text']).__name__}", path, line)
    rank = msg.get("rank")
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, (int, float))):
        raise DataError(f"'rank' must be a number or null, got {rank!r}", path, line)


def read_oasst_messages(path: str | Path) -> list[dict]:
    """All messages of an oasst export, flat, each with ``_line``. Accepts the messages JSONL (one message a
    line), the trees JSONL (``message_tree_id`` + nested ``prompt``/``replies``), either gzipped, or a
    ``datasets`` folder of the flat messages (the Hugging Face ``OpenAssistant/oasst1`` layout)."""
    path = Path(path)
    if path.is_dir():
        return [{**row, "_line": i} for i, row in enumerate(_dataset_rows(path, split="*"), start=1)]
    messages: list[dict] = []
    for n, line in _open_lines(path):
        if not line.strip():
            continue
        obj = parse_json_line(line, path, n)
        if "prompt" in obj and "message_tree_id" in obj:  # trees export
            tree: list[dict] = []
            _flatten_tree(obj["prompt"], None, n, path, tree)
            for m in tree:
                m.setdefault("message_tree_id", obj["message_tree_id"])
                m.setdefault("tree_state", obj.get("tree_state"))
            messages += tree
        elif "message_id" in obj:
            obj["_line"] = n
            messages.append(obj)
        else:
            raise DataError("neither an oasst message (message_id, role, text, …) nor a message tree "
                            "(message_tree_id, prompt)", path, n)
    if not messages:
        raise DataError("file is empty: no messages", path)
    seen: dict[str, int] = {}
    for m in messages:
        _check_message(m, path, m["_line"])
        if m["message_id"] in seen:
            raise DataError(f"duplicate message_id {m['message_id']!r} (first on line {seen[m['message_id']]})",
                            path, m["_line"])
        seen[m["message_id"]] = m["_line"]
    return messages


def _usable(msg: dict, lang: str) -> bool:
    """Not deleted, not rejected by review, in ``lang``, in a finished tree, with text."""
    return (not msg.get("deleted")
            and msg.get("review_result") is not False
            and (msg.get("lang") or "") == lang
            and msg.get("tree_state") in (None, _READY)
            and bool(msg["text"].strip()))


def import_oasst(path: str | Path, limit: int | None = None, *, lang: str = "en",
                 stats: dict | None = None) -> list[dict]:
    """English first-turn pairs from an oasst export, as the CLO paper selects them.

    A pair is a prompter message that starts a conversation (``parent_id`` null) and, among its direct
    assistant replies, the highest-ranked one (lowest ``rank``; ``0`` in a complete tree). Deleted messages,
    messages that failed review, trees not ``ready_for_export``, other languages and replies without a rank
    are left out; later turns are never used. Records come in file order; ``limit`` keeps the first N.
    Pass a dict as ``stats`` to get counts of what was kept and why the rest was not.
    """
    path = Path(path)
    if limit is not None and limit < 1:
        raise DataError(f"--limit must be at least 1, got {limit}", path)
    messages = read_oasst_messages(path)
    replies: dict[str, list[dict]] = {}
    for m in messages:
        if m["role"] == "assistant" and m.get("parent_id") is not None:
            replies.setdefault(m["parent_id"], []).append(m)
    counts = {"messages": len(messages), "prompts": 0, "kept": 0, "skipped_prompt": 0, "no_ranked_reply": 0}
    records: list[dict] = []
    for m in messages:
        if m["role"] != "prompter" or m.get("parent_id") is not None:
            continue  # a later turn, or an assistant message
        counts["prompts"] += 1
        if not _usable(m, lang):
            counts["skipped_prompt"] += 1
            continue
        ranked = [r for r in replies.get(m["message_id"], []) if _usable(r, lang) and r.get("rank") is not None]
        if not ranked:
            counts["no_ranked_reply"] += 1
            continue
        best = min(ranked, key=lambda r: r["rank"])
        records.append({"id": str(m["message_id"]), "instruction": m["text"].strip(),
                        "response": best["text"].strip(), "source": "oasst1"})
        if limit is not None and len(records) >= limit:
            break
    counts["kept"] = len(records)
    if stats is not None:
        stats.update(counts)
    if not records:
        raise DataError(f"no usable {lang} first-turn pairs among {counts['messages']} messages "
                        f"({counts['prompts']} conversation starts, {counts['skipped_prompt']} in another language, "
                        f"deleted or unreviewed, {counts['no_ranked_reply']} without a ranked reply)", path)
    return records


# -- generic tables --------------------------------------------------------------------------------------------


def _dataset_rows(path: Path, split: str | None) -> list[dict]:
    """Rows of a ``datasets`` folder written with ``save_to_disk``: a Dataset, one split of a DatasetDict
    (``train`` or the only one when ``split`` is None), or every split in order when ``split`` is ``"*"``."""
    try:
        from datasets import DatasetDict, load_from_disk
    except ImportError:
        raise DataError("reading a datasets folder needs the `datasets` package (pip install datasets)", path) from None
    try:
        ds = load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as e:
        raise DataError(f"is a folder but not a dataset saved with save_to_disk ({e})", path) from None
    if isinstance(ds, DatasetDict):
        splits = list(ds)
        if split == "*":
            rows = [row for name in splits for row in ds[name].to_list()]
            if not rows:
                raise DataError("the dataset is empty: no records", path)
            return rows
        if split is None:
            if len(splits) == 1 or "train" in splits:
                split = "train" if "train" in splits else splits[0]
            else:
                raise DataError(f"the dataset has several splits ({', '.join(splits)}); pick one with --split", path)
        if split not in ds:
            raise DataError(f"no split {split!r}; splits: {', '.join(splits)}", path)
        ds = ds[split]
    elif split not in (None, "*") and split != str(getattr(ds, "split", None)):
        raise DataError(f"the dataset has no splits, so --split {split!r} does not apply", path)
    rows = ds.to_list()
    if not rows:
        raise DataError("the dataset is empty: no records", path)
    return rows


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".jsonl", ".json", ".csv"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name or "row"


def import_table(path: str | Path, instruction_col: str = "instruction", response_col: str = "response",
                 id_col: str | None = None, *, split: str | None = None, source: str | None = None,
                 limit: int | None = None) -> list[dict]:
    """A JSONL / CSV file or a ``datasets`` folder → English SFT records, with a column mapping.

    Every row must have non-empty text in both columns (nothing is dropped silently). Ids come from
    ``id_col`` or are numbered ``<file stem>-00001``…; ``source`` defaults to the file or folder name.
    """
    path = Path(path)
    if path.is_dir():
        rows = [{**row, "_row": i} for i, row in enumerate(_dataset_rows(path, split), start=1)]
    else:
        if split is not None:
            raise DataError("--split applies to datasets folders only", path)
        rows = read_records(path)
    if limit is not None:
        if limit < 1:
            raise DataError(f"--limit must be at least 1, got {limit}", path)
        rows = rows[:limit]
    columns = list(dict.fromkeys(c for r in rows for c in r if not c.startswith("_")))
    for col in (instruction_col, response_col, id_col):
        if col is not None and all(col not in r for r in rows):
            raise DataError(f"no column {col!r}; the columns are: {', '.join(columns)}", path)
    stem, out, seen = _stem(path), [], {}
    for n, row in enumerate(rows, start=1):
        line = row.get("_line")
        where = f"row {row['_row']}: " if "_row" in row else ""
        rec = {}
        for field, col in (("instruction", instruction_col), ("response", response_col)):
            v = row.get(col)
            if v is None or (isinstance(v, str) and not v.strip()):
                raise DataError(f"{where}column {col!r} is {'missing' if col not in row else 'empty'}", path, line)
            if not isinstance(v, str):
                raise DataError(f"{where}column {col!r} must be text, got {type(v).__name__}", path, line)
            rec[field] = v.strip()
        if id_col is not None:
            v = row.get(id_col)
            if v is None or isinstance(v, (bool, dict, list)) or not str(v).strip():
                raise DataError(f"{where}id column {id_col!r} is missing or empty", path, line)
            rid = str(v).strip()
        else:
            rid = f"{stem}-{n:05d}"
        if rid in seen:
            raise DataError(f"{where}duplicate id {rid!r} (first in record {seen[rid]})", path, line)
        seen[rid] = n
        out.append({"id": rid, **rec, "source": source or stem})
    return out
