"""The Arena: a blind, pairwise vote on models' answers that a whole workshop room takes part in (docs/workshop.md).

A host opens a *round* (two or more models, a prompt set, generation settings) under a short code. Every
answer is generated once per (model, prompt, settings) and cached in SQLite, so 30 participants cost no more
than one. Each participant gets one prompt and two anonymous answers in random order, votes A / B / tie /
both bad (and optionally which answer is real <language>), and sees the models' names only afterwards. A
participant never gets the same (prompt, pair of models) twice in a round: :meth:`Arena.next_matchup` skips
what the session has voted on, and a UNIQUE constraint refuses a repeated vote.

    >>> arena = Arena("/tmp/arena.sqlite")
    >>> code = arena.create_round(["default", "runs/X"], prompts, GenerationOptions(max_new_tokens=64))
    >>> m = arena.next_matchup(code, session="abc")
    >>> arena.record_vote(code, "abc", m, "A")
    >>> arena.leaderboard(code)["models"]

The database (WAL, one row per vote) lives at ``$CLO_HOME/arena.sqlite`` unless told otherwise; the host's
app and the participants' app (``clo arena``) share it.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import random
import secrets
import sqlite3
import time
from contextlib import closing
from dataclasses import asdict
from pathlib import Path

from clo.core.downloads import rows_to_csv
from clo.core.paths import clo_home
from clo.evaluation.generate import GenerationOptions, generate
from clo.evaluation.metrics import wilson_interval
from clo.models.registry import display_name

__all__ = ["Arena", "VOTES", "REAL_LANG", "default_db", "bradley_terry", "leaderboard",
           "preference_pairs", "ArenaError"]

VOTES = {"A": "A is better", "B": "B is better", "tie": "Tie", "both_bad": "Both are bad"}
REAL_LANG = {"A": "A", "B": "B", "both": "both", "neither": "neither"}
CODE_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I
HUMAN, JUDGE = "human", "judge"

SCHEMA = """
CREATE TABLE IF NOT EXISTS rounds (
    code TEXT PRIMARY KEY, created REAL NOT NULL, models TEXT NOT NULL, prompts TEXT NOT NULL,
    settings TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'open');
CREATE TABLE IF NOT EXISTS answers (
    model TEXT NOT NULL, prompt TEXT NOT NULL, settings TEXT NOT NULL, answer TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (model, prompt, settings));
CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY AUTOINCREMENT, round TEXT NOT NULL, voter TEXT NOT NULL DEFAULT 'human',
    session TEXT NOT NULL, prompt_id TEXT NOT NULL, lang TEXT, prompt TEXT NOT NULL,
    model_a TEXT NOT NULL, model_b TEXT NOT NULL, answer_a TEXT NOT NULL, answer_b TEXT NOT NULL,
    vote TEXT NOT NULL CHECK (vote IN ('A', 'B', 'tie', 'both_bad')), real_lang TEXT, time REAL NOT NULL,
    pair TEXT NOT NULL, UNIQUE (round, voter, session, prompt_id, pair));
