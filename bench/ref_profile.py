"""Where a first run's reference pass spends its time, beside the training steps it serves (docs/performance.md).

    python -m bench.ref_profile [--preset demo-gemma] [--lang sw] [--steps 2] [--top 12] [--json FILE]

Runs the preset's real training (``run_training``) on ``steps × batch_size`` samples in a fresh ``CLO_HOME`` (so
the reference pass really runs) with PyTorch's profiler around two things only: the reference pass
(``CLOTrainer._precompute_ref_logps``) and each training step (``training_step``). Prints each one's seconds
per sample, their ratio, and each one's operators by their own CPU time, the share of the head (the
products with the vocabulary-sized matrix and the log-softmax over it) among them. The same samples are scored
by both, so the ratio says how the forward-only reference pass compares with forward-and-backward steps: its
products are about a third of a step's (python bench/demo_floor.py counts them), so a ratio far above that is
time spent outside the products. Profiling adds its own overhead: compare ratios, not seconds with other tables.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def _table(prof, top: int, vocab: int) -> dict:
    """Operators by self CPU time; ``head_s``: products whose output or weight has the vocabulary's size, and
    the softmax over it."""
    rows, head, total = [], 0.0, 0.0
    for e in prof.key_averages(group_by_input_shape=True):
        s = e.self_cpu_time_total / 1e6
        total += s
        shapes = str(e.input_shapes)
        if str(vocab) in shapes and e.key in ("aten::mm", "aten::addmm", "aten::linear", "aten::matmul",
                                               "aten::_log_softmax", "aten::log_softmax", "aten::copy_",
                                               "aten::gather", "aten::tanh", "aten::div", "aten::mul",
                                               "aten::_log_softmax_backward_data"):
            head += s
        rows.append((s, e.key, shapes[:90], e.count))
    rows.sort(reverse=True)
    return {"self_cpu_s": round(total, 2), "head_s": round(head, 2), "ops": sorted({k for _, k, _, _ in rows}),
            "top": [{"op": k, "self_s": round(s, 2), "calls": c, "shapes": sh} for s, k, sh, c in rows[:top]]}


def profile_first_run(preset: str, lang: str, steps: int, top: int) -> dict:
    from torch.profiler import ProfilerActivity, profile

    from clo.core.spec import TrainSpec, load_preset
    from clo.training import trainer as trainer_module
    from clo.training.run import run_training

    spec = TrainSpec.from_dict({**load_preset(preset), "lang": lang, "max_steps": steps}, source=f"preset {preset}")
    cls = trainer_module.CLOTrainer
    found: dict = {"ref": None, "steps": [], "vocab": None}
    original_ref, original_step = cls._precompute_ref_logps, cls.training_step

    def ref_pass(self, dataset, name, batch_size):
        found["vocab"] = self.model.config.get_text_config().vocab_size
        found["ref_rows"] = len(dataset)
        t0 = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            out = original_ref(self, dataset, name, batch_size)
        found["ref"] = (time.perf_counter() - t0, prof)
        return out

    def step(self, *args, **kwargs):
        t0 = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            out = original_step(self, *args, **kwargs)
        found["steps"].append((time.perf_counter() - t0, prof))
        return out

    cls._precompute_ref_logps, cls.training_step = ref_pass, step
    home = os.environ.get("CLO_HOME")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["CLO_HOME"] = str(Path(tmp) / "home")  # a first run: no reference cache to hit
            result = run_training(spec, Path(tmp) / "run")
    finally:
        cls._precompute_ref_logps, cls.training_step = original_ref, original_step
        if home is None:
            os.environ.pop("CLO_HOME", None)
        else:
            os.environ["CLO_HOME"] = home
    samples = found["ref_rows"] // 2  # two preference pairs (rows) per sample
    ref_s, ref_prof = found["ref"]
    step_s = sum(s for s, _ in found["steps"])
    vocab = found["vocab"]
    later = sum(s for s, _ in found["steps"][1:]) / (len(found["steps"]) - 1) if len(found["steps"]) > 1 else None
    return {
        "preset": preset, "model": spec.model, "precision": spec.precision, "result": result.state,
        "samples": samples, "steps": len(found["steps"]),
        "ref_pass_s": round(ref_s, 2), "steps_s": round(step_s, 2),
        "ref_s_per_sample": round(ref_s / samples, 3),
        "step_s_per_sample": round(step_s / (len(found["steps"]) * spec.batch_size), 3),
        "ratio_ref_to_steps": round(ref_s / step_s, 3),
        # the first step also allocates the optimizer's state: the steps after it, apart
        "later_step_s_per_sample": round(later / spec.batch_size, 3) if later else None,
        "ratio_ref_to_later_steps": round(ref_s / samples / (later / spec.batch_size), 3) if later else None,
        "ref_ops": _table(ref_prof, top, vocab),
        "step_ops": [_table(p, top, vocab) for _, p in found["steps"][-1:]][0],
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="demo-gemma")
    ap.add_argument("--lang", default="sw")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    res = profile_first_run(a.preset, a.lang, a.steps, a.top)
    print(f"{a.preset}: reference pass {res['ref_pass_s']} s over {res['samples']} samples "
          f"({res['ref_s_per_sample']} s each); {res['steps']} steps {res['steps_s']} s "
          f"({res['step_s_per_sample']} s per sample); reference / steps = {res['ratio_ref_to_steps']}; "
          f"steps after the first: {res['later_step_s_per_sample']} s per sample, "
          f"reference / steps = {res['ratio_ref_to_later_steps']}")
    for what in ("ref_ops", "step_ops"):
        t = res[what]
        print(f"\n{what}: {t['self_cpu_s']} s of operators, head {t['head_s']} s")
        for r in t["top"]:
            print(f"  {r['self_s']:8.2f} s  {r['calls']:5d}×  {r['op']:<32} {r['shapes']}")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
