"""Crash safety, proven by killing real training processes.

Each test starts the real ``python -m clo train`` on a tiny random model and has it SIGKILL itself at a chosen
point (``CLO_FAULT``, read by :func:`clo.core.testing.fault_point`: the same as ``kill -9`` or the out-of-memory killer,
no cleanup runs), then checks what a user finds afterwards with the CLI (``python -m clo runs``), RunDir and
``clo.models.load.load_model``:

- ``metrics.jsonl`` reads up to the last logged step;
- ``model/`` is the model of the last finished save, loadable, or absent; never a torn file;
- the next ``clo runs`` marks the run ``interrupted`` with the time it was lost;
- ``clo runs resume`` continues a run with a checkpoint exactly where it was (same weights, optimizer,
  learning rate, data order, reference), and refuses one without, touching nothing.

The injection is deterministic (the process kills itself at the point), so no test depends on timing.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from helpers import ROOT, clo_env

from clo.cli.main import main
from clo.core.process import pid_alive, process_start_id
from clo.core.spec import TrainSpec
from clo.runs.resume import resume_check
from clo.runs.rundir import RunDir, recover_lost

KILLED = -signal.SIGKILL


def clo(*args, home: Path, fault: str | None = None) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess, with its own CLO_HOME (reference cache) and, optionally, a fault."""
    env = clo_env(home, **({"CLO_FAULT": fault} if fault else {}))
    return subprocess.run([sys.executable, "-m", "clo", *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=600)


def train(model, data, out: Path, *extra, home: Path, fault: str | None = None) -> subprocess.CompletedProcess:
    return clo("train", "--model", str(model), "--data", str(data), "--lang", "sw", "--batch-size", "2",
               "--max-length", "64", "--lr", "1e-3", "--out", str(out), *extra, home=home, fault=fault)


def runs_json(root: Path, home: Path) -> dict[str, dict]:
    p = clo("runs", "--root", str(root), "--json", home=home)
    assert p.returncode == 0, p.stderr
    return {r["id"]: r for r in json.loads(p.stdout)}


def assert_lost_then_found(row: dict) -> None:
    """Interrupted, with when it was last alive and when that was noticed."""
    assert row["state"] == "interrupted", row
    lost, found = datetime.fromisoformat(row["lost_at"]), datetime.fromisoformat(row["interrupted_at"])
    assert lost <= found
    assert "lost at" in row["error"] and "ended without finishing" in row["error"]


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    common = set(wa) & set(wb)
    assert len(common) >= len(wa) - 1  # a tied head may be stored once
    for k in common:
        assert (wa[k] == wb[k]).all(), k


def test_kill_during_the_reference_pass(tiny_model, xl_file, tmp_path):
    root, home = tmp_path / "runs", tmp_path / "home"
    out = root / "ref"
    p = train(tiny_model, xl_file, out, "--max-steps", "2", home=home, fault="ref_pass")
    assert p.returncode == KILLED, p.stderr[-2000:]
    run = RunDir(out)
    st = run.status()
    assert (st["state"], st["phase"]) == ("running", "reference")  # the process had no chance to say more
    assert run.metrics() == [] and not run.model_path.exists()
    assert not list((home / "refcache").glob("*.safetensors"))  # no half-computed reference cache to reuse

    row = runs_json(root, home)["ref"]  # the next start of the CLI finds it
    assert_lost_then_found(row)
    assert row["has_model"] is False and row["checkpoint_step"] is None

    before = (run.status_path.read_bytes(), sorted(p.name for p in out.iterdir()))
    r = clo("runs", "resume", "ref", "--root", str(root), home=home)
    assert r.returncode == 2
    assert "cannot be resumed" in r.stderr and "save_steps" in r.stderr and "clo train --config" in r.stderr
    assert (run.status_path.read_bytes(), sorted(p.name for p in out.iterdir())) == before  # not touched


def test_kill_mid_step_then_resume(tiny_model, xl_file, tmp_path):
    """Killed in step 5 (gradients computed, optimizer not stepped) with a save every 3 steps; resumed from
    step 3, it recomputes step 4 exactly as the lost attempt did, then finishes."""
    from clo.models.load import load_model

    root, home = tmp_path / "runs", tmp_path / "home"
    out = root / "mid"
    p = train(tiny_model, xl_file, out, "--max-steps", "6", "--save-steps", "3", home=home, fault="step:5")
    assert p.returncode == KILLED, p.stderr[-2000:]
    run = RunDir(out)
    assert [r["step"] for r in run.metrics()] == [1, 2, 3, 4]  # every step logged before the kill
    assert run.checkpoint_step() == 3 and run.status()["saved_step"] == 3
    assert_same_weights(run.model_path, run.checkpoint_path)  # model/ is the step-3 save
    load_model(str(out), device="cpu")
    lost = {r["step"]: r for r in run.metrics()}

    row = runs_json(root, home)["mid"]
    assert_lost_then_found(row)
    assert row["checkpoint_step"] == 3 and row["has_model"]

    r = clo("runs", "resume", "mid", "--root", str(root), "--json", home=home)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert (summary["state"], summary["steps"], summary["resumed_from_step"]) == ("finished", 6, 3)
    assert summary["ref_cache_hit"] is True and "Reference pass" not in r.stderr  # the base model's cached pass

    rows = run.metrics()
    assert [x["step"] for x in rows] == [1, 2, 3, 4, 5, 6]  # each step once
    for step in (1, 2, 3):
        assert rows[step - 1] == lost[step]  # kept as written
    replaced = [json.loads(line) for line in (out / "metrics.replaced.jsonl").read_text().splitlines()]
    assert [(x["step"], x["resumed_from_step"]) for x in replaced] == [(4, 3)]
    # step 4 again, from the step-3 checkpoint: same weights, optimizer state, learning rate and batch
    for key in ("loss", "sft_loss", "cl_loss", "margin", "lr", "grad_norm", "epoch"):
        assert rows[3][key] == pytest.approx(replaced[0][key], rel=1e-5, abs=1e-7), key
    lrs = [x["lr"] for x in rows]  # the linear schedule goes on, it does not restart
    assert lrs == pytest.approx([1e-3 * (1 - k / 6) for k in range(6)], rel=1e-6)
    assert rows[3]["elapsed_s"] >= rows[2]["elapsed_s"]  # the stage's clock goes on too

    st = run.status()
    assert (st["state"], st["resumed_from_step"], st["step"]) == ("finished", 3, 6)
    assert st["attempts"][0]["state"] == "interrupted" and st["attempts"][0]["last_logged_step"] == 4
    assert "lost_at" not in st and "error" not in st
    assert not run.checkpoint_path.exists() and "checkpoint_step" not in st  # finished: nothing left to resume
    assert len(list((home / "refcache").glob("*.safetensors"))) == 1
    load_model(str(out), device="cpu")


def test_kill_while_saving_keeps_the_previous_model(tiny_model, xl_file, tmp_path):
    """Killed during the second save (step 2): the new files are written, not yet published by the rename."""
    from clo.models.load import load_model

    root, home = tmp_path / "runs", tmp_path / "home"
    out = root / "save"
    p = train(tiny_model, xl_file, out, "--max-steps", "3", "--save-steps", "1", home=home, fault="save:2")
    assert p.returncode == KILLED, p.stderr[-2000:]
    run = RunDir(out)
    partial = [d for d in out.iterdir() if d.name.startswith(".model.")]
    assert partial and (partial[0] / "model.safetensors").exists()  # the kill came mid-save
    assert [r["step"] for r in run.metrics()] == [1]  # step 2 is logged after its save
    assert run.checkpoint_step() == 1
    assert_same_weights(run.model_path, run.checkpoint_path)  # model/ is still the complete step-1 save

    row = runs_json(root, home)["save"]
    assert_lost_then_found(row)
    assert not [d for d in out.iterdir() if d.name.startswith((".model.", ".checkpoint."))]  # tidied
    loaded = load_model(str(out), device="cpu")
    assert loaded.model is not None

    r = clo("runs", "resume", str(out), "--json", home=home)  # by path
    assert r.returncode == 0, r.stderr[-3000:]
    assert (json.loads(r.stdout)["steps"], json.loads(r.stdout)["resumed_from_step"]) == (3, 1)
    assert [x["step"] for x in run.metrics()] == [1, 2, 3] and run.status()["state"] == "finished"


def test_a_reused_pid_or_a_zombie_does_not_keep_a_run_running(tmp_path):
    run = RunDir.create(tmp_path / "r", {"method": "clo"})
    run.set_status("running")  # this process: alive, with its start time
    assert run.status()["pid_started"] == process_start_id(os.getpid())
    assert recover_lost(tmp_path) == []
    data = json.loads(run.status_path.read_text())
    data["pid_started"] = "linux:00000000:1"  # the same pid, but a process that started at another time
    run.status_path.write_text(json.dumps(data))
    assert recover_lost(tmp_path) == ["r"] and run.status()["state"] == "interrupted"

    child = subprocess.Popen([sys.executable, "-c", "pass"])  # exits, and stays a zombie until reaped
    started = process_start_id(child.pid)
    try:
        for _ in range(1200):  # up to a minute; os.kill(pid, 0) alone would call a zombie alive forever
            if not pid_alive(child.pid, started):
                break
            time.sleep(0.05)
        assert not pid_alive(child.pid, started)
        assert child.poll() is not None  # it had exited (poll reaps it only now)
    finally:
        child.wait()


def _interrupted_run(path: Path, **spec) -> RunDir:
    run = RunDir.create(path, TrainSpec(model="tiny", data="demo", save_steps=1, **spec).to_dict())
    run.set_status("interrupted", error="killed")
    run.checkpoint_path.mkdir()
    (run.checkpoint_path / "trainer_state.json").write_text(json.dumps({"global_step": 1}))
    return run


@pytest.mark.parametrize("case, message", [
    ("sft-dpo", "sft-dpo trains in two stages"),
    ("running", "is still running"),
    ("finished", "already finished"),
    ("missing", "No run"),
])
def test_resume_refuses_clearly_and_touches_nothing(tmp_path, capsys, case, message):
    run = _interrupted_run(tmp_path / "r", method="sft-dpo" if case == "sft-dpo" else "clo")
    if case == "running":
        run.set_status("running")  # this very process
    elif case == "finished":
        run.set_status("finished")
    before = run.status_path.read_bytes()
    code = main(["runs", "resume", "nope" if case == "missing" else "r", "--root", str(tmp_path)])
    assert code == 2 and message in capsys.readouterr().err
    assert run.status_path.read_bytes() == before


def test_a_stop_in_a_resumed_runs_reference_pass_keeps_the_earlier_model(tiny_model, xl_file, tmp_path, monkeypatch):
    """A run stopped after step 3 (checkpoint of step 2, model of step 3) is resumed and stopped again in the
    reference pass, before any step: the status says the step-3 model is kept (not "no model saved"), and the
    run can still be resumed from step 2."""
    import threading

    from clo.training.run import resume_training, run_training

    out = tmp_path / "runs" / "again"
    spec = TrainSpec(model=str(tiny_model), data=str(xl_file), lang="sw", batch_size=2, max_length=64, lr=1e-3,
                     max_steps=6, save_steps=2)
    stop = threading.Event()
    first = run_training(spec, out, stop_event=stop,
                         events=lambda e: e.get("metrics", {}).get("step") == 3 and stop.set())
    run = RunDir(out)
    assert (first.state, first.steps, run.checkpoint_step()) == ("stopped", 3, 2)
    model_bytes = (run.model_path / "model.safetensors").read_bytes()

    monkeypatch.setenv("CLO_HOME", str(tmp_path / "fresh-home"))  # no cached reference: the pass runs
    stop = threading.Event()
    second = resume_training(out, stop_event=stop, events=lambda e: e.get("phase") == "reference" and stop.set())
    st = run.status()
    assert (second.state, second.steps, st["state"], st["step"]) == ("stopped", 3, "stopped", 3)
    assert "stopped during the reference pass" in st["note"], st["note"]
    assert "the model saved earlier (step 3) is kept" in st["note"] and "checkpoint of step 2" in st["note"]
    assert "no model saved" not in st["note"]
    assert (run.model_path / "model.safetensors").read_bytes() == model_bytes  # untouched
    assert resume_check(run) == (2, None) and st["attempts"][0]["state"] == "stopped"
