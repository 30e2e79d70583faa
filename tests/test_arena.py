"""The Arena library: rounds, cached answers, matchups never repeated, votes from many threads, the leaderboard
against a hand computation, formula-safe CSV, preference pairs that `clo train` reads; the ballot box: participant
ids, the per-address rate limit and cap, outlier flags, exclusions, and the in-place migration of an old database."""
from __future__ import annotations

import csv
import io
import json
import math
import signal
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from clo.evaluation.generate import GenerationOptions
from clo.workshop.arena import (
    LOOPBACK,
    SCHEMA_VERSION,
    Arena,
    ArenaError,
    ArenaLimit,
    Limits,
    bradley_terry,
    client_address,
    leaderboard,
    new_token,
    participant_id,
    preference_pairs,
    valid_token,
)

MODELS = ["m/alpha", "m/beta", "m/gamma"]
PROMPTS = [{"id": "p1", "lang": "sw", "prompt": "Habari?"}, {"id": "p2", "lang": "sw", "prompt": "Jua?"}]


class Counting:
    """A stand-in generation function that records what it was asked (the real one runs in the UI tests)."""

    def __init__(self):
        self.calls = []

    def __call__(self, model, prompts, opts):
        self.calls.append((model, list(prompts)))
        return [f"=cmd|' /C calc'!A0 {model} says {p}" if model.endswith("alpha") else f"{model} says {p}"
                for p in prompts]


@pytest.fixture()
def arena(tmp_path):
    return Arena(tmp_path / "arena.sqlite")


def test_answers_are_generated_once_per_model_prompt_settings(arena):
    gen = Counting()
    opts = GenerationOptions(max_new_tokens=8)
    code = arena.create_round(MODELS, PROMPTS, opts, generate_fn=gen)
    assert len(code) == 4 and len(gen.calls) == 3
    arena.create_round(MODELS, PROMPTS, opts, generate_fn=gen)  # the same settings: all from the cache
    assert len(gen.calls) == 3
    arena.create_round(MODELS[:2], PROMPTS, GenerationOptions(max_new_tokens=9), generate_fn=gen)
    assert len(gen.calls) == 5
    with pytest.raises(ArenaError):
        arena.create_round(["m/alpha"], PROMPTS, opts, generate_fn=gen)
    with pytest.raises(ArenaError):
        arena.round("NOPE")


def test_a_participant_never_sees_the_same_pair_twice_and_votes_from_many_threads_land(arena):
    code = arena.create_round(MODELS, PROMPTS, GenerationOptions(max_new_tokens=8), generate_fn=Counting())
    combos = len(PROMPTS) * 3  # 2 prompts × 3 pairs of models
    stored, errors = [], []

    def participant(i):
        try:
            seen = set()
            while (m := arena.next_matchup(code, f"s{i}")) is not None:
                key = (m["prompt_id"], frozenset((m["model_a"], m["model_b"])))
                assert key not in seen
                seen.add(key)
                # one address for all (a room behind one router): the default limits admit the whole room
                assert arena.record_vote(code, f"s{i}", m, ["A", "B", "tie", "both_bad"][i % 4], "A",
                                         address="10.0.0.1")
                assert not arena.record_vote(code, f"s{i}", m, "A", address="10.0.0.1")  # a second click
                stored.append(key)
            assert len(seen) == combos
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=participant, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    votes = arena.votes(code)
    assert len(votes) == len(stored) == 24 * combos
    keys = {(v["participant"], v["prompt_id"], frozenset((v["model_a"], v["model_b"]))) for v in votes}
    assert len(keys) == len(votes)
    assert arena.leaderboard(code)["n_votes"] == len(votes)


# A fixed vote table: alpha beat beta 3×, lost once, one tie; beta beat gamma twice; alpha–gamma a tie and a
# both-bad; gamma beat alpha once.
TABLE = [("m/alpha", "m/beta", "A")] * 2 + [("m/beta", "m/alpha", "B"), ("m/beta", "m/alpha", "A"),
                                             ("m/alpha", "m/beta", "tie"), ("m/beta", "m/gamma", "A"),
                                             ("m/gamma", "m/beta", "B"), ("m/alpha", "m/gamma", "tie"),
                                             ("m/alpha", "m/gamma", "both_bad"), ("m/gamma", "m/alpha", "A")]


