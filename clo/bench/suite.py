"""The benchmark behind ``python -m clo bench`` (a thin command in clo/cli/main.py): CLO against TRL's own
DPOTrainer (and SFT) on the same model, data, batch and length, in one process, plus loading, batched generation
and language-detection speed.

Every figure is measured here; the printed ratios compare rows measured in the same process on the same data:

- ``trl_dpo``: TRL's ``DPOTrainer`` as a TRL user would run it: sigmoid loss, same trainable scope, reference
  model copy scoring every batch (TRL's default, ``precompute_ref_log_probs=False``).
- ``trl_dpo_precomputed``: the same with ``precompute_ref_log_probs=True``, TRL's best single-process setting: no
  reference copy in memory, one reference pass over the data before training, charged per pair like CLO's. The
  fair anchor: ``ratios`` has CLO against both TRL rows (``clo_vs_trl_dpo_*``, ``clo_vs_trl_dpo_precomputed_*``).
- ``clo``: ``clo train --method clo`` (``run_training``), first run: reference log-probs computed in one
  pass before training and cached on disk; the pass is charged to CLO per pair.
- ``clo_cached``: the same run again: the cache is hit and no reference forward pass runs at all.
- ``sft``: ``clo train --method sft`` (TRL's SFTTrainer on the English and target pairs of the same samples).

Per row: seconds per step (median after one warm-up step), seconds per preference pair, tokens per second
(non-padding tokens the step processed), peak memory (process RSS on CPU, sampled every 20 ms; the rise above
the level before the phase is reported too; ``torch.cuda.max_memory_allocated`` on a GPU) and achieved model
FLOP/s against the machine's peak (MFU). Model FLOPs per token follow the usual convention (PaLM's MFU):
2·N forward + 2·N activation backward + 2·N_trainable weight backward, + 2·N for the reference forward where
it runs (TRL's row: in every step; CLO's first run: in its reference pass; never on a cache hit), N = parameters
including the LM head (attention-score FLOPs left out: small at these lengths; clo/bench/measure.py). The same
convention for every row, so FLOP/s ratios are the inverse time ratios per token.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from clo.bench.measure import (
    StepClock,
    Timer,
    flop_params,
    flops_per_token,
    measured_peak_flops,
    param_counts,
    peak_memory,
    release_memory,
    timed,
)

# --quick: small enough for a 2-core CPU in a few minutes; full: the demo preset's batch and length.
QUICK = dict(batch_size=2, max_length=128, steps=3, gen_prompts=40, gen_tokens=24)
FULL = dict(batch_size=8, max_length=160, steps=3, gen_prompts=40, gen_tokens=64)

TRAINER_ROWS = ("trl_dpo", "trl_dpo_precomputed", "clo", "clo_cached", "sft")


@dataclass
class Row:
    name: str
    what: str
    step_s: float
    pairs_per_step: int
    s_per_pair: float
    tokens_per_s: float
    peak_gb: float
    rise_gb: float
    flops_per_s: float
    mfu: float
    ref_pass_s: float = 0.0
    ref_s_per_pair: float = 0.0
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------
# The phases
# ---------------------------------------------------------------------------------------------------


def _bench_data(model: str, lang: str, n_samples: int, tmp: Path) -> Path:
    from clo.data.formats import load_crosslingual, write_jsonl

    records = load_crosslingual("demo", lang)
    if len(records) < n_samples:
        raise ValueError(f"the bundled {lang} set has {len(records)} samples, the bench needs {n_samples}")
    return write_jsonl(tmp / f"bench-{lang}.jsonl", records[:n_samples])


def bench_trl_dpo(data: Path, device: str, peak: float, spec_kw: dict, precompute: bool = False) -> Row:
    """TRL's DPOTrainer. ``precompute=False``: the defaults a TRL user gets (a reference model copy scores every
    batch inside the step). ``precompute=True``: TRL's best single-process setting
    (``precompute_ref_log_probs=True``): no reference copy, one reference pass over the data before training —
    timed and charged per pair, as CLO's first run is charged for its own pass."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from clo.core.spec import TrainSpec
    from clo.data.formats import load_crosslingual
    from clo.data.pairs import build_pairs, to_conversational
    from clo.models.load import load_model
    from clo.training.run import common_args, quiet
    from clo.training.scope import apply_scope

    class TimedDPOTrainer(DPOTrainer):  # TRL's trainer unchanged; its reference pass is only timed
        ref_pass_s = 0.0

        def _precompute_ref_logps(self, dataset, name, batch_size):
            with Timer() as t:
                result = super()._precompute_ref_logps(dataset, name, batch_size)
            self.ref_pass_s += t.seconds
            return result

    spec = TrainSpec(**spec_kw)
    clock = StepClock()
    tmp = Path(tempfile.mkdtemp(prefix="clo-bench-trl-"))
    with peak_memory(device) as mem:
        loaded = load_model(spec.model, device=device, dtype="float32")
        apply_scope(loaded.model, spec)
        n, n_tr = param_counts(loaded.model)
        pairs = [to_conversational(p) for p in build_pairs(load_crosslingual(str(data), spec.lang))]
        # the same reference batch as CLO's pass (build_clo_trainer): 2 × samples per step
        args = DPOConfig(**common_args(spec, tmp, 2 * spec.batch_size, device), beta=spec.beta,
                         loss_type=["sigmoid"], precompute_ref_log_probs=precompute,
                         precompute_ref_batch_size=2 * spec.batch_size)
        trainer = TimedDPOTrainer(model=loaded.model, args=args, train_dataset=Dataset.from_list(pairs),
                                  processing_class=loaded.tokenizer, callbacks=[clock.callback()])
        quiet(trainer)
        has_ref_copy = trainer.ref_model is not None
        trainer.train()
    step_s, tok = clock.summary()
    ref_s, n_pairs = trainer.ref_pass_s, len(pairs)
    del trainer, loaded
    shutil.rmtree(tmp, ignore_errors=True)
    pairs_per_step = 2 * spec.batch_size
    ref_per_pair = ref_s / n_pairs if precompute and n_pairs else 0.0
    s_per_pair = step_s / pairs_per_step + ref_per_pair
    flops = flops_per_token(n, n_tr, reference=True) * tok / (s_per_pair * pairs_per_step)
    if precompute:
        name, what = "trl_dpo_precomputed", ("TRL DPOTrainer (sigmoid), precompute_ref_log_probs=True: one "
                                             "reference pass before training, no reference copy")
    else:
        name, what = "trl_dpo", "TRL DPOTrainer (sigmoid), reference model scored in every step"
    return Row(name, what, round(step_s, 3), pairs_per_step, round(s_per_pair, 4), round(tok / step_s, 1),
               mem["peak_gb"], mem["rise_gb"], flops, round(flops / peak, 4), round(ref_s, 2) if precompute else 0.0,
               round(ref_per_pair, 4), extra={"reference_model_copy": has_ref_copy, "pairs": n_pairs})


