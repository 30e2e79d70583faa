"""The Arena's ballot box in a real browser (Playwright contexts in Debian's Chromium against `clo arena`): a
participant is the browser, not the tab — a reload, a second tab and a restarted browser with the same storage
cannot vote twice on a pair; a flood from one address meets the round's rate limit, and a full address meets the
host's cap on participants, each with a clear message and nothing stored; an excluded participant's votes leave the
leaderboard and `clo arena export` but stay in the database.

    .venv/bin/python -m pytest -m browser tests/test_arena_ballot.py
"""
from __future__ import annotations

import os
import sys

import pytest
from helpers import CHROMIUM_ARGS, ROOT, free_port, run_cli, start_streamlit, stop_process, wait_for

from clo.evaluation.generate import GenerationOptions
from clo.workshop.arena import COOKIE, LOOPBACK, Arena, Limits, participant_id, valid_token

pytestmark = pytest.mark.browser

OPTS = GenerationOptions(max_new_tokens=6, extra={"min_new_tokens": 6})
ONE = [{"id": "1", "lang": "sw", "prompt": "Habari za asubuhi?"}]
THREE = [{"id": str(i), "lang": "sw", "prompt": p} for i, p in
         enumerate(["Habari za asubuhi?", "Jua huchomoza wapi?", "Mji mkuu wa Kenya ni upi?"])]
VOTE_BUTTON = "A is better"


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model, tiny_gpt2):
    tmp = tmp_path_factory.mktemp("arena_ballot")
    db = tmp / "arena.sqlite"
    arena = Arena(db)
    models = [str(tiny_model), str(tiny_gpt2)]
    rounds = {  # one (prompt, pair) only: a second vote by the same participant can only be on the same pair
        "single": arena.create_round(models, ONE, OPTS),
        "flood": arena.create_round(models, THREE, OPTS, limits=Limits(votes_per_minute=3)),
        "cap": arena.create_round(models, THREE, OPTS, limits=Limits(participants_per_address=2)),
        "exclude": arena.create_round(models, THREE, OPTS),
    }
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = start_streamlit([sys.executable, "-m", "clo", "arena", "--port", str(port), "--db", str(db)], env,
                           tmp / "arena.log", port, timeout_s=90)
    yield {"arena": arena, "db": db, "url": f"http://127.0.0.1:{port}", **rounds}
    stop_process(proc)


