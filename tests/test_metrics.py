"""LCB metrics, degeneration flags, chrF++ and intervals on hand-made answers whose scores are known."""
from __future__ import annotations

import json

import pytest

from clo.data.formats import DATA_DIR
from clo.evaluation import metrics as M

SW_PROMPT = "Kwa nini anga ni la buluu?"
SW_GOOD = "Anga linaonekana la buluu kwa sababu hewa hutawanya mwanga wa buluu zaidi kuliko rangi nyingine."
SW_TWO_LINES = SW_GOOD + "\nHii ndiyo sababu anga huonekana jekundu wakati jua linapozama jioni."
SW_WITH_ENGLISH = SW_GOOD + "\nThis is why the sky looks red when the sun goes down."
SW_LOOP = "kwa maji ya kwa maji ya kwa maji ya kwa maji ya kwa maji ya kwa maji…"
ZH_PROMPT = "为什么天空是蓝色的？"
ZH_GOOD = "天空看起来是蓝色的，因为空气会把蓝色的光散射得比其他颜色更多。"
ZH_BECAUSE = "天空看起来是蓝色的，because 空气会把蓝色的光散射得比其他颜色更多。"
ZH_NAME = "Python 是一种很受欢迎的编程语言，很多科学家都用它来分析数据。"


def _bundled(folder: str) -> dict[str, list[dict]]:
    out = {}
    for path in sorted((DATA_DIR / folder).glob("*.jsonl")):
        out[path.stem] = [json.loads(l) for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]
    return out


# ---------------------------------------------------------------------------------------------- LPR / WPR


def test_line_pass():
    assert M.line_pass(SW_GOOD, "sw") is True
    assert M.line_pass(SW_TWO_LINES, "sw") is True
    assert M.line_pass(SW_WITH_ENGLISH, "sw") is False  # one English line fails the whole response
    assert M.line_pass("Ndiyo.\nAsante sana!", "sw") is None  # no counted line: excluded
    assert M.line_pass("Ndiyo.\n" + SW_GOOD, "sw") is True  # the short line is not counted
    assert M.line_pass(SW_GOOD + "\n```\nx = [1, 2, 3]\n```", "sw") is True  # code lines carry no language
    assert M.line_pass(SW_GOOD, "en") is False
    assert M.line_pass("asdkjh qwe zxcv qwpoeiru mnbv", "sw") is False  # unknown (≤ 0.3) counts as wrong


def test_word_pass():
    assert M.word_pass(ZH_GOOD, "zh") is True
    assert M.word_pass(ZH_BECAUSE, "zh") is False
    assert M.english_words(ZH_BECAUSE) == ["because"]
    assert M.word_pass(ZH_NAME, "zh") is True  # capitalised names are not English words (as in LCB)
    assert M.word_pass("天空是 blue 的颜色，对吧？", "zh") is False  # "longer than 3 letters": blue counts
    assert M.word_pass("天空是蓝色的，对吗？red 也很好看。", "zh") is True  # red does not
    assert M.word_pass(SW_GOOD, "sw") is None  # Latin script: WPR does not apply
    assert M.word_pass("The sky is blue because air scatters blue light.", "zh") is None  # fails LPR first


def test_word_pass_counts_only_longer_words():
    assert M.english_words("天空的颜色是 blue，对吗？我觉得 red 也很好看。") == ["blue"]
    assert M.english_words("我觉得 red 和 sky 也很好看，你觉得呢？") == []


# ---------------------------------------------------------------------------------------------- echo / loop


@pytest.mark.parametrize(
    "prompt, response",
    [
        (SW_PROMPT, SW_PROMPT),  # verbatim
        (SW_PROMPT, "kwa nini anga ni la buluu"),  # case and punctuation do not matter
        (SW_PROMPT, f"{SW_PROMPT} {SW_PROMPT} {SW_PROMPT}"),  # repeated
        ("Why does the ground sometimes shake in an earthquake?",
         "Why does the ground sometimes shake during an earthquake?"),
        ("Why does the ground sometimes shake in an earthquake?", "Why does the ground sometimes shake"),  # truncated
        (ZH_PROMPT, "为什么天空是蓝色的"),
        ("为什么发生地震时地面有时会晃动？", "为什么发生地震时地面会晃动呢？"),  # near copy
    ],
)
def test_echo(prompt, response):
    assert M.is_echo(prompt, response), M.echo_score(prompt, response)


@pytest.mark.parametrize(
    "prompt, response",
    [
        (SW_PROMPT, SW_GOOD),
        (SW_PROMPT, ""),
        ("", SW_GOOD),
        ("Name three fruits that are rich in vitamin C.",
         "Three fruits rich in vitamin C are oranges, guavas and papayas."),
        ("Why is the sky blue?",
         "Why is the sky blue? Because air scatters blue light more than red light, so we see blue."),
        (ZH_PROMPT, ZH_GOOD),
    ],
)
def test_not_echo(prompt, response):
    assert not M.is_echo(prompt, response), M.echo_score(prompt, response)


