"""``python -m clo`` — the headless interface. Every command calls the same ``clo`` functions as the app.

    python -m clo langs
    python -m clo models
    python -m clo train --method clo --lang sw --model default --data demo --max-steps 2 --out runs/smoke
    python -m clo train --preset demo --method clo --lang sw --data demo
    python -m clo train --config runs/smoke/config.yaml
    python -m clo generate --model runs/smoke "Habari yako?"
    python -m clo runs
    python -m clo runs resume RUN_ID
    python -m clo bench --quick

Errors in the input (unknown language, missing model, malformed data, bad settings) print one clear line on
stderr and exit with status 2; nothing already saved is touched.
"""
from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import re
import sys
import time
import traceback
import warnings
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from clo.bench import suite as bench_suite
from clo.cli.data import DATA_COMMANDS, check_out
from clo.cli.export import EXPORT_COMMANDS
from clo.cli.pair import PAIR_COMMANDS
from clo.cli.signals import aborted, say, stop_on_signals
from clo.cli.workshop import WORKSHOP_COMMANDS
from clo.core.languages import LANGUAGES, PAPER_TARGETS, UnknownLanguageError, get_language
from clo.core.spec import METHODS, SCOPES, SpecError, TrainSpec, add_spec_arguments, spec_from_sources
from clo.data.formats import DataError, load_prompts, write_jsonl
from clo.data.translate import TranslationError
from clo.evaluation import lcb
from clo.evaluation.evaluate import evaluate, load_responses, score_answers
from clo.evaluation.generate import GenerationOptions, generate
from clo.evaluation.langid import detect
from clo.evaluation.metrics import CLI_COLUMNS, METRICS
from clo.models.registry import ModelNotFoundError, list_models
from clo.runs.catalog import list_runs
from clo.runs.rundir import RunDir, RunError, default_runs_root, new_run_id, resolve_run
from clo.training.run import describe_truncation, resume_training, run_training
from clo.workshop.arena import ArenaError

__all__ = ["main", "build_parser", "COMMANDS"]

# OS errors about a path the user chose (exit status 2): missing, in the way, not allowed, read-only
_PATH_ERRNOS = {errno.ENOENT, errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EROFS}
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


def _user_errors():
    from clo.evaluation.endpoint import EndpointError
    from clo.workshop.judge import JudgeError  # the judge brings the openai client: imported only when needed

    return (DataError, UnknownLanguageError, ModelNotFoundError, RunError, SpecError, TranslationError, ArenaError,
            JudgeError, EndpointError)


class RunFailure(Exception):
    """An error while a run trains, with its run folder: the error line then says what the folder kept."""

    def __init__(self, cause: BaseException, run_dir: str | Path):
        super().__init__(str(cause))
        self.cause, self.run_dir = cause, Path(run_dir)


def _errno_of(e: BaseException) -> int | None:
    """The OS error behind ``e``; Rust libraries (safetensors, tokenizers) only write it as "(os error N)"."""
    if isinstance(e, OSError) and e.errno:
        return e.errno
    found = re.search(r"os error (\d+)", str(e))
    return int(found.group(1)) if found else None


def _kept(run_dir: Path) -> str:
    """What a failed run's folder still holds, and whether its end could be recorded."""
    run = RunDir(run_dir)
    if not run.exists():
        return "nothing was written"
    status, n = run.status(), len(run.metrics())
    kept = [f"metrics.jsonl ({n} step{'s' if n != 1 else ''})" if n else "no metrics"]
    kept.append(f"the model of step {status.get('saved_step') or status.get('step')}" if run.has_model()
                else "no model")
    if run.checkpoint_step():
        kept.append(f"the checkpoint of step {run.checkpoint_step()}")
    state, shown = status.get("state"), run.status(shown=True).get("state")
    if state in ("failed", "stopped", "interrupted"):
        end = f"the run is marked {state}"
    elif state == "running" and status.get("pid") == os.getpid():  # this process trained it, and has ended that
        end = "its end could not be recorded (the next `python -m clo runs` marks it interrupted)"
    elif shown == "interrupted":
        end = "it could not be marked interrupted (`python -m clo runs` shows it so, and records it once it can)"
    else:
        end = f"it is {shown}"
    return f"kept {', '.join(kept)}; {end}"


