"""SIGTERM and SIGHUP stop training as cleanly as the first Ctrl-C, proven with real signals on real processes.

``kill -TERM`` (what ``docker stop``, systemd and the app's job manager send) and SIGHUP (a closed terminal) make
``python -m clo train`` and ``python -m clo runs resume`` end after the current step, save that step's model and
mark the run ``stopped`` with the signal named. A second signal aborts at once and marks the run
``interrupted``; so does a step that has not ended within ``CLO_STOP_DEADLINE_S`` seconds of the stop. The app's
job manager stops its job the same way when the app shuts down.

A step that never ends is made with ``CLO_FAULT=step:N:hang`` (:func:`clo.core.testing.fault_point`), so no test depends
on timing: the waits below are bounded, never measured.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import ROOT, clo_env, wait_for

from clo.models.load import load_model
from clo.runs.catalog import list_runs
from clo.runs.rundir import RunDir

LONG = "400"  # steps: only a signal ends such a run early


def start(args: list[str], log: Path, home: Path, **extra) -> subprocess.Popen:
    """The real CLI, its stderr into ``log`` (read while it runs)."""
    return subprocess.Popen([sys.executable, "-m", "clo", *args], cwd=ROOT, env=clo_env(home, **extra),
                            stdout=subprocess.PIPE, stderr=open(log, "w"), text=True)


def train_args(model, data, out: Path, *extra) -> list[str]:
    return ["train", "--model", str(model), "--data", str(data), "--lang", "sw", "--batch-size", "2",
            "--max-length", "64", "--lr", "1e-3", "--max-steps", LONG, "--out", str(out), *extra]


def rows(run: RunDir) -> int:
    return len(run.metrics())


def finish(p: subprocess.Popen, timeout=300) -> int:
    try:
        return p.wait(timeout=timeout)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_stops_training_after_the_current_step_and_keeps_its_model(sig, tmp_path, tiny_model, xl_file):
    run, log = RunDir(tmp_path / "run"), tmp_path / "stderr.txt"
    p = start(train_args(tiny_model, xl_file, run.path), log, tmp_path / "home")
    try:
        wait_for(lambda: rows(run) >= 2, timeout=300.0, what="two logged steps")
        p.send_signal(sig)
        rc = finish(p)
    finally:
        finish(p, 5)
    err = log.read_text()
    name = signal.Signals(sig).name
    assert rc == 0, err
    assert f"{name}: stopping after the current step" in err and "Traceback" not in err
    st = run.status()
    assert st["state"] == "stopped" and st["signal"] == name, st
    assert st["note"] == f"stopped by {name} after step {st['step']}; the model of that step is kept"
    assert 2 <= st["step"] < int(LONG) and run.metrics()[-1]["step"] == st["step"]  # the step it was in, finished
    assert run.has_model() and load_model(str(run.path)).model is not None
    assert not list(run.path.glob(".model.*"))
    assert {r["id"]: r["state"] for r in list_runs(tmp_path)} == {"run": "stopped"}


def test_a_second_signal_aborts_at_once_and_a_resume_stops_on_sigterm_too(tmp_path, tiny_model, xl_file):
    """Step 3 never ends (it hangs before its optimizer step): the first SIGTERM asks for a stop that cannot
    come, the second aborts; the run is interrupted with its step-2 checkpoint and model, and `clo runs resume`
    goes on from there until a SIGTERM stops it cleanly."""
    home, run, log = tmp_path / "home", RunDir(tmp_path / "run"), tmp_path / "stderr.txt"
    p = start(train_args(tiny_model, xl_file, run.path, "--save-steps", "2"), log, home, CLO_FAULT="step:3:hang")
    try:
        wait_for(lambda: run.status().get("checkpoint_step") == 2, timeout=300.0, what="the step-2 checkpoint")
        wait_for(lambda: "fault: hanging at step 3" in log.read_text(), timeout=300.0, what="the hanging step 3")
        p.send_signal(signal.SIGTERM)
        wait_for(lambda: "SIGTERM: stopping after the current step" in log.read_text(), timeout=300.0,
                 what="the first stop")
        p.send_signal(signal.SIGTERM)
        rc = finish(p)
    finally:
        finish(p, 5)
    err = log.read_text()
    assert rc == 128 + signal.SIGTERM, err
    assert "Aborted by SIGTERM; run marked interrupted" in err and "Traceback" not in err
    st = run.status()
    assert st["state"] == "interrupted" and st["signal"] == "SIGTERM", st
    assert st["error"].startswith("aborted by SIGTERM before the current step ended")
    assert [r["step"] for r in run.metrics()] == [1, 2] and run.has_model() and run.checkpoint_step() == 2
    row = {r["id"]: r for r in list_runs(tmp_path)}["run"]
    assert row["state"] == "interrupted" and row["resumable"] and row["resume_step"] == 2

    log2 = tmp_path / "resume.txt"
    p = start(["runs", "resume", str(run.path)], log2, home)
    try:
        wait_for(lambda: rows(run) >= 3, timeout=300.0, what="a resumed step")
        p.send_signal(signal.SIGTERM)
        rc = finish(p)
    finally:
        finish(p, 5)
    assert rc == 0, log2.read_text()
    st = run.status()
    assert st["state"] == "stopped" and st["signal"] == "SIGTERM" and st["resumed_from_step"] == 2, st
    assert 3 <= st["step"] < int(LONG) and run.has_model()


def test_a_step_that_does_not_end_within_the_deadline_is_aborted(tmp_path, tiny_model, xl_file):
    run, log = RunDir(tmp_path / "run"), tmp_path / "stderr.txt"
    p = start(train_args(tiny_model, xl_file, run.path), log, tmp_path / "home", CLO_FAULT="step:2:hang",
              CLO_STOP_DEADLINE_S="2")
    try:
        wait_for(lambda: "fault: hanging at step 2" in log.read_text(), timeout=300.0, what="the hanging step 2")
        p.send_signal(signal.SIGTERM)  # one signal only: the deadline ends the hanging step
        rc = finish(p)
    finally:
        finish(p, 5)
    assert rc == 128 + signal.SIGTERM, log.read_text()
    st = run.status()
    assert st["state"] == "interrupted" and st["signal"] == "SIGTERM"
    assert "did not end within 2 s of the stop" in st["error"], st


APP = textwrap.dedent('''
    """A stand-in for the app: the app's own job manager (app_pages._shared), a real job, and the exit Streamlit
    makes on SIGTERM or Ctrl-C (its handler stops the server and Python exits normally, running atexit)."""
    import signal, sys
    from app_pages._shared import _job_manager
    from clo.core.spec import TrainSpec

    root, model, data = sys.argv[1:4]
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    mgr = _job_manager(root)
    mgr.submit(TrainSpec(model=model, data=data, lang="sw", batch_size=2, max_length=64, max_steps=400), run_id="job")
    print("submitted", flush=True)
    signal.pause()
''')


def test_the_app_shutting_down_stops_its_job_cleanly(tmp_path, tiny_model, xl_file):
    """The app's job manager, on the app's exit, sends its child SIGTERM: the job ends stopped after its
    current step with that step's model, not killed. (Streamlit exits normally on SIGTERM and Ctrl-C.)"""
    root = tmp_path / "runs"
    script = tmp_path / "app.py"
    script.write_text(APP)
    app = subprocess.Popen([sys.executable, str(script), str(root), str(tiny_model), str(xl_file)], cwd=ROOT,
                           env=clo_env(tmp_path / "home"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = RunDir(root / "job")
    try:
        assert app.stdout.readline().strip() == "submitted", app.stderr.read()
        wait_for(lambda: rows(run) >= 2, timeout=300.0, what="two logged steps of the job")
        app.send_signal(signal.SIGTERM)
        assert finish(app) == 0
    finally:
        finish(app, 5)
        st = run.status()
        if st.get("state") == "running" and isinstance(st.get("pid"), int):
            try:
                os.kill(st["pid"], signal.SIGKILL)  # never leave a training process behind (it is ours)
            except ProcessLookupError:
                pass
    st = run.status()
    assert st["state"] == "stopped" and st["signal"] == "SIGTERM", st
    assert run.has_model() and run.metrics()[-1]["step"] == st["step"] < 400
    assert "SIGTERM: stopping after the current step" in (run.path / "train.log").read_text()

