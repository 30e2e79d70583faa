"""Run directories: atomic files, torn metrics lines, lost processes, ids confined to their folder."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from clo.runs.catalog import list_runs
from clo.runs.resume import prepare_resume, resume_point
from clo.runs.rundir import RunDir, RunError, recover_lost, safe_run_path


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


def test_create_on_a_file_is_a_clear_run_error(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("keep me")
    with pytest.raises(RunError, match="is a file, not a run directory"):
        RunDir.create(f, {"method": "clo"})
    assert f.read_text() == "keep me"


def _with_checkpoint(run: RunDir, step: int) -> RunDir:
    run.checkpoint_path.mkdir()
    (run.checkpoint_path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    run.set_status("running", checkpoint_step=step)
    return run


def test_a_dropped_checkpoint_is_no_longer_named_in_the_status(tmp_path):
    run = _with_checkpoint(RunDir.create(tmp_path / "r", {"method": "clo", "save_steps": 2}), 2)
    assert run.status()["checkpoint_step"] == 2
    run.drop_checkpoint()  # a finished run
    run.set_status("finished")
    assert not run.checkpoint_path.exists() and "checkpoint_step" not in run.status()
    assert list_runs(tmp_path)[0]["checkpoint_step"] is None


@pytest.mark.parametrize("state, config, checkpoint, resumable, why", [
    ("interrupted", {"method": "clo", "save_steps": 2}, 2, True, None),
    ("stopped", {"method": "clo", "save_steps": 2}, 2, True, None),
    ("interrupted", {"method": "clo"}, None, False, "started without save_steps"),
    ("interrupted", {"method": "clo", "save_steps": 5}, None, False, "before its first checkpoint (save_steps 5)"),
    ("finished", {"method": "clo", "save_steps": 2}, None, False, "already finished"),
    ("queued", {"method": "clo"}, None, False, "waiting in the queue"),
    ("interrupted", {"method": "sft-dpo", "save_steps": 2}, None, False, "sft-dpo trains in two stages"),
])
def test_list_runs_says_whether_and_why_a_run_can_be_resumed(tmp_path, state, config, checkpoint, resumable, why):
    run = RunDir.create(tmp_path / "r", config)
    if checkpoint:
        _with_checkpoint(run, checkpoint)
    run.set_status(state)
    row = list_runs(tmp_path)[0]
    assert (row["resumable"], row["resume_step"]) == (resumable, checkpoint if resumable else None)
    assert (row["not_resumable"] is None) if why is None else (why in row["not_resumable"])


def test_a_resume_drops_the_lost_attempts_stop_request_but_keeps_one_made_after_queuing(tmp_path):
    """`clo runs resume` of an interrupted run: a STOP left by the lost attempt must not end the resume. A run
    queued for resume by the app (its stale STOP was removed then): a Stop clicked while its process starts
    must end it."""
    run = _with_checkpoint(RunDir.create(tmp_path / "cli", {"method": "clo", "save_steps": 1}), 1)
    run.request_stop()
    run.set_status("interrupted", error="killed")
    prepare_resume(run, resume_point(run))
    assert not run.stop_requested() and run.status()["attempts"][0]["state"] == "interrupted"

    app = _with_checkpoint(RunDir.create(tmp_path / "app", {"method": "clo", "save_steps": 1}), 1)
    app.set_status("interrupted", error="killed")
    previous = app.status()
    app.set_status("queued", resume_of=previous, resume_step=1)  # as JobManager.submit_resume leaves it
    app.request_stop()  # clicked after it was queued
    prepare_resume(app, resume_point(app))
    st = app.status()
    assert app.stop_requested() and st["state"] == "running" and "resume_of" not in st
    assert (st["attempts"][0]["state"], st["attempts"][0]["error"]) == ("interrupted", "killed")


def _finished_run(root, name, spec, *, ended, per_step, ref_per_sample, steps=10, n_samples=40, other=30.0):
    """A finished run as the estimate reads it: config.yaml, status.json and metrics rows with elapsed_s."""
    run = RunDir.create(root / name, spec.to_dict())
    for step in range(1, steps + 1):
        run.append_metrics({"step": step, "loss": 1.0, "elapsed_s": per_step * step})
    ref = ref_per_sample * n_samples
    run.finish("finished", ended=ended, step=steps, n_samples=n_samples, ref_pass_s=ref, precision="fp32",
               duration_s=ref + per_step * steps + other)
    return run


def test_a_time_estimate_counts_gradient_accumulation_and_matches_runs_on_it(tmp_path):
    """With grad_accum 2 a step trains on batch_size × 2 samples (clo.core.spec.TrainSpec.samples_per_step), as
    the run counts them (clo.training.run.samples_used): the reference pass scores that many and an epoch takes
    half the steps. Only a run with the same grad_accum measures a step's time."""
    from clo.core.spec import TrainSpec
    from clo.runs.estimate import estimate_run

    common = dict(model="m", method="clo", batch_size=2, device="cpu", precision="fp32")
    _finished_run(tmp_path, "accum2", TrainSpec(**common, grad_accum=2), ended="2025-01-01T00:00:00+00:00",
                  per_step=5.0, ref_per_sample=0.5)
    _finished_run(tmp_path, "accum1", TrainSpec(**common, grad_accum=1), ended="2025-01-02T00:00:00+00:00",
                  per_step=2.5, ref_per_sample=0.5)  # newer, but its steps are half as long

    est = estimate_run(TrainSpec(**common, grad_accum=2, max_steps=5), 100, tmp_path)
    assert est.basis == "accum2"
    assert est.steps == 5 and est.reference_s == 0.5 * 5 * 2 * 2  # 20 samples scored, not 10
    assert est.seconds == 5 * 5.0 + est.reference_s + 30.0
    assert TrainSpec(**common, grad_accum=2, max_steps=5).n_samples_used(100, processes=2) == 40

    epoch = estimate_run(TrainSpec(**common, grad_accum=2), 100, tmp_path)
    assert epoch.basis == "accum2" and epoch.steps == 25  # 50 batches of 2, a step every 2 batches
    assert epoch.reference_s == 0.5 * 100
    assert estimate_run(TrainSpec(**common, grad_accum=1), 100, tmp_path).steps == 50


def test_a_model_picker_offers_the_bases_then_every_run_with_its_languages_named(tmp_path):
    """clo.runs.catalog.model_choices: what Compare's and the Arena's pickers offer, in one definition."""
    from clo.runs.catalog import model_choices

    runs = [{"path": "/r/a", "id": "a", "method": "clo", "lang": "sw,yo"}]
    from clo.models.registry import display_name

    assert model_choices(runs, ("", "default")) == {"default": f"Base · {display_name('default')}",
                                                    "/r/a": "a · clo · Swahili + Yoruba"}
    assert list(model_choices(runs, ("/m", "default"))) == ["/m", "default", "/r/a"]
