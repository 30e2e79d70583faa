"""Every CLI failure is one ``error:`` line with what to do, never a traceback (``-v`` shows it); exit status 2 for
a bad input or a path that cannot be used, 1 for the rest. Disk-full, read-only and permission errors name the
path, what was kept and how to go on, on real small file systems:

- a tmpfs mounted for the test (``mount -t tmpfs -o size=…``; skipped, with the reason, where the test cannot
  mount one), filled up while a real ``clo train`` writes into it, or remounted read-only;
- a folder the command may not write to, the command run as the unprivileged user ``nobody`` (``setpriv``).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from helpers import ROOT, clo_env

from clo.cli.main import main
from clo.runs.rundir import RunDir


@pytest.fixture()
def small_fs(tmp_path):
    """``mount(size)`` → a fresh tmpfs of that size (e.g. "4m"), unmounted after the test."""
    mounted = []

    def mount(size: str) -> Path:
        where = tmp_path / f"fs{len(mounted)}"
        where.mkdir()
        if os.geteuid() != 0 or not shutil.which("mount"):
            pytest.skip("mounting a small tmpfs needs root and mount(8); run the tests as root to check a full disk")
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True,
                           text=True)
        if p.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def train_args(model, data, out: Path, *extra) -> list[str]:
    return ["train", "--model", str(model), "--data", str(data), "--lang", "sw", "--batch-size", "2",
            "--max-length", "64", "--lr", "1e-3", "--out", str(out), *extra]


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def fill(folder: Path) -> Path:
    """Write a file until the file system is full."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        for chunk in (2**20, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError:
                pass
    return filler


def test_a_disk_too_small_for_the_model_is_refused_before_the_first_step(small_fs, tiny_model, xl_file, tmp_path,
                                                                        capsys):
    disk = small_fs("4m")  # the tiny model's run needs about 9 MB free (model, margin)
    assert main(train_args(tiny_model, xl_file, disk / "run")) == 1
    line = one_error_line(capsys.readouterr().err)
    assert f"{disk / 'run'}: not enough free space for this run's model" in line and "is free" in line, line
    assert "kept no metrics, no model; the run is marked failed. Free some space" in line
    assert f"train it again with `python -m clo train --config {disk / 'run' / 'config.yaml'}`" in line
    run = RunDir(disk / "run")
    st = run.status()
    assert st["state"] == "failed" and "not enough free space" in st["error"]
    assert run.metrics() == [] and not run.has_model() and not list(run.path.glob(".model.*"))  # before any step


