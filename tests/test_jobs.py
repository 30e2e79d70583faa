"""JobManager: FIFO order, one job at a time, failures free the queue, stop keeps the model, re-adoption.

Most tests use a fake trainer (a few lines of Python that behaves like ``python -m clo train`` on the run
directory) so that queue semantics are tested in milliseconds; two run the real CLI on a tiny model: three
launches in a row with a crashing middle one, and a job that outlives the (killed) app that started it.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import wait_for

from clo.core.process import pid_alive
from clo.core.spec import TrainSpec
from clo.runs.catalog import list_runs
from clo.runs.jobs import JobManager, Progress, cli_command, error_from_log, read_progress, save_config
from clo.runs.resume import resume_check
from clo.runs.rundir import RunDir, RunError

ROOT = Path(__file__).resolve().parent.parent

FAKE_TRAINER = textwrap.dedent('''
    """Behaves like `python -m clo train --config C --out D`: data=fail-early / crash / selfkill / anything else."""
    import os, sys, time
    from pathlib import Path
    import yaml
    from clo.runs.rundir import RunDir

    cfg_path = sys.argv[sys.argv.index("--config") + 1]
    out = Path(sys.argv[sys.argv.index("--out") + 1])
    cfg = yaml.safe_load(open(cfg_path))
    journal = Path(os.environ["FAKE_JOURNAL"])
    def note(what):
        with open(journal, "a") as f:
            f.write(f"{what} {out.name}\\n")
    note("start")
    if cfg["data"] == "fail-early":          # like a missing model: the CLI fails before touching the run
        print("error: data file fail-early not found", file=sys.stderr)
        note("end")
        sys.exit(2)
    run = RunDir.create(out, cfg)            # takes over the queued folder, as the CLI does
    run.set_status("running", phase="training")
    steps = cfg.get("max_steps") or 3
    stopped = False
    for step in range(1, steps + 1):
        time.sleep(0.02)
        run.append_metrics({"step": step, "stage": "clo", "loss": 1.0 / step, "max_steps": steps,
                            "elapsed_s": 0.02 * step})
        if cfg["data"] == "crash":
            raise RuntimeError("boom at step 1")
        if cfg["data"] == "selfkill":         # like the out-of-memory killer: no chance to record anything
            import signal
            os.kill(os.getpid(), signal.SIGKILL)
        if run.stop_requested():
            stopped = True
            break
    run.save_model(lambda d: (d / "config.json").write_text("{}"))
    note("end")
    run.set_status("stopped" if stopped else "finished", phase="done")
''')


@pytest.fixture()
def fake(tmp_path, monkeypatch):
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    journal = tmp_path / "journal.txt"
    journal.touch()
    monkeypatch.setenv("FAKE_JOURNAL", str(journal))

    def command(run_dir: Path) -> list[str]:
        return [sys.executable, str(script), "--config", str(run_dir / "config.yaml"), "--out", str(run_dir)]

    return command, journal


@pytest.fixture()
def manager(tmp_path, fake):
    mgr = JobManager(tmp_path / "runs", command=fake[0], poll_s=0.05)
    yield mgr
    mgr.close()


def spec(**kw) -> TrainSpec:
    return TrainSpec(**{"model": "tiny", "data": "demo", "max_steps": 3, **kw})


def test_jobs_run_in_submission_order_one_at_a_time(manager, fake):
    jobs = [manager.submit(spec(), run_id=f"job-{i}") for i in range(3)]
    assert [j.run_id for j in manager.jobs()] == ["job-0", "job-1", "job-2"]
    # the two later jobs wait behind the first, in order, and are visible on disk as queued runs
    assert manager.position("job-1") < manager.position("job-2")
    assert RunDir(jobs[2].run_dir).status()["state"] == "queued"
    for j in jobs:
        assert manager.wait(j.run_id, timeout=60) == "finished"
    assert fake[1].read_text().split("\n")[:-1] == [
        "start job-0", "end job-0", "start job-1", "end job-1", "start job-2", "end job-2"]
    assert manager.active() is None and manager.queued() == []


def test_failure_records_the_error_and_frees_the_queue(manager):
    early = manager.submit(spec(data="fail-early"), run_id="early")
    crash = manager.submit(spec(data="crash"), run_id="crash")
    ok = manager.submit(spec(), run_id="ok")
    assert manager.wait("early", 60) == "failed"
    assert RunDir(early.run_dir).status()["error"] == "data file fail-early not found"
    assert manager.wait("crash", 60) == "failed"
    assert RunDir(crash.run_dir).status()["error"] == "RuntimeError: boom at step 1"
    assert manager.wait("ok", 60) == "finished"
    assert RunDir(ok.run_dir).has_model()


def test_a_killed_job_is_marked_interrupted_and_the_queue_moves_on(manager):
    killed = manager.submit(spec(data="selfkill"), run_id="killed")
    manager.submit(spec(), run_id="ok")
    assert manager.wait("killed", 60) == "interrupted"
    st = killed.run.status()
    assert st["returncode"] == -9 and "killed (SIGKILL)" in st["error"]
    assert st["lost_at"] <= st["interrupted_at"] and [r["step"] for r in killed.run.metrics()] == [1]
    assert manager.wait("ok", 60) == "finished"


def test_stop_ends_a_running_job_and_keeps_its_model(manager):
    job = manager.submit(spec(max_steps=100_000), run_id="long")
    wait_for(lambda: len(job.run.metrics()) >= 2)
    assert manager.stop("long") == "stopping"
    assert manager.wait("long", 60) == "stopped"
    assert job.run.has_model()
    assert 2 <= len(job.run.metrics()) < 100_000


def test_stop_cancels_a_queued_job(manager):
    manager.submit(spec(max_steps=100_000), run_id="first")
    second = manager.submit(spec(), run_id="second")
    assert manager.stop("second") == "cancelled"
    st = second.run.status()
    assert st["state"] == "stopped" and "Cancelled" in st["error"]
    assert manager.position("second") is None
    manager.stop("first")
    assert manager.wait("first", 60) == "stopped"
    assert manager.stop("first") == "not running"


def test_delete_refuses_an_active_job_then_removes_the_run(manager):
    job = manager.submit(spec(max_steps=100_000), run_id="busy")
    with pytest.raises(RunError, match="stop it"):
        manager.delete("busy")
    manager.stop("busy")
    manager.wait("busy", 60)
    manager.delete("busy")
    assert not job.run_dir.exists()
    with pytest.raises(RunError):
        manager.delete("../outside")


def test_taken_run_ids_get_a_suffix(manager):
    a = manager.submit(spec(), run_id=None)
    b = manager.submit(spec(), run_id=None)
    assert a.run_id != b.run_id
    with pytest.raises(RunError, match="already exists"):
        manager.submit(spec(), run_id=a.run_id)
    manager.wait(b.run_id, 60)


def test_a_new_manager_adopts_runs_queued_by_a_process_that_is_gone(tmp_path, fake):
    root = tmp_path / "runs"
    run = RunDir.create(root / "orphan", spec().to_dict())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run.set_status("queued", queued_by=dead.pid, host=__import__("socket").gethostname())
    mgr = JobManager(root, command=fake[0], poll_s=0.05)
    try:
        assert mgr.wait("orphan", 60) == "finished"
    finally:
        mgr.close()


def test_read_progress_gives_step_total_and_eta(tmp_path):
    run = RunDir.create(tmp_path / "r", spec().to_dict())
    assert read_progress(run).state == "queued" and read_progress(run).fraction == 0.0
    assert read_progress(run).max_steps == 3  # known from config.yaml before the first step
    run.set_status("running", phase="training")
    rows = [{"step": s, "stage": "clo", "max_steps": 10, "elapsed_s": 2.0 * s} for s in (1, 2, 3, 4)]
    p = read_progress(run, rows)
    assert (p.step, p.max_steps, p.fraction) == (4, 10, 0.4)
    assert p.eta_s == pytest.approx(12.0)  # 2 s a step, 6 steps left
    # a second stage (sft-dpo): its clock restarts, the ETA uses only its own steps
    rows += [{"step": 5, "stage": "dpo", "max_steps": 10, "elapsed_s": 1.0}]
    assert read_progress(run, rows).eta_s == pytest.approx(5.0)
    # read from disk, the ETA counts down from the moment the last row was written
    for r in rows[:4]:
        run.append_metrics(r)
    written = run.metrics_path.stat().st_mtime
    assert read_progress(run, now=written + 5.0).eta_s == pytest.approx(7.0)
    assert read_progress(run, now=written + 60.0).eta_s == 0.0
    run.set_status("finished")
    assert read_progress(run, rows).fraction == 1.0 and read_progress(run, rows).eta_s is None
    assert isinstance(p, Progress)


def test_read_progress_of_the_reference_pass_and_a_finished_run(tmp_path):
    from datetime import datetime

    run = RunDir.create(tmp_path / "r", spec().to_dict())
    run.phase("loading")
    assert read_progress(run).phase_s is not None  # how long it has been loading
    run.phase("reference", ref_done=2, ref_total=8, ref_elapsed_s=10.0)  # 5 s a batch, 6 batches left
    updated = datetime.fromisoformat(run.status()["updated"]).timestamp()
    p = read_progress(run, now=updated)
    assert p.in_reference and (p.ref_done, p.ref_total, p.fraction) == (2, 8, 0.25)
    assert p.ref_eta_s == pytest.approx(30.0)
    assert read_progress(run, now=updated + 20).ref_eta_s == pytest.approx(10.0)  # counts down between batches
    run.finish("finished", duration_s=42.0)
    assert read_progress(run).duration_s == 42.0 and not read_progress(run).in_reference


def test_error_from_log_prefers_the_cli_error_line(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("Loading…\rclo:  50%\nerror: Model 'x' is not available offline.\n")
    assert error_from_log(log) == "Model 'x' is not available offline."
    log.write_text("Traceback (most recent call last):\n  File x\nValueError: bad shape\n")
    assert error_from_log(log) == "ValueError: bad shape"
    assert error_from_log(tmp_path / "missing.log") is None


def test_cli_command_and_saved_config_reproduce_the_spec(tmp_path):
    s = spec(lr=1e-4)
    path = save_config(s, tmp_path)
    assert save_config(s, tmp_path) == path  # same settings, same file
    assert TrainSpec.from_dict(__import__("yaml").safe_load(path.read_text())) == s
    assert cli_command(path, tmp_path / "out dir").startswith(f"python -m clo train --config {path}")
    assert "'" in cli_command(path, tmp_path / "out dir")  # paths with spaces are quoted


def real(model, data, **kw) -> TrainSpec:
    return TrainSpec(**{"model": str(model), "data": str(data), "lang": "sw", "max_steps": 2, "batch_size": 2,
                        "max_length": 64, **kw})


def test_three_real_jobs_in_a_row_the_failing_middle_one_frees_the_queue(tmp_path, tiny_model, xl_file):
    """Three launches of the real CLI; the middle one crashes inside its training process (its weights file
    is corrupt). They run in order, one at a time; the failure is recorded with its error; the third runs."""
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model, broken)
    (broken / "model.safetensors").write_bytes(b"\0" * 100)
    mgr = JobManager(tmp_path / "runs")
    try:
        first = mgr.submit(real(tiny_model, xl_file), run_id="first")
        bad = mgr.submit(real(broken, xl_file), run_id="bad")
        third = mgr.submit(real(tiny_model, xl_file), run_id="third")
        assert mgr.wait("third", timeout=600) == "finished", third.run.status()
        assert mgr.wait("first", 1) == "finished" and mgr.wait("bad", 1) == "failed"
    finally:
        mgr.close()
    assert first.ended <= bad.started and bad.ended <= third.started  # one process at a time, in order
    st = bad.run.status()
    assert st["state"] == "failed" and "SafetensorError" in st["error"], st
    assert "SafetensorError" in (bad.run_dir / "train.log").read_text()
    for job in (first, third):
        assert [r["step"] for r in job.run.metrics()] == [1, 2]
        assert job.run.has_model() and (job.run_dir / "train.log").exists()
    assert not bad.run.has_model()


def test_closing_the_manager_without_kill_leaves_the_job_running(manager, fake, tmp_path):
    """A page going away closes nothing, but even a closed manager (kill=False) leaves its child training;
    a new manager sees it, can stop it, and adopts the job that was queued behind it."""
    long = manager.submit(spec(max_steps=100_000), run_id="long")
    manager.submit(spec(), run_id="after")
    wait_for(lambda: len(long.run.metrics()) >= 2)
    manager.close(kill=False)
    assert RunDir(tmp_path / "runs" / "after").status()["state"] == "queued"  # released, not lost
    steps = len(long.run.metrics())
    wait_for(lambda: len(long.run.metrics()) > steps)  # still training
    second = JobManager(tmp_path / "runs", command=fake[0], poll_s=0.05)
    try:
        assert second.running_elsewhere() == ["long"]
        assert second.position("after") == 1  # adopted, waiting for the job it does not own
        assert second.stop("long") == "stopping"
        wait_for(lambda: long.run.status()["state"] == "stopped")
        assert long.run.has_model()
        assert second.wait("after", 60) == "finished"
    finally:
        second.close()
    lines = fake[1].read_text().split("\n")[:-1]
    assert lines.index("end long") < lines.index("start after")  # never two at once


APP = textwrap.dedent('''
    """A stand-in for the Streamlit app: one JobManager (as in st.cache_resource) and two submitted jobs."""
    import sys, time
    from clo.runs.jobs import JobManager
    from clo.core.spec import TrainSpec

    root, model, data = sys.argv[1:4]
    jobs = JobManager(root)
    common = dict(model=model, data=data, lang="sw", batch_size=2, max_length=64)
    jobs.submit(TrainSpec(max_steps=100_000, **common), run_id="long")
    jobs.submit(TrainSpec(max_steps=1, **common), run_id="next")
    print("submitted", flush=True)
    time.sleep(3600)
''')


def test_a_real_job_outlives_the_app_that_started_it(tmp_path, tiny_model, xl_file):
    """The app process is killed (SIGKILL) while its job trains: the training process goes on; the next app's
    manager sees it as running elsewhere, can stop it (the model of its last step is kept), and then runs the
    job that was queued behind it."""
    root = tmp_path / "runs"
    script = tmp_path / "app.py"
    script.write_text(APP)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    app = subprocess.Popen([sys.executable, str(script), str(root), str(tiny_model), str(xl_file)], env=env,
                           cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert app.stdout.readline().strip() == "submitted"
        long = RunDir(root / "long")
        wait_for(lambda: len(long.metrics()) >= 1, timeout=300)
        app.kill()  # the app dies without any cleanup
        app.wait()
        st = long.status()
        assert st["state"] == "running" and pid_alive(st["pid"], st["pid_started"])
        steps = len(long.metrics())
        wait_for(lambda: len(long.metrics()) > steps, timeout=300)  # still training without its app
        assert {r["id"]: r["state"] for r in list_runs(root)} == {"long": "running", "next": "queued"}
        jobs = JobManager(root)  # the next start of the app
        try:
            assert jobs.running_elsewhere() == ["long"] and jobs.position("next") == 1
            assert RunDir(root / "next").status()["state"] == "queued"
            assert jobs.stop("long") == "stopping"
            assert jobs.wait("next", timeout=600) == "finished", RunDir(root / "next").status()
        finally:
            jobs.close()
        assert long.status()["state"] == "stopped" and long.has_model()
        assert long.status()["ended"] <= RunDir(root / "next").status()["started"]
        assert RunDir(root / "next").has_model()
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
        st = RunDir(root / "long").status()
        if st.get("state") == "running" and pid_alive(st.get("pid"), st.get("pid_started")):
            os.kill(st["pid"], signal.SIGKILL)  # never leave a training process behind (it is ours)


# -- resume jobs ---------------------------------------------------------------------------------------------------

FAKE_RESUMER = textwrap.dedent('''
    """Behaves like `python -m clo runs resume D`: refuses what clo refuses, else goes on from the checkpoint."""
    import os, sys, time
    from pathlib import Path
    from clo.runs.resume import prepare_resume, resume_point
    from clo.runs.rundir import RunDir, RunError

    out = Path(sys.argv[-1])
    with open(os.environ["FAKE_JOURNAL"], "a") as f:
        f.write(f"resume {out.name}\\n")
    run = RunDir(out)
    try:
        step = resume_point(run)
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    prepare_resume(run, step)
    run.set_status("running", phase="training")
    steps = run.config().get("max_steps") or 3
    for s in range(step + 1, steps + 1):
        time.sleep(0.02)
        run.append_metrics({"step": s, "stage": "clo", "loss": 1.0 / s, "max_steps": steps})
    run.save_model(lambda d: (d / "config.json").write_text("{}"))
    with open(os.environ["FAKE_JOURNAL"], "a") as f:
        f.write(f"resumed {out.name}\\n")
    run.drop_checkpoint()
    run.set_status("finished", phase="done", step=steps)
''')


def interrupted_run(path: Path, checkpoint: int | None = 1, **kw) -> RunDir:
    """A run as a kill leaves it: interrupted, two metrics rows, and (by default) a checkpoint of step 1."""
    import json

    run = RunDir.create(path, spec(save_steps=1, **kw).to_dict())
    for s in (1, 2):
        run.append_metrics({"step": s, "stage": "clo", "loss": 1.0 / s, "max_steps": 3})
    if checkpoint:
        run.checkpoint_path.mkdir()
        (run.checkpoint_path / "trainer_state.json").write_text(json.dumps({"global_step": checkpoint}))
    run.set_status("interrupted", error="the training process was killed (SIGKILL)", saved_step=checkpoint,
                   checkpoint_step=checkpoint)
    return run


@pytest.fixture()
def resumer(tmp_path, fake):
    script = tmp_path / "fake_resumer.py"
    script.write_text(FAKE_RESUMER)
    return lambda run_dir: [sys.executable, str(script), str(run_dir)]


def test_a_resume_waits_its_turn_in_the_queue_and_can_be_cancelled(tmp_path, fake, resumer):
    root = tmp_path / "runs"
    lost = interrupted_run(root / "lost")
    mgr = JobManager(root, command=fake[0], resume=resumer, poll_s=0.05)
    try:
        first = mgr.submit(spec(max_steps=100_000), run_id="first")
        wait_for(lambda: len(first.run.metrics()) >= 1)
        job = mgr.submit_resume("lost")
        assert job.kind == "resume" and mgr.position("lost") == 1
        st = lost.status()
        assert st["state"] == "queued" and st["resume_of"]["state"] == "interrupted"  # visible to every tab
        assert read_progress(lost).phase == "waiting in the queue to resume from step 1"
        with pytest.raises(RunError, match="already queued"):
            mgr.submit_resume("lost")
        # cancelling a queued resume leaves the run exactly as it was: interrupted, still resumable
        assert mgr.stop("lost") == "cancelled"
        st = lost.status()
        assert (st["state"], st["error"], st["checkpoint_step"]) == (
            "interrupted", "the training process was killed (SIGKILL)", 1)
        assert "resume_of" not in st and resume_check(lost) == (1, None)
        mgr.submit_resume("lost")
        assert mgr.stop("first") == "stopping"
        assert mgr.wait("lost", 60) == "finished"
    finally:
        mgr.close()
    assert fake[1].read_text().split("\n")[:-1] == ["start first", "end first", "resume lost", "resumed lost"]
    st = lost.status()
    assert (st["resumed_from_step"], st["attempts"][0]["state"], st["attempts"][0]["error"]) == (
        1, "interrupted", "the training process was killed (SIGKILL)")
    assert [r["step"] for r in lost.metrics()] == [1, 2, 3] and "checkpoint_step" not in st
    assert "--- resume from step 1" in (lost.path / "train.log").read_text()


def test_a_queued_resume_left_by_a_closed_manager_is_adopted_as_a_resume(tmp_path, fake, resumer):
    root = tmp_path / "runs"
    lost = interrupted_run(root / "lost")
    first = JobManager(root, command=fake[0], resume=resumer, poll_s=0.05)
    try:
        long = first.submit(spec(max_steps=100_000), run_id="long")
        wait_for(lambda: len(long.run.metrics()) >= 1)
        first.submit_resume("lost")
    finally:
        first.close()  # kills "long"; the queued resume is released to the next manager
    assert lost.status()["state"] == "queued" and lost.status()["released"] is True
    second = JobManager(root, command=fake[0], resume=resumer, poll_s=0.05)
    try:
        assert [(j.run_id, j.kind) for j in second.jobs()] == [("lost", "resume")]  # adopted, as a resume
        assert second.wait("lost", 60) == "finished"
    finally:
        second.close()
    assert fake[1].read_text().split("\n")[:-1][-2:] == ["resume lost", "resumed lost"]  # resumed, not retrained
    assert lost.status()["resumed_from_step"] == 1


def test_a_resume_is_refused_at_once_when_the_run_cannot_be_resumed(manager, tmp_path):
    root = tmp_path / "runs"
    interrupted_run(root / "no-ckpt", checkpoint=None)
    done = interrupted_run(root / "done")
    done.set_status("finished")
    for run_id, why in [("no-ckpt", "before its first checkpoint"), ("done", "already finished"),
                        ("nope", "No run nope")]:
        before = (root / run_id / "status.json").read_bytes() if (root / run_id).exists() else None
        with pytest.raises(RunError, match=why):
            manager.submit_resume(run_id)
        if before is not None:
            assert (root / run_id / "status.json").read_bytes() == before
    with pytest.raises(RunError):
        manager.submit_resume("../outside")
    assert manager.queued() == [] and manager.active() is None


def test_a_failing_resume_shows_its_error_and_leaves_the_run_as_it_was(tmp_path):
    """The real `python -m clo runs resume` child, refused after the run was queued: the base model folder is
    gone. The run is interrupted again with its checkpoint, its page shows why the resume failed, and the queue
    moves on."""
    from clo.runs.catalog import run_table

    root = tmp_path / "runs"
    lost = interrupted_run(root / "lost", model=str(tmp_path / "gone-model"))
    mgr = JobManager(root)
    try:
        mgr.submit_resume("lost")
        assert mgr.wait("lost", timeout=600) == "interrupted"
    finally:
        mgr.close()
    st = lost.status()
    assert "not available offline" in st["resume_error"] and "gone-model" in st["resume_error"]
    assert st["error"] == "the training process was killed (SIGKILL)" and st["returncode"] == 2
    assert resume_check(lost) == (1, None) and [r["step"] for r in lost.metrics()] == [1, 2]
    row = run_table(root)[0]
    assert row["resumable"] and "not available offline" in row["resume_error"]


def test_a_queued_job_waits_for_the_jobs_before_it_never_for_itself(tmp_path):
    """The moment the worker has taken a job, before its process writes "running", the job is active but its run
    still says queued: it waits for nothing (the Train page once showed it "waiting for 1 job", its own id)."""
    slow_start = [sys.executable, "-c", "import time; time.sleep(60)"]  # a child that never reports it runs
    mgr = JobManager(tmp_path / "runs", command=lambda run_dir: slow_start, poll_s=0.05)
    try:
        assert mgr.waits_for() == []
        mgr.submit(spec(), run_id="first")
        wait_for(lambda: mgr.active() is not None, timeout=30, what="the worker taking the first job")
        mgr.submit(spec(), run_id="second")
        mgr.submit(spec(), run_id="third")
        assert RunDir(tmp_path / "runs" / "first").status()["state"] == "queued"  # taken, not yet running
        assert mgr.position("first") == 0 and mgr.waits_for("first") == []
        assert mgr.waits_for("second") == ["first"]
        assert mgr.waits_for("third") == ["first", "second"]
        assert mgr.waits_for() == ["first", "second", "third"]  # what a job about to be submitted waits for
    finally:
        for run_id in ("third", "second", "first"):
            mgr.stop(run_id)
        mgr.close()