def _votes(table):
    return [{"id": i, "round": "R", "prompt_id": f"p{i}", "lang": "sw", "prompt": f"q{i}", "model_a": a, "model_b": b,
             "answer_a": f"answer {a}", "answer_b": f"answer {b}", "vote": v, "real_lang": None}
            for i, (a, b, v) in enumerate(table)]


def test_leaderboard_equals_a_hand_computation():
    board = leaderboard(_votes(TABLE), MODELS, n_boot=50)
    rows = {r["model"]: r for r in board["models"]}
    # alpha: wins 3 (A, A, B-as-b), losses 2 (beta A, gamma A), ties 2, both-bad 1 → (3 + 1) / 7
    a = rows["m/alpha"]
    assert (a["wins"], a["losses"], a["ties"], a["both_bad"], a["votes"]) == (3, 2, 2, 1, 8)
    assert a["win_rate"] == pytest.approx(4 / 7)
    # beta: wins 1 + 2 = 3, losses 3, ties 1 → 3.5 / 7; gamma: wins 1, losses 2, ties 1 → 1.5 / 4
    assert rows["m/beta"]["win_rate"] == pytest.approx(3.5 / 7)
    assert rows["m/gamma"]["win_rate"] == pytest.approx(1.5 / 4)
    lo, hi = a["win_rate_ci"]
    z, n, p = 1.96, 7, 4 / 7  # Wilson by hand
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (lo, hi) == (pytest.approx(centre - half), pytest.approx(centre + half))
    # Bradley–Terry: the scores solve the likelihood equations (wins_i = Σ_j n_ij p_i / (p_i + p_j)), prior 0.5
    p = {m: 10 ** ((rows[m]["bt"] - 1000) / 400) for m in MODELS}
    wins = {("m/alpha", "m/beta"): 3.5, ("m/beta", "m/alpha"): 1.5, ("m/beta", "m/gamma"): 2,
            ("m/gamma", "m/beta"): 0, ("m/alpha", "m/gamma"): 0.5, ("m/gamma", "m/alpha"): 1.5}
    for i in MODELS:
        w = sum(wins[(i, j)] + 0.5 for j in MODELS if j != i)
        expected = sum((wins[(i, j)] + wins[(j, i)] + 1) * p[i] / (p[i] + p[j]) for j in MODELS if j != i)
        assert w == pytest.approx(expected, rel=1e-6)
    assert all(r["bt_ci"][0] <= r["bt"] <= r["bt_ci"][1] for r in rows.values())
    assert rows["m/alpha"]["bt"] > rows["m/gamma"]["bt"]


def test_bradley_terry_two_models_closed_form():
    # with two models the maximum-likelihood ratio is (wins_a + prior) / (wins_b + prior)
    bt = bradley_terry([("a", "b", 1.0)] * 3 + [("a", "b", 0.0)], ["a", "b"], prior=0.5)
    assert 10 ** ((bt["a"] - bt["b"]) / 400) == pytest.approx(3.5 / 1.5)


def test_csv_export_escapes_formulas(arena):
    code = arena.create_round(MODELS, PROMPTS, GenerationOptions(max_new_tokens=8), generate_fn=Counting())
    while (m := arena.next_matchup(code, "s")) is not None:
        arena.record_vote(code, "s", m, "A")
    rows = list(csv.DictReader(io.StringIO(arena.votes_csv(code))))
    assert len(rows) == 6
    cells = [v for r in rows for k, v in r.items() if k.startswith("answer_")]
    assert any(c.startswith("'=cmd") for c in cells) and not any(c.startswith("=") for c in cells)


def test_decided_votes_become_pairs_clo_train_reads(tmp_path):
    from clo.data.formats import load_crosslingual, write_jsonl
    from clo.data.pairs import build_pairs

    pairs = preference_pairs(_votes(TABLE))
    assert len(pairs) == 7  # ties and both-bad prefer nothing
    first = pairs[0]
    assert (first["chosen"], first["rejected"], first["lang"]) == ("answer m/alpha", "answer m/beta", "sw")
    assert pairs[2]["chosen"] == "answer m/alpha"  # a B vote: the second answer won
    path = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    records = load_crosslingual(path, "sw")
    built = build_pairs(records)
    assert len(built) == 2 * len(pairs)  # each pair fills both rows of its sample: the mean loss is plain DPO
    assert all((b["prompt"], b["chosen"], b["rejected"]) == (p["prompt"], p["chosen"], p["rejected"])
               for b, p in zip(built[::2], pairs))
    assert {b["direction"] for b in built} == {"tgt"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "1", "lang": "sw", "prompt": "q", "chosen": "a"}) + "\n")
    from clo.data.formats import DataError

    with pytest.raises(DataError, match="rejected"):
        load_crosslingual(bad, "sw")