CREATE INDEX IF NOT EXISTS votes_round ON votes (round);
"""


class ArenaError(ValueError):
    """A round that does not exist, too few models, no prompts: one clear message."""


def default_db() -> Path:
    return Path(os.environ.get("CLO_ARENA_DB") or clo_home() / "arena.sqlite")


def _pair(a: str, b: str) -> str:
    return "\x1f".join(sorted((a, b)))


def _settings_key(opts: GenerationOptions) -> str:
    d = asdict(opts)
    d.pop("batch_size", None)  # does not change a greedy answer
    return json.dumps(d, sort_keys=True)


class Arena:
    """All Arena state in one SQLite file (WAL). Safe to use from many threads and processes: every call
    opens its own connection; writes are single statements."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_db()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA busy_timeout=30000")
        return db

    # -- answers ----------------------------------------------------------------------------------------------

    def answers(self, models: list[str], prompts: list[dict], opts: GenerationOptions, progress=None,
                generate_fn=generate) -> dict[tuple[str, str], str]:
        """``{(model, prompt text): answer}``, generating only what the cache lacks (one batched call per model)."""
        key = _settings_key(opts)
        texts = list(dict.fromkeys(p["prompt"] for p in prompts))
        out: dict[tuple[str, str], str] = {}
        with closing(self._connect()) as db:
            for m in models:
                for r in db.execute("SELECT prompt, answer FROM answers WHERE model = ? AND settings = ?", (m, key)):
                    out[(m, r["prompt"])] = r["answer"]
        for i, m in enumerate(models):
            missing = [t for t in texts if (m, t) not in out]
            if not missing:
                continue
            if progress:
                progress(i, len(models), m)
            got = generate_fn(m, missing, opts)
            with closing(self._connect()) as db, db:
                db.executemany("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?)",
                               [(m, t, key, a, time.time()) for t, a in zip(missing, got)])
            out.update({(m, t): a for t, a in zip(missing, got)})
        if progress:
            progress(len(models), len(models), None)
        return out

    # -- rounds -----------------------------------------------------------------------------------------------

    def create_round(self, models: list[str], prompts: list[dict], opts: GenerationOptions | None = None,
                     progress=None, generate_fn=generate, code: str | None = None) -> str:
        """Generate (or reuse) every answer, then open a round; returns its code."""
        models = list(dict.fromkeys(str(m) for m in models))
        if len(models) < 2:
            raise ArenaError("An Arena round needs at least two different models.")
        labels = [display_name(m) for m in models]
        if len(set(labels)) < len(labels):
            raise ArenaError("Two of the models would be revealed under the same name; pick differently named ones.")
        prompts = [{"id": str(p.get("id") or i), "lang": p.get("lang"), "prompt": p["prompt"]}
                   for i, p in enumerate(prompts) if str(p.get("prompt") or "").strip()]
        if not prompts:
            raise ArenaError("An Arena round needs at least one prompt.")
        if len({p["id"] for p in prompts}) < len(prompts):
            prompts = [{**p, "id": f"{i}"} for i, p in enumerate(prompts)]
        opts = opts or GenerationOptions(max_new_tokens=96)
        self.answers(models, prompts, opts, progress, generate_fn)
        with closing(self._connect()) as db, db:
            for _ in range(20):
                code = code or "".join(secrets.choice(CODE_CHARS) for _ in range(4))
                try:
                    db.execute("INSERT INTO rounds VALUES (?, ?, ?, ?, ?, 'open')",
                               (code, time.time(), json.dumps(models), json.dumps(prompts, ensure_ascii=False),
                                _settings_key(opts)))
                    return code
                except sqlite3.IntegrityError:
                    code = None
        raise ArenaError("could not find a free round code")

    def round(self, code: str) -> dict:
        code = (code or "").strip().upper()
        with closing(self._connect()) as db:
            r = db.execute("SELECT * FROM rounds WHERE code = ?", (code,)).fetchone()
        if r is None:
            raise ArenaError(f"There is no round {code!r}.")
        return {"code": r["code"], "created": r["created"], "models": json.loads(r["models"]),
                "prompts": json.loads(r["prompts"]), "settings": json.loads(r["settings"]), "state": r["state"]}

    def rounds(self) -> list[dict]:
        with closing(self._connect()) as db:
            rows = db.execute("SELECT code, created, models, state, (SELECT COUNT(*) FROM votes v WHERE v.round = "
                              "r.code AND v.voter = 'human') AS n FROM rounds r ORDER BY created DESC").fetchall()
        return [{"code": r["code"], "created": r["created"], "models": json.loads(r["models"]), "state": r["state"],
                 "votes": r["n"]} for r in rows]

    def set_state(self, code: str, state: str) -> None:
        with closing(self._connect()) as db, db:
            db.execute("UPDATE rounds SET state = ? WHERE code = ?", (state, code))

    def _answer_map(self, rnd: dict) -> dict[tuple[str, str], str]:
        key = json.dumps(rnd["settings"], sort_keys=True)  # as _settings_key wrote it
        with closing(self._connect()) as db:
            rows = db.execute(f"SELECT model, prompt, answer FROM answers WHERE settings = ? AND model IN "
                              f"({','.join('?' * len(rnd['models']))})", (key, *rnd["models"])).fetchall()
        return {(r["model"], r["prompt"]): r["answer"] for r in rows}

    # -- voting -----------------------------------------------------------------------------------------------

    def next_matchup(self, code: str, session: str, rng: random.Random | None = None) -> dict | None:
        """One (prompt, two models in random order) this session has not voted on, among the least-voted in the
        round; ``None`` when the session has seen every combination. Names stay on the server (the page shows
        only prompt and answers until the vote)."""
        rng = rng or random.Random()
        rnd = self.round(code)
        if rnd["state"] != "open":
            return None
        with closing(self._connect()) as db:
            seen = {(r["prompt_id"], r["pair"]) for r in db.execute(
                "SELECT prompt_id, pair FROM votes WHERE round = ? AND session = ?", (rnd["code"], session))}
            counts = {(r["prompt_id"], r["pair"]): r["n"] for r in db.execute(
                "SELECT prompt_id, pair, COUNT(*) AS n FROM votes WHERE round = ? AND voter = 'human' "
                "GROUP BY prompt_id, pair", (rnd["code"],))}
        combos = [(p, a, b) for p in rnd["prompts"] for a, b in itertools.combinations(rnd["models"], 2)
                  if (p["id"], _pair(a, b)) not in seen]
        if not combos:
            return None
        low = min(counts.get((p["id"], _pair(a, b)), 0) for p, a, b in combos)
        p, a, b = rng.choice([c for c in combos if counts.get((c[0]["id"], _pair(c[1], c[2])), 0) == low])
        if rng.random() < 0.5:
            a, b = b, a
        answers = self._answer_map(rnd)
        return {"round": rnd["code"], "prompt_id": p["id"], "lang": p.get("lang"), "prompt": p["prompt"],
                "model_a": a, "model_b": b, "answer_a": answers.get((a, p["prompt"]), ""),
                "answer_b": answers.get((b, p["prompt"]), "")}

    def record_vote(self, code: str, session: str, matchup: dict, vote: str, real_lang: str | None = None,
                    voter: str = HUMAN) -> bool:
        """Store one vote; ``False`` (and nothing stored) when this session already voted on that matchup."""
        if vote not in VOTES:
            raise ArenaError(f"Unknown vote {vote!r}; one of {', '.join(VOTES)}.")
        if real_lang is not None and real_lang not in REAL_LANG:
            raise ArenaError(f"Unknown answer {real_lang!r} to 'which one is real'.")
        m = matchup
        try:
            with closing(self._connect()) as db, db:
                db.execute("INSERT INTO votes (round, voter, session, prompt_id, lang, prompt, model_a, model_b, "
                           "answer_a, answer_b, vote, real_lang, time, pair) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           (code, voter, session, m["prompt_id"], m.get("lang"), m["prompt"], m["model_a"],
                            m["model_b"], m["answer_a"], m["answer_b"], vote, real_lang, time.time(),
                            _pair(m["model_a"], m["model_b"])))
            return True
        except sqlite3.IntegrityError:
            return False

    def votes(self, code: str, voter: str | None = HUMAN) -> list[dict]:
        with closing(self._connect()) as db:
            q = "SELECT * FROM votes WHERE round = ?" + (" AND voter = ?" if voter else "") + " ORDER BY id"
            rows = db.execute(q, (code, voter) if voter else (code,)).fetchall()
        return [{k: r[k] for k in r.keys() if k != "pair"} for r in rows]

    # -- results ----------------------------------------------------------------------------------------------

    def leaderboard(self, code: str, **kw) -> dict:
        rnd = self.round(code)
        out = leaderboard(self.votes(code), rnd["models"], **kw)
        judged = self.votes(code, JUDGE)
        if judged:
            out["judge_agreement"] = judge_agreement(self.votes(code), judged)
        return out

    def votes_csv(self, code: str) -> str:
        """Every vote of the round (humans and judge) as CSV; text cells are formula-escaped (clo.core.downloads)."""
        return rows_to_csv(self.votes(code, voter=None))

    def preference_pairs(self, code: str) -> list[dict]:
        return preference_pairs(self.votes(code))

    def matchups(self, code: str) -> list[dict]:
        """Every (prompt, pair) of the round in a fixed order (the judge votes on all of them)."""
        rnd = self.round(code)
        answers = self._answer_map(rnd)
        return [{"round": rnd["code"], "prompt_id": p["id"], "lang": p.get("lang"), "prompt": p["prompt"],
                 "model_a": a, "model_b": b, "answer_a": answers.get((a, p["prompt"]), ""),
                 "answer_b": answers.get((b, p["prompt"]), "")}
                for p in rnd["prompts"] for a, b in itertools.combinations(rnd["models"], 2)]


