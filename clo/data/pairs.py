"""Cross-lingual preference pairs (docs/design.md, "Method").

Each cross-lingual sample gives two pairs, always kept together:

- direction ``en``:  English prompt, English answer ≻ target-language answer
- direction ``tgt``: target prompt,  target answer  ≻ English answer

    >>> from clo.data.pairs import build_pairs
    >>> p = build_pairs([{"id": "1", "lang": "sw", "instruction_en": "Hi?", "response_en": "Hello.",
    ...                   "instruction": "Habari?", "response": "Salama."}])
    >>> [(x["direction"], x["prompt"], x["chosen"], x["rejected"]) for x in p]
    [('en', 'Hi?', 'Hello.', 'Salama.'), ('tgt', 'Habari?', 'Salama.', 'Hello.')]
"""
from __future__ import annotations

__all__ = ["DIRECTIONS", "build_pairs", "to_conversational"]

DIRECTIONS = ("en", "tgt")


def build_pairs(records: list[dict]) -> list[dict]:
    """Two pairs per record, in sample order: ``[s0/en, s0/tgt, s1/en, s1/tgt, ...]``. With several target
    languages a record is one (English sample, language): the English sample gives a record per language, and
    ``sample`` numbers the records, so both directions of a (sample, language) stay together."""
    out = []
    for i, r in enumerate(records):
        base = {"id": r["id"], "sample": i, "lang": r["lang"]}
        if "rejected" in r:  # a preference record (clo.data.formats, docs/workshop.md): its one pair, in both
            # slots of the sample, so the batch layout holds; the mean loss over the two equal rows is plain DPO
            # on the pair
            pair = {**base, "prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"],
                    "prompt_lang": r["lang"], "chosen_lang": r["lang"], "rejected_lang": r["lang"]}
            out += [{**pair, "direction": "tgt"}, {**pair, "direction": "tgt"}]
            continue
        out.append({**base, "direction": "en", "prompt": r["instruction_en"], "chosen": r["response_en"],
                    "rejected": r["response"], "prompt_lang": "en", "chosen_lang": "en", "rejected_lang": r["lang"]})
        out.append({**base, "direction": "tgt", "prompt": r["instruction"], "chosen": r["response"],
                    "rejected": r["response_en"], "prompt_lang": r["lang"], "chosen_lang": r["lang"],
                    "rejected_lang": "en"})
    return out


def to_conversational(pair: dict, langs: list[str] | None = None) -> dict:
    """TRL's conversational preference format, plus the fields CLO needs (direction, sample index, and the
    index of the pair's target language in ``langs``, for per-language metrics)."""
    return {
        "prompt": [{"role": "user", "content": pair["prompt"]}],
        "chosen": [{"role": "assistant", "content": pair["chosen"]}],
        "rejected": [{"role": "assistant", "content": pair["rejected"]}],
        "is_target": 1 if pair["direction"] == "tgt" else 0,
        "sample": pair["sample"],
        "lang_id": langs.index(pair["lang"]) if langs else 0,
    }
