"""Real-word rate (clo.evaluation.lexicon): real text high, letters shuffled inside words low, None without a
lexicon."""
import random
import re

import pytest

from clo.evaluation import lexicon
from clo.evaluation.lexicon import REAL_WORD_MIN, real_word_rate, word_marks

REAL = {
    "sw": "Watoto wanacheza mpira shuleni kila siku baada ya masomo, na walimu wanawaangalia kwa furaha.",
    "id": "Anak-anak bermain sepak bola di sekolah setiap hari setelah pelajaran, dan guru mengawasi mereka.",
    "de": "Die Kinder spielen jeden Tag nach dem Unterricht in der Schule Fußball, und die Lehrer schauen zu.",
    "en": "The children play football at school every day after their lessons, and the teachers watch them.",
    "zh": "孩子们每天放学后在学校踢足球，老师们高兴地看着他们。",
    "ko": "아이들은 매일 수업이 끝나면 학교에서 축구를 합니다.",
}


def shuffled(text: str, lang: str) -> str:
    rng = random.Random(1)

    def mix(m):
        chars = list(m.group())
        for _ in range(10):  # a shuffle that leaves a word as it was is not noise
            rng.shuffle(chars)
            if "".join(chars) != m.group() or len(set(chars)) == 1:
                break
        return "".join(chars)

    return re.sub(r"[\u4e00-\u9fff]+" if lang == "zh" else r"[^\W\d_]+", mix, text)


@pytest.mark.parametrize("lang", ["sw", "id", "de", "en", "zh"])
def test_real_sentence_high_shuffled_low(lang):
    real = real_word_rate(REAL[lang], lang)
    noise = real_word_rate(shuffled(REAL[lang], lang), lang)
    assert real.rate >= REAL_WORD_MIN[lang] and real.reason == ""
    assert noise.rate < REAL_WORD_MIN[lang], noise
    assert noise.rate < real.rate - 0.3


@pytest.mark.slow  # the ko_KR dictionary takes ~17 s to load
def test_korean_gates_clean_and_reads_its_flags_as_hunspell_does():
    """Real Korean passes REAL_WORD_MIN["ko"], shuffled syllables and an English answer do not; and the one-flag
    directives of ko_KR are its .aff's own values (spylls alone picks a hash-order member of an alias set,
    which made 가족 "family" a word in one process and not in the next)."""
    real = real_word_rate(REAL["ko"], "ko")
    noise = real_word_rate(shuffled(REAL["ko"], "ko"), "ko")
    assert real.rate >= REAL_WORD_MIN["ko"] > noise.rate and real.reason == ""
    assert lexicon.real_words_pass(REAL["ko"], "ko") is True
    aff = lexicon._hunspell("ko").aff
    assert (aff.ONLYINCOMPOUND, aff.FORBIDDENWORD) == ("1", "15")  # ko_KR.aff: ONLYINCOMPOUND 1, FORBIDDENWORD 15
    assert all(lexicon.is_known(w, "ko") for w in ("가족", "가장", "학교", "축구"))
    # an English answer to a Korean prompt has no Korean word to judge (ko_KR alone accepts any string without
    # Hangul): its words are another script, and language ID fails it
    english = real_word_rate("I'm sorry for any misunderstanding. I'd be happy to help you with that!", "ko")
    assert english.rate is None and english.skipped == {"script": 13} and "13 script skipped" in english.reason
    assert lexicon.is_known("qwzx", "ko") is False


def test_swahili_shaped_noise_from_a_tuned_model_is_low():
    r = real_word_rate("Kuwa ziyeka vakuno mwena. Inamatika na piahekezieki naiyimana.", "sw")
    assert r.rate < REAL_WORD_MIN["sw"]


def test_no_lexicon_is_none_with_a_reason():
    r = real_word_rate("Ọmọ náà ń ṣeré nínú ọgbà ilé ìwé.", "yo")
    assert r.rate is None and r.total == 0 and "Yoruba" in r.reason
    assert lexicon.no_lexicon_reason("yo") and lexicon.no_lexicon_reason("sw") is None
    assert lexicon.real_words_pass("Ọmọ náà ń ṣeré.", "yo") is None
    assert "spelled in the Yoruba alphabet" in lexicon.no_lexicon_reason("yo")


# Answers of the sw+yo+de demo run (SmolLM2) to Yoruba prompts: language ID calls them Yoruba.
YORUBA_SHAPED_NOISE = ("Mìbòrù àtán kǎm siku ỉgûdén yêwë güsö. Tónjabi wĩ jī dāti pô rŷe fūré ezîn épäo zhétifèn "
                       "ti vâta na hãna niçin al-anya ya akudwa.")


