"""The Arena library: rounds, cached answers, matchups never repeated, votes from many threads, the leaderboard
against a hand computation, formula-safe CSV, preference pairs that `clo train` reads."""
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
from clo.workshop.arena import Arena, ArenaError, bradley_terry, leaderboard, preference_pairs

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


def test_a_session_never_sees_the_same_pair_twice_and_votes_from_many_threads_land(arena):
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
                assert arena.record_vote(code, f"s{i}", m, ["A", "B", "tie", "both_bad"][i % 4], "A")
                assert not arena.record_vote(code, f"s{i}", m, "A")  # a second click on the same matchup
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
    assert len({(v["session"], v["prompt_id"], frozenset((v["model_a"], v["model_b"]))) for v in votes}) == len(votes)
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
