"""Experiments: the rows of docs/results.md, declared in YAML files (``experiments/*.yaml``), and one runner.

    python -m bench.experiments run experiments/smollm2-sw.yaml --dry-run   # every command, nothing run
    python -m bench.experiments run experiments/smollm2-sw.yaml             # the rows not measured yet
    python -m bench.experiments table experiments/gemma-sw.yaml             # its table, from this machine's rows
    python -m bench.experiments docs                                        # docs/results.md's tables, rewritten
    python -m bench.experiments docs --check                                # exit 1 where page and data disagree

An experiment file names a model, a preset, a step budget, target language(s) and seeds, and lists its rows: ``base``
(the untuned model), a row of ``bench/objectives_table.py``'s ``ROWS`` (``clo``, ``sft``, ``orpo`` …), or
``multi: [sw, yo, de]`` (one run on several targets against each language's own ``clo`` row); a row may
override ``seeds``, ``lang`` or ``lr``; an experiment file whose top level has ``multi`` is that comparison alone. Each
row runs as ``bench/demo_experiment.py`` does (``clo train`` on the bundled demo data, then the held-out
prompts of each target language and English) in its own process, one at a time, appended to
``artifacts/experiments/results.jsonl``; a row already there is skipped, so an experiment file resumes where it stopped.
``python bench/results_chart.py`` publishes the rows to docs/results-data.jsonl, the figure and docs/answers/;
``docs`` then rewrites each table of docs/results.md between ``<!-- table: experiments/<name>.yaml -->`` and
``<!-- end table -->`` from docs/results-data.jsonl (tests/test_experiments.py fails when they disagree).
"""
from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from argparse import Namespace
from pathlib import Path

import yaml

from bench import objectives_table

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS_DIR = ROOT / "experiments"
DATA = ROOT / "docs" / "results-data.jsonl"
PAGE = ROOT / "docs" / "results.md"
MARK = re.compile(r"(<!-- table: (\S+) -->\n)(.*?)(<!-- end table -->)", re.S)
KEYS = ("title", "model", "preset", "lang", "steps", "seeds", "lr", "precision", "rows", "multi")
ROW_KEYS = ("row", "seeds", "lang", "lr", "multi")


class ExperimentError(ValueError):
    pass


def load_experiment(path: str | Path) -> dict:
    """An experiment file's settings, checked: unknown keys and rows are refused with the experiment named."""
    path = Path(path)
    experiment = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unknown = set(experiment) - set(KEYS)
    if unknown:
        raise ExperimentError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; keys: {', '.join(KEYS)}")
    for entry in experiment.get("rows") or []:
        if set(entry) - set(ROW_KEYS) or not ({"row", "multi"} & set(entry)):
            raise ExperimentError(f"{path}: a row is {{row: NAME}} or {{multi: [LANGS]}} with optional "
                              f"{', '.join(ROW_KEYS[1:])}; got {entry}")
        if "row" in entry and entry["row"] != "base" and entry["row"] not in objectives_table.ROWS:
            rows = ", ".join(objectives_table.ROWS)
            raise ExperimentError(f"{path}: unknown row {entry['row']!r}; rows: base, {rows}")
    return experiment


def _listed(v) -> list[str]:
    return [str(x) for x in v] if isinstance(v, list) else [str(x) for x in str(v).split(",")]


def plan(experiment: dict) -> list[tuple[str, str, list[str], list[str]]]:
    """(name, lang, demo_experiment options, clo train flags) of every run the experiment declares, in table order."""
    entries = [{"multi": experiment["multi"]}] if experiment.get("multi") else experiment.get("rows") or []
    top = _listed(experiment.get("lang", "sw"))
    # several target languages at the top: every row of one language, then the next; a row that names its own
    # languages (or a multi-target row) once, where it stands in the first language's turn
    pairs = [(entry, lang) for i, first in enumerate(top) for entry in entries
             for lang in ([first] if not ({"lang", "multi"} & set(entry)) else
                          _listed(entry.get("lang", first)) if i == 0 else [])]
    runs = []
    for entry, lang in pairs:
        settings = {**experiment, **entry}
        ns = Namespace(model=str(settings.get("model", "default")), preset=str(settings.get("preset", "demo")),
                       steps=int(settings.get("steps", 21)), seeds=",".join(_listed(settings.get("seeds", [1]))),
                       lr=str(settings["lr"]) if settings.get("lr") else None,
                       precision=str(settings.get("precision", "fp32")),
                       multi=",".join(_listed(entry["multi"])) if entry.get("multi") else None,
                       lang=lang, rows=entry.get("row"))
        if entry.get("row") == "base":  # the untuned model: no training, no seed
            runs.append((f"base-{lang}-{ns.model.replace('/', '_')}", lang, ["--base", "--model", ns.model], []))
        else:
            runs += [(n, lang_, [], flags) for n, lang_, flags in objectives_table.plan(ns)]
    return runs


