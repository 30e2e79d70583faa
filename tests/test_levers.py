"""bench/levers.py on a tiny model: every lever runs, the exact ones give the plain path's log-probs and
gradients, bf16 reports how far it moves them, and the JSON holds every figure. Nothing is timed."""
from __future__ import annotations

import json


def test_every_lever_runs_and_the_exact_ones_agree(tiny_model, tmp_path, monkeypatch):
    from bench import levers

    monkeypatch.setenv("CLO_HOME", str(tmp_path / "home"))
    out = tmp_path / "levers.json"
    assert levers.main(["--model", str(tiny_model), "--pairs", "8", "--batches", "1", "--repeats", "1",
                        "--matmul", "64,32,48", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    mm = res["bf16_matmul"]
    # timings are reported, never judged: a fast CPU multiplies 64x32x48 in a few microseconds
    assert mm["shape"] == [64, 32, 48] and isinstance(mm["native_bf16"], bool)
    assert all(isinstance(mm[k], float) and mm[k] >= 0 for k in ("fp32_ms", "bf16_ms"))
    ro = res["reference_order"]
    assert ro["pairs"] == 8 and ro["max_abs_logp_diff"] < 1e-3 and 0 < ro["positions_ratio"] <= 1
    lb = res["length_buckets"]
    assert lb["max_abs_logp_diff_2"] < 1e-3 and lb["max_abs_grad_diff_2"] < 1e-3
    sp = res["shared_prompts"]
    assert sp["max_abs_logp_diff"] < 1e-3 and sp["max_abs_grad_diff"] < 1e-3 and sp["positions_ratio"] < 1
    b = res["bf16"]
    assert b["max_abs_answer_logp_diff"] > 0  # bf16 really rounded …
    assert b["reference_pairs"] == 8 and b["train_time_ratio"] > 0 and b["reference_time_ratio"] > 0
    assert res["system_prompt_share"]["share"] == 0  # the tiny model's template adds no system prompt (SmolLM2's: 15%)
    assert res["system_prompt"]["system_prompt_tokens"] == 0  # … so there is nothing to drop


def test_the_system_prompt_lever_drops_the_default_and_says_how_far_log_probs_move(tmp_path, monkeypatch):
    from bench import levers
    from clo.core.testing import CHATML_DEFAULT_SYSTEM, make_tiny_model

    monkeypatch.setenv("CLO_HOME", str(tmp_path / "home"))
    model = make_tiny_model(tmp_path / "tiny-system", template=CHATML_DEFAULT_SYSTEM)
    out = tmp_path / "sp.json"
    assert levers.main(["--model", str(model), "--only", "system_prompt", "--pairs", "8", "--batches", "1",
                        "--repeats", "1", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["system_prompt_share"]["share"] > 0
    sp = res["system_prompt"]
    assert sp["system_prompt_tokens"] == res["system_prompt_share"]["system_prompt_tokens"] > 0
    assert sp["positions_none"] < sp["positions_model"] and sp["time_ratio"] > 0 and sp["pairs_scored"] == 8
    assert sp["max_abs_answer_logp_diff"] > 0  # another prompt: the answers' log-probs move (reported, not required)


def test_the_matmul_check_alone_builds_no_model(tmp_path, monkeypatch):
    from bench import levers

    monkeypatch.setattr(levers, "build", lambda *a: (_ for _ in ()).throw(AssertionError("built a model")))
    out = tmp_path / "mm.json"
    assert levers.main(["--only", "bf16_matmul", "--matmul", "32,16,8", "--json", str(out)]) == 0
    assert set(json.loads(out.read_text())) >= {"bf16_matmul", "threads", "load_avg_after"}