def bench_clo_run(name: str, data: Path, device: str, peak: float, spec_kw: dict, runs: Path) -> Row:
    """One real ``clo train`` run (CLO or SFT) through run_training, timed per logged step."""
    from transformers import AutoConfig

    from clo.core.spec import TrainSpec
    from clo.models.resolve import resolve_model
    from clo.training.run import run_training

    spec = TrainSpec(**spec_kw)
    clock = StepClock()
    with peak_memory(device) as mem:
        result = run_training(spec, runs / name, events=clock)
    step_s, tok = clock.summary()
    # parameter counts for the FLOP estimate: the run's own counts, the embedding size from the base config
    text = AutoConfig.from_pretrained(resolve_model(spec.model)[1]).get_text_config()
    n = flop_params(result.total_params, text.vocab_size * text.hidden_size, text.tie_word_embeddings)
    n_tr = result.trainable
    preference = spec.method == "clo"
    pairs_per_step = 2 * spec.batch_size  # SFT: the same samples, one sequence per direction
    ref_s = float(result.ref_pass_seconds or 0.0)
    n_pairs = 2 * spec.batch_size * result.steps
    ref_per_pair = ref_s / n_pairs if n_pairs else 0.0
    # the reference pass is part of CLO's cost: charge it per pair, like TRL's in-step reference forward
    s_per_pair = step_s / pairs_per_step + ref_per_pair
    # the reference forward counts only where it ran (a cache hit spends no FLOPs on it)
    per_token = flops_per_token(n, n_tr, reference=preference and not result.ref_cache_hit)
    flops = per_token * tok / (s_per_pair * pairs_per_step)
    what = {"clo": "clo train --method clo" + (" (reference cache hit: no reference pass)" if result.ref_cache_hit
                                               else " (first run: one reference pass, cached)"),
            "sft": "clo train --method sft --no-sft-logps (TRL SFTTrainer, English + target sequences)"}[spec.method]
    return Row(name, what, round(step_s, 3), pairs_per_step, round(s_per_pair, 4), round(tok / step_s, 1),
               mem["peak_gb"], mem["rise_gb"], flops, round(flops / peak, 4), round(ref_s, 2), round(ref_per_pair, 4),
               extra={"ref_cache_hit": result.ref_cache_hit, "steps": result.steps,
                      "trainable_params": result.trainable, "total_params": result.total_params})