def test_a_disk_that_fills_up_during_training_ends_with_one_error_line(small_fs, tiny_model, xl_file, tmp_path):
    """The check at the start passes; then the disk fills up while the run trains. The CLI ends with one line
    naming the run, what it kept and how to go on; `clo runs` still lists it; once there is space again it is
    marked interrupted, with its metrics readable and no half-written file left."""
    disk = small_fs("32m")
    run = RunDir(disk / "run")
    env = clo_env(tmp_path / "home")
    args = train_args(tiny_model, xl_file, run.path, "--max-steps", "400")
    p = subprocess.Popen([sys.executable, "-m", "clo", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while len(run.metrics()) < 2:
            assert p.poll() is None and time.monotonic() < deadline, p.communicate()
            time.sleep(0.1)
        filler = fill(disk)
        out, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()
    assert p.returncode == 1, err
    line = one_error_line(err)
    assert line.startswith(f"error: {run.path}: No space left on device."), line
    assert f"In {run.path}: kept metrics.jsonl (" in line and "Free some space" in line, line
    assert f"python -m clo train --config {run.path / 'config.yaml'}" in line
    listed = subprocess.run([sys.executable, "-m", "clo", "runs", "--root", str(disk), "--json"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert row["state"] in ("failed", "interrupted"), row  # interrupted: the failure could not be written
    filler.unlink()
    state = subprocess.run([sys.executable, "-m", "clo", "runs", "--root", str(disk), "--json"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
    assert json.loads(state.stdout)[0]["state"] in ("failed", "interrupted")
    assert run.status()["state"] in ("failed", "interrupted")  # recorded now that there is space
    assert len(run.metrics()) >= 2 and not run.has_model()
    assert not list(run.path.glob(".model.*")) and not list(run.path.glob(".status.json.*"))


def test_a_read_only_runs_folder_still_lists_and_a_write_into_it_is_one_line(small_fs, tiny_model, xl_file, capsys):
    disk = small_fs("4m")
    done = RunDir.create(disk / "done", {"method": "clo", "lang": "sw"})
    done.set_status("finished")
    lost = RunDir.create(disk / "lost", {"method": "clo", "lang": "sw"})
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lost.set_status("running")
    lost.status_path.write_text(json.dumps({**lost.status(), "pid": dead.pid}))
    assert subprocess.run(["mount", "-o", "remount,ro", str(disk)], capture_output=True).returncode == 0
    assert main(["runs", "--root", str(disk), "--json"]) == 0  # the loss cannot be written: shown all the same
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["done"]["state"] == "finished" and rows["lost"]["state"] == "interrupted"
    assert "could not be recorded" in rows["lost"]["error"]
    assert lost.status()["state"] == "running"  # nothing was written
    assert main(train_args(tiny_model, xl_file, disk / "new")) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line == (f"error: {disk / 'new'}: Read-only file system; choose a folder that can be written to (--out, "
                    f"--root, CLO_RUNS, CLO_HOME). In {disk / 'new'}: nothing was written."), line
    assert main(["runs", "resume", "lost", "--root", str(disk)]) == 2
    assert "Read-only file system" in one_error_line(capsys.readouterr().err)


def test_a_runs_folder_without_write_permission_still_lists():
    """As the unprivileged user ``nobody`` (root may write anywhere), in a runs folder it may read but not write:
    `clo runs` lists every run, the lost one as interrupted (its loss cannot be recorded) and one whose files it
    may not read as unreadable; resuming the lost one is one line naming the file that cannot be written."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv(1) to run the command as another user")
    base = Path(tempfile.mkdtemp(prefix="clo-perm-", dir="/tmp"))
    try:
        base.chmod(0o755)
        (base / "home").mkdir(mode=0o777)
        root = base / "runs"
        RunDir.create(root / "done", {"method": "clo", "lang": "sw"}).set_status("finished")
        lost = RunDir.create(root / "lost", {"method": "clo", "lang": "sw"})
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        lost.set_status("running")
        lost.status_path.write_text(json.dumps({**lost.status(), "pid": dead.pid}))
        RunDir.create(root / "private", {"method": "clo", "lang": "sw"}).set_status("finished")
        for folder in (root, root / "done", root / "lost", root / "private"):
            folder.chmod(0o555)
        for file in [*(root / "done").iterdir(), *(root / "lost").iterdir()]:
            file.chmod(0o644)  # run files are written 0600 (private); "private" keeps them so
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m", "clo"]
        env = clo_env(base / "home")
        p = subprocess.run([*nobody, "runs", "--root", str(root), "--json"], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        rows = {r["id"]: r for r in json.loads(p.stdout)}
        assert {k: r["state"] for k, r in rows.items()} == {"done": "finished", "lost": "interrupted",
                                                             "private": "unreadable"}
        assert "cannot be read (Permission denied)" in rows["private"]["error"]
        assert "could not record that its process is gone" in p.stderr and "Permission denied" in p.stderr
        p = subprocess.run([*nobody, "runs", "resume", "lost", "--root", str(root)], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 2, p.stderr
        line = one_error_line(p.stderr)
        assert str(root / "lost") in line
        assert "Permission denied; check its permissions, or choose another folder" in line
        assert lost.status()["state"] == "running"  # nothing was written
    finally:
        for folder in base.rglob("*"):
            if folder.is_dir():
                folder.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


def test_an_unexpected_error_is_one_line_and_v_shows_the_traceback(tiny_model, xl_file, tmp_path, capsys):
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model, broken)
    (broken / "model.safetensors").write_bytes(b"\0" * 100)  # passes the folder checks, fails inside the load
    assert main(train_args(broken, xl_file, tmp_path / "run")) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "SafetensorError" in line and "Run with -v for the traceback." in line
    assert f"In {tmp_path / 'run'}: kept no metrics, no model; the run is marked failed." in line
    assert main(["-v", *train_args(broken, xl_file, tmp_path / "run2")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: ")
