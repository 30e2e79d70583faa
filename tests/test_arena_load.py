"""Load: 20 real browser sessions (Playwright contexts in Debian's Chromium) vote at once in a round served by
`clo arena`; afterwards every vote is in SQLite, none is lost, no participant saw a pair twice, and the host's
Arena page (the main app) shows all votes. All 20 browsers come from 127.0.0.1, one address, like a room behind one
router: the round's default limits must admit them. The figures go to stdout (docs/workshop.md records them).

    .venv/bin/python -m pytest -m browser tests/test_arena_load.py -s
"""
from __future__ import annotations

import asyncio
import os
import random
import re
import sqlite3
import sys
import time

import pytest
from helpers import CHROMIUM_ARGS, ROOT, free_port, start_streamlit, stop_process

from clo.evaluation.generate import GenerationOptions
from clo.workshop.arena import LOOPBACK, Arena

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SESSIONS, VOTES_EACH = 20, 2  # two votes each: every session still moves on to a second pair ("Next pair")
PROMPTS = [{"id": str(i), "lang": "sw", "prompt": p} for i, p in
           enumerate(["Habari za asubuhi?", "Jua huchomoza wapi?", "Mji mkuu wa Kenya ni upi?"])]


@pytest.fixture(scope="module")
def servers(tmp_path_factory, tiny_model, tiny_gpt2):
    from clo.core.testing import make_tiny_model

    tmp = tmp_path_factory.mktemp("arena_load")
    db = tmp / "arena.sqlite"
    models = [str(tiny_model), str(tiny_gpt2), str(make_tiny_model(tmp / "tiny-qwen2", "qwen2"))]
    code = Arena(db).create_round(models, PROMPTS, GenerationOptions(max_new_tokens=6, extra={"min_new_tokens": 6}))
    env = {**os.environ, "CLO_ARENA_DB": str(db), "CLO_RUNS": str(tmp / "runs"), "CLO_MODEL": str(tiny_model),
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    vport, hport = free_port(), free_port()
    voter = start_streamlit([sys.executable, "-m", "clo", "arena", "--port", str(vport), "--db", str(db)], env,
                            tmp / "arena.log", vport, timeout_s=90)
    host = start_streamlit([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(hport),
                            "--server.headless", "true", "--server.fileWatcherType", "none",
                            "--browser.gatherUsageStats", "false"], env, tmp / "host.log", hport, timeout_s=90)
    yield {"db": db, "code": code, "vote_url": f"http://127.0.0.1:{vport}", "host_url": f"http://127.0.0.1:{hport}"}
    for proc in (voter, host):
        stop_process(proc)


async def _participant(browser, url: str, i: int, clicks: list, timeout_ms: int = 120_000) -> None:
    from playwright.async_api import expect

    ctx = await browser.new_context(viewport={"width": 1100, "height": 900})
    pg = await ctx.new_page()
    pg.set_default_timeout(timeout_ms)
    rng = random.Random(i)
    await pg.goto(url)
    for k in range(VOTES_EACH):
        label = rng.choice(["A is better", "B is better", "Tie", "Both are bad"])
        await pg.get_by_role("button", name=label).click()
        await expect(pg.get_by_text("Vote recorded.")).to_be_visible(timeout=timeout_ms)
        clicks.append((i, time.monotonic()))
        if k < VOTES_EACH - 1:
            await pg.get_by_role("button", name="Next pair").click()
            await expect(pg.get_by_role("button", name="A is better")).to_be_visible(timeout=timeout_ms)
    await ctx.close()


def test_twenty_sessions_vote_at_once_and_no_vote_is_lost(servers, chromium):
    from playwright.async_api import async_playwright, expect

    code, db = servers["code"], servers["db"]
    clicks: list = []

    async def run() -> dict:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            # the participants' server serves the round page and nothing else, whatever the path
            probe = await (await browser.new_context()).new_page()
            for path in ("/train", "/runs", "/data", "/?page=train"):
                await probe.goto(servers["vote_url"] + path)
                await expect(probe.get_by_label("Round code")).to_be_visible(timeout=60_000)
                assert not await probe.get_by_text(re.compile("Launch|Delete|Translate")).count()
            host = await (await browser.new_context(viewport={"width": 1400, "height": 1000})).new_page()
            await host.goto(servers["host_url"] + "/arena")
            await expect(host.get_by_text("Votes").first).to_be_visible(timeout=90_000)
            t0 = time.monotonic()
            await asyncio.gather(*[_participant(browser, f"{servers['vote_url']}/?round={code}", i, clicks)
                                   for i in range(SESSIONS)])
            last_vote = max(t for _, t in clicks)
            metric = host.locator("[data-testid=stMetricValue]").first
            await expect(metric).to_have_text(str(SESSIONS * VOTES_EACH), timeout=60_000)
            seen_by_host = time.monotonic()
            await browser.close()
            return {"voting_s": last_vote - t0, "to_leaderboard_s": seen_by_host - last_vote}

    figures = asyncio.run(run())
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT participant, prompt_id, pair FROM votes WHERE round = ? AND voter = 'human'",
                           (code,)).fetchall()
        addresses = {r[0] for r in con.execute("SELECT DISTINCT address FROM votes WHERE round = ?", (code,))}
    participants = {r[0] for r in rows}
    assert len(clicks) == SESSIONS * VOTES_EACH  # every click was confirmed on screen …
    assert len(rows) == len(clicks)  # … and every one is in SQLite: no lost vote
    assert len(participants) == SESSIONS  # each browser context is one participant (its own cookie)
    assert addresses == {LOOPBACK}  # one address for all twenty, under the default limits
    assert len(set(rows)) == len(rows)  # no participant voted on the same (prompt, pair) twice
    print(f"\narena load: {SESSIONS} sessions, {len(rows)} votes stored of {len(clicks)} cast, "
          f"{len(clicks) - len(rows)} lost, voting took {figures['voting_s']:.1f} s, host leaderboard showed all "
          f"votes {figures['to_leaderboard_s']:.1f} s after the last one")