def bench_loading(model: str) -> dict:
    """First load (a bundled GGUF is dequantized into the cache) against a load from the cached safetensors."""
    from clo.models.load import load_model
    from clo.models.registry import bundled_model

    first, _ = timed(load_model, model)
    cached, _ = timed(load_model, model)
    bundled = bundled_model(model) is not None
    return {"first_load_s": round(first, 2), "cached_load_s": round(cached, 3),
            "first_load_is": "GGUF dequantization + safetensors write" if bundled else "load from its folder",
            "speedup": round(first / cached, 1) if cached else None}


def bench_generation(model: str, lang: str, n_prompts: int, max_new_tokens: int) -> dict:
    """Held-out prompts answered in batches (the eval path) against one prompt at a time, greedy."""
    from clo.data.formats import load_prompts
    from clo.evaluation.generate import GenerationOptions, generate, get_model

    lm = get_model(model)
    prompts = [p["prompt"] for p in load_prompts("demo", [lang, "en"])][:n_prompts]
    opts = GenerationOptions(max_new_tokens=max_new_tokens)
    generate(lm, prompts[:1], opts)  # warm-up
    t_batched, batched = timed(generate, lm, prompts, opts)
    one = GenerationOptions(max_new_tokens=max_new_tokens, batch_size=1)
    t_single, single = timed(generate, lm, prompts, one)
    same = sum(a == b for a, b in zip(batched, single))
    return {"prompts": len(prompts), "max_new_tokens": max_new_tokens, "batch_size": opts.batch_size,
            "batched_s": round(t_batched, 2), "one_at_a_time_s": round(t_single, 2),
            "speedup": round(t_single / t_batched, 2), "identical_answers": f"{same}/{len(prompts)}"}


def bench_padding(model: str, lang: str, batch_size: int, max_length: int, seed: int = 42) -> dict:
    """Share of the computed tokens that are padding, over one epoch of the bundled set, for the shuffled
    order and for --group-by-length (PairSampler, the collator's right-padding to the longest sequence)."""
    from clo.data.formats import load_crosslingual
    from clo.data.pairs import build_pairs
    from clo.models.load import load_model
    from clo.training.sampling import PairSampler

    tok = load_model(model).tokenizer
    eos = tok.eos_token or ""

    def n_tokens(prompt: str, answer: str) -> int:
        p = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                    tokenize=True, return_dict=False)
        return min(len(p) + len(tok(answer + eos, add_special_tokens=False)["input_ids"]), max_length)

    pairs = build_pairs(load_crosslingual("demo", lang))
    seqs = [(n_tokens(p["prompt"], p["chosen"]), n_tokens(p["prompt"], p["rejected"])) for p in pairs]
    rows = [max(c, r) for c, r in seqs]

    def waste(order: list[int]) -> float:
        real = padded = 0
        for i in range(0, len(order), 2 * batch_size):
            batch = [seqs[j] for j in order[i : i + 2 * batch_size]]
            longest = max(max(c, r) for c, r in batch)
            real += sum(c + r for c, r in batch)
            padded += 2 * longest * len(batch)
        return 1 - real / padded

    plain = waste(list(PairSampler(len(pairs), seed)))
    grouped = waste(list(PairSampler(len(pairs), seed, rows, batch_size)))
    return {"samples": len(pairs) // 2, "batch_size": batch_size, "max_length": max_length,
            "padding_share_shuffled": round(plain, 3), "padding_share_grouped": round(grouped, 3),
            "computed_tokens_grouped_vs_shuffled": round((1 - plain) / (1 - grouped), 3)}


