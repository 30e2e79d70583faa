"""Downloads: rows as CSV that a spreadsheet shows as text and never runs as a formula (OWASP, "CSV
injection"). The answers of a model are untrusted text.

    >>> from clo.core.downloads import rows_to_csv
    >>> rows_to_csv([{"answer": "=1+1"}]).splitlines()[1]
    '"\'=1+1"'
"""
from __future__ import annotations

import csv
import io

__all__ = ["csv_safe", "rows_to_csv"]


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
    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[csv_safe(str(k)) for k in rows[0]], quoting=csv.QUOTE_ALL,
                            extrasaction="ignore")
    writer.writeheader()
    writer.writerows({csv_safe(str(k)): csv_safe(v) for k, v in r.items()} for r in rows)
    return buf.getvalue()
