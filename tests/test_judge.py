"""The LLM judge against `clo serve` (a real server on both ends): positions swapped, a judge that always says "A"
gives 50%, `clo eval --judge-url`, the Arena's judge voter and its agreement with human votes; the key stays in
the environment."""
from __future__ import annotations

import json

import pytest

from clo.evaluation.generate import GenerationOptions
from clo.models.load import load_model
from clo.workshop.arena import Arena
from clo.workshop.judge import Judge, combine, judge_responses, judge_round, parse_verdict
from clo.workshop.serve import ServeSettings, running_server

KEY = "sk-judge-secret-42"


@pytest.fixture(scope="module")
def always_a(tiny_model):
    """`clo serve` on a tiny model biased to write "A" first: with max_tokens=1 every verdict is "A"."""
    lm = load_model(str(tiny_model))
    a = lm.tokenizer.convert_tokens_to_ids("A")
    with running_server(lm, ServeSettings(port=0, extra={"sequence_bias": {(a,): 100.0}}), "judge") as (url, _):
        yield url


@pytest.fixture(scope="module")
def tiny_judge(tiny_model):
    """`clo serve` on the tiny random model, with an API key (from the environment on the client side)."""
    with running_server(str(tiny_model), ServeSettings(port=0, api_key=KEY, extra={"min_new_tokens": 2}),
                        "judge") as (url, _):
        yield url


def test_combine_and_parse():
    assert [combine("A", "B"), combine("B", "A"), combine("A", "A"), combine("T", "B"), combine(None, "B")] == \
        [1.0, 0.0, 0.5, 0.5, 0.5]
    assert parse_verdict("B") == "B" and parse_verdict(" a.") == "A" and parse_verdict("Answer T") == "T"
    assert parse_verdict("Habari") is None


def test_a_judge_that_always_answers_a_yields_50_percent(always_a):
    judge = Judge(always_a, "judge", max_tokens=1)
    assert judge.verdict("Q?", "x", "y", "sw") == "A"
    rows = [{"model": m, "id": str(i), "lang": "sw", "prompt": f"Swali {i}?", "response": f"{m} {i}"}
            for m in ("base", "tuned") for i in range(4)]
    res = judge_responses(rows, "base", judge)["models"]["tuned"]
    assert res["n"] == 4 and res["win_rate"] == 0.5 and res["ties"] == 4
    lo, hi = res["win_rate_ci"]
    assert lo < 0.5 < hi


def test_clo_eval_with_a_judge_end_to_end(tiny_judge, tiny_model, tiny_gpt2, tmp_path, capsys, monkeypatch):
    from clo.cli.main import main

    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"id": str(i), "lang": "sw", "prompt": p}) + "\n"
                               for i, p in enumerate(["Habari?", "Jua huchomoza wapi?", "Mji mkuu wa Kenya?"])))
    monkeypatch.delenv("CLO_JUDGE_API_KEY", raising=False)
    assert main(["eval", "--model", str(tiny_model), "--model", str(tiny_gpt2), "--prompts", str(prompts),
                 "--max-new-tokens", "4", "--judge-url", tiny_judge, "--judge-model", "judge", "--json"]) == 2
    assert "401" in capsys.readouterr().err  # no key in the environment: one clear line, no traceback
    monkeypatch.setenv("CLO_JUDGE_API_KEY", KEY)
    assert main(["eval", "--model", str(tiny_model), "--model", str(tiny_gpt2), "--prompts", str(prompts),
                 "--max-new-tokens", "4", "--judge-url", tiny_judge, "--judge-model", "judge", "--json"]) == 0
    out = capsys.readouterr().out
    judged = json.loads(out)["judge"]["models"][str(tiny_gpt2)]
    assert judged["n"] == 3 and 0 <= judged["win_rate"] <= 1 and judged["baseline"] == str(tiny_model)
    assert KEY not in out


def test_arena_judge_voter_and_agreement_with_humans(tiny_judge, tiny_model, tiny_gpt2, tmp_path, monkeypatch):
    monkeypatch.setenv("CLO_JUDGE_API_KEY", KEY)
    arena = Arena(tmp_path / "arena.sqlite")
    code = arena.create_round([str(tiny_model), str(tiny_gpt2)], [{"id": "1", "lang": "sw", "prompt": "Habari?"},
                                                                  {"id": "2", "lang": "sw", "prompt": "Jua?"}],
                              GenerationOptions(max_new_tokens=4))
    while (m := arena.next_matchup(code, "human")) is not None:
        arena.record_vote(code, "human", m, "tie")
    assert judge_round(arena, code, tiny_judge, "judge") == 2
    board = arena.leaderboard(code)
    assert board["n_votes"] == 2  # the judge's verdicts are kept apart from the human votes
    agree = board["judge_agreement"]
    assert agree["n"] == 2 and 0 <= agree["agreement"] <= 1
    assert KEY not in arena.votes_csv(code) and KEY.encode() not in (tmp_path / "arena.sqlite").read_bytes()
