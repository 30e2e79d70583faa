"""Time the default model's load (GGUF dequantization vs the cached safetensors copy) and one CLO step.

    python bench/step_time.py [--batch-size 8] [--max-length 256] [--steps 2]

Sequences are made ~max_length tokens long (answers joined from the bundled English set) so that the
step time is measured at that length. Prints seconds; compare runs on the same machine only.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--scopes", default="attention,full")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    home = Path(tempfile.mkdtemp(prefix="clo-bench-home-"))
    os.environ["CLO_HOME"] = str(home)

    from clo.core.spec import TrainSpec
    from clo.data.formats import load_sft, write_jsonl
    from clo.models.load import load_model
    from clo.training.run import run_training

    t = time.perf_counter(); load_model("default"); first = time.perf_counter() - t
    t = time.perf_counter(); load_model("default"); cached = time.perf_counter() - t
    print(json.dumps({"load_first_s": round(first, 1), "load_cached_s": round(cached, 2)}), flush=True)

    sft = load_sft("demo")
    rows = []
    for i in range(args.batch_size * (args.steps + 1)):
        a, b, c = sft[i % len(sft)], sft[(i + 7) % len(sft)], sft[(i + 13) % len(sft)]
        long_en = " ".join([a["response"], b["response"], c["response"]] * 2)
        rows.append({"id": f"b{i}", "lang": "sw", "instruction_en": a["instruction"], "response_en": long_en,
                     "instruction": b["instruction"], "response": " ".join(reversed(long_en.split())),
                     "translator": "bench"})
    tmp = Path(tempfile.mkdtemp(prefix="clo-bench-"))
    data = write_jsonl(tmp / "xl.jsonl", rows)
    for scope in args.scopes.split(","):
        steps = []
        spec = TrainSpec(method="clo", model="default", data=str(data), scope=scope, batch_size=args.batch_size,
                         max_length=args.max_length, max_steps=args.steps, lr=5e-5)
        result = run_training(spec, tmp / f"run-{scope}", events=lambda e: steps.append((time.perf_counter(), e))
                              if "metrics" in e else None)
        times = [t for t, _ in steps]
        per_step = [round(b - a, 2) for a, b in zip(times, times[1:])]
        import resource

        print(json.dumps({"scope": scope, "batch_samples": args.batch_size, "sequences_per_step": 4 * args.batch_size,
                          "max_length": args.max_length, "step_seconds_after_first": per_step,
                          "ref_pass_s": round(result.ref_pass_seconds or 0, 1),
                          # process peak so far (Linux reports KiB): the full-scope row includes the earlier runs
                          "peak_rss_gb_so_far": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)}),
              flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
