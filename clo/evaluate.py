"""Evaluation: generate answers to held-out prompts and score their language (docs/design.md, "Measuring the answer's language").

    python -m clo eval --model default --model runs/X --prompts demo --lang sw --lang en --json

For each model and language: LPR, clean LPR (right language and neither echo nor loop), echo and loop
rates, WPR for non-Latin scripts, chrF++ against reference answers, n and excluded. A run directory that is
evaluated gets the result in its ``eval.json``.
"""
from __future__ import annotations

import time
from pathlib import Path

from clo.generate import GenerationOptions, generate_answers, get_model
from clo.metrics import score_responses
from clo.runs import RunDir

__all__ = ["evaluate", "SUMMARY_KEYS"]

SUMMARY_KEYS = ("lpr", "clean_lpr", "echo_rate", "loop_rate", "wpr", "chrf", "n", "excluded")


def _is_run_dir(name: str) -> bool:
    p = Path(name)
    return p.is_dir() and (p / "status.json").exists()


def evaluate(models: list, prompts: list[dict], *, options: GenerationOptions | None = None, progress=None,
             write_run_eval: bool = True) -> dict:
    """Generate and score. ``models``: names/run dirs/LoadedModels. ``prompts``: held-out records with ``lang``.

    Returns ``{"models": {model: {lang: summary}}, "details": {model: {lang: full score}},
    "responses": [{model, id, lang, prompt, response, reference, tokens, cut}], "options": {...}}``
    (``cut``: the answer ran out of ``max_new_tokens``).
    """
    opts = options or GenerationOptions()
    langs = sorted({p["lang"] for p in prompts})
    result = {"models": {}, "details": {}, "responses": [], "options": {
        "max_new_tokens": opts.max_new_tokens, "do_sample": opts.do_sample,
        "repetition_penalty": opts.repetition_penalty, "n_prompts": len(prompts), "langs": langs}}
    for m in models:
        name = m if isinstance(m, str) else getattr(m, "name", "model")
        lm = get_model(m)
        t0 = time.perf_counter()

        def prog(done, total, _name=name):
            if progress:
                progress(_name, done, total)

        full = generate_answers(lm, [p["prompt"] for p in prompts], opts, progress=prog)
        answers = [a.text for a in full]
        gen_s = time.perf_counter() - t0
        per_lang, details = {}, {}
        for lang in langs:
            recs = [{"prompt": p["prompt"], "response": a, "reference": p.get("reference")}
                    for p, a in zip(prompts, answers) if p["lang"] == lang]
            score = score_responses(recs, lang)
            details[lang] = score
            per_lang[lang] = {k: score.get(k) for k in SUMMARY_KEYS}
            for k in ("lpr_ci", "clean_lpr_ci", "chrf_ci", "line_accuracy"):
                if k in score:
                    per_lang[lang][k] = score[k]
        result["models"][name] = per_lang
        result["details"][name] = details
        result["generation_seconds"] = {**result.get("generation_seconds", {}), name: round(gen_s, 1)}
        for p, a in zip(prompts, full):
            result["responses"].append({"model": name, "id": p.get("id"), "lang": p["lang"], "prompt": p["prompt"],
                                        "response": a.text, "reference": p.get("reference"), "tokens": a.tokens,
                                        "cut": a.cut})
        if write_run_eval and isinstance(m, str) and _is_run_dir(m):
            RunDir(m).write_eval({"models": {name: per_lang}, "options": result["options"],
                                  "evaluated": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return result
