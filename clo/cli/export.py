"""``python -m clo export``: a run's model as a standalone folder, a model card, an Ollama Modelfile and optionally a
GGUF (docs/workshop.md, "Take a tuned model home").

    python -m clo export RUN --out DIR [--gguf [f16|f32]] [--verify N] [--json]

What cannot be exported (no model, a broken run folder, a run still training, a GGUF of an architecture CLO Studio
does not write) prints one line on stderr and exits with status 2; nothing is written then.
"""
from __future__ import annotations

import json
import sys

__all__ = ["EXPORT_COMMANDS"]


def _export_parser(sub):
    p = sub.add_parser(
        "export", help="write a run's model as a folder transformers loads alone (+ model card, Modelfile, GGUF)",
        description="Write a run's model as a standalone folder that transformers loads without CLO Studio or peft "
                    "(a LoRA run is merged), with the chat template it trained with, a model card (README.md) and an "
                    "Ollama Modelfile. --gguf also writes one GGUF file (f16, or f32). --verify N compares the "
                    "export's greedy answers with the run's on N held-out prompts per language, token for token, "
                    "and records the result in the card. docs/workshop.md, 'Take a tuned model home'.")
    p.add_argument("run", help="run id (under --root) or run directory")
    p.add_argument("--out", required=True, help="the folder to write (new, or empty; nothing is overwritten)")
    p.add_argument("--gguf", nargs="?", const="f16", choices=("f16", "f32"),
                   help="also write one GGUF file: f16 (the default) or f32; quantize it afterwards with llama.cpp")
    p.add_argument("--verify", type=int, metavar="N", help="compare greedy answers on the first N held-out prompts "
                   "of each of the run's languages and English (--prompts)")
    p.add_argument("--prompts", default="demo", help="held-out prompts JSONL for --verify (default: demo)")
    p.add_argument("--max-new-tokens", type=int, default=128, dest="max_new_tokens", help="for --verify")
    p.add_argument("--root", help="runs folder (default ./runs or $CLO_RUNS)")
    p.add_argument("--json", action="store_true", help="print JSON")
    return p


def cmd_export(args) -> int:
    from clo.data.formats import DataError, load_prompts
    from clo.runs.rundir import RunError, resolve_run
    from clo.workshop.export import ExportError, export_run

    try:
        run = resolve_run(args.run, args.root)
        prompts = None
        if args.verify:
            langs = [*[c.strip() for c in str(run.config().get("lang") or "").split(",") if c.strip()], "en"]
            prompts = load_prompts(args.prompts, list(dict.fromkeys(langs)), per_lang=args.verify)
            if not prompts:
                raise ExportError(f"no held-out prompts in {args.prompts} for {', '.join(langs)}")
        result = export_run(run, args.out, gguf=args.gguf, verify_prompts=prompts,
                            max_new_tokens=args.max_new_tokens, progress=lambda m: print(m, file=sys.stderr))
    except (ExportError, RunError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = result.summary()
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
        return 0
    print(f"exported {run.id} → {result.folder}" + (" (LoRA merged)" if result.merged_lora else ""))
    if result.gguf:
        print(f"GGUF: {result.gguf} ({result.gguf_source})")
    v = result.verified
    if v:
        line = f"greedy answers on {v['prompts']} held-out prompts: folder {v['folder']['identical']}/{v['prompts']}"
        if "gguf" in v:
            line += f", GGUF {v['gguf']['identical']}/{v['prompts']}"
        print(line + " identical to the run's, token for token")
    for note in result.notes:
        print(f"note: {note}")
    return 0


EXPORT_COMMANDS = {"export": (_export_parser, cmd_export)}