def test_yoruba_has_no_lexicon_but_its_spelling_gates_clean():
    """Yoruba: no dictionary, but its alphabet is closed (no c q v x z; tones grave/acute/macron; a dot below
    on e, o, s only). Real Yoruba is spelled in it; the tuned model's Yoruba-shaped noise is not, so it is
    not counted clean although language ID says Yoruba."""
    from clo.evaluation.metrics import check_response

    assert lexicon.is_spelled("ọ̀rẹ́", "yo") and lexicon.is_spelled("ń", "yo") and lexicon.is_spelled("gbogbo", "yo")
    for word in ("ụlọ", "kǎm", "güsö", "vâta", "ỉgûdén", "zhétifèn", "ạ"):  # Igbo dot-below u, caron, diaeresis…
        assert lexicon.is_spelled(word, "yo") is False, word
    assert lexicon.is_spelled("mto", "sw") is None and lexicon.spelled_rate("Mto", "sw") is None
    marks = word_marks("Ọmọ náà kǎm", "yo")
    assert "".join(t for t, _ in marks) == "Ọmọ náà kǎm" and ("kǎm", False) in marks and ("náà", True) in marks

    real = "Bí ó ti jẹ́ pé ó ṣe pàtàkì kí ìdàgbàsókè ìbáṣepọ̀ ti ọ̀rẹ́-sí-ọ̀rẹ́ wà láàrin àwọn orílẹ̀-èdè."  # UDHR
    good, noise = check_response("", real, "yo"), check_response("", YORUBA_SHAPED_NOISE, "yo")
    assert good.spelled_rate == 1.0 and good.spelling_pass and good.clean_pass
    assert noise.line_pass and noise.real_word_rate is None  # language ID alone would count it
    assert noise.spelled_rate < lexicon.SPELLED_MIN["yo"] and noise.clean_pass is False
    assert noise.to_dict()["spelling_pass"] is False
    assert "below 95%, not clean" in lexicon.real_words_caption(YORUBA_SHAPED_NOISE, "yo")
    # a language with a lexicon is never asked about spelling
    assert check_response("", "Mto Nile ndio mto mrefu zaidi barani Afrika.", "sw").spelled_rate is None


def test_yoruba_spelling_threshold_holds_on_the_report_half():
    """SPELLED_MIN["yo"] was set on the tune half (scripts/calibrate_real_words.py --spelling); the report
    half of the bundled Yoruba references and of the UDHR's Yoruba all pass it, and the UDHR's Igbo, Hausa
    and Ewe (Yoruba's neighbours, whose letters it does not write) never do."""
    import json
    from pathlib import Path

    from clo.evaluation.langcheck import load_checkset

    root = Path(__file__).resolve().parent.parent / "assets"
    lines = (root / "data" / "heldout" / "yo.jsonl").read_text("utf-8").splitlines()
    refs = [json.loads(l)["reference"] for l in lines]
    udhr = load_checkset("report")
    report = refs[1::2] + [r["text"] for r in udhr if r["lang"] == "yo"]
    assert all(lexicon.spelled_rate(t, "yo") >= lexicon.SPELLED_MIN["yo"] for t in report)
    neighbours = [r["text"] for r in udhr if r["lang"] in ("ig", "ha", "ee")]
    assert len(neighbours) >= 60
    assert not any(lexicon.spelled_rate(t, "yo") >= lexicon.SPELLED_MIN["yo"] for t in neighbours)


def test_no_words_is_none_with_a_reason():
    r = real_word_rate("12345 !!!", "sw")
    assert r.rate is None and r.reason == "no words to check"


def test_word_marks_join_back_and_mark_unknown_words():
    text = "Mto Nile ndio mto mrefu, vakuno zaidi!"
    marks = word_marks(text, "sw")
    assert "".join(t for t, _ in marks) == text
    assert ("vakuno", False) in marks and ("mrefu", True) in marks and (", ", None) in marks
    zh = word_marks("我喜欢用python编程", "zh")
    assert "".join(t for t, _ in zh) == "我喜欢用python编程" and ("python", "script") in zh


