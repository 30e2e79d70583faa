"""Run directories and the one record of a run's state, ``status.json`` (docs/design.md, "Run directories").

    runs/<run-id>/config.yaml     everything needed to reproduce it (`clo train --config config.yaml`)
    runs/<run-id>/status.json     the run's state: :data:`STATUS_FIELDS` below, written only by :class:`RunDir`
    runs/<run-id>/metrics.jsonl   one line per logged step
    runs/<run-id>/model/          safetensors weights (or a LoRA adapter), written atomically
    runs/<run-id>/checkpoint/     with save_steps: the trainer's state at the last save (weights, optimizer,
                                  scheduler, RNG, trainer_state.json), replaced atomically; `clo runs resume`
    runs/<run-id>/eval.json       metrics of the last evaluation

Every file is replaced atomically (write to a temporary name, then ``os.replace``), so a reader never sees a
torn file. ``status.json`` changes only through :class:`RunDir`'s intent methods — :meth:`~RunDir.queue`,
:meth:`~RunDir.phase`, :meth:`~RunDir.record`, :meth:`~RunDir.finish`, :meth:`~RunDir.fail`,
:meth:`~RunDir.mark_lost`, … — and the same calls feed the live event sink (``RunDir(path, events=…)``) that
the CLI's progress bar and the app listen to, so a phase has one name in both. Who owns a process is
:mod:`clo.core.process`; resuming is :mod:`clo.runs.resume`; listing runs is :mod:`clo.runs.catalog`.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import yaml

from clo.core.files import atomic_write_text, check_free_space, move_aside, read_run_file
from clo.core.process import owner_alive, owner_fields, owner_known
from clo.core.testing import fault_point

__all__ = [
    "RUN_STATES",
    "DONE_STATES",
    "READ_STATES",
    "PHASES",
    "STATUS_FIELDS",
    "RunDir",
    "RunError",
    "default_runs_root",
    "new_run_id",
    "now_iso",
    "safe_run_path",
    "recover_run",
    "recover_lost",
    "resolve_run",
    "iter_runs",
    "phase_label",
]

log = logging.getLogger(__name__)

RUN_STATES = ("queued", "running", "stopped", "failed", "finished", "interrupted")  # what status.json says
DONE_STATES = ("stopped", "failed", "finished", "interrupted")
# What the reader (RunDir.status) reports when status.json cannot say; never written.
READ_STATES = {
    "unknown": "no status.json (yet), or it says running without a process that can be checked (pid, its start "
               "time and host)",
    "unreadable": "config.yaml or status.json cannot be used (unreadable, not UTF-8, malformed, not a mapping, "
                  "missing): the reason is in error",
}

# A running run's phase: one name in status.json and in the live events, and the words the app shows for it.
PHASES = {
    "queued": "waiting in the queue",
    "loading": "loading model",
    "reference": "reference pass",
    "training": "training",
    "saving": "saving model",
    "resuming": "resuming",
    "cancelled": "cancelled",
    "done": "done",
}

# Every key status.json may hold, in one place. set_status refuses any other (a misspelt key would otherwise be
# written and never read).
STATUS_FIELDS = {
    # state
    "state": "one of RUN_STATES (readers may also report one of READ_STATES, which is never written)",
    "phase": "one of PHASES (while running; 'done' after)",
    "phase_started": "when the current phase began (UTC, ISO 8601)",
    "stage": "sft-dpo's stage being trained: 'sft' or 'dpo'",
    "note": "a sentence for the user (e.g. what a stop kept)",
    # times (UTC, ISO 8601)
    "created": "when the run directory was made",
    "updated": "last write of this file",
    "started": "first time it ran",
    "ended": "when it stopped, failed, finished or was lost",
    "duration_s": "seconds from start to end of its last attempt",
    # the process that trains it (clo.core.process)
    "pid": "training process id", "pid_started": "its start time (tells it from a later process with its pid)",
    "host": "machine of the training (or queuing) process",
    # the queue (clo.runs.jobs)
    "queued_by": "pid of the job manager that queued it", "queued_by_started": "that process's start time",
    "released": "true: its manager closed; the next one adopts it",
    # progress and result
    "n_samples": "samples it trains on", "step": "optimizer steps done at the end",
    "precision": "what it computes in: fp32, or bf16 autocast over fp32 weights (clo.core.precision)",
    "system_prompt": "the run's system_prompt setting (clo.models.chat.set_system_prompt)",
    "system_prompt_tokens_dropped": "tokens of the template's default system prompt taken off every sequence",
    "truncation": "what max_length cuts: sequences, cut, lost_end, skipped_samples, policy (clo.training.run.fit_to_length)",
    "max_steps": "total optimizer steps of the run, once training has begun",
    "saved_step": "step of the model in model/", "checkpoint_step": "step of checkpoint/",
    "ref_cache_hit": "reference log-probs read from the cache", "ref_pass_s": "seconds of the reference pass",
    "ref_done": "batches of the reference pass scored so far", "ref_total": "batches the reference pass scores",
    "ref_elapsed_s": "seconds the reference pass has run, at its last batch",
    "trainable_params": "parameters that train", "total_params": "parameters of the model",
    # failure
    "error": "one line: what went wrong", "traceback": "its last 4,000 characters",
    "returncode": "exit code of the training process, when a job manager saw it end",
    "signal": "the signal that ended it, when one did",
    "lost_at": "last sign of life of a lost process", "interrupted_at": "when the loss was found",
    # resume (clo.runs.resume)
    "resume_of": "while queued to resume: the status it had before", "resume_step": "the step it resumes from",
    "resume_error": "why its last resume was refused", "resume_failed_at": "when",
    "resumed_from_step": "the step this attempt started from", "rows_replaced": "metrics rows moved aside",
    "attempts": "earlier attempts, each as it ended",
}
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class RunError(ValueError):
    """A run id or run directory that cannot be used."""


def phase_label(phase: str | None, state: str | None = None) -> str:
    """The words for a phase (``reference`` → ``reference pass``); a state stands in when there is no phase."""
    key = phase or state or "unknown"
    return PHASES.get(key, key)


def default_runs_root() -> Path:
    """The runs folder: ``$CLO_RUNS``, else ``./runs`` (absolute, so that the app and the CLI name one folder)."""
    return Path(os.environ.get("CLO_RUNS") or "runs").expanduser().resolve()


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
    """``<time>-<method>-<lang>``; several target languages join with ``-`` (``sw,yo`` → ``sw-yo``)."""
    return f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{method}-{lang.replace(',', '-')}"


def safe_run_path(root: str | Path, run_id: str) -> Path:
    """``root/run_id``, refusing ids that could leave ``root`` (``..``, slashes, absolute paths, symlinks out)."""
    if not isinstance(run_id, str) or not _ID_RE.match(run_id) or ".." in run_id:
        raise RunError(f"Invalid run id {run_id!r}: use letters, digits, '.', '_' and '-' only.")
    root = Path(root).resolve()
    path = (root / run_id).resolve()
    if path.parent != root:
        raise RunError(f"Run id {run_id!r} points outside {root}.")
    return path


class RunDir:
    """One run directory. Cheap to construct; reads files on demand; the only writer of ``status.json``.

    ``events``: a callable fed one dict per change a live view cares about (``{"phase": …}`` and
    ``{"phase": "training", "metrics": row}``); ``readonly``: a view for the non-main ranks of a multi-process
    run, which write nothing and send no events."""

    def __init__(self, path: str | Path, readonly: bool = False, events: Callable[[dict], None] | None = None):
        self.path = Path(path)
        self.readonly = readonly
        self.events = events

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
    def create(cls, path: str | Path, config: dict, events=None) -> "RunDir":
        """Make a new run directory with ``config.yaml`` and a ``queued`` status. Refuses a used folder."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunError(f"{path} is a file, not a run directory; choose another --out (a new or empty folder).")
        if path.exists() and any(path.iterdir()) and cls(path).status().get("state") != "queued":  # a queued run is taken over by its job
            raise RunError(f"Run directory {path} already exists and is not empty; choose another --out.")
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path, events=events)
        atomic_write_text(run.config_path, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
        run.set_status("queued", created=now_iso())
        return run

    # -- status: the one reader, and the low-level writer -------------------------------------------------
    def status(self, *, shown: bool = False, config: tuple[dict, str | None] | None = None) -> dict:
        """The run's status: the one reader of ``status.json``.

        By default, what the file says; ``{"state": "unknown"}`` when there is none; ``{"state": "unreadable",
        "error": why}`` when it cannot be used (unreadable, not UTF-8, empty, malformed, not a mapping, no known
        state). Neither of these two states is ever written.

        ``shown=True``: the status as the listings, the app and resume show it. The state is also ``unreadable``
        (the reason and what to do in ``error``) when ``config.yaml`` cannot be used (``config``: what
        :meth:`read_config` already returned, so it is not read twice); ``unknown`` when it says ``running``
        without naming a process that can be checked (pid, its start time and host); ``interrupted`` when that
        process is gone but the loss could not be recorded (a read-only folder)."""
        data, why = read_run_file(self.status_path)
        if why is None and data is not None and data.get("state") not in RUN_STATES:
            why = f"status.json names no known state (state: {str(data.get('state'))[:40]!r})"
        if why is not None:
            status = {"state": "unreadable", "error": why}
        else:
            status = data if data is not None else {"state": "unknown"}
        if not shown:
            return status
        cfg, cfg_why = self.read_config() if config is None else config
        if cfg_why is None and not cfg and not self.config_path.exists() and self.status_path.exists():
            cfg_why = "config.yaml is missing"
        whys = [w for w in (why, cfg_why) if w]
        if whys:
            return {**(status if why is None else {}), "state": "unreadable",
                    "error": "; ".join(whys) + ". Fix the file or delete the run; the other runs are not affected."}
        if status.get("state") == "running":
            if not owner_known(status):
                return {**status, "state": "unknown", "error": (
                    f"status.json says running but does not name its process fully (pid {status.get('pid')!r}, "
                    f"start time {status.get('pid_started')!r}, host {status.get('host')!r}), so whether it still "
                    "trains cannot be checked. If nothing trains it, delete the run.")}
            if not owner_alive(status):
                return {**status, "state": "interrupted", "error": (
                    f"the training process (pid {status.get('pid')} on {status.get('host')}) is gone; the loss "
                    "could not be recorded in status.json (is the folder read-only?)")}
        return status

    def _stored_status(self) -> dict:
        """The status a write starts from (:meth:`status`), or ``{}`` when there is none. A file that cannot be
        used is moved aside to ``status.json.unreadable`` (with a warning), never silently overwritten."""
        data = self.status()
        if data.get("state") != "unreadable":
            return {} if data == {"state": "unknown"} and not self.status_path.exists() else data
        why = data["error"]
        try:
            aside = move_aside(self.status_path, "status.json.unreadable")
        except OSError as e:
            log.warning("run %s: %s; could not move it aside (%s)", self.id, why, e)
        else:
            if aside is not None:  # (None: another process moved it first)
                log.warning("run %s: %s; moved it to %s and wrote a new status.json", self.id, why, aside)
        return {}

    def _write_status(self, data: dict) -> dict:
        unknown = set(data) - set(STATUS_FIELDS)
        if unknown:
            raise ValueError(f"unknown status.json field(s): {', '.join(sorted(unknown))} (see STATUS_FIELDS)")
        data["updated"] = now_iso()
        atomic_write_text(self.status_path, json.dumps(data, indent=2, ensure_ascii=False))
        return data

    def set_status(self, state: str, **fields) -> dict:
        """Set the state (and ``fields``). ``running`` records this process as the owner; a done state records
        the end time. The intent methods below are the ways to call it."""
        if state not in RUN_STATES:
            raise ValueError(f"unknown run state {state!r}")
        if self.readonly:
            return self.status()
        data = self._stored_status()
        if state in ("queued", "running"):
            for old in ("error", "ended"):  # a restarted run drops the old error and end time
                data.pop(old, None)
        data.update(fields)
        data["state"] = state
        if state == "running":
            data.setdefault("started", now_iso())
            data.update(owner_fields())  # pid + start time tell this process from a later one with its pid
        if state in DONE_STATES:
            data.setdefault("ended", now_iso())
        return self._write_status(data)

    def update_status(self, drop=(), **fields) -> dict:
        """Change some fields of ``status.json`` without changing its state (``drop``: keys to remove)."""
        data = self.status()
        if self.readonly or data.get("state") == "unreadable" or not self.status_path.exists():
            return data
        for key in drop:
            data.pop(key, None)
        data.update(fields)
        return self._write_status(data)

    def read_config(self) -> tuple[dict, str | None]:
        """``(settings, None)``, or ``({}, why)`` when ``config.yaml`` cannot be used (``({}, None)``: none)."""
        data, why = read_run_file(self.config_path)
        return (data or {}), why

    def config(self) -> dict:
        """The settings in ``config.yaml``; ``{}`` when there are none or they cannot be read (:meth:`read_config`)."""
        return self.read_config()[0]

    # -- status: intents ----------------------------------------------------------------------------------
    def emit(self, event: dict) -> None:
        """Send ``event`` to the live view, if any (never from a read-only view). A broken view never breaks
        training."""
        if self.events is None or self.readonly:
            return
        try:
            self.events(event)
        except Exception:
            log.exception("event sink failed")

    def queue(self, *, resume_of: dict | None = None, resume_step: int | None = None) -> dict:
        """Queued by a job manager in this process (to resume from ``resume_step`` with the status it had in
        ``resume_of``)."""
        fields = {**owner_fields("queued_by"), "released": False}
        if resume_of is not None:
            fields.update(resume_of=resume_of, resume_step=resume_step)
        data = self.set_status("queued", **fields)
        if resume_of is not None:
            data = self.update_status(drop=("resume_error", "resume_failed_at"))
        return data

    def release(self) -> dict:
        """The job manager that queued it closed: the next manager on the runs folder adopts it."""
        return self.set_status("queued", released=True)

    def unqueue_resume(self, **fields) -> dict:
        """Put back the status a run had before it was queued to resume (plus ``fields``)."""
        status = self.status()
        previous = status.get("resume_of")
        if self.readonly or status.get("state") != "queued" or not isinstance(previous, dict):
            return status
        return self._write_status({**previous, **fields})

    def cancel(self) -> dict:
        """A queued job removed from the queue before it started."""
        return self.set_status("stopped", phase="cancelled", error="Cancelled before it started.")

    def phase(self, name: str, **fields) -> dict:
        """Running, now in phase ``name`` (one of :data:`PHASES`); ``fields`` go to the status and the event.
        Event-only details (a loading message, the rows of the reference pass) go through :meth:`emit`."""
        if name not in PHASES:
            raise ValueError(f"unknown phase {name!r}")
        if not self.readonly and self.status().get("phase") != name:
            fields.setdefault("phase_started", now_iso())
        data = self.set_status("running", phase=name, **fields)
        self.emit({"phase": name, **fields})
        return data

    def record(self, **fields) -> dict:
        """Progress that changes no state: a periodic save (``saved_step``), a checkpoint, cache facts."""
        return self.update_status(**fields)

    def finish(self, state: str, **fields) -> dict:
        """The run ended as ``finished`` or ``stopped``, or ``failed`` (with ``error``)."""
        if state not in ("finished", "stopped", "failed"):
            raise ValueError(f"{state!r} is not how a run ends")
        data = self.set_status(state, phase="done", **fields)
        event = {"phase": "done", "state": state}
        if fields.get("error"):
            event["error"] = fields["error"]
        self.emit(event)
        return data

    def fail(self, error: str, **fields) -> dict:
        return self.finish("failed", error=error, **fields)

    # -- metrics --------------------------------------------------------------------------------------
    def append_metrics(self, row: dict) -> None:
        """One line per logged step (and the same row to the live view); each line is written whole and
        flushed, so a kill loses at most the line being written and every earlier line stays readable."""
        if self.readonly:
            return
        line = json.dumps(row, ensure_ascii=False) + "\n"
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self.emit({"phase": "training", "metrics": row})

    def metrics(self) -> list[dict]:
        """The logged rows up to the first line that is not a whole row (the torn last line of a kill, bytes that
        are not UTF-8, a line that is not an object with an integer ``step``): everything before it is kept."""
        rows = []
        try:
            with open(self.metrics_path, "rb") as f:
                for line in f:
                    try:
                        row = json.loads(line.decode("utf-8"))
                    except (UnicodeDecodeError, json.JSONDecodeError):
                        break
                    if not isinstance(row, dict) or not isinstance(row.get("step"), int) or isinstance(row["step"], bool):
                        break
                    rows.append(row)
        except OSError:
            pass
        return rows

    # -- model and checkpoint ---------------------------------------------------------------------------
    def save_model(self, write_fn, need: int | None = None) -> Path:
        """``write_fn(folder)`` writes the model into a fresh temporary folder, which then replaces ``model/``
        in one rename. An older ``model/`` is kept until the new one is complete. ``need``: the bytes the save
        writes; with less free space it is refused before anything is written (:func:`check_free_space`)."""
        if self.readonly:
            return self.model_path
        if need:
            kept = "the model saved earlier is kept" if self.has_model() else "no model was saved"
            check_free_space(self.path, need, f"the model of {self.id} ({kept})")
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

    # -- lost processes ---------------------------------------------------------------------------------------
    def last_sign_of_life(self, status: dict | None = None) -> str | None:
        """The latest moment the run's process is known to have been alive: its last status update, metrics
        line or log line. A kill came after it (and before it was found)."""
        status = self.status() if status is None else status
        times = [t for t in (_parse_iso(status.get("updated")),) if t is not None]
        for p in (self.metrics_path, self.path / "train.log"):
            try:
                times.append(p.stat().st_mtime)
            except OSError:
                pass
        return _iso(max(times)) if times else None

    def mark_lost(self, error: str, lost_at: str | None = None, **fields) -> dict:
        """The training process is gone without recording an outcome (killed, crashed, machine restarted):
        tidy what it left half-written, then state ``interrupted`` with ``lost_at`` (last sign of life, or when
        the loss was seen), ``interrupted_at`` (when it was recorded) and ``ended`` = ``lost_at``. Metrics and
        the last saved model stay."""
        self.restore_interrupted_save()
        self.clean_partial_writes()
        lost_at = lost_at or self.last_sign_of_life() or now_iso()
        return self.set_status("interrupted", error=error, lost_at=lost_at, interrupted_at=now_iso(),
                               ended=lost_at, **fields)

    def has_model(self) -> bool:
        return (self.model_path / "config.json").exists() or (self.model_path / "adapter_config.json").exists()

    # -- eval -----------------------------------------------------------------------------------------
    def write_eval(self, result: dict) -> None:
        if self.readonly:
            return
        atomic_write_text(self.path / "eval.json", json.dumps(result, indent=2, ensure_ascii=False))

    def eval(self) -> dict | None:
        """The last evaluation; None when there is none or ``eval.json`` cannot be used."""
        return read_run_file(self.path / "eval.json")[0]


def recover_run(run: RunDir) -> bool:
    """Tidy one run after its process is gone: put back a model/checkpoint left aside by a kill between the
    two renames of a save, and mark a run that was ``running`` as lost (:meth:`RunDir.mark_lost`). A run whose
    process is alive is not touched. Returns True when it was lost."""
    status = run.status()
    if status.get("state") == "unreadable":
        return False  # whether it trains cannot be known: leave it as it is (shown unreadable)
    if status.get("state") == "running" and (not owner_known(status) or owner_alive(status)):
        return False  # training (or it cannot be checked): a .model.* folder may be a save in progress
    run.restore_interrupted_save()
    if status.get("state") != "running":
        return False
    lost_at = run.last_sign_of_life(status)
    run.mark_lost(f"the training process (pid {status.get('pid')} on {status.get('host')}) ended without "
                  f"finishing; lost at {lost_at} (last sign of life), found at {now_iso()}", lost_at=lost_at)
    return True


def recover_lost(root: str | Path | None = None) -> list[str]:
    """Mark runs whose process died while ``running`` as ``interrupted``. Returns their ids. A run whose loss
    cannot be written (a read-only folder, a full disk) is left as it is, with a warning; the listings still
    show it ``interrupted`` (:meth:`RunDir.status` with ``shown=True``)."""
    lost = []
    for run in iter_runs(root):
        try:
            if recover_run(run):
                lost.append(run.id)
        except OSError as e:
            log.warning("run %s: could not record that its process is gone (%s)", run.id, e)
    return lost


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


def iter_runs(root: str | Path | None):
    root = Path(root) if root is not None else default_runs_root()
    if not root.is_dir():
        return
    for p in sorted(root.iterdir()):
        if p.is_dir() and not p.is_symlink() and not p.name.startswith("."):
            run = RunDir(p)
            if run.exists():
                yield run


