"""Run directories (DESIGN.md §3).

    runs/<run-id>/config.yaml     everything needed to reproduce it (`clo train --config config.yaml`)
    runs/<run-id>/status.json     queued | running | stopped | failed | finished | interrupted, with error text
    runs/<run-id>/metrics.jsonl   one line per logged step
    runs/<run-id>/model/          safetensors weights (or a LoRA adapter), written atomically
    runs/<run-id>/eval.json       metrics of the last evaluation

Every file is replaced atomically (write to a temporary name, then ``os.replace``), so a reader never sees
a torn file. A run whose process vanished while ``running`` is marked ``interrupted`` by :func:`recover_lost`.
"""
from __future__ import annotations

import json
import os
import re
import shutil
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
]

RUN_STATES = ("queued", "running", "stopped", "failed", "finished", "interrupted")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class RunError(ValueError):
    """A run id or run directory that cannot be used."""


def default_runs_root() -> Path:
    return Path(os.environ.get("CLO_RUNS", "runs"))


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
            data.pop("error", None)  # a restarted run drops the old error
        data.update(fields)
        data["state"] = state
        data["updated"] = now_iso()
        if state == "running":
            data.setdefault("started", now_iso())
            data["pid"] = os.getpid()
            data["host"] = socket.gethostname()
        if state in ("stopped", "failed", "finished", "interrupted"):
            data.setdefault("ended", now_iso())
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

    # -- model ----------------------------------------------------------------------------------------
    def save_model(self, write_fn) -> Path:
        """``write_fn(folder)`` writes the model into a fresh temporary folder, which then replaces ``model/``
        in one rename. An older ``model/`` is kept until the new one is complete."""
        if self.readonly:
            return self.model_path
        tmp = Path(tempfile.mkdtemp(prefix=".model.", dir=self.path))
        try:
            write_fn(tmp)
            old = None
            if self.model_path.exists():
                old = self.path / f".model.old.{int(time.time() * 1000)}"
                os.replace(self.model_path, old)
            os.replace(tmp, self.model_path)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self.model_path

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
        """A kill between the two renames of save_model leaves the only model in ``.model.old.*``: put it back."""
        if self.model_path.exists() or self.readonly:
            return False
        olds = sorted(self.path.glob(".model.old.*"))
        if not olds:
            return False
        os.replace(olds[-1], self.model_path)
        return True

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
            "has_model": self.has_model(),
        }


def pid_alive(pid) -> bool:
    """Is a process with this id running on this machine?"""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner_alive(pid, host) -> bool:
    """A run's process. On another machine (shared runs folder) it cannot be checked and counts as alive."""
    if host and host != socket.gethostname():
        return True
    return pid_alive(pid)


def recover_lost(root: str | Path | None = None) -> list[str]:
    """Mark runs whose process died while ``running`` as ``interrupted``. Returns their ids."""
    lost = []
    for run in _iter_runs(root):
        run.restore_interrupted_save()
        st = run.status()
        if st.get("state") == "running" and not _owner_alive(st.get("pid"), st.get("host")):
            run.set_status("interrupted", error=f"process {st.get('pid')} ended without finishing; lost at {st.get('updated')}",
                           lost_at=st.get("updated"))
            lost.append(run.id)
    return lost


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
