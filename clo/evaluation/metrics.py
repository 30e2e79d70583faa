"""Does the model answer in the asked language, and is the answer real text? (docs/design.md, "Measuring the
answer's language")

Language Confusion Benchmark metrics (Marchisio et al., 2024) on top of :mod:`clo.evaluation.langid`, plus two
degeneration checks that language ID cannot see, and chrF++ where references exist:

- **LPR** — share of responses whose every counted line (≥ 5 tokens; characters for Han/kana) is detected
  as the expected language with confidence > 0.3. Responses with no counted line are *excluded* and
  reported as ``excluded``.
- **WPR** — non-Latin-script languages only (the registry's ``latin`` flag: zh, ko, ja, ar, hi, ru): among
  responses passing LPR, the share with no English word longer than 3 letters in a counted line.
- **line_accuracy** — mean over non-excluded responses of the share of counted lines in the right language
  (the benchmark's ``acc``).
- **echo_rate** / **loop_rate** — the answer mostly copies the prompt (:func:`is_echo`) / one short n-gram
  repeats to fill it (:func:`is_loop`); shares of all responses.
- **real_word_rate** — mean over responses of the share of their words that a lexicon of the expected
  language accepts (:mod:`clo.evaluation.lexicon`); ``None`` with ``real_word_rate_reason`` where no lexicon exists
  (there, for a language with a known alphabet — Yoruba — clean LPR requires words spelled in it).
- **clean_lpr** — like LPR, but a response must also be neither echo nor loop, and its real-word rate must
  reach :data:`clo.evaluation.lexicon.REAL_WORD_MIN` (where the language has a lexicon; where it has none but a known
  alphabet, its words spelled in that alphabet must reach :data:`clo.evaluation.lexicon.SPELLED_MIN`).
- **clean_lpr_strict** — clean LPR with excluded responses (empty, no counted line) counted as failures.
- **chrF++** — sacrebleu ``CHRF(word_order=2)`` against references: corpus-level, and per response.

The data sets here are small (48 held-out prompts a language), so every rate comes with a 95% Wilson
interval and chrF with a seeded bootstrap interval: read differences inside the intervals as noise.

    >>> from clo.evaluation.metrics import score_responses
    >>> records = [
    ...     {"prompt": "Kwa nini anga ni la buluu?",
    ...      "response": "Anga linaonekana la buluu kwa sababu hewa hutawanya mwanga wa buluu zaidi.",
    ...      "reference": "Anga ni la buluu kwa sababu hewa hutawanya mwanga wa buluu kuliko rangi nyingine."},
    ...     {"prompt": "Kwa nini anga ni la buluu?", "response": "kwa maji ya kwa maji ya kwa maji ya kwa maji ya"},
    ... ]
    >>> s = score_responses(records, "sw")
    >>> s["lpr"], s["clean_lpr"], s["loop_rate"], s["n"]
    (1.0, 0.5, 0.5, 2)

Every metric is declared once, in :data:`METRICS`: ``higher_is_better``, how it aggregates (its ``kind``), its
label and tip for people and its header in ``clo eval``'s table; ``fn`` takes the list of per-response
:class:`ResponseCheck` and returns a value or ``None`` where it does not apply. :func:`score_responses`,
:func:`aggregate`, the Compare page (:data:`COMPARE_COLUMNS`) and ``clo eval`` (:data:`CLI_COLUMNS`) read it.
"""
from __future__ import annotations

import difflib
import functools
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from clo.core.languages import get_language, language_name
from clo.evaluation.intervals import bootstrap_interval, mean_interval, wilson_interval
from clo.evaluation.langid import LineDetection, detect_lines
from clo.evaluation.lexicon import (
    REAL_WORD_MIN,
    SPELLED_MIN,
    has_lexicon,
    lexicon_names,
    marks_on,
    no_lexicon_reason,
    real_word_rate,
    skipped_summary,
    spelled_rate,
    word_marks,
)

__all__ = [
    "ECHO_MIN_COPY",
    "ECHO_NGRAM",
    "LOOP_MIN_COVERAGE",
    "LOOP_MIN_REPEATS",
    "LOOP_MAX_DISTINCT",
    "LOOP_DISTINCT_MIN_TOKENS",
    "WPR_MIN_LETTERS",
    "Metric",
    "METRICS",
    "KINDS",
    "COMPARE_COLUMNS",
    "CLI_COLUMNS",
    "metrics_of",
    "ResponseCheck",
    "register",
    "tokenize",
    "line_pass",
    "word_pass",
    "english_words",
    "is_echo",
    "is_loop",
    "echo_score",
    "loop_score",
    "check_response",
    "chrf",
    "chrf_per_response",
    "wilson_interval",
    "bootstrap_interval",
    "score_responses",
    "aggregate",
]

