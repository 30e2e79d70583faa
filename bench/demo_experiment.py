"""Measure what CLO and SFT do on a bundled model: train with a preset, then score held-out prompts.

    python bench/demo_experiment.py --name clo-demo --lang sw -- --preset demo --method clo
    python bench/demo_experiment.py --name sft-demo --lang sw -- --preset demo --method sft
    python bench/demo_experiment.py --base --lang sw            # the untuned model
    python bench/demo_experiment.py --table                      # print every result as a Markdown table
    python bench/demo_experiment.py --rescore                    # score every record's saved answers again

Everything after ``--`` goes to ``clo train`` unchanged (so the command in docs/results.md is the one that
ran). Evaluation: greedy decoding, repetition penalty 1.2 (the app's default), on the held-out prompts of
the target language and of English. Results accumulate in ``artifacts/experiments/results.jsonl``.

``--rescore`` scores each record's saved answers (``<name>.responses.jsonl``, else the copy published in
``docs/answers/``; on a fresh machine run ``python bench/results_chart.py --restore`` first) again with the
scoring code as it is now (``clo.evaluation.evaluate.score_answers``: no model loads, no answer changes) and
replaces the record's scores, so a fix to a metric reaches every published row; the record says when (``rescored``).
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "artifacts" / "experiments"


def _evaluate(model: str, lang: str, max_new_tokens: int) -> dict:
    from clo.data.formats import load_prompts
    from clo.evaluation.evaluate import evaluate
    from clo.evaluation.generate import GenerationOptions

    prompts = load_prompts("demo", [*lang.split(","), "en"])  # a run may have several target languages
    t = time.perf_counter()
    res = evaluate([model], prompts, options=GenerationOptions(max_new_tokens=max_new_tokens))
    scores = res["models"][model]
    return {"scores": scores, "eval_s": round(time.perf_counter() - t, 1), "responses": res["responses"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", help="experiment name (run directory under artifacts/experiments/runs)")
    ap.add_argument("--lang", default="sw")
    ap.add_argument("--base", action="store_true", help="evaluate the untuned model given by --model")
    ap.add_argument("--model", default="default")
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--table", action="store_true", help="print all results as Markdown")
    ap.add_argument("--rescore", action="store_true",
                    help="score every record's saved answers again with today's scoring code (no model loads)")
    ap.add_argument("train_args", nargs=argparse.REMAINDER, help="-- then clo train arguments")
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    results = OUT / "results.jsonl"
    if args.table:
        return print_table(results)
    if args.rescore:
        return rescore(results)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from clo.cli.main import main as clo_main

    record = {"name": args.name or f"base-{args.lang}-{args.model}", "lang": args.lang,
              "started": time.strftime("%Y-%m-%d %H:%M")}
    if args.base:
        model = args.model
        record.update(kind="base", command=f"clo eval --model {args.model} --prompts demo --lang {args.lang},en")
    else:
        train_args = [a for a in args.train_args if a != "--"]
        run_dir = OUT / "runs" / args.name
        cmd = ["train", "--lang", args.lang, "--data", "demo", *train_args, "--out", str(run_dir)]
        t = time.perf_counter()
        code = clo_main(cmd)
        if code != 0:
            return code
        record.update(kind="train", train_s=round(time.perf_counter() - t, 1),
                      command="python -m clo " + " ".join(cmd[:-2]) + f" --out runs/{args.name}")
        from clo.runs.rundir import RunDir

        run = RunDir(run_dir)
        record["config"] = run.config()
        record["status"] = {k: run.status().get(k) for k in ("state", "step", "duration_s", "ref_pass_s")}
        rows = run.metrics()
        record["final_metrics"] = rows[-1] if rows else {}
        model = str(run_dir)
    ev = _evaluate(model, args.lang, args.max_new_tokens)
    record.update(scores=ev["scores"], eval_s=ev["eval_s"], scoring=VERDICT)
    (OUT / f"{record['name']}.responses.jsonl").write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in ev["responses"]) + "\n", encoding="utf-8")
    with open(results, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(json.dumps({k: record[k] for k in ("name", "scores") if k in record}, indent=2, ensure_ascii=False))
    return 0


# The verdict a record's scores were computed with (docs/results.md, "Scoring"); bench/results_chart.py keeps it.
VERDICT = "2026-12-07: clean LPR with the real-word gate over judged words (docs/evaluation.md)"


def rescore(results: Path) -> int:
    """Replace each record's ``scores`` by those of its saved answers under the current scoring code."""
    from clo.evaluation.evaluate import score_answers

    if not results.exists():
        print(f"no results yet ({results})")
        return 0
    records = [json.loads(l) for l in results.read_text(encoding="utf-8").splitlines() if l.strip()]
    changed = 0
    for r in records:
        answers = OUT / f"{r['name']}.responses.jsonl"
        published = ROOT / "docs" / "answers" / f"{answers.name}.gz"  # bench/results_chart.py publishes them there
        if answers.exists():
            text = answers.read_text(encoding="utf-8")
        elif published.exists():
            text = gzip.decompress(published.read_bytes()).decode("utf-8")
        else:
            print(f"{r['name']}: no saved answers ({answers.name}, none published), kept as it was")
            continue
        rows = [json.loads(l) for l in text.splitlines() if l.strip()]
        for row in rows:
            row["model"] = r["name"]  # one block: the record's own answers
        scores = json.loads(json.dumps(score_answers(rows)["models"][r["name"]]))  # as stored: lists, not tuples
        if scores != r.get("scores"):
            changed += 1
            moved = sorted(f"{lang}.{k}" for lang in scores for k in scores[lang]
                           if scores[lang][k] != (r.get("scores") or {}).get(lang, {}).get(k))
            print(f"{r['name']}: {', '.join(moved[:8])}{' …' if len(moved) > 8 else ''}")
        r["scores"], r["rescored"], r["scoring"] = scores, time.strftime("%Y-%m-%d %H:%M"), VERDICT
    tmp = results.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    tmp.replace(results)
    print(f"rescored {len(records)} records, {changed} with new scores")
    return 0


def print_table(results: Path) -> int:
    rows = [json.loads(l) for l in results.read_text().splitlines() if l.strip()] if results.exists() else []
    print("| run | lang | train s | target clean LPR | target LPR | target real words | echo | loop | chrF++ | "
          "English clean LPR | English LPR | English real words |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    def f(v):
        return "–" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)

    for r in rows:
        t, e = r["scores"].get(r["lang"], {}), r["scores"].get("en", {})
        print(f"| {r['name']} | {r['lang']} | {f(r.get('train_s'))} | {f(t.get('clean_lpr'))} | {f(t.get('lpr'))} | "
              f"{f(t.get('real_word_rate'))} | {f(t.get('echo_rate'))} | {f(t.get('loop_rate'))} | "
              f"{f(t.get('chrf'))} | "
              f"{f(e.get('clean_lpr'))} | {f(e.get('lpr'))} | {f(e.get('real_word_rate'))} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