def bench_langid() -> dict:
    """Lines per second and accuracy of the combined detector on the bundled texts of every language."""
    from clo.evaluation import langid

    data = {lang: langid.validation_lines(lang) for lang in ("en", "sw", "zh", "de", "ko", "id", "yo")}
    for name in langid.DETECTORS:  # load every model outside the timing (the slow ones load lazily on first use)
        langid.run_detector(name, "warm up the detector")
    langid.detect("warm up the detector")
    total, right = 0, {}
    with Timer() as t:
        for lang, lines in data.items():
            right[lang] = round(sum(langid.detect(x).lang == lang for x in lines) / len(lines), 4)
            total += len(lines)
    return {"lines": total, "lines_per_s": round(total / t.seconds), "accuracy": right}


# ---------------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------------


def run_bench(model: str = "default", lang: str = "sw", scope: str = "attention", quick: bool = False,
              device: str = "auto", batch_size: int | None = None, max_length: int | None = None,
              steps: int | None = None, skip: tuple[str, ...] = (), log=print,
              rows: tuple[str, ...] | None = None, precision: str = "auto") -> dict:
    """Run every part and return the JSON-able result (also what ``--json`` prints). ``rows``: only these trainer
    rows (default: all of :data:`TRAINER_ROWS`). ``precision`` (clo/core/precision.py) is every trainer row's: TRL's
    rows compute in the same precision as CLO's, so that neither is compared at a weaker setting."""
    import torch
    from accelerate import PartialState

    wanted = tuple(rows) if rows else TRAINER_ROWS  # (`rows` is reused below for the results)
    cfg = dict(QUICK if quick else FULL)
    cfg.update({k: v for k, v in dict(batch_size=batch_size, max_length=max_length, steps=steps).items() if v})
    if device == "auto":
        device = str(PartialState().device)
    home = Path(tempfile.mkdtemp(prefix="clo-bench-home-"))
    old_home = os.environ.get("CLO_HOME")
    # an empty CLO_HOME: the first load really dequantizes, the first CLO run really computes its reference
    os.environ["CLO_HOME"] = str(home)
    try:
        from clo.core.precision import resolve_precision

        out: dict = {"config": {"model": model, "lang": lang, "scope": scope, "device": device, **cfg,
                                "precision": precision, "computes_in": resolve_precision(precision, device),
                                "pairs_per_step": 2 * cfg["batch_size"], "timed_steps": cfg["steps"],
                                "warmup_steps": 1},
                     "machine": {"platform": platform.platform(), "python": platform.python_version(),
                                 "torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
                                 "cpus": os.cpu_count()}}
        if device.startswith("cuda"):
            out["machine"]["gpu"] = torch.cuda.get_device_name()
        peak, how = measured_peak_flops(device, out["config"]["computes_in"])
        out["machine"].update(peak_flops=peak, peak_is=how)
        log(f"peak estimate: {peak / 1e9:.1f} GFLOP/s ({how})")
        if "load" not in skip:
            out["loading"] = bench_loading(model)
            log(f"loading: {out['loading']}")
        tmp = home / "bench"
        tmp.mkdir()
        n_samples = cfg["batch_size"] * (cfg["steps"] + 1)
        data = _bench_data(model, lang, n_samples, tmp)
        # skip_truncated off: every row trains the same samples, cut at max_length as TRL's own rows cut them
        # (skipping would leave CLO and SFT fewer samples, and fewer steps than the bench times)
        spec_kw = dict(model=model, data=str(data), lang=lang, scope=scope, batch_size=cfg["batch_size"],
                       max_length=cfg["max_length"], epochs=1, lr=5e-5, device=device, skip_truncated=False,
                       precision=precision)
        rows: dict[str, Row] = {}
        if "train" not in skip:
            phases = [("trl_dpo", lambda: bench_trl_dpo(data, device, peak, {**spec_kw, "method": "clo"})),
                      ("trl_dpo_precomputed", lambda: bench_trl_dpo(data, device, peak, {**spec_kw, "method": "clo"},
                                                                    precompute=True))]
            for name, method in (("clo", "clo"), ("clo_cached", "clo"), ("sft", "sft")):
                # SFT as TRL trains it: without the extra pass that scores the other-language answers (sft_logps)
                phases.append((name, lambda name=name, method=method: bench_clo_run(
                    name, data, device, peak, {**spec_kw, "method": method, "sft_logps": method != "sft"},
                    tmp / "runs")))
            unknown = set(wanted) - set(TRAINER_ROWS)
            if unknown:
                raise ValueError(f"unknown trainer rows {sorted(unknown)}; known: {list(TRAINER_ROWS)}")
            for name, phase in phases:
                if name not in wanted:
                    continue
                try:
                    rows[name] = phase()
                    log(_fmt(rows[name]))
                except (torch.cuda.OutOfMemoryError, MemoryError) as e:  # a measured result too: say so, go on
                    out.setdefault("errors", {})[name] = f"out of memory: {str(e)[:200]}"
                    log(f"{name}: out of memory")
                    release_memory()
                    if device.startswith("cuda"):
                        torch.cuda.empty_cache()
            out["rows"] = {k: {**asdict(v), "flops_per_s": float(f"{v.flops_per_s:.4g}")} for k, v in rows.items()}
            out["ratios"] = _ratios(rows)
        if "padding" not in skip:
            out["padding"] = bench_padding(model, lang, cfg["batch_size"] if not quick else FULL["batch_size"],
                                           cfg["max_length"] if not quick else FULL["max_length"])
            log(f"padding: {out['padding']}")
        if "generate" not in skip:
            out["generation"] = bench_generation(model, lang, cfg["gen_prompts"], cfg["gen_tokens"])
            log(f"generation: {out['generation']}")
        if "langid" not in skip:
            out["langid"] = bench_langid()
            log(f"langid: {out['langid']}")
        return out
    finally:
        if old_home is None:
            os.environ.pop("CLO_HOME", None)
        else:
            os.environ["CLO_HOME"] = old_home
        shutil.rmtree(home, ignore_errors=True)


