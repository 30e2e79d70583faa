"""How the CLI's training commands stop on signals (docs/reliability.md, "Signals"): the first SIGINT, SIGTERM
or SIGHUP ends training after the current step and keeps its model; a second one, or a step that does not end
within ``CLO_STOP_DEADLINE_S`` seconds, aborts. Used by ``clo train`` and ``clo runs resume``.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

from clo.training.stopping import StopRequest

__all__ = ["STOP_SIGNALS", "STOP_DEADLINE_ENV", "STOP_DEADLINE_S", "stop_on_signals", "aborted", "say"]

STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))
STOP_DEADLINE_ENV = "CLO_STOP_DEADLINE_S"  # seconds a stop may take to end the current step (default below)
STOP_DEADLINE_S = 120.0


def say(text: str) -> None:
    """Print to stderr, quietly doing nothing when it is gone (SIGHUP: the terminal closed)."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _stop_deadline() -> float:
    try:
        value = float(os.environ.get(STOP_DEADLINE_ENV) or STOP_DEADLINE_S)
    except ValueError:
        value = STOP_DEADLINE_S
    return value if value > 0 else STOP_DEADLINE_S


@contextlib.contextmanager
def stop_on_signals():
    """Yields the :class:`~clo.training.stopping.StopRequest` of ``clo train`` and ``clo runs resume``. The first SIGINT
    (Ctrl-C), SIGTERM (``kill``, ``docker stop``, systemd, the app's job manager) or SIGHUP (the terminal closed)
    asks training to end after the current step and keep that step's model; the run ends ``stopped`` with the
    signal named. A second signal, or the steps not ending within ``CLO_STOP_DEADLINE_S`` seconds (default 120),
    aborts at once: ``KeyboardInterrupt`` carrying the signal's name, and the run is marked ``interrupted`` (its
    last saved model and checkpoint stay). Every rank of an ``accelerate launch`` has its own handler; the stop
    decision is shared through :func:`clo.training.stopping.stop_requested`."""
    stop = StopRequest()
    deadline = _stop_deadline()
    late: list[float] = []
    main_thread = threading.main_thread()

    def on_signal(signum, frame):
        name = signal.Signals(signum).name
        if stop.is_set():
            e = KeyboardInterrupt(f"the current step did not end within {late[0]:g} s of the stop" if late else "")
            e.signal = stop.signal or name
            raise e
        again = "Ctrl-C" if name == "SIGINT" else "a second signal"

        def on_deadline():
            late.append(deadline)
            signal.pthread_kill(main_thread.ident, signum)  # the main thread runs the handler, and aborts

        stop.request(name, deadline_s=deadline, on_deadline=on_deadline)
        say(f"\n{name}: stopping after the current step (the model of that step is kept); {again} aborts now.")

    previous = {}
    if threading.current_thread() is main_thread:
        previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    try:
        yield stop
    finally:
        stop.settle()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def aborted(e: KeyboardInterrupt, where) -> int:
    """What the CLI says after an abort; the exit status is 128 + the signal's number, as a shell reports it."""
    name = getattr(e, "signal", None) or "SIGINT"
    say(f"Aborted by {name}; run marked interrupted in {where} (its last saved model and checkpoint are kept; "
         f"`python -m clo runs resume {where}` continues a run that has a checkpoint).")
    return 128 + int(getattr(signal, name, signal.SIGINT))