def _error_line(e: BaseException, run_dir: Path | None = None) -> tuple[str, int]:
    """One line for any failure, with what to do, and the exit status: 2 when the input or a path the user
    chose is the problem, 1 otherwise (a full disk, an I/O error, a bug)."""
    code = _errno_of(e)
    path = getattr(e, "filename", None) or run_dir
    what = getattr(e, "strerror", None) or " ".join(str(e).split())
    where = f"{path}: " if path else ""
    kept = f" In {run_dir}: {_kept(run_dir)}." if run_dir is not None else ""
    if code in _NO_SPACE:
        go_on = " Free some space, or choose a folder on a disk with room."
        if run_dir is not None and RunDir(run_dir).exists():
            go_on = (f" Free some space, then resume it with `python -m clo runs resume {run_dir}`"
                     if RunDir(run_dir).checkpoint_step() else
                     f" Free some space (or choose an --out on a disk with room), then train it again with "
                     f"`python -m clo train --config {run_dir / 'config.yaml'}`") + "."
        return f"{where}{what}.{kept}{go_on}", 1
    if code in _PATH_ERRNOS:
        hint = {errno.EROFS: " choose a folder that can be written to (--out, --root, CLO_RUNS, CLO_HOME).",
                errno.EACCES: " check its permissions, or choose another folder.",
                errno.EPERM: " check its permissions, or choose another folder."}.get(code, "")
        return f"{where}{what}{';' if hint else ''}{hint}{kept}", 2
    if code is not None:
        return f"{where}{what} (an I/O error: check the disk).{kept}", 1
    text = " ".join(f"{type(e).__name__}: {e}".split())
    return f"{text[:800]}.{kept} Run with -v for the traceback.", 1


# -- langs ------------------------------------------------------------------------------------------


def _langs_parser(sub):
    p = sub.add_parser("langs", help="list the languages CLO Studio knows",
                       description="Languages in the registry with their codes for each tool.")
    p.add_argument("--json", action="store_true", help="print JSON")
    return p


def cmd_langs(args) -> int:
    if args.json:
        print(json.dumps([asdict(l) for l in LANGUAGES.values()], ensure_ascii=False, indent=2))
        return 0
    print(f"{'code':5} {'iso3':5} {'name':12} {'native':18} {'m2m100':7} {'nllb':10} {'script':6} paper")
    for l in LANGUAGES.values():
        print(f"{l.code:5} {l.iso3:5} {l.name:12} {l.native:18} {l.m2m100 or '-':7} {l.nllb or '-':10} "
              f"{l.script:6} {'yes' if l.code in PAPER_TARGETS else ''}")
    return 0


# -- models -----------------------------------------------------------------------------------------


def _models_parser(sub):
    p = sub.add_parser("models", help="list models available offline",
                       description="Bundled models and models found in the local Hugging Face cache. "
                                   "Nothing is downloaded.")
    p.add_argument("--json", action="store_true", help="print JSON")
    return p


def cmd_models(args) -> int:
    rows = list_models()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        state = ("ready (cached)" if r["cached"]
                 else "installed" if r["available"] else f"not installed: {r['install']}")
        alias = f" (alias: {', '.join(r['aliases'])})" if r["aliases"] else ""
        notice = f"\n    {r['notice']}" if r["notice"] else ""
        print(f"{r['name']}{alias}\n    {r['title']} — {r['kind']}, {state}" + notice)
    return 0


# -- train ------------------------------------------------------------------------------------------


