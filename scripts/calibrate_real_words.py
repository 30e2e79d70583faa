"""Calibrate clo.lexicon.REAL_WORD_MIN: bundled reference answers against Swahili-shaped noise.

    python scripts/calibrate_real_words.py            # every lexicon language
    python scripts/calibrate_real_words.py --langs sw

Texts: the target side of the bundled demo set (``response``) and the held-out reference answers, per
language. Every other text (positions 0, 2, 4… in file order) is the **tune** half, the rest the **report**
half. Noise: the same texts with the letters of every word shuffled (seeded per language; Chinese: the Han characters
of every clause). The suggested threshold is the lowest tune-half reference rate left after dropping the
lowest 2.5%, rounded down to 0.05; the report half then says how many real answers it keeps and how much
noise it lets through (docs/evaluation.md).

    python scripts/calibrate_real_words.py --spelling   # clo.lexicon.SPELLED_MIN (Yoruba)

The same for the spelling check of a language with no lexicon: the share of words spelled in its alphabet,
on the same two halves of its bundled references and of the UDHR's text of it
(``assets/langid_check/udhr.jsonl``, its own tune/report halves); shuffled letters would pass a spelling
check, so the noise is the UDHR's text in every *other* Latin-script language of that file (report half).
"""
from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clo.langcheck import load_checkset  # noqa: E402
from clo.lexicon import ALPHABETS, REAL_WORD_MIN, SPELLED_MIN, real_word_rate, spelled_rate  # noqa: E402

ASSETS = ROOT / "assets" / "data"
LANGS = ("sw", "id", "de", "en", "ko", "zh")


def texts(lang: str) -> list[str]:
    out = []
    demo = ASSETS / "demo" / f"{lang}.jsonl"
    field = "response" if lang != "en" else "response"
    for raw in demo.read_text(encoding="utf-8").splitlines():
        out.append(json.loads(raw)[field])
    for raw in (ASSETS / "heldout" / f"{lang}.jsonl").read_text(encoding="utf-8").splitlines():
        out.append(json.loads(raw)["reference"])
    return out


def shuffle_letters(text: str, lang: str, rng: random.Random) -> str:
    def mix(m):
        chars = list(m.group())
        rng.shuffle(chars)
        return "".join(chars)

    if lang == "zh":
        return re.sub(r"[\u4e00-\u9fff]+", mix, text)
    return re.sub(r"[^\W\d_]+", mix, text)


def latin(text: str) -> bool:
    """Most letters are Latin (a–z under their accents): the UDHR texts a spelling check can be asked about."""
    letters = [c for c in unicodedata.normalize("NFD", text.lower()) if c.isalpha()]
    return bool(letters) and sum("a" <= c <= "z" for c in letters) >= 0.5 * len(letters)


def spelling_table() -> int:
    udhr = load_checkset()
    print("| lang | half | n | references: mean | min | ≥ threshold | other languages (UDHR, report half): n | "
          "mean | ≥ threshold | threshold (rule's value) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for lang in ALPHABETS:
        all_texts = texts(lang)
        halves = {"tune": all_texts[0::2] + [r["text"] for r in udhr if r["lang"] == lang and r["half"] == "tune"],
                  "report": all_texts[1::2] + [r["text"] for r in udhr if r["lang"] == lang and r["half"] == "report"]}
        by_lang: dict[str, list[float]] = {}  # every other Latin-script language's report-half paragraphs
        for r in udhr:
            if r["lang"] != lang and r["half"] == "report" and latin(r["text"]):
                rate = spelled_rate(r["text"], lang)
                if rate is not None:
                    by_lang.setdefault(r["lang"], []).append(rate)
        others = [x for rates in by_lang.values() for x in rates]
        rates = {h: [x for x in (spelled_rate(t, lang) for t in ts) if x is not None] for h, ts in halves.items()}
        tune = sorted(rates["tune"])
        suggested = math.floor(tune[int(0.025 * len(tune))] * 20) / 20
        thr = SPELLED_MIN[lang]
        for h in ("tune", "report"):
            r = rates[h]
            print(f"| {lang} | {h} | {len(r)} | {sum(r) / len(r):.3f} | {min(r):.3f} | {sum(x >= thr for x in r) / len(r):.1%} "
                  f"| {len(others)} | {sum(others) / len(others):.3f} | {sum(x >= thr for x in others) / len(others):.1%} "
                  f"| {thr:.2f} ({suggested:.2f}) |")
        print(f"\nOther languages let through by the {lang} spelling check (UDHR report half, share of paragraphs ≥ {thr:.2f}):\n")
        print("| language | paragraphs | let through |")
        print("| --- | ---: | ---: |")
        passed = {other: [x >= thr for x in xs] for other, xs in by_lang.items()}
        for other, ok in sorted(passed.items(), key=lambda kv: (-sum(kv[1]) / len(kv[1]), kv[0])):
            print(f"| {other} | {len(ok)} | {sum(ok) / len(ok):.0%} |")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--langs", nargs="*", default=list(LANGS))
    p.add_argument("--spelling", action="store_true", help="calibrate SPELLED_MIN (languages without a lexicon)")
    args = p.parse_args(argv)
    if args.spelling:
        return spelling_table()
    print("| lang | half | n | references: mean | min | ≥ threshold | noise: mean | max | ≥ threshold | threshold (suggested) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for lang in args.langs:
        rng = random.Random(f"noise-{lang}")  # one seed per language: `--langs ko` reproduces ko's row of the full run
        all_texts = texts(lang)
        halves = {"tune": all_texts[0::2], "report": all_texts[1::2]}
        rates = {h: [real_word_rate(t, lang).rate for t in ts] for h, ts in halves.items()}
        noise = {h: [real_word_rate(shuffle_letters(t, lang, rng), lang).rate for t in ts] for h, ts in halves.items()}
        tune = sorted(r for r in rates["tune"] if r is not None)
        suggested = math.floor(tune[int(0.025 * len(tune))] * 20) / 20
        thr = REAL_WORD_MIN[lang]
        for h in ("tune", "report"):
            r = [x for x in rates[h] if x is not None]
            n = [x for x in noise[h] if x is not None]
            if thr is None:  # measured, but no gate (clo.lexicon: the dictionary cannot separate real from noise)
                print(f"| {lang} | {h} | {len(r)} | {sum(r) / len(r):.3f} | {min(r):.3f} | – | {sum(n) / len(n):.3f} | "
                      f"{max(n):.3f} | – | none ({suggested:.2f}) |")
                continue
            print(f"| {lang} | {h} | {len(r)} | {sum(r) / len(r):.3f} | {min(r):.3f} | {sum(x >= thr for x in r) / len(r):.1%} "
                  f"| {sum(n) / len(n):.3f} | {max(n):.3f} | {sum(x >= thr for x in n) / len(n):.1%} | "
                  f"{thr:.2f} ({suggested:.2f}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
