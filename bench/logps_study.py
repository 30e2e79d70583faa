"""The figures behind the training charts' captions (docs/design.md, "Training charts"): short runs of the bundled
model on the same 8 Swahili samples of the demo set, one batch per step, so that every step scores the same
answers and the log-probability curves show training, not batch noise.

    python bench/logps_study.py --out runs/logps-study [--steps N] [--overhead] [--json FILE]

Each run is ``python -m clo train --preset demo --lang sw --data demo --limit 8 --batch-size 8 --max-steps N``
plus its own flags (a folder that already holds a finished run is read, not trained again):

* ``sft``   ``--method sft``, 8 steps: SFT on both directions; logs the trained and the other-language answer's
  log-prob
* ``lam0``  ``--lambda 0``, 6 steps: the cross-lingual pairs under DPO alone
* ``lam05`` the demo preset as it is (λ 0.5), 6 steps

``--steps`` gives every run that many steps instead.

For each run it prints the step at which preference accuracy first reached 1.0, the loss terms at the first and
the last step, and per direction the chosen and rejected answers' log-probs at the first and the last step (the
same answers: the drift is training's), with, for the preference runs, the drift against the reference
(reward / β) at the last step. ``--overhead`` times, in one process and interleaved, one SFT training step
(forward + backward) against the extra forward without gradients that scores the other-language answers.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from clo.runs.rundir import RunDir

RUNS = {"sft": (["--method", "sft"], 8), "lam0": (["--lambda", "0"], 6), "lam05": ([], 6)}  # flags, steps


def command(steps: int, out: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "clo", "train", "--preset", "demo", "--lang", "sw", "--data", "demo", "--limit", "8",
            "--batch-size", "8", "--max-steps", str(steps), *extra, "--out", str(out), "--json"]


def report(run: RunDir) -> dict:
    rows, cfg = run.metrics(), run.config()
    first, last = rows[0], rows[-1]
    out = {"run": run.id, "steps": last["step"], "method": cfg.get("method"), "lambda": cfg.get("lambda"),
           "accuracy_1_at": next((r["step"] for r in rows if r.get("accuracy", 0) >= 1.0), None)}
    for k in ("loss", "sft_loss", "cl_loss"):
        if k in first:
            out[k] = [round(first[k], 3), round(last[k], 3)]
    for d in ("en", "tgt"):
        for side in ("chosen", "rejected"):
            k = f"{d}_logps_{side}"
            if k in first:
                out[k] = [round(first[k], 1), round(last[k], 1)]
            if f"rewards_{side}" in last and cfg.get("beta"):
                out[f"drift_{side}"] = round(last[f"rewards_{side}"] / cfg["beta"], 1)
    return out


def overhead(repeats: int) -> dict:
    """One SFT step (forward + backward of the SFT loss) against the extra forward over the other-language answers,
    on the bundled model, the demo preset's 8 samples (16 rows), interleaved."""
    import torch

    from clo.bench.measure import interleaved, median_ratio
    from clo.core.spec import TrainSpec, load_preset
    from clo.models.load import load_model
    from clo.training.run import build_sft_trainer, load_records
    from clo.training.scope import apply_scope

    spec = TrainSpec.from_dict({**load_preset("demo"), "method": "sft", "lang": "sw", "data": "demo", "limit": 8,
                                "batch_size": 8})
    loaded = load_model(spec.model, device="cpu", dtype="float32")
    peft = apply_scope(loaded.model, spec)
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir.create(Path(tmp) / "run", spec.to_dict())
        trainer = build_sft_trainer(spec=spec, loaded=loaded, records=load_records(spec), run=run, device="cpu",
                                    peft_config=peft)
        batch = next(iter(trainer.get_train_dataloader()))
        model = trainer.model.train()
        main = {k: v for k, v in batch.items() if not k.startswith("other_") and k != "is_target"}

        def arm(name):
            if name == "sft step":
                loss = model(**main, fused_lm_head=True, use_cache=False).loss
                loss.backward()
                model.zero_grad(set_to_none=True)
            else:
                with torch.no_grad():
                    model(input_ids=batch["other_input_ids"], attention_mask=batch["other_attention_mask"],
                          labels=batch["other_labels"], fused_lm_head=True, use_cache=False)

        for name in ("sft step", "other forward"):
            arm(name)  # warm-up
        times, _ = interleaved(["sft step", "other forward"], repeats, arm)
    return {"rows": int(main["input_ids"].shape[0]), "sft_step_s": round(statistics.median(times["sft step"]), 2),
            "other_forward_s": round(statistics.median(times["other forward"]), 2),
            "ratio": median_ratio(times["other forward"], times["sft step"]), "repeats": repeats}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/logps-study")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--overhead", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    result = {"runs": []}
    for name, (extra, steps) in RUNS.items():
        run = RunDir(Path(args.out) / name)
        cmd = command(args.steps or steps, run.path, extra)
        if run.status().get("state") != "finished":
            subprocess.run(cmd, check=True)
        result["runs"].append(report(run) | {"command": " ".join(["python", *cmd[1:]])})
    if args.overhead:
        result["overhead"] = overhead(args.repeats)
    text = json.dumps(result, indent=1, ensure_ascii=False)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