# -- statistics (pure functions over vote rows) -------------------------------------------------------------------


def _outcomes(votes: list[dict]):
    """(winner, loser, score for the first) per vote that compares: A/B → 1, tie → 0.5; both bad is left out."""
    for v in votes:
        a, b = v["model_a"], v["model_b"]
        if v["vote"] == "A":
            yield a, b, 1.0
        elif v["vote"] == "B":
            yield a, b, 0.0
        elif v["vote"] == "tie":
            yield a, b, 0.5


def bradley_terry(outcomes: list[tuple[str, str, float]], models: list[str], prior: float = 0.5,
                  iters: int = 1000, tol: float = 1e-10) -> dict[str, float]:
    """Bradley–Terry strengths by Hunter's MM algorithm; a tie is half a win for each side. ``prior`` adds that
    many virtual wins each way between every two models, so a model that never lost keeps a finite score.
    Returned on the Elo scale: ``1000 + 400 · log10(p / geometric mean of p)``."""
    idx = {m: i for i, m in enumerate(models)}
    k = len(models)
    wins = [[0.0] * k for _ in range(k)]  # wins[i][j]: i over j
    for a, b, s in outcomes:
        i, j = idx[a], idx[b]
        wins[i][j] += s
        wins[j][i] += 1 - s
    for i in range(k):
        for j in range(k):
            if i != j:
                wins[i][j] += prior
    p = [1.0] * k
    for _ in range(iters):
        new = []
        for i in range(k):
            w = sum(wins[i])
            d = sum((wins[i][j] + wins[j][i]) / (p[i] + p[j]) for j in range(k) if j != i)
            new.append(w / d if d > 0 else p[i])
        g = math.exp(sum(math.log(x) for x in new) / k)
        new = [x / g for x in new]
        done = max(abs(x - y) for x, y in zip(new, p)) < tol
        p = new
        if done:
            break
    return {m: 1000 + 400 * math.log10(p[idx[m]]) for m in models}