def test_exported_votes_train_with_plain_dpo(tiny_model, tmp_path, capsys):
    """`clo arena export` then `clo train --method clo --lambda 0` on the pairs: the class's votes, trained on."""
    from clo.cli.main import main
    from clo.runs.rundir import RunDir

    db = tmp_path / "arena.sqlite"
    arena = Arena(db)
    code = arena.create_round(MODELS, PROMPTS, GenerationOptions(max_new_tokens=8), generate_fn=Counting())
    for s in ("s1", "s2"):
        while (m := arena.next_matchup(code, s)) is not None:
            arena.record_vote(code, s, m, "A" if s == "s1" else "B")
    out = tmp_path / "pairs.jsonl"
    assert main(["arena", "--db", str(db), "export", code.lower(), "--out", str(out),
                 "--csv", str(tmp_path / "v.csv")]) == 0
    assert len(out.read_text().splitlines()) == 12
    assert main(["arena", "--db", str(db), "export", "NOPE", "--out", str(out)]) == 2
    run = tmp_path / "run"
    assert main(["train", "--model", str(tiny_model), "--data", str(out), "--lang", "sw", "--method", "clo",
                 "--lambda", "0", "--max-steps", "1", "--batch-size", "2", "--out", str(run), "--json"]) == 0
    assert RunDir(run).status()["state"] == "finished" and RunDir(run).has_model()



# -- the ballot box ---------------------------------------------------------------------------------------------------


class Clock:
    """A hand-moved clock for the rate limit (tests never wait on the wall clock)."""

    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def _round(tmp_path, prompts=PROMPTS, limits=None, clock=None):
    arena = Arena(tmp_path / "arena.sqlite", clock=clock or Clock())
    return arena, arena.create_round(MODELS, prompts, GenerationOptions(max_new_tokens=8), generate_fn=Counting(),
                                     limits=limits)


def _vote(arena, code, who, choice="A", address="10.0.0.7"):
    m = arena.next_matchup(code, who)
    assert m is not None, f"{who} has nothing left to vote on"
    return arena.record_vote(code, who, m, choice, address=address)


def test_participant_ids_are_tied_to_the_round_and_tokens_are_checked():
    token = new_token()
    assert valid_token(token) == token and len(token) >= 22
    assert participant_id("k7qm", token) == participant_id(" K7QM ", token) != participant_id("ABCD", token)
    assert token not in participant_id("K7QM", token)
    for junk in (None, "", "short", "x" * 65, "<script>alert(1)</script>", 42, "a" * 21 + "!"):
        assert valid_token(junk) is None
    assert client_address(None) == client_address("") == LOOPBACK  # Streamlit reports no address for 127.0.0.1
    assert client_address(" 192.168.1.20 ") == "192.168.1.20"


def test_a_flood_from_one_address_is_rate_limited_and_nothing_is_stored(tmp_path):
    clock = Clock()
    arena, code = _round(tmp_path, limits=Limits(votes_per_minute=3, participants_per_address=100), clock=clock)
    for i in range(3):  # a script that drops its cookie: a new participant for every vote
        clock.t += 1
        assert _vote(arena, code, f"bot{i}")
    clock.t += 1
    with pytest.raises(ArenaLimit, match=r"Too many votes from your network: 3 in the last minute.*Wait 57 s"):
        _vote(arena, code, "bot3")
    assert len(arena.votes(code)) == 3
    assert _vote(arena, code, "phone", address="10.0.0.8")  # another address has its own budget
    arena.record_vote(code, "judge:x", arena.matchups(code)[0], "tie", voter="judge")  # the judge has no address
    clock.t += 57  # the first vote has left the window
    assert _vote(arena, code, "bot3")
    with pytest.raises(ArenaLimit):
        _vote(arena, code, "bot4")
    assert len(arena.votes(code)) == 5


