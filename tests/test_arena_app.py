"""The Arena in Streamlit's AppTest: a round on three tiny models (real generation), the participants' app shows
no model name before the vote and reveals it after, offers no host action, says so when a limit refuses a vote;
the host page shows the leaderboard, the participants with their flags, excludes one, and sets the limits."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from clo.evaluation.generate import GenerationOptions
from clo.workshop.arena import LOOPBACK, Arena, Limits

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = [{"id": "1", "lang": "sw", "prompt": "Habari za asubuhi?"}, {"id": "2", "lang": "sw", "prompt": "Jua?"}]


@pytest.fixture(scope="module")
def three_models(tmp_path_factory, tiny_model, tiny_gpt2):
    from clo.core.testing import make_tiny_model

    return [str(tiny_model), str(tiny_gpt2), str(make_tiny_model(tmp_path_factory.mktemp("m") / "tiny-qwen2", "qwen2"))]


@pytest.fixture()
def round_code(tmp_path, monkeypatch, three_models):
    db = tmp_path / "arena.sqlite"
    monkeypatch.setenv("CLO_ARENA_DB", str(db))
    opts = GenerationOptions(max_new_tokens=6, extra={"min_new_tokens": 6})
    return Arena(db).create_round(three_models, PROMPTS, opts), Arena(db)


def everything(at: AppTest) -> str:
    parts = []
    for kind in ("markdown", "text", "caption", "info", "success", "warning", "title", "error", "radio",
                 "button"):
        for el in getattr(at, kind):
            parts.append(str(getattr(el, "value", "")) + " " + str(getattr(el, "label", "")))
    return "\n".join(parts)


def participant(code=None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "arena_app.py"), default_timeout=60)
    # AppTest has no browser to run the cookie component: start as a browser that has stored its id (the real
    # cookie is tested in a browser, tests/test_arena_ballot.py)
    at.session_state["arena_cookie_stored"] = True
    if code:
        at.query_params["round"] = code
    return at.run()


def test_participant_sees_no_names_before_the_vote_and_the_reveal_after(round_code, three_models):
    code, arena = round_code
    at = participant(code)
    assert not at.exception, at.exception
    page = everything(at)
    assert any(p["prompt"] in page for p in PROMPTS)
    names = [Path(m).name for m in three_models]
    assert not any(n in page for n in names) and "/" not in "".join(el.value for el in at.text)
    assert [b.label for b in at.button] == ["A is better", "B is better", "Tie", "Both are bad"]
    at.radio(key="arena_real").set_value("A")
    at.button(key="arena_vote_A").click().run()
    assert not at.exception, at.exception
    shown = everything(at)
    assert sum(n in shown for n in names) == 2  # both names of this pair are revealed
    [v] = arena.votes(code)
    assert v["vote"] == "A" and v["real_lang"] == "A" and v["participant"] and v["address"] == LOOPBACK
    at.button(key="arena_next").click().run()
    assert not any(n in everything(at) for n in names)  # the next pair is anonymous again


def test_a_new_browser_votes_once_its_id_is_stored(round_code):
    code, arena = round_code
    at = AppTest.from_file(str(ROOT / "arena_app.py"), default_timeout=60)
    at.query_params["round"] = code
    at.run()
    assert all(b.disabled for b in at.button) and "Getting your ballot ready" in everything(at)
    at.session_state["arena_cookie_write"] = True  # what the cookie component answers once it has written
    at.run()
    assert not any(b.disabled for b in at.button) and "Getting your ballot ready" not in everything(at)


def test_participant_app_offers_no_host_action(round_code):
    code, arena = round_code
    at = participant()  # no code yet: one text field for the round code, nothing else
    assert [t.label for t in at.text_input] == ["Round code"]
    assert not at.sidebar.children and not at.get("file_uploader")
    at.text_input(key="arena_code_in").set_value("NOPE")
    at.button(key="arena_join").click().run()
    assert "There is no round" in everything(at)
    at = participant(code)
    labels = {b.label for b in at.button}
    assert labels == {"A is better", "B is better", "Tie", "Both are bad"}
    assert not at.text_input and not at.selectbox and not at.multiselect and not at.number_input
    src = (ROOT / "arena_app.py").read_text()
    for host_only in ("clo.runs", "clo.training", "app_pages", "st.navigation", "file_uploader", "delete"):
        assert host_only not in src, host_only


def test_host_page_shows_the_leaderboard_and_exports(app, round_code, three_models):
    code, arena = round_code
    for s in range(3):
        while (m := arena.next_matchup(code, f"s{s}")) is not None:
            arena.record_vote(code, f"s{s}", m, "A")
    app.run()
    app.switch_page("app_pages/arena.py").run()
    assert not app.exception, app.exception
    assert any(str(mt.value) == "18" for mt in app.metric)  # 3 sessions × 2 prompts × 3 pairs
    table = app.table[0].value
    assert len(table) == 3 and "Bradley–Terry" in table.columns
    assert "a tiny model's verdicts mean nothing" in everything(app)


def test_a_vote_over_the_limit_is_refused_with_a_clear_message_and_can_be_cast_later(round_code):
    code, arena = round_code
    arena.set_limits(code, Limits(votes_per_minute=1))
    neighbour = arena.next_matchup(code, "neighbour")  # someone on the same address voted a moment ago
    assert arena.record_vote(code, "neighbour", neighbour, "B", address=LOOPBACK)
    at = participant(code)
    at.radio(key="arena_real").set_value("B")
    at.button(key="arena_vote_A").click().run()
    assert not at.exception, at.exception
    [err] = at.error
    assert "Too many votes from your network: 1 in the last minute" in err.value and "Wait" in err.value
    assert len(arena.votes(code)) == 1  # nothing stored …
    assert at.radio(key="arena_real").value == "B"  # … and nothing the participant chose is lost
    arena.set_limits(code, Limits(votes_per_minute=10))
    at.button(key="arena_vote_A").click().run()
    assert "Vote recorded." in everything(at) and not at.error
    assert [v["real_lang"] for v in arena.votes(code)] == [None, "B"]


def test_participant_app_says_when_the_address_is_full(round_code):
    code, arena = round_code
    arena.set_limits(code, Limits(participants_per_address=1))
    assert arena.record_vote(code, "first", arena.next_matchup(code, "first"), "A", address=LOOPBACK)
    at = participant(code)
    assert "already has 1 participant(s) from your network address" in everything(at)
    assert not [b for b in at.button if b.label == "A is better"]


def test_host_excludes_a_participant_and_sets_the_limits(app, round_code):
    code, arena = round_code
    for s, choice in (("s0", "A"), ("s1", "B"), ("s2", "A")):
        while (m := arena.next_matchup(code, s)) is not None:
            arena.record_vote(code, s, m, choice, address="10.0.0.5")
    app.run()
    app.switch_page("app_pages/arena.py").run()
    assert not app.exception, app.exception
    metrics = {mt.label: str(mt.value) for mt in app.metric}
    assert metrics == {"Votes": "18", "Participants": "3", "Excluded": "0"}
    people = app.table[1].value
    assert list(people["votes"]) == [6, 6, 6] and set(people["address"]) == {"10.0.0.5"}
    assert any("always “B is better”" in f for f in people["flags"])  # six votes, all B

    app.multiselect(key=f"ar_people_{code}").set_value(["s1"]).run()
    app.text_input(key="ar_reason").set_value("always B").run()
    app.button(key="ar_exclude").click().run()
    assert not app.exception, app.exception
    assert "Excluded 1 participant(s): 6 vote(s) left out" in everything(app)
    metrics = {mt.label: str(mt.value) for mt in app.metric}
    assert metrics == {"Votes": "12", "Participants": "2", "Excluded": "1"}
    assert "2 participant(s); 1 excluded participant(s) and their 6 vote(s) are left out" in everything(app)
    assert len(arena.votes(code, include_excluded=True)) == 18  # still in the database
    assert all(v["participant"] != "s1" for v in arena.votes(code)) and len(arena.preference_pairs(code)) == 12

    app.number_input(key=f"ar_ppa_{code}").set_value(25)
    app.number_input(key=f"ar_vpm_{code}").set_value(120)
    app.button(key="FormSubmitter:ar_limits_form-Save limits").click().run()
    assert not app.exception, app.exception
    assert arena.limits(code) == Limits(votes_per_minute=120, participants_per_address=25)

    app.multiselect(key=f"ar_people_{code}").set_value(["s1"]).run()
    app.button(key="ar_include").click().run()
    assert arena.summary(code)["excluded_participants"] == 0


@pytest.fixture()
def heldout_round(tmp_path, monkeypatch, three_models):
    """A round on two tiny models over two held-out Swahili prompts (which have an English parallel)."""
    from clo.data.formats import load_prompts

    db = tmp_path / "arena.sqlite"
    monkeypatch.setenv("CLO_ARENA_DB", str(db))
    opts = GenerationOptions(max_new_tokens=6, extra={"min_new_tokens": 6})
    return Arena(db).create_round(three_models[:2], load_prompts("demo", ["sw"], per_lang=2), opts), Arena(db)


def test_the_host_shows_participants_the_english_version_and_the_page_says_what_to_judge(app, heldout_round):
    from clo.data.formats import load_prompts

    code, arena = heldout_round
    english = {r["id"]: r["prompt"] for r in load_prompts("demo", ["en"], per_lang=2)}
    assert [p["prompt_en"] for p in arena.round(code)["prompts"]] == list(english.values())
    voter = participant(code)
    page = everything(voter)
    assert "Which answer is better in Swahili?" in page and "written in Swahili" in page
    assert "In English:" not in page  # off until the host turns it on

    app.run()
    app.switch_page("app_pages/arena.py").run()
    assert not app.exception, app.exception
    assert "2 of 2 prompt(s) of this round have an English version" in everything(app)
    app.toggle(key=f"ar_en_{code}").set_value(True).run()
    assert arena.round(code)["show_english"] is True  # stored in the round: every participant follows it
    prompt = voter.session_state["arena_matchup"]["prompt_id"]
    voter.button(key="arena_vote_A").click().run()  # the participant's next run shows it
    assert f"In English: {english[prompt]}" in everything(voter)
    other = participant(code)  # and so does another participant's page
    assert f"In English: {english[other.session_state['arena_matchup']['prompt_id']]}" in everything(other)
    app.toggle(key=f"ar_en_{code}").set_value(False).run()
    assert arena.round(code)["show_english"] is False
    assert "In English:" not in everything(other.run())


def test_typed_prompts_have_an_english_version_only_when_they_are_held_out_ones():
    from clo.workshop.arena import english_version

    held = "Unaweza kueleza kinachotokea volkano inapolipuka?"
    english = "Can you explain what happens when a volcano erupts?"
    assert english_version({"lang": "sw", "prompt": f" {held} "}) == english
    assert english_version({"lang": "sw", "prompt": "Habari za asubuhi?"}) is None
    assert english_version({"lang": "en", "prompt": english}) is None
    assert english_version({"lang": "sw", "prompt": "Jua?", "prompt_en": "Sun?"}) == "Sun?"  # an uploaded column


def test_the_join_link_has_this_machines_address_and_the_running_apps_port(app, round_code):
    """`clo arena` registers where it serves; the host page's join link names a real address of this machine and
    that port (an app that no longer answers is not used), with a QR code of the link."""
    import os
    import socket

    from clo.workshop.join import join_url, machine_addresses, qr_png

    code, arena = round_code
    app.run()
    app.switch_page("app_pages/arena.py").run()
    assert "The participants' app is not running here" in everything(app)
    assert app.number_input(key="ar_port").value == 8502
    with socket.socket() as listener:  # a server that answers, as `clo arena` registers it
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        arena.register_app("0.0.0.0", port, os.getpid())
        arena.register_app("0.0.0.0", 1, 999_999_999)  # gone without unregistering: not used
        app.run()
        assert not app.exception, app.exception
        address = (machine_addresses() or ["127.0.0.1"])[0]
        url = join_url(address, port, code)
        assert f"Join: `{url}`" in everything(app) and f"serving on port {port}, on every address" in everything(app)
        assert address not in ("127.0.0.1", "localhost") or not machine_addresses()
        [image] = app.image
        assert image.captions == [f"Round {code}"]
        assert qr_png(url)  # the page's image is this PNG: tests/test_browser.py decodes the one it serves
        arena.unregister_app("0.0.0.0", port)
        arena.register_app("127.0.0.1", port, os.getpid())
        app.run()
        assert "only this machine can open it" in everything(app)


def test_a_qr_code_decodes_back_to_its_join_link():
    import io

    import zxingcpp
    from PIL import Image

    from clo.workshop.join import join_url, qr_png

    url = join_url("192.168.1.20", 8502, "k7qm")
    assert url == "http://192.168.1.20:8502/?round=K7QM"
    [found] = zxingcpp.read_barcodes(Image.open(io.BytesIO(qr_png(url))))
    assert found.text == url and found.format == zxingcpp.BarcodeFormat.QRCode
    assert join_url("fe80::1", 8502, "AB12") == "http://[fe80::1]:8502/?round=AB12"


def test_the_host_page_starts_with_base_and_the_newest_run_and_no_cell_reads_none(app, round_code, tiny_model,
                                                                                   xl_file, tmp_path):
    """The model picker starts as Compare's does (one function, clo.runs.catalog.default_picks); with no vote the
    win rate says so instead of "None"."""
    from clo.core.spec import TrainSpec
    from clo.training.run import run_training

    code, arena = round_code
    run = run_training(TrainSpec(model=str(tiny_model), data=str(xl_file), lang="sw", max_steps=1, batch_size=2),
                       tmp_path / "runs" / "tuned")
    app.run()
    app.switch_page("app_pages/arena.py").run()
    assert not app.exception, app.exception
    assert app.multiselect(key="ar_models").value == [str(tiny_model), str(run.run_dir)]
    table = app.table[0].value
    assert list(table["win rate"]) == ["no votes yet"] * 3 and list(table["real language"]) == ["—"] * 3
    assert "None" not in table.astype(str).to_numpy().ravel().tolist()