# --- thresholds (the tests check them on hand-made answers and on every bundled reference answer)
ECHO_NGRAM = 3  # copied material is found as shared token 3-grams (shorter for very short prompts)
ECHO_MIN_COPY = 0.75  # echo: ≥ 75% of the response's tokens are copied from the prompt (see echo_score)
LOOP_MIN_REPEATS = 3  # loop: a 1–4-gram repeated at least 3 times back to back ...
LOOP_MIN_COVERAGE = 0.5  # ... such repeats cover ≥ 50% of the tokens, or
LOOP_MAX_DISTINCT = 0.4  # ... among ≥ 12 tokens, ≤ 40% of the 4-grams are distinct (a long phrase looping)
LOOP_DISTINCT_MIN_TOKENS = 12
WPR_MIN_LETTERS = 4  # LCB: an English word "longer than 3 letters"

_CJK = "\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
_TOKEN_RE = re.compile(rf"[{_CJK}]|(?:(?![{_CJK}])[^\W_]|[\u0300-\u036f])+")
# Latin letters only on either side: English glued to Han or kana ("用python编程") is still a word, as in the
# benchmark, which segments Chinese and Japanese before looking words up.
_LATIN = "A-Za-z\u00c0-\u024f\u1e00-\u1eff"
_ENGLISH_WORD_RE = re.compile(rf"(?<![{_LATIN}])[a-z]{{{WPR_MIN_LETTERS},}}(?![{_LATIN}])")


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens; each Han/kana character is a token; punctuation is dropped.

    Combining marks stay with their word (Yoruba ``àárọ̀``), digits are kept.
    """
    return _TOKEN_RE.findall((text or "").lower())


# ---------------------------------------------------------------------------------------------- language


def _lines(response: str | Sequence[LineDetection]) -> list[LineDetection]:
    return detect_lines(response) if isinstance(response, str) else list(response)


def line_pass(response: str | Sequence[LineDetection], lang: str) -> bool | None:
    """Every counted line is in ``lang`` (confidence > 0.3); ``None`` when no line is counted (excluded)."""
    code = get_language(lang).code
    counted = [l for l in _lines(response) if l.counted]
    if not counted:
        return None
    return all(l.lang == code for l in counted)


def english_words(response: str | Sequence[LineDetection]) -> list[str]:
    """English-looking words in counted lines: runs of ≥ 4 lower-case ASCII letters standing alone.

    Like the benchmark, which looks words up in a lower-case English word list, capitalised names and
    acronyms (``Python``, ``NASA``) are not flagged. No word list ships offline, so any lower-case ASCII word
    counts — in a non-Latin-script answer such a word is English (or romanised) in practice.
    """
    return [w for l in _lines(response) if l.counted for w in _ENGLISH_WORD_RE.findall(l.text)]


def word_pass(response: str | Sequence[LineDetection], lang: str) -> bool | None:
    """WPR for one response: ``None`` for Latin-script languages or responses failing/excluded from LPR."""
    language = get_language(lang)
    if language.latin:
        return None
    lines = _lines(response)
    if not line_pass(lines, language.code):
        return None
    return not english_words(lines)


# ---------------------------------------------------------------------------------------------- degeneration


def _ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def echo_score(prompt: str, response: str) -> float:
    """Share of the response's tokens copied from the prompt, in [0, 1] (1.0: a verbatim copy).

    The larger of two measures: tokens inside a token 3-gram (shorter for very short texts) that also
    occurs in the prompt — catches the prompt repeated several times — and tokens in runs of ≥ 2 tokens
    aligned with the prompt in order (``difflib``) — catches a copy with a word changed near its end.
    """
    p, r = tokenize(prompt), tokenize(response)
    if not p or not r:
        return 0.0
    n = min(ECHO_NGRAM, len(p), len(r))
    in_prompt = set(_ngrams(p, n))
    covered = [False] * len(r)
    for i, gram in enumerate(_ngrams(r, n)):
        if gram in in_prompt:
            covered[i : i + n] = [True] * n
    blocks = difflib.SequenceMatcher(None, p, r, autojunk=False).get_matching_blocks()
    aligned = sum(b.size for b in blocks if b.size >= min(2, len(r)))
    return max(sum(covered), aligned) / len(r)


def is_echo(prompt: str, response: str, threshold: float = ECHO_MIN_COPY) -> bool:
    """The answer mostly repeats the prompt: :func:`echo_score` ≥ ``threshold`` (0.75).

    A verbatim, truncated or repeated copy scores 1.0, a copy with one word changed ~0.9. Normal answers
    that restate part of the question ("Three fruits rich in vitamin C are …") score ≤ 0.55, and the
    bundled answers to puzzle questions, which restate the puzzle, at most ~0.7.
    """
    return echo_score(prompt, response) >= threshold


def _tandem_coverage(tokens: Sequence[str]) -> float:
    """Share of tokens inside back-to-back repeats (≥ LOOP_MIN_REPEATS times) of a 1–4-gram."""
    covered = [False] * len(tokens)
    for n in range(1, 5):
        i = 0
        while i + n <= len(tokens):
            gram, reps = tokens[i : i + n], 1
            while tokens[i + reps * n : i + (reps + 1) * n] == gram:
                reps += 1
            # a trailing partial copy ("kwa maji ya kwa maji") still belongs to the loop
            tail = 0
            while tail < n - 1 and i + reps * n + tail < len(tokens) and tokens[i + reps * n + tail] == gram[tail]:
                tail += 1
            if reps >= LOOP_MIN_REPEATS:
                covered[i : i + reps * n + tail] = [True] * (reps * n + tail)
                i += reps * n
            else:
                i += 1
    return sum(covered) / len(tokens) if tokens else 0.0


def _distinct_4grams(tokens: Sequence[str]) -> float | None:
    four = _ngrams(tokens, 4)
    return len(set(four)) / len(four) if len(tokens) >= LOOP_DISTINCT_MIN_TOKENS else None


def loop_score(response: str) -> float:
    """Degree of looping in [0, 1], ≥ 0.5 where :func:`is_loop` fires: the larger of the share of tokens
    in back-to-back repeats of a 1–4-gram and, for answers of ≥ 12 tokens, the share of repeated 4-grams
    scaled so that the threshold of :func:`is_loop` maps to 0.5."""
    t = tokenize(response)
    score = _tandem_coverage(t)
    distinct = _distinct_4grams(t)
    if distinct is not None:
        score = max(score, min(1.0, (1 - distinct) * LOOP_MIN_COVERAGE / (1 - LOOP_MAX_DISTINCT)))
    return score


def is_loop(response: str) -> bool:
    """A short n-gram repeats to fill the answer.

    True when back-to-back repeats (≥ 3 in a row) of one 1–4-gram cover ≥ 50% of the tokens ("kwa maji
    ya kwa maji ya kwa maji…", "maji maji maji"), or, for answers of ≥ 12 tokens, when ≤ 40% of the
    4-grams are distinct (a longer phrase said about 2.5 times or more). Normal answers sit far below:
    they have no word said three times in a row, and nearly all their 4-grams are distinct.
    """
    t = tokenize(response)
    if _tandem_coverage(t) >= LOOP_MIN_COVERAGE:
        return True
    distinct = _distinct_4grams(t)
    return distinct is not None and distinct <= LOOP_MAX_DISTINCT


# ---------------------------------------------------------------------------------------------- chrF++


def _chrf_metric():
    from sacrebleu.metrics import CHRF

    return CHRF(word_order=2)


def _chrf_stats(hypotheses: Sequence[str], references: Sequence[str]):
    """Per-segment chrF++ statistics (sacrebleu's own; summing them gives the corpus score)."""
    metric = _chrf_metric()
    return metric, metric._extract_corpus_statistics(list(hypotheses), [list(references)])


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus-level chrF++ (0–100) of responses against one reference each."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} responses but {len(references)} references")
    if not hypotheses:
        raise ValueError("chrF needs at least one response with a reference")
    return _chrf_metric().corpus_score(list(hypotheses), [list(references)]).score


def chrf_statistics(hypotheses: Sequence[str], references: Sequence[str]) -> list[list[int]]:
    """Per-response chrF++ statistics: additive, so a sum of rows is a corpus's (what a bootstrap over responses
    resamples); :func:`chrf_from_statistics` scores a row or a sum."""
    return [list(s) for s in _chrf_stats(hypotheses, references)[1]]


def chrf_from_statistics(row: Sequence[float]) -> float:
    """chrF++ (0–100) of a row of :func:`chrf_statistics` or of a sum of rows."""
    return _chrf_scorer()._compute_score_from_stats([int(round(v)) for v in row]).score


@functools.lru_cache(maxsize=1)
def _chrf_scorer():
    return _chrf_metric()


def chrf_per_response(hypotheses: Sequence[str], references: Sequence[str]) -> list[float]:
    """Sentence-level chrF++ of each response."""
    metric, stats = _chrf_stats(hypotheses, references)
    return [metric._compute_score_from_stats(s).score for s in stats]


# ---------------------------------------------------------------------------------------------- per response


@dataclass
class ResponseCheck:
    """Everything measured on one response; the registered metrics aggregate lists of these."""

    lang: str
    prompt: str
    response: str
    reference: str | None
    lines: list[LineDetection]
    line_pass: bool | None  # None: excluded (no counted line)
    word_pass: bool | None  # None: Latin script, or the response fails / is excluded from LPR
    english_words: list[str]
    echo: bool
    loop: bool
    echo_score: float
    loop_score: float
    real_word_rate: float | None = None  # None: no lexicon for the language, or no word (see real_words_reason)
    real_words_reason: str = ""
    unknown_words: tuple[str, ...] = ()  # the words no lexicon knew (clo.evaluation.lexicon.RealWords.unknown)
    skipped: dict[str, int] = field(default_factory=dict)  # how many words were not judged, by SKIP_REASONS key
    skipped_words: dict[str, tuple[str, ...]] = field(default_factory=dict)  # those words, each once
    spelled_rate: float | None = None  # only where there is no lexicon but an alphabet (lexicon.ALPHABETS)
    word_marks: tuple = field(default=(), repr=False)  # lexicon.word_marks of the judged lines (RealWords.marks)
    chrf: float | None = None
    chrf_stats: list[float] | None = field(default=None, repr=False)

    @property
    def excluded(self) -> bool:
        return self.line_pass is None

    @property
    def real_words_pass(self) -> bool | None:
        """The real-word rate reaches the language's threshold; ``None`` where there is no rate."""
        threshold = REAL_WORD_MIN.get(self.lang)
        return None if self.real_word_rate is None or threshold is None else self.real_word_rate >= threshold

    @property
    def spelling_pass(self) -> bool | None:
        """The words are spelled in the language's alphabet (:data:`clo.evaluation.lexicon.SPELLED_MIN`); ``None`` where
        the language has a lexicon or no alphabet."""
        threshold = SPELLED_MIN.get(self.lang)
        return None if self.spelled_rate is None or threshold is None else self.spelled_rate >= threshold

    @property
    def clean_pass(self) -> bool | None:
        """Right language, no echo, no loop and real words (where a lexicon exists; where none does but an
        alphabet is known, words spelled in it); ``None``: excluded."""
        if self.excluded:
            return None
        return bool(self.line_pass and not self.echo and not self.loop and self.real_words_pass is not False
                    and self.spelling_pass is not False)

    @property
    def clean_pass_strict(self) -> bool:
        """:attr:`clean_pass` with an excluded response (empty, no counted line) counted as a failure."""
        return bool(self.clean_pass)

    @property
    def shaped_like(self) -> bool:
        """Language ID's own detectors mostly named the expected language on some counted line, though the
        line did not pass: text shaped like the language (its letters and syllables) — the guard turned it
        down because its words are not real, as in the SmolLM2 demo's tuned Swahili."""
        for l in self.lines:
            votes = list(l.detection.votes.values())
            if l.counted and l.lang != self.lang and votes and sum(v == self.lang for v in votes) * 2 >= len(votes):
                return True
        return False

    @property
    def verdict(self) -> dict:
        """Why the answer is or is not clean, for people: ``{"key", "label", "reason"}``. ``key`` is one of
        ``clean``, ``excluded``, ``not_real_words`` (shaped like the language, words not real), ``wrong_language``,
        ``echo``, ``loop``, ``not_spelled``; ``label`` is a badge's text; ``reason`` one sentence with the
        numbers behind it (docs/evaluation.md, "Why an answer is not clean")."""
        name = get_language(self.lang).name
        counted = [l for l in self.lines if l.counted]
        right = sum(l.lang == self.lang for l in counted)
        lines = f"{right} of {len(counted)} counted line{'s' if len(counted) != 1 else ''} detected as {name}"
        words = self._words_phrase()
        threshold = REAL_WORD_MIN.get(self.lang)
        if self.excluded:
            return {"key": "excluded", "label": "no counted line",
                    "reason": "Empty or too short to judge (no line of 5 or more words; Chinese and Japanese: "
                              "characters): left out of LPR and clean LPR."}
        if not self.line_pass:
            if self.shaped_like and self.real_word_rate is not None and threshold is not None \
                    and self.real_word_rate < threshold:
                return {"key": "not_real_words",
                        "label": f"{name}-shaped, not real words · {self.real_word_rate:.0%} real",
                        "reason": f"Shaped like {name}, but its words are not real {name}: {words}; language ID "
                                  f"therefore does not call it {name} ({lines})."}
            others = Counter(l.lang for l in counted if l.lang != self.lang).most_common(1)
            other = language_name(others[0][0]) if others and others[0][0] != "unknown" else "no language"
            return {"key": "wrong_language",
                    "label": (f"{other}, not {name}" if others and other != "no language"
                              else f"not {name} · no language recognised"),
                    "reason": f"Not in {name}: {lines}" + (f"; most others: {other}." if others else ".")}
        if self.echo:
            return {"key": "echo", "label": f"{name} · echo",
                    "reason": f"Mostly repeats the prompt ({self.echo_score:.0%} copied)."}
        if self.loop:
            return {"key": "loop", "label": f"{name} · loop", "reason": "One phrase repeats to fill the answer."}
        if self.real_words_pass is False:
            return {"key": "not_real_words", "label": f"{name}, but not real words · {self.real_word_rate:.0%} real",
                    "reason": f"Detected as {name} ({lines}), but {words}."}
        if self.spelling_pass is False:
            return {"key": "not_spelled", "label": f"{name}, not spelled in {name} · {self.spelled_rate:.0%}",
                    "reason": f"Detected as {name} ({lines}), but only {self.spelled_rate:.0%} of its words are "
                              f"spelled in its alphabet (clean needs {SPELLED_MIN[self.lang]:.0%})."}
        return {"key": "clean", "label": f"{name} · clean",
                "reason": f"In {name} ({lines}), no echo, no loop" + (f"; {words}." if words else ".")}

    def _words_phrase(self) -> str:
        """"31% of 16 judged words known (clean needs 75%); unknown: tafia, zwena…; not judged: 2 names"."""
        if self.real_word_rate is None:
            return ""
        threshold = REAL_WORD_MIN.get(self.lang)
        judged = f"{self.real_word_rate:.0%} of the judged words known to {lexicon_names(self.lang)}"
        need = f" (clean needs {threshold:.0%})" if threshold is not None else ""
        unknown = (f"; unknown: {', '.join(self.unknown_words[:8])}{'…' if len(self.unknown_words) > 8 else ''}"
                   if self.unknown_words else "")
        skipped = f"; not judged: {skipped_summary(self.skipped)}" if self.skipped else ""
        return judged + need + unknown + skipped

    @property
    def answer_marks(self) -> list[tuple[str, bool | str | None]]:
        """The answer cut into marked pieces (:func:`clo.evaluation.lexicon.word_marks`) for display: the marks
        the real-word rate counted, laid onto the whole answer (a language without a lexicon: marked here)."""
        if has_lexicon(self.lang):
            return marks_on(self.response, self.word_marks)
        return word_marks(self.response, self.lang)

    @property
    def line_accuracy(self) -> float | None:
        counted = [l for l in self.lines if l.counted]
        return sum(l.lang == self.lang for l in counted) / len(counted) if counted else None

    def to_dict(self) -> dict:
        """JSON-ready details: per-line detections, flags, chrF."""
        return {
            "prompt": self.prompt,
            "response": self.response,
            "reference": self.reference,
            "lines": [
                {"text": l.text, "lang": l.lang, "confidence": l.detection.confidence,
                 "agreement": l.detection.agreement, "votes": l.detection.votes, "reason": l.detection.reason,
                 "tokens": l.tokens, "counted": l.counted}
                for l in self.lines
            ],
            "detected": _main_language(self.lines),
            "line_pass": self.line_pass,
            "word_pass": self.word_pass,
            "english_words": self.english_words,
            "echo": self.echo,
            "loop": self.loop,
            "echo_score": round(self.echo_score, 4),
            "loop_score": round(self.loop_score, 4),
            "real_word_rate": None if self.real_word_rate is None else round(self.real_word_rate, 4),
            "real_words_reason": self.real_words_reason,
            "real_words_pass": self.real_words_pass,
            "unknown_words": list(self.unknown_words[:50]),
            "skipped": dict(self.skipped),
            "skipped_words": {k: list(v[:30]) for k, v in self.skipped_words.items()},
            "spelled_rate": None if self.spelled_rate is None else round(self.spelled_rate, 4),
            "spelling_pass": self.spelling_pass,
            "clean_pass": self.clean_pass,
            "verdict": self.verdict,
            "excluded": self.excluded,
            "line_accuracy": self.line_accuracy,
            "chrf": self.chrf,
        }


def _main_language(lines: Sequence[LineDetection]) -> str | None:
    """The language of most counted lines (of all lines when none is counted), for display."""
    pool = [l.lang for l in lines if l.counted] or [l.lang for l in lines]
    return Counter(pool).most_common(1)[0][0] if pool else None


def check_response(prompt: str, response: str, lang: str, reference: str | None = None) -> ResponseCheck:
    """Detect and flag one response (no chrF: that needs the corpus, see :func:`score_responses`)."""
    code = get_language(lang).code
    lines = detect_lines(response or "")
    lp = line_pass(lines, code)
    # the words judged: marker lines (code-like, no letters) left out, but a code fence's own lines kept so that
    # clo.evaluation.lexicon still sees where a fenced block begins and ends (and skips it as code)
    text = "\n".join(l.text for l in lines if not l.detection.is_marker or l.text.lstrip().startswith(("```", "~~~")))
    words = real_word_rate(text, code)
    return ResponseCheck(
        lang=code,
        prompt=prompt or "",
        response=response or "",
        reference=reference or None,
        lines=lines,
        line_pass=lp,
        word_pass=word_pass(lines, code),
        english_words=english_words(lines) if not get_language(code).latin else [],
        echo=is_echo(prompt or "", response or ""),
        loop=is_loop(response or ""),
        echo_score=echo_score(prompt or "", response or ""),
        loop_score=loop_score(response or ""),
        real_word_rate=words.rate,
        real_words_reason=words.reason,
        unknown_words=words.unknown,
        skipped=dict(words.skipped),
        skipped_words=dict(words.skipped_words),
        spelled_rate=spelled_rate(text, code) if words.rate is None else None,
        word_marks=words.marks,
    )


# ---------------------------------------------------------------------------------------------- registry

# How a metric is computed from the per-response checks, and how a language's values combine into the overall row
# (:func:`aggregate`):
# - "count": a sum over the responses (an int in the scores); overall, the sum over the languages.
# - "rate": the share of the responses whose flag is True, among those where it is not None; a Wilson interval from
#   the (successes, trials) kept under ``counts``; overall, the mean over languages and the pooled Wilson interval.
# - "mean": the mean of the per-response values that are not None (a bootstrap interval where ``interval``);
#   overall, the mean over languages.
# - "corpus": computed on the responses together (chrF++, bootstrap interval); overall, the mean over languages.
KINDS = ("count", "rate", "mean", "corpus")


@dataclass(frozen=True)
class Metric:
    """One metric, declared once: what it measures and how it aggregates, and its name for people (``label``,
    with ``tip`` on the Compare page; ``cli``, the header of ``clo eval``'s table, and that column's width)."""

    name: str
    fn: Callable[[list[ResponseCheck]], float | None]  # the metric over a language's checks
    higher_is_better: bool
    help: str
    kind: str = "rate"  # one of KINDS
    answer: Callable[[ResponseCheck], float | bool | None] | None = None  # one response's flag or value (not corpus)
    interval: bool = False  # a "mean" with a 95% interval (``*_ci``)
    label: str = ""
    tip: str = ""  # what it means, for people; ``{missing}`` stands for the sign shown where there is no value
    cli: tuple[str, int] | None = None  # (header, width) in ``clo eval``'s table


METRICS: dict[str, Metric] = {}


def _share(k_n: tuple[int, int]) -> float | None:
    k, n = k_n
    return k / n if n else None


def _rate(flags: Iterable[bool | None]) -> tuple[int, int]:
    """(successes, trials) over the flags that are not None."""
    vals = [f for f in flags if f is not None]
    return sum(bool(v) for v in vals), len(vals)


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def register(name: str, higher_is_better: bool, *, kind: str = "rate", interval: bool = False, label: str = "",
             tip: str = "", cli: tuple[str, int] | None = None):
    """Register a metric under ``name``; the decorated function's docstring's first line is its help. For a "count",
    "rate" or "mean" (:data:`KINDS`) it takes one :class:`ResponseCheck` and gives that response's count, flag or
    value; for a "corpus" metric it takes the list of checks and gives the metric."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: one of {', '.join(KINDS)}")

    def deco(fn):
        if kind == "corpus":
            answer, over = None, fn
        elif kind == "count":
            answer, over = fn, (lambda checks: float(sum(fn(c) for c in checks)))
        elif kind == "rate":
            answer, over = fn, (lambda checks: _share(_rate(fn(c) for c in checks)))
        else:
            answer, over = fn, (lambda checks: _mean(fn(c) for c in checks))
        METRICS[name] = Metric(name, over, higher_is_better, (fn.__doc__ or "").strip().splitlines()[0], kind, answer,
                               interval, label or name, tip, cli)
        return fn

    return deco


# In this order in the scores (score_responses, aggregate).
@register("n", higher_is_better=True, kind="count", label="n", tip="answers scored", cli=("n", 3))
def n_responses(check: ResponseCheck) -> int:
    """Responses scored."""
    return 1


@register("excluded", higher_is_better=False, kind="count", label="excluded",
          tip="answers too short to tell their language", cli=("excl", 4))
def excluded(check: ResponseCheck) -> int:
    """Responses with no counted line (left out of LPR, clean LPR, WPR and line accuracy)."""
    return int(check.excluded)


@register("lpr", higher_is_better=True, label="LPR", tip="answers whose every line is in the prompt's language",
          cli=("LPR", 6))
def lpr(check: ResponseCheck) -> bool | None:
    """Line-level pass rate: share of (non-excluded) responses whose every counted line is in the language."""
    return check.line_pass


@register("clean_lpr", higher_is_better=True, label="clean LPR",
          tip="answers in the prompt's language with neither echo nor loop, and enough real words where the language "
              "has a dictionary", cli=("cleanLPR", 8))
def clean_lpr(check: ResponseCheck) -> bool | None:
    """LPR that also requires the response to be neither echo nor loop, and real words (``REAL_WORD_MIN``) where
    the language has a lexicon, or words spelled in its alphabet (``SPELLED_MIN``) where it has none."""
    return check.clean_pass


@register("clean_lpr_strict", higher_is_better=True, label="clean LPR (strict)",
          tip="clean LPR with answers too short to tell their language counted as failures")
def clean_lpr_strict(check: ResponseCheck) -> bool:
    """Clean LPR over all responses: an excluded one (empty, no counted line) counts as a failure."""
    return check.clean_pass_strict


@register("real_word_rate", higher_is_better=True, kind="mean", interval=True, label="real words",
          tip="mean share of an answer's words a dictionary of the language knows ({missing}: no dictionary, e.g. "
              "Yoruba)", cli=("realW", 6))
def real_word_rate_metric(check: ResponseCheck) -> float | None:
    """Mean share of an answer's words that the language's lexicon accepts (None: no lexicon)."""
    return check.real_word_rate


@register("wpr", higher_is_better=True, label="WPR",
          tip="answers with no English word; only for targets in a non-Latin script ({missing}: does not apply, e.g. "
              "Swahili and English are both in Latin script)", cli=("WPR", 6))
def wpr(check: ResponseCheck) -> bool | None:
    """Word-level pass rate (non-Latin scripts): LPR-passing responses without English words of > 3 letters."""
    return check.word_pass  # None for a Latin-script language


@register("line_accuracy", higher_is_better=True, kind="mean", label="line accuracy")
def line_accuracy(check: ResponseCheck) -> float | None:
    """Mean share of counted lines in the right language, over non-excluded responses."""
    return check.line_accuracy


@register("echo_rate", higher_is_better=False, label="echo", tip="answers that mostly repeat the prompt",
          cli=("echo", 6))
def echo_rate(check: ResponseCheck) -> bool:
    """Share of responses that mostly copy the prompt."""
    return check.echo


@register("loop_rate", higher_is_better=False, label="loop", tip="answers where one phrase repeats to fill the answer",
          cli=("loop", 6))
def loop_rate(check: ResponseCheck) -> bool:
    """Share of responses filled by a repeating short n-gram."""
    return check.loop


@register("chrf", higher_is_better=True, kind="corpus", label="chrF++",
          tip="similarity to the reference answers, 0–100 ({missing}: no references)", cli=("chrF++", 6))
def chrf_metric(checks: list[ResponseCheck]) -> float | None:
    """Corpus chrF++ against the references (responses without a reference are skipped)."""
    with_ref = [c for c in checks if c.reference]
    if not with_ref:
        return None
    return chrf([c.response for c in with_ref], [c.reference for c in with_ref])


# What the two tables show, in their order: the Compare page's (the headline first, with each metric's label and tip)
# and `clo eval`'s (with each metric's ``cli`` header).
COMPARE_COLUMNS = ("clean_lpr", "clean_lpr_strict", "real_word_rate", "lpr", "echo_rate", "loop_rate", "wpr", "chrf",
                   "n", "excluded")
CLI_COLUMNS = ("n", "excluded", "lpr", "clean_lpr", "real_word_rate", "echo_rate", "loop_rate", "wpr", "chrf")


def metrics_of(kind: str) -> list[str]:
    """The names of the metrics of ``kind`` (:data:`KINDS`), in the registry's order."""
    return [name for name, m in METRICS.items() if m.kind == kind]


# ---------------------------------------------------------------------------------------------- scoring


def _round(x, nd=4):
    if x is None:
        return None
    if isinstance(x, tuple):
        return tuple(round(v, nd) for v in x)
    return round(x, nd)


def score_responses(records: Iterable[dict], lang: str, *, details: bool = True, n_bootstrap: int = 1000,
                    seed: int = 0) -> dict:
    """Score model answers to prompts in ``lang``.

    ``records`` are dicts with ``prompt``, ``response`` and optionally ``reference``. Returns every metric of
    :data:`METRICS` in its order — ``n``, ``excluded``, ``lpr``, ``clean_lpr``, ``clean_lpr_strict``,
    ``real_word_rate`` (with ``real_word_rate_reason`` where there is none), ``wpr`` (None for Latin scripts),
    ``line_accuracy``, ``echo_rate``, ``loop_rate``, ``chrf`` (None without references) — with 95% intervals
    (``*_ci``: Wilson for rates, seeded bootstrap for the real-word rate and chrF — n is small, so they are wide),
    ``n_references``, ``counts`` (successes, trials) for each rate, and per-response details under ``responses``.
    """
    code = get_language(lang).code
    records = list(records)
    checks = [check_response(r.get("prompt", ""), r.get("response", ""), code, r.get("reference")) for r in records]

    with_ref = [c for c in checks if c.reference]
    chrf_value = chrf_ci = None
    if with_ref:
        metric, stats = _chrf_stats([c.response for c in with_ref], [c.reference for c in with_ref])
        for c, s in zip(with_ref, stats):
            c.chrf_stats = list(s)
            c.chrf = round(metric._compute_score_from_stats(s).score, 4)
        chrf_value = METRICS["chrf"].fn(checks)
        chrf_ci = bootstrap_interval(stats, lambda row: metric._compute_score_from_stats(row).score, n_bootstrap, seed)

    counts = {name: _rate(METRICS[name].answer(c) for c in checks) for name in metrics_of("rate")}
    out: dict = {"lang": code}
    for name, m in METRICS.items():
        if m.kind == "count":
            out[name] = int(m.fn(checks) or 0)
        elif m.kind == "rate":
            out[name] = _round(m.fn(checks))
            out[f"{name}_ci"] = _round(wilson_interval(*counts[name]))
        elif m.kind == "mean":
            out[name] = _round(m.fn(checks))
            if m.interval:
                values = [v for c in checks if (v := m.answer(c)) is not None]
                out[f"{name}_ci"] = _round(mean_interval(values, n_bootstrap, seed))
        else:  # chrF++, the one corpus metric
            out[name], out[f"{name}_ci"] = _round(chrf_value), _round(chrf_ci)
        if name == "real_word_rate":
            out["real_word_rate_reason"] = _real_words_reason(checks, code)
    out["n_references"] = len(with_ref)
    out["counts"] = counts
    if details:
        out["responses"] = [c.to_dict() for c in checks]
    return out


def _real_words_reason(checks: list[ResponseCheck], code: str) -> str | None:
    """Why there is no real-word rate (no lexicon; no words), or None when there is one."""
    if any(c.real_word_rate is not None for c in checks):
        return None
    return no_lexicon_reason(code) or "no words to check"


def aggregate(per_lang: dict[str, dict]) -> dict:
    """Overall row from :func:`score_responses` results keyed by language.

    Each metric is the unweighted mean over the languages that have it (the benchmark's convention: every
    language counts the same whatever its number of prompts); the counts (``n``, ``excluded``) are sums. Rates also
    get a pooled Wilson interval from the summed counts (``*_ci``), which is the interval of the pooled
    rate, close to but not the same as the mean; chrF++ gets none (``chrf_ci`` is None).
    """
    out: dict = {"lang": "all", "languages": sorted(per_lang)}
    for key in (name for name, m in METRICS.items() if m.kind != "count"):
        vals = [s[key] for s in per_lang.values() if s.get(key) is not None]
        out[key] = _round(sum(vals) / len(vals)) if vals else None
    for key in metrics_of("count"):
        out[key] = sum(s.get(key, 0) for s in per_lang.values())
    for key in metrics_of("rate"):
        pairs = [s["counts"][key] for s in per_lang.values() if "counts" in s and key in s["counts"]]
        k, n = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
        out[f"{key}_ci"] = _round(wilson_interval(k, n)) if n and out.get(key) is not None else None
    for key in metrics_of("corpus"):
        out[f"{key}_ci"] = None
    return out
