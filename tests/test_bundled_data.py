"""The bundled demo data: complete, aligned, disjoint from held-out prompts, and in the right language."""
from __future__ import annotations

import re

import pytest

from clo.core.languages import PAPER_TARGETS, get_language
from clo.data.formats import DATA_DIR, load_crosslingual, load_prompts, load_sft, read_records

TARGETS = list(PAPER_TARGETS)


def test_english_set_is_complete():
    rows = load_sft("demo")
    assert len(rows) >= 160
    assert len({r["id"] for r in rows}) == len(rows)
    assert len({r["instruction"].strip().lower() for r in rows}) == len(rows)


@pytest.mark.parametrize("lang", TARGETS)
def test_every_pair_translated_and_aligned(lang):
    en = load_sft("demo")
    xl = load_crosslingual("demo", lang)
    assert [r["id"] for r in xl] == [r["id"] for r in en]
    for e, x in zip(en, xl):
        assert x["instruction_en"] == e["instruction"] and x["response_en"] == e["response"]
        assert x["instruction"].strip() and x["response"].strip()
        assert x["translator"] == "reference" and x["lang"] == lang
        assert x["instruction"] != x["instruction_en"] and x["response"] != x["response_en"]


@pytest.mark.parametrize("lang", ["en"] + TARGETS)
def test_heldout_prompts(lang):
    rows = load_prompts("demo", [lang])
    assert len(rows) >= 40
    assert len({r["id"] for r in rows}) == len(rows)
    assert all(r["reference"].strip() for r in rows)
    assert [r["id"] for r in rows] == [r["id"] for r in load_prompts("demo", ["en"])]


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def test_heldout_does_not_overlap_training():
    train = [_words(r["instruction"]) for r in load_sft("demo")]
    train_text = {r["instruction"].strip().lower() for r in load_sft("demo")}
    for p in load_prompts("demo", ["en"]):
        w = _words(p["prompt"])
        assert p["prompt"].strip().lower() not in train_text
        worst = max(len(w & t) / len(w) for t in train)
        assert worst <= 0.6, (p["id"], worst)


def _lingua():
    from lingua import LanguageDetectorBuilder

    return LanguageDetectorBuilder.from_all_languages().build()


def test_independent_detector_agrees_per_language(capsys):
    """lingua (all languages enabled) labels ≥ 95% of the bundled texts of each language correctly."""
    detector = _lingua()
    table = {}
    for lang in ["en"] + TARGETS:
        texts = []
        if lang == "en":
            texts += [t for r in load_sft("demo") for t in (r["instruction"], r["response"])]
        else:
            texts += [t for r in load_crosslingual("demo", lang) for t in (r["instruction"], r["response"])]
        texts += [t for r in load_prompts("demo", [lang]) for t in (r["prompt"], r["reference"])]
        want = get_language(lang).iso3
        ok = 0
        for text in texts:
            got = detector.detect_language_of(text)
            ok += got is not None and got.iso_code_639_3.name.lower() in (want, {"swh": "swa"}.get(want, want))
        table[lang] = (ok, len(texts))
    with capsys.disabled():
        print("\nlingua agreement on bundled texts: "
              + ", ".join(f"{l} {o}/{n} = {o / n:.1%}" for l, (o, n) in table.items()))
    for lang, (ok, n) in table.items():
        assert ok / n >= 0.95, f"{lang}: {ok}/{n}"


def test_data_readme_exists():
    assert (DATA_DIR / "README.md").exists()
    for lang in ["en"] + TARGETS:
        assert read_records(DATA_DIR / "heldout" / f"{lang}.jsonl")
