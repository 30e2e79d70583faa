"""JobManager: FIFO order, one job at a time, failures free the queue, stop keeps the model, re-adoption.

Most tests use a fake trainer (a few lines of Python that behaves like ``python -m clo train`` on the run
directory) so that queue semantics are tested in milliseconds; one test runs the real CLI on a tiny model.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from clo.jobs import JobManager, Progress, cli_command, error_from_log, read_progress, save_config
from clo.runs import RunDir, RunError
from clo.train import TrainSpec

FAKE_TRAINER = textwrap.dedent('''
    """Behaves like `python -m clo train --config C --out D`: data=fail-early / crash / anything else."""
    import os, sys, time
    from pathlib import Path
    import yaml
    from clo.runs import RunDir

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


def wait_for(cond, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.05)


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


def test_stop_ends_a_running_job_and_keeps_its_model(manager):
    job = manager.submit(spec(max_steps=100_000), run_id="long")
    wait_for(lambda: len(job.run.metrics()) >= 2)
    assert manager.stop("long") == "stopping"
    assert manager.wait("long", 60) == "stopped"
    assert job.run.has_model()
    assert 2 <= len(job.run.metrics()) < 100_000


def test_stop_cancels_a_queued_job(manager):
    first = manager.submit(spec(max_steps=100_000), run_id="first")
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


def test_a_real_cli_job_trains_a_tiny_model(tmp_path, tiny_model, xl_file):
    mgr = JobManager(tmp_path / "runs")
    try:
        job = mgr.submit(TrainSpec(model=str(tiny_model), data=str(xl_file), lang="sw", max_steps=2, batch_size=2))
        assert mgr.wait(job.run_id, timeout=180) == "finished", job.run.status()
    finally:
        mgr.close()
    assert [r["step"] for r in job.run.metrics()] == [1, 2]
    assert job.run.has_model()
    assert (job.run_dir / "train.log").exists()
