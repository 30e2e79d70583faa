"""The Arena: a blind, pairwise vote on models' answers that a whole workshop room takes part in (docs/workshop.md).

A host opens a *round* (two or more models, a prompt set, generation settings) under a short code. Every
answer is generated once per (model, prompt, settings) and cached in SQLite, so 30 participants cost no more
than one. Each participant gets one prompt and two anonymous answers in random order, votes A / B / tie /
both bad (and optionally which answer is real <language>), and sees the models' names only afterwards.

The ballot box: a *participant* is a browser, not a tab session. The participants' app keeps a random token in a
cookie (:data:`COOKIE`) and votes as :func:`participant_id` (the token tied to the round), so a reload, a new
tab or a restarted browser is the same participant. :meth:`Arena.next_matchup` skips what the participant has
voted on, and a UNIQUE constraint refuses a repeated vote. Each round has :class:`Limits` the host sets: votes
per minute and participants per client address, checked in the same transaction that stores the vote
(:class:`ArenaLimit` carries the message to show). :meth:`Arena.participants` flags outliers (:class:`OutlierRules`);
:meth:`Arena.exclude` marks a participant's votes, which the leaderboard and the exports then leave out while
the rows stay in the database.

    >>> arena = Arena("/tmp/arena.sqlite")
    >>> code = arena.create_round(["default", "runs/X"], prompts, GenerationOptions(max_new_tokens=64))
    >>> who = participant_id(code, new_token())
    >>> m = arena.next_matchup(code, who)
    >>> arena.record_vote(code, who, m, "A", address="192.168.1.20")
    >>> arena.leaderboard(code)["models"]

The database (WAL, one row per vote) lives at ``$CLO_HOME/arena.sqlite`` unless told otherwise; the host's
app and the participants' app (``clo arena``) share it: a round's settings the host changes (limits, showing the
English version of each prompt) reach every participant from there, and ``clo arena`` records where it serves
(:meth:`Arena.register_app`) so the host page can give the room the real join link. An older database is migrated
in place when opened (:data:`SCHEMA_VERSION`), keeping every vote.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import random
import re
import secrets
import sqlite3
import statistics
import time
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from clo.core.downloads import rows_to_csv
from clo.core.paths import clo_home
from clo.data.formats import DATA_DIR, read_records
from clo.evaluation.generate import GenerationOptions, generate
from clo.evaluation.metrics import wilson_interval
from clo.models.registry import display_name

__all__ = ["Arena", "VOTES", "REAL_LANG", "default_db", "bradley_terry", "leaderboard", "preference_pairs",
           "ArenaError", "ArenaLimit", "Limits", "OutlierRules", "COOKIE", "new_token", "valid_token",
           "participant_id", "client_address", "SCHEMA_VERSION", "english_version"]

VOTES = {"A": "A is better", "B": "B is better", "tie": "Tie", "both_bad": "Both are bad"}
REAL_LANG = {"A": "A", "B": "B", "both": "both", "neither": "neither"}
CODE_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I
HUMAN, JUDGE = "human", "judge"
COOKIE = "clo_arena_id"  # the participants' app keeps the browser's token under this name
COOKIE_DAYS = 30
LOOPBACK = "localhost"  # the address of a participant on the host's own machine (Streamlit reports none)
WINDOW_S = 60.0  # the rate limit's window

SCHEMA_VERSION = 3
SCHEMA = [
    """CREATE TABLE IF NOT EXISTS rounds (
    code TEXT PRIMARY KEY, created REAL NOT NULL, models TEXT NOT NULL, prompts TEXT NOT NULL,
    settings TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'open', votes_per_minute INTEGER,
    participants_per_address INTEGER, show_english INTEGER NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS answers (
    model TEXT NOT NULL, prompt TEXT NOT NULL, settings TEXT NOT NULL, answer TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (model, prompt, settings))""",
    """CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY AUTOINCREMENT, round TEXT NOT NULL, voter TEXT NOT NULL DEFAULT 'human',
    participant TEXT NOT NULL, prompt_id TEXT NOT NULL, lang TEXT, prompt TEXT NOT NULL,
    model_a TEXT NOT NULL, model_b TEXT NOT NULL, answer_a TEXT NOT NULL, answer_b TEXT NOT NULL,
    vote TEXT NOT NULL CHECK (vote IN ('A', 'B', 'tie', 'both_bad')), real_lang TEXT, time REAL NOT NULL,
    pair TEXT NOT NULL, address TEXT, excluded INTEGER NOT NULL DEFAULT 0,
    UNIQUE (round, voter, participant, prompt_id, pair))""",
    "CREATE INDEX IF NOT EXISTS votes_round ON votes (round)",
    "CREATE INDEX IF NOT EXISTS votes_address ON votes (round, address, time)",
    """CREATE TABLE IF NOT EXISTS exclusions (
    round TEXT NOT NULL, participant TEXT NOT NULL, time REAL NOT NULL, reason TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (round, participant))""",
    """CREATE TABLE IF NOT EXISTS apps (
    host TEXT NOT NULL, port INTEGER NOT NULL, pid INTEGER NOT NULL, started REAL NOT NULL,
    PRIMARY KEY (host, port))""",
]
# version 1 (no user_version): a vote's voter was a tab session (column `session`), no address, no exclusions
MIGRATE_1_TO_2 = {
    "votes": ["ALTER TABLE votes RENAME COLUMN session TO participant",
              "ALTER TABLE votes ADD COLUMN address TEXT",
              "ALTER TABLE votes ADD COLUMN excluded INTEGER NOT NULL DEFAULT 0"],
    "rounds": ["ALTER TABLE rounds ADD COLUMN votes_per_minute INTEGER",
               "ALTER TABLE rounds ADD COLUMN participants_per_address INTEGER"],
}
# version 2: no per-round English toggle, no record of where `clo arena` serves (the table `apps` is created)
MIGRATE_2_TO_3 = {"rounds": ("show_english", "ALTER TABLE rounds ADD COLUMN show_english INTEGER NOT NULL DEFAULT 0")}


class ArenaError(ValueError):
    """A round that does not exist, too few models, no prompts: one clear message."""


class ArenaLimit(ArenaError):
    """A vote refused by the round's :class:`Limits`; the message says which limit, and what to do."""


