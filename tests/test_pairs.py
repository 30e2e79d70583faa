"""Preference pairs: two per sample, both directions together, and the `clo pairs` view."""
from __future__ import annotations

import json

from clo.cli.main import main
from clo.data.formats import load_crosslingual
from clo.data.pairs import DIRECTIONS, build_pairs, to_conversational

RECORDS = [
    {"id": "a", "lang": "sw", "instruction_en": "Hi?", "response_en": "Hello.", "instruction": "Habari?",
     "response": "Salama."},
    {"id": "b", "lang": "sw", "instruction_en": "Why?", "response_en": "Because.", "instruction": "Kwa nini?",
     "response": "Kwa sababu."},
]


def test_two_pairs_per_sample_in_sample_order():
    pairs = build_pairs(RECORDS)
    assert [(p["id"], p["direction"], p["sample"]) for p in pairs] == [
        ("a", "en", 0), ("a", "tgt", 0), ("b", "en", 1), ("b", "tgt", 1)]
    assert tuple(p["direction"] for p in pairs[:2]) == DIRECTIONS
    en, tgt = pairs[:2]
    assert (en["prompt"], en["chosen"], en["rejected"]) == ("Hi?", "Hello.", "Salama.")
    assert (tgt["prompt"], tgt["chosen"], tgt["rejected"]) == ("Habari?", "Salama.", "Hello.")
    assert (en["prompt_lang"], en["chosen_lang"], en["rejected_lang"]) == ("en", "en", "sw")
    assert (tgt["prompt_lang"], tgt["chosen_lang"], tgt["rejected_lang"]) == ("sw", "sw", "en")


def test_conversational_format():
    en, tgt = (to_conversational(p) for p in build_pairs(RECORDS[:1]))
    assert en["prompt"] == [{"role": "user", "content": "Hi?"}]
    assert en["chosen"] == [{"role": "assistant", "content": "Hello."}]
    assert en["rejected"] == [{"role": "assistant", "content": "Salama."}]
    assert (en["is_target"], tgt["is_target"], en["sample"], tgt["sample"]) == (0, 1, 0, 0)


def test_cli_pairs_on_the_demo_set(capsys):
    assert main(["pairs", "--lang", "sw", "--data", "demo", "--limit", "3"]) == 0
    out = capsys.readouterr().out
    records = load_crosslingual("demo", "sw")[:3]
    for label in ("English prompt: ", "Swahili prompt: ", "chosen (en):", "rejected (sw):", "chosen (sw):",
                  "rejected (en):"):
        assert out.count(label) == 3, label
    assert out.count("── sample ") == 3 and "3 samples → 6 preference pairs" in out
    for r in records:
        assert r["id"] in out and r["instruction_en"].split()[0] in out and r["instruction"].split()[0] in out
    # English direction first, then the target direction, within each sample
    first = out.split("── sample ")[1]
    assert first.index("English prompt:") < first.index("rejected (sw):") < first.index("Swahili prompt:") \
        < first.index("rejected (en):")


def test_cli_pairs_json_and_file(xl_file, capsys):
    assert main(["pairs", "--lang", "sw", "--data", str(xl_file), "--limit", "2", "--json"]) == 0
    pairs = json.loads(capsys.readouterr().out)
    assert [p["direction"] for p in pairs] == ["en", "tgt", "en", "tgt"]
    assert pairs[1]["chosen"] == "Mji mkuu wa Kenya ni Nairobi."
    assert main(["pairs", "--lang", "sw", "--data", str(xl_file), "--limit", "0", "--width", "0"]) == 0
    assert "4 samples → 8 preference pairs" in capsys.readouterr().out
