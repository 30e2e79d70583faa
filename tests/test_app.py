"""Every page through Streamlit's AppTest: widgets present, no exception, and the flows that matter —
a 2-step training job launched from the Train page, Stop, a failing job, a second launch that queues, a malformed
upload, a translation fixed in place, side-by-side answers and a batch evaluation, deleting a run.

The app is pointed at a tiny random model (``CLO_MODEL``) and a temporary runs folder (``CLO_RUNS``); training
jobs run as real ``python -m clo train`` child processes.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import wait_for
from streamlit.testing.v1 import AppTest

from clo.runs.resume import resume_check
from clo.runs.rundir import RunDir

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def runs_root(tmp_path) -> Path:
    return tmp_path / "runs"


# the `app` fixture (a fresh AppTest session on the tiny model, runs in tmp_path/"runs") is in conftest.py


def open_page(at: AppTest, page: str) -> AppTest:
    at.run()
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def wait_for_state(run: RunDir, states=("finished", "stopped", "failed", "interrupted"), timeout=240.0) -> str:
    deadline = time.monotonic() + timeout
    while (state := run.status().get("state")) not in states:
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run.id} still {state}")
        time.sleep(0.2)
    return state


def set_training(at: AppTest, data: Path, *, max_steps: int, max_length: int = 256) -> None:
    at.selectbox(key="tr_data").set_value("__other__").run()
    at.text_input(key="tr_data_path").input(str(data))
    at.number_input(key="tr_batch_size").set_value(2)
    at.number_input(key="tr_max_length").set_value(max_length)
    at.number_input(key="tr_max_steps").set_value(max_steps).run()
    assert not at.exception and not at.error, texts(at.error)


# -- shell ---------------------------------------------------------------------------------------------------------


def test_home_and_sidebar(app, tiny_model):
    app.run()
    assert not app.exception
    assert app.title[0].value == "CLO Studio"
    assert [s.label for s in app.sidebar.selectbox] == ["Model", "Target language"]
    assert app.sidebar.text_input(key="sb_model_path").value == str(tiny_model)  # from CLO_MODEL
    assert app.session_state["sb_lang"] == "sw"
    # the honest note about the tiny models: once, on the Overview, not in the sidebar of every page
    assert "tiny (135M and 270M parameters)" in texts(app.info)
    assert "tiny (135M" not in texts(app.sidebar.caption)
    # a card per page of the app, the Arena included
    links = [e.proto.page for e in app.get("page_link")]
    assert [Path(p).stem for p in links] == ["data", "train", "compare", "runs", "arena"], links
    # the Gemma license notice sits next to Gemma, when it is installed and picked
    model = app.sidebar.selectbox(key="sb_model")
    if "gemma-3-270m" in model.options or any("Gemma" in o for o in model.options):
        model.set_value("gemma-3-270m").run()
        assert "Gemma Terms of Use" in texts(app.sidebar.info)
    # a model path that does not exist is an error in the sidebar, not an exception
    app.sidebar.selectbox(key="sb_model").set_value("__local__").run()
    app.sidebar.text_input(key="sb_model_path").input("/nonexistent/model").run()
    assert not app.exception
    assert "not available offline" in texts(app.sidebar.error)


# -- data ----------------------------------------------------------------------------------------------------------


def test_data_page_translates_previews_and_fixes(app):
    at = open_page(app, "data")
    assert at.radio(key="data_source").value == "demo"
    assert at.selectbox(key="data_translator").value == "reference"  # bundled references cover Swahili
    at.number_input(key="data_tr_limit_demo_168").set_value(4).run()
    at.button(key="data_translate").click().run()
    assert not at.exception, at.exception
    assert "4 samples translated (reference)" in texts(at.success)
    path = Path(at.session_state["data_review_set"])
    assert path.name == "demo-sw.jsonl" and len(path.read_text().splitlines()) == 4
    md = texts(at.markdown)
    assert "✓ Chosen" in md and "✗ Rejected" in md  # each sample as its two preference pairs
    assert at.download_button(key="data_download").label == "Download JSONL"
    # fix the first sample's Swahili instruction in place
    at.text_area(key="data_fix_i_demo-001").input("Mto mrefu zaidi barani Afrika ni upi?")
    next(b for b in at.button if b.label == "Save fix").click().run()
    assert not at.exception
    assert "Saved the fix to demo-001" in texts(at.success)
    first = json.loads(path.read_text().splitlines()[0])
    assert first["instruction"] == "Mto mrefu zaidi barani Afrika ni upi?"
    assert first["translator"] == "reference+edited"


def test_train_on_this_set_takes_the_set_to_the_train_page(app):
    """Data's "Train on this set →" opens Train with that set chosen, and its CLI command names the preset it
    writes (the browser walk, tests/test_browser.py, only sees that it happens)."""
    at = open_page(app, "data")
    at.number_input(key="data_tr_limit_demo_168").set_value(4).run()
    at.button(key="data_translate").click().run()
    path = Path(at.session_state["data_review_set"])
    at.button(key="data_to_train").click().run()
    assert not at.exception, at.exception
    assert at.selectbox(key="tr_data").value == str(path)
    at.switch_page("app_pages/train.py").run()  # AppTest's next run would go back to the page it last opened
    at.button(key="tr_cli").click().run()
    assert re.search(r"^python -m clo train --config \S*clo-clo-sw-\w+\.yaml", texts(at.code)), texts(at.code)


def test_data_page_previews_the_bundled_set_and_keeps_hand_edits(app):
    at = open_page(app, "data")
    # the bundled Swahili side previews before anything is translated, with the badge legend
    assert at.selectbox(key="data_review_set").value == "__bundled__"
    assert "✗ Rejected" in texts(at.markdown) and "wrong language" in texts(at.markdown)
    assert "the language this side should be in" in texts(at.caption)
    at.text_input(key="data_search").input("demo-002").run()
    assert "1 match" in texts(at.caption)
    # a fix to the bundled set goes to a copy in the data folder
    at.text_area(key="data_fix_i_demo-002").input("Swali langu lililorekebishwa?")
    next(b for b in at.button if b.label == "Save fix").click().run()
    assert not at.exception, at.exception
    path = Path(at.session_state["data_review_set"])
    assert path.name == "demo-sw.jsonl"
    # translating again asks first; "Keep my edits" keeps the fix, and the replaced file is kept as a version
    at.button(key="data_translate").click().run()
    assert "you fixed by hand" in texts(at.warning) and path.read_text().count("+edited") == 1
    at.button(key="data_keep_edits").click().run()
    assert not at.exception, at.exception
    assert "hand-fixed record (demo-002) kept" in texts(at.success)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    fixed = next(r for r in rows if r["id"] == "demo-002")
    assert fixed["instruction"] == "Swali langu lililorekebishwa?" and fixed["translator"] == "reference+edited"
    assert len(list((path.parent / ".versions").glob("demo-sw.*.jsonl"))) == 1
    # "Write a new set" leaves the edited file alone
    at.button(key="data_translate").click().run()
    at.button(key="data_new_set").click().run()
    assert "demo-sw-2.jsonl" in texts(at.success) and path.read_text().count("+edited") == 1


@pytest.mark.parametrize("name, content, where", [
    ("broken.jsonl", b'{"id": "1", "instruction": "Hi?", "response": "Hello."}\n{"id": "2", "instruction": \n',
     "broken.jsonl, line 2: not valid JSON"),
    ("fields.jsonl", b'{"id": "1", "instruction": "Hi?", "response": "Hello."}\n{"id": "2", "instruction": "x"}\n',
     "fields.jsonl, line 2: field 'response' is missing"),
    ("cells.csv", b"id,instruction,response\n1,Hi?,Hello.\n2,x,y,z\n", "cells.csv, line 3"),
])
def test_malformed_upload_shows_file_and_line(app, name, content, where):
    at = open_page(app, "data")
    at.radio(key="data_source").set_value("upload").run()
    at.file_uploader(key="data_upload").upload(name, content, "application/octet-stream")
    at.run()
    assert not at.exception, at.exception
    assert where in texts(at.error)


def test_a_ready_crosslingual_upload_needs_no_translation(app, xl_file):
    at = open_page(app, "data")
    at.radio(key="data_source").set_value("upload").run()
    at.file_uploader(key="data_upload").upload("mine.jsonl", xl_file.read_bytes(), "application/jsonl")
    at.run()
    assert "already a cross-lingual set (4 samples" in texts(at.info)
    at.button(key="data_use_ready").click().run()
    assert Path(at.session_state["data_review_set"]).name == "mine-sw.jsonl"


def test_an_openassistant_export_on_disk_is_imported(app):
    at = open_page(app, "data")
    at.radio(key="data_source").set_value("file").run()
    at.text_input(key="data_path").input(str(ROOT / "tests" / "fixtures" / "oasst_small.jsonl")).run()
    assert not at.exception and not at.error, texts(at.error)
    assert "2 English pairs from oasst_small" in texts(at.caption)


def test_a_translation_model_that_is_not_installed_is_a_clear_error(app):
    at = open_page(app, "data")
    at.selectbox(key="data_translator").set_value("m2m100").run()
    at.text_input(key="data_mt_m2m100").input("/nonexistent/m2m100").run()
    at.number_input(key="data_tr_limit_demo_168").set_value(1).run()
    at.button(key="data_translate").click().run()
    assert not at.exception, at.exception
    assert "not available offline" in texts(at.error)


# -- train ---------------------------------------------------------------------------------------------------------


def test_train_page_widgets_presets_and_cli_command(app):
    from clo.core.spec import load_preset

    at = open_page(app, "train")
    for key in ("tr_preset", "tr_data", "tr_method", "tr_scope"):
        assert at.selectbox(key=key) is not None
    # in view: the few settings a newcomer needs; the rest folded into "Advanced settings" (their form hints say
    # which), with the preset's changes from the defaults readable while it is folded
    advanced = at.get("expander")[-1]
    assert advanced.label == "Advanced settings (3 changed)"
    inside = {w.key for kind in ("number_input", "selectbox", "slider", "checkbox") for w in advanced.get(kind)}
    assert {"tr_scope", "tr_lam", "tr_beta", "tr_simpo_gamma", "tr_precision", "tr_batch_size",
            "tr_group_by_length"} <= inside
    assert not inside & {"tr_method", "tr_lr", "tr_epochs", "tr_max_steps"}
    assert ("Advanced, not at their defaults: Max length **512** · Group samples by length **on** · Share prompts "
            "**on**.") in texts(at.caption)
    # no fixed promise of a time: the estimate is measured on this machine (none yet: no run has finished here)
    assert "No time estimate yet" in texts(at.caption) and "2-core" not in texts(at.caption)
    assert at.slider(key="tr_lam").value == 0.5
    assert {"demo", "paper"} <= {o.split(" — ")[0] for o in at.selectbox(key="tr_preset").options}
    demo, paper = load_preset("demo"), load_preset("paper")
    assert at.number_input(key="tr_lr").value == pytest.approx(float(demo["lr"]))  # the demo preset, applied first
    assert at.checkbox(key="tr_group_by_length").value is True  # the demo preset batches by length
    at.selectbox(key="tr_preset").set_value("paper").run()
    assert at.number_input(key="tr_lr").value == pytest.approx(float(paper["lr"]))
    assert at.checkbox(key="tr_group_by_length").value is False
    assert at.number_input(key="tr_max_length").value == paper["max_length"]
    assert at.get("expander")[-1].label == "Advanced settings (1 changed)"
    assert "Advanced, not at their defaults: Max length **512**." in texts(at.caption)
    at.button(key="tr_cli").click().run()
    assert not at.exception
    assert texts(at.code).startswith("python -m clo train --config ")
    assert "No training job yet" in texts(at.info)
    save = at.number_input(key="tr_save_steps")  # what makes a run resumable, and the page says so
    assert save.value == 0 and "resumed from the Runs page" in save.help


def test_the_system_prompt_select_explains_each_choice_and_reaches_the_config(app):
    import yaml

    from clo.core.spec import SYSTEM_PROMPTS

    at = open_page(app, "train")
    sel = at.selectbox(key="tr_system_prompt")
    assert sel.value == "model" and list(sel.options) == list(SYSTEM_PROMPTS)
    assert all(line in sel.help for line in SYSTEM_PROMPTS.values())  # a line per choice, from clo/core/spec.py
    sel.set_value("none").run()
    assert SYSTEM_PROMPTS["none"] in texts(at.caption)
    at.button(key="tr_cli").click().run()
    config = texts(at.code).split("--config ", 1)[1].split()[0].strip("'\"")
    assert yaml.safe_load(open(config, encoding="utf-8"))["system_prompt"] == "none"


def test_train_settings_survive_a_visit_to_another_page(app):
    at = open_page(app, "train")
    at.number_input(key="tr_lr").set_value(1e-4)
    at.selectbox(key="tr_method").set_value("sft-tgt").run()
    at.switch_page("app_pages/runs.py").run()
    at.switch_page("app_pages/train.py").run()
    assert at.number_input(key="tr_lr").value == pytest.approx(1e-4)
    assert at.selectbox(key="tr_method").value == "sft-tgt"


def test_launching_a_two_step_job_completes_and_shows_its_metrics(app, runs_root, xl_file):
    at = open_page(app, "train")
    set_training(at, xl_file, max_steps=2)
    at.number_input(key="tr_save_steps").set_value(1).run()
    at.button(key="tr_launch").click().run()
    assert not at.exception, at.exception
    assert "Started" in texts(at.success)
    run = RunDir(runs_root / at.session_state["train_run"])
    assert wait_for_state(run) == "finished", run.status()
    at.run()
    assert not at.exception
    assert [r["step"] for r in run.metrics()] == [1, 2]
    assert len(at.get("plotly_chart")) == 4  # loss, rewards, log-probabilities, preference accuracy
    assert "Finished after 2 steps in " in texts(at.success)  # with its duration
    assert "Step 2/2" in at.get("progress")[0].proto.text
    status = run.status()  # the reference pass reported each batch
    assert status["ref_done"] == status["ref_total"] >= 1 and status["ref_elapsed_s"] >= 0
    assert f"measured by run `{run.id}`" in texts(at.caption)  # the next launch's time estimate comes from it
    # it saved every step with a checkpoint; finished, it keeps neither the checkpoint nor its mention
    assert run.config()["save_steps"] == 1 and run.status()["saved_step"] == 2
    assert run.config()["group_by_length"] is at.checkbox(key="tr_group_by_length").value  # the form reaches the run
    assert not run.checkpoint_path.exists() and "checkpoint_step" not in run.status()


def test_stop_ends_a_job_keeps_its_model_and_a_second_launch_queues(app, runs_root, xl_file):
    at = open_page(app, "train")
    set_training(at, xl_file, max_steps=100_000)
    at.button(key="tr_launch").click().run()
    long_run = RunDir(runs_root / at.session_state["train_run"])
    # while it trains the form shows its settings read-only; editing them for a second job queues that job
    assert at.number_input(key="tr_max_steps").disabled and at.button(key="tr_launch").disabled
    reloaded = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)  # a reload is a new session
    reloaded.run()
    reloaded.switch_page("app_pages/train.py").run()
    assert reloaded.number_input(key="tr_max_steps").value == 100_000  # the job's settings, not the preset's
    assert reloaded.number_input(key="tr_batch_size").value == 2 and reloaded.number_input(key="tr_max_steps").disabled
    at.button(key="tr_unlock").click().run()
    at.number_input(key="tr_max_steps").set_value(2).run()
    at.button(key="tr_launch").click().run()
    assert "Queued" in texts(at.info) and "one job trains at a time" in texts(at.info)
    queued_run = RunDir(runs_root / at.session_state["train_run"])
    assert queued_run.status()["state"] == "queued"
    wait_for(lambda: len(long_run.metrics()) >= 1, timeout=240.0, every=0.2)
    at.run()
    assert f"in the queue: `{queued_run.id}`" in texts(at.caption)
    assert long_run.id in texts(at.markdown)  # the panel shows what trains now, with its Stop button
    # the queued job's own page says what it waits for, and never lists itself
    linked = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    linked.query_params["run"] = queued_run.id
    linked.run()
    linked.switch_page("app_pages/train.py").run()
    waiting = linked.get("progress")[0].proto.text
    assert waiting.startswith(f"In the queue, position 1: waits for 1 job (`{long_run.id}`: "), waiting
    assert queued_run.id not in waiting
    at.button(key="tr_stop").click().run()
    assert not at.exception, at.exception
    assert wait_for_state(long_run) == "stopped"
    assert long_run.has_model()
    assert 1 <= len(long_run.metrics()) < 100_000
    at.run()
    assert "Stopped after" in texts(at.success)
    assert wait_for_state(queued_run) == "finished"  # the queue moved on by itself


def test_a_failing_job_shows_its_error_text(app, runs_root, xl_file):
    at = open_page(app, "train")
    set_training(at, xl_file, max_steps=2, max_length=16)  # shorter than every prompt: fails inside the job
    at.button(key="tr_launch").click().run()
    run = RunDir(runs_root / at.session_state["train_run"])
    assert wait_for_state(run) == "failed"
    at.run()
    assert not at.exception
    assert "max_length 16 is shorter than" in texts(at.error)
    assert "max_length 16 is shorter than" in run.status()["error"]


def test_launch_refuses_a_missing_data_file_before_queuing(app, runs_root):
    at = open_page(app, "train")
    at.selectbox(key="tr_data").set_value("__other__").run()
    at.text_input(key="tr_data_path").input("/nonexistent/data.jsonl").run()
    at.button(key="tr_launch").click().run()
    assert "file not found" in texts(at.error)
    assert not runs_root.exists() or not any(runs_root.iterdir())


# -- compare and runs ------------------------------------------------------------------------------------------------


@pytest.fixture()
def finished_run(runs_root, tiny_model, xl_file) -> RunDir:
    from clo.core.spec import TrainSpec
    from clo.training.run import run_training

    result = run_training(TrainSpec(model=str(tiny_model), data=str(xl_file), lang="sw", max_steps=1, batch_size=2),
                          runs_root / "tuned")
    return RunDir(result.run_dir)


def test_compare_answers_side_by_side_with_language_badges(app, finished_run):
    at = open_page(app, "compare")
    models = at.multiselect(key="cmp_models")
    assert len(models.value) == 2 and str(finished_run.path) in models.value  # base + the newest run
    assert at.radio(key="cmp_prompt_mode").value == "held-out"
    at.toggle(key="cmp_sample").set_value(True)  # a random tiny model's greedy answer is only special tokens
    at.number_input(key="cmp_max_new").set_value(16).run()
    at.button(key="cmp_go").click().run()
    assert not at.exception, at.exception
    answers = at.session_state["cmp_answers"]
    assert set(answers["answers"]) == set(models.value) and answers["lang"] == "sw"
    assert all(answers["answers"].values())
    assert "Reference answer" in texts(at.markdown)  # the held-out prompt's own answer, beside the models'
    assert set(answers["infos"]) == set(models.value) and all(i["tokens"] <= 16 for i in answers["infos"].values())
    # each answer gets the verdict, and the sentence that says why
    verdicts = re.findall(r"-badge\[.*(?: · clean|, not |not real words|no counted line|not Swahili)",
                          texts(at.markdown))
    assert len(verdicts) == 2, texts(at.markdown)
    assert re.search(r"^(In Swahili|Not in Swahili|Shaped like|Empty or too short)", texts(at.caption), re.M)
    # own prompt: Answer is not greyed out while the box is empty (in a browser the click on it is what applies
    # the text just typed); pressed with nothing written, it says so
    at.radio(key="cmp_prompt_mode").set_value("own").run()
    assert not at.button(key="cmp_go").disabled
    at.button(key="cmp_go").click().run()
    assert "Write a prompt first" in texts(at.warning)
    # the text and the click arrive in one run, as a browser sends them: the models answer it at once
    at.text_area(key="cmp_own").input("What is the capital of Kenya? Please answer briefly.")
    at.button(key="cmp_go").click().run()
    assert not at.exception, at.exception
    assert "Prompt detected as English" in texts(at.caption)
    assert at.session_state["cmp_answers"]["prompt"] == "What is the capital of Kenya? Please answer briefly."


def test_compare_batch_evaluation_gives_a_table_and_csv(app, finished_run):
    at = open_page(app, "compare")
    at.number_input(key="cmp_max_new").set_value(8)
    at.number_input(key="cmp_batch_n").set_value(1).run()
    at.button(key="cmp_batch_go").click().run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert {"clean LPR", "LPR", "chrF++", "echo", "loop"} <= set(table.columns)
    assert set(table["prompts in"]) == {"Swahili", "English"} and len(table) == 4  # names, not codes
    assert "None" not in table.astype(str).values and (table["WPR"] == "—").all()  # WPR: Latin-script targets
    assert at.download_button(key="cmp_dl_metrics").label == "Download metrics (CSV)"
    assert "The answers" in texts(at.markdown) and at.radio(key="cmp_ans_lang").value == "sw"  # readable in the app
    assert finished_run.eval() is not None  # the run keeps its evaluation (shown on the Runs page)
    assert "chrF++ / 100" in chart_axis(at, "cmp-batch-chart")  # the references gave chrF++: the axis says so
    # answers made elsewhere are scored beside the held-out results, not in their place
    row = {"id": "p1", "lang": "sw", "prompt": "Mji mkuu wa Kenya ni upi?", "response": "Ni Nairobi.", "model": "mine"}
    at.file_uploader(key="cmp_resp_upload").upload("answers.jsonl", json.dumps(row).encode(), "application/jsonl")
    at.run()
    assert not at.exception, at.exception
    assert len(at.dataframe) == 2 and set(at.dataframe[1].value["model"]) == {"mine"}
    assert {"Held-out prompts: 1 per language", "Answers made elsewhere: `answers.jsonl`"} <= {
        m.value.lstrip("# ") for m in at.markdown}
    assert at.download_button(key="cmp_dl_metrics") and at.download_button(key="cmp_up_dl_metrics")
    # no reference, no chrF++: the uploaded batch's axis does not mention it
    assert chart_axis(at, "cmp_up-batch-chart") == "share of answers"


def chart_axis(at: AppTest, key: str) -> str:
    """The y-axis title of the plotly chart with ``key``."""
    chart = next(c for c in at.get("plotly_chart") if c.proto.id.endswith(key) or key in c.proto.id)
    return json.loads(chart.proto.spec)["layout"]["yaxis"]["title"]["text"]


def test_compare_batch_view_scores_an_uploaded_responses_file(app):
    """Answers made elsewhere: scored without a model, one block per model name, bad files named with their line."""
    rows = [{"id": "p1", "lang": "sw", "prompt": "Mji mkuu wa Kenya ni upi?",
             "response": "Mji mkuu wa Kenya ni Nairobi.", "model": "mine"},
            {"id": "p1", "lang": "sw", "prompt": "Mji mkuu wa Kenya ni upi?", "response": "The capital is Nairobi.",
             "model": "theirs"},
            {"id": "p1", "lang": "en", "prompt": "What is the capital of Kenya?", "response": "Nairobi is the capital.",
             "model": "mine"}]  # one id in two languages, as in the held-out sets and the files clo eval --out writes
    raw = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode()
    at = open_page(app, "compare")
    at.file_uploader(key="cmp_resp_upload").upload("answers.jsonl", raw, "application/jsonl")
    at.run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert set(table["model"]) == {"mine", "theirs"}
    sw = table[table["prompts in"] == "Swahili"].set_index("model")
    assert sw.loc["mine", "clean LPR"] != sw.loc["theirs", "clean LPR"]  # a Swahili answer against an English one
    assert "real words" in table.columns and "The answers" in texts(at.markdown)
    # the answers themselves, with the words the Swahili dictionary does not know marked
    assert any(":red-background[capital]" in m.value for m in at.markdown)
    at.file_uploader(key="cmp_resp_upload").upload("bad.jsonl", b'{"id": "1", "lang": "sw", "prompt": "x"}\n',
                                                   "application/jsonl")
    at.run()
    assert "bad.jsonl, line 1: field 'response' is missing" in texts(at.error)


def test_runs_page_lists_opens_and_deletes(app, finished_run):
    at = open_page(app, "runs")
    table = at.dataframe[0].value
    assert list(table["run"]) == ["tuned"] and table["status"][0] == "finished"
    assert "None" not in table.astype(str).values and table["clean LPR"][0] == "—"  # not evaluated yet
    # a few columns at a time (all twenty did not fit a window); every column is in one of the views
    shown = {}
    for view in at.segmented_control(key="runs_view").options:
        at.segmented_control(key="runs_view").set_value(view).run()
        shown[view] = list(at.dataframe[0].proto.column_order)
        assert shown[view][0] == "run" and len(shown[view]) <= 7, shown
    assert set(table.columns) == {c for cols in shown.values() for c in cols}
    assert at.selectbox(key="runs_sel").value == "tuned"
    at.button(key="runs_delete").click().run()
    assert "cannot be undone" in texts(at.warning)
    yes = at.button(key="runs_delete_yes")  # the irreversible choice looks it (its red: tests/test_browser.py)
    assert yes.proto.type == "primary" and yes.proto.icon == ":material/delete_forever:"
    at.button(key="runs_delete_no").click().run()
    assert finished_run.path.exists()
    at.button(key="runs_delete").click().run()
    at.button(key="runs_delete_yes").click().run()
    assert not at.exception, at.exception
    assert not finished_run.path.exists()
    assert "No runs yet" in texts(at.info)


def test_a_run_link_opens_that_run(app, runs_root, finished_run, tiny_model, xl_file):
    from clo.core.spec import TrainSpec
    from clo.training.run import run_training

    run_training(TrainSpec(model=str(tiny_model), data=str(xl_file), lang="sw", max_steps=1, batch_size=2),
                 runs_root / "newer")
    app.query_params["run"] = "tuned"
    at = open_page(app, "runs")
    assert at.selectbox(key="runs_sel").value == "tuned"  # not the newest run
    at.switch_page("app_pages/train.py").run()
    assert "`tuned`" in texts(at.markdown)


def test_open_in_compare_preselects_the_run_and_starts_fresh(app, finished_run):
    at = open_page(app, "runs")
    at.session_state["cmp_answers"] = {"prompt": "stale", "lang": "sw", "answers": {}}
    at.button(key="runs_open").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Compare"
    assert str(finished_run.path) in at.multiselect(key="cmp_models").value
    assert "cmp_answers" not in at.session_state  # no answer from other models or settings


def test_an_interrupted_run_is_resumed_from_the_runs_page(app, runs_root, tiny_model, xl_file):
    """A real training process kills itself in step 3 (CLO_FAULT, like kill -9) after its step-2 checkpoint. The
    Runs page shows it interrupted and resumable; Resume queues `clo runs resume` as a job, which the Train page
    shows, and which finishes the run. A run without a checkpoint says why it cannot be resumed."""
    from app_pages._shared import _job_manager
    from clo.core.spec import TrainSpec

    env = {**os.environ, "CLO_FAULT": "step:3", "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.run([sys.executable, "-m", "clo", "train", "--model", str(tiny_model), "--data", str(xl_file),
                        "--lang", "sw", "--batch-size", "2", "--max-length", "64", "--max-steps", "4",
                        "--save-steps", "2", "--out", str(runs_root / "killed")],
                       env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == -9, p.stderr[-2000:]
    plain = RunDir.create(runs_root / "plain", TrainSpec(model=str(tiny_model), data=str(xl_file), lang="sw").to_dict())
    plain.set_status("interrupted", error="the training process was killed (SIGKILL)")

    at = open_page(app, "runs")
    table = at.dataframe[0].value
    assert dict(zip(table["run"], table["status"])) == {"killed": "interrupted", "plain": "interrupted"}
    assert at.selectbox(key="runs_sel").value == "killed"
    assert at.button(key="runs_resume").label == "Resume from step 2"
    at.selectbox(key="runs_sel").set_value("plain").run()
    assert "No checkpoint: it was started without save_steps" in texts(at.caption)
    assert "train with “Save every N steps” to be able to resume" in texts(at.caption)
    assert "runs_resume" not in [b.key for b in at.button]

    at.selectbox(key="runs_sel").set_value("killed").run()
    at.button(key="runs_resume").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Train"  # where the job is shown live
    assert _job_manager(str(runs_root.resolve())).wait("killed", timeout=600) == "finished"
    at.switch_page("app_pages/train.py").run()  # the browser is on the Train page now; AppTest is told so
    assert not at.exception, at.exception
    assert "`killed` — finished" in texts(at.markdown) and "Finished after 4 steps" in texts(at.success)
    run = RunDir(runs_root / "killed")
    st = run.status()
    assert (st["resumed_from_step"], st["attempts"][0]["state"]) == (2, "interrupted")
    assert [r["step"] for r in run.metrics()] == [1, 2, 3, 4] and run.has_model()
    assert not run.checkpoint_path.exists() and "checkpoint_step" not in st
    assert "--- resume from step 2" in (run.path / "train.log").read_text()
    at.switch_page("app_pages/runs.py").run()
    assert "runs_resume" not in [b.key for b in at.button]  # finished: nothing to resume


def test_a_failing_resume_shows_its_error_on_the_runs_and_train_pages(app, runs_root, tmp_path, xl_file):
    """Resume of a run whose base model folder has since been removed: the real `clo runs resume` child refuses
    it; both pages show why, and the run stays interrupted and resumable (nothing was changed)."""
    from app_pages._shared import _job_manager
    from clo.core.spec import TrainSpec

    run = RunDir.create(runs_root / "orphaned", TrainSpec(model=str(tmp_path / "gone-model"), data=str(xl_file),
                                                          lang="sw", save_steps=1).to_dict())
    run.checkpoint_path.mkdir()
    (run.checkpoint_path / "trainer_state.json").write_text(json.dumps({"global_step": 1}))
    run.set_status("interrupted", error="the training process was killed (SIGKILL)")
    at = open_page(app, "runs")
    at.button(key="runs_resume").click().run()
    assert not at.exception, at.exception
    assert _job_manager(str(runs_root.resolve())).wait("orphaned", timeout=600) == "interrupted"
    at.switch_page("app_pages/train.py").run()
    assert "`orphaned` — interrupted" in texts(at.markdown)
    assert "Resume failed:" in texts(at.error) and "not available offline" in texts(at.error)
    assert "gone-model" in run.status()["resume_error"] and resume_check(run) == (1, None)
    at.switch_page("app_pages/runs.py").run()
    assert "Resume failed:" in texts(at.error) and at.button(key="runs_resume").label == "Resume from step 1"


def test_train_page_runs_simpo_on_two_languages_and_compare_scores_each(app, runs_root):
    """The done-when run from the Train page: objective simpo, target languages sw + yo, demo data, 2 steps;
    the Runs table shows its objective and Compare offers both its languages."""
    at = open_page(app, "train")
    assert at.selectbox(key="tr_data").value == "demo"
    assert at.multiselect(key="tr_langs").value == ["sw"]  # the sidebar's language
    assert {"Swahili", "Yoruba", "Chinese"} <= set(at.multiselect(key="tr_langs").options)  # labels
    at.multiselect(key="tr_langs").set_value(["sw", "yo"])
    at.selectbox(key="tr_objective").set_value("simpo").run()
    assert "reference-free" in texts(at.caption)  # the one-line explanation of the chosen objective
    at.number_input(key="tr_batch_size").set_value(2)
    at.number_input(key="tr_max_steps").set_value(2).run()
    assert not at.exception and not at.error, texts(at.error)
    at.button(key="tr_launch").click().run()
    assert not at.exception, at.exception
    run = RunDir(runs_root / at.session_state["train_run"])
    assert wait_for_state(run) == "finished", run.status()
    cfg = run.config()
    assert cfg["objective"] == "simpo" and cfg["lang"] == "sw,yo" and run.id.endswith("-clo-sw-yo")
    assert run.status().get("ref_cache_hit") is None  # no reference pass
    at.switch_page("app_pages/runs.py").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert table.loc[table["run"] == run.id, "objective"].item() == "simpo"
    at.session_state["compare_open"] = str(run.path)
    at.switch_page("app_pages/compare.py").run()
    assert not at.exception, at.exception
    assert at.multiselect(key="cmp_batch_langs").value == ["sw", "yo", "en"]
