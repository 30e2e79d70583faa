"""One bad run folder never takes a listing down: every reader of a run folder (``list_runs``, ``run_table``,
``recover_lost``, ``RunDir.status()/config()``, resume, ``clo runs``, the Runs, Compare and Train pages) shows a run
whose files cannot be used as ``unreadable`` with the reason, and every other run as before.

The bad files are real bytes on disk: not UTF-8, half-written JSON, a YAML list, a folder where a file goes.
"""
from __future__ import annotations

import json
import os

import pytest

from clo.cli.main import main
from clo.core.process import this_host
from clo.runs.catalog import list_runs, run_table, runs_with_model
from clo.runs.jobs import JobManager, read_progress
from clo.runs.resume import resume_point
from clo.runs.rundir import READ_STATES, RUN_STATES, RunDir, RunError, recover_lost


def good_run(root, name="good") -> RunDir:
    run = RunDir.create(root / name, {"method": "clo", "lang": "sw", "model": "tiny", "lr": 5e-5})
    run.append_metrics({"step": 1, "loss": 0.5})
    run.model_path.mkdir()
    (run.model_path / "config.json").write_text("{}")
    run.set_status("finished", started="2025-01-01T00:00:00+00:00")
    return run


def _bad(name: str, file: str, content) -> tuple:
    return pytest.param(file, content, id=name)


# (file, content as bytes or "folder" or None for "remove it") → the run is unreadable, and the reason says why
BAD_RUN_FILES = [
    _bad("config-not-utf8", "config.yaml", b"\xff\xfe"),
    _bad("config-a-yaml-list", "config.yaml", b"- 1\n- 2\n"),
    _bad("config-broken-yaml", "config.yaml", b"method: [clo\nlang: sw\n"),
    _bad("config-empty", "config.yaml", b""),
    _bad("config-a-folder", "config.yaml", "folder"),
    _bad("config-missing", "config.yaml", None),
    _bad("status-half-written", "status.json", b'{"state": "runn'),
    _bad("status-not-utf8", "status.json", b'{"state": "finished", "note": "\xff\xfe"}'),
    _bad("status-a-list", "status.json", b'["finished"]'),
    _bad("status-unknown-state", "status.json", b'{"state": "banana"}'),
    _bad("status-a-folder", "status.json", "folder"),
]
REASONS = {"config-not-utf8": "not UTF-8", "config-a-yaml-list": "holds a list, not a mapping",
           "config-broken-yaml": "not valid YAML", "config-empty": "empty", "config-a-folder": "cannot be read",
           "config-missing": "config.yaml is missing", "status-half-written": "not valid JSON",
           "status-not-utf8": "not UTF-8", "status-a-list": "holds a list", "status-unknown-state": "no known state",
           "status-a-folder": "cannot be read"}


def spoil(run: RunDir, file: str, content) -> None:
    path = run.path / file
    path.unlink()
    if content == "folder":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)


def test_the_states_readers_report_are_declared_once():
    assert set(READ_STATES) == {"unknown", "unreadable"} and not set(READ_STATES) & set(RUN_STATES)
    run = RunDir("/nonexistent")
    with pytest.raises(ValueError, match="unknown run state"):
        run.set_status("unreadable")  # never written


