"""`python -m clo bench` end to end on a tiny model: every row, the ratios, the cache hit. No time is asserted."""
from __future__ import annotations

import json

import pytest

from clo.cli import main


@pytest.mark.parametrize("skip", [["langid"]])
def test_bench_quick_json_on_tiny_model(tiny_model, tmp_path, capsys, skip):
    out = tmp_path / "bench.json"
    code = main(["bench", "--quick", "--json", "--model", str(tiny_model), "--max-length", "512",
                 "--out", str(out), "--skip", *skip])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)  # one JSON object on stdout, progress on stderr
    assert printed == json.loads(out.read_text())
    rows = printed["rows"]
    assert set(rows) == {"trl_dpo", "clo", "clo_cached", "sft"}
    for r in rows.values():
        assert r["step_s"] > 0 and r["s_per_pair"] > 0 and r["tokens_per_s"] > 0
        assert r["peak_gb"] > 0 and 0 < r["mfu"] < 1
    # the first CLO run computes its reference log-probs once; the second finds them cached and runs no pass
    assert rows["clo"]["extra"]["ref_cache_hit"] is False and rows["clo"]["ref_pass_s"] > 0
    assert rows["clo_cached"]["extra"]["ref_cache_hit"] is True and rows["clo_cached"]["ref_pass_s"] == 0
    ratios = printed["ratios"]
    for k in ("clo_vs_trl_dpo_time", "clo_vs_trl_dpo_memory", "clo_cached_vs_trl_dpo_time", "reference_cache_saving_s"):
        assert isinstance(ratios[k], float) and ratios[k] > 0
    gen = printed["generation"]
    assert gen["prompts"] == 40 and gen["identical_answers"] == "40/40"  # batching changes speed, not answers
    assert printed["loading"]["cached_load_s"] > 0
    assert printed["machine"]["peak_flops"] > 0


def test_bench_refuses_too_little_data(tiny_model):
    from bench.suite import run_bench

    with pytest.raises(ValueError, match="needs"):
        run_bench(model=str(tiny_model), batch_size=100, steps=5, max_length=512, skip=("load", "generate", "langid"),
                  log=lambda m: None)
