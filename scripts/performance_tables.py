"""The tables of docs/performance.md that come from ``python -m clo bench``, generated from the recorded rows in
docs/performance-data.json (each run's command, machine and shape beside its rows).

    python scripts/performance_tables.py            # rewrite the tables between their markers
    python scripts/performance_tables.py --check    # exit 1 where the page and the data disagree

A table stands between ``<!-- table: docs/performance-data.json#<run> -->`` and ``<!-- end table -->``. A new
measurement replaces its run's rows in the JSON (from the bench's ``--json`` output), then this script rewrites
the page; tests/test_docs_tables.py fails when they disagree.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "docs" / "performance-data.json"
PAGE = ROOT / "docs" / "performance.md"
MARK = re.compile(r"(<!-- table: docs/performance-data\.json#(\w+) -->\n)(.*?)(<!-- end table -->)", re.S)
COLUMNS = {"s_per_step": ("s/step", "{:.2f}"), "s_per_pair": ("s/pair", "{:.3f}"), "tokens_per_s": ("tokens/s", "{}"),
           "peak_gb": ("peak GB", "{:.2f}"), "rise_gb": ("rise GB", "{:.2f}"), "gflops": ("GFLOP/s", "{}"),
           "mfu": ("MFU", "{}"), "reference_pass": ("reference pass", "{}")}


def render(run: dict) -> str:
    cols = run["columns"]
    lines = ["| row | " + " | ".join(COLUMNS[c][0] for c in cols) + " |", "| --- |" + " --- |" * len(cols)]
    for r in run["rows"]:
        lines.append(f"| `{r['row']}` | " + " | ".join(COLUMNS[c][1].format(r[c]) for c in cols) + " |")
    return "\n".join(lines)


def rewrite_page(page: str, data: dict) -> str:
    return MARK.sub(lambda m: m.group(1) + render(data[m.group(2)]) + "\n" + m.group(4), page)


def main(argv=None) -> int:
    check = "--check" in (sys.argv[1:] if argv is None else argv)
    text = PAGE.read_text(encoding="utf-8")
    new = rewrite_page(text, json.loads(DATA.read_text(encoding="utf-8")))
    if new == text:
        print("docs/performance.md: every generated table matches docs/performance-data.json")
        return 0
    if check:
        print("docs/performance.md disagrees with docs/performance-data.json: "
              "python scripts/performance_tables.py rewrites its tables", file=sys.stderr)
        return 1
    PAGE.write_text(new, encoding="utf-8")
    print("rewrote the generated tables of docs/performance.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