def test_the_hosts_cap_on_participants_per_address(tmp_path):
    arena, code = _round(tmp_path, limits=Limits(participants_per_address=2))
    assert _vote(arena, code, "p1") and _vote(arena, code, "p2")
    message = arena.admission(code, "p3", "10.0.0.7")
    assert "already has 2 participant(s) from your network address" in message and "participants per address" in message
    with pytest.raises(ArenaLimit, match="from your network address"):
        _vote(arena, code, "p3")
    assert arena.admission(code, "p1", "10.0.0.7") is None and _vote(arena, code, "p1")  # known ones go on
    assert _vote(arena, code, "p3", address="10.0.0.9")  # another address
    arena.set_limits(code, Limits(participants_per_address=3))
    assert arena.limits(code).participants_per_address == 3
    assert arena.admission(code, "p4", "10.0.0.7") is None and _vote(arena, code, "p4")
    with pytest.raises(ArenaError, match="at least 1"):
        Limits(votes_per_minute=0)
    with pytest.raises(ArenaError, match="whole number"):
        Limits(participants_per_address=2.5)


def test_the_default_limits_admit_a_room_behind_one_router(tmp_path):
    """40 people on one school Wi-Fi, each voting every 10 s for a minute (240 votes): every vote lands."""
    clock = Clock()
    prompts = [{"id": f"p{i}", "lang": "sw", "prompt": f"Swali {i}?"} for i in range(3)]  # 9 matchups each
    arena, code = _round(tmp_path, prompts=prompts, clock=clock)
    for _ in range(6):
        for person in range(40):
            clock.t += 10 / 40
            assert _vote(arena, code, f"person{person}", address="192.168.0.1")
    assert len(arena.votes(code)) == 240


def test_outliers_are_flagged(tmp_path):
    clock = Clock()
    prompts = [{"id": f"p{i}", "lang": "sw", "prompt": f"Swali {i}?"} for i in range(4)]  # 12 matchups
    arena, code = _round(tmp_path, prompts=prompts, clock=clock)
    for person in range(5):  # ordinary people: two votes each, 20 s apart, mixed choices
        for choice in ("A", "B"):
            clock.t += 20
            _vote(arena, code, f"person{person}", choice)
    for _ in range(12):  # a script: a vote a second, always A
        clock.t += 1
        _vote(arena, code, "script", "A")
    people = {p["participant"]: p for p in arena.participants(code)}
    flags = people["script"]["flags"]
    assert any(f.startswith("many votes (12") for f in flags)
    assert any(f.startswith("fast (1.0 s") for f in flags)
    assert "always “A is better”" in flags
    assert all(not people[f"person{i}"]["flags"] for i in range(5))
    assert people["person0"]["choices"] == {"A": 1, "B": 1, "tie": 0, "both_bad": 0}
    assert people["person0"]["median_gap_s"] == 20 and people["person0"]["addresses"] == ["10.0.0.7"]
    assert arena.participants(code)[0]["participant"] == "script"  # flagged first


