"""Two rows of the objectives table compared over their seeds: mean over seeds, 95% interval over prompts and
seeds together, and the difference A − B with its interval (clo.evaluation.comparison, docs/evaluation.md).

    python bench/seed_compare.py clo-sw-gemma-3-270m sft-sw-gemma-3-270m --lang sw --lang en
    python bench/seed_compare.py clo-sw-default sft-sw-default --lang sw --lang en --json out.json

A row is the name ``bench/objectives_table.py`` gives it without its ``-s<seed>``; its answers are the files
``artifacts/experiments/<row>-s<seed>.responses.jsonl`` that ``bench/demo_experiment.py`` wrote, one per seed,
or, where a row was measured on another machine, the copies ``bench/results_chart.py`` published in
``docs/answers/`` (gzipped).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from clo.data.formats import DataError
from clo.evaluation.comparison import compare_methods

ROOT = Path(__file__).resolve().parent.parent


ANSWERS = ROOT / "artifacts" / "experiments"
PUBLISHED = ROOT / "docs" / "answers"
LABELS = {"clean_lpr": "clean LPR", "clean_lpr_strict": "clean LPR (strict)", "real_word_rate": "real words",
          "chrf": "chrF++"}


def seed_files(row: str, folder: Path = ANSWERS, suffix: str = ".responses.jsonl") -> list[Path]:
    """The answers files of ``row``'s seeds (``<row>-s<seed><suffix>``), in seed order."""
    pat = re.compile(re.escape(row) + r"-s(\d+)" + re.escape(suffix) + "$")
    found = [(int(m.group(1)), p) for p in folder.glob(f"{row}-s*{suffix}") if (m := pat.match(p.name))]
    return [p for _, p in sorted(found)]


def published_files(row: str, folder: Path | None = None) -> list[Path]:
    """The published answers of ``row``'s seeds (docs/answers/<row>-s<seed>.responses.jsonl.gz), unpacked to a
    temporary folder, in seed order."""
    import gzip
    import tempfile

    found = seed_files(row, folder or PUBLISHED, ".responses.jsonl.gz")
    if not found:
        return []
    out = Path(tempfile.mkdtemp(prefix="clo-answers-"))
    paths = []
    for p in found:
        paths.append(out / p.name[:-3])
        paths[-1].write_bytes(gzip.decompress(p.read_bytes()))
    return paths


def fmt(v, ci, digits) -> str:
    return f"{v:.{digits}f} ({ci[0]:.{digits}f} to {ci[1]:.{digits}f})" if ci else f"{v:.{digits}f}"


def markdown(a: str, b: str, results: list[dict]) -> str:
    out = [f"A = {a}, B = {b}. Mean over seeds (95% interval over prompts and seeds); "
           "per-seed values in brackets.\n",
           "| lang | metric | seeds A/B | A | B | A − B | the interval says |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        for name, m in r["metrics"].items():
            d = 1 if name == "chrf" else 2
            dd = d + 1  # a difference of rates near 0 needs one more digit
            lo, hi = m["diff"]["ci"] or (0, 0)
            verdict = "A higher" if lo > 0 else "B higher" if hi < 0 else "no difference shown"
            def seeds(x, d=d):
                return "[" + ", ".join(f"{v:.{d}f}" for v in x["per_seed"]) + "]"

            out.append(f"| {r['lang']} | {LABELS[name]} | {r['seeds'][0]}/{r['seeds'][1]} | "
                       f"{fmt(m['a']['value'], m['a']['ci'], d)} {seeds(m['a'])} | "
                       f"{fmt(m['b']['value'], m['b']['ci'], d)} {seeds(m['b'])} | "
                       f"{fmt(m['diff']['value'], m['diff']['ci'], dd)} | {verdict} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", help="row A, e.g. clo-sw-gemma-3-270m")
    ap.add_argument("b", help="row B, e.g. sft-sw-gemma-3-270m")
    ap.add_argument("--lang", action="append", help="language(s) of the prompts to compare (default: sw, en)")
    ap.add_argument("--folder", type=Path, default=ANSWERS, help="where the answers files are")
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = ap.parse_args(argv)
    files = {row: seed_files(row, args.folder) or published_files(row) for row in (args.a, args.b)}
    for row, paths in files.items():
        if not paths:
            print(f"no answers for {row}: expected {args.folder}/{row}-s<seed>.responses.jsonl or "
                  f"{PUBLISHED}/{row}-s<seed>.responses.jsonl.gz (bench/results_chart.py publishes them)",
                  file=sys.stderr)
            return 2
    try:
        results = [compare_methods(files[args.a], files[args.b], lang, n_resamples=args.resamples)
                   for lang in (args.lang or ["sw", "en"])]
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(markdown(args.a, args.b, results))
    if args.json:
        args.json.write_text(json.dumps({"a": args.a, "b": args.b, "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
