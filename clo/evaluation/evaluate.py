"""Evaluation: generate answers to held-out prompts and score their language (docs/design.md, "Measuring the
answer's language").

    python -m clo eval --model default --model runs/X --prompts demo --lang sw --lang en --json
    python -m clo eval --responses answers.jsonl --json      # answers produced elsewhere: no model loads

For each model and language: LPR, clean LPR (right language, neither echo nor loop, real words), clean LPR
counting excluded answers as failures, the real-word rate, echo and loop rates, WPR for non-Latin scripts,
chrF++ against reference answers, n and excluded (docs/evaluation.md). A run directory that is evaluated
gets the result in its ``eval.json``.
"""
from __future__ import annotations

import time
from pathlib import Path

from clo.core.languages import get_language
from clo.data.formats import DataError, parse_bytes, read_records
from clo.evaluation.endpoint import Endpoint, EndpointClient, EndpointError, public_url
from clo.evaluation.generate import GenerationOptions, generate_answers, get_model
from clo.evaluation.metrics import score_responses
from clo.runs.rundir import RunDir

__all__ = ["evaluate", "score_answers", "load_responses", "parse_responses", "SUMMARY_KEYS", "RESPONSE_FIELDS"]

SUMMARY_KEYS = ("lpr", "clean_lpr", "clean_lpr_strict", "real_word_rate", "echo_rate", "loop_rate", "wpr", "chrf",
                "n", "excluded")
_SUMMARY_EXTRA = ("lpr_ci", "clean_lpr_ci", "clean_lpr_strict_ci", "real_word_rate_ci", "real_word_rate_reason",
                  "chrf_ci", "line_accuracy")
RESPONSE_FIELDS = ("id", "lang", "prompt", "response")  # optional: "model", "reference"
DEFAULT_MODEL_NAME = "responses"  # the model name of rows without "model"


def _is_run_dir(name: str) -> bool:
    p = Path(name)
    return p.is_dir() and (p / "status.json").exists()


