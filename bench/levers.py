"""Measure each speed lever of a CLO run alone, against the plain path, in one process (docs/performance.md).

    python bench/levers.py [--model default] [--preset demo] [--lang sw] [--pairs 96] [--batches 4] [--repeats 2]
                           [--only LEVER] [--json FILE]

On the bundled demo set (both preference pairs of every sample, tokenized exactly as `clo train` does):

* **reference order** — the reference pass over ``--pairs`` pairs in dataset order (what TRL does) against
  longest first (what CLO does), batches of 16 pairs as in the demo preset; the log-probs must agree.
* **length buckets** — forward + backward of the answer-token log-probs of ``--batches`` training batches
  (8 samples = 16 pairs = 32 sequences, length-grouped as the demo preset draws them) in one forward against
  2 and 4 length buckets (``length_buckets``); log-probs and gradients must agree.
* **shared prompts** — the same training batches' forward + backward (2 length buckets in both arms), each
  pair's prompt computed twice (plain: TRL's two sequences a pair) or once (``share_prompts``: one sequence
  prompt + chosen + rejected, masked); log-probs and gradients must agree.
* **bf16** — the same training batches' forward + backward as the demo preset runs them (shared prompts, 2
  length buckets) in fp32 and under bf16 autocast (fp32 weights; ``precision``), then the reference pass's
  scoring of ``--pairs`` pairs (no gradient) both ways. bf16 does not give the same log-probs: the figures are
  the largest per-token and per-answer differences, the gradients' relative difference, and how far the
  per-pair log-ratio margins (what the loss sees) move. A CPU without native bf16 (AMX) makes this arm slower.
* **bf16 matmul** — one product of a layer's shape in fp32 and in bf16 autocast, no model (runs first with
  ``bf16`` and alone with ``--only bf16_matmul``): on a CPU without AMX, bf16 can be many times slower.
* **system prompt** — the share of every sequence's tokens that the template's default system prompt takes
  (SmolLM2's: 16 tokens), then the same training batches' forward + backward as the demo preset runs them
  (shared prompts, 2 length buckets) with it (``system_prompt: model``) and without it (``none``: the pairs
  tokenized again). Not an exact lever: the model reads another prompt, so the answers' log-probs move; the
  figures are how far, per answer and per pair margin, on the first ``--pairs`` pairs.

Every arm first runs one batch untimed (the first backward of a process pays one-time costs), then arms are
interleaved (A B A B …) so that a slow patch of the machine hits both; the ratio is the median of the arm's times
over the plain arm's (clo/bench/measure.py). Speed only: never run beside another CPU job when the figure matters.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from clo.bench.measure import best_time, interleaved, median_ratio


def build(model: str, lang: str, preset: str = "demo"):
    """A reference-free CLOTrainer on the demo pairs, batched as ``preset`` draws them (no reference pass at
    build), scope attention."""
    from clo.core.spec import TrainSpec, load_preset
    from clo.models.load import load_model
    from clo.training.scope import apply_scope

    # fp32: each lever's arms set their own precision (the bf16 arm enters autocast itself)
    spec = TrainSpec.from_dict({**load_preset(preset), "model": model, "lang": lang, "objective": "simpo",
                                "precision": "fp32"})
    loaded = load_model(model)
    apply_scope(loaded.model, spec)
    return rebuild(spec, loaded), loaded, spec


def rebuild(spec, loaded):
    """Another trainer on ``loaded`` (its scope already applied), tokenizing the demo pairs with the tokenizer
    as it is now."""
    from clo.data.formats import load_crosslingual
    from clo.runs.rundir import RunDir
    from clo.training.run import build_clo_trainer

    run = RunDir.create(Path(tempfile.mkdtemp(prefix="clo-levers-")) / "run", spec.to_dict())
    return build_clo_trainer(spec=spec, loaded=loaded, records=load_crosslingual("demo", spec.lang), run=run,
                             device="cpu")


def strip(batch: dict) -> dict:
    from clo.training.sampling import EXTRA_COLUMNS

    return {k: v for k, v in batch.items() if k not in EXTRA_COLUMNS}


def reference_order(trainer, n_pairs: int, repeats: int) -> dict:
    """Plain (dataset order) vs longest first, one-forward scoring in both arms."""
    import torch

    from clo.training.sampling import row_lengths

    ds = trainer.train_dataset.select(range(min(n_pairs, len(trainer.train_dataset))))
    size = row_lengths(ds)
    longest_first = sorted(range(len(ds)), key=lambda i: -size[i])
    trainer.args.length_buckets = 1
    trainer.model.eval()

    orders = {"plain": list(range(len(ds))), "longest_first": longest_first}
    rows = {arm: [ds[i] for i in order] for arm, order in orders.items()}

    def score(arm):
        out, positions = [], 0
        for i in range(0, len(rows[arm]), 16):
            batch = trainer.data_collator(rows[arm][i:i + 16])
            positions += batch["input_ids"].numel()
            c, r = trainer.compute_ref_log_probs(trainer.model, strip(batch))
            out.append(torch.stack([c, r], 1))
        logps = torch.cat(out)
        back = torch.empty_like(logps)
        back[torch.tensor(orders[arm])] = logps
        return positions, back

    times, last = interleaved(orders, repeats, score)
    (plain_positions, plain_logps), (sorted_positions, sorted_logps) = last["plain"], last["longest_first"]
    diff = (plain_logps - sorted_logps).abs().max().item()
    return {"pairs": len(ds), "plain_s": times["plain"], "longest_first_s": times["longest_first"],
            "time_ratio": median_ratio(times["longest_first"], times["plain"]),
            "positions_plain": plain_positions, "positions_longest_first": sorted_positions,
            "positions_ratio": round(sorted_positions / plain_positions, 3), "max_abs_logp_diff": diff}


def training_batches(trainer, n_batches: int) -> list[dict]:
    """The first ``n_batches`` training batches, as the demo preset draws them, without CLO's own columns."""
    trainer.model.train()
    batches = []
    for batch in trainer.get_train_dataloader():
        batches.append(strip(batch))
        if len(batches) == n_batches:
            break
    return batches