@dataclass(frozen=True)
class Limits:
    """What one client address may do in a round. Everyone in a room behind one router (a school's Wi-Fi, a
    phone hotspot) shares one address, so the defaults admit a full room voting briskly: 60 participants, and
    300 votes a minute (60 people each voting every 12 s). A host sets them per round, to the room's size."""

    votes_per_minute: int = 300
    participants_per_address: int = 60

    def __post_init__(self):
        for name in ("votes_per_minute", "participants_per_address"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ArenaError(f"{name.replace('_', ' ')} must be a whole number of at least 1, not {v!r}.")


@dataclass(frozen=True)
class OutlierRules:
    """When :meth:`Arena.participants` flags a participant for the host to look at (flags decide nothing)."""

    many_factor: float = 3.0  # more votes than 3× the median participant's …
    many_min: int = 10  # … and at least this many
    fast_s: float = 3.0  # a median gap between one's consecutive votes below this: nobody reads two answers that fast
    fast_min: int = 3  # votes needed before "fast" is judged
    same_side_min: int = 6  # this many votes or more, every one the same choice


def default_db() -> Path:
    return Path(os.environ.get("CLO_ARENA_DB") or clo_home() / "arena.sqlite")


_TOKEN = re.compile(r"[A-Za-z0-9_-]{22,64}")


def new_token() -> str:
    """A browser's random token (128 bits), kept in the participant's cookie."""
    return secrets.token_urlsafe(16)


def valid_token(value) -> str | None:
    """``value`` if it looks like a token :func:`new_token` made, else ``None`` (a forged or damaged cookie is
    replaced by a new token)."""
    return value if isinstance(value, str) and _TOKEN.fullmatch(value) else None


def participant_id(code: str, token: str) -> str:
    """The participant a browser's token is in round ``code``: the same token gives the same id in one round and
    unrelated ids in two rounds (the database never holds the token itself)."""
    return hashlib.sha256(f"{(code or '').strip().upper()}\x1f{token}".encode()).hexdigest()[:16]


def client_address(ip: str | None) -> str:
    """The address a vote counts against: Streamlit's ``st.context.ip_address``, which is ``None`` for a browser on
    the host's own machine (127.0.0.1 or ::1): those count as :data:`LOOPBACK` (so does anything not a string)."""
    return ip.strip() if isinstance(ip, str) and ip.strip() else LOOPBACK


@lru_cache(maxsize=1)
def _heldout_english() -> dict[tuple[str, str], str]:
    """(language, held-out prompt) → the English prompt of the same id: the bundled held-out set is parallel
    (assets/data/heldout/<lang>.jsonl, the same ids in every language)."""
    folder = DATA_DIR / "heldout"
    try:
        english = {r["id"]: r["prompt"] for r in read_records(folder / "en.jsonl")}
    except (OSError, ValueError, KeyError):
        return {}
    out = {}
    for path in folder.glob("*.jsonl"):
        if path.stem == "en":
            continue
        try:
            rows = read_records(path)
        except (OSError, ValueError):
            continue
        out.update({(path.stem, r["prompt"].strip()): english[r["id"]] for r in rows
                    if r.get("id") in english and isinstance(r.get("prompt"), str)})
    return out


def english_version(prompt: dict) -> str | None:
    """The English version of a prompt ``{lang, prompt[, prompt_en]}``: its own ``prompt_en`` (an uploaded file
    may carry one), else the parallel English of the bundled held-out set when the prompt is one of its prompts
    (matched by language and text, so a typed or uploaded copy finds it too); ``None`` for an English prompt or
    one without a parallel."""
    lang = str(prompt.get("lang") or "").strip()
    if lang == "en":
        return None
    own = prompt.get("prompt_en")
    if isinstance(own, str) and own.strip():
        return own.strip()
    return _heldout_english().get((lang, str(prompt.get("prompt") or "").strip()))


def _pair(a: str, b: str) -> str:
    return "\x1f".join(sorted((a, b)))


def _settings_key(opts: GenerationOptions) -> str:
    d = asdict(opts)
    d.pop("batch_size", None)  # does not change a greedy answer
    return json.dumps(d, sort_keys=True)


def _wait_s(times: list[float], limit: int, now: float) -> int:
    """Seconds until fewer than ``limit`` of ``times`` (sorted, inside the window) remain in the window."""
    return max(1, math.ceil(times[len(times) - limit] + WINDOW_S - now))


class Arena:
    """All Arena state in one SQLite file (WAL). Safe to use from many threads and processes: every call
    opens its own connection; a vote's limit checks and its insert run in one write transaction. ``clock``
    (seconds, like :func:`time.time`) stamps votes and drives the rate limit."""

    def __init__(self, path: str | Path | None = None, clock=time.time):
        self.path = Path(path) if path else default_db()
        self.clock = clock
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(self._connect()) as db:
                db.execute("PRAGMA journal_mode=WAL")
                self._migrate(db)
        except (sqlite3.DatabaseError, OSError) as e:
            raise ArenaError(f"Cannot open the Arena database {self.path}: {e}. Point $CLO_ARENA_DB (or --db) at "
                             "another file, or move this one aside.") from e

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA busy_timeout=30000")
        return db

    @contextmanager
    def _write(self):
        """One write transaction (BEGIN IMMEDIATE: other writers wait), committed unless an exception leaves."""
        with closing(self._connect()) as db:
            db.isolation_level = None
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _migrate(self, db: sqlite3.Connection) -> None:
        """Bring the database to :data:`SCHEMA_VERSION` in place, in one transaction (a failure changes nothing;
        two apps opening it at once migrate it once). Version 1's tab sessions become participants."""
        if db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return  # the common case (every page run opens the database): no write lock
        db.isolation_level = None
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ArenaError(f"The Arena database {self.path} was written by a newer CLO (schema {version}; "
                                 f"this one knows {SCHEMA_VERSION}). Update CLO, or point $CLO_ARENA_DB elsewhere.")
            if version < SCHEMA_VERSION:
                for table, steps in MIGRATE_1_TO_2.items():
                    cols = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
                    if cols and not ({"participant", "votes_per_minute"} & cols):  # a version-1 table
                        for step in steps:
                            db.execute(step)
                for table, (column, step) in MIGRATE_2_TO_3.items():
                    cols = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
                    if cols and column not in cols:
                        db.execute(step)
                for stmt in SCHEMA:
                    db.execute(stmt)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        finally:
            db.isolation_level = ""

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
                     progress=None, generate_fn=generate, code: str | None = None,
                     limits: Limits | None = None) -> str:
        """Generate (or reuse) every answer, then open a round; returns its code. Each prompt keeps its English
        version where there is one (:func:`english_version`), for the host to show participants."""
        models = list(dict.fromkeys(str(m) for m in models))
        if len(models) < 2:
            raise ArenaError("An Arena round needs at least two different models.")
        labels = [display_name(m) for m in models]
        if len(set(labels)) < len(labels):
            raise ArenaError("Two of the models would be revealed under the same name; pick differently named ones.")
        prompts = [{"id": str(p.get("id") or i), "lang": p.get("lang"), "prompt": p["prompt"],
                    "prompt_en": english_version(p)}
                   for i, p in enumerate(prompts) if str(p.get("prompt") or "").strip()]
        if not prompts:
            raise ArenaError("An Arena round needs at least one prompt.")
        if len({p["id"] for p in prompts}) < len(prompts):
            prompts = [{**p, "id": f"{i}"} for i, p in enumerate(prompts)]
        opts = opts or GenerationOptions(max_new_tokens=96)
        limits = limits or Limits()
        self.answers(models, prompts, opts, progress, generate_fn)
        with closing(self._connect()) as db, db:
            for _ in range(20):
                code = code or "".join(secrets.choice(CODE_CHARS) for _ in range(4))
                try:
                    db.execute("INSERT INTO rounds (code, created, models, prompts, settings, state, votes_per_minute, "
                               "participants_per_address) VALUES (?, ?, ?, ?, ?, 'open', ?, ?)",
                               (code, time.time(), json.dumps(models), json.dumps(prompts, ensure_ascii=False),
                                _settings_key(opts), limits.votes_per_minute, limits.participants_per_address))
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
                "prompts": json.loads(r["prompts"]), "settings": json.loads(r["settings"]), "state": r["state"],
                "limits": self._limits(r), "show_english": bool(r["show_english"])}

    @staticmethod
    def _limits(row) -> Limits:
        d = Limits()  # a round from before limits existed gets the defaults
        return Limits(votes_per_minute=row["votes_per_minute"] or d.votes_per_minute,
                      participants_per_address=row["participants_per_address"] or d.participants_per_address)

    def rounds(self) -> list[dict]:
        """Every round, newest first, with its count of human votes the leaderboard counts (not excluded)."""
        with closing(self._connect()) as db:
            rows = db.execute("SELECT code, created, models, state, (SELECT COUNT(*) FROM votes v WHERE v.round = "
                              "r.code AND v.voter = 'human' AND v.excluded = 0) AS n FROM rounds r "
                              "ORDER BY created DESC").fetchall()
        return [{"code": r["code"], "created": r["created"], "models": json.loads(r["models"]), "state": r["state"],
                 "votes": r["n"]} for r in rows]

    def set_state(self, code: str, state: str) -> None:
        with closing(self._connect()) as db, db:
            db.execute("UPDATE rounds SET state = ? WHERE code = ?", (state, code))

    def set_show_english(self, code: str, show: bool) -> None:
        """Whether participants see each prompt's English version (where it has one) under it; every participant's
        page follows from its next run (a vote, the next pair, a reload)."""
        code = self.round(code)["code"]
        with closing(self._connect()) as db, db:
            db.execute("UPDATE rounds SET show_english = ? WHERE code = ?", (int(bool(show)), code))

    # -- where the participants' app serves ---------------------------------------------------------------------

    def register_app(self, host: str, port: int, pid: int) -> None:
        """``clo arena`` says where it serves (the address it binds, its port, the server's process id), so that the
        host page can give the room the real join link."""
        with closing(self._connect()) as db, db:
            db.execute("INSERT OR REPLACE INTO apps VALUES (?, ?, ?, ?)", (host, int(port), int(pid), time.time()))

    def unregister_app(self, host: str, port: int) -> None:
        with closing(self._connect()) as db, db:
            db.execute("DELETE FROM apps WHERE host = ? AND port = ?", (host, int(port)))

    def apps(self) -> list[dict]:
        """Every participants' app ``clo arena`` registered, newest first: ``{host, port, pid, started}`` (one that
        died without unregistering stays listed; ``clo.workshop.join.running_apps`` keeps the live ones)."""
        with closing(self._connect()) as db:
            return [dict(r) for r in db.execute("SELECT host, port, pid, started FROM apps ORDER BY started DESC")]

    def limits(self, code: str) -> Limits:
        return self.round(code)["limits"]

    def set_limits(self, code: str, limits: Limits) -> None:
        """The host's limits for a round; they apply to the next vote."""
        code = self.round(code)["code"]
        with closing(self._connect()) as db, db:
            db.execute("UPDATE rounds SET votes_per_minute = ?, participants_per_address = ? WHERE code = ?",
                       (limits.votes_per_minute, limits.participants_per_address, code))

    def _answer_map(self, rnd: dict) -> dict[tuple[str, str], str]:
        key = json.dumps(rnd["settings"], sort_keys=True)  # as _settings_key wrote it
        with closing(self._connect()) as db:
            rows = db.execute(f"SELECT model, prompt, answer FROM answers WHERE settings = ? AND model IN "
                              f"({','.join('?' * len(rnd['models']))})", (key, *rnd["models"])).fetchall()
        return {(r["model"], r["prompt"]): r["answer"] for r in rows}

    # -- voting -----------------------------------------------------------------------------------------------

    def next_matchup(self, code: str, participant: str, rng: random.Random | None = None) -> dict | None:
        """One (prompt, two models in random order) this participant has not voted on, among the least-voted in
        the round; ``None`` when the participant has voted on every combination. Names stay on the server (the
        page shows only prompt and answers until the vote)."""
        rng = rng or random.Random()
        rnd = self.round(code)
        if rnd["state"] != "open":
            return None
        with closing(self._connect()) as db:
            seen = {(r["prompt_id"], r["pair"]) for r in db.execute(
                "SELECT prompt_id, pair FROM votes WHERE round = ? AND participant = ?", (rnd["code"], participant))}
            counts = {(r["prompt_id"], r["pair"]): r["n"] for r in db.execute(
                "SELECT prompt_id, pair, COUNT(*) AS n FROM votes WHERE round = ? AND voter = 'human' "
                "AND excluded = 0 GROUP BY prompt_id, pair", (rnd["code"],))}
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
                "prompt_en": p.get("prompt_en"), "model_a": a, "model_b": b,
                "answer_a": answers.get((a, p["prompt"]), ""), "answer_b": answers.get((b, p["prompt"]), "")}

    def _cap_message(self, db, code: str, participant: str, address: str, limits: Limits) -> str | None:
        known = db.execute("SELECT 1 FROM votes WHERE round = ? AND participant = ? AND voter = 'human' LIMIT 1",
                           (code, participant)).fetchone()
        if known:
            return None
        n = db.execute("SELECT COUNT(DISTINCT participant) FROM votes WHERE round = ? AND address = ? AND "
                       "voter = 'human'", (code, address)).fetchone()[0]
        if n < limits.participants_per_address:
            return None
        return (f"Round {code} already has {n} participant(s) from your network address, the most the host allows "
                f"from one address. Ask the host to raise “participants per address” on the Arena page, then "
                f"reload this page.")

    def admission(self, code: str, participant: str, address: str) -> str | None:
        """``None`` if ``participant`` may vote in the round from ``address``, else the message saying why not
        (the per-address cap on participants is full). :meth:`record_vote` checks it again."""
        rnd = self.round(code)
        with closing(self._connect()) as db:
            return self._cap_message(db, rnd["code"], participant, client_address(address), rnd["limits"])

    def record_vote(self, code: str, participant: str, matchup: dict, vote: str, real_lang: str | None = None,
                    voter: str = HUMAN, address: str | None = None) -> bool:
        """Store one vote; ``False`` (and nothing stored) when this participant already voted on that matchup.
        A human vote with an ``address`` is held to the round's :class:`Limits` first: :class:`ArenaLimit` (nothing
        stored) when the address has used its votes for the minute, or when a new participant would exceed the
        address's cap. A vote of an excluded participant is stored, marked excluded."""
        if vote not in VOTES:
            raise ArenaError(f"Unknown vote {vote!r}; one of {', '.join(VOTES)}.")
        if real_lang is not None and real_lang not in REAL_LANG:
            raise ArenaError(f"Unknown answer {real_lang!r} to 'which one is real'.")
        m = matchup
        code = (code or "").strip().upper()
        pair = _pair(m["model_a"], m["model_b"])
        with self._write() as db:
            if db.execute("SELECT 1 FROM votes WHERE round = ? AND voter = ? AND participant = ? AND prompt_id = ? "
                          "AND pair = ?", (code, voter, participant, m["prompt_id"], pair)).fetchone():
                return False
            now = self.clock()
            if voter == HUMAN and address is not None:
                row = db.execute("SELECT * FROM rounds WHERE code = ?", (code,)).fetchone()
                if row is None:
                    raise ArenaError(f"There is no round {code!r}.")
                limits = self._limits(row)
                if msg := self._cap_message(db, code, participant, address, limits):
                    raise ArenaLimit(msg)
                recent = [r[0] for r in db.execute(
                    "SELECT time FROM votes WHERE round = ? AND address = ? AND voter = 'human' AND time > ? "
                    "ORDER BY time", (code, address, now - WINDOW_S))]
                if len(recent) >= limits.votes_per_minute:
                    raise ArenaLimit(
                        f"Too many votes from your network: {len(recent)} in the last minute, the most the host "
                        f"allows from one address. Wait {_wait_s(recent, limits.votes_per_minute, now)} s and "
                        f"vote again — your vote was not stored yet.")
            excluded = db.execute("SELECT 1 FROM exclusions WHERE round = ? AND participant = ?",
                                  (code, participant)).fetchone() is not None
            db.execute("INSERT INTO votes (round, voter, participant, prompt_id, lang, prompt, model_a, model_b, "
                       "answer_a, answer_b, vote, real_lang, time, pair, address, excluded) "
                       "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                       (code, voter, participant, m["prompt_id"], m.get("lang"), m["prompt"], m["model_a"],
                        m["model_b"], m["answer_a"], m["answer_b"], vote, real_lang, now, pair, address,
                        int(excluded)))
        return True

    def votes(self, code: str, voter: str | None = HUMAN, include_excluded: bool = False) -> list[dict]:
        """The round's votes in order (``voter`` ``None``: humans and judge); excluded participants' votes only
        with ``include_excluded``."""
        q = "SELECT * FROM votes WHERE round = ?" + (" AND voter = ?" if voter else "")
        q += "" if include_excluded else " AND excluded = 0"
        with closing(self._connect()) as db:
            rows = db.execute(q + " ORDER BY id", (code, voter) if voter else (code,)).fetchall()
        return [{k: r[k] for k in r.keys() if k != "pair"} for r in rows]

    # -- the host's view of the ballot box --------------------------------------------------------------------

    def participants(self, code: str, rules: OutlierRules | None = None) -> list[dict]:
        """Per human participant of the round: votes, addresses, first and last vote, the median seconds between
        consecutive votes, the share of each choice, whether excluded, and ``flags`` (:class:`OutlierRules`):
        too many votes, too fast, always the same choice. Flagged participants first, then by votes."""
        rules = rules or OutlierRules()
        rnd = self.round(code)
        with closing(self._connect()) as db:
            rows = db.execute("SELECT participant, vote, time, address FROM votes WHERE round = ? AND voter = 'human' "
                              "ORDER BY time", (rnd["code"],)).fetchall()
            excl = {r["participant"]: dict(r) for r in db.execute(
                "SELECT participant, time, reason FROM exclusions WHERE round = ?", (rnd["code"],))}
        by: dict[str, list] = {}
        for r in rows:
            by.setdefault(r["participant"], []).append(r)
        median_votes = statistics.median(len(v) for v in by.values()) if by else 0
        out = []
        for who, vs in by.items():
            times = [v["time"] for v in vs]
            gaps = [b - a for a, b in zip(times, times[1:])]
            gap = statistics.median(gaps) if gaps else None
            choices = {c: sum(v["vote"] == c for v in vs) for c in VOTES}
            top, n_top = max(choices.items(), key=lambda kv: kv[1])
            flags = []
            if len(vs) >= rules.many_min and len(vs) > rules.many_factor * median_votes:
                flags.append(f"many votes ({len(vs)}; the median participant has {median_votes:g})")
            if len(vs) >= rules.fast_min and gap is not None and gap < rules.fast_s:
                flags.append(f"fast ({gap:.1f} s between votes)")
            if len(vs) >= rules.same_side_min and n_top == len(vs):
                flags.append(f"always “{VOTES[top]}”")
            out.append({"participant": who, "votes": len(vs), "addresses": sorted({v["address"] or "" for v in vs}),
                        "first": times[0], "last": times[-1], "median_gap_s": gap,
                        "choices": choices, "flags": flags, "excluded": who in excl,
                        "excluded_reason": excl.get(who, {}).get("reason", "")})
        out.sort(key=lambda p: (not p["flags"], -p["votes"], p["first"]))
        return out

    def exclude(self, code: str, participant: str, reason: str = "") -> int:
        """Leave ``participant``'s votes out of the leaderboard and the exports (and any vote they cast later); the
        rows stay in the database, marked ``excluded``. Returns how many votes were marked."""
        code = self.round(code)["code"]
        with self._write() as db:
            n = db.execute("SELECT COUNT(*) FROM votes WHERE round = ? AND participant = ? AND voter = 'human'",
                           (code, participant)).fetchone()[0]
            if not n:
                raise ArenaError(f"Participant {participant!r} has no vote in round {code}.")
            db.execute("INSERT OR REPLACE INTO exclusions VALUES (?, ?, ?, ?)",
                       (code, participant, self.clock(), (reason or "").strip()[:200]))
            db.execute("UPDATE votes SET excluded = 1 WHERE round = ? AND participant = ?", (code, participant))
        return n

    def include(self, code: str, participant: str) -> int:
        """Undo :meth:`exclude`: the participant's votes count again. Returns how many votes were unmarked."""
        code = self.round(code)["code"]
        with self._write() as db:
            db.execute("DELETE FROM exclusions WHERE round = ? AND participant = ?", (code, participant))
            return db.execute("UPDATE votes SET excluded = 0 WHERE round = ? AND participant = ?",
                              (code, participant)).rowcount

    def summary(self, code: str) -> dict:
        """What an export stands on: human participants who voted, how many of them are excluded, the votes kept and
        the votes left out."""
        code = self.round(code)["code"]
        with closing(self._connect()) as db:
            r = db.execute("SELECT COUNT(DISTINCT participant) AS p, COUNT(DISTINCT CASE WHEN excluded THEN "
                           "participant END) AS pe, SUM(excluded = 0) AS v, SUM(excluded) AS ve FROM votes "
                           "WHERE round = ? AND voter = 'human'", (code,)).fetchone()
        return {"round": code, "participants": r["p"], "excluded_participants": r["pe"], "votes": r["v"] or 0,
                "excluded_votes": r["ve"] or 0}

    # -- results ----------------------------------------------------------------------------------------------

    def leaderboard(self, code: str, **kw) -> dict:
        """:func:`leaderboard` over the round's human votes, excluded participants left out, plus the judge's
        agreement with them when the judge voted; ``summary``: :meth:`summary`."""
        rnd = self.round(code)
        human = self.votes(rnd["code"])
        out = leaderboard(human, rnd["models"], **kw)
        out["summary"] = self.summary(rnd["code"])
        judged = self.votes(rnd["code"], JUDGE)
        if judged:
            out["judge_agreement"] = judge_agreement(human, judged)
        return out

    def votes_csv(self, code: str, audit: bool = False) -> str:
        """The round's votes (humans and judge) as CSV, text cells formula-escaped (clo.core.downloads). Excluded
        participants' votes are left out; ``audit`` keeps every vote, with its client address and the
        ``excluded`` mark."""
        rows = self.votes(code, voter=None, include_excluded=audit)
        if not audit:
            rows = [{k: v for k, v in r.items() if k not in ("address", "excluded")} for r in rows]
        return rows_to_csv(rows)

    def preference_pairs(self, code: str) -> list[dict]:
        """The decided human votes, excluded participants left out, as preference pairs (:func:`preference_pairs`)."""
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

