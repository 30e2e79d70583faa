"""Run directories: atomic files, torn metrics lines, lost processes, ids confined to their folder."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from clo.runs import RunDir, RunError, list_runs, recover_lost, safe_run_path


def test_create_writes_config_and_queued_status(tmp_path):
    run = RunDir.create(tmp_path / "r1", {"method": "clo", "lang": "sw"})
    assert run.config() == {"method": "clo", "lang": "sw"}
    assert run.status()["state"] == "queued"
    RunDir.create(tmp_path / "r1", {"method": "clo"})  # a queued run is taken over by the job that runs it
    run.set_status("running")
    with pytest.raises(RunError, match="already exists"):
        RunDir.create(tmp_path / "r1", {})


def test_metrics_survive_a_torn_last_line(tmp_path):
    run = RunDir.create(tmp_path / "r", {})
    run.append_metrics({"step": 1, "loss": 1.0})
    run.append_metrics({"step": 2, "loss": 0.5})
    with open(run.metrics_path, "a") as f:
        f.write('{"step": 3, "lo')  # killed mid-write
    assert [r["step"] for r in run.metrics()] == [1, 2]


def test_lost_running_process_is_marked_interrupted(tmp_path):
    run = RunDir.create(tmp_path / "r", {"method": "clo"})
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run.set_status("running")
    data = json.loads(run.status_path.read_text())
    data["pid"] = dead.pid
    run.status_path.write_text(json.dumps(data))
    assert recover_lost(tmp_path) == ["r"]
    st = run.status()
    assert st["state"] == "interrupted" and "lost at" in st["error"]
    assert list_runs(tmp_path)[0]["state"] == "interrupted"


def test_live_process_is_not_interrupted(tmp_path):
    run = RunDir.create(tmp_path / "r", {})
    run.set_status("running")  # this very process
    assert recover_lost(tmp_path) == []


def test_save_model_is_atomic_and_keeps_old_on_failure(tmp_path):
    run = RunDir.create(tmp_path / "r", {})
    run.save_model(lambda d: (d / "config.json").write_text("{}"))
    assert run.has_model()

    def broken(d):
        (d / "config.json").write_text('{"new": true}')
        raise OSError("disk full")

    with pytest.raises(OSError):
        run.save_model(broken)
    assert (run.model_path / "config.json").read_text() == "{}"
    assert not [p for p in run.path.iterdir() if p.name.startswith(".model")]


@pytest.mark.parametrize("bad", ["..", "../x", "a/b", "/etc", "", ".hidden", "x" * 200, "a\\b"])
def test_run_ids_cannot_leave_the_runs_folder(tmp_path, bad):
    with pytest.raises(RunError):
        safe_run_path(tmp_path, bad)


def test_symlink_out_is_refused(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "evil").symlink_to(tmp_path)
    with pytest.raises(RunError):
        safe_run_path(tmp_path / "runs", "evil")


def test_stop_request_file(tmp_path):
    run = RunDir.create(tmp_path / "r", {})
    assert not run.stop_requested()
    run.request_stop()
    assert run.stop_requested()


def test_model_left_in_old_folder_by_a_kill_is_restored(tmp_path):
    run = RunDir.create(tmp_path / "r", {})
    run.save_model(lambda d: (d / "config.json").write_text("{}"))
    import os

    os.replace(run.model_path, run.path / ".model.old.123")  # killed between the two renames
    assert not run.has_model()
    recover_lost(tmp_path)
    assert run.has_model()