def _train_parser(sub):
    p = sub.add_parser(
        "train", help="train a CLO or SFT run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train one run into a run directory (config.yaml, status.json, metrics.jsonl, model/).\n"
                    "Settings come from, in increasing priority: defaults, --preset, --config, flags; each flag\n"
                    "is also a key of config.yaml and of presets (--batch-size: batch_size).\n\n"
                    "methods: " + "; ".join(f"{k}: {v}" for k, v in METHODS.items()) + "\n"
                    "scopes:  " + "; ".join(f"{k}: {v}" for k, v in SCOPES.items()),
    )
    p.add_argument("--preset", help="a preset: a settings file in presets/ by name (demo, paper, ...)")
    p.add_argument("--config", help="a config.yaml (e.g. from an earlier run) to reproduce")
    p.add_argument("--out", help="run directory to create (default runs/<time>-<method>-<lang>)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_spec_arguments(p)
    return p


def spec_from_args(args) -> TrainSpec:
    """defaults ← preset ← config ← flags, validated."""
    return spec_from_sources(args.preset, args.config, args)


class TrainProgress:
    """What ``clo train`` and ``clo runs resume`` print while a run trains: loading messages, the reference
    pass, and a progress bar with loss, margin and accuracy (an events sink for
    :func:`clo.training.run.run_training`)."""

    def __init__(self, resumed: str | None = None):
        self.bar = None
        self.resumed = resumed  # "Resuming <run> from step N" once training begins

    def __call__(self, e: dict) -> None:
        phase = e.get("phase")
        if phase == "loading" and e.get("message"):
            print(e["message"], file=sys.stderr)
        elif phase == "loading" and "model" in e and self.resumed:  # the checks passed: training starts
            print(self.resumed, file=sys.stderr)
        elif phase == "loading" and "truncation" in e:
            print(describe_truncation(e["truncation"]), file=sys.stderr)
        elif phase == "reference" and "rows" in e:
            print(f"Reference pass over {e['rows']} pairs (cached for later runs)…", file=sys.stderr)
        elif phase == "training" and "max_steps" in e:
            self.close()
            self.bar = tqdm(total=e["max_steps"], desc=e.get("stage", "train"), unit="step", file=sys.stderr)
        elif phase == "training" and "metrics" in e and self.bar is not None:
            m = e["metrics"]
            self.bar.update(m["step"] - self.bar.n)
            self.bar.set_postfix({k: f"{m[k]:.3g}" for k in ("loss", "margin", "accuracy") if k in m})

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_train(args) -> int:
    spec = spec_from_args(args)
    out = Path(args.out) if args.out else default_runs_root() / new_run_id(spec.method, spec.lang)
    # under `accelerate launch` / torchrun every rank runs this command; only rank 0 speaks (one JSON document)
    speaks = os.environ.get("RANK", "0") == "0"
    if speaks:
        what = f"{spec.method} ({spec.objective})" if spec.method == "clo" else spec.method  # SFT has no objective
        print(f"Training {what} on {spec.lang} with {spec.model} (scope {spec.scope}) → {out}", file=sys.stderr)
    progress = TrainProgress()
    with stop_on_signals() as stop:
        try:
            result = run_training(spec, out, events=progress, stop_event=stop)
        except KeyboardInterrupt as e:
            return aborted(e, out)
        except _user_errors():
            raise
        except Exception as e:
            raise RunFailure(e, out) from e
        finally:
            progress.close()
    summary = {"state": result.state, "run_dir": str(result.run_dir), "steps": result.steps,
               "seconds": round(result.seconds, 1), "ref_cache_hit": result.ref_cache_hit,
               "trainable_params": result.trainable, "total_params": result.total_params, "final": result.final}
    if not speaks:
        return 0
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        f = result.final
        print(f"{result.state}: {result.steps} steps in {result.seconds:.1f} s → {result.run_dir}")
        if f:
            keys = ("loss", "sft_loss", "cl_loss", "margin", "accuracy")
            print("last step: " + ", ".join(f"{k}={f[k]:.4g}" for k in keys if k in f))
        print(f"trainable parameters: {result.trainable:,} of {result.total_params:,}")
    return 0


# -- generate ---------------------------------------------------------------------------------------


def _generate_parser(sub):
    p = sub.add_parser("generate", help="answer a prompt with a model or a run",
                       description="Answer one or more prompts (greedy by default).")
    p.add_argument("prompt", nargs="+", help="prompt text (several prompts are batched)")
    p.add_argument("--model", default="default", help="'default', a run directory, a folder or a cached HF id")
    p.add_argument("--max-new-tokens", type=int, default=128, dest="max_new_tokens")
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-p", type=float, default=0.9, dest="top_p")
    p.add_argument("--repetition-penalty", type=float, default=1.2, dest="repetition_penalty")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--detect", action="store_true", help="also print the detected language of each answer")
    p.add_argument("--json", action="store_true")
    return p


def cmd_generate(args) -> int:
    opts = GenerationOptions(max_new_tokens=args.max_new_tokens, do_sample=args.sample,
                             temperature=args.temperature, top_p=args.top_p,
                             repetition_penalty=args.repetition_penalty, seed=args.seed)
    answers = generate(args.model, args.prompt, opts)
    rows = [{"prompt": p, "answer": a} for p, a in zip(args.prompt, answers)]
    if args.detect:
        for r in rows:
            d = detect(r["answer"])
            r["lang"], r["confidence"] = d.lang, round(d.confidence, 3)
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        for r in rows:
            if len(rows) > 1:
                print(f"> {r['prompt']}")
            print(r["answer"] + (f"\n[{r['lang']} {r['confidence']}]" if "lang" in r else ""))
    return 0


# -- eval -------------------------------------------------------------------------------------------


def _eval_parser(sub):
    p = sub.add_parser("eval", help="score whether models answer in the prompt's language",
                       description="Generate answers to held-out prompts and report LPR, clean LPR, echo/loop rates, "
                                   "WPR and chrF++ per model and language. A run directory gets eval.json.")
    p.add_argument("--model", action=_InOrder, help="model or run directory (repeatable)")
    p.add_argument("--endpoint", action=_InOrder, metavar="URL",
                   help="an OpenAI-compatible chat endpoint (http://HOST:PORT/v1) whose model is scored like a local "
                        "one (repeatable, beside --model; key: $CLO_ENDPOINT_API_KEY)")
    p.add_argument("--endpoint-model", action="append", dest="endpoint_model", metavar="NAME",
                   help="the model's name at each --endpoint, in the same order")
    p.add_argument("--endpoint-timeout", type=float, default=120.0, dest="endpoint_timeout", metavar="SECONDS",
                   help="how long to wait for one answer from an endpoint (default: 120)")
    p.add_argument("--responses",
                   help="score existing answers instead: JSONL of {id, lang, prompt, response[, model]}")
    p.add_argument("--prompts", default="demo",
                   help="held-out prompts JSONL ({id, lang, prompt[, reference]}) or 'demo'")
    p.add_argument("--lang", action="append",
                   help="only these languages (repeatable, or comma-separated as a run's lang: sw,yo,en; default: "
                        "all in the file)")
    p.add_argument("--limit", type=int, help="first N prompts per language")
    p.add_argument("--max-new-tokens", type=int, default=128, dest="max_new_tokens")
    p.add_argument("--repetition-penalty", type=float, default=1.2, dest="repetition_penalty")
    p.add_argument("--batch-size", type=int, default=16, dest="batch_size",
                   help="prompts generated together (an endpoint: requests sent at once)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--out", help="write every generated response (JSONL) here")
    p.add_argument("--judge-url", dest="judge_url", help="an OpenAI-compatible endpoint: pairwise win rate of each "
                   "model against the first, judged twice with positions swapped (key: $CLO_JUDGE_API_KEY)")
    p.add_argument("--judge-model", dest="judge_model", help="the judge's model name at --judge-url")
    p.add_argument("--scoring", choices=("clo", "lcb"), default="clo",
                   help="clo (default): this project's scoring; lcb: the Language Confusion Benchmark's own rules "
                        "(fastText lid.176 lite, LPR, WPR, LCPR; docs/evaluation.md, \"LCB scoring\")")
    return p


class _InOrder(argparse.Action):
    """``--model`` and ``--endpoint`` in the order given (the first is the judge's baseline): each value also goes
    to ``args.sources`` as ``(option, value)``."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or []), values])
        sources = getattr(namespace, "sources", None) or []
        namespace.sources = [*sources, (self.dest, values)]


def _eval_sources(args) -> list:
    """The models to evaluate, in the order given: names / run folders, and endpoints."""
    from clo.evaluation.endpoint import Endpoint

    urls, names = args.endpoint or [], args.endpoint_model or []
    if len(urls) != len(names):
        raise DataError(f"give one --endpoint-model per --endpoint ({len(urls)} --endpoint, {len(names)} "
                        "--endpoint-model), in the same order")
    names = iter(names)
    return [Endpoint(value, next(names), args.endpoint_timeout) if kind == "endpoint" else value
            for kind, value in getattr(args, "sources", None) or []]


def _partial_file(args) -> Path:
    """Where a partial evaluation's answers go: --out, else a new file in the current folder."""
    if args.out:
        return Path(args.out)
    return Path(f"clo-eval-partial-{time.strftime('%Y%m%d-%H%M%S')}.jsonl")


def cmd_eval(args) -> int:
    if args.lang:  # `--lang sw,yo --lang en` → sw, yo, en
        args.lang = [c.strip() for text in args.lang for c in text.split(",") if c.strip()]
    if args.out is not None:  # before any model loads: an evaluation can take a long time
        check_out(args.out)
    generating = bool(args.model or args.endpoint)
    if bool(args.responses) == generating:
        raise DataError("give --model / --endpoint (generate answers) or --responses FILE (score existing answers), "
                        "not both")
    if args.endpoint_model and not args.endpoint:
        raise DataError("--endpoint-model needs --endpoint URL (the server that has it)")
    sources = _eval_sources(args)
    args.first_model = _model_label(sources[0]) if sources else None
    if bool(args.judge_url) != bool(args.judge_model) or (args.judge_url and len(sources) < 2):
        raise DataError("the judge needs --judge-url, --judge-model and two or more --model / --endpoint "
                        "(the first is the baseline)")
    if args.responses:
        codes = {get_language(l).code for l in args.lang or []}
        rows = [r for r in load_responses(args.responses) if not codes or r["lang"] in codes]
        if args.scoring == "lcb":  # the project's scoring is not run: LCB's alone
            kept = [{k: r.get(k) for k in ("model", "id", "lang", "prompt", "response", "reference")} for r in rows]
            return _print_eval(args, lcb.rescore({"responses": kept, "options": {
                "source": "responses", "n_prompts": len(rows), "langs": sorted({r["lang"] for r in rows})}}))
        return _print_eval(args, score_answers(rows))
    prompts = load_prompts(args.prompts, args.lang, per_lang=args.limit)
    if not prompts:
        raise DataError(f"no prompts for {', '.join(args.lang or [])}", args.prompts)
    opts = GenerationOptions(max_new_tokens=args.max_new_tokens, repetition_penalty=args.repetition_penalty,
                             batch_size=args.batch_size)
    bars = {}

    def progress(model, done, total):
        bar = bars.get(model) or bars.setdefault(
            model, tqdm(total=total, desc=model[-30:], unit="prompt", file=sys.stderr))
        bar.update(done - bar.n)

    result = evaluate(sources, prompts, options=opts, progress=progress)
    for bar in bars.values():
        bar.close()
    if partial := result.get("partial"):
        return _print_partial(args, result, partial)
    return _print_eval(args, lcb.rescore(result) if args.scoring == "lcb" else result)


def _model_label(source) -> str:
    return source if isinstance(source, str) else source.name


def _print_partial(args, result: dict, partial: dict) -> int:
    """An endpoint failed part-way: the answers received are written (--out, else a new file here) and scored,
    marked partial; one message says what failed and what to do. Exit status 1."""
    path = _partial_file(args)
    write_jsonl(path, result["responses"])
    args.out = None  # written above
    args.judge_url = args.judge_model = None  # no verdicts over an incomplete set
    if result["models"]:
        _print_eval(args, lcb.rescore(result) if args.scoring == "lcb" else result)
    skipped = f"; not evaluated: {', '.join(partial['not_evaluated'])}" if partial["not_evaluated"] else ""
    say(f"error: {partial['error']}. The evaluation is partial: {partial['answered']} of {partial['prompts']} "
        f"answers from {partial['model']}{skipped}. Every answer received is in {path} (rows marked partial; "
        f"score them again with: clo eval --responses {path}).")
    return 1


def _print_eval(args, result: dict) -> int:
    if args.out:
        write_jsonl(args.out, result["responses"])
    judged = None
    if args.judge_url or args.judge_model:
        from clo.workshop.judge import Judge, judge_responses  # the openai client, only for a judged evaluation

        judged = judge_responses(result["responses"], args.first_model, Judge(args.judge_url, args.judge_model))
    if args.json:
        lcb_keys = {k: result[k] for k in ("overall", "lcb") if k in result}
        print(json.dumps({"scoring": args.scoring, "models": result["models"], "options": result["options"],
                          **lcb_keys, **({"judge": judged} if judged else {}),
                          **({"partial": result["partial"]} if result.get("partial") else {})}, ensure_ascii=False))
        return 0
    for model, w in (judged or {}).get("models", {}).items():
        ci = w["win_rate_ci"]
        print(f"judge {judged['judge']}: {model} vs {w['baseline']}: win rate {w['win_rate']:.2f} "
              f"[{ci[0]:.2f}, {ci[1]:.2f}] over {w['n']} prompts "
              f"({w['wins']} won, {w['ties']} tied, {w['losses']} lost)")
    if args.scoring == "lcb":
        return _print_lcb(result)
    columns = [METRICS[name].cli for name in CLI_COLUMNS]  # (header, width)
    print(" ".join([f"{'model':32} {'lang':4}", *(f"{head:>{width}}" for head, width in columns)]))

    def fmt(v) -> str:
        return "-" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)

    for model, langs in result["models"].items():
        for lang, m in langs.items():
            print(" ".join([f"{model[-32:]:32} {lang:4}",
                            *(f"{fmt(m[name]):>{width}}" for name, (_, width) in zip(CLI_COLUMNS, columns))]))
    print("n is small: see the 95% intervals with --json.", file=sys.stderr)
    return 0


