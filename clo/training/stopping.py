"""How training stops (docs/reliability.md, "Signals" and "Stopping a run"): one module that the run driver,
the trainer, its callbacks and the CLI's signal handling all import, so that none of them imports another for it.

- :class:`StopRequest` — a request to end training after the current step, with who asked and a deadline;
- :func:`stop_requested` — the stop decision, the same on every rank;
- :class:`TrainingStopped` — raised when a stop arrives before the first optimizer step.
"""
from __future__ import annotations

import threading

from clo.training.distributed import all_agree

__all__ = ["TrainingStopped", "StopRequest", "stop_requested"]


class TrainingStopped(Exception):
    """A stop request arrived before the first optimizer step (while loading or in the reference pass)."""


class StopRequest(threading.Event):
    """A request to end training after the current step, keeping that step's model: a ``threading.Event`` that
    also says who asked (``signal``: ``"SIGTERM"``, … when a signal did) and that can hold a deadline: when the
    steps have not ended ``deadline_s`` seconds after the request, ``on_deadline`` runs (the CLI then aborts, as
    on a second signal). The deadline covers the steps only: it is lifted once the final save begins."""

    def __init__(self):
        super().__init__()
        self.signal: str | None = None
        self._timer: threading.Timer | None = None

    def request(self, signal: str | None = None, *, deadline_s: float | None = None, on_deadline=None) -> None:
        self.signal = signal
        self.set()
        if deadline_s and on_deadline is not None and self._timer is None:
            self._timer = threading.Timer(deadline_s, on_deadline)
            self._timer.daemon = True
            self._timer.start()

    def settle(self) -> None:
        """The steps are over: the save that follows is never cut short by the deadline."""
        if self._timer is not None:
            self._timer.cancel()


def stopped_by(stop_event) -> dict:
    """``{"signal": name}`` when a signal asked for the stop."""
    name = getattr(stop_event, "signal", None)
    return {"signal": name} if stop_event is not None and stop_event.is_set() and name else {}


def stop_requested(run, stop_event) -> bool:
    """The stop decision, the same on every rank: the main process reads the run's STOP file (the only one
    that owns the run directory; on several machines the others may not even see it), any rank's own
    ``stop_event`` (e.g. its Ctrl-C) counts, and the flags are combined so that no rank leaves a collective
    that the others still wait in."""
    from accelerate import PartialState

    local = stop_event is not None and stop_event.is_set()
    if not local and run is not None and PartialState().is_main_process:
        local = run.stop_requested()
    return all_agree(local, "any")