def interleaved_backward(trainer, batches, arms, repeats: int, configure, context=None) -> tuple[dict, dict]:
    """Forward + backward of the answer log-probs of ``batches`` under each arm (``configure(arm)`` sets the
    trainer up for it; ``context(arm)``, if given, is entered around each forward), arms interleaved over
    ``repeats``. Returns each arm's seconds per repeat, and its log-probs of every batch and gradients of the
    last batch's first trainable weights (from the last repeat)."""
    import contextlib

    params = [p for p in trainer.model.parameters() if p.requires_grad]

    def step(arm):
        configure(arm)
        logps, grads = [], None
        for batch in batches:
            trainer.model.zero_grad(set_to_none=True)
            with context(arm) if context else contextlib.nullcontext():
                lp = trainer._token_logps(trainer.model, batch)
            lp.sum().backward()
            logps.append(lp.detach())
            grads = [p.grad.clone() for p in params[:4]]  # the last batch's first attention weights
        return logps, grads

    for arm in arms:  # untimed warm-up of every arm: the first backward of a process pays one-time costs
        configure(arm)
        trainer.model.zero_grad(set_to_none=True)
        with context(arm) if context else contextlib.nullcontext():
            trainer._token_logps(trainer.model, batches[0]).sum().backward()
    return interleaved(arms, repeats, step)


def max_diffs(a, b) -> tuple[float, float]:
    """Largest |difference| of two arms' log-probs and of their gradients."""
    return (max((x - y).abs().max().item() for x, y in zip(a[0], b[0])),
            max((x - y).abs().max().item() for x, y in zip(a[1], b[1])))


def positions(batch: dict, shared: bool, buckets: int) -> int:
    """Positions the forwards of one training batch compute, padding included: its sequences (``shared``: one a
    pair, prompt + chosen + rejected) sorted by length into ``buckets`` forwards, each cut to its longest."""
    import torch

    real = batch["attention_mask"].bool()
    lengths = real.sum(1)
    if shared:
        n = len(lengths) // 2
        prompt = (real & (batch["completion_mask"] == 0)).sum(1)[:n]
        lengths = lengths[:n] + lengths[n:] - prompt
    ordered = lengths.sort().values
    return sum(len(part) * int(part.max()) for part in torch.tensor_split(ordered, min(buckets, len(ordered))))


