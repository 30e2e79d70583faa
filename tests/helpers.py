"""What several test files share and is not a fixture (fixtures live in conftest.py): sample data, the real CLI in
a subprocess, bounded waits, free ports and a Streamlit server started for a browser."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SAMPLES = [
    ("What is the capital of Kenya?", "The capital of Kenya is Nairobi.",
     "Mji mkuu wa Kenya ni upi?", "Mji mkuu wa Kenya ni Nairobi."),
    ("How do I cook rice?", "Rinse it, add water, and simmer until soft.",
     "Ninapikaje wali?", "Osha mchele, ongeza maji, na uupike hadi ulainike."),
    ("Why should I wash my hands?", "Wash your hands with soap before you eat.",
     "Kwa nini ninawe mikono?", "Osha mikono yako kwa sabuni kabla ya kula."),
    ("Why is the sky blue?", "The sky looks blue because air scatters blue light.",
     "Kwa nini anga ni la buluu?", "Anga linaonekana la buluu kwa sababu hewa hutawanya mwanga wa buluu."),
]
# the same samples in Yoruba
YO = [("What is the capital of Kenya?", "The capital of Kenya is Nairobi.", "Kí ni olú ìlú Kenya?",
       "Nairobi ni olú ìlú Kenya."),
      ("How do I cook rice?", "Rinse it, add water, and simmer until soft.", "Báwo ni mo ṣe ń se ìrẹsì?",
       "Fọ̀ ọ́, fi omi kún un, kí o sì sè é títí yóò fi rọ̀."),
      ("Why should I wash my hands?", "Wash your hands with soap before you eat.",
       "Kí ló dé tí mo fi gbọ́dọ̀ fọ ọwọ́?", "Fi ọṣẹ fọ ọwọ́ rẹ kí o tó jẹun."),
      ("Why is the sky blue?", "The sky looks blue because air scatters blue light.",
       "Kí ló dé tí ojú ọ̀run fi búlúù?", "Ojú ọ̀run dàbí búlúù nítorí afẹ́fẹ́ ń tú ìmọ́lẹ̀ búlúù ká.")]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def write_xl(path: Path, samples=SAMPLES, lang="sw") -> Path:
    """A cross-lingual file of ``samples`` (English instruction, response; translated instruction, response)."""
    with open(path, "w", encoding="utf-8") as f:
        for i, (ie, re_, it, rt) in enumerate(samples):
            f.write(json.dumps({"id": f"s{i}", "lang": lang, "instruction_en": ie, "response_en": re_,
                                "instruction": it, "response": rt, "translator": "reference"},
                               ensure_ascii=False) + "\n")
    return path


def two_language_file(path: Path, copies: int = 1) -> Path:
    """One file with the same samples (same ids) in Swahili and in Yoruba."""
    sw = write_xl(path.with_suffix(".sw"), [(f"{a} ({i})", b, f"{c} ({i})", d) for i, (a, b, c, d)
                                            in enumerate(SAMPLES * copies)], lang="sw")
    yo = write_xl(path.with_suffix(".yo"), [(f"{a} ({i})", b, f"{c} ({i})", d) for i, (a, b, c, d)
                                            in enumerate(YO * copies)], lang="yo")
    path.write_text(sw.read_text(encoding="utf-8") + yo.read_text(encoding="utf-8"), encoding="utf-8")
    return path


def clo_env(home: Path | None = None, **extra) -> dict:
    """The environment of a child ``python -m clo``: offline, this checkout importable, no injected fault,
    its own CLO_HOME when ``home`` is given, then ``extra``."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if home is not None:
        env["CLO_HOME"] = str(home)
    env.pop("CLO_FAULT", None)
    env.update(extra)
    return env


def run_cli(*args, cwd=None, env=None) -> tuple[int, str, str]:
    """The real `python -m clo ARGS` in a subprocess: (exit code, stdout, stderr)."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    p = subprocess.run([sys.executable, "-m", "clo", *args], capture_output=True, text=True, cwd=cwd or ROOT,
                       env=full_env, timeout=600)
    return p.returncode, p.stdout, p.stderr


def wait_for(cond, timeout: float = 60.0, what: str = "condition", every: float = 0.1) -> None:
    """Poll ``cond()`` until it is true; a ``TimeoutError`` naming ``what`` after ``timeout`` seconds (a guard
    against a hang, never a measurement)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout:g} s")
        time.sleep(every)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_streamlit(cmd: list[str], env: dict, log_path: Path, port: int, timeout_s: float,
                    **popen) -> subprocess.Popen:
    """Start a Streamlit app (``cmd``, output to ``log_path``; ``popen``: more Popen arguments) and wait until its
    health check answers on ``port``; fail the test with the log's end if it exits or does not answer within
    ``timeout_s``."""
    with open(log_path, "wb") as log:  # the child keeps its own copy of the file
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, **popen)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.read() == b"ok":
                    return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{cmd} did not start:\n{Path(log_path).read_text()[-3000:]}")
        time.sleep(0.3)


def stop_process(proc, timeout_s: float = 20) -> None:
    """End a server a test started (:func:`start_streamlit`): SIGTERM, then SIGKILL after ``timeout_s``."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
