"""An optional LLM judge: pairwise verdicts from any OpenAI-compatible endpoint (docs/workshop.md, "LLM judge").

Each pair is judged twice with the answers' positions swapped; a model wins a pair only when both verdicts
prefer it, otherwise the pair is a tie. That cancels a judge's position bias: a judge that always answers
"A" gives every pair a tie, a 50% win rate. The win rate (wins + ties/2) / n has a 95% Wilson interval.

    python -m clo eval --model default --model runs/X --prompts demo --lang sw \\
        --judge-url http://127.0.0.1:8000/v1 --judge-model judge

The key, when the endpoint needs one, comes only from the environment (``$CLO_JUDGE_API_KEY``); it is never
written to a run directory, a log or the Arena database. A tiny model as the judge gives verdicts that mean
nothing; it is useful only to test the plumbing.
"""
from __future__ import annotations

import os
import re

import openai

from clo.core.languages import get_language
from clo.evaluation.endpoint import body_message
from clo.evaluation.metrics import wilson_interval

__all__ = ["JUDGE_KEY_ENV", "JudgeError", "Judge", "combine", "win_rate", "judge_responses", "judge_round"]

JUDGE_KEY_ENV = "CLO_JUDGE_API_KEY"

SYSTEM = ("You compare two answers to a user's message. The better answer is correct, helpful and written in the "
          "language of the user's message. Reply with one letter only: A if answer A is better, B if answer B is "
          "better, T if they are equally good or equally bad.")
TEMPLATE = ("The user wrote in {language}.\n\n[User]\n{prompt}\n\n[Answer A]\n{a}\n\n[Answer B]\n{b}\n\n"
            "Better answer (A, B or T):")


class JudgeError(RuntimeError):
    """The endpoint cannot be reached or refuses: one clear message, no traceback."""


def _language(code: str | None) -> str:
    try:
        return get_language(code).name if code else "the user's language"
    except ValueError:
        return code or "the user's language"


def parse_verdict(text: str) -> str | None:
    """``A``, ``B``, ``T`` from the judge's reply (first standalone letter), ``None`` when it gives none."""
    m = re.search(r"\b([ABT])\b", (text or "").strip().upper())
    return m.group(1) if m else None


def combine(first: str | None, swapped: str | None) -> float:
    """Score of answer x from two verdicts: ``first`` with x as A, ``swapped`` with x as B. 1 = x wins, 0 = y
    wins, 0.5 = a tie (the verdicts disagree, say T, or cannot be read)."""
    if first == "A" and swapped == "B":
        return 1.0
    if first == "B" and swapped == "A":
        return 0.0
    return 0.5


class Judge:
    """A judge model behind an OpenAI-compatible ``base_url`` (the official ``openai`` client)."""

    def __init__(self, base_url: str, model: str, timeout: float = 120, max_tokens: int = 8):
        key = os.environ.get(JUDGE_KEY_ENV) or "none"  # from the environment only; never stored
        self.model, self.max_tokens = model, max_tokens
        self.client = openai.OpenAI(base_url=base_url, api_key=key, timeout=timeout, max_retries=1)
        self.unreadable = 0

    def verdict(self, prompt: str, a: str, b: str, lang: str | None) -> str | None:
        msg = TEMPLATE.format(language=_language(lang), prompt=prompt, a=a, b=b)
        try:
            r = self.client.chat.completions.create(
                model=self.model, max_tokens=self.max_tokens, temperature=0,
                messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": msg}])
        except openai.APIStatusError as e:
            raise JudgeError(f"the judge endpoint answered {e.status_code}: {_message(e)}") from None
        except openai.APIError as e:
            raise JudgeError(f"the judge endpoint cannot be reached: {e}") from None
        v = parse_verdict(r.choices[0].message.content if r.choices else "")
        self.unreadable += v is None
        return v

    def compare(self, prompt: str, x: str, y: str, lang: str | None) -> float:
        """x's score against y, from two verdicts with positions swapped (see :func:`combine`)."""
        return combine(self.verdict(prompt, x, y, lang), self.verdict(prompt, y, x, lang))


def _message(e: openai.APIStatusError) -> str:
    return body_message(e) or str(e)


def win_rate(scores: list[float]) -> dict:
    n = len(scores)
    k = sum(scores)
    return {"n": n, "wins": sum(s == 1 for s in scores), "ties": sum(s == 0.5 for s in scores),
            "losses": sum(s == 0 for s in scores), "win_rate": k / n if n else None,
            "win_rate_ci": wilson_interval(k, n) if n else None}


def judge_responses(responses: list[dict], baseline: str, judge: Judge) -> dict:
    """Win rate of every other model against ``baseline`` over the prompts both answered. ``responses``: rows
    ``{model, id, lang, prompt, response}`` as :func:`clo.evaluation.evaluate.evaluate` returns them."""
    by = {}
    for r in responses:
        by.setdefault(r["model"], {})[(r.get("id"), r["prompt"])] = r
    base = by.get(baseline, {})
    out = {}
    for model, rows in by.items():
        if model == baseline:
            continue
        scores = []
        for key, r in rows.items():
            if key in base:
                scores.append(judge.compare(r["prompt"], r["response"], base[key]["response"], r.get("lang")))
        out[model] = {**win_rate(scores), "baseline": baseline}
    return {"judge": judge.model, "unreadable_verdicts": judge.unreadable, "models": out}


def judge_round(arena, code: str, base_url: str, model: str) -> int:
    """The judge votes once on every (prompt, pair) of an Arena round (voter ``judge``, kept apart from the
    human votes); returns how many verdicts were stored."""
    judge = Judge(base_url, model)
    n = 0
    for m in arena.matchups(code):
        s = judge.compare(m["prompt"], m["answer_a"], m["answer_b"], m.get("lang"))
        vote = {1.0: "A", 0.0: "B"}.get(s, "tie")
        n += arena.record_vote(code, f"judge:{model}", m, vote, voter="judge")
    return n