def length_buckets(trainer, n_batches: int, repeats: int, arms=(1, 2, 4)) -> dict:
    """Forward + backward of the answer log-probs of the same training batches, in 1, 2 or 4 forwards."""
    batches = training_batches(trainer, n_batches)
    times, ref = interleaved_backward(trainer, batches, arms, repeats,
                                      lambda b: setattr(trainer.args, "length_buckets", b))
    out = {"batches": len(batches), "sequences_per_batch": int(batches[0]["input_ids"].shape[0]),
           "seconds": {str(b): v for b, v in times.items()}}
    for b in arms[1:]:
        out[f"time_ratio_{b}"] = median_ratio(times[b], times[1])
        out[f"max_abs_logp_diff_{b}"], out[f"max_abs_grad_diff_{b}"] = max_diffs(ref[1], ref[b])
    trainer.args.length_buckets = 2
    return out


def shared_prompts(trainer, n_batches: int, repeats: int, buckets: int = 2) -> dict:
    """Forward + backward of the same training batches, each pair's prompt computed twice (plain) or once
    (``share_prompts``), both in ``buckets`` length buckets (the default); log-probs and gradients must agree.
    Positions: what the forwards compute, padding included (each bucket cut to its longest sequence)."""
    batches = training_batches(trainer, n_batches)
    trainer.args.length_buckets = buckets
    times, ref = interleaved_backward(trainer, batches, (False, True), repeats,
                                      lambda shared: setattr(trainer.args, "share_prompts", shared))
    trainer.args.share_prompts = False
    plain_pos = sum(positions(b, False, buckets) for b in batches)
    shared_pos = sum(positions(b, True, buckets) for b in batches)
    logp_diff, grad_diff = max_diffs(ref[False], ref[True])
    return {"batches": len(batches), "buckets": buckets, "plain_s": times[False], "shared_s": times[True],
            "time_ratio": median_ratio(times[True], times[False]),
            "positions_plain": plain_pos, "positions_shared": shared_pos,
            "positions_ratio": round(shared_pos / plain_pos, 3),
            "max_abs_logp_diff": logp_diff, "max_abs_grad_diff": grad_diff}


def bf16_matmul(repeats: int = 5, shape: tuple = (2400, 576, 1536)) -> dict:
    """One matrix product of a SmolLM2 layer's shape (a batch's 2,400 tokens × hidden 576 → MLP 1536) in fp32 and
    under bf16 autocast, best of ``repeats``: whether this CPU makes bf16 pay at all (AMX) before any model runs."""
    import torch

    from clo.core.precision import native_bf16, precision_context

    m, k, n = shape
    a, b = torch.randn(m, k), torch.randn(k, n)

    def best(arm: str) -> float:
        with precision_context(arm, "cpu"):
            return best_time(lambda: a @ b, repeats)

    f32, b16 = best("fp32"), best("bf16")
    return {"shape": list(shape), "threads": torch.get_num_threads(), "native_bf16": native_bf16("cpu"),
            "fp32_ms": float(f"{f32 * 1e3:.4g}"), "bf16_ms": float(f"{b16 * 1e3:.4g}"),  # 4 significant digits: a
            "time_ratio": round(b16 / f32, 3) if f32 > 0 else None}  # tiny product may take microseconds