def _ratios(rows: dict[str, Row]) -> dict:
    """CLO (and SFT) against TRL's DPOTrainer in both settings; a ratio whose rows did not both run is left out.
    ``…_vs_trl_dpo_*``: TRL's default (reference copy in every step); ``…_vs_trl_dpo_precomputed_*``: TRL at its
    best in one process (reference precomputed, its pass charged per pair like CLO's)."""
    out: dict = {}
    clo, cached, sft = rows.get("clo"), rows.get("clo_cached"), rows.get("sft")
    for key, base in (("trl_dpo", rows.get("trl_dpo")), ("trl_dpo_precomputed", rows.get("trl_dpo_precomputed"))):
        if base is None:
            continue
        if clo:
            out[f"clo_vs_{key}_time"] = round(clo.s_per_pair / base.s_per_pair, 3)
            out[f"clo_vs_{key}_memory"] = round(clo.peak_gb / base.peak_gb, 3)
            if base.rise_gb > 0:
                out[f"clo_vs_{key}_memory_rise"] = round(clo.rise_gb / base.rise_gb, 3)
        if cached:
            out[f"clo_cached_vs_{key}_time"] = round(cached.s_per_pair / base.s_per_pair, 3)
        if sft:
            out[f"sft_vs_{key}_time"] = round(sft.s_per_pair / base.s_per_pair, 3)
    if clo and cached:
        out["reference_cache_saving_s"] = round(clo.ref_pass_s - cached.ref_pass_s, 2)
    return out


def _fmt(r: Row) -> str:
    return (f"{r.name:19} step {r.step_s:7.2f} s  {r.s_per_pair:7.3f} s/pair  {r.tokens_per_s:8.0f} tok/s  "
            f"peak {r.peak_gb:6.2f} GB (+{r.rise_gb:.2f})  {r.flops_per_s / 1e9:7.1f} GFLOP/s  MFU {r.mfu:.1%}"
            + (f"  ref pass {r.ref_pass_s:.1f} s" if r.ref_pass_s else ""))


