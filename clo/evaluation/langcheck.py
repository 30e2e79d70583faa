"""The language-ID check set: real text the detector was not tuned on, in the registry languages and in
their neighbours (docs/evaluation.md, "Language ID on text nobody here wrote").

The set is the Universal Declaration of Human Rights in 21 translations (``assets/langid_check/``, built by
``scripts/build_langid_checkset.py``; provenance and licence in its README). Each paragraph is one item and
is also cut into lines of 6–12 words (Han text: 12–24 characters, two characters standing for a word).
``half="tune"`` (preamble and even articles) is what thresholds may be chosen on; ``half="report"`` (odd
articles) is what the docs and the test report.

    >>> from clo.evaluation.langcheck import check_table
    >>> table = check_table(half="report")          # doctest: +SKIP
    >>> table["sw"]["lines"]["right"]                # share of Swahili lines detected as Swahili
    1.0
"""
from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

from clo.core.languages import LANGUAGES
from clo.core.paths import ASSETS
from clo.evaluation.langid import detect as detect_language

__all__ = ["CHECKSET", "REGISTRY_TARGET", "NEIGHBOUR_MAX", "WINDOW_SIZES", "load_checkset", "check_items",
           "check_table", "format_table"]

CHECKSET = ASSETS / "langid_check" / "udhr.jsonl"
REGISTRY_TARGET = 0.97  # ≥ 97% of a registry language's lines and paragraphs detected as that language
NEIGHBOUR_MAX = 0.03  # ≤ 3% of a neighbour language's lines and paragraphs called any registry language
WINDOW_SIZES = (6, 8, 10, 12)  # line lengths in words, cycled through a paragraph
_UNSPACED = {"zh", "yue"}  # cut by characters, two for a word


def load_checkset(half: str | None = None, path: Path = CHECKSET) -> list[dict]:
    """Paragraph records ``{lang, udhr, group, article, half, text}``; ``half``: ``tune``, ``report`` or all."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if half is None or r["half"] == half]


def _windows(text: str, unspaced: bool) -> list[str]:
    """Consecutive pieces of 6, 8, 10, 12, 6, … words; a tail shorter than 6 words is dropped."""
    if unspaced:
        chars = "".join(text.split())
        out, i, k = [], 0, 0
        while i + 2 * WINDOW_SIZES[0] <= len(chars):
            n = 2 * WINDOW_SIZES[k % len(WINDOW_SIZES)]
            out.append(chars[i : i + n])
            i, k = i + n, k + 1
        return out
    words = text.split()
    out, i, k = [], 0, 0
    while i + WINDOW_SIZES[0] <= len(words):
        n = WINDOW_SIZES[k % len(WINDOW_SIZES)]
        out.append(" ".join(words[i : i + n]))
        i, k = i + n, k + 1
    return out


def check_items(rows: Iterable[dict]) -> list[dict]:
    """Every paragraph as ``kind="paragraphs"`` and its 6–12-word pieces as ``kind="lines"``."""
    items = []
    for r in rows:
        base = {"lang": r["lang"], "group": r["group"], "article": r["article"], "half": r["half"]}
        items.append({**base, "kind": "paragraphs", "text": r["text"]})
        items += [{**base, "kind": "lines", "text": w} for w in _windows(r["text"], r["lang"] in _UNSPACED)]
    return items


def check_table(detect: Callable[[str], object] | None = None, half: str | None = "report",
                rows: list[dict] | None = None) -> dict[str, dict[str, dict]]:
    """Per language and kind (``lines``, ``paragraphs``): ``n``, ``right`` (share labelled the language
    itself), ``registry`` (share labelled any registry language — for a neighbour, the false-target rate),
    ``labels`` (the five most frequent labels) and ``ok`` (the target met).

    ``detect`` maps a text to an object with ``.lang`` (default :func:`clo.evaluation.langid.detect`).
    """
    detect = detect or detect_language
    rows = load_checkset(half) if rows is None else rows
    counts: dict[tuple[str, str], dict] = defaultdict(
        lambda: {"n": 0, "right": 0, "registry": 0, "labels": defaultdict(int)})
    group = {}
    for it in check_items(rows):
        lang = detect(it["text"]).lang
        c = counts[(it["lang"], it["kind"])]
        c["n"] += 1
        c["right"] += lang == it["lang"]
        c["registry"] += lang in LANGUAGES and lang in _REGISTRY
        c["labels"][lang] += 1
        group[it["lang"]] = it["group"]
    table: dict[str, dict[str, dict]] = defaultdict(dict)
    for (lang, kind), c in counts.items():
        right, reg = c["right"] / c["n"], c["registry"] / c["n"]
        ok = right >= REGISTRY_TARGET if group[lang] == "registry" else reg <= NEIGHBOUR_MAX
        table[lang][kind] = {"group": group[lang], "n": c["n"], "right": round(right, 4), "registry": round(reg, 4),
                             "labels": dict(sorted(c["labels"].items(), key=lambda kv: -kv[1])[:5]), "ok": ok}
    return dict(table)


# The languages an answer is expected in: the paper's targets (clo.core.languages.PAPER_TARGETS) plus English.
_REGISTRY = ("en", "sw", "zh", "de", "ko", "id", "yo")


def format_table(table: dict[str, dict[str, dict]]) -> str:
    """A Markdown table: one row per language, lines and paragraphs side by side."""
    out = ["| language | group | lines n | lines right | lines → registry | paragraphs n | paragraphs right | "
           "paragraphs → registry | most frequent labels (lines) |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    order = sorted(table, key=lambda l: (table[l]["lines"]["group"] != "registry", l))
    for lang in order:
        li, pa = table[lang]["lines"], table[lang]["paragraphs"]
        labels = ", ".join(f"{k} {v}" for k, v in li["labels"].items())
        out.append(f"| {lang} | {li['group']} | {li['n']} | {li['right']:.1%} | {li['registry']:.1%} | {pa['n']} | "
                   f"{pa['right']:.1%} | {pa['registry']:.1%} | {labels} |")
    return "\n".join(out)
