import pytest

from clo.core.languages import LANGUAGES, PAPER_TARGETS, UnknownLanguageError, get_language, target_languages


def test_paper_targets_registered_with_codes():
    for code in ("en",) + PAPER_TARGETS:
        lang = get_language(code)
        assert lang.iso3 and lang.m2m100 and lang.nllb and lang.fasttext and lang.script


def test_aliases():
    assert get_language("SWH").code == "sw" and get_language("swh_Latn").code == "sw"
    assert get_language("__label__de").code == "de" and get_language("zh-cn").code == "zh"


def test_unknown_lists_known():
    with pytest.raises(UnknownLanguageError) as e:
        get_language("klingon")
    assert "sw (Swahili)" in str(e.value) and "yo (Yoruba)" in str(e.value)


def test_targets_exclude_english_and_start_with_paper():
    codes = [l.code for l in target_languages()]
    assert "en" not in codes and tuple(codes[:6]) == PAPER_TARGETS and len(codes) == len(LANGUAGES) - 1


def test_every_detector_label_gets_a_name_never_a_bare_code():
    from clo.core.languages import language_name

    assert [language_name(c) for c in ("sw", "swa", "xh", "ceb", "unknown", None)] == [
        "Swahili", "Swahili", "Xhosa", "Cebuano", "Unknown", "Unknown"]
    assert language_name("qq") == "Unlisted (qq)"
    assert language_name("sw,yo") == "Swahili + Yoruba"  # a run's several target languages
