"""bench/demo_floor.py on tiny models: it sees the demo run's own batches, its count of a batch's operations agrees
with PyTorch's FLOP counter, and fewer positions (no default system prompt) give a lower floor. Nothing is timed
but the machine's peak, which is only divided by."""
from __future__ import annotations

import json


def _floor(tmp_path, monkeypatch, *args) -> dict:
    from bench import demo_floor

    monkeypatch.setenv("CLO_HOME", str(tmp_path / "home"))
    out = tmp_path / f"floor-{len(list(tmp_path.glob('floor-*')))}.json"
    assert demo_floor.main([*args, "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_the_count_follows_the_demo_batches_and_agrees_with_the_flop_counter(tiny_model, tmp_path, monkeypatch):
    res = _floor(tmp_path, monkeypatch, "--model", str(tiny_model), "--check")
    assert res["steps"] == 21  # the demo preset: 168 samples, batch 8
    train, ref = res["training"], res["reference"]
    assert ref["answer_tokens"] == train["answer_tokens"]  # every answer token scored once by each
    assert train["forwards"] == 2 * 21  # shared prompts, 2 length buckets a step
    assert train["tflop"] > 2 * ref["tflop"]  # forward + backward against forward only
    assert 0.95 < res["check"]["ratio_without_attention"] < 1.05, res["check"]
    assert res["floor_s"]["both"] > 0 and res["peak_gflops"] > 0


def test_dropping_the_default_system_prompt_lowers_the_floor(tmp_path, monkeypatch):
    from clo.core.testing import CHATML_DEFAULT_SYSTEM, make_tiny_model

    model = make_tiny_model(tmp_path / "tiny-system", template=CHATML_DEFAULT_SYSTEM)
    kept = _floor(tmp_path, monkeypatch, "--model", str(model))
    dropped = _floor(tmp_path, monkeypatch, "--model", str(model), "--system-prompt", "none")
    assert dropped["training"]["positions"] < kept["training"]["positions"]
    assert dropped["training"]["answer_tokens"] == kept["training"]["answer_tokens"]
    assert dropped["tflop"] < kept["tflop"]