def test_thresholds_hold_on_the_report_half_of_the_swahili_references():
    """The bundled Swahili references (short sentences written here, no longer the calibration set) pass
    REAL_WORD_MIN["sw"] and their shuffled copies do not."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / "calibrate_real_words.py"
    spec = importlib.util.spec_from_file_location("calibrate_real_words", path)
    cal = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cal)
    report = cal.bundled("sw")[1::2]
    rng = random.Random(0)
    kept = [real_word_rate(t, "sw").rate >= REAL_WORD_MIN["sw"] for t in report]
    noise = [real_word_rate(cal.shuffle_letters(t, "sw", rng), "sw").rate >= REAL_WORD_MIN["sw"] for t in report]
    assert sum(kept) / len(kept) >= 0.95
    assert sum(noise) == 0


# Fluent answers of the kind strong chat models write — names, compounds, numbers, markup, quoted titles,
# glosses — written for this test (not from any calibration or check set).
FLUENT = {
    "de": "**Kryptowährungen** sind digitale Währungen, die mithilfe von Kryptographie gesichert sind. Der "
          "Bitcoin-Erfinder Satoshi Nakamoto veröffentlichte 2008 das Whitepaper; heute diskutieren Ökonomen wie "
          "Thomas Piketty den Gini-Koeffizienten und KI-Technologien. Mehr unter https://bitcoin.org oder mit "
          "`pip install bitcoinlib`.",
    "en": "Cuthbert the Crocodile lived in Snappy Creek, where the QuantumNet signal reached only 3 km inland. "
          "Every morning he read *The Wind in the Willows* to the Bakers of Ashwood, and King Kewalek I sent "
          "him 12 kg of fish from Mafebe Island.",
    "id": 'Dalam novel "The Old Man and the Sea" karya Ernest Hemingway, seorang nelayan tua bernama Santiago '
          "berjuang melawan ikan marlin raksasa selama tiga hari. Novel ini terbit pada tahun 1952 dan membuat "
          "Hemingway meraih Hadiah Pulitzer.",
    "sw": "Mto Nile ndio mto mrefu zaidi barani Afrika, wenye urefu wa kilomita 6,650. Unapita katika nchi kama "
          "Uganda, Sudan Kusini na Misri, na mji wa Khartoum umejengwa mahali ambapo Nile Nyeupe na Nile ya "
          "Buluu zinakutana. Soma zaidi kwenye https://sw.wikipedia.org.",
    "ko": "자바(Java)는 \"한 번 작성하면 어디서나 실행된다\"(Write Once, Run Anywhere - WORA)는 철학으로 유명한 "
          "프로그래밍 언어입니다. 1995년 썬 마이크로시스템즈의 제임스 고슬링이 발표했으며, `javac` 명령으로 "
          "컴파일합니다.",
    "zh": "《红楼梦》是曹雪芹创作的长篇小说，被认为是中国古典小说的巅峰之作。小说以贾宝玉和林黛玉的爱情悲剧为主线，"
          "描写了贾、史、王、薛四大家族的兴衰。英文译本 The Story of the Stone 由 David Hawkes 翻译。",
}


@pytest.mark.parametrize("lang", ["sw", "id", "de", "en", "zh", pytest.param("ko", marks=pytest.mark.slow)])
def test_fluent_text_with_names_compounds_markup_and_titles_is_clean(lang):
    """Names, acronyms, numbers and units, URLs, code, Markdown and a quoted title in another language are not
    evidence against an answer: a fluent answer full of them is clean, and the skipped words are named."""
    from clo.evaluation.metrics import check_response

    c = check_response("", FLUENT[lang], lang)
    assert c.clean_pass, (c.verdict, c.unknown_words)
    assert c.verdict["key"] == "clean"
    if c.skipped:  # what was left out of the count is said (Indonesian: wordfreq knows these names)
        assert "not judged" in c.verdict["reason"]


@pytest.mark.parametrize("lang", ["sw", "id", "de", "en", "zh", pytest.param("ko", marks=pytest.mark.slow)])
def test_the_same_text_shuffled_is_not_clean(lang):
    """Noise that keeps every word's capitals (so it looks like names) still fails: shuffled words are
    unknown, and "names" that outnumber the words count as words."""
    import importlib.util
    from pathlib import Path

    from clo.evaluation.metrics import check_response

    path = Path(__file__).resolve().parent.parent / "scripts" / "calibrate_real_words.py"
    spec = importlib.util.spec_from_file_location("calibrate_real_words", path)
    cal = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cal)
    noise = cal.shuffle_letters(FLUENT[lang], lang, random.Random(3))
    c = check_response("", noise, lang)
    assert not c.clean_pass, (noise, c.verdict)
    assert real_word_rate(noise, lang).rate < REAL_WORD_MIN[lang]


def test_capitalised_noise_is_not_taken_for_names():
    """A text of capitalised invented words is not a list of names: past half the words they count."""
    text = "Mwazi Kelebo Vatuna Zikemi Polafu na Wiseka Tumbaro Lekivu Saniga."
    r = real_word_rate(text, "sw")
    assert r.rate < REAL_WORD_MIN["sw"] and "name" not in r.skipped
    # invented words in capitals are shouted, not acronyms (an IPO answer: "KELEDA", "KISIAZIRI")
    marks = dict(word_marks("Jibu ni KISIAZIRI na KELEDA, si NASA.", "sw"))
    assert marks["KISIAZIRI"] is False and marks["KELEDA"] is False


def test_each_kind_of_skipped_word_is_recognised():
    marks = dict((w, m) for w, m in word_marks(
        "Katika mwaka 2024, KWJT na kampuni ya SpaceX walituma roketi ya Falcon9 umbali wa km 400 — angalia "
        "www.nasa.gov, andika kwa info@nasa.gov au endesha `launch_rocket()`. <br> (Read the full report) ", "sw"))
    assert marks["KWJT"] == "acronym" and marks["km"] == "number"
    assert marks["SpaceX"] == "name" and marks["Falcon"] == "number"
    assert marks["nasa"] == "url" and marks["info"] == "url" and marks["launch"] == marks["rocket"] == "code"
    assert marks["br"] == "markup" and marks["Read"] == "foreign" and marks["report"] == "foreign"
    assert marks["kampuni"] is True and marks["roketi"] is True


def test_german_compounds_are_judged_by_their_parts():
    for word in ("Kryptowährungsbörse", "Datenschutzbeauftragter", "Gini-Koeffizient", "KI-Technologien"):
        assert lexicon.is_known(word, "de") or dict(word_marks(f"Der {word} ist da.", "de"))[word] is True, word
    assert lexicon.is_known("Ktyrporwähnsgurbeö", "de") is False


def test_why_an_answer_is_not_clean_is_said():
    """The demo's tuned answers are Swahili-shaped text whose words are not real: the verdict says so, with
    the real-word share and the unknown words, instead of a bare "Unknown · 0%"."""
    from clo.evaluation.metrics import check_response

    noise = ("Inamuwa vakarama ikawa mata na tafia. Inampi naikeka huko zwena yahara wahezana pouhilika wejiminako "
             "umaatua wanauku ushuha akumeki ola niyezihiyina.")  # the SmolLM2 demo run, held-out prompt 1
    v = check_response("Unaweza kueleza kinachotokea volkano inapolipuka?", noise, "sw").verdict
    assert v["key"] == "not_real_words" and v["label"].startswith("Swahili-shaped") and "25% real" in v["label"]
    assert "vakarama" in v["reason"] and f"clean needs {REAL_WORD_MIN['sw']:.0%}" in v["reason"]
    english = check_response("", "The volcano erupts when magma rises through the crust and pressure builds up.", "sw")
    assert english.verdict["key"] == "wrong_language" and english.verdict["label"] == "English, not Swahili"
    assert check_response("", "", "sw").verdict["key"] == "excluded"


def test_chinese_in_traditional_characters_is_judged_like_simplified():
    """jieba's dictionary is Simplified: a Traditional text is converted character for character first (its
    pieces still join back to it), and a Simplified text with a few such characters (乾隆) is left alone."""
    traditional = "我們的學生喜歡學習機器學習，他們每天都在圖書館讀書。"
    r = real_word_rate(traditional, "zh")
    assert r.rate == real_word_rate("我们的学生喜欢学习机器学习，他们每天都在图书馆读书。", "zh").rate == 1.0
    assert "".join(p for p, _ in word_marks(traditional, "zh")) == traditional
    assert lexicon.simplified("乾隆皇帝是著名的君主。") == "乾隆皇帝是著名的君主。"


def test_a_broken_second_lexicon_falls_back_to_hunspell_with_a_warning(tmp_path, monkeypatch, caplog):
    """A corrupt gruut lexicon.db does not crash an evaluation: Swahili is judged by hunspell alone, and the
    log says which file and how to repair it."""
    import importlib.util
    import types

    pkg = tmp_path / "gruut_lang_sw"
    pkg.mkdir()
    (pkg / "lexicon.db").write_bytes(b"not a database" * 100)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: types.SimpleNamespace(
        submodule_search_locations=[str(pkg)]) if name == "gruut_lang_sw" else real_find_spec(name, *a))
    lexicon._gruut_words.cache_clear()
    try:
        with caplog.at_level("WARNING"):
            assert lexicon._gruut_words("sw") == frozenset()
        assert "cannot be read" in caplog.text and "pip install --force-reinstall gruut-lang-sw" in caplog.text
    finally:
        lexicon._gruut_words.cache_clear()
        lexicon._second_knows.cache_clear()


def test_pathological_words_are_judged_quickly():
    """spylls tries every split of a hyphenated or long word; such words are judged by their parts or not
    looked up, so degenerate output cannot stall an evaluation (nothing is timed: these took minutes)."""
    assert real_word_rate("Ha-" * 22 + "ha!", "sw").rate is not None
    assert lexicon.is_known("Zqbrfk" * 80, "de") is False
    assert real_word_rate("a." * 5000 + " Zqx. " * 2000, "sw").total > 0


def test_addresses_inside_brackets_are_addresses_and_stay_in_ascii():
    from clo.evaluation.metrics import check_response

    sw = ("Soma zaidi hapa (https://www.example.com/docs/getting-started/install) na hapa "
          "(https://github.com/openai/whisper/blob/main/README).")
    r = real_word_rate(sw, "sw")
    assert r.rate == 1.0 and r.skipped == {"url": 15}
    zh = real_word_rate("请访问 https://example.com了解更多信息，我们每天都在学习新的知识。", "zh")
    assert zh.total >= 15 and set(zh.skipped) == {"url"}  # the Chinese after the address is judged
    fenced = ("Hapa kuna mfano wa programu inayochuja majina ya watu kwenye orodha.\n\n```\nfor name in names:\n"
              "    if name.startswith(\"A\"):\n        print(name)\n```\n\n"
              "Programu hii inapitia kila jina na kuchapisha "
              "majina yanayoanza na herufi A pekee.")
    c = check_response("", fenced, "sw")
    assert c.clean_pass and c.skipped.get("code") and "for" not in c.unknown_words


def test_invented_german_nouns_are_not_names():
    """German capitalises every noun, so a capital is no evidence of a name there: a lone unknown noun counts;
    names beside another capitalised word (Satoshi Nakamoto) or repeated are still names."""
    noise = real_word_rate("Der Klumpfenbrast ist ein Wolperding und die Grimbelschnatz hat eine Fuggelwarze mit "
                           "dem Zorbeltrunk.", "de")
    assert noise.rate < REAL_WORD_MIN["de"]
    real = real_word_rate("Der Bitcoin-Erfinder Satoshi Nakamoto veröffentlichte 2008 das Whitepaper.", "de")
    assert real.rate >= REAL_WORD_MIN["de"]


def test_code_and_addresses_are_not_marked_up_in_the_answer():
    md = lexicon.marked_markdown("Tumia `pip install zuka` au https://example.com/zuka leo.", "sw")
    assert "`pip install zuka`" in md and "https://example.com/zuka" in md


def test_each_kind_of_skipped_word_is_named_from_one_table():
    """SKIP_REASONS names every kind for one word and for several (skipped_summary) and says which are grey."""
    assert lexicon.skipped_summary({"name": 3, "number": 1, "url": 2}) == "3 names, 2 addresses, 1 number or unit"
    assert lexicon.skipped_summary({"script": 1, "other": 2}) == "2 other, 1 word in another script"
    assert all(r.one and r.many and r.rule for r in lexicon.SKIP_REASONS.values())
    assert ":gray[WORA]" in lexicon.marked_markdown("Jibu si WORA.", "sw")  # an acronym: grey
    assert "`x = 1`" in lexicon.marked_markdown("Andika `x = 1` leo.", "sw")  # code: not grey


def test_an_answer_is_shown_with_the_marks_its_verdict_counted():
    """The Compare page marks an answer's words once: check_response's marks, laid back onto the whole answer
    (blank lines and indentation kept), give the same Markdown as marking the answer again."""
    from clo.evaluation.metrics import check_response

    answer = "Mji mkuu wa Kenya ni Nairobi.\n\n   Ni mji mkubwa sana, na zwena tafia KELEDA.\n```\nx = 1\n```\n"
    check = check_response("Mji mkuu wa Kenya ni upi?", answer, "sw")
    assert "".join(piece for piece, _ in check.answer_marks) == answer
    assert lexicon.marked_markdown(answer, "sw", check.answer_marks) == lexicon.marked_markdown(answer, "sw")
    assert ":red-background[zwena]" in lexicon.marked_markdown(answer, "sw", check.answer_marks)
    yo = check_response("Báwo ni?", "Ọmọ náà kǎm", "yo")  # no lexicon: marked for its spelling, here
    assert yo.answer_marks == word_marks("Ọmọ náà kǎm", "yo")
