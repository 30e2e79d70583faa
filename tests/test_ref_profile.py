"""bench/ref_profile.py on a tiny model: a real first run (reference pass, then steps) profiled, with the ratio and
the operator tables it prints. Nothing is timed against a threshold."""
from __future__ import annotations

import os

import yaml


def test_the_reference_pass_and_the_steps_are_profiled_on_a_real_first_run(tiny_model, tmp_path):
    from bench.ref_profile import profile_first_run
    from clo.training.trainer import CLOTrainer

    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump({"model": str(tiny_model), "method": "clo", "data": "demo", "batch_size": 2,
                                      "max_length": 256, "lr": 1e-3}))
    before = (CLOTrainer._precompute_ref_logps, CLOTrainer.training_step, os.environ.get("CLO_HOME"))
    res = profile_first_run(str(preset), "sw", steps=2, top=5)
    assert (CLOTrainer._precompute_ref_logps, CLOTrainer.training_step, os.environ.get("CLO_HOME")) == before
    assert res["result"] == "finished" and res["steps"] == 2 and res["samples"] == 4  # 2 steps × 2 samples
    assert res["ref_pass_s"] > 0 and res["steps_s"] > 0 and res["ratio_ref_to_later_steps"] > 0
    for table in (res["ref_ops"], res["step_ops"]):
        assert 0 <= table["head_s"] <= table["self_cpu_s"] and 0 < len(table["top"]) <= 5
    # the step runs a backward, the reference pass does not
    assert any("backward" in op.lower() for op in res["step_ops"]["ops"])
    assert not any("backward" in op.lower() for op in res["ref_ops"]["ops"])
    assert "aten::mm" in res["ref_ops"]["ops"] and "aten::mm" in res["step_ops"]["ops"]