def _print_lcb(result: dict) -> int:
    """The table of ``--scoring lcb``: per model and language, then LCB's average over the languages."""
    def fmt(v) -> str:
        return "-" if v is None else f"{v:.3f}"

    print(f"{'model':32} {'lang':4} {'n':>4} {'skip':>4} {'LPR':>6} {'WPR':>6} {'LCPR':>6} {'acc':>6}")
    for model, langs in result["models"].items():
        for lang, m in [*langs.items(), ("all", result["overall"][model])]:
            print(f"{model[-32:]:32} {lang:4} {m['n']:>4} {m.get('skipped', ''):>4} {fmt(m['lpr']):>6} "
                  f"{fmt(m['wpr']):>6} {fmt(m['lcpr']):>6} {fmt(m['acc']):>6}")
    info = result["lcb"]
    print(f"LCB scoring with {Path(info['lid_model']).name}{' (the lite model)' if info['lid_model_lite'] else ''} and "
          f"{info['english_words']}; intervals with --json.", file=sys.stderr)
    return 0


# -- runs -------------------------------------------------------------------------------------------


def _runs_parser(sub):
    p = sub.add_parser(
        "runs", help="list runs with their status; resume an interrupted run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="List run directories, newest first. Runs whose process died (killed, crashed, machine "
                    "restarted) are marked interrupted, with the last sign of life (lost_at) and when that was "
                    "found (interrupted_at).\n\n"
                    "    python -m clo runs [--root R] [--json]\n"
                    "    python -m clo runs resume RUN_ID_OR_PATH [--root R] [--json]\n\n"
                    "resume continues a run started with --save-steps N from its last checkpoint (weights, "
                    "optimizer, learning-rate schedule, data order); a run without one exits with status 2 and "
                    "is left as it was.")
    p.add_argument("--root", help="runs folder (default ./runs or $CLO_RUNS)")
    p.add_argument("--json", action="store_true", help="print JSON")
    actions = p.add_subparsers(dest="runs_action", metavar="ACTION")
    listing = actions.add_parser("list", help="list runs (the default)")
    resume = actions.add_parser("resume", help="continue an interrupted run from its last checkpoint",
                                description="Continue an interrupted, failed or stopped run in its own directory "
                                            "from its checkpoint (kept when it was started with --save-steps). "
                                            "Ctrl-C stops after the current step, as in `clo train`.")
    resume.add_argument("run", help="run id (under --root) or run directory")
    for q in (listing, resume):  # also accepted after the action; SUPPRESS keeps a value given before it
        q.add_argument("--root", default=argparse.SUPPRESS, help="runs folder (default ./runs or $CLO_RUNS)")
        q.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    return p


def _cmd_runs_resume(args) -> int:
    run = resolve_run(args.run, args.root)
    progress = TrainProgress(resumed=f"Resuming {run.id} → {run.path}")
    with stop_on_signals() as stop:
        try:
            result = resume_training(run.path, events=progress, stop_event=stop)
        except KeyboardInterrupt as e:
            return aborted(e, run.path)
        except _user_errors():
            raise
        except Exception as e:
            raise RunFailure(e, run.path) from e
        finally:
            progress.close()
    status = run.status()
    summary = {"state": result.state, "run_dir": str(result.run_dir), "steps": result.steps,
               "resumed_from_step": status.get("resumed_from_step"), "rows_replaced": status.get("rows_replaced"),
               "seconds": round(result.seconds, 1), "ref_cache_hit": result.ref_cache_hit, "final": result.final}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{result.state}: resumed at step {summary['resumed_from_step']}, now {result.steps} steps "
              f"→ {result.run_dir}")
    return 0


