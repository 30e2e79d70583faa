"""Run directories (DESIGN.md §3).

    runs/<run-id>/config.yaml     everything needed to reproduce it (`clo train --config config.yaml`)
    runs/<run-id>/status.json     queued | running | stopped | failed | finished | interrupted, with error text
    runs/<run-id>/metrics.jsonl   one line per logged step
    runs/<run-id>/model/          safetensors weights (or a LoRA adapter), written atomically
    runs/<run-id>/checkpoint/     with save_steps: the trainer's state at the last save (weights, optimizer,
                                  scheduler, RNG, trainer_state.json), replaced atomically; `clo runs resume`
    runs/<run-id>/eval.json       metrics of the last evaluation

Every file is replaced atomically (write to a temporary name, then ``os.replace``), so a reader never sees
a torn file. A run whose process vanished while ``running`` is marked ``interrupted`` by :func:`recover_lost`,
with the last sign of life of its process (``lost_at``) and the time it was found (``interrupted_at``). A
process is identified by its pid *and* its start time, so a pid reused by another program does not keep a
dead run "running".
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

__all__ = [
    "RUN_STATES",
    "RunDir",
    "RunError",
    "default_runs_root",
    "new_run_id",
    "list_runs",
    "recover_lost",
    "atomic_write_text",
    "safe_run_path",
    "pid_alive",
    "owner_alive",
    "process_start_id",
    "recover_run",
    "resolve_run",
    "fault_point",
]

RUN_STATES = ("queued", "running", "stopped", "failed", "finished", "interrupted")
RESUMABLE_STATES = ("interrupted", "failed", "stopped")
REPLACED_METRICS = "metrics.replaced.jsonl"  # rows of a lost attempt after the step a resume starts from
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class RunError(ValueError):
    """A run id or run directory that cannot be used."""


def default_runs_root() -> Path:
    return Path(os.environ.get("CLO_RUNS", "runs"))


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def _parse_iso(text) -> float | None:
    try:
        return datetime.fromisoformat(text).timestamp()
    except (TypeError, ValueError):
        return None


def new_run_id(method: str, lang: str) -> str:
    return f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{method}-{lang}"


def safe_run_path(root: str | Path, run_id: str) -> Path:
    """``root/run_id``, refusing ids that could leave ``root`` (``..``, slashes, absolute paths, symlinks out)."""
    if not isinstance(run_id, str) or not _ID_RE.match(run_id) or ".." in run_id:
        raise RunError(f"Invalid run id {run_id!r}: use letters, digits, '.', '_' and '-' only.")
    root = Path(root).resolve()
    path = (root / run_id).resolve()
    if path.parent != root:
        raise RunError(f"Run id {run_id!r} points outside {root}.")
    return path


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunDir:
    """One run directory. Cheap to construct; reads files on demand."""

    def __init__(self, path: str | Path, readonly: bool = False):
        self.path = Path(path)
        # Under multi-process training (accelerate) only the main process writes; the others hold a read-only view.
        self.readonly = readonly

    # -- identity -------------------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def status_path(self) -> Path:
        return self.path / "status.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def model_path(self) -> Path:
        return self.path / "model"

    def exists(self) -> bool:
        return self.status_path.exists() or self.config_path.exists()

    # -- creation -------------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, config: dict) -> "RunDir":
        """Make a new run directory with ``config.yaml`` and a ``queued`` status. Refuses a used folder."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunError(f"{path} is a file, not a run directory; choose another --out (a new or empty folder).")
        if path.exists() and any(path.iterdir()) and cls(path).status().get("state") != "queued":  # a queued run is taken over by its job
            raise RunError(f"Run directory {path} already exists and is not empty; choose another --out.")
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path)
        atomic_write_text(run.config_path, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
        run.set_status("queued", created=now_iso())
        return run

    # -- status ---------------------------------------------------------------------------------------
    def status(self) -> dict:
        try:
            return json.loads(self.status_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return {"state": "unknown"}

    def set_status(self, state: str, **fields) -> dict:
        if state not in RUN_STATES:
            raise ValueError(f"unknown run state {state!r}")
        if self.readonly:
            return self.status()
        data = self.status() if self.status_path.exists() else {}
        if state in ("queued", "running"):
            for old in ("error", "ended"):  # a restarted run drops the old error and end time
                data.pop(old, None)
        data.update(fields)
        data["state"] = state
        data["updated"] = now_iso()
        if state == "running":
            data.setdefault("started", now_iso())
            data["pid"] = os.getpid()
            data["pid_started"] = process_start_id(os.getpid())  # tells this process from a later one with its pid
            data["host"] = socket.gethostname()
        if state in ("stopped", "failed", "finished", "interrupted"):
            data.setdefault("ended", now_iso())
        atomic_write_text(self.status_path, json.dumps(data, indent=2, ensure_ascii=False))
        return data

    def update_status(self, drop=(), **fields) -> dict:
        """Change some fields of ``status.json`` without changing its state (``drop``: keys to remove)."""
        if self.readonly or not self.status_path.exists():
            return self.status()
        data = self.status()
        for key in drop:
            data.pop(key, None)
        data.update(fields)
        data["updated"] = now_iso()
        atomic_write_text(self.status_path, json.dumps(data, indent=2, ensure_ascii=False))
        return data

    def config(self) -> dict:
        try:
            return yaml.safe_load(self.config_path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            return {}

    # -- metrics --------------------------------------------------------------------------------------
    def append_metrics(self, row: dict) -> None:
        """One line per logged step; each line is written whole and flushed, so a kill loses at most the line
        being written and every earlier line stays readable."""
        if self.readonly:
            return
        line = json.dumps(row, ensure_ascii=False) + "\n"
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def metrics(self) -> list[dict]:
        rows = []
        try:
            with open(self.metrics_path, encoding="utf-8") as f:
                for line in f:
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError:
                        break  # a torn last line after a kill: everything before it is kept
        except OSError:
            pass
        return rows

    # -- model and checkpoint ---------------------------------------------------------------------------
    def save_model(self, write_fn) -> Path:
        """``write_fn(folder)`` writes the model into a fresh temporary folder, which then replaces ``model/``
        in one rename. An older ``model/`` is kept until the new one is complete."""
        if self.readonly:
            return self.model_path
        tmp = Path(tempfile.mkdtemp(prefix=".model.", dir=self.path))
        try:
            write_fn(tmp)
            fault_point("save")  # test-only: killed with the new files written, before they are published
            self._publish(tmp, "model")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self.model_path

    def _publish(self, tmp: Path, name: str) -> None:
        """Make the complete folder ``tmp`` the run's ``name/``; the previous one is kept as ``.name.old.*``
        until the new one is in place (:meth:`restore_interrupted_save` puts it back after a kill in between)."""
        target = self.path / name
        old = None
        if target.exists():
            old = self.path / f".{name}.old.{time.time_ns()}"
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint"

    def save_checkpoint(self, folder: str | Path) -> Path:
        """Adopt a complete trainer checkpoint (written by ``Trainer._save_checkpoint`` into ``folder``, on the
        same file system) as ``checkpoint/``, replacing the previous one only once it is in place."""
        if self.readonly:
            return self.checkpoint_path
        tmp = self.path / f".checkpoint.{time.time_ns()}"
        os.replace(folder, tmp)
        try:
            self._publish(tmp, "checkpoint")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self.checkpoint_path

    def checkpoint_step(self) -> int | None:
        """The optimizer step of ``checkpoint/`` (None without a usable one)."""
        try:
            state = json.loads((self.checkpoint_path / "trainer_state.json").read_text(encoding="utf-8"))
            step = int(state["global_step"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return step if step > 0 else None

    def drop_checkpoint(self) -> None:
        """A finished run cannot be resumed: free the space of its optimizer state, and stop naming it in
        ``status.json``."""
        if not self.readonly:
            shutil.rmtree(self.checkpoint_path, ignore_errors=True)
            if "checkpoint_step" in self.status():
                self.update_status(drop=("checkpoint_step",))

    # -- stop requests (work across processes: the app's worker, another terminal) ---------------------
    @property
    def stop_path(self) -> Path:
        return self.path / "STOP"

    def request_stop(self) -> None:
        """Ask a running job to end after its current step; it keeps the model of that step."""
        self.stop_path.write_text(now_iso())

    def stop_requested(self) -> bool:
        return self.stop_path.exists()

    def restore_interrupted_save(self) -> bool:
        """A kill between the two renames of a save leaves the only model (or checkpoint) in ``.model.old.*``:
        put it back. Only for a run whose process is gone (a live one may be between its two renames)."""
        if self.readonly:
            return False
        restored = False
        for name in ("model", "checkpoint"):
            olds = sorted(self.path.glob(f".{name}.old.*"), key=lambda p: int(p.name.rsplit(".", 1)[-1] or 0))
            if olds and not (self.path / name).exists():
                os.replace(olds.pop(), self.path / name)
                restored = True
        return restored

    def clean_partial_writes(self) -> list[str]:
        """Remove the folders a killed training process left half-written: a model or checkpoint being saved,
        the previous copy kept during a save (after :meth:`restore_interrupted_save`), the trainer's own
        unfinished ``checkpoint-N``. Only for a run whose training process is gone. Returns what was removed.
        (A leftover ``.status.json.*`` temporary file is a few bytes and is left: another process may be
        writing it right now.)"""
        if self.readonly:
            return []
        removed = []
        for p in list(self.path.glob(".model.*")) + list(self.path.glob(".checkpoint.*")) + \
                list(self.path.glob(".trainer/checkpoint-*")):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
                removed.append(str(p.relative_to(self.path)))
        return removed

    # -- lost processes and resume -----------------------------------------------------------------------
    def last_sign_of_life(self, status: dict | None = None) -> str | None:
        """The latest moment the run's process is known to have been alive: its last status update, metrics
        line or log line. A kill came after it (and before it was found)."""
        st = self.status() if status is None else status
        times = [t for t in (_parse_iso(st.get("updated")),) if t is not None]
        for p in (self.metrics_path, self.path / "train.log"):
            try:
                times.append(p.stat().st_mtime)
            except OSError:
                pass
        return _iso(max(times)) if times else None

    def mark_interrupted(self, error: str, lost_at: str | None = None, **fields) -> dict:
        """State ``interrupted``: ``lost_at`` (last sign of life, or when the loss was seen), ``interrupted_at``
        (when it was recorded), ``ended`` = ``lost_at``. Metrics and the last saved model stay."""
        lost_at = lost_at or self.last_sign_of_life() or now_iso()
        return self.set_status("interrupted", error=error, lost_at=lost_at, interrupted_at=now_iso(),
                               ended=lost_at, **fields)

    def resume_check(self, status: dict | None = None) -> tuple[int | None, str | None]:
        """``(step, None)`` when the run can be resumed from its checkpoint's ``step``, else ``(None, why)``
        with a short reason. Reads only; a lost process is not looked for (see :meth:`resume_point`)."""
        step, why, _ = self._resume_check(status)
        return step, why

    def _resume_check(self, status: dict | None = None) -> tuple[int | None, str | None, bool]:
        """(step, why not, whether training it again from the start is the way out)."""
        st = self.status() if status is None else status
        state = st.get("state", "unknown")
        if state == "queued" and isinstance(st.get("resume_of"), dict):  # queued by the app to be resumed
            state = st["resume_of"].get("state", "unknown")
        elif state == "queued":
            return None, "it is waiting in the queue to be trained", False
        if state == "running":
            return None, (f"it is still running (process {st.get('pid')} on {st.get('host')}); stop it first, "
                          "or wait for it"), False
        if state == "finished":
            return None, "it has already finished; there is nothing to resume", False
        if state not in RESUMABLE_STATES:
            return None, f"it is {state}; only an interrupted, failed or stopped run can be resumed", False
        if self.config().get("method") == "sft-dpo":
            return None, ("sft-dpo trains in two stages (SFT, then DPO on the SFT model), which a single "
                          "checkpoint does not capture"), True
        step = self.checkpoint_step()
        if step is None:
            every = self.config().get("save_steps") or 0
            return None, ("it was started without save_steps, so it kept no checkpoint" if not every else
                          f"it ended before its first checkpoint (save_steps {every})"), True
        return step, None, False

    def resume_point(self) -> int:
        """The step that ``clo runs resume`` would continue from (its checkpoint's). Raises :class:`RunError`
        saying why when the run cannot be resumed. Changes nothing, except that a lost process is recorded
        (:func:`recover_run`)."""
        recover_run(self)
        step, why, restart = self._resume_check()
        if step is not None:
            return step
        if not restart:
            raise RunError(f"Run {self.id} cannot be resumed: {why}.")
        raise RunError(f"Run {self.id} cannot be resumed: {why}. Start it again with "
                       f"`python -m clo train --config {self.config_path}` (with --save-steps N to make it "
                       "resumable).")

    def prepare_resume(self, step: int) -> int:
        """Before a resume from ``step``: rows that the lost attempt logged after ``step`` move to
        ``metrics.replaced.jsonl`` (annotated, nothing is dropped) so that ``metrics.jsonl`` holds each step
        once; the status becomes ``running`` with ``resumed_from_step`` and the lost attempt in ``attempts``.
        ``saved_step`` names the step of the model already in ``model/`` (kept until this attempt saves).
        A run queued for resume by the app (state ``queued`` with ``resume_of``, see
        :meth:`clo.jobs.JobManager.submit_resume`) is recorded as the attempt it was before it was queued, and
        a stop requested since it was queued is kept (the job manager cleared older ones when it queued it).
        Returns how many rows moved."""
        kept, moved = [], []
        try:
            lines = self.metrics_path.read_text(encoding="utf-8").splitlines(keepends=True)
        except OSError:
            lines = []
        for line in lines:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                moved.append({"unparsed": line.rstrip("\n")})  # the torn last line of a kill
                continue
            (kept if isinstance(row, dict) and (row.get("step") or 0) <= step else moved).append(row)
        if moved:  # first the side file, then the rewrite: a kill in between duplicates rows, never loses them
            with open(self.path / REPLACED_METRICS, "a", encoding="utf-8") as f:
                for row in moved:
                    f.write(json.dumps({**row, "replaced_at": now_iso(), "resumed_from_step": step},
                                       ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
            atomic_write_text(self.metrics_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
        st = self.status()
        queued = st.get("state") == "queued" and isinstance(st.get("resume_of"), dict)
        prev = st.get("resume_of") if queued else st  # the attempt as it ended (before the app queued it)
        attempt = {k: prev.get(k) for k in ("state", "started", "ended", "lost_at", "interrupted_at", "error", "pid",
                                            "host", "step", "saved_step", "checkpoint_step") if prev.get(k) is not None}
        attempt["last_logged_step"] = max([r.get("step") or 0 for r in kept + moved if "step" in r], default=0)
        # the model now in model/: a stopped run saved it at its last step, any other at its last periodic save
        model_step = (prev.get("step") if prev.get("state") == "stopped" and prev.get("phase") == "done"
                      and prev.get("step") else prev.get("saved_step"))
        for k in ("lost_at", "interrupted_at", "returncode", "traceback", "note", "duration_s", "step", "resume_of",
                  "resume_error", "resume_failed_at", "queued_by", "queued_by_started", "released"):
            st.pop(k, None)
        if self.has_model() and model_step:
            st["saved_step"] = model_step
        st["attempts"] = list(st.get("attempts") or []) + [attempt]
        st["resumed_from_step"] = step
        st["rows_replaced"] = len(moved)
        atomic_write_text(self.status_path, json.dumps(st, indent=2, ensure_ascii=False))
        if not queued:
            self.stop_path.unlink(missing_ok=True)  # a stop request of the lost attempt must not end this one
        self.set_status("running", phase="resuming", resumed_from_step=step)
        return len(moved)

    def has_model(self) -> bool:
        return (self.model_path / "config.json").exists() or (self.model_path / "adapter_config.json").exists()

    # -- eval -----------------------------------------------------------------------------------------
    def write_eval(self, result: dict) -> None:
        if self.readonly:
            return
        atomic_write_text(self.path / "eval.json", json.dumps(result, indent=2, ensure_ascii=False))

    def eval(self) -> dict | None:
        try:
            return json.loads((self.path / "eval.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None

    def summary(self) -> dict:
        st, cfg = self.status(), self.config()
        rows = self.metrics()
        last = rows[-1] if rows else {}
        resume_step, why_not = self.resume_check(st)
        return {
            "id": self.id,
            "path": str(self.path),
            "state": st.get("state", "unknown"),
            "method": cfg.get("method"),
            "lang": cfg.get("lang"),
            "model": cfg.get("model"),
            "scope": cfg.get("scope"),
            "lr": cfg.get("lr"),
            "epochs": cfg.get("epochs"),
            "step": last.get("step"),
            "loss": last.get("loss"),
            "started": st.get("started"),
            "ended": st.get("ended"),
            "duration_s": st.get("duration_s"),
            "error": st.get("error"),
            "lost_at": st.get("lost_at"),
            "interrupted_at": st.get("interrupted_at"),
            "resumed_from_step": st.get("resumed_from_step"),
            "checkpoint_step": self.checkpoint_step(),
            "has_model": self.has_model(),
            "resumable": resume_step is not None,
            "resume_step": resume_step,
            "not_resumable": why_not,
            "resume_queued": st.get("state") == "queued" and isinstance(st.get("resume_of"), dict),
            "resume_error": st.get("resume_error"),
            "note": st.get("note"),
        }


_BOOT_ID: list[str] = []


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state letter, "boot-id:start ticks") of a process from Linux's /proc; None elsewhere or when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        rest = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state is field 3, starttime field 22
        if not _BOOT_ID:
            try:
                _BOOT_ID.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8])
            except OSError:
                _BOOT_ID.append("")
        return rest[0], f"{_BOOT_ID[0]}:{rest[19]}"
    except (OSError, ValueError, IndexError):
        return None


def process_start_id(pid: int) -> str | None:
    """When process ``pid`` started, as a string that a later process reusing the pid does not share:
    ``linux:<boot id>:<start time in clock ticks>`` (exact, from /proc), else ``ct:<psutil create_time>``."""
    st = _proc_stat(pid)
    if st is not None:
        return f"linux:{st[1]}"
    try:
        import psutil

        return f"ct:{psutil.Process(pid).create_time():.2f}"
    except Exception:  # psutil missing, or no such process
        return None


def _same_process(recorded: str, current: str | None) -> bool:
    if current is None or recorded.split(":", 1)[0] != current.split(":", 1)[0]:
        return True  # not comparable: trust the pid
    if recorded.startswith("ct:"):  # psutil's create_time derives from a boot time that can drift by a second
        try:
            return abs(float(recorded[3:]) - float(current[3:])) < 1.5
        except ValueError:
            return True
    return recorded == current


def pid_alive(pid, started: str | None = None) -> bool:
    """Is a process with this id running on this machine? With ``started`` (a :func:`process_start_id`
    recorded earlier) a different process that has since been given the same pid does not count, and neither
    does a zombie (a dead child nobody has reaped)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    except OSError:
        return False
    st = _proc_stat(pid)
    if st is not None and st[0] in ("Z", "X"):
        return False
    if started:
        return _same_process(started, f"linux:{st[1]}" if st is not None else process_start_id(pid))
    return True


def owner_alive(status: dict) -> bool:
    """Is the process recorded in a run's ``status.json`` (pid, its start time, host) still running? On
    another machine (a shared runs folder) it cannot be checked and counts as alive."""
    host = status.get("host")
    if host and host != socket.gethostname():
        return True
    return pid_alive(status.get("pid"), status.get("pid_started"))


def recover_run(run: RunDir) -> bool:
    """Tidy one run after its process is gone: put back a model/checkpoint left aside by a kill between the
    two renames of a save, and mark a run that was ``running`` as ``interrupted`` (removing the folders its
    process left half-written). A run whose process is alive is not touched. Returns True when it was lost."""
    st = run.status()
    if st.get("state") == "running" and owner_alive(st):
        return False  # training: a .model.* folder may be a save in progress
    run.restore_interrupted_save()
    if st.get("state") != "running":
        return False
    run.clean_partial_writes()
    lost_at = run.last_sign_of_life(st)
    run.mark_interrupted(f"the training process (pid {st.get('pid')} on {st.get('host')}) ended without "
                         f"finishing; lost at {lost_at} (last sign of life), found at {now_iso()}", lost_at=lost_at)
    return True


def recover_lost(root: str | Path | None = None) -> list[str]:
    """Mark runs whose process died while ``running`` as ``interrupted``. Returns their ids."""
    return [run.id for run in _iter_runs(root) if recover_run(run)]


def resolve_run(ref: str | Path, root: str | Path | None = None) -> RunDir:
    """A run by id (under ``root``, default ``./runs`` or ``$CLO_RUNS``) or by the path of its directory."""
    text = str(ref)
    if "/" in text or os.sep in text or Path(text).expanduser().is_absolute():
        run = RunDir(Path(text).expanduser())
        where = f"No run directory at {run.path}"
    else:
        base = root if root is not None else default_runs_root()
        run = RunDir(safe_run_path(base, text))
        where = f"No run {text!r} under {base}"
        if not run.exists() and RunDir(Path(text)).exists():  # a run folder in the current directory
            run = RunDir(Path(text))
    if not run.exists():
        raise RunError(f"{where}: no status.json or config.yaml there.")
    return run


_FAULT_HITS: dict[str, int] = {}


def fault_point(name: str, index: int | None = None) -> None:
    """TEST-ONLY fault injection for tests/test_faults.py; does nothing unless ``CLO_FAULT`` is set.

    ``CLO_FAULT=name`` or ``name:N`` makes the process SIGKILL itself (no cleanup, like ``kill -9`` or the
    kernel's out-of-memory killer) the N-th time (default 1) it reaches the point ``name``, or where ``index``
    (e.g. the step number) equals N. Points: ``ref_pass`` (after a batch of the reference pass), ``step``
    (mid-step N: gradients computed, optimizer not stepped), ``save`` (the N-th model save: new files written,
    not yet published by the rename).
    """
    want = os.environ.get("CLO_FAULT")
    if not want or want.partition(":")[0] != name:
        return
    _FAULT_HITS[name] = _FAULT_HITS.get(name, 0) + 1
    n = want.partition(":")[2]
    if (index if index is not None else _FAULT_HITS[name]) == int(n or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def _iter_runs(root: str | Path | None):
    root = Path(root) if root is not None else default_runs_root()
    if not root.is_dir():
        return
    for p in sorted(root.iterdir()):
        if p.is_dir() and not p.is_symlink() and not p.name.startswith("."):
            run = RunDir(p)
            if run.exists():
                yield run


def list_runs(root: str | Path | None = None) -> list[dict]:
    """Summaries of every run under ``root``, newest first, after marking lost runs ``interrupted``."""
    recover_lost(root)
    rows = [run.summary() for run in _iter_runs(root)]
    return sorted(rows, key=lambda r: r.get("started") or "", reverse=True)
