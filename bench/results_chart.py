"""Draw docs/figures/results.png (the rows of artifacts/experiments/results.jsonl) and add them to
docs/results-data.jsonl (earlier rows stay; a re-measured name replaces its row); copy each row's answers to
docs/answers/ (gzipped), so that ``bench/seed_compare.py`` can compare published rows on a fresh machine; then
rewrite the tables of docs/results.md from docs/results-data.jsonl (``python -m bench.experiments docs``).

    python bench/results_chart.py            # after bench/demo_experiment.py runs
    python bench/results_chart.py --restore  # a fresh machine: the published rows back into artifacts/ first

Reads artifacts/experiments/results.jsonl (written by bench/demo_experiment.py). ``--restore`` adds to it every
published row scored the current way (the real-word gate, 2026-12-01 on) that it lacks, so that
``bench/objectives_table.py`` skips what was measured and its ``--table`` and this figure show every row.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.objectives_table import step_seconds  # one definition of seconds per step

ROOT = Path(__file__).resolve().parent.parent


SRC = ROOT / "artifacts" / "experiments" / "results.jsonl"
FIG = ROOT / "docs" / "figures" / "results.png"
DATA = ROOT / "docs" / "results-data.jsonl"
ANSWERS = ROOT / "docs" / "answers"


def publish_answers(names) -> None:
    """Each row's answers file (``artifacts/experiments/<name>.responses.jsonl``) as
    docs/answers/<name>.responses.jsonl.gz; a row whose answers are not on this machine keeps the copy already
    published."""
    import gzip

    ANSWERS.mkdir(parents=True, exist_ok=True)
    for name in names:
        src = SRC.parent / f"{name}.responses.jsonl"
        if src.exists():
            # mtime 0: the same answers give the same bytes, so git sees no change when nothing changed
            with open(ANSWERS / f"{name}.responses.jsonl.gz", "wb") as raw, \
                    gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
                gz.write(src.read_bytes())


# rows scored with a real-word gate (the first, and the one over judged words); earlier rows are not comparable
GATED = ("2026-12-01", "2026-12-07")
FIRST_GATE = "2026-12-01: clean LPR with the real-word gate (docs/evaluation.md)"


def restore() -> int:
    """Append to artifacts/experiments/results.jsonl the published gated rows it lacks; returns how many.
    Rows already there are never touched (a re-measured row on this machine wins)."""
    have = set()
    if SRC.exists():
        have = {json.loads(l)["name"] for l in SRC.read_text(encoding="utf-8").splitlines() if l.strip()}
    rows = [json.loads(l) for l in DATA.read_text(encoding="utf-8").splitlines() if l.strip()]
    add = [r for r in rows if str(r.get("scoring", "")).startswith(GATED) and r["name"] not in have]
    SRC.parent.mkdir(parents=True, exist_ok=True)
    with SRC.open("a", encoding="utf-8") as f:
        for r in add:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return len(add)


def main() -> None:
    if "--restore" in sys.argv[1:]:
        n = restore()
        print(f"restored {n} published rows into {SRC.relative_to(ROOT)}")
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(l) for l in SRC.read_text().splitlines() if l.strip()]
    # docs/results-data.jsonl keeps every row ever published: earlier rows stay, a re-measured name is replaced
    keep = ("name", "lang", "kind", "command", "started", "config", "train_s", "eval_s", "s_per_step", "peak_rss_mb",
            "scores", "status", "final_metrics")
    published = {}
    if DATA.exists():
        for line in DATA.read_text(encoding="utf-8").splitlines():
            if line.strip():
                r = json.loads(line)
                r.setdefault("scoring", "before 2026-12-01: clean LPR without the real-word gate, max_length 160")
                published[r["name"]] = r
    for r in rows:  # a row keeps the verdict it was scored with (bench/demo_experiment.py --rescore sets it)
        published[r["name"]] = {**{k: r.get(k) for k in keep}, "s_per_step": step_seconds(r),
                                "scoring": r.get("scoring") or FIRST_GATE,
                                **({"rescored": r["rescored"]} if r.get("rescored") else {})}
    DATA.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in published.values()), encoding="utf-8")
    publish_answers(r["name"] for r in rows)
    names = [f"{r['name']}" for r in rows]
    def score(r, lang, key):
        """One language's score; a multi-target run's target (``sw,yo,de``): the mean over its languages."""
        vals = [r["scores"].get(c, {}).get(key) for c in lang.split(",")]
        vals = [v for v in vals if isinstance(v, (int, float))]
        return sum(vals) / len(vals) if vals else 0
    x = list(range(len(rows)))
    w = 0.27
    # top: does it answer in the right language (LPR, clean LPR); bottom: how close to the references (chrF++),
    # which is where over-optimisation shows when every answer is already in the right language
    # at most 18 inches wide (one row per 0.5 inch), the labels upright, so that the figure stays readable
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(min(18, max(6, 0.5 * len(rows))), 8), sharex=True)
    w = 0.2
    ax.bar([i - 1.5 * w for i in x], [score(r, r["lang"], "lpr") for r in rows], w, label="target LPR", color="#99d8c9")
    ax.bar([i - 0.5 * w for i in x], [score(r, r["lang"], "clean_lpr") for r in rows], w, label="target clean LPR",
           color="#0f766e")
    ax.bar([i + 0.5 * w for i in x], [score(r, r["lang"], "real_word_rate") for r in rows], w,
           label="target real words", color="#f59e0b")
    ax.bar([i + 1.5 * w for i in x], [score(r, "en", "clean_lpr") for r in rows], w, label="English clean LPR",
           color="#6b7280")
    ax.axhline(0.8, color="#0f766e", ls=":", lw=1)
    ax.axhline(0.95, color="#6b7280", ls=":", lw=1)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of held-out prompts (n = 48)")
    ax.set_title("Held-out prompts, SmolLM2-135M and (gemma runs) Gemma-3-270M; greedy, repetition penalty 1.2",
                 fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.005, 1))
    bx.bar([i - w / 2 for i in x], [score(r, r["lang"], "chrf") for r in rows], w, label="target chrF++",
           color="#0f766e")
    bx.bar([i + w / 2 for i in x], [score(r, "en", "chrf") for r in rows], w, label="English chrF++", color="#6b7280")
    bx.set_ylabel("chrF++ against the reference answers")
    bx.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.005, 1))
    bx.set_xticks(x)
    bx.set_xticklabels([f"{n} ({r['lang']})" for n, r in zip(names, rows)], fontsize=7, rotation=90)
    fig.tight_layout()
    FIG.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIG, dpi=130)
    print(f"wrote {FIG} and {DATA}")
    from bench.experiments import docs

    docs()


if __name__ == "__main__":
    main()