def cmd_runs(args) -> int:
    if getattr(args, "runs_action", None) == "resume":
        return _cmd_runs_resume(args)
    rows = list_runs(args.root)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no runs")
    for r in rows:
        loss = f"{r['loss']:.4g}" if isinstance(r.get("loss"), (int, float)) else "-"
        resumable = r.get("resumable") and not r.get("resume_queued")
        method = (r["method"] or "-") + (f"/{r['objective']}" if r.get("objective") not in (None, "clo") else "")
        print(f"{r['id']:40} {r['state']:11} {method:8} {r['lang'] or '-':3} step {r['step'] or 0:>5}"
              f" loss {loss:>8}" + (f"  [resumable from step {r['checkpoint_step']}: clo runs resume {r['id']}]"
                                    if resumable else "") + (f"  {r['error'][:80]}" if r.get("error") else ""))
    return 0


COMMANDS = {
    "train": (_train_parser, cmd_train),
    "generate": (_generate_parser, cmd_generate),
    "models": (_models_parser, cmd_models),
    "langs": (_langs_parser, cmd_langs),
    "runs": (_runs_parser, cmd_runs),
    "eval": (_eval_parser, cmd_eval),
}


def _bench_parser(sub):
    return bench_suite.bench_parser(sub)


def cmd_bench(args) -> int:
    return bench_suite.cmd_bench(args)


