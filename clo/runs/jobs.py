"""Training jobs: a FIFO queue and one worker that trains each job in its own process.

    from clo.runs.jobs import JobManager, read_progress
    jobs = JobManager("runs")                     # one per process; the app keeps it in status.cache_resource
    job = jobs.submit(TrainSpec(method="clo", lang="sw", data="demo", max_steps=2))
    jobs.position(job.run_id)                     # 0: training now, 1: next in the queue, …
    read_progress(job.run)                        # step, max_steps, ETA, phase — read from the run directory
    jobs.stop(job.run_id)                         # ends after the current step and keeps that step's model
    jobs.submit_resume("20250101-120000-clo-sw")  # an interrupted run with a checkpoint, continued in the queue

A job is a run directory created at submit time (``config.yaml`` + ``status.json`` in state ``queued``), so a
queued job is visible as a run to every tab and to ``python -m clo runs``. The worker trains it with

    python -m clo train --config <run>/config.yaml --out <run>

in a child process (a resume job: ``python -m clo runs resume <run>``, see :meth:`JobManager.submit_resume`):
a crash or an out-of-memory kill ends that process, not the app; closing a browser tab
ends nothing. All state is read back from the run directory (``status.json``, ``metrics.jsonl``), so a reloaded
page or a second tab re-attaches to the same job. Stop is cooperative across processes
(:meth:`clo.runs.rundir.RunDir.request_stop`). When the child ends without recording an outcome (a bad setting found
before training, a crash, a kill), the worker marks the run ``failed``/``interrupted`` with the error text
from its ``train.log``, and the queue moves on.

A job outlives the page and the manager that started it: the child runs in its own process session and
writes its own outcome, so closing the manager without ``kill``, ending the Streamlit session or even killing
the app leaves it training. A new manager on the same ``root`` sees it (:meth:`JobManager.running_elsewhere`),
can stop it, waits for it before starting anything else, and adopts the jobs still queued behind it.

Nothing here imports Streamlit.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

import yaml

from clo.core.files import atomic_write_text
from clo.core.process import owner_alive, pid_alive, this_host
from clo.runs.catalog import list_runs
from clo.runs.resume import resume_check
from clo.runs.rundir import DONE_STATES, RunDir, RunError, new_run_id, now_iso, phase_label, recover_run, safe_run_path

__all__ = [
    "ACTIVE_STATES",
    "DONE_STATES",
    "Job",
    "JobManager",
    "Progress",
    "read_progress",
    "train_command",
    "resume_command",
    "cli_command",
    "save_config",
    "error_from_log",
]

log = logging.getLogger(__name__)

ACTIVE_STATES = ("queued", "running")
LOG_NAME = "train.log"


def train_command(run_dir: Path) -> list[str]:
    """The child process of one job: the CLI, exactly as a user would run it."""
    return [sys.executable, "-m", "clo", "train", "--config", str(run_dir / "config.yaml"), "--out", str(run_dir)]


def resume_command(run_dir: Path) -> list[str]:
    """The child process of a resume job: ``clo runs resume`` of the run, as a user would run it."""
    return [sys.executable, "-m", "clo", "runs", "resume", str(run_dir)]


def cli_command(config: str | Path, out: str | Path | None = None) -> str:
    """The command line a user can paste to reproduce a run (shown by the app's "Show CLI command")."""
    cmd = f"python -m clo train --config {_quote(config)}"
    return cmd + (f" --out {_quote(out)}" if out else "")


def _quote(p) -> str:
    import shlex

    return shlex.quote(str(p))


def save_config(spec, folder: str | Path) -> Path:
    """Write a spec's ``config.yaml`` under ``folder`` with a content-derived name, so that the same settings
    always give the same file (``clo-<method>-<lang>-<hash>.yaml``)."""
    text = yaml.safe_dump(spec.to_dict(), sort_keys=False, allow_unicode=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    path = Path(folder) / f"clo-{spec.method}-{spec.lang.replace(',', '-')}-{digest}.yaml"
    if not path.exists():
        atomic_write_text(path, text)
    return path


# -- errors from a child's log -----------------------------------------------------------------------------------

_EXC_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b.*")


def error_from_log(path: Path, max_bytes: int = 64_000) -> str | None:
    """The most useful line of a child's output: the CLI's ``error: …`` line, else a traceback's last line."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    lines = [seg.strip() for line in text.splitlines() for seg in line.split("\r") if seg.strip()]
    for line in reversed(lines):
        if line.startswith("error: "):
            return line[len("error: "):]
    for line in reversed(lines):
        if _EXC_LINE.match(line):
            return line
    return lines[-1] if lines else None


# -- progress ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """Where a run stands, from its directory alone."""

    state: str
    phase: str
    step: int = 0
    max_steps: int | None = None
    stage: str | None = None
    eta_s: float | None = None
    error: str | None = None
    ref_done: int | None = None  # the reference pass: batches scored, of ref_total, and its ETA
    ref_total: int | None = None
    ref_eta_s: float | None = None
    phase_s: float | None = None  # seconds since the current phase began (loading, reference, …)
    duration_s: float | None = None  # a run that ended: seconds from its start to its end

    @property
    def fraction(self) -> float:
        if self.state == "finished":
            return 1.0
        if self.in_reference:
            return max(0.0, min(1.0, (self.ref_done or 0) / self.ref_total))
        if not self.max_steps:
            return 0.0
        return max(0.0, min(1.0, self.step / self.max_steps))

    @property
    def in_reference(self) -> bool:
        """In the reference pass with its batch count known (the bar then shows that pass, not the steps)."""
        return self.state == "running" and self.phase == phase_label("reference") and bool(self.ref_total)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


def read_progress(run: RunDir, rows: list[dict] | None = None, now: float | None = None) -> Progress:
    """Step, total steps, ETA and phase of ``run``. The ETA extrapolates the current stage's seconds per step
    (``elapsed_s`` counts from the start of the stage) and, when the rows are read from disk, counts down from the
    time the last row was written."""
    status = run.status(shown=True)
    from_disk = rows is None
    rows = run.metrics() if rows is None else rows
    state = status.get("state", "unknown")
    phase = phase_label(status.get("phase"), state)
    if state == "queued" and isinstance(status.get("resume_of"), dict):
        phase = f"waiting in the queue to resume from step {status.get('resume_step', '?')}"
    clock = time.time() if now is None else now
    common = dict(error=status.get("error"), duration_s=status.get("duration_s") if state in DONE_STATES else None)
    if state == "running":
        since = _since(status.get("phase_started") or status.get("started"), clock)
        common["phase_s"] = since
        if status.get("phase") == "reference" and status.get("ref_total"):
            done, total = int(status.get("ref_done") or 0), int(status["ref_total"])
            common.update(ref_done=done, ref_total=total)
            elapsed = status.get("ref_elapsed_s")
            if done > 0 and elapsed is not None:
                common["ref_eta_s"] = max(0.0, elapsed / done * (total - done) - (_since(status.get("updated"), clock) or 0))
    if not rows:
        max_steps = status.get("max_steps") or run.config().get("max_steps")
        return Progress(state, phase, max_steps=max_steps if isinstance(max_steps, int) else None, **common)
    last = rows[-1]
    stage_rows = [r for r in rows if r.get("stage") == last.get("stage")]
    first_step = stage_rows[0].get("step", 1) - 1  # steps done before this stage
    done_here = last.get("step", 0) - first_step
    max_steps = last.get("max_steps") if isinstance(last.get("max_steps"), int) else None
    eta = None
    if state == "running" and max_steps and done_here > 0 and isinstance(last.get("elapsed_s"), (int, float)):
        eta = last["elapsed_s"] / done_here * (max_steps - last["step"])
        if from_disk:
            try:
                eta -= (time.time() if now is None else now) - run.metrics_path.stat().st_mtime
            except OSError:
                pass
        eta = max(0.0, eta)
    return Progress(state, phase, int(last.get("step", 0)), max_steps, last.get("stage"), eta, **common)


def _since(iso: str | None, now: float) -> float | None:
    """Seconds from the ISO time ``iso`` to ``now`` (None when ``iso`` is missing or unreadable)."""
    try:
        return max(0.0, now - datetime.fromisoformat(iso).timestamp())
    except (TypeError, ValueError):
        return None


# -- jobs --------------------------------------------------------------------------------------------------------


def _stop_child(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM (the child stops after its current step and keeps its model), a second SIGTERM after ``timeout``
    (it aborts and marks its run interrupted), SIGKILL 5 seconds after that."""
    for sig, wait_s in ((signal.SIGTERM, timeout), (signal.SIGTERM, 5.0), (signal.SIGKILL, None)):
        try:
            proc.send_signal(sig)
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return


@dataclass
class Job:
    """One submitted training run. Its state lives in its run directory; this holds the process side."""

    run_id: str
    run_dir: Path
    kind: str = "train"  # "train": `clo train` into the queued run; "resume": `clo runs resume` of the run
    submitted: float = field(default_factory=time.time)
    pid: int | None = None
    returncode: int | None = None
    started: float | None = None  # time.time() when its process started / ended (None: not yet)
    ended: float | None = None

    @property
    def run(self) -> RunDir:
        return RunDir(self.run_dir)

    @property
    def state(self) -> str:
        return self.run.status().get("state", "unknown")


class JobManager:
    """FIFO queue + one worker thread; each job trains in a child process. Thread-safe; no Streamlit inside.

    ``command(run_dir)`` builds the child's argv (default :func:`train_command`; tests pass a fake trainer), and
    ``resume(run_dir)`` that of a resume job (default :func:`resume_command`).
    On start the manager adopts queued runs under ``root`` whose queuing process is gone (an app restart), and
    it never starts a job while another process on this machine is training a run under ``root``.
    """

    def __init__(self, root: str | Path, *, command: Callable[[Path], list[str]] = train_command,
                 resume: Callable[[Path], list[str]] = resume_command,
                 env: dict | None = None, cwd: str | Path | None = None, poll_s: float = 0.2, adopt: bool = True):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.command = command
        self.resume_cmd = resume
        self.env = env
        self.cwd = Path(cwd) if cwd else Path.cwd()
        self.poll_s = poll_s
        self._queue: deque[Job] = deque()
        self._jobs: dict[str, Job] = {}
        self._active: Job | None = None
        self._proc: subprocess.Popen | None = None
        self._cond = threading.Condition()
        self._closed = False
        if adopt:
            self._adopt_orphans()
        self._thread = threading.Thread(target=self._work, name=f"clo-jobs:{self.root.name}", daemon=True)
        self._thread.start()

    # -- queries ---------------------------------------------------------------------------------------------
    def active(self) -> Job | None:
        """The job this manager is training now."""
        with self._cond:
            return self._active

    def queued(self) -> list[Job]:
        with self._cond:
            return list(self._queue)

    def jobs(self) -> list[Job]:
        """Every job this manager has seen, in submission order."""
        with self._cond:
            return list(self._jobs.values())

    def position(self, run_id: str) -> int | None:
        """0 while training, 1 for the next job, …; None when the job is not waiting or training here."""
        with self._cond:
            if self._active is not None and self._active.run_id == run_id:
                return 0
            for i, job in enumerate(self._queue, start=1):
                if job.run_id == run_id:
                    return i
        return None

    def waits_for(self, run_id: str | None = None) -> list[str]:
        """The runs that ``run_id`` waits for, first the one that trains now: a run another process trains under
        ``root``, this manager's active job, then the jobs queued before it. Never ``run_id`` itself: the job the
        worker has just taken (its process not yet started, its state still ``queued``) waits for nothing. A
        ``run_id`` that is neither queued nor active here (None: a job about to be submitted) waits for all of them.
        """
        with self._cond:
            active, queue = self._active, list(self._queue)
        if active is not None and active.run_id == run_id:
            return []
        ids = [j.run_id for j in queue]
        before = ids[: ids.index(run_id)] if run_id in ids else ids
        ahead = self.running_elsewhere() + ([active.run_id] if active is not None else []) + before
        return [r for r in dict.fromkeys(ahead) if r != run_id]

    def watched_run(self, own: str | None = None) -> str | None:
        """The run a live view should show: what trains now (so a reload or a second tab re-attaches to it),
        else ``own`` (a view's last job) while it exists, else the newest run under ``root``."""
        active = self.active()
        if active:
            return active.run_id
        elsewhere = self.running_elsewhere()
        if elsewhere:
            return elsewhere[0]
        if own and RunDir(self.root / own).exists():
            return own
        newest = list_runs(self.root)
        return newest[0]["id"] if newest else None

    def running_elsewhere(self) -> list[str]:
        """Runs under ``root`` that another live process on this machine is training (an earlier app, a CLI)."""
        out = []
        active = self.active()
        for p in sorted(self.root.iterdir()) if self.root.is_dir() else []:
            if not p.is_dir() or p.name.startswith(".") or (active and p.name == active.run_id):
                continue
            status = RunDir(p).status()
            if status.get("state") == "running" and status.get("host") == this_host() and owner_alive(status):
                out.append(p.name)
        return out

    # -- commands --------------------------------------------------------------------------------------------
    def submit(self, spec, run_id: str | None = None) -> Job:
        """Create the run directory (state ``queued``) and append the job to the queue."""
        spec.validate()
        path = self._claim_dir(run_id or new_run_id(spec.method, spec.lang), exact=run_id is not None)
        run = RunDir.create(path, spec.to_dict())
        run.queue()
        job = Job(path.name, path)
        with self._cond:
            if self._closed:
                raise RuntimeError("the job manager is closed")
            self._jobs[job.run_id] = job
            self._queue.append(job)
            self._cond.notify_all()
        return job

    def submit_resume(self, run_id: str) -> Job:
        """Queue the resume of an interrupted (or stopped, or failed) run from its checkpoint, behind the jobs
        already waiting; its process is ``python -m clo runs resume <run>`` (:func:`resume_command`). Raises
        :class:`RunError` saying why when the run cannot be resumed (no checkpoint, running, finished, already
        queued), changing nothing. While it waits the run is ``queued`` with the status it had in
        ``resume_of``; cancelling it puts that status back, and so does a resume its process refuses (the
        reason is kept in ``resume_error``)."""
        path = safe_run_path(self.root, run_id)
        run = RunDir(path)
        if not run.exists():
            raise RunError(f"No run {run_id} under {self.root}.")
        with self._cond:
            if self._closed:
                raise RuntimeError("the job manager is closed")
            if self._holds(run_id) or run_id in self.running_elsewhere():
                raise RunError(f"Run {run_id} is already queued or training.")
            recover_run(run)  # a run whose process is gone is interrupted, not running
            status = run.status()
            if status.get("state") == "queued":
                raise RunError(f"Run {run_id} is already queued.")
            step, why = resume_check(run, status)
            if step is None:
                raise RunError(f"Run {run_id} cannot be resumed: {why}.")
            run.stop_path.unlink(missing_ok=True)  # a stop request of the lost attempt must not end this one
            previous = {k: v for k, v in status.items() if k not in ("resume_error", "resume_failed_at")}
            run.queue(resume_of=previous, resume_step=step)
            job = Job(run_id, path, kind="resume")
            self._jobs[run_id] = job
            self._queue.append(job)
            self._cond.notify_all()
        return job

    def stop(self, run_id: str) -> str:
        """Cancel a queued job, or ask a running one to end after its current step (it keeps that step's model).
        A cancelled resume leaves the run as it was before it was queued.
        Returns ``"cancelled"``, ``"stopping"`` or ``"not running"``."""
        path = safe_run_path(self.root, run_id)
        with self._cond:
            waiting = next((j for j in self._queue if j.run_id == run_id), None)
            if waiting is not None:
                self._queue.remove(waiting)
                if waiting.kind == "resume":
                    RunDir(path).unqueue_resume()
                else:
                    RunDir(path).cancel()
                return "cancelled"
            is_active = self._active is not None and self._active.run_id == run_id
        run = RunDir(path)
        if is_active or run.status().get("state") == "running":
            run.request_stop()
            return "stopping"
        return "not running"

    def delete(self, run_id: str) -> None:
        """Remove a run directory. Refuses a job that is queued or training (stop it first)."""
        path = safe_run_path(self.root, run_id)
        if self.position(run_id) is not None or run_id in self.running_elsewhere():
            raise RunError(f"Run {run_id} is queued or training; stop it before deleting it.")
        if not RunDir(path).exists():
            raise RunError(f"No run {run_id} under {self.root}.")
        shutil.rmtree(path)
        with self._cond:
            self._jobs.pop(run_id, None)

    def wait(self, run_id: str, timeout: float | None = None) -> str:
        """Block until the job is no longer queued or training; returns its final state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._holds(run_id):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"job {run_id} still {RunDir(self.root / run_id).status().get('state')}")
                self._cond.wait(timeout=min(0.5, remaining) if remaining is not None else 0.5)
        return RunDir(self.root / run_id).status().get("state", "unknown")

    def close(self, kill: bool = True, timeout: float = 10.0) -> None:
        """Stop the worker. With ``kill`` (the app shutting down) the current child is stopped as cleanly as a
        Ctrl-C: SIGTERM, so that it ends after its current step, saves that step's model and marks the run
        ``stopped`` (signal ``SIGTERM``); if it has not ended after ``timeout`` seconds, a second SIGTERM aborts it
        (the child marks the run ``interrupted``), and SIGKILL follows 5 seconds later. Without ``kill`` the child
        keeps training on its own (this manager's worker still records its exit) and ``close`` returns at once.
        Queued jobs stay queued on disk, released to the next manager on ``root`` (in this process or another),
        which adopts them."""
        with self._cond:
            self._closed = True
            proc = self._proc
            released = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for job in released:
            if job.run.status().get("state") == "queued":
                job.run.release()
        if kill and proc is not None and proc.poll() is None:
            _stop_child(proc, timeout)
        if kill or proc is None or proc.poll() is not None:
            self._thread.join(timeout=timeout + 10)

    # -- internals -------------------------------------------------------------------------------------------
    def _holds(self, run_id: str) -> bool:
        return (self._active is not None and self._active.run_id == run_id) or any(
            j.run_id == run_id for j in self._queue)

    def _claim_dir(self, run_id: str, exact: bool) -> Path:
        """Make an empty run folder atomically; a taken id gets a numeric suffix unless ``exact``."""
        for n in range(1, 1000):
            rid = run_id if n == 1 else f"{run_id}-{n}"
            path = safe_run_path(self.root, rid)
            try:
                path.mkdir(parents=True)
                return path
            except FileExistsError:
                if exact:
                    raise RunError(f"Run {rid} already exists under {self.root}.") from None
        raise RunError(f"could not find a free run id for {run_id}")

    def _adopt_orphans(self) -> None:
        """Queue runs left ``queued`` by a process that is gone (oldest first)."""
        found = []
        for p in sorted(self.root.iterdir()):
            if not p.is_dir() or p.name.startswith("."):
                continue
            status = RunDir(p).status()
            if status.get("state") != "queued":
                continue
            owner, host = status.get("queued_by"), status.get("host")
            if not status.get("released") and (owner is None or owner == os.getpid() or host != this_host()
                                           or pid_alive(owner, status.get("queued_by_started"))):
                continue  # not queued by a manager (a CLI run about to start), or its manager is alive
            found.append((status.get("created") or "", p))
        for _, p in sorted(found):
            status = RunDir(p).queue()
            job = Job(p.name, p, kind="resume" if isinstance(status.get("resume_of"), dict) else "train")
            self._jobs[job.run_id] = job
            self._queue.append(job)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._queue or self._busy_elsewhere()):
                    self._cond.wait(timeout=1.0 if self._queue else None)
                if self._closed:
                    return
                job = self._queue.popleft()
                self._active = job
            try:
                self._run(job)
            except Exception as e:  # the worker must survive anything one job does
                log.exception("job %s failed in the worker", job.run_id)
                job.run.fail(f"{type(e).__name__}: {e}")
            finally:
                with self._cond:
                    self._active = None
                    self._proc = None
                    self._cond.notify_all()

    def _busy_elsewhere(self) -> bool:
        try:
            return bool(self.running_elsewhere())
        except OSError:
            return False

    def _run(self, job: Job) -> None:
        run = job.run
        if run.status().get("state") != "queued":  # stopped or deleted meanwhile
            return
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        argv = self.resume_cmd(run.path) if job.kind == "resume" else self.command(run.path)
        with open(run.path / LOG_NAME, "ab") as out:
            if job.kind == "resume":
                out.write(f"\n--- resume from step {run.status().get('resume_step')} at {now_iso()} ---\n".encode())
                out.flush()
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                    stdin=subprocess.DEVNULL, cwd=self.cwd, env=env)
        job.pid, job.started = proc.pid, time.time()
        with self._cond:
            self._proc = proc
            closed = self._closed
        if closed:
            proc.send_signal(signal.SIGTERM)  # closed while it started: stop after its first step
        job.returncode = proc.wait()
        job.ended = time.time()
        self._finish(job)

    def _finish(self, job: Job) -> None:
        """Record an outcome the child could not record itself."""
        run, rc = job.run, job.returncode
        status = run.status()
        state = status.get("state")
        if state not in ACTIVE_STATES and state != "unknown":
            return
        error = error_from_log(run.path / LOG_NAME)
        if job.kind == "resume" and state == "queued" and isinstance(status.get("resume_of"), dict):
            # refused before it began (the base model is gone, …): the run is as it was, with the reason
            run.unqueue_resume(resume_error=error or f"the resume process exited with code {rc}",
                               resume_failed_at=now_iso(), returncode=rc)
            return
        if rc is not None and rc < 0:
            try:
                name = signal.Signals(-rc).name
            except ValueError:
                name = f"signal {-rc}"
            run.mark_lost(f"the training process was killed ({name})" + (f"; last output: {error}" if error else ""),
                          lost_at=now_iso(), returncode=rc, signal=name)
        else:
            run.fail(error or f"the training process exited with code {rc}", returncode=rc)