def leaderboard(votes: list[dict], models: list[str], n_boot: int = 200, seed: int = 0) -> dict:
    """Per model: votes, wins, ties, losses, both-bad, win rate ``(wins + ties/2) / (wins + ties + losses)`` with
    a 95% Wilson interval, and "real <language>" ticks; Bradley–Terry scores with percentile bootstrap
    intervals (votes resampled) for three or more models; the head-to-head win rates."""
    import numpy as np

    rows = {m: {"model": m, "label": display_name(m), "votes": 0, "wins": 0, "ties": 0, "losses": 0, "both_bad": 0,
                "real_lang": 0, "real_lang_asked": 0} for m in models}
    head: dict[tuple[str, str], list[float]] = {}
    for v in votes:
        a, b = v["model_a"], v["model_b"]
        if a not in rows or b not in rows:
            continue
        for m in (a, b):
            rows[m]["votes"] += 1
        if v["vote"] == "both_bad":
            rows[a]["both_bad"] += 1
            rows[b]["both_bad"] += 1
        elif v["vote"] == "tie":
            rows[a]["ties"] += 1
            rows[b]["ties"] += 1
        else:
            win, lose = (a, b) if v["vote"] == "A" else (b, a)
            rows[win]["wins"] += 1
            rows[lose]["losses"] += 1
        if v.get("real_lang"):
            for m, side in ((a, "A"), (b, "B")):
                rows[m]["real_lang_asked"] += 1
                rows[m]["real_lang"] += v["real_lang"] in (side, "both")
    for a, b, s in _outcomes(votes):
        if a in rows and b in rows:
            head.setdefault((a, b), []).append(s)
            head.setdefault((b, a), []).append(1 - s)
    for r in rows.values():
        n = r["wins"] + r["ties"] + r["losses"]
        k = r["wins"] + 0.5 * r["ties"]
        r["win_rate"] = k / n if n else None
        r["win_rate_ci"] = wilson_interval(k, n) if n else None
        r["real_lang_rate"] = r["real_lang"] / r["real_lang_asked"] if r["real_lang_asked"] else None
    out = {"n_votes": len(votes), "models": list(rows.values()),
           "head_to_head": [{"model": a, "opponent": b, "n": len(s), "win_rate": sum(s) / len(s)}
                            for (a, b), s in sorted(head.items())]}
    outcomes = list(_outcomes([v for v in votes if v["model_a"] in rows and v["model_b"] in rows]))
    if len(models) >= 3 and outcomes:
        bt = bradley_terry(outcomes, models)
        rng = np.random.default_rng(seed)
        boots = {m: [] for m in models}
        for _ in range(n_boot):
            sample = [outcomes[i] for i in rng.integers(0, len(outcomes), len(outcomes))]
            for m, s in bradley_terry(sample, models, iters=200, tol=1e-6).items():
                boots[m].append(s)
        for r in rows.values():
            r["bt"] = bt[r["model"]]
            r["bt_ci"] = (float(np.percentile(boots[r["model"]], 2.5)), float(np.percentile(boots[r["model"]], 97.5)))
    out["models"].sort(key=lambda r: -(r.get("bt") or r["win_rate"] or 0))
    return out