def _all_commands() -> dict:
    return {**COMMANDS, **DATA_COMMANDS, **WORKSHOP_COMMANDS, **PAIR_COMMANDS, **EXPORT_COMMANDS,
            "bench": (_bench_parser, cmd_bench)}


def build_parser() -> argparse.ArgumentParser:
    prog = "clo" if Path(sys.argv[0]).name == "clo" else "python -m clo"  # the console script, or the module
    parser = argparse.ArgumentParser(prog=prog, description="CLO Studio: Cross-Lingual Optimization.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show library warnings and debug output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for make, _ in _all_commands().values():
        make(sub)
    return parser


def _quiet_libraries(verbose: bool) -> None:
    if verbose:
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" bars; our own bars go to stderr
    except ImportError:
        pass


def _stdout_to_devnull() -> None:
    """After the reader of stdout went away (``clo runs --json | head -1``): send what is still buffered to
    /dev/null, so that Python's flush at exit does not raise BrokenPipeError a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (captured in tests): nothing to redirect
        pass


def main(argv=None) -> int:
    """Run one command; returns its exit status. A closed stdout (the output piped into ``head``) ends the
    command quietly with status 0, without a traceback (Python's recipe for SIGPIPE)."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # a pipe closed early shows here, while it can still be caught
        return code
    except BrokenPipeError:
        _stdout_to_devnull()
        return 0
    except SystemExit:  # argparse's --help and usage errors end here; their output may meet a closed pipe too
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _stdout_to_devnull()
        raise


def _main(argv=None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a hub at run time
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_libraries(args.verbose)
    _, run = _all_commands()[args.command]
    try:
        return run(args)
    except _user_errors() as e:
        if args.verbose:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        raise  # the reader of stdout went away: main() ends quietly
    except KeyboardInterrupt:
        say("error: interrupted (Ctrl-C); what was already written is kept.")
        return 130
    except Exception as e:  # never a traceback (-v shows it): one line with what to do
        if args.verbose:
            traceback.print_exc()
        line, code = _error_line(e.cause, e.run_dir) if isinstance(e, RunFailure) else _error_line(e)
        say(f"error: {line}")
        return code


if __name__ == "__main__":
    sys.exit(main())
