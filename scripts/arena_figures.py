"""The Arena's figures in docs/workshop.md, taken in Debian's Chromium through Playwright:

- ``arena-host.png``: the host page at 1440 px with a live round — the join link, its QR code, the English toggle,
  the leaderboard with votes;
- ``arena-participant-phone.png``: the participant page on a phone-sized viewport (390 × 844), English shown.

    .venv/bin/python scripts/arena_figures.py --model default --model runs/<run> [--voters 3] [--out docs/figures]

It opens a round on the models over three held-out Swahili prompts (their answers generated greedily, 64 new
tokens) in a fresh Arena database, starts the host's app and ``clo arena --host 0.0.0.0`` beside it, turns the
English versions on from the host page, and has ``--voters`` phone-sized browsers vote on every pair through the
participant page, each click a real one. The voters choose at random (seeded): the votes show the page, they are no
result. Prints the machine the figures were taken on.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without `pip install -e .` as well

from clo.data.formats import load_prompts  # noqa: E402
from clo.evaluation.generate import GenerationOptions, generate  # noqa: E402
from clo.models.load import load_model  # noqa: E402
from clo.workshop.arena import Arena  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
CHOICES = ["A is better", "B is better", "Tie", "Both are bad"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], env: dict, log: Path, port: int) -> subprocess.Popen:
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.read() == b"ok":
                    return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"{' '.join(cmd)} did not start:\n{log.read_text()[-3000:]}")


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in subprocess.run(["lscpu"], capture_output=True, text=True)
                .stdout.splitlines() if line.startswith("Model name")), platform.processor())
    return f"{cpu}, {os.cpu_count()} cores, no GPU used; Chromium {CHROMIUM}"


def full_page(pg, path: Path) -> None:
    """The whole page: Streamlit scrolls inside its main block, so the window is made as tall as the content."""
    pg.mouse.move(0, 0)  # no hover toolbar over an image
    height = pg.evaluate("document.querySelector('[data-testid=stMainBlockContainer]').scrollHeight")
    size = pg.viewport_size
    pg.set_viewport_size({"width": size["width"], "height": max(size["height"], min(int(height) + 120, 5000))})
    pg.wait_for_timeout(800)
    pg.screenshot(path=str(path))
    pg.set_viewport_size(size)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, help="a model or run (twice or more)")
    ap.add_argument("--voters", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "docs" / "figures"))
    args = ap.parse_args()
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=120_000)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="arena-figures-"))
    db = tmp / "arena.sqlite"
    arena = Arena(db)
    print("generating the answers…", file=sys.stderr)
    prompts = load_prompts("demo", ["sw"], per_lang=3)
    code = arena.create_round(args.model, prompts, GenerationOptions(max_new_tokens=64),
                              generate_fn=lambda m, ps, o: generate(load_model(m), ps, o))
    runs = {str(Path(m).resolve().parent) for m in args.model if (Path(m) / "status.json").exists()}
    env = {**os.environ, "CLO_ARENA_DB": str(db), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": str(ROOT), "CLO_MODEL": args.model[0], **({"CLO_RUNS": runs.pop()} if len(runs) == 1 else {})}
    host_port, app_port = free_port(), free_port()
    host = start([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(host_port),
                  "--server.headless", "true", "--server.fileWatcherType", "none", "--browser.gatherUsageStats",
                  "false"], env, tmp / "host.log", host_port)
    app = start([sys.executable, "-m", "clo", "arena", "--host", "0.0.0.0", "--port", str(app_port)], env,
                tmp / "arena.log", app_port)
    rng = random.Random(0)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            pg = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
            pg.goto(f"http://127.0.0.1:{host_port}/arena")
            expect(pg.get_by_text(f"serving on port {app_port}")).to_be_visible()
            english = "Show participants the English version of each prompt"
            pg.get_by_text(english).click()
            expect(pg.get_by_role("switch", name=english)).to_be_checked()
            join = pg.get_by_text("Join: http").inner_text().removeprefix("Join:").strip()
            print(f"round {code}, join link {join}", file=sys.stderr)
            n_pairs = len(arena.matchups(code))
            for _ in range(args.voters):
                phone = browser.new_context(**PHONE).new_page()
                phone.goto(join)
                for i in range(n_pairs):
                    vote = phone.get_by_role("button", name=rng.choice(CHOICES), exact=True)
                    expect(vote).to_be_enabled()
                    vote.click()
                    expect(phone.get_by_text("Vote recorded.")).to_be_visible()
                    if i < n_pairs - 1:
                        phone.get_by_role("button", name="Next pair").click()
                        expect(phone.get_by_text("Vote recorded.")).to_have_count(0)
                phone.context.close()
            expect(pg.get_by_role("combobox", name="Round")).to_have_value(
                f"{code} · {len(args.model)} models · {args.voters * n_pairs} votes · open")
            full_page(pg, out / "arena-host.png")
            phone = browser.new_context(**PHONE).new_page()
            phone.goto(join)
            expect(phone.get_by_role("button", name="A is better")).to_be_enabled()
            full_page(phone, out / "arena-participant-phone.png")  # the phone's page, scrolled through
            browser.close()
    finally:
        app.terminate()
        host.terminate()
        app.wait(timeout=30)
        host.wait(timeout=30)
    print(f"wrote {out / 'arena-host.png'} and {out / 'arena-participant-phone.png'}\nmachine: {machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
