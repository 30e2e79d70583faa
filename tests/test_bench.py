"""`python -m clo bench` end to end on a tiny model: every row, the ratios, the cache hit. No time is asserted."""
from __future__ import annotations

import json

import pytest

from clo.cli.main import main


@pytest.mark.parametrize("skip", [["langid"]])
def test_bench_quick_json_on_tiny_model(tiny_model, tmp_path, capsys, skip):
    out = tmp_path / "bench.json"
    code = main(["bench", "--quick", "--json", "--model", str(tiny_model), "--max-length", "512",
                 "--out", str(out), "--skip", *skip])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)  # one JSON object on stdout, progress on stderr
    assert printed == json.loads(out.read_text())
    rows = printed["rows"]
    assert set(rows) == {"trl_dpo", "trl_dpo_precomputed", "clo", "clo_cached", "sft"}
    for r in rows.values():
        assert r["step_s"] > 0 and r["s_per_pair"] > 0 and r["tokens_per_s"] > 0
        assert r["peak_gb"] > 0 and 0 < r["mfu"] < 1
    # the first CLO run computes its reference log-probs once; the second finds them cached and runs no pass
    assert rows["clo"]["extra"]["ref_cache_hit"] is False and rows["clo"]["ref_pass_s"] > 0
    assert rows["clo_cached"]["extra"]["ref_cache_hit"] is True and rows["clo_cached"]["ref_pass_s"] == 0
    # TRL's default keeps a reference copy and scores it in every step; precomputed, it has no copy and one pass
    assert rows["trl_dpo"]["extra"]["reference_model_copy"] is True and rows["trl_dpo"]["ref_pass_s"] == 0
    pre = rows["trl_dpo_precomputed"]
    assert pre["extra"]["reference_model_copy"] is False and pre["ref_pass_s"] > 0
    assert pre["extra"]["pairs"] == 2 * 2 * 4  # batch 2 samples × (3 timed + 1 warm-up steps), 2 pairs a sample
    assert pre["s_per_pair"] > pre["step_s"] / pre["pairs_per_step"]  # its pass is charged per pair
    ratios = printed["ratios"]
    for k in ("clo_vs_trl_dpo_time", "clo_vs_trl_dpo_memory", "clo_cached_vs_trl_dpo_time", "reference_cache_saving_s",
              "clo_vs_trl_dpo_precomputed_time", "clo_vs_trl_dpo_precomputed_memory",
              "clo_cached_vs_trl_dpo_precomputed_time", "sft_vs_trl_dpo_precomputed_time"):
        assert isinstance(ratios[k], float) and ratios[k] > 0
    gen = printed["generation"]
    assert gen["prompts"] == 40 and gen["identical_answers"] == "40/40"  # batching changes speed, not answers
    assert printed["loading"]["cached_load_s"] > 0
    assert printed["machine"]["peak_flops"] > 0
    # every trainer row computed in the precision the config names; the peak was measured in it too
    assert printed["config"]["precision"] == "auto" and printed["config"]["computes_in"] in ("fp32", "bf16")
    assert printed["config"]["computes_in"].replace("fp32", "float32").replace("bf16", "bfloat16") in \
        printed["machine"]["peak_is"]
    # the printed report and --markdown show every row and the new ratios
    from clo.bench.suite import markdown_table, print_report

    print_report(printed)
    report = capsys.readouterr().out
    table = markdown_table(printed)
    for name in rows:
        assert f"\n{name} " in report and f"| `{name}` |" in table
    for k in ("clo_vs_trl_dpo_precomputed_time", "clo_vs_trl_dpo_precomputed_memory"):
        assert f"{k}: " in report and f"`{k}` **" in table
    assert main(["bench", "--markdown", str(out)]) == 0
    assert capsys.readouterr().out.strip() == table


def test_bench_refuses_too_little_data(tiny_model):
    from clo.bench.suite import run_bench

    with pytest.raises(ValueError, match="needs"):
        run_bench(model=str(tiny_model), batch_size=100, steps=5, max_length=512, skip=("load", "generate", "langid"),
                  log=lambda m: None)


