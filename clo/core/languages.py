"""Registry of the languages CLO Studio knows.

English is the source language; the paper's six targets are zh, de, ko, id, sw and yo. Every module
(translation, detection, metrics, UI pickers) looks languages up here so that codes never drift.

    >>> from clo.core.languages import get_language
    >>> get_language("sw").name
    'Swahili'
    >>> get_language("swa").code      # ISO 639-3 also resolves
    'sw'
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Language", "LANGUAGES", "UnknownLanguageError", "get_language", "target_languages", "language_name"]


@dataclass(frozen=True)
class Language:
    code: str  # ISO 639-1, the project's key
    iso3: str  # ISO 639-3
    name: str  # English display name
    native: str  # endonym, for UI labels
    m2m100: str | None  # M2M100 language code, None if not covered
    nllb: str | None  # NLLB-200 (FLORES-200) code
    fasttext: str  # fastText lid.176 label without the __label__ prefix
    script: str  # ISO 15924 script of the usual written form
    latin: bool  # written in Latin script (WPR applies only to non-Latin scripts)
    whitespace_tokens: bool = True  # False where words are not space separated (zh, ja): count characters

    @property
    def label(self) -> str:
        """Human label used in pickers: "Swahili (sw)"."""
        return f"{self.name} ({self.code})"


LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in [
        Language("en", "eng", "English", "English", "en", "eng_Latn", "en", "Latn", True),
        Language("sw", "swh", "Swahili", "Kiswahili", "sw", "swh_Latn", "sw", "Latn", True),
        Language("zh", "zho", "Chinese", "中文", "zh", "zho_Hans", "zh", "Hans", False, whitespace_tokens=False),
        Language("de", "deu", "German", "Deutsch", "de", "deu_Latn", "de", "Latn", True),
        Language("ko", "kor", "Korean", "한국어", "ko", "kor_Hang", "ko", "Hang", False),
        Language("id", "ind", "Indonesian", "Bahasa Indonesia", "id", "ind_Latn", "id", "Latn", True),
        Language("yo", "yor", "Yoruba", "Yorùbá", "yo", "yor_Latn", "yo", "Latn", True),
        Language("fr", "fra", "French", "Français", "fr", "fra_Latn", "fr", "Latn", True),
        Language("es", "spa", "Spanish", "Español", "es", "spa_Latn", "es", "Latn", True),
        Language("ja", "jpn", "Japanese", "日本語", "ja", "jpn_Jpan", "ja", "Jpan", False, whitespace_tokens=False),
        Language("ru", "rus", "Russian", "Русский", "ru", "rus_Cyrl", "ru", "Cyrl", False),
        Language("ar", "arb", "Arabic", "العربية", "ar", "arb_Arab", "ar", "Arab", False),
        Language("hi", "hin", "Hindi", "हिन्दी", "hi", "hin_Deva", "hi", "Deva", False),
    ]
}

# The paper's six target languages, in the order the paper lists them.
PAPER_TARGETS = ("zh", "de", "ko", "id", "sw", "yo")

_ALIASES = {lang.iso3: lang.code for lang in LANGUAGES.values()}
_ALIASES.update({"zho_hans": "zh", "cmn": "zh", "swa": "sw", "zh-cn": "zh", "zh-tw": "zh", "ind": "id"})
_ALIASES.update({lang.nllb.lower(): lang.code for lang in LANGUAGES.values() if lang.nllb})


class UnknownLanguageError(ValueError):
    """Raised for a language code that is not in the registry; the message lists the known codes."""

    def __init__(self, code: object):
        known = ", ".join(f"{c} ({l.name})" for c, l in LANGUAGES.items())
        super().__init__(f"Unknown language {code!r}. Known languages: {known}.")
        self.code = code


def get_language(code: str) -> Language:
    """Look a language up by ISO 639-1, ISO 639-3 or NLLB code (case-insensitive)."""
    if not isinstance(code, str) or not code.strip():
        raise UnknownLanguageError(code)
    key = code.strip().lower().replace("__label__", "")
    key = _ALIASES.get(key, key)
    try:
        return LANGUAGES[key]
    except KeyError:
        raise UnknownLanguageError(code) from None


def target_languages() -> list[Language]:
    """All registered languages except English, the paper's targets first."""
    first = [LANGUAGES[c] for c in PAPER_TARGETS]
    rest = [l for c, l in LANGUAGES.items() if c != "en" and c not in PAPER_TARGETS]
    return first + rest


# Detector labels outside the registry and outside lingua's 75 languages (fastText lid.176 knows 176): the ones
# that turn up on tiny models' answers. lingua supplies every other name.
_MORE_NAMES = {"ceb": "Cebuano", "war": "Waray", "ilo": "Iloko", "mg": "Malagasy", "jv": "Javanese",
               "su": "Sundanese", "rw": "Kinyarwanda", "ny": "Chichewa", "sn": "Shona", "ha": "Hausa",
               "ig": "Igbo", "am": "Amharic", "sco": "Scots", "la": "Latin", "eo": "Esperanto", "fy": "Frisian",
               "lb": "Luxembourgish", "gd": "Scottish Gaelic", "ht": "Haitian Creole", "mt": "Maltese",
               "unknown": "Unknown", "code": "Code", "und": "Unknown"}


def language_name(code: str | None) -> str:
    """An English name for any language label a detector gives (``xh`` → ``Xhosa``): the registry's name, else
    lingua's ISO 639 table, else a short table of the rest; a label nobody knows reads ``Unlisted (xx)``. A run's
    several target languages (``sw,yo``) read "Swahili + Yoruba". Every page names languages with it: never a raw
    code."""
    if not code:
        return "Unknown"
    if "," in str(code):
        return " + ".join(language_name(c) for c in str(code).split(","))
    try:
        return get_language(code).name
    except ValueError:
        pass
    key = str(code).strip().lower().replace("__label__", "")
    if key in _MORE_NAMES:
        return _MORE_NAMES[key]
    from lingua import IsoCode639_1, IsoCode639_3  # a detector package: load on need
    from lingua import Language as _LinguaLanguage

    for table, finder in ((IsoCode639_1, _LinguaLanguage.from_iso_code_639_1),
                          (IsoCode639_3, _LinguaLanguage.from_iso_code_639_3)):
        try:
            return finder(table.from_str(key)).name.title()
        except ValueError:
            continue
    return f"Unlisted ({key})"