def groups(experiment: dict) -> list[str]:
    """The table's row names (a run's name without ``-s<seed>``), in experiment order, each once."""
    out = []
    for name, *_ in plan(experiment):
        base = re.sub(r"-s\d+$", "", name)
        if base not in out and not base.startswith("multi-"):
            out.append(base)
    return out


def read_records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def render(experiment: dict, records: list[dict]) -> str:
    """The experiment's table as Markdown: the multi-target comparison for a ``multi`` experiment, else one line per
    row (one seed: value (95% interval over prompts); several: mean [min–max over seeds]; ‡ rescored)."""
    if experiment.get("multi"):
        seeds = _listed(experiment.get("seeds", [1]))
        return objectives_table.render_multi({r["name"]: r for r in records}, _listed(experiment["multi"]),
                                             str(experiment.get("model", "default")), seeds) or ""
    return objectives_table.render_table(records, groups(experiment))


def run(experiment: dict, dry_run: bool = False) -> int:
    done = objectives_table.done_names()
    for name, lang, options, flags in plan(experiment):
        if dry_run:
            print(f"{name}: python bench/demo_experiment.py --name {name} --lang {lang} "
                  f"{shlex.join([*options, '--', *flags])}")
            continue
        if name in done:
            print(f"{name}: already measured, skipped")
            continue
        code = objectives_table.run_one(name, lang, flags, options)
        if code != 0:
            print(f"{name} failed (exit {code}); the experiment stops here", file=sys.stderr)
            return code
    return 0


def rewrite_page(page: str, records: list[dict], root: Path = ROOT) -> str:
    """``page`` with every marked table regenerated from ``records``."""
    def table(m: re.Match) -> str:
        return m.group(1) + render(load_experiment(root / m.group(2)), records).rstrip("\n") + "\n" + m.group(4)
    return MARK.sub(table, page)


def docs(check: bool = False, page: Path = PAGE, data: Path = DATA) -> int:
    text = page.read_text(encoding="utf-8")
    new = rewrite_page(text, read_records(data))
    if new == text:
        print(f"{page.relative_to(ROOT)}: every table matches {data.relative_to(ROOT)}")
        return 0
    if check:
        print(f"{page.relative_to(ROOT)} disagrees with {data.relative_to(ROOT)}: "
              "python -m bench.experiments docs rewrites its tables", file=sys.stderr)
        return 1
    page.write_text(new, encoding="utf-8")
    print(f"rewrote the tables of {page.relative_to(ROOT)} from {data.relative_to(ROOT)}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.experiments", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the experiment's rows not measured yet")
    r.add_argument("experiment")
    r.add_argument("--dry-run", action="store_true", help="print every command, run nothing")
    t = sub.add_parser("table", help="print the experiment's table from artifacts/experiments/results.jsonl")
    t.add_argument("experiment")
    t.add_argument("--published", action="store_true", help="from docs/results-data.jsonl instead")
    d = sub.add_parser("docs", help="rewrite docs/results.md's tables from docs/results-data.jsonl")
    d.add_argument("--check", action="store_true", help="change nothing; exit 1 where the page disagrees")
    args = ap.parse_args(argv)
    try:
        if args.command == "docs":
            return docs(args.check)
        experiment = load_experiment(args.experiment)
    except (OSError, ExperimentError, yaml.YAMLError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.command == "run":
        return run(experiment, args.dry_run)
    records = read_records(DATA if args.published else objectives_table.RESULTS)
    print(render(experiment, records) or "nothing measured yet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