def test_an_excluded_participants_votes_leave_the_leaderboard_and_exports_but_stay_in_the_database(tmp_path, capsys):
    from clo.cli.main import main

    arena, code = _round(tmp_path)
    for who, choice in (("s1", "A"), ("s2", "B"), ("s3", "A")):
        while arena.next_matchup(code, who) is not None:
            _vote(arena, code, who, choice)
    assert arena.leaderboard(code)["n_votes"] == 18 and len(arena.preference_pairs(code)) == 18
    assert arena.exclude(code, "s2", "always clicks B") == 6
    board = arena.leaderboard(code)
    assert board["n_votes"] == 12 and board["summary"] == {"round": code, "participants": 3,
                                                           "excluded_participants": 1, "votes": 12,
                                                           "excluded_votes": 6}
    assert all(v["participant"] != "s2" for v in arena.votes(code))
    assert len(arena.preference_pairs(code)) == 12
    assert "s2" not in arena.votes_csv(code) and "10.0.0.7" not in arena.votes_csv(code)
    audit = list(csv.DictReader(io.StringIO(arena.votes_csv(code, audit=True))))
    assert len(audit) == 18 and {r["excluded"] for r in audit if r["participant"] == "s2"} == {"1"}
    kept = arena.votes(code, include_excluded=True)  # still in the database, marked
    assert len(kept) == 18 and sum(v["excluded"] for v in kept) == 6
    people = {p["participant"]: p for p in arena.participants(code)}
    assert people["s2"]["excluded"] and people["s2"]["excluded_reason"] == "always clicks B"

    out = tmp_path / "pairs.jsonl"
    assert main(["arena", "--db", str(arena.path), "export", code, "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 12
    said = capsys.readouterr().err
    assert "3 participant(s) voted; 1 excluded, their 6 vote(s) left out" in said

    assert arena.include(code, "s2") == 6
    assert arena.leaderboard(code)["n_votes"] == 18 and arena.summary(code)["excluded_participants"] == 0
    with pytest.raises(ArenaError, match="no vote"):
        arena.exclude(code, "nobody")


def test_a_later_vote_of_an_excluded_participant_is_stored_marked(tmp_path):
    arena, code = _round(tmp_path)
    _vote(arena, code, "s1")
    arena.exclude(code, "s1")
    assert _vote(arena, code, "s1")  # the participant is not told: a script learns nothing to adapt to
    assert arena.votes(code) == [] and [v["excluded"] for v in arena.votes(code, include_excluded=True)] == [1, 1]


V1_SCHEMA = """
CREATE TABLE rounds (
    code TEXT PRIMARY KEY, created REAL NOT NULL, models TEXT NOT NULL, prompts TEXT NOT NULL,
    settings TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'open');
CREATE TABLE answers (
    model TEXT NOT NULL, prompt TEXT NOT NULL, settings TEXT NOT NULL, answer TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (model, prompt, settings));
CREATE TABLE votes (
    id INTEGER PRIMARY KEY AUTOINCREMENT, round TEXT NOT NULL, voter TEXT NOT NULL DEFAULT 'human',
    session TEXT NOT NULL, prompt_id TEXT NOT NULL, lang TEXT, prompt TEXT NOT NULL,
    model_a TEXT NOT NULL, model_b TEXT NOT NULL, answer_a TEXT NOT NULL, answer_b TEXT NOT NULL,
    vote TEXT NOT NULL CHECK (vote IN ('A', 'B', 'tie', 'both_bad')), real_lang TEXT, time REAL NOT NULL,
    pair TEXT NOT NULL, UNIQUE (round, voter, session, prompt_id, pair));
CREATE INDEX votes_round ON votes (round);
"""


def test_an_existing_database_is_migrated_in_place_and_keeps_every_vote(tmp_path):
    """A database written before participants, addresses and exclusions (the schema as it was, verbatim): opening it
    migrates it in place; every vote stays, a tab session becomes a participant, and the round gets the defaults."""
    import sqlite3

    db = tmp_path / "arena.sqlite"
    settings = json.dumps({"max_new_tokens": 8}, sort_keys=True)
    with sqlite3.connect(db) as con:
        con.executescript(V1_SCHEMA)
        con.execute("INSERT INTO rounds VALUES ('OLD1', 1.0, ?, ?, ?, 'open')",
                    (json.dumps(MODELS), json.dumps(PROMPTS), settings))
        con.executemany("INSERT INTO answers VALUES (?, ?, ?, ?, 1.0)",
                        [(m, p["prompt"], settings, f"{m} on {p['prompt']}") for m in MODELS for p in PROMPTS])
        pair = "\x1f".join(sorted(MODELS[:2]))
        old = [("OLD1", "human", sess, "p1", "sw", "Habari?", MODELS[0], MODELS[1], "a", "b", vote, None, 2.0 + i, pair)
               for i, (sess, vote) in enumerate([("tab1", "A"), ("tab2", "B"), ("tab3", "A")])]
        con.executemany("INSERT INTO votes (round, voter, session, prompt_id, lang, prompt, model_a, model_b, "
                        "answer_a, answer_b, vote, real_lang, time, pair) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", old)

    arena = Arena(db)
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    votes = arena.votes("OLD1")
    assert [(v["participant"], v["vote"], v["time"], v["address"], v["excluded"]) for v in votes] == [
        ("tab1", "A", 2.0, None, 0), ("tab2", "B", 3.0, None, 0), ("tab3", "A", 4.0, None, 0)]
    assert arena.leaderboard("OLD1")["n_votes"] == 3 and arena.limits("OLD1") == Limits()
    m = {"prompt_id": "p1", "lang": "sw", "prompt": "Habari?", "model_a": MODELS[1], "model_b": MODELS[0],
         "answer_a": "b", "answer_b": "a"}
    assert not arena.record_vote("OLD1", "tab1", m, "B", address="10.0.0.1")  # the old UNIQUE still holds
    assert arena.record_vote("OLD1", "tab4", m, "B", address="10.0.0.1")
    assert arena.exclude("OLD1", "tab2") == 1 and arena.leaderboard("OLD1")["n_votes"] == 3
    assert len(Arena(db).votes("OLD1", include_excluded=True)) == 4  # a second open migrates nothing again


def test_a_damaged_or_newer_database_gives_one_clear_message(tmp_path):
    import sqlite3

    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ArenaError, match="Cannot open the Arena database"):
        Arena(bad)
    newer = tmp_path / "newer.sqlite"
    with sqlite3.connect(newer) as con:
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ArenaError, match="newer CLO"):
        Arena(newer)