def preference_pairs(votes: list[dict]) -> list[dict]:
    """Decided votes (A or B) as DPO preference pairs ``{id, lang, prompt, chosen, rejected, ...}``, a format
    ``clo train --data`` reads: plain DPO is ``--method clo --lambda 0`` (docs/workshop.md, "From votes to
    training data"). Ties and both-bad are left out: they prefer nothing."""
    out = []
    for v in votes:
        if v["vote"] not in ("A", "B"):
            continue
        win, lose = ("a", "b") if v["vote"] == "A" else ("b", "a")
        out.append({"id": f"{v['round']}-{v['id']}", "lang": v.get("lang"), "prompt": v["prompt"],
                    "chosen": v[f"answer_{win}"], "rejected": v[f"answer_{lose}"],
                    "chosen_model": display_name(v[f"model_{win}"]), "rejected_model": display_name(v[f"model_{lose}"]),
                    "source": f"arena:{v['round']}"})
    return out


def _winner(v: dict) -> str:
    return {"A": v["model_a"], "B": v["model_b"]}.get(v["vote"], "tie")


def judge_agreement(human: list[dict], judged: list[dict]) -> dict:
    """How often the judge's verdict on a (prompt, pair) equals a human vote on it (ties count as verdicts;
    both-bad counts as tie). ``per_vote``: share of human votes the judge agrees with."""
    verdict = {(v["prompt_id"], _pair(v["model_a"], v["model_b"])): _winner(v) for v in judged}
    agree = n = 0
    for v in human:
        key = (v["prompt_id"], _pair(v["model_a"], v["model_b"]))
        if key in verdict:
            n += 1
            agree += verdict[key] == _winner(v)
    return {"n": n, "agreement": agree / n if n else None, "agreement_ci": wilson_interval(agree, n) if n else None}

