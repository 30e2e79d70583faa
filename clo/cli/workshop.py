"""``python -m clo serve`` and ``python -m clo arena``: the workshop commands (docs/workshop.md).

    python -m clo serve --model runs/<run> [--host 127.0.0.1] [--port 8000] [--api-key KEY]
    python -m clo arena --host 0.0.0.0 --port 8502
    python -m clo arena export CODE --out pairs.jsonl [--csv votes.csv]

The server (uvicorn, Starlette) is imported only by the command that starts it.
"""
from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from clo.core.paths import REPO_ROOT
from clo.data.formats import write_jsonl
from clo.workshop.arena import Arena, ArenaError

__all__ = ["WORKSHOP_COMMANDS"]


def _serve_parser(sub):
    from clo.workshop.serve import API_KEY_ENV, ServeSettings

    d = ServeSettings()
    p = sub.add_parser("serve", help="serve a model or run as an OpenAI-compatible endpoint",
                       description="OpenAI-compatible /v1/chat/completions (streaming too) and /v1/models for a "
                                   "model or run. Binds 127.0.0.1 unless --host says otherwise. docs/workshop.md")
    p.add_argument("--model", default="default", help="'default', a run directory, a folder or a cached HF id")
    p.add_argument("--model-id", dest="model_id", help="the name clients use (default: the run/folder name)")
    p.add_argument("--host", default=d.host, help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=d.port)
    p.add_argument("--api-key", dest="api_key", help=f"require 'Authorization: Bearer KEY' (or set ${API_KEY_ENV})")
    p.add_argument("--max-tokens", type=int, default=d.max_tokens_limit, dest="max_tokens_limit",
                   help="the most tokens one request may ask for")
    p.add_argument("--max-request-bytes", type=int, default=d.max_request_bytes, dest="max_request_bytes")
    p.add_argument("--batch-window", type=float, default=d.batch_window_s, dest="batch_window_s",
                   help="seconds to gather concurrent requests into one batch")
    p.add_argument("--max-batch", type=int, default=d.max_batch, dest="max_batch")
    return p


def cmd_serve(args) -> int:
    from clo.workshop.serve import API_KEY_ENV, ServeSettings, serve

    settings = ServeSettings(host=args.host, port=args.port,
                             api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
                             max_tokens_limit=args.max_tokens_limit, max_request_bytes=args.max_request_bytes,
                             batch_window_s=args.batch_window_s, max_batch=args.max_batch)
    print(f"Loading {args.model}, then serving it on http://{args.host}:{args.port}/v1"
          + (" (API key required)" if settings.api_key else "") + " — Ctrl-C stops", file=sys.stderr)
    serve(args.model, settings, args.model_id)
    return 0


def _arena_parser(sub):
    p = sub.add_parser("arena", help="serve the Arena's participant page; export a round's votes",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Participants' app: the round page only (no Train/Runs/Data, no paths). The host "
                                   "opens rounds on the Arena page of the main app. docs/workshop.md\n\n"
                                   "    python -m clo arena --host 0.0.0.0 --port 8502\n"
                                   "    python -m clo arena export CODE --out pairs.jsonl [--csv votes.csv]")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: the room's network)")
    p.add_argument("--port", type=int, default=8502)
    p.add_argument("--db", help="Arena database (default $CLO_ARENA_DB or $CLO_HOME/arena.sqlite)")
    actions = p.add_subparsers(dest="arena_action", metavar="ACTION")
    ex = actions.add_parser("export", help="a round's decided votes as preference pairs (JSONL) for clo train")
    ex.add_argument("code", help="round code")
    ex.add_argument("--out", required=True, help="preference pairs JSONL ({id, lang, prompt, chosen, rejected})")
    ex.add_argument("--csv", help="also the votes as CSV (formula-escaped); excluded participants' votes are left out")
    ex.add_argument("--db", default=argparse.SUPPRESS, help="Arena database")
    return p


def cmd_arena(args) -> int:
    if getattr(args, "arena_action", None) == "export":
        try:
            arena = Arena(args.db)
            arena.round(args.code)
        except ArenaError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        code = args.code.strip().upper()
        pairs = [p for p in arena.preference_pairs(code) if p["chosen"].strip() and p["rejected"].strip()]
        write_jsonl(args.out, pairs)
        if args.csv:
            Path(args.csv).write_text(arena.votes_csv(code), encoding="utf-8")
        s = arena.summary(code)
        print(f"round {code}: {s['participants']} participant(s) voted; {s['excluded_participants']} excluded, their "
              f"{s['excluded_votes']} vote(s) left out (kept in the database); {s['votes']} vote(s) counted\n"
              f"{len(pairs)} preference pairs → {args.out}" + (f"\nevery kept vote → {args.csv}" if args.csv else "")
              + f"\ntrain (plain DPO): python -m clo train --method clo --lambda 0 --lang LANG --data {args.out}",
              file=sys.stderr)
        return 0
    env = {**os.environ, **({"CLO_ARENA_DB": str(Path(args.db).resolve())} if args.db else {})}
    app = REPO_ROOT / "arena_app.py"
    print(f"Arena for participants on http://{args.host}:{args.port}/?round=CODE — Ctrl-C stops", file=sys.stderr)
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(app), "--server.address", args.host,
                               "--server.port", str(args.port), "--server.headless", "true",
                               "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false",
                               "--client.toolbarMode", "minimal", "--server.maxUploadSize", "1"], env=env)
    # a stop sent to this command (SIGTERM from a supervisor, SIGHUP from a closed terminal) reaches the server
    # too: without this the server would outlive the command and keep the port. A signal this command was told
    # to ignore (``nohup`` ignores SIGHUP, and the server inherits that) stays ignored.
    forward = lambda signum, _frame: server.send_signal(signum)  # noqa: E731
    stops = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]  # no SIGHUP on Windows
    previous = {sig: signal.signal(sig, forward) for sig in stops if signal.getsignal(sig) is not signal.SIG_IGN}
    # where it serves, for the host page's join link and QR code (the host page checks the server still answers)
    try:
        registry = Arena(args.db)
        registry.register_app(args.host, args.port, server.pid)
    except (ArenaError, OSError) as e:
        registry = None
        print(f"warning: the host page will not find this app's port ({e}); give it there by hand", file=sys.stderr)
    try:
        return server.wait()
    except KeyboardInterrupt:  # Ctrl-C reached the server as well (same process group): let it finish
        server.wait()
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if registry is not None:
            try:
                registry.unregister_app(args.host, args.port)
            except (ArenaError, OSError, sqlite3.Error):
                pass  # a stale entry is harmless: the host page lists only apps that answer


WORKSHOP_COMMANDS = {
    "serve": (_serve_parser, cmd_serve),
    "arena": (_arena_parser, cmd_arena),
}