@pytest.mark.parametrize(
    "response",
    [
        SW_LOOP,
        "kwa maji ya kwa maji ya kwa maji ya",
        "maji maji maji maji maji",
        "Anga ni la buluu. " * 4,
        "Jibu ni hili: anga ni la buluu kwa sababu ya mwanga wa jua. " * 3,  # a long phrase looping
        "的的的的的的的的",
        "天空是蓝色的。天空是蓝色的。天空是蓝色的。天空是蓝色的。",
    ],
)
def test_loop(response):
    assert M.is_loop(response), M.loop_score(response)


@pytest.mark.parametrize("response", [SW_GOOD, SW_TWO_LINES, ZH_GOOD, "", "Ndiyo.", "maji maji", "no, no, I said no"])
def test_not_loop(response):
    assert not M.is_loop(response)


def test_no_bundled_reference_is_flagged():
    """Thresholds against real text: no bundled reference answer loops, no held-out reference echoes
    its prompt — in every language that has a file."""
    heldout, demo = _bundled("heldout"), _bundled("demo")
    assert "en" in heldout and "en" in demo
    loops = [(lang, r["reference"]) for lang, rows in heldout.items() for r in rows if M.is_loop(r["reference"])]
    loops += [(lang, r["response"]) for lang, rows in demo.items() for r in rows if M.is_loop(r["response"])]
    echoes = [(lang, r["prompt"], r["reference"]) for lang, rows in heldout.items() for r in rows
              if r.get("reference") and M.is_echo(r["prompt"], r["reference"])]
    assert not loops, loops[:5]
    assert not echoes, echoes[:5]


# ---------------------------------------------------------------------------------------------- scoring


def test_score_responses_known_answer():
    records = [
        {"prompt": SW_PROMPT, "response": SW_GOOD},  # pass, clean
        {"prompt": SW_PROMPT, "response": SW_WITH_ENGLISH},  # fails LPR
        {"prompt": SW_PROMPT, "response": SW_PROMPT + " " + SW_PROMPT},  # Swahili, but an echo
        {"prompt": SW_PROMPT, "response": SW_LOOP},  # Swahili-looking, but a loop
        {"prompt": SW_PROMPT, "response": "Ndiyo."},  # no counted line: excluded
    ]
    s = M.score_responses(records, "sw")
    assert s["n"] == 5 and s["excluded"] == 1
    assert s["lpr"] == 0.75  # 3 of the 4 counted responses are all Swahili
    assert s["clean_lpr"] == 0.25  # only the first is also neither echo nor loop
    assert s["echo_rate"] == 0.2 and s["loop_rate"] == 0.2  # shares of all 5
    assert s["wpr"] is None and s["wpr_ci"] is None  # Latin script
    assert s["line_accuracy"] == pytest.approx((1 + 0.5 + 1 + 1) / 4)
    assert s["chrf"] is None and s["chrf_ci"] is None
    lo, hi = s["lpr_ci"]
    assert 0 <= lo < 0.75 < hi <= 1
    assert s["counts"]["lpr"] == (3, 4)
    flags = [(r["line_pass"], r["echo"], r["loop"], r["clean_pass"], r["excluded"]) for r in s["responses"]]
    assert flags == [
        (True, False, False, True, False),
        (False, False, False, False, False),
        (True, True, False, False, False),
        (True, False, True, False, False),
        (None, False, False, None, True),
    ]
    first = s["responses"][0]
    assert first["detected"] == "sw" and first["lines"][0]["lang"] == "sw" and first["lines"][0]["counted"]
    json.dumps(s)  # JSON-ready


def test_score_responses_wpr_for_chinese():
    records = [
        {"prompt": ZH_PROMPT, "response": ZH_GOOD},
        {"prompt": ZH_PROMPT, "response": ZH_BECAUSE},
        {"prompt": ZH_PROMPT, "response": "The sky looks blue because air scatters blue light more."},
    ]
    s = M.score_responses(records, "zh", details=False)
    assert s["lpr"] == pytest.approx(2 / 3, abs=1e-4)
    assert s["wpr"] == 0.5  # of the two passing LPR, one has "because"
    assert "responses" not in s


def test_chrf_and_bootstrap():
    refs = ["Anga ni la buluu kwa sababu hewa hutawanya mwanga wa buluu.",
            "Mto Nile ndio mto mrefu zaidi barani Afrika."]
    records = [
        {"prompt": SW_PROMPT, "response": refs[0], "reference": refs[0]},
        {"prompt": "Mto gani ni mrefu zaidi Afrika?", "response": "Mto Kongo ni mrefu.", "reference": refs[1]},
        {"prompt": "Habari?", "response": "Nzuri sana, asante kwa kuuliza.", "reference": None},
    ]
    s = M.score_responses(records, "sw")
    assert s["n_references"] == 2
    per = [r["chrf"] for r in s["responses"]]
    assert per[0] == pytest.approx(100.0) and 0 < per[1] < 100 and per[2] is None
    assert s["chrf"] == pytest.approx(M.chrf([refs[0], "Mto Kongo ni mrefu."], refs), abs=1e-3)
    lo, hi = s["chrf_ci"]
    assert lo <= s["chrf"] <= hi
    assert M.score_responses(records, "sw")["chrf_ci"] == s["chrf_ci"]  # seeded: reproducible
    assert M.chrf_per_response(["abc"], ["abc"]) == [pytest.approx(100.0)]
    with pytest.raises(ValueError):
        M.chrf(["a"], [])


