"""The app in a real browser: Data → Train (live chart) → Compare → Runs, as a user clicks through it.

Drives Debian's Chromium through Playwright (sync API). ``scripts/ensure_chromium.sh`` installs Chromium when it
is missing; where that is impossible the test is skipped with the reason. Screenshots go to
``artifacts/screenshots/`` (gitignored).

    .venv/bin/python -m pytest -m browser tests/test_browser.py
"""
from __future__ import annotations

import os
import re
import sys

import pytest
from helpers import CHROMIUM_ARGS, ROOT, free_port, start_streamlit, stop_process

pytestmark = pytest.mark.browser

SHOTS = ROOT / "artifacts" / "screenshots"
SERVER_LOGS = {}  # app URL → the log of its Streamlit server
STEPS = 60  # enough steps for the chart to be seen growing between two 1.5 s refreshes, even on a fast machine


def arena_round(db, models: list[str]) -> str:
    """An Arena round on three models with votes: one participant always chose A (a flag), two voted on every pair
    (the leaderboard and the participants table at their widest: Bradley–Terry, intervals, flags)."""
    from clo.evaluation.generate import GenerationOptions
    from clo.workshop.arena import Arena

    arena = Arena(db)
    prompts = [{"id": "1", "lang": "sw", "prompt": "Habari za asubuhi?"}, {"id": "2", "lang": "sw", "prompt": "Jua?"}]
    code = arena.create_round(models, prompts, GenerationOptions(max_new_tokens=6, extra={"min_new_tokens": 6}))
    for who, choices in (("always-a", "AAAAAA"), ("mixed", "ABtABb"), ("third", "BBAtAb")):
        for c in choices:
            m = arena.next_matchup(code, who)
            arena.record_vote(code, who, m, {"t": "tie", "b": "both_bad"}.get(c, c), "A", address="192.168.1.23")
    return code


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, tiny_model, tiny_gpt2):
    from clo.core.testing import make_tiny_model

    tmp = tmp_path_factory.mktemp("browser")
    port = free_port()
    qwen = make_tiny_model(tmp / "tiny-qwen2", "qwen2")
    arena_round(tmp / "arena.sqlite", [str(tiny_model), str(tiny_gpt2), str(qwen)])
    env = {**os.environ, "CLO_RUNS": str(tmp / "runs"), "CLO_HOME": os.environ["CLO_HOME"],
           "CLO_MODEL": str(tiny_model), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": str(ROOT), "CLO_ARENA_DB": str(tmp / "arena.sqlite")}
    proc = start_streamlit([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                            "--server.headless", "true", "--server.fileWatcherType", "none",
                            "--browser.gatherUsageStats", "false"], env, tmp / "streamlit.log", port, timeout_s=60)
    url = f"http://127.0.0.1:{port}"
    SERVER_LOGS[url] = tmp / "streamlit.log"
    yield url
    stop_process(proc)


@pytest.fixture()
def page(chromium, app_url):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        pg = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
        pg.set_default_timeout(60_000)
        yield pg
        browser.close()


def shot(pg, name: str) -> None:
    """The whole page: Streamlit scrolls inside its main block, so the window is made as tall as the content."""
    height = pg.evaluate("document.querySelector('[data-testid=stMainBlockContainer]').scrollHeight")
    size = pg.viewport_size
    pg.set_viewport_size({"width": size["width"], "height": max(size["height"], min(int(height) + 120, 5000))})
    pg.wait_for_timeout(400)  # let charts re-lay out
    pg.screenshot(path=str(SHOTS / f"{name}.png"))
    pg.set_viewport_size(size)


def settle(pg) -> None:
    """Wait until Streamlit has finished the current script run."""
    pg.wait_for_selector("[data-testid=stStatusWidget]", state="detached", timeout=120_000)


DRAWN_JS = """() => Math.max(0,
    ...[...document.querySelectorAll('[data-testid=clo-drawn]')].map(e => +e.dataset.run))"""


def drawn(pg) -> int:
    """How many runs of the page this session has completed: app.py draws a marker with that count last."""
    return pg.evaluate(DRAWN_JS)


def wait_drawn(pg, after: int = 0, timeout: int = 120_000) -> None:
    """Wait until a run of the page later than the ``after``-th has drawn the page to its end."""
    pg.wait_for_function(f"(after) => ({DRAWN_JS})() > after", arg=after, timeout=timeout)
    settle(pg)


def rerun_by(pg, act, timeout: int = 120_000) -> None:
    """Do ``act`` (a click, a committed value) on a page at rest and wait until the run it starts has drawn the
    page to its end: no fixed pause, and no action lands on a page still being redrawn."""
    settle(pg)
    before = drawn(pg)
    act()
    wait_drawn(pg, before, timeout)


def set_number(pg, label: str, value) -> None:
    from playwright.sync_api import expect

    box = pg.get_by_label(label, exact=True)
    if box.input_value() != str(value):
        box.fill(str(value))
        rerun_by(pg, lambda: box.press("Enter"))
    expect(box).to_have_value(str(value))


def set_toggle(pg, label: str) -> None:
    """Switch a toggle on (else Compare would answer greedily: a random tiny model's greedy answer is empty, no
    badge to wait for)."""
    from playwright.sync_api import expect

    toggle = pg.get_by_role("switch", name=label)
    if not toggle.is_checked():
        rerun_by(pg, lambda: pg.get_by_text(label).click())
    expect(toggle).to_be_checked()


def progress_step(pg) -> int:
    text = pg.get_by_text(re.compile(r"^Step \d+/")).first.inner_text()
    return int(re.match(r"Step (\d+)/", text).group(1))


def test_data_train_compare_runs_in_the_browser(page, app_url):
    from playwright.sync_api import expect

    pg = page
    # -- Data: translate 8 demo samples with the bundled references, see the pairs, fix one -------------------
    pg.goto(f"{app_url}/data")
    wait_drawn(pg)
    expect(pg.get_by_text("1 · Make a cross-lingual set")).to_be_visible()
    set_number(pg, "Records", 8)
    rerun_by(pg, pg.get_by_role("button", name=re.compile("Translate 8 records into Swahili")).click)
    expect(pg.get_by_text(re.compile(r"8 samples translated \(reference\)"))).to_be_visible()
    expect(pg.get_by_text("✓ Chosen").first).to_be_visible()
    expect(pg.get_by_text("✗ Rejected").first).to_be_visible()
    # detected-language badges
    expect(pg.get_by_text(re.compile(r"Swahili · (\d of \d detectors|by its script)")).first).to_be_visible()
    expect(pg.get_by_text(re.compile(r"English · \d of \d detectors")).first).to_be_visible()
    shot(pg, "01-data")
    pg.get_by_text("Fix the Swahili translation of demo-001").click()
    box = pg.get_by_label("Instruction", exact=True).first
    expect(box).to_be_visible()
    box.fill("Mto mrefu zaidi barani Afrika ni upi?")
    expect(box).to_have_value("Mto mrefu zaidi barani Afrika ni upi?")
    box.blur()  # commit the text to the form first (a form's text reruns nothing until it is submitted)
    rerun_by(pg, pg.get_by_role("button", name="Save fix").first.click)
    expect(pg.get_by_text("Saved the fix to demo-001")).to_be_visible()  # what was saved: test_app.py
    rerun_by(pg, pg.get_by_role("button", name="Train on this set →").click)

    # -- Train: the set comes along; launch a short CLO run and watch the curves grow -------------------------
    expect(pg.get_by_role("heading", name="Train")).to_be_visible()
    expect(pg.get_by_role("combobox", name="Cross-lingual set")).to_have_value("demo-sw.jsonl")
    expect(pg.get_by_label("Batch size", exact=True)).to_be_hidden()  # folded into "Advanced settings"
    pg.get_by_text(re.compile(r"^Advanced settings")).click()
    set_number(pg, "Batch size", 2)
    set_number(pg, "Max steps", STEPS)
    rerun_by(pg, pg.get_by_role("button", name="Show CLI command").click)
    expect(pg.get_by_text(re.compile(r"python -m clo train --config "))).to_be_visible()  # its file: test_app.py
    shot(pg, "02-train-settings")
    rerun_by(pg, pg.get_by_role("button", name="Launch training").click)  # scrolled down to the button to click it
    expect(pg.get_by_text(re.compile(r"Started \S+ on 8 samples"))).to_be_visible()
    # the page does not stay scrolled at the button: the progress panel is brought into view
    expect(pg.locator(".st-key-tr_live [data-testid=stProgress]")).to_be_in_viewport(timeout=30_000)
    expect(pg.get_by_text(re.compile(rf"^Step [1-9]\d*/{STEPS}"))).to_be_visible(timeout=120_000)
    first = progress_step(pg)
    if first < STEPS:  # running when read: a Stop button, unless the (tiny, fast) run finished since
        finished = pg.get_by_text(re.compile(r"^Finished after"))
        expect(pg.get_by_role("button", name="Stop").or_(finished)).to_be_visible()
    expect(pg.locator(".js-plotly-plot").first).to_be_visible(timeout=60_000)  # plotly.js loads on first use
    shot(pg, "03-train-running")
    # a second tab (or a reloaded one) re-attaches to the running job
    other = pg.context.new_page()
    other.goto(f"{app_url}/train")
    run_id = pg.get_by_text(re.compile(r"^\d{8}-\d{6}-clo-sw$")).first.inner_text()
    expect(other.get_by_role("heading").get_by_text(run_id, exact=True)).to_be_visible(timeout=60_000)
    running = other.get_by_text(re.compile(rf"^Step \d+/{STEPS}"))
    finished = other.get_by_text(re.compile(rf"Finished after {STEPS} steps"))
    expect(running.or_(finished).first).to_be_visible(timeout=30_000)
    if not finished.count():  # still training (a fast machine may finish first): the form shows the job's settings
        try:
            expect(other.get_by_label("Max steps", exact=True)).to_have_value(str(STEPS), timeout=60_000)
        except AssertionError:
            if not finished.count():  # it did not finish meanwhile: a real failure
                raise
    other.close()
    # the panel refreshes by itself: the step count grows without any click (unless the machine was so fast that
    # the first refresh already showed the last step)
    if first < STEPS:
        pg.wait_for_function(  # a later step shown, or the run already finished (the banner replaces the bar)
            """(first) => [...document.querySelectorAll('[data-testid=stProgress]')]
                 .some(e => { const m = e.innerText.match(/Step (\\d+)\\//); return m && +m[1] > first; })
                 || document.body.innerText.includes('Finished after')""",
            arg=first, timeout=120_000)
    expect(pg.get_by_text(re.compile(rf"Finished after {STEPS} steps"))).to_be_visible(timeout=180_000)
    expect(pg.get_by_text("Rewards").first).to_be_visible()
    shot(pg, "04-train-finished")

    # -- Compare: base and the new run answer the same held-out prompt side by side ---------------------------
    rerun_by(pg, pg.get_by_role("link", name="Compare").click)
    expect(pg.get_by_role("heading", name="Compare")).to_be_visible()
    expect(pg.get_by_text("Base · tiny-llama").first).to_be_visible()
    expect(pg.get_by_text(re.compile(r"-clo-sw · clo · Swahili")).first).to_be_visible()
    pg.get_by_text("Generation settings").click()
    set_number(pg, "Max new tokens", 24)
    set_toggle(pg, "Sample (else greedy)")  # a random tiny model's greedy answer is only special tokens
    rerun_by(pg, pg.get_by_role("button", name="Answer").click, timeout=180_000)
    # a verdict badge: "Swahili · clean", "English, not Swahili", "Swahili-shaped, not real words · 31% real", "no
    # counted line" (a random tiny model's answer may be a stray byte), so match on the endings only
    badges = pg.get_by_text(re.compile(r"( · clean|, not [\w ()]+|not real words · \d+% real|no counted line"
                                       r"|no language recognised| · echo| · loop)$"))
    expect(badges.nth(1)).to_be_visible(timeout=120_000)  # one language badge per model, once both are done
    shot(pg, "05-compare")
    # a prompt of one's own: typed, then Answer pressed once (that click also applies the text) answers it
    rerun_by(pg, pg.get_by_text("Write my own").click)
    pg.get_by_label("Your prompt").fill("What is the capital of Kenya?")
    rerun_by(pg, pg.get_by_role("button", name="Answer").click, timeout=180_000)
    expect(pg.get_by_text("Prompt detected as English")).to_be_visible()
    expect(badges.nth(1)).to_be_visible(timeout=120_000)
    pg.get_by_role("tab", name="Batch over held-out prompts").click()
    set_number(pg, "Prompts per language", 2)
    rerun_by(pg, pg.get_by_role("button", name="Run batch evaluation").click, timeout=240_000)
    expect(pg.get_by_role("button", name="Download metrics (CSV)")).to_be_visible(timeout=180_000)
    expect(pg.locator(".js-plotly-plot").first).to_be_visible(timeout=60_000)  # plotly.js loads on first use
    shot(pg, "06-compare-batch")

    # -- Runs: the run is listed as finished --------------------------------------------------------------------
    rerun_by(pg, pg.get_by_role("link", name="Runs").click)
    expect(pg.get_by_role("heading", name="Runs")).to_be_visible()
    expect(pg.get_by_text(re.compile(r"finished · clo · Swahili")).first).to_be_visible()
    shot(pg, "07-runs")
    # deleting asks first, with a button painted as the irreversible choice it is
    rerun_by(pg, pg.get_by_role("button", name="Delete…").click)
    yes = pg.get_by_role("button", name="Yes, delete it")
    expect(yes).to_have_css("background-color", "rgb(185, 28, 28)")
    rerun_by(pg, pg.get_by_role("button", name="Cancel").click)
    expect(yes).to_have_count(0)


# Text an element clips: it hides its overflow (or ends it with an ellipsis) and its content is wider than its box.
# Charts, tables (drawn on a canvas), code blocks and free-text boxes (which scroll what one typed) are left out.
CLIPPED_JS = """() => {
  const out = [];
  for (const el of document.querySelectorAll('[data-testid=stMain] *, [data-testid=stSidebar] *')) {
    if (el.closest('svg, canvas, [data-testid=stDataFrame], .js-plotly-plot, pre, code, [data-testid=stCode], '
                   + '[data-testid=stTextInput], [data-testid=stTextArea]')) continue;
    const cs = getComputedStyle(el);
    const clips = ['hidden', 'clip'].includes(cs.overflowX) || cs.textOverflow === 'ellipsis';
    const text = (el.tagName === 'INPUT' ? el.value : el.innerText || '').trim();
    if (!clips || !text || el.getBoundingClientRect().width === 0) continue;
    if (el.scrollWidth > el.clientWidth + 1)
      out.push(`${text.slice(0, 60)} (${el.scrollWidth} > ${el.clientWidth} px)`);
  }
  return out;
}"""
# A table (st.dataframe, drawn on a canvas) whose columns are wider than its box: the rest hide behind a scroll bar.
TABLE_CLIPPED_JS = """() => [...document.querySelectorAll('[data-testid=stMain] [data-testid=stDataFrame]')]
  .map(df => [df, df.querySelector('.dvn-scroller')])
  .filter(([df, s]) => s && s.scrollWidth > s.clientWidth + 1)
  .map(([df, s]) => `table with columns ${[...df.querySelectorAll('th')].map(t => t.innerText).join(', ')} `
                    + `(${s.scrollWidth} > ${s.clientWidth} px)`)"""
# An image wider than the column it sits in (it would cover the column beside it: the Arena's QR code).
OVERFLOW_JS = """() => [...document.querySelectorAll('[data-testid=stMain] [data-testid=stColumn] img')]
  .map(img => [img, img.closest('[data-testid=stColumn]')])
  .filter(([img, col]) => img.getBoundingClientRect().right > col.getBoundingClientRect().right + 1)
  .map(([img, col]) => `an image overflows its column (${Math.round(img.getBoundingClientRect().width)} px in `
                       + `${Math.round(col.getBoundingClientRect().width)} px)`)"""
# Cells of st.dataframe are drawn on a canvas; its grid also renders them as an accessible table (role=gridcell).
NONE_JS = """() => [...document.querySelectorAll('[data-testid=stMain] [role=gridcell], [data-testid=stMain] td, '
                  + '[data-testid=stMain] p, [data-testid=stMain] span')]
  .filter(e => e.children.length === 0 && /^(None|nan|NaN)$/.test(e.textContent.trim()))
  .map(e => e.textContent.trim())"""


def test_nothing_is_cut_off_and_no_cell_reads_none(page, app_url):
    """At 1024 and 1440 px, on every page (with the run the walk above trained, and an Arena round with votes): no
    label, value or badge is cut off — the Arena's leaderboard, participants table and export buttons included — and
    no table cell says "None". Run after the walk, which leaves a run for Runs and Compare."""
    from playwright.sync_api import expect

    pg = page
    problems = []
    for width in (1024, 1440):
        pg.set_viewport_size({"width": width, "height": 900})
        for path, heading in (("", "CLO Studio"), ("data", "Data"), ("train", "Train"), ("compare", "Compare"),
                              ("runs", "Runs"), ("arena", "Arena")):
            pg.goto(f"{app_url}/{path}")
            wait_drawn(pg)
            expect(pg.get_by_role("heading", name=heading, exact=True)).to_be_visible()
            pg.wait_for_timeout(1000)  # badges and charts lay out after the script run
            problems += [f"{width} px /{path}: cut off: {c}" for c in pg.evaluate(CLIPPED_JS)]
            problems += [f"{width} px /{path}: a cell reads {c!r}" for c in pg.evaluate(NONE_JS)]
            problems += [f"{width} px /{path}: cut off: {c}" for c in pg.evaluate(TABLE_CLIPPED_JS)]
            if path == "runs":  # each of the Runs table's column views
                views = pg.locator("[data-testid=stButtonGroup]").first
                for name in [t for t in views.locator("button").all_inner_texts() if t.strip()][1:]:  # 1st: shown
                    rerun_by(pg, views.get_by_text(name, exact=True).click)
                    pg.wait_for_timeout(500)
                    problems += [f"{width} px /runs ({name}): cut off: {c}" for c in pg.evaluate(TABLE_CLIPPED_JS)]
            if path == "arena":  # the round's votes are on the page: the live leaderboard has drawn them
                expect(pg.get_by_role("button", name="Preference pairs (14, JSONL)")).to_be_visible()
                problems += [f"{width} px /arena: {c}" for c in pg.evaluate(OVERFLOW_JS)]
            if width == 1024:
                shot(pg, f"narrow-{path or 'overview'}")
    assert not problems, "\n".join(problems)


def test_the_server_log_has_no_widget_state_warning(page, app_url):
    """A kept widget (Compare's Max new tokens) changed and drawn again: Streamlit's log stays free of its warning
    about a widget given a default value and a session-state value both (it warns once per server: any such
    widget of any page visited so far would show here)."""
    from playwright.sync_api import expect

    pg = page
    pg.goto(f"{app_url}/compare")
    wait_drawn(pg)
    pg.get_by_text("Generation settings").click()
    set_number(pg, "Max new tokens", 32)
    pg.get_by_role("tab", name="Batch over held-out prompts").click()
    set_number(pg, "Prompts per language", 3)
    rerun_by(pg, pg.get_by_role("link", name="Runs").click)
    rerun_by(pg, pg.get_by_role("link", name="Compare").click)
    expect(pg.get_by_role("heading", name="Compare")).to_be_visible()
    log = SERVER_LOGS[app_url].read_text(encoding="utf-8", errors="replace")
    assert "was created with a default value but also had its value set" not in log, log[-3000:]


def test_compare_streams_a_model_served_at_a_url(page, app_url):
    """Compare in the browser: a model served at a URL (a real HTTP server streaming slowly) is added, its answer
    is seen growing before it ends, then carries the same language badge as a local answer."""
    from playwright.sync_api import expect
    from test_endpoint import SWAHILI, Faulty

    server = Faulty()
    server.mode = "slow-stream"
    try:
        pg = page
        pg.goto(f"{app_url}/compare")
        wait_drawn(pg)
        pg.get_by_text("Add a model served at a URL").click()
        expect(pg.get_by_text("CLO_ENDPOINT_API_KEY").first).to_be_visible()
        pg.get_by_label("Endpoint URL").fill(server.url)
        pg.get_by_label("Model name there").fill("m")
        rerun_by(pg, pg.get_by_role("button", name="Add", exact=True).click)
        expect(pg.get_by_text(re.compile(r"^m · served at http://127\.0\.0\.1")).first).to_be_visible()
        pg.get_by_role("button", name="Answer").click()
        expect(pg.get_by_text(re.compile(r"^Ndiyo, habari.* ▌$"))).to_be_visible(timeout=60_000)  # still streaming
        expect(pg.get_by_text(SWAHILI, exact=True)).to_be_visible(timeout=60_000)
        expect(pg.get_by_text(re.compile(r"Swahili · clean$"))).to_be_visible(timeout=60_000)
        settle(pg)
        shot(pg, "08-compare-served")
    finally:
        server.stop()
