"""The figure of docs/design.md, "Inside a pair": the app's page on one sample of a run, with its hardest pairs.

    python -m clo train --preset demo --lang sw --data demo --max-steps 4 --out /tmp/pairfig/runs/demo
    python scripts/pair_figure.py --run /tmp/pairfig/runs/demo [--sample 0] [--out docs/figures/inside-a-pair.png]

Starts the app on the run's folder (CLO_RUNS), opens ``/pair?run=<id>&sample=N`` in Chromium (Playwright, as
tests/test_browser.py does), waits until the page is drawn (``data-testid=clo-drawn``), ranks the run's pairs and
saves the whole page.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DRAWN = "() => Math.max(0, ...[...document.querySelectorAll('[data-testid=clo-drawn]')].map(e => +e.dataset.run))"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _drawn_after(pg, before: int) -> None:
    pg.wait_for_function(f"(before) => ({DRAWN})() > before", arg=before, timeout=300_000)
    pg.wait_for_selector("[data-testid=stStatusWidget]", state="detached", timeout=300_000)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a run directory")
    ap.add_argument("--sample", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "docs" / "figures" / "inside-a-pair.png"))
    args = ap.parse_args()
    run = Path(args.run).resolve()
    chromium = subprocess.run(["sh", str(ROOT / "scripts" / "ensure_chromium.sh")], capture_output=True, text=True,
                              check=True).stdout.strip().splitlines()[-1]
    port = _port()
    env = {**os.environ, "CLO_RUNS": str(run.parent), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": str(ROOT)}
    env.pop("CLO_MODEL", None)
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--server.headless", "true", "--browser.gatherUsageStats", "false"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.3)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"])
            pg = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
            pg.goto(f"http://127.0.0.1:{port}/pair?run={run.name}&sample={args.sample}")
            _drawn_after(pg, 0)
            before = pg.evaluate(DRAWN)
            pg.get_by_role("button", name="Rank this run's pairs").click()
            _drawn_after(pg, before)
            height = pg.evaluate("document.querySelector('[data-testid=stMainBlockContainer]').scrollHeight")
            pg.set_viewport_size({"width": 1440, "height": min(int(height) + 120, 6000)})
            pg.wait_for_timeout(500)
            pg.screenshot(path=args.out)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