def evaluate(models: list, prompts: list[dict], *, options: GenerationOptions | None = None, progress=None,
             write_run_eval: bool = True) -> dict:
    """Generate and score. ``models``: names/run dirs/LoadedModels, or :class:`~clo.evaluation.endpoint.Endpoint`
    (a model served at a URL, scored the same way). ``prompts``: held-out records with ``lang``.

    Returns ``{"models": {model: {lang: summary}}, "details": {model: {lang: full score}},
    "responses": [{model, id, lang, prompt, response, reference, tokens, cut}], "options": {...}}``
    (``cut``: the answer ran out of ``max_new_tokens``). Every endpoint is checked before anything generates (an
    :class:`~clo.evaluation.endpoint.EndpointError` if one cannot be used). An endpoint that fails part-way ends
    the evaluation there: its answers received so far are scored and kept (their rows have ``"partial": true``),
    and ``result["partial"]`` says ``{model, error, answered, prompts, not_evaluated}``.
    """
    opts = options or GenerationOptions()
    langs = sorted({p["lang"] for p in prompts})
    result = {"models": {}, "details": {}, "responses": [], "options": {
        "max_new_tokens": opts.max_new_tokens, "do_sample": opts.do_sample,
        "repetition_penalty": opts.repetition_penalty, "n_prompts": len(prompts), "langs": langs}}
    clients = {i: EndpointClient(m) for i, m in enumerate(models) if isinstance(m, Endpoint)}
    for client in clients.values():
        client.check()
    for k, m in enumerate(models):
        name = _model_name(m)
        t0 = time.perf_counter()

        def prog(done, total, _name=name):
            if progress:
                progress(_name, done, total)

        texts = [p["prompt"] for p in prompts]
        partial = None
        if k in clients:
            try:
                full = clients[k].answers(texts, opts, progress=prog)
            except EndpointError as e:
                partial = {"model": name, "error": str(e), "answered": e.received, "prompts": len(prompts),
                           "not_evaluated": [_model_name(x) for x in models[k + 1:]]}
                full = e.answers or [None] * len(prompts)
            result["options"].setdefault("endpoints", {})[name] = {
                "url": public_url(m.url), "model": m.model, "notes": list(clients[k].notes)}
        else:
            full = generate_answers(get_model(m), texts, opts, progress=prog)
        kept = [(p, a) for p, a in zip(prompts, full) if a is not None]
        gen_s = time.perf_counter() - t0
        if kept:
            per_lang, details = _score_model([p for p, _ in kept], [a.text for _, a in kept],
                                             sorted({p["lang"] for p, _ in kept}))
            result["models"][name] = per_lang
            result["details"][name] = details
            rows = [{"model": name, "id": p.get("id"), "lang": p["lang"], "prompt": p["prompt"], "response": a.text,
                     "reference": p.get("reference"), "tokens": a.tokens, "cut": a.cut,
                     **({"partial": True} if partial else {})} for p, a in kept]
            result["responses"] += _with_verdicts(rows, details)
        result["generation_seconds"] = {**result.get("generation_seconds", {}), name: round(gen_s, 1)}
        if partial:
            result["partial"] = partial
            break
        if write_run_eval and isinstance(m, str) and _is_run_dir(m):
            RunDir(m).write_eval({"models": {name: per_lang}, "options": result["options"],
                                  "evaluated": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return result


def _model_name(m) -> str:
    if isinstance(m, Endpoint):
        return m.name
    return m if isinstance(m, str) else getattr(m, "name", "model")


def _score_model(prompts: list[dict], answers: list[str], langs: list[str]) -> tuple[dict, dict]:
    """Per-language summaries (:data:`SUMMARY_KEYS` and intervals) and full scores of one model's answers."""
    per_lang, details = {}, {}
    for lang in langs:
        recs = [{"prompt": p["prompt"], "response": a, "reference": p.get("reference")}
                for p, a in zip(prompts, answers) if p["lang"] == lang]
        score = score_responses(recs, lang)
        details[lang] = score
        per_lang[lang] = {k: score.get(k) for k in SUMMARY_KEYS}
        per_lang[lang].update({k: score[k] for k in _SUMMARY_EXTRA if k in score})
    return per_lang, details


VERDICT_FIELDS = ("clean", "verdict", "real_word_rate", "unknown_words", "skipped_words")


def _with_verdicts(rows: list[dict], details: dict) -> list[dict]:
    """Each answer row with why it is or is not clean (``clo eval --out``, the Compare page's download):
    ``clean``, ``verdict`` ({key, label, reason}), ``real_word_rate``, ``unknown_words``, ``skipped_words``.
    ``details``: :func:`_score_model`'s full scores, whose per-language ``responses`` follow ``rows``' order."""
    seen: dict[str, int] = {}
    out = []
    for row in rows:
        i = seen[row["lang"]] = seen.get(row["lang"], -1) + 1
        d = details[row["lang"]]["responses"][i]
        out.append({**row, "clean": d["clean_pass"], "verdict": d["verdict"], "real_word_rate": d["real_word_rate"],
                    "unknown_words": d["unknown_words"], "skipped_words": d["skipped_words"]})
    return out


def load_responses(path) -> list[dict]:
    """Rows ``{"id", "lang", "prompt", "response"[, "model", "reference"]}`` from a JSON Lines (or CSV) file.

    ``response`` may be empty (an empty answer is scored, as excluded); the other fields must be non-empty
    strings, ``lang`` a known language, and ``(model, lang, id)`` unique. Any fault is one :class:`DataError`
    naming the file and line."""
    return check_responses(read_records(path), path)


def parse_responses(name: str, raw: bytes) -> list[dict]:
    """The bytes of an uploaded responses file (the Compare page's batch view) → rows, checked exactly as
    :func:`load_responses` checks a file; errors name ``name``."""
    return check_responses(parse_bytes(name, raw), name)


def check_responses(rows: list[dict], path) -> list[dict]:
    """Check and normalise parsed responses rows (see :func:`load_responses`); ``path`` names them in errors."""
    seen: dict[tuple[str, str], int] = {}
    for row in rows:
        line = row.get("_line")
        for f in RESPONSE_FIELDS:
            v = row.get(f)
            if v is None:
                raise DataError(f"field {f!r} is missing (needed: {', '.join(RESPONSE_FIELDS)}; "
                                "optional: model, reference)", path, line)
            if not isinstance(v, str):
                raise DataError(f"field {f!r} must be a string, got {type(v).__name__}", path, line)
            if f != "response" and not v.strip():
                raise DataError(f"field {f!r} is empty", path, line)
        for f in ("model", "reference"):
            if row.get(f) is not None and not isinstance(row[f], str):
                raise DataError(f"field {f!r} must be a string, got {type(row[f]).__name__}", path, line)
        try:
            row["lang"] = get_language(row["lang"]).code
        except ValueError as e:
            raise DataError(str(e), path, line) from None
        row["model"] = (row.get("model") or "").strip() or DEFAULT_MODEL_NAME
        key = (row["model"], row["lang"], row["id"])  # the held-out sets reuse ids across languages
        if key in seen:
            raise DataError(f"duplicate id {row['id']!r} in {row['lang']} for model {row['model']!r} "
                            f"(first on line {seen[key]})", path, line)
        seen[key] = line
    return rows


def score_answers(rows: list[dict]) -> dict:
    """Score answers that already exist (rows as :func:`load_responses` returns them), one block per model;
    no model is loaded. Same shape as :func:`evaluate`: ``{"models", "details", "responses", "options"}``."""
    result = {"models": {}, "details": {}, "responses": [], "options": {"source": "responses", "n_prompts": len(rows),
                                                                          "langs": sorted({r["lang"] for r in rows})}}
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == name]
        langs = sorted({r["lang"] for r in mine})
        result["models"][name], result["details"][name] = _score_model(mine, [r["response"] for r in mine], langs)
        result["responses"] += _with_verdicts(
            [{"model": name, **{k: r.get(k) for k in ("id", "lang", "prompt", "response", "reference")}} for r in mine],
            result["details"][name])
    return result
