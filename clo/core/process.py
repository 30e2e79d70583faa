"""Process identity: is the process that a run's ``status.json`` names still the one running?

A process is identified by its pid *and* its start time (``linux:<boot id>:<start ticks>`` from /proc, else
psutil's create time), so a pid that the kernel has given to another program since, or a zombie, does not keep
a dead run "running" (docs/design.md, "Run directories").
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

import psutil

__all__ = ["process_start_id", "pid_alive", "owner_alive", "owner_known", "owner_fields", "this_host"]


def this_host() -> str:
    return socket.gethostname()


def owner_fields(prefix: str = "") -> dict:
    """This process as a run's owner: ``{pid, pid_started, host}`` (``prefix``: e.g. ``queued_by`` →
    ``queued_by``, ``queued_by_started``)."""
    pid = os.getpid()
    if prefix:
        return {prefix: pid, f"{prefix}_started": process_start_id(pid), "host": this_host()}
    return {"pid": pid, "pid_started": process_start_id(pid), "host": this_host()}


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
    proc = _proc_stat(pid)
    if proc is not None:
        return f"linux:{proc[1]}"
    try:
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
    proc = _proc_stat(pid)
    if proc is not None and proc[0] in ("Z", "X"):
        return False
    if started:
        return _same_process(started, f"linux:{proc[1]}" if proc is not None else process_start_id(pid))
    return True


def owner_known(status: dict) -> bool:
    """Does a run's ``status.json`` name its process fully: a pid, that process's start time and its host? Only
    then can :func:`owner_alive` tell a live owner from a dead one (a status without them is shown ``unknown``)."""
    pid, started, host = status.get("pid"), status.get("pid_started"), status.get("host")
    return (isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 and isinstance(started, str)
            and bool(started) and isinstance(host, str) and bool(host))


def owner_alive(status: dict) -> bool:
    """Is the process recorded in a run's ``status.json`` (pid, its start time, host) still running? On
    another machine (a shared runs folder) it cannot be checked and counts as alive."""
    host = status.get("host")
    if isinstance(host, str) and host and host != this_host():
        return True
    return pid_alive(status.get("pid"), status.get("pid_started"))


