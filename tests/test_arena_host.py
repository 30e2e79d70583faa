"""The Arena as a room uses it, in Debian's Chromium: the host page (CLO Studio) shows the join link with this
machine's address and the port `clo arena` really serves on, and a QR code that decodes (zxing-cpp) to that link;
a phone-sized browser opens the decoded link, sees the English version the host switched on and what to judge,
and votes; the host page's round picker, leaderboard and "Preference pairs" button follow without a reload.

    .venv/bin/python -m pytest -m browser tests/test_arena_host.py
"""
from __future__ import annotations

import io
import os
import re
import sys

import pytest
from helpers import CHROMIUM_ARGS, ROOT, free_port, start_streamlit, stop_process
from test_browser import SHOTS, drawn, rerun_by, wait_drawn

from clo.data.formats import load_prompts
from clo.evaluation.generate import GenerationOptions
from clo.workshop.arena import Arena
from clo.workshop.join import machine_addresses

pytestmark = pytest.mark.browser

OPTS = GenerationOptions(max_new_tokens=6, extra={"min_new_tokens": 6})
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}


@pytest.fixture(scope="module")
def room(tmp_path_factory, tiny_model, tiny_gpt2):
    """The host's app and `clo arena` (bound to every address, as in a room) on one Arena database with a round
    over two held-out Swahili prompts."""
    tmp = tmp_path_factory.mktemp("arena_host")
    db = tmp / "arena.sqlite"
    arena = Arena(db)
    code = arena.create_round([str(tiny_model), str(tiny_gpt2)], load_prompts("demo", ["sw"], per_lang=2), OPTS)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(ROOT),
           "CLO_ARENA_DB": str(db), "CLO_RUNS": str(tmp / "runs"), "CLO_MODEL": str(tiny_model)}
    host_port, app_port = free_port(), free_port()
    host = start_streamlit([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(host_port),
                            "--server.headless", "true", "--server.fileWatcherType", "none",
                            "--browser.gatherUsageStats", "false"], env, tmp / "host.log", host_port, timeout_s=90)
    app = start_streamlit([sys.executable, "-m", "clo", "arena", "--host", "0.0.0.0", "--port", str(app_port)], env,
                          tmp / "arena.log", app_port, timeout_s=90)
    yield {"arena": arena, "code": code, "host_url": f"http://127.0.0.1:{host_port}", "app_port": app_port}
    stop_process(app)
    stop_process(host)


def test_the_room_scans_the_qr_code_votes_and_the_host_page_follows_live(chromium, room):
    import zxingcpp
    from PIL import Image
    from playwright.sync_api import expect, sync_playwright

    arena, code, port = room["arena"], room["code"], room["app_port"]
    expect.set_options(timeout=90_000)  # a bound against a hang on a loaded machine, not a measurement
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            host = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
            host.goto(f"{room['host_url']}/arena")
            wait_drawn(host)
            expect(host.get_by_text(f"serving on port {port}, on every address")).to_be_visible()
            # the join link: a real address of this machine and clo arena's port
            url = host.get_by_text(re.compile(r"^Join: http://")).inner_text().removeprefix("Join: ").strip()
            address = (machine_addresses() or ["127.0.0.1"])[0]
            assert url == f"http://{address}:{port}/?round={code}"
            # the QR code the page serves decodes to that link
            src = host.locator("[data-testid=stImage] img").first.get_attribute("src")
            png = host.request.get(src if src.startswith("http") else f"{room['host_url']}{src}").body()
            [found] = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
            assert found.text == url

            # the host shows the English versions: every participant follows
            rerun_by(host, host.get_by_text("Show participants the English version of each prompt").click)
            assert arena.round(code)["show_english"] is True

            # a phone opens the decoded link: the prompt, its English version, what to judge; it votes
            phone = browser.new_context(**PHONE).new_page()
            phone.goto(found.text)
            expect(phone.get_by_text("Which answer is better in Swahili?")).to_be_visible()
            expect(phone.get_by_text(re.compile(r"^In English: "))).to_be_visible()
            vote = phone.get_by_role("button", name="A is better")
            expect(vote).to_be_enabled()  # once the browser has stored its participant id
            phone.screenshot(path=str(SHOTS / "arena-participant-phone.png"), full_page=True)
            runs_before = drawn(host)
            vote.click()
            expect(phone.get_by_text("Vote recorded.")).to_be_visible()
            assert len(arena.votes(code)) == 1

            # the host page follows without a reload: picker, leaderboard, export button
            expect(host.get_by_role("button", name="Preference pairs (1, JSONL)")).to_be_enabled()
            expect(host.get_by_role("combobox", name="Round")).to_have_value(f"{code} · 2 models · 1 vote · open")
            expect(host.get_by_test_id("stMetricValue").first).to_have_text("1")
            assert drawn(host) == runs_before  # no full run of the page: the live parts re-read the votes
            host.screenshot(path=str(SHOTS / "arena-host-live.png"), full_page=True)
            browser.close()
    finally:
        expect.set_options(timeout=5_000)