def bf16(trainer, n_batches: int, n_pairs: int, repeats: int, buckets: int = 2) -> dict:
    """fp32 against bf16 autocast: training forward + backward as the demo preset runs it, then reference
    scoring (no gradient), arms interleaved. Agreement is reported, not required: bf16 rounds."""
    import torch

    from clo.core.precision import precision_context

    batches = training_batches(trainer, n_batches)
    trainer.args.length_buckets, trainer.args.share_prompts = buckets, True
    ctx = lambda arm: precision_context("bf16" if arm == "bf16" else "fp32", "cpu")  # noqa: E731
    times, ref = interleaved_backward(trainer, batches, ("fp32", "bf16"), repeats, lambda arm: None, ctx)

    def answer_sums(arm):  # per answer: the sum the loss uses; per pair: chosen − rejected
        return torch.cat([lp.sum(1) for lp in ref[arm][0]])

    def margins(sums):
        n = len(sums) // 2
        return sums[:n] - sums[n:]

    token_diff = max((a - b).abs().max().item() for a, b in zip(ref["fp32"][0], ref["bf16"][0]))
    g32, g16 = torch.cat([g.flatten() for g in ref["fp32"][1]]), torch.cat([g.flatten() for g in ref["bf16"][1]])
    out = {"batches": len(batches), "buckets": buckets, "share_prompts": True,
           "train_fp32_s": times["fp32"], "train_bf16_s": times["bf16"],
           "train_time_ratio": median_ratio(times["bf16"], times["fp32"]),
           "max_abs_token_logp_diff": round(token_diff, 4),
           "max_abs_answer_logp_diff": round((answer_sums("fp32") - answer_sums("bf16")).abs().max().item(), 4),
           "mean_abs_answer_logp_diff": round((answer_sums("fp32") - answer_sums("bf16")).abs().mean().item(), 4),
           "max_abs_pair_margin_diff": round(
               (margins(answer_sums("fp32")) - margins(answer_sums("bf16"))).abs().max().item(), 4),
           "grad_relative_diff": round(((g32 - g16).norm() / g32.norm()).item(), 4)}
    # the reference pass: scoring only, longest first in batches of 16 pairs as CLO does
    from clo.training.sampling import row_lengths

    trainer.model.eval()
    ds = trainer.train_dataset.select(range(min(n_pairs, len(trainer.train_dataset))))
    size = row_lengths(ds)
    rows = [ds[i] for i in sorted(range(len(ds)), key=lambda i: -size[i])]
    def score(arm):
        got = []
        with ctx(arm):
            for i in range(0, len(rows), 16):
                batch = strip(trainer.data_collator(rows[i:i + 16]))
                got.append(torch.stack(trainer.compute_ref_log_probs(trainer.model, batch), 1))
        return torch.cat(got)

    score_s, scored = interleaved(("fp32", "bf16"), repeats, score)
    trainer.model.train()
    out.update({"reference_pairs": len(ds), "reference_fp32_s": score_s["fp32"], "reference_bf16_s": score_s["bf16"],
                "reference_time_ratio": median_ratio(score_s["bf16"], score_s["fp32"]),
                "reference_max_abs_answer_logp_diff": round((scored["fp32"] - scored["bf16"]).abs().max().item(), 4)})
    trainer.args.share_prompts = False
    return out


def system_prompt_share(trainer, loaded) -> dict:
    from clo.models.chat import default_system_prompt_tokens

    extra = default_system_prompt_tokens(loaded.tokenizer)  # a template with no default system prompt: 0
    ds = trainer.train_dataset
    tokens = sum(2 * len(p) + len(c) + len(r)
                 for p, c, r in zip(ds["prompt_ids"], ds["chosen_ids"], ds["rejected_ids"]))
    sequences = 2 * len(ds)
    return {"system_prompt_tokens": extra, "sequences": sequences, "tokens": tokens,
            "share": round(extra * sequences / tokens, 3)}