@pytest.mark.parametrize("file,content", BAD_RUN_FILES)
def test_one_unreadable_run_never_hides_the_others(file, content, tmp_path, capsys, request):
    root = tmp_path / "runs"
    good = good_run(root)
    bad = good_run(root, "bad")
    spoil(bad, file, content)
    reason = REASONS[request.node.callspec.id]

    rows = {r["id"]: r for r in list_runs(root)}
    assert rows["good"]["state"] == "finished" and rows["good"]["method"] == "clo"
    assert rows["bad"]["state"] == "unreadable" and reason in rows["bad"]["error"], rows["bad"]
    assert "delete the run" in rows["bad"]["error"]
    assert {r["run"]: r["state"] for r in run_table(root)} == {"good": "finished", "bad": "unreadable"}
    assert [r["id"] for r in runs_with_model(root)] == ["good"]  # Compare offers only what can be loaded
    assert isinstance(bad.config(), dict) and isinstance(bad.status(), dict)  # the low-level readers never raise
    assert read_progress(bad).state == "unreadable"  # the Train page's live panel
    with pytest.raises(RunError, match="cannot be resumed: it is unreadable"):
        resume_point(bad)
    # the CLI lists both, with the reason, and exits 0
    assert main(["runs", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "good" in out and "finished" in out and "unreadable" in out and reason in out
    assert main(["runs", "--root", str(root), "--json"]) == 0
    listed = {r["id"]: r["state"] for r in json.loads(capsys.readouterr().out)}
    assert listed == {"good": "finished", "bad": "unreadable"}
    # resuming it from the CLI is one error line, exit 2
    assert main(["runs", "resume", "bad", "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "unreadable" in err and "Traceback" not in err
    # and the job manager can still delete it
    mgr = JobManager(root, adopt=False)
    try:
        mgr.delete("bad")
    finally:
        mgr.close()
    assert not bad.path.exists() and good.path.exists()


def test_metrics_and_eval_files_that_cannot_be_used_are_read_up_to_the_damage(tmp_path):
    root = tmp_path / "runs"
    run = good_run(root)
    with open(run.metrics_path, "ab") as f:
        f.write(b'{"step": 2, "loss": 0.4}\n\xff\xfe\n{"step": 3}\n')
    (run.path / "eval.json").write_bytes(b'["not", "a", "mapping"]')
    assert [r["step"] for r in run.metrics()] == [1, 2]
    assert run.eval() is None
    (row,) = run_table(root)
    assert row["state"] == "finished" and row["steps"] == 2 and row["clean_lpr"] is None


def test_values_of_the_wrong_type_are_shown_as_missing(tmp_path):
    root = tmp_path / "runs"
    good_run(root)
    odd = good_run(root, "odd")
    odd.config_path.write_text("method: [1, 2]\nlr: fast\nlang: 7\n")
    data = json.loads(odd.status_path.read_text())
    data.update(started=12345, duration_s="long", error=["x"])
    odd.status_path.write_text(json.dumps(data))
    rows = {r["id"]: r for r in list_runs(root)}  # sorting by start time mixes no types
    assert rows["odd"]["state"] == "finished"
    assert rows["odd"]["method"] is None and rows["odd"]["lr"] is None and rows["odd"]["started"] is None
    assert rows["odd"]["duration_s"] is None and rows["odd"]["error"] == "['x']"


def test_running_without_a_verifiable_owner_is_unknown_and_left_alone(tmp_path, capsys):
    """A status that says running with a live pid but no host (or no start time) cannot be checked: it is
    shown as unknown, not running, is not marked interrupted, and can be deleted."""
    root = tmp_path / "runs"
    good_run(root)
    run = RunDir.create(root / "orphan", {"method": "clo", "lang": "sw"})
    run.status_path.write_text(json.dumps({"state": "running", "pid": os.getpid(), "phase": "training",
                                           "started": "2025-01-02T00:00:00+00:00"}))
    before = run.status_path.read_bytes()
    assert recover_lost(root) == []
    rows = {r["id"]: r for r in list_runs(root)}
    assert rows["orphan"]["state"] == "unknown"
    assert "does not name its process fully" in rows["orphan"]["error"] and "host None" in rows["orphan"]["error"]
    assert run.status_path.read_bytes() == before  # nothing was written
    assert main(["runs", "--root", str(root)]) == 0
    assert "unknown" in capsys.readouterr().out
    # with every field present it is running again (this very process owns it)
    run.set_status("running")
    assert run.status()["host"] == this_host()
    assert {r["id"]: r["state"] for r in list_runs(root)}["orphan"] == "running"
    mgr = JobManager(root, adopt=False)
    try:
        run.status_path.write_text(before.decode())
        mgr.delete("orphan")  # an unknown run is not "training here": it can be deleted
    finally:
        mgr.close()
    assert not run.path.exists()


def test_a_write_moves_an_unreadable_status_aside_instead_of_losing_it(tmp_path):
    run = good_run(tmp_path)
    run.status_path.write_bytes(b'{"state": "fini')
    assert run.record(step=3)["state"] == "unreadable"  # a field update does not write over a broken file
    assert run.status_path.read_bytes() == b'{"state": "fini'
    run.set_status("stopped")
    assert (run.path / "status.json.unreadable").read_bytes() == b'{"state": "fini'
    assert run.status()["state"] == "stopped"


def test_the_runs_compare_and_train_pages_show_unreadable_runs_and_delete_them(app, tmp_path):
    root = tmp_path / "runs"
    good_run(root)
    for name, (file, content) in {"bad-utf8": ("config.yaml", b"\xff\xfe"),
                                  "bad-list": ("config.yaml", b"- a\n- b\n"),
                                  "bad-torn": ("status.json", b'{"state": ')}.items():
        spoil(good_run(root, name), file, content)
    app.run()
    at = app.switch_page("app_pages/runs.py").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert dict(zip(table["run"], table["status"])) == {"good": "finished", "bad-utf8": "unreadable",
                                                         "bad-list": "unreadable", "bad-torn": "unreadable"}
    at.selectbox(key="runs_sel").set_value("bad-utf8").run()
    assert "not UTF-8" in "\n".join(e.value for e in at.error)
    at.button(key="runs_delete").click().run()
    at.button(key="runs_delete_yes").click().run()
    assert not at.exception, at.exception
    assert not (root / "bad-utf8").exists() and (root / "good").exists()
    for page in ("compare", "train"):
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, (page, at.exception)
