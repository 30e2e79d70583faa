"""Two training methods compared over several seeds, from the answers each seed's run gave to the same held-out
prompts (docs/evaluation.md, "Comparing two methods").

    from clo.evaluation.comparison import compare_methods
    compare_methods(["clo-s1.responses.jsonl", "clo-s2…"], ["sft-s1.responses.jsonl", …], "sw")

Each answer is scored as ``clo eval`` scores it (clean pass, real-word rate, chrF++ statistics); a method's
score is the mean over its seeds; every interval is :func:`clo.evaluation.intervals.seeds_bootstrap`'s, over prompts and
seeds together.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from clo.core.languages import get_language
from clo.data.formats import DataError
from clo.evaluation.evaluate import load_responses
from clo.evaluation.intervals import seeds_bootstrap
from clo.evaluation.metrics import METRICS as REGISTRY
from clo.evaluation.metrics import check_response, chrf_from_statistics, chrf_statistics

__all__ = ["answer_stats", "compare_methods", "METRICS"]

METRICS = ("clean_lpr", "clean_lpr_strict", "real_word_rate", "chrf")  # compared over seeds: names in metrics.METRICS


def answer_stats(rows: list[dict], lang: str) -> dict[str, np.ndarray]:
    """One row of additive statistics per answer (rows already filtered to ``lang``), for each of
    :data:`METRICS`: ``[passed, 1]`` (``[0, 0]`` for an answer left out of clean LPR), ``[rate, 1]`` (``[0, 0]``
    without a rate) and chrF++'s n-gram statistics (``[0, …]`` without a reference)."""
    checks = [check_response(r["prompt"], r["response"], lang, r.get("reference")) for r in rows]
    out = {name: np.array([[0.0, 0.0] if (v := REGISTRY[name].answer(c)) is None else [float(v), 1.0] for c in checks])
           for name in METRICS if REGISTRY[name].kind != "corpus"}
    with_ref = [i for i, c in enumerate(checks) if c.reference]
    if with_ref:
        stats = chrf_statistics([checks[i].response for i in with_ref], [checks[i].reference for i in with_ref])
        chrf = np.zeros((len(checks), len(stats[0])))
        chrf[with_ref] = np.asarray(stats, dtype=np.float64)
        out["chrf"] = chrf
    return out


def _method_stats(paths: list, lang: str) -> tuple[list[str], dict[str, np.ndarray]]:
    """The prompt ids (sorted) and, per metric, an array (seeds, prompts, k) of one method's answer files."""
    ids, per_seed = None, []
    for path in paths:
        rows = sorted((r for r in load_responses(path) if r["lang"] == lang), key=lambda r: r["id"])
        mine = [r["id"] for r in rows]
        if not rows:
            raise DataError(f"no {lang} answers", Path(path))
        if len({r["model"] for r in rows}) > 1:
            raise DataError("answers of several models in one file: give one file per seed", Path(path))
        if ids is None:
            ids = mine
        elif mine != ids:
            raise DataError(f"its {lang} prompts differ from those of {Path(paths[0]).name}: compare answers to "
                            "the same prompts", Path(path))
        per_seed.append(answer_stats(rows, lang))
    return ids, {k: np.stack([s[k] for s in per_seed]) for k in per_seed[0]}


def compare_methods(a_paths: list, b_paths: list, lang: str, *, n_resamples: int = 2000, seed: int = 0) -> dict:
    """Method A (one answers file per seed) against method B on the ``lang`` prompts both answered.

    Returns ``{"lang", "n_prompts", "seeds": [n_a, n_b], "metrics": {name: {"a", "b", "diff"}}}`` where each of
    a, b and diff (A − B) is ``{"value", "ci"}`` and a and b carry ``per_seed`` values too. A difference whose
    interval excludes 0 is one these seeds and prompts support; one that straddles 0 is not."""
    code = get_language(lang).code
    ids_a, a = _method_stats(list(a_paths), code)
    ids_b, b = _method_stats(list(b_paths), code)
    if ids_a != ids_b:
        raise DataError(f"the two methods answered different {code} prompts", Path(b_paths[0]))
    out = {"lang": code, "n_prompts": len(ids_a), "seeds": [len(a_paths), len(b_paths)], "metrics": {}}
    for name in METRICS:
        if name not in a or name not in b or (name == "real_word_rate" and not a[name][..., 1].any()):
            continue  # no references (chrF) or no lexicon (real words): nothing to compare
        score = chrf_from_statistics if name == "chrf" else None
        ra = seeds_bootstrap(a[name], score=score, n_resamples=n_resamples, seed=seed)
        rb = seeds_bootstrap(b[name], score=score, n_resamples=n_resamples, seed=seed)
        d = seeds_bootstrap(a[name], b[name], score=score, n_resamples=n_resamples, seed=seed)
        out["metrics"][name] = {
            "a": {"value": ra["value"], "ci": ra["ci"], "per_seed": [float(v) for v in ra["per_seed"]]},
            "b": {"value": rb["value"], "ci": rb["ci"], "per_seed": [float(v) for v in rb["per_seed"]]},
            "diff": {"value": d["value"], "ci": d["ci"]},
        }
    return out