def print_report(res: dict) -> None:
    c = res["config"]
    print(f"\nCLO bench — model {c['model']}, {c['lang']}, scope {c['scope']}, {c['device']}, batch {c['batch_size']} "
          f"samples ({c['pairs_per_step']} pairs), max_length {c['max_length']}, {c['timed_steps']} timed steps")
    if "loading" in res:
        l = res["loading"]
        print(f"loading: first {l['first_load_s']} s ({l['first_load_is']}), cached {l['cached_load_s']} s")
    if "rows" in res:
        print(f"{'row':19} {'s/step':>8} {'s/pair':>8} {'tok/s':>8} {'peak GB':>8} {'rise GB':>8} {'GFLOP/s':>8} "
              f"{'MFU':>6}")
        for r in res["rows"].values():
            print(f"{r['name']:19} {r['step_s']:8.2f} {r['s_per_pair']:8.3f} {r['tokens_per_s']:8.0f} "
                  f"{r['peak_gb']:8.2f} {r['rise_gb']:8.2f} {r['flops_per_s'] / 1e9:8.1f} {r['mfu']:6.1%}")
        for k, v in res["ratios"].items():
            print(f"  {k}: {v}")
    if "padding" in res:
        p = res["padding"]
        print(f"padding over one epoch of the bundled set (batch {p['batch_size']}, ≤ {p['max_length']} tokens): "
              f"shuffled {p['padding_share_shuffled']:.1%}, --group-by-length {p['padding_share_grouped']:.1%} of "
              f"computed tokens (grouped computes {p['computed_tokens_grouped_vs_shuffled']}× the shuffled order's)")
    if "generation" in res:
        g = res["generation"]
        print(f"generation: {g['prompts']} prompts × {g['max_new_tokens']} tokens: batched {g['batched_s']} s, one at "
              f"a time {g['one_at_a_time_s']} s → {g['speedup']}× (identical answers {g['identical_answers']})")
    if "langid" in res:
        li = res["langid"]
        print(f"langid: {li['lines']} lines, {li['lines_per_s']} lines/s, accuracy "
              + ", ".join(f"{k} {v:.1%}" for k, v in li["accuracy"].items()))


def markdown_table(res: dict) -> str:
    """The trainer rows and ratios of a result as a Markdown table (what docs/performance.md shows)."""
    lines = ["| row | s/step | s/pair | tokens/s | peak GB | rise GB | GFLOP/s | MFU | reference pass |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in res.get("rows", {}).values():
        if r["ref_pass_s"]:
            ref = f"{r['ref_pass_s']:.1f} s ({r['ref_s_per_pair']:.3f} s/pair)"
        else:
            ref = ("cached: no pass" if r["extra"].get("ref_cache_hit")
                   else "inside each step" if r["name"] == "trl_dpo" else "–")
        lines.append(f"| `{r['name']}` | {r['step_s']:.2f} | {r['s_per_pair']:.3f} | {r['tokens_per_s']:.0f} | "
                     f"{r['peak_gb']:.2f} | {r['rise_gb']:.2f} | {r['flops_per_s'] / 1e9:.0f} | {r['mfu']:.0%} | "
                     f"{ref} |")
    for name in res.get("errors", {}):
        lines.append(f"| `{name}` | out of memory | | | | | | | |")
    ratios = ", ".join(f"`{k}` **{v}**" for k, v in res.get("ratios", {}).items())
    return "\n".join(lines) + ("\n\nRatios: " + ratios if ratios else "")


def bench_parser(sub):
    p = sub.add_parser("bench", help="time CLO against TRL's DPOTrainer and SFT in one process",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help=f"small case: {QUICK}")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--out", help="also write the JSON result to this file")
    p.add_argument("--markdown", metavar="JSON", help="print the table of an earlier --out file and exit")
    p.add_argument("--model", default="default")
    p.add_argument("--lang", default="sw")
    p.add_argument("--scope", default="attention", help="trainable scope of every trainer row")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, help="samples per step (2 preference pairs each)")
    p.add_argument("--max-length", type=int)
    p.add_argument("--steps", type=int, help="timed steps after one warm-up step")
    from clo.core.precision import PRECISIONS

    p.add_argument("--precision", default="auto", choices=list(PRECISIONS),
                   help="every trainer row's compute precision (auto: bf16 where the hardware has it natively)")
    p.add_argument("--skip", nargs="*", default=[], choices=["load", "train", "padding", "generate", "langid"])
    return p


def cmd_bench(args) -> int:
    if args.markdown:
        print(markdown_table(json.loads(Path(args.markdown).read_text(encoding="utf-8"))))
        return 0
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if args.json else (lambda m: print(m, flush=True))
    res = run_bench(model=args.model, lang=args.lang, scope=args.scope, quick=args.quick, device=args.device,
                    batch_size=args.batch_size, max_length=args.max_length, steps=args.steps,
                    skip=tuple(args.skip), log=log, precision=args.precision)
    text = json.dumps(res, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    if args.json:
        print(text)
    else:
        print_report(res)
    return 0