def _start_arena(tmp_path, sighup):
    """`clo arena` on a free port, started with SIGHUP's disposition set to ``sighup`` (a terminal's default, or
    ignored as under ``nohup``), once its server answers; returns (process, port)."""
    import os
    import signal
    import sys

    from helpers import free_port, start_streamlit

    root = Path(__file__).resolve().parent.parent
    port = free_port()
    cmd = [sys.executable, "-m", "clo", "arena", "--port", str(port), "--db", str(tmp_path / "arena.sqlite")]
    proc = start_streamlit(cmd, {**os.environ, "PYTHONPATH": str(root)}, tmp_path / "arena.log", port, timeout_s=90,
                           preexec_fn=lambda: signal.signal(signal.SIGHUP, sighup))
    return proc, port


def _health(port: int, timeout: float) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=timeout) as r:
        return r.read()


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGHUP"])
def test_stopping_clo_arena_stops_its_server(tmp_path, stop):
    """`clo arena` runs Streamlit as a child: a supervisor's SIGTERM (or a closed terminal's SIGHUP) to the command
    must end the server too, not leave it holding the port (it did: a stopped `clo arena` kept serving)."""
    import psutil

    # a terminal's default for SIGHUP, even when this suite runs under nohup (which makes children ignore it)
    proc, port = _start_arena(tmp_path, signal.SIG_DFL)
    server = psutil.Process(proc.pid).children(recursive=True)
    try:
        proc.send_signal(getattr(signal, stop))
        proc.wait(timeout=60)
        deadline = time.monotonic() + 30
        while True:  # the server is gone: its health check stops answering
            try:
                _health(port, timeout=1)
            except OSError:
                break
            assert time.monotonic() < deadline, f"the Streamlit server outlived `clo arena` after {stop}"
            time.sleep(0.3)
    finally:  # whatever happened, leave no server behind
        proc.kill()  # no-op once it has ended
        for child in server:
            if child.is_running():
                child.kill()


def test_clo_arena_under_nohup_keeps_ignoring_sighup(tmp_path):
    """Started with SIGHUP ignored (``nohup clo arena …``), a SIGHUP stops neither the command nor its server."""
    proc, port = _start_arena(tmp_path, signal.SIG_IGN)
    try:
        proc.send_signal(signal.SIGHUP)
        time.sleep(3)
        assert proc.poll() is None
        assert _health(port, timeout=5) == b"ok"
    finally:
        proc.terminate()  # and SIGTERM still ends both
        proc.wait(timeout=60)


def test_clo_arena_says_where_it_serves_until_it_stops(tmp_path):
    """`clo arena` registers its address, port and server in the Arena database (the host page's join link reads
    it) and takes the entry back when it stops; bound to 127.0.0.1 it is marked as this machine's only."""
    from clo.workshop.join import running_apps

    proc, port = _start_arena(tmp_path, signal.SIG_DFL)
    arena = Arena(tmp_path / "arena.sqlite")
    try:
        [app] = running_apps(arena.apps())
        assert (app["host"], app["port"], app["local_only"]) == ("127.0.0.1", port, True)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert arena.apps() == [] and running_apps([app]) == []