def test_wilson_interval():
    assert M.wilson_interval(0, 0) is None
    lo, hi = M.wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    assert M.wilson_interval(0, 10)[0] == 0.0 and M.wilson_interval(10, 10)[1] == 1.0
    assert M.wilson_interval(10, 10)[0] == pytest.approx(0.7225, abs=1e-4)


def test_registry():
    assert {"lpr", "clean_lpr", "wpr", "line_accuracy", "echo_rate", "loop_rate", "excluded", "chrf"} <= set(M.METRICS)
    assert M.METRICS["lpr"].higher_is_better and M.METRICS["chrf"].higher_is_better
    assert not M.METRICS["echo_rate"].higher_is_better and not M.METRICS["loop_rate"].higher_is_better
    assert all(m.help for m in M.METRICS.values())
    checks = [M.check_response(SW_PROMPT, SW_GOOD, "sw"), M.check_response(SW_PROMPT, SW_WITH_ENGLISH, "sw")]
    assert M.METRICS["lpr"].fn(checks) == 0.5


def test_the_registry_drives_the_scores_and_both_tables():
    """Every metric is declared once: the scores hold each in the registry's order, each rate's counts, and the
    Compare page's and the CLI's columns are registered metrics with a label and a header."""
    s = M.score_responses([{"prompt": SW_PROMPT, "response": SW_GOOD}, {"prompt": SW_PROMPT, "response": SW_LOOP}],
                          "sw", details=False)
    assert [k for k in s if k in M.METRICS] == list(M.METRICS)
    assert list(s["counts"]) == M.metrics_of("rate") and all(f"{k}_ci" in s for k in M.metrics_of("rate"))
    assert all(m.kind in M.KINDS and m.label for m in M.METRICS.values())
    assert set(M.COMPARE_COLUMNS) <= set(M.METRICS) and all(M.METRICS[k].tip for k in M.COMPARE_COLUMNS)
    assert all(M.METRICS[k].cli for k in M.CLI_COLUMNS)
    overall = M.aggregate({"sw": s})
    assert [k for k in overall if k in M.METRICS] == [k for k in M.METRICS if k not in M.metrics_of("count")] + \
        M.metrics_of("count")


def test_aggregate():
    sw = M.score_responses([{"prompt": SW_PROMPT, "response": SW_GOOD}, {"prompt": SW_PROMPT, "response": SW_LOOP}],
                           "sw")
    zh = M.score_responses([{"prompt": ZH_PROMPT, "response": ZH_GOOD},
                            {"prompt": ZH_PROMPT, "response": ZH_BECAUSE}], "zh")
    overall = M.aggregate({"sw": sw, "zh": zh})
    assert overall["lang"] == "all" and overall["languages"] == ["sw", "zh"]
    assert overall["n"] == 4 and overall["excluded"] == 0
    assert overall["lpr"] == pytest.approx((sw["lpr"] + zh["lpr"]) / 2)
    assert overall["clean_lpr"] == pytest.approx((0.5 + 1.0) / 2)
    assert overall["wpr"] == zh["wpr"] == 0.5  # only zh has WPR
    assert overall["lpr_ci"] is not None and overall["chrf"] is None


def test_docstring_examples():
    import doctest

    from clo.evaluation import metrics

    assert doctest.testmod(metrics).failed == 0


def test_wpr_finds_english_glued_to_han_and_kana():
    from clo.evaluation.metrics import english_words, word_pass

    assert english_words("我喜欢用python编程") == ["python"]
    assert english_words("私はpythonでプログラムを書きます") == ["python"]
    assert english_words("我喜欢用Python编程") == []  # capitalised names are not flagged, as in the benchmark
    assert word_pass("我喜欢用python编程，每天都写很多代码。", "zh") is False


def test_clean_lpr_needs_real_words_and_strict_counts_excluded():
    from clo.evaluation.metrics import score_responses

    recs = [
        {"prompt": "Kwa nini anga ni la buluu?",
         "response": "Anga linaonekana la buluu kwa sababu hewa hutawanya mwanga wa buluu zaidi."},
        {"prompt": "Kwa nini anga ni la buluu?", "response": ""},
    ]
    s = score_responses(recs, "sw", details=True)
    assert s["clean_lpr"] == 1.0 and s["clean_lpr_strict"] == 0.5 and s["excluded"] == 1
    assert s["real_word_rate"] >= 0.9 and s["real_word_rate_reason"] is None
    assert s["responses"][0]["real_words_pass"] is True
    yo = score_responses([{"prompt": "Báwo ni?", "response": "Mo wà dáadáa, ẹ ṣé púpọ̀ fún ìbéèrè yín lónìí."}], "yo")
    assert yo["real_word_rate"] is None and "Yoruba" in yo["real_word_rate_reason"]