@pytest.mark.slow  # ≈ 4 min on the shared 2-core CPU: 8 trainer runs of the scaled-down shape
def test_gpu_check_script_runs_scaled_down_on_cpu(tmp_path):
    """bench/gpu_check.sh end to end, on the CPU with Qwen2.5-3B's shape divided by 32 and a tiny batch: one JSON
    with both scopes, every CLO and TRL row (tokens/s, MFU, peak memory) and the ratios. Nothing is timed."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "gpu-check.json"
    env = {**os.environ, "PY": sys.executable, "CLO_HOME": str(tmp_path / "home"), "CHECK_TIMEOUT": "1200"}
    p = subprocess.run(["bash", str(root / "bench" / "gpu_check.sh"), "--divide", "32", "--device", "cpu",
                        "--batch-size", "1", "--max-length", "256", "--steps", "2", "--work", str(tmp_path / "work"),
                        "--out", str(out)], cwd=root, env=env, capture_output=True, text=True, timeout=1300)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["shape"] == "qwen2.5-3b" and res["divide"] == 32 and set(res["scopes"]) == {"attention", "full"}
    for scope, s in res["summary"].items():
        assert set(s["rows"]) == {"trl_dpo", "trl_dpo_precomputed", "clo", "clo_cached"}, scope
        for r in s["rows"].values():
            assert r["tokens_per_s"] > 0 and 0 < r["mfu"] < 1 and r["peak_gb"] > 0
        for k in ("clo_vs_trl_dpo_time", "clo_vs_trl_dpo_memory", "clo_vs_trl_dpo_precomputed_time",
                  "clo_vs_trl_dpo_precomputed_memory"):
            assert s["ratios"][k] > 0, (scope, k)
    assert res["scopes"]["full"]["rows"]["clo"]["extra"]["trainable_params"] > \
        res["scopes"]["attention"]["rows"]["clo"]["extra"]["trainable_params"]


def test_cost_growth_grid_on_tiny_model(tiny_model, tmp_path, monkeypatch, capsys):
    """bench/cost_growth.py: each cell a real CLO run (here in this process; the command runs each in its own),
    every sequence cut at max_length, a failing cell reported and skipped, and the paper's epoch estimated from
    the cell at its batch (scaled down: two lengths, batch 2, one timed step; the tiny model's prompts need ≥ 159
    tokens)."""
    from bench.cost_growth import epoch_estimate, grid, main, run_cell

    out = tmp_path / "growth.json"
    res = grid([str(tiny_model), str(tmp_path / "no-such-model")], [160, 320], [2], steps=1, out=out, peak=1e10,
               run=lambda model, length, batch, lang, steps, peak: run_cell(model, lang, length, batch, steps, peak))
    assert json.loads(out.read_text()) == json.loads(json.dumps(res))
    short, long, *missing = res["cells"]
    assert (short["max_length"], long["max_length"]) == (160, 320) and short["batch"] == 2
    for c in (short, long):
        assert c["s_per_step"] > 0 and c["peak_gb"] > 0 and c["ref_s_per_sample"] > 0
    # every sequence is full: a step at 320 processes twice the tokens of a step at 160 (4 sequences a sample)
    assert long["tokens_per_s"] * long["s_per_step"] == pytest.approx(2 * short["tokens_per_s"] * short["s_per_step"],
                                                                      rel=0.05)
    assert len(missing) == 2 and all("no-such-model" in c["error"] for c in missing)
    assert res["epoch"] == []  # no cell at the paper's batch of 8
    (epoch,) = epoch_estimate(res["cells"][:2], batch=2)
    assert epoch["max_length"] == 320 and epoch["steps"] == 3200
    assert epoch["here_s"] == round(3200 * long["s_per_step"] + 6400 * long["ref_s_per_sample"])
    assert epoch["gpu_s"][0] > epoch["gpu_s"][1] > 0  # 30% MFU takes longer than 45%
    out.write_text(json.dumps({**res, "epoch": [epoch]}))
    capsys.readouterr()
    assert main(["--markdown", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| 320 | 2 |" in table and "| 2, 320 | 3200 |" in table and "no-such-model" in table
