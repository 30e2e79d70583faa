"""Draw docs/figures/results.png and copy the measured numbers to docs/results-data.jsonl.

    python bench/results_chart.py        # after bench/demo_experiment.py runs

Reads artifacts/experiments/results.jsonl (written by bench/demo_experiment.py).
"""
from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "artifacts" / "experiments" / "results.jsonl"
FIG = ROOT / "docs" / "figures" / "results.png"
DATA = ROOT / "docs" / "results-data.jsonl"


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(l) for l in SRC.read_text().splitlines() if l.strip()]
    DATA.write_text("".join(json.dumps({k: r.get(k) for k in ("name", "lang", "kind", "command", "train_s",
                                                           "eval_s", "scores", "status", "final_metrics")},
                                       ensure_ascii=False) + "\n" for r in rows))
    names = [f"{r['name']}" for r in rows]
    target = [r["scores"].get(r["lang"], {}).get("clean_lpr") or 0 for r in rows]
    target_lpr = [r["scores"].get(r["lang"], {}).get("lpr") or 0 for r in rows]
    english = [r["scores"].get("en", {}).get("clean_lpr") or 0 for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(rows)), 4))
    x = range(len(rows))
    w = 0.27
    ax.bar([i - w for i in x], target_lpr, w, label="target LPR", color="#99d8c9")
    ax.bar(list(x), target, w, label="target clean LPR", color="#0f766e")
    ax.bar([i + w for i in x], english, w, label="English clean LPR", color="#6b7280")
    ax.axhline(0.8, color="#0f766e", ls=":", lw=1)
    ax.axhline(0.95, color="#6b7280", ls=":", lw=1)
    ax.set_xticks(list(x))
    ax.set_xticklabels([f"{n}\n({r['lang']})" for n, r in zip(names, rows)], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of held-out prompts (n = 48 each)")
    ax.set_title("Held-out prompts, SmolLM2-135M and (gemma runs) Gemma-3-270M; greedy, repetition penalty 1.2", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    FIG.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIG, dpi=130)
    print(f"wrote {FIG} and {DATA}")


if __name__ == "__main__":
    main()