def system_prompt(trainer, loaded, spec, n_batches: int, n_pairs: int, repeats: int, buckets: int = 2) -> dict:
    """The template's default system prompt kept (``system_prompt: model``) or dropped (``none``): forward +
    backward of the first ``n_batches`` training batches of each (the same samples, tokenized both ways; shared
    prompts, ``buckets`` length buckets, as the demo preset runs them), arms interleaved; then how far the
    answers' log-probs move on the first ``n_pairs`` pairs (scored without gradient, one forward)."""
    import torch

    from clo.models.chat import set_system_prompt

    dropped = set_system_prompt(loaded.tokenizer, "none")
    if not dropped:
        return {"system_prompt_tokens": 0, "note": "this template adds no default system prompt: nothing to drop"}
    other = rebuild(spec, loaded)
    arms = {"model": trainer, "none": other}
    for t in arms.values():
        t.args.length_buckets, t.args.share_prompts = buckets, True
    batches = {arm: training_batches(t, n_batches) for arm, t in arms.items()}

    for arm, t in arms.items():  # untimed warm-up, as in interleaved_backward
        t.model.zero_grad(set_to_none=True)
        t._token_logps(t.model, batches[arm][0]).sum().backward()
    def train(arm):
        t = arms[arm]
        for batch in batches[arm]:
            t.model.zero_grad(set_to_none=True)
            t._token_logps(t.model, batch).sum().backward()

    times, _ = interleaved(arms, repeats, train)
    trainer.model.zero_grad(set_to_none=True)
    # the same pairs, scored both ways: dataset rows keep the data's order, so row i is the same pair in both
    trainer.model.eval()
    sums = {}
    with torch.no_grad():
        for arm, t in arms.items():
            ds = t.train_dataset.select(range(min(n_pairs, len(t.train_dataset))))
            scoring = [strip(t.data_collator([ds[j] for j in range(i, min(i + 16, len(ds)))]))
                       for i in range(0, len(ds), 16)]
            got = [torch.stack(t.compute_ref_log_probs(t.model, batch), 1) for batch in scoring]
            sums[arm] = torch.cat(got)  # (pairs, 2): chosen, rejected
    trainer.model.train()
    answer_diff = (sums["model"] - sums["none"]).abs()
    margin_diff = ((sums["model"][:, 0] - sums["model"][:, 1]) - (sums["none"][:, 0] - sums["none"][:, 1])).abs()
    for t in arms.values():
        t.args.share_prompts = False
    pos = {arm: sum(positions(b, True, buckets) for b in batches[arm]) for arm in arms}
    return {"system_prompt_tokens": dropped, "batches": n_batches, "buckets": buckets, "share_prompts": True,
            "model_s": times["model"], "none_s": times["none"],
            "time_ratio": median_ratio(times["none"], times["model"]),
            "positions_model": pos["model"], "positions_none": pos["none"],
            "positions_ratio": round(pos["none"] / pos["model"], 3), "pairs_scored": len(sums["model"]),
            "max_abs_answer_logp_diff": round(answer_diff.max().item(), 3),
            "mean_abs_answer_logp_diff": round(answer_diff.mean().item(), 3),
            "max_abs_pair_margin_diff": round(margin_diff.max().item(), 3),
            "mean_abs_pair_margin_diff": round(margin_diff.mean().item(), 3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--lang", default="sw")
    ap.add_argument("--preset", default="demo", help="the preset whose batching the training batches follow "
                    "(demo-gemma: not grouped by length)")
    ap.add_argument("--pairs", type=int, default=96, help="pairs of the reference-order measurement")
    ap.add_argument("--batches", type=int, default=4, help="training batches of the length-bucket measurement")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--only", choices=["reference_order", "length_buckets", "shared_prompts", "bf16", "bf16_matmul",
                                       "system_prompt"],
                    help="measure this lever only (bf16_matmul: one product, no model)")
    ap.add_argument("--matmul", default="2400,576,1536", help="M,K,N of the bf16_matmul product")
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    result = {"model": args.model, "lang": args.lang, "preset": args.preset, "threads": torch.get_num_threads(),
              "load_avg_before": os.getloadavg()[0]}
    if args.only in (None, "bf16", "bf16_matmul"):  # first: seconds, and it says whether the bf16 arm will crawl
        result["bf16_matmul"] = bf16_matmul(shape=tuple(int(x) for x in args.matmul.split(",")))
        print(json.dumps({"bf16_matmul": result["bf16_matmul"]}), flush=True)
    if args.only == "bf16_matmul":
        return finish(result, args.json)
    trainer, loaded, spec = build(args.model, args.lang, args.preset)
    result["system_prompt_share"] = system_prompt_share(trainer, loaded)
    print(json.dumps({"system_prompt_share": result["system_prompt_share"]}), flush=True)
    levers = {"reference_order": lambda: reference_order(trainer, args.pairs, args.repeats),
              "length_buckets": lambda: length_buckets(trainer, args.batches, args.repeats),
              "shared_prompts": lambda: shared_prompts(trainer, args.batches, args.repeats),
              "bf16": lambda: bf16(trainer, args.batches, args.pairs, args.repeats),
              "system_prompt": lambda: system_prompt(trainer, loaded, spec, args.batches, args.pairs, args.repeats)}
    for name, measure in levers.items():
        if args.only in (None, name):
            result[name] = measure()
            print(json.dumps({name: result[name]}), flush=True)
    return finish(result, args.json)


def finish(result: dict, json_path: str | None) -> int:
    result["load_avg_after"] = os.getloadavg()[0]
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
