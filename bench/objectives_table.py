"""The table of issue 13: the cross-lingual pairs under each objective, with and without the English anchor,
against SFT, on the same data and step budget; and one multi-target run against single-target runs.

    python bench/objectives_table.py --dry-run                      # print every command, run nothing
    python bench/objectives_table.py --model gemma-3-270m --preset demo-gemma --seeds 1,2,3 --steps 21
    python bench/objectives_table.py --model default --preset demo --seeds 1 --steps 21
    python bench/objectives_table.py --multi sw,yo,de --steps 21    # one 3-language run vs three single ones
    python bench/objectives_table.py --model gemma-3-270m --preset demo-gemma --seeds 1 --rows clo,clo-anchor --lr 4e-4
    python bench/objectives_table.py --table                        # Markdown: mean and range over seeds
    python bench/objectives_table.py --table --multi sw,yo,de --model default --seeds 1   # multi vs single

Each row is one ``bench/demo_experiment.py`` run (``clo train`` on the bundled demo data, then ``clo eval`` on
the held-out prompts of the target language(s) and English), started as its own process, one at a time; its
record (config, scores with intervals, final metrics, seconds per step, peak resident memory) is appended to
``artifacts/experiments/results.jsonl``. Rows already there (same name) are skipped, so an interrupted table
resumes where it stopped.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "artifacts" / "experiments" / "results.jsonl"

# row → extra `clo train` flags (every row also gets the preset, model, seed and step budget)
ROWS = {
    "sft": ["--method", "sft"],
    "clo": ["--method", "clo", "--objective", "clo"],
    "clo-anchor": ["--method", "clo", "--objective", "clo", "--english-anchor", "1.0"],
    "clo-en-nll": ["--method", "clo", "--objective", "clo", "--english-nll", "0.1"],
    "ipo": ["--method", "clo", "--objective", "ipo"],
    "kto": ["--method", "clo", "--objective", "kto"],
    "orpo": ["--method", "clo", "--objective", "orpo"],
    "simpo": ["--method", "clo", "--objective", "simpo"],
}


def plan(args) -> list[tuple[str, str, list[str]]]:
    """(name, lang, clo train flags) of every run of the table."""
    tag = args.model.replace("/", "_")
    common = ["--preset", args.preset, "--model", args.model, "--max-steps", str(args.steps)]
    if args.lr:  # a learning rate other than the preset's: its own rows (``…-lr4e-4-s1``), never the preset's
        tag += f"-lr{args.lr}"
        common = ["--lr", args.lr, *common]
    # every published row computed in fp32: the table's rows stay comparable unless asked otherwise, and a row
    # in another precision has its own name (``…-bf16-s1``)
    if args.precision != "fp32":
        tag += f"-{args.precision}"
    common = ["--precision", args.precision, *common]
    runs = []
    if args.multi:
        langs = args.multi.split(",")
        for seed in args.seeds.split(","):
            runs.append((f"multi-{'-'.join(langs)}-{tag}-s{seed}", args.multi,
                         [*ROWS["clo"], *common[:-1], str(args.steps * len(langs)), "--seed", seed]))
            for lang in langs:  # the table's own `clo` row of each language: measured once, shared by both
                runs.append((f"clo-{lang}-{tag}-s{seed}", lang, [*ROWS["clo"], *common, "--seed", seed]))
        return runs
    for seed in args.seeds.split(","):
        for row in args.rows.split(","):
            runs.append((f"{row}-{args.lang}-{tag}-s{seed}", args.lang, [*ROWS[row], *common, "--seed", seed]))
    return runs


def done_names() -> set[str]:
    if not RESULTS.exists():
        return set()
    return {json.loads(line)["name"] for line in RESULTS.read_text(encoding="utf-8").splitlines() if line.strip()}


def run_one(name: str, lang: str, flags: list[str], options: list[str] | tuple = ()) -> int:
    """One row in its own process (``options``: bench/demo_experiment.py's own, such as ``--base``); a trained
    row's peak resident memory (os.wait4's rusage) and seconds per step go into its record."""
    cmd = [sys.executable, str(ROOT / "bench" / "demo_experiment.py"), "--name", name, "--lang", lang, *options,
           "--", *flags]
    print("$ " + shlex.join(cmd), flush=True)
    p = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    _, status, usage = os.wait4(p.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        rows = RESULTS.read_text(encoding="utf-8").splitlines()
        last = json.loads(rows[-1])
        if last.get("name") == name and last.get("kind") == "train":
            last["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)  # Linux: kilobytes
            last["s_per_step"] = step_seconds(last)
            rows[-1] = json.dumps(last, ensure_ascii=False)
            RESULTS.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return code


def step_seconds(record: dict) -> float | None:
    """Seconds per optimizer step: the training clock of the last step (``elapsed_s``, from the first step's
    start: no loading, no reference pass) over its step number."""
    m = record.get("final_metrics") or {}
    if m.get("elapsed_s") and m.get("step"):
        return round(m["elapsed_s"] / m["step"], 2)
    return None


def stat(vals, cis=None, digits=2) -> str:
    """A table cell. One seed: the value and its 95% interval (Wilson for rates, bootstrap for means and
    chrF++). Several seeds: the mean over seeds and, in brackets, their min–max (seed-to-seed spread)."""
    pairs = [(v, c) for v, c in zip(vals, cis or [None] * len(vals)) if isinstance(v, (int, float))]
    if not pairs:
        return "–"
    if len(pairs) == 1:
        v, c = pairs[0]
        return f"{v:.{digits}f}" + (f" ({c[0]:.{digits}f}–{c[1]:.{digits}f})" if c else "")
    vals = [v for v, _ in pairs]
    mean = sum(vals) / len(vals)
    return f"{mean:.{digits}f} [{min(vals):.{digits}f}–{max(vals):.{digits}f}]"


def table() -> int:
    """Mean and range over seeds of each row (names ending in -s<seed>)."""
    if not RESULTS.exists():
        print("no results yet")
        return 0
    records = [json.loads(line) for line in RESULTS.read_text(encoding="utf-8").splitlines() if line.strip()]
    print("One seed: value (95% interval over the 48 prompts). Several seeds: mean [min–max over seeds]. "
          "‡ rescored with the current verdict.\n")
    print(render_table(records))
    return 0


def render_table(records: list[dict], names: list[str] | None = None) -> str:
    """The objectives table as Markdown: one line per row (its seeds' records grouped by the name without
    ``-s<seed>``), in ``names``' order (default: every row, in the records' order). A row whose records were all
    rescored (``bench/demo_experiment.py --rescore``) is marked ‡."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        base, _, seed = r["name"].rpartition("-s")
        groups.setdefault(base if seed.isdigit() else r["name"], []).append(r)
    lines = ["| row | seeds | target LPR | target clean LPR | target real words | target chrF++ | English clean LPR "
             "| English real words | English chrF++ | s/step | peak RSS MB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [_table_line(name, groups[name]) for name in (groups if names is None else names) if name in groups]
    return "\n".join(lines)


def _table_line(name: str, rs: list[dict]) -> str:
    langs = [c for c in str(rs[0].get("lang", "")).split(",") if c]

    def tgt(key, r):
        vals = [r["scores"].get(c, {}).get(key) for c in langs]
        vals = [v for v in vals if isinstance(v, (int, float))]
        return sum(vals) / len(vals) if vals else None

    def tgt_ci(key, r):  # an interval only for a single target language
        return r["scores"].get(langs[0], {}).get(f"{key}_ci") if len(langs) == 1 else None

    def en(key):
        return stat([r["scores"].get("en", {}).get(key) for r in rs],
                    [r["scores"].get("en", {}).get(f"{key}_ci") for r in rs], 1 if key == "chrf" else 2)

    mark = " ‡" if all(r.get("rescored") for r in rs) else ""
    return (f"| {name}{mark} | {len(rs)} | {stat([tgt('lpr', r) for r in rs], [tgt_ci('lpr', r) for r in rs])} | "
            f"{stat([tgt('clean_lpr', r) for r in rs], [tgt_ci('clean_lpr', r) for r in rs])} | "
            f"{stat([tgt('real_word_rate', r) for r in rs], [tgt_ci('real_word_rate', r) for r in rs])} | "
            f"{stat([tgt('chrf', r) for r in rs], [tgt_ci('chrf', r) for r in rs], 1)} | "
            f"{en('clean_lpr')} | {en('real_word_rate')} | {en('chrf')} | "
            f"{stat([step_seconds(r) for r in rs], digits=1)} | {stat([r.get('peak_rss_mb') for r in rs], digits=0)} |")


def multi_table(langs: list[str], model: str, seeds: list[str]) -> int:
    """The multi-target comparison of this machine's records (:func:`render_multi`), with its heading."""
    records = {}
    if RESULTS.exists():
        for line in RESULTS.read_text(encoding="utf-8").splitlines():
            if line.strip():
                r = json.loads(line)
                records[r["name"]] = r
    tag = model.replace("/", "_")
    multi = [records.get(f"multi-{'-'.join(langs)}-{tag}-s{seed}") for seed in seeds]
    if not any(multi):
        print(f"no multi-target run of {','.join(langs)} on {model} measured yet")
        return 0
    steps = next((r["config"].get("max_steps") for r in multi if r and r.get("config")), None)
    print(f"One run on {' + '.join(langs)} ({steps} steps) against one single-target run per language. One value: "
          "its 95% interval over the 48 prompts; several: mean [min–max].\n")
    print(render_multi(records, langs, model, seeds))
    return 0


def render_multi(records: dict[str, dict], langs: list[str], model: str, seeds: list[str]) -> str | None:
    """The multi-target comparison as Markdown: per language, the one run on all ``langs`` against that
    language's own single-target run (the table's ``clo`` row), on the same held-out prompts; English for the
    multi run against each single run's English. Several seeds: mean [min–max over seeds]. None when the multi
    run is not among ``records`` (name → record)."""
    tag = model.replace("/", "_")
    multi = [records.get(f"multi-{'-'.join(langs)}-{tag}-s{seed}") for seed in seeds]
    single = {lang: [records.get(f"clo-{lang}-{tag}-s{seed}") for seed in seeds] for lang in langs}
    if not any(multi):
        return None

    def cell(rs, lang, key):
        scores = [r["scores"].get(lang, {}) for r in rs if r]
        return stat([sc.get(key) for sc in scores], [sc.get(f"{key}_ci") for sc in scores], 1 if key == "chrf" else 2)

    lines = ["| language | metric | single-target run | multi-target run |", "| --- | --- | --- | --- |"]
    for lang in langs:
        for key, label in (("clean_lpr", "clean LPR"), ("real_word_rate", "real words"), ("chrf", "chrF++")):
            lines.append(f"| {lang} | {label} | {cell(single[lang], lang, key)} | {cell(multi, lang, key)} |")
    for key, label in (("clean_lpr", "clean LPR"), ("real_word_rate", "real words"), ("chrf", "chrF++")):
        per = " · ".join(f"{lang}: {cell(single[lang], 'en', key)}" for lang in langs)
        lines.append(f"| en | {label} | {per} | {cell(multi, 'en', key)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--preset", default="demo-gemma")
    ap.add_argument("--lang", default="sw")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--steps", type=int, default=21, help="optimizer steps of every row (multi: × languages)")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of: {', '.join(ROWS)}")
    ap.add_argument("--lr", help="learning rate of every row instead of the preset's (rows named …-lr<LR>-s<seed>)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"],
                    help="compute precision of every row (default fp32, as every published row; others are named "
                         "…-<precision>-s<seed>)")
    ap.add_argument("--multi", help="languages of the multi-target comparison (e.g. sw,yo,de) instead of the rows")
    ap.add_argument("--dry-run", action="store_true", help="print the commands only")
    ap.add_argument("--table", action="store_true",
                    help="print the Markdown summary of what has been measured "
                         "(with --multi: the multi-target comparison)")
    args = ap.parse_args(argv)
    if args.table:
        return multi_table(args.multi.split(","), args.model, args.seeds.split(",")) if args.multi else table()
    unknown = set(args.rows.split(",")) - set(ROWS)
    if unknown:
        ap.error(f"unknown row(s) {', '.join(sorted(unknown))}; rows: {', '.join(ROWS)}")
    done = done_names()
    for name, lang, flags in plan(args):
        if args.dry_run:
            print(f"{name}: python bench/demo_experiment.py --name {name} --lang {lang} -- {shlex.join(flags)}")
            continue
        if name in done:
            print(f"{name}: already measured, skipped")
            continue
        code = run_one(name, lang, flags)
        if code != 0:
            print(f"{name} failed (exit {code}); the table stops here", file=sys.stderr)
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
