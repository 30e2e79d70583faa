"""The "Inside a pair" page (app_pages/pair.py): in AppTest, and once in a real browser (a screenshot)."""
from __future__ import annotations

import os
import sys

import pytest
from helpers import CHROMIUM_ARGS, ROOT, free_port, start_streamlit, stop_process
from test_pair import _make_run


def _metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_the_page_opens_a_pair_for_base_and_run_recomputes_and_ranks(app, tiny_model, xl_file, tmp_path):
    import clo.evaluation.pair as pair_mod

    run, _, _ = _make_run(tmp_path / "runs" / "tiny-run", tiny_model, xl_file, beta=0.2)
    at = app
    at.switch_page("app_pages/pair.py").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Inside a pair"
    # the base model is its own reference: rewards 0, the sigmoid's weight 0.5, the nudge to pick a run
    assert _metric(at, "margin") == "+0.000" and _metric(at, "weight") == "0.500"
    assert any("pick a run above" in i.value for i in at.info)
    spans = [h.proto.body for h in at.get("html") if "clo-tokens" in h.proto.body]
    assert spans and "<span" in spans[0]

    at.selectbox(key="pair_model").set_value(str(run.path)).run()
    assert not at.exception, at.exception
    assert _metric(at, "margin") != "+0.000"
    k = f"{run.path}|model"
    loss = _metric(at, "Loss of this sample")
    # β and λ recompute from the cached log-probs: no model loads, no forward pass
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pair_mod, "_token_logps", lambda *a, **kw: pytest.fail("no forward pass for a slider"))
        at.slider(key=f"pair_lam_{k}").set_value(0.0).run()
        assert not at.exception, at.exception
        assert _metric(at, "Loss of this sample") != loss
        assert float(_metric(at, "Loss of this sample")) == pytest.approx(float(_metric(at, "Mean pair loss")),
                                                                          abs=1e-4)
        at.slider(key=f"pair_beta_{k}").set_value(1.0).run()
        assert not at.exception, at.exception
    # base → tuned: a delta span per token
    assert any("hsl(215" in h.proto.body or "hsl(0," in h.proto.body for h in at.get("html"))
    at.button(key="pair_rank").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    table = at.dataframe[0].value
    assert len(table) == 8 and list(table["margin"].astype(float)) == sorted(table["margin"].astype(float))


@pytest.mark.browser
def test_the_page_in_a_browser(chromium, tiny_model, xl_file, tmp_path):
    """Opens the page on a run by its ?run= link, waits for the page to be drawn (clo-drawn), checks the token
    spans and the hardest-pairs table, and saves a screenshot (artifacts/screenshots/inside-a-pair.png)."""
    from playwright.sync_api import expect, sync_playwright
    from test_browser import rerun_by, shot, wait_drawn

    run, _, _ = _make_run(tmp_path / "runs" / "tiny-run", tiny_model, xl_file, beta=0.2)
    port = free_port()
    env = {**os.environ, "CLO_RUNS": str(tmp_path / "runs"), "CLO_MODEL": str(tiny_model), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = start_streamlit([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                            "--server.headless", "true", "--server.fileWatcherType", "none",
                            "--browser.gatherUsageStats", "false"], env, tmp_path / "streamlit.log", port, 60)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            pg = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
            pg.set_default_timeout(60_000)
            pg.goto(f"http://127.0.0.1:{port}/pair?run={run.id}")
            wait_drawn(pg)
            expect(pg.get_by_role("heading", name="Inside a pair")).to_be_visible()
            expect(pg.get_by_text("Base → tuned, token by token")).to_be_visible()
            assert pg.locator(".clo-tokens span").count() > 20
            rerun_by(pg, pg.get_by_role("button", name="Rank this run's pairs").click)
            expect(pg.get_by_text("8 pairs · objective clo")).to_be_visible()
            shot(pg, "inside-a-pair")
            browser.close()
    finally:
        stop_process(proc)


def test_a_run_whose_base_model_is_gone_is_one_clear_error_on_the_page(app, tiny_model, xl_file, tmp_path):
    import shutil

    base = tmp_path / "gone-base"
    shutil.copytree(tiny_model, base)
    run, _, _ = _make_run(tmp_path / "runs" / "orphan", base, xl_file)
    shutil.rmtree(base)
    at = app
    at.switch_page("app_pages/pair.py").run()
    at.selectbox(key="pair_model").set_value(str(run.path)).run()
    assert not at.exception, at.exception
    assert "not available offline" in "\n".join(e.value for e in at.error)