@pytest.fixture()
def playwright_chromium(chromium):
    """Launches Chromium; every `expect` waits up to 90 s (a bound against a hang on a loaded machine, not a
    measurement)."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=90_000)
    with sync_playwright() as p:
        yield lambda: p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
    expect.set_options(timeout=5_000)


def open_round(ctx, url: str):
    pg = ctx.new_page()
    pg.set_default_timeout(90_000)
    pg.goto(url)
    return pg


def has_cookie(ctx) -> bool:
    return any(c["name"] == COOKIE for c in ctx.cookies())


def test_reload_second_tab_and_restarted_browser_are_one_participant(server, playwright_chromium, tmp_path):
    from playwright.sync_api import expect

    code, arena = server["single"], server["arena"]
    url = f"{server['url']}/?round={code}"
    browser = playwright_chromium()
    ctx = browser.new_context()
    first = open_round(ctx, url)
    expect(first.get_by_role("button", name=VOTE_BUTTON)).to_be_visible()
    wait_for(lambda: has_cookie(ctx), 60, "the participant's cookie")
    second = open_round(ctx, url)  # a second tab, before the first has voted: the same (only) pair on screen
    expect(second.get_by_role("button", name="B is better")).to_be_visible()

    first.get_by_role("button", name=VOTE_BUTTON).click()
    expect(first.get_by_text("Vote recorded.")).to_be_visible()
    second.get_by_role("button", name="B is better").click()
    expect(second.get_by_text("You had already voted on this pair.")).to_be_visible()

    first.reload()
    expect(first.get_by_text("You have voted on every pair")).to_be_visible()
    assert not first.get_by_role("button", name=VOTE_BUTTON).count()

    state = tmp_path / "state.json"
    ctx.storage_state(path=str(state))
    browser.close()
    browser = playwright_chromium()  # a restarted browser, same profile storage
    again = open_round(browser.new_context(storage_state=str(state)), url)
    expect(again.get_by_text("You have voted on every pair")).to_be_visible()
    assert not again.get_by_role("button", name=VOTE_BUTTON).count()

    other = open_round(browser.new_context(), url)  # another browser is another participant: it may vote
    other.get_by_role("button", name=VOTE_BUTTON).click()
    expect(other.get_by_text("Vote recorded.")).to_be_visible()
    browser.close()

    votes = arena.votes(code)
    assert len(votes) == 2 and len({v["participant"] for v in votes}) == 2
    assert {v["address"] for v in votes} == {LOOPBACK}


def test_a_flood_from_one_address_is_rate_limited_with_a_clear_message(server, playwright_chromium):
    """A script that drops its cookie before every vote is a new participant each time; the round's rate limit (3
    votes a minute from one address) still stops it, and the refused vote is not stored."""
    from playwright.sync_api import expect

    code, arena = server["flood"], server["arena"]
    browser = playwright_chromium()
    ctx = browser.new_context()
    limited, recorded = None, 0
    for _ in range(8):  # bounded: the limit must bite long before
        ctx.clear_cookies()
        pg = open_round(ctx, f"{server['url']}/?round={code}")
        pg.get_by_role("button", name=VOTE_BUTTON).click()
        outcome = pg.get_by_text("Vote recorded.").or_(pg.get_by_text("Too many votes from your network"))
        expect(outcome).to_be_visible()
        if pg.get_by_text("Too many votes from your network").count():
            limited = pg
            break
        recorded += 1
        pg.close()
    assert limited is not None, "eight votes from one address were never limited"
    expect(limited.get_by_text("the most the host allows from one address")).to_be_visible()
    expect(limited.get_by_role("button", name=VOTE_BUTTON)).to_be_visible()  # the pair stays, to vote again later
    assert recorded >= 3 and len(arena.votes(code)) == recorded  # the refused vote was not stored
    browser.close()


def test_the_hosts_cap_on_participants_per_address(server, playwright_chromium):
    from playwright.sync_api import expect

    code, arena = server["cap"], server["arena"]
    url = f"{server['url']}/?round={code}"
    browser = playwright_chromium()
    for _ in range(2):
        pg = open_round(browser.new_context(), url)
        pg.get_by_role("button", name=VOTE_BUTTON).click()
        expect(pg.get_by_text("Vote recorded.")).to_be_visible()
    third = open_round(browser.new_context(), url)
    expect(third.get_by_text("already has 2 participant(s) from your network address")).to_be_visible()
    assert not third.get_by_role("button", name=VOTE_BUTTON).count()
    arena.set_limits(code, Limits(participants_per_address=3))  # the host raises the cap: a reload lets them in
    third.reload()
    third.get_by_role("button", name=VOTE_BUTTON).click()
    expect(third.get_by_text("Vote recorded.")).to_be_visible()
    browser.close()
    assert len({v["participant"] for v in arena.votes(code)}) == 3


def test_an_excluded_participants_votes_leave_the_results_and_stay_in_the_database(server, playwright_chromium,
                                                                                   tmp_path):
    """Two browsers vote; the host excludes one (Arena.exclude, what the host page's button calls). Their vote, and
    the one they cast after it (they are not told), leave the leaderboard and `clo arena export`, which says how
    many participants were excluded; every row stays in the database, marked."""
    from playwright.sync_api import expect

    code, arena = server["exclude"], server["arena"]
    url = f"{server['url']}/?round={code}"
    browser = playwright_chromium()
    pages = [open_round(browser.new_context(), url) for _ in range(2)]
    for pg in pages:
        pg.get_by_role("button", name=VOTE_BUTTON).click()
        expect(pg.get_by_text("Vote recorded.")).to_be_visible()
    first = {v["participant"] for v in arena.votes(code)}
    assert len(first) == 2

    def who(pg) -> str:  # the participant a browser votes as: its cookie's token, tied to the round
        wait_for(lambda: has_cookie(pg.context), 60, "the participant's cookie")
        token = next(c["value"] for c in pg.context.cookies() if c["name"] == COOKIE)
        return participant_id(code, valid_token(token) or token)

    bad_page = pages[0]
    bad = who(bad_page)
    assert bad in first
    assert arena.exclude(code, bad, "testing") == 1
    bad_page.get_by_role("button", name="Next pair").click()  # they vote on: they are not told
    bad_page.get_by_role("button", name=VOTE_BUTTON).click()
    expect(bad_page.get_by_text("Vote recorded.")).to_be_visible()
    browser.close()

    everything = arena.votes(code, include_excluded=True)
    assert len(everything) == 3  # nothing deleted
    kept = arena.votes(code)
    assert {v["participant"] for v in kept} == first - {bad}
    assert all(v["excluded"] for v in everything if v["participant"] == bad)
    board = arena.leaderboard(code)
    assert board["summary"]["participants"] == 2 and board["summary"]["excluded_participants"] == 1
    assert board["summary"]["votes"] == len(kept) and board["summary"]["excluded_votes"] == 3 - len(kept)
    out = tmp_path / "pairs.jsonl"
    rc, _, err = run_cli("arena", "export", code, "--out", str(out), "--db", str(server["db"]))
    assert rc == 0, err
    assert f"2 participant(s) voted; 1 excluded, their {3 - len(kept)} vote(s) left out" in err
    assert len([line for line in out.read_text().splitlines() if line.strip()]) <= len(kept)
