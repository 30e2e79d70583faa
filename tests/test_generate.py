"""Generation: batched (left-padded) greedy output equals one-at-a-time output; streaming; eval JSON keys."""
from __future__ import annotations

import json

from clo.evaluation.generate import GenerationOptions, clean_answer, generate, generate_answers, stream
from clo.models.load import load_model

PROMPTS = ["What is the capital of Kenya?", "Habari?", "Explain why the sky is blue in simple words, please.",
           "Osha mikono yako kwa sabuni kabla ya kula. Kwa nini?"]


def test_batched_greedy_equals_one_at_a_time(tiny_model):
    lm = load_model(str(tiny_model))
    force = {"min_new_tokens": 12}  # a random model may end at once; make it write
    opts = GenerationOptions(max_new_tokens=12, repetition_penalty=1.5, batch_size=4, extra=force)
    batched = generate(lm, PROMPTS, opts)
    one_at_a_time = GenerationOptions(max_new_tokens=12, repetition_penalty=1.5, batch_size=1, extra=force)
    single = [generate(lm, [p], one_at_a_time)[0] for p in PROMPTS]
    assert batched == single
    assert any(a for a in batched)


def test_stream_ends_with_the_full_answer(tiny_model):
    lm = load_model(str(tiny_model))
    opts = GenerationOptions(max_new_tokens=10, repetition_penalty=1.0)
    pieces = list(stream(lm, PROMPTS[0], opts))
    assert pieces and pieces[-1] == generate(lm, [PROMPTS[0]], opts)[0]


def test_an_answer_that_runs_out_of_tokens_says_so(tiny_model):
    lm = load_model(str(tiny_model))
    force = {"min_new_tokens": 6}  # no end-of-turn token before the limit: the answer is cut
    opts = GenerationOptions(max_new_tokens=6, batch_size=2, extra=force)
    answers = generate_answers(lm, PROMPTS[:2], opts)
    assert all(a.cut and a.tokens == 6 for a in answers)
    gen = stream(lm, PROMPTS[0], opts)
    try:
        while True:
            next(gen)
    except StopIteration as done:
        assert done.value.cut and done.value.tokens == 6


def test_clean_answer_cuts_invented_turns():
    assert clean_answer(" Nairobi.\nUser: and Uganda?\nAssistant: Kampala") == "Nairobi."


def test_eval_json_has_documented_keys(tiny_model, tmp_path, capsys):
    from clo.cli.main import main

    prompts = tmp_path / "p.jsonl"
    prompts.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in [
        {"id": "1", "lang": "sw", "prompt": "Habari za asubuhi?", "reference": "Nzuri sana, asante."},
        {"id": "2", "lang": "sw", "prompt": "Jua huchomoza wapi?", "reference": "Jua huchomoza mashariki."},
        {"id": "3", "lang": "en", "prompt": "Where does the sun rise?", "reference": "In the east."},
        {"id": "4", "lang": "zh", "prompt": "太阳从哪里升起？"},
    ]) + "\n")
    out = tmp_path / "responses.jsonl"
    code = main(["eval", "--model", str(tiny_model), "--prompts", str(prompts), "--max-new-tokens", "8",
                 "--json", "--out", str(out)])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    scores = data["models"][str(tiny_model)]
    assert set(scores) == {"sw", "en", "zh"}
    for lang, m in scores.items():
        for key in ("lpr", "clean_lpr", "echo_rate", "loop_rate", "wpr", "chrf", "n", "excluded"):
            assert key in m, (lang, key)
    assert scores["sw"]["n"] == 2 and scores["zh"]["chrf"] is None and scores["sw"]["wpr"] is None
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    assert len(rows) == 4 and {"model", "id", "lang", "prompt", "response"} <= set(rows[0])
