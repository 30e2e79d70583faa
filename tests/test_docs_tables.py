"""docs/performance.md's bench tables are generated from docs/performance-data.json
(scripts/performance_tables.py); no docs/ page carries a dated section."""
from __future__ import annotations

import copy
import json
import re
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
tables = runpy.run_path(str(ROOT / "scripts" / "performance_tables.py"))


def test_every_bench_table_of_performance_md_is_what_the_data_gives():
    page = tables["PAGE"].read_text(encoding="utf-8")
    data = json.loads(tables["DATA"].read_text(encoding="utf-8"))
    assert [m.group(2) for m in tables["MARK"].finditer(page)] == list(data)
    assert tables["rewrite_page"](page, data) == page
    moved = copy.deepcopy(data)
    moved["full"]["rows"][2]["s_per_pair"] = 9.999
    new = tables["rewrite_page"](page, moved)
    assert "| `clo` | 20.49 | 9.999 |" in new and tables["rewrite_page"](new, data) == page


def test_each_recorded_run_names_its_command_and_machine():
    for run in json.loads(tables["DATA"].read_text(encoding="utf-8")).values():
        assert run["command"].startswith("python -m clo bench") and run["machine"] and run["rows"]
        assert all(set(run["columns"]) <= set(row) for row in run["rows"])


def test_no_page_of_docs_has_a_dated_section():
    dated = re.compile(r"^#+ .*(\b20\d\d\b|earlier|older measurements|re-measured)", re.I | re.M)
    for page in sorted((ROOT / "docs").glob("*.md")):
        text = page.read_text(encoding="utf-8")
        assert not dated.findall(text), page.name
        assert "Re-measured on" not in text and "Older measurements" not in text, page.name
