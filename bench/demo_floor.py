"""How fast a demo run could be on this machine: the matrix products it must compute, against this CPU's best
measured rate (docs/performance.md, "Where the demo's time goes").

    python bench/demo_floor.py [--preset demo] [--model default] [--lang sw] [--system-prompt model|none]
                               [--share-prompts on|off] [--check] [--json FILE]

The batches are the run's own: the preset's trainer draws them, and its own code (shared prompts, length buckets,
the answer-only head) cuts them into forwards — with a stand-in model that only records each forward's shape, so
counting takes seconds. From the shapes, the floating-point operations of every product:

* linear layers, forward: 2 × (the layers' weights) × positions; backward: the same again for the gradient of
  the input, plus 2 × (the trained weights) × positions for theirs;
* attention scores and values (SDPA computes every query × key, masked or not): 4 × positions × length ×
  width per layer forward, twice that backward;
* the LM head, on answer tokens only: 2 × vocabulary × hidden per token forward, again backward.

The reference pass is forward only (longest rows first, as CLO scores it). ``--check`` runs one real training
batch under PyTorch's FLOP counter and compares it with the count (without attention: the counter has no
formula for the CPU's fused attention kernel). Dividing by the best rate of large fp32
products on this machine (the same measure as ``python -m clo bench``'s MFU) gives a floor: no kernel, however
good, makes the run's products faster than that.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


class ShapeRecorder:
    """Stands in for the model in the trainer's answer-only scoring: records each forward's (sequences, length,
    answer tokens) and returns zero log-probs of the right shape."""

    def __init__(self, model):
        import torch

        self.config = model.config
        self._param = torch.zeros(1, dtype=next(model.parameters()).dtype)
        self.calls: list[tuple[int, int, int]] = []

    def parameters(self):
        yield self._param

    def __call__(self, *, input_ids, labels=None, clo_gather=None, **_):
        import torch

        n, length = input_ids.shape
        if clo_gather is not None:
            answers = len(clo_gather[1])
            self.calls.append((n, length, answers))
            return torch.zeros(answers)
        answers = int((labels[:, 1:] != -100).sum())
        self.calls.append((n, length, answers))
        return torch.zeros(n, length - 1)


def model_sizes(model) -> dict:
    """Weights of the linear layers (all, and the trained ones) of the transformer body, the head's shape, and the
    attention width and depth."""
    import torch

    head = model.get_output_embeddings()
    linear = trained = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module is not head:
            linear += module.weight.numel()
            trained += module.weight.numel() if module.weight.requires_grad else 0
    cfg = model.config.get_text_config()
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return {"linear_weights": linear, "trained_weights": trained, "vocab": head.weight.shape[0],
            "hidden": head.weight.shape[1], "attention_width": cfg.num_attention_heads * head_dim,
            "layers": cfg.num_hidden_layers}


def flops(calls, sizes: dict, backward: bool) -> dict:
    """Floating-point operations of forwards of the given shapes (and their backward, if ``backward``)."""
    lin = att = head = 0
    for n, length, answers in calls:
        positions = n * length
        lin += 2 * sizes["linear_weights"] * positions
        att += 4 * positions * length * sizes["attention_width"] * sizes["layers"]
        head += 2 * sizes["vocab"] * sizes["hidden"] * answers
        if backward:
            lin += 2 * (sizes["linear_weights"] + sizes["trained_weights"]) * positions
            att += 8 * positions * length * sizes["attention_width"] * sizes["layers"]
            head += 2 * sizes["vocab"] * sizes["hidden"] * answers
    positions = sum(n * length for n, length, _ in calls)
    return {"forwards": len(calls), "positions": positions, "answer_tokens": sum(a for *_, a in calls),
            "linear_tflop": round(lin / 1e12, 4), "attention_tflop": round(att / 1e12, 4),
            "head_tflop": round(head / 1e12, 4), "tflop": round((lin + att + head) / 1e12, 4),
            "flop": {"linear": lin, "attention": att, "head": head}}


def record_shapes(trainer, loaded):
    """The forwards of the training steps and of the reference pass, as the trainer's own code cuts them."""
    from torch.utils.data import DataLoader

    from bench.levers import strip
    from clo.training.sampling import row_lengths

    trainer._ensure_head()
    steps = ShapeRecorder(loaded.model)
    n_steps = 0
    for batch in trainer.get_train_dataloader():
        trainer._token_logps(steps, strip(batch))
        n_steps += 1
    ref = ShapeRecorder(loaded.model)
    ds = trainer.train_dataset
    size = row_lengths(ds)
    order = sorted(range(len(ds)), key=lambda i: -size[i])
    batch_size = trainer.args.precompute_ref_batch_size or trainer.args.per_device_train_batch_size
    for batch in DataLoader(ds.select(order), batch_size=batch_size, collate_fn=trainer.data_collator, shuffle=False):
        trainer.compute_ref_log_probs(ref, strip(batch))
    return steps.calls, ref.calls, n_steps


def check_one_batch(trainer, sizes: dict) -> dict:
    """One real training batch (forward + backward) under PyTorch's FLOP counter, against this script's count."""
    from torch.utils.flop_counter import FlopCounterMode

    from bench.levers import strip

    batch = strip(next(iter(trainer.get_train_dataloader())))
    rec = ShapeRecorder(trainer.model)
    trainer._token_logps(rec, batch)
    count = flops(rec.calls, sizes, backward=True)
    trainer.model.train()
    trainer.model.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as fc:
        trainer._token_logps(trainer.model, batch).sum().backward()
    measured = fc.get_total_flops() / 1e12
    trainer.model.zero_grad(set_to_none=True)
    # PyTorch's counter has no formula for the CPU's fused attention (SDPA), so it is compared with the linear
    # layers and the head; both sums are kept
    without = (count["flop"]["linear"] + count["flop"]["head"]) / 1e12
    return {"counted_tflop": count["tflop"], "counted_without_attention_tflop": round(without, 4),
            "flop_counter_tflop": round(measured, 4), "ratio_without_attention": round(without / measured, 3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--model", help="another model than the preset's")
    ap.add_argument("--lang", default="sw")
    ap.add_argument("--system-prompt", choices=["model", "none"], help="another system_prompt than the preset's")
    ap.add_argument("--share-prompts", choices=["on", "off"], help="another share_prompts than the preset's")
    ap.add_argument("--check", action="store_true", help="count one real batch with PyTorch's FLOP counter too")
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from bench.levers import rebuild
    from clo.bench.measure import Timer, measured_peak_flops
    from clo.core.spec import TrainSpec, load_preset
    from clo.models.chat import set_system_prompt
    from clo.models.load import load_model
    from clo.training.scope import apply_scope

    preset = load_preset(args.preset)
    over = {"lang": args.lang, "precision": "fp32", "objective": "simpo"}  # simpo: no reference pass at build
    over.update({k: v for k, v in (("model", args.model), ("system_prompt", args.system_prompt)) if v})
    if args.share_prompts:
        over["share_prompts"] = args.share_prompts == "on"
    spec = TrainSpec.from_dict({**preset, **over})
    loaded = load_model(spec.model)
    apply_scope(loaded.model, spec)
    set_system_prompt(loaded.tokenizer, spec.system_prompt)
    trainer = rebuild(spec, loaded)  # share_prompts and the rest from the spec, as clo train builds it
    sizes = model_sizes(loaded.model)
    with Timer() as counting:
        step_calls, ref_calls, n_steps = record_shapes(trainer, loaded)
    train, ref = flops(step_calls, sizes, backward=True), flops(ref_calls, sizes, backward=False)
    peak, how = measured_peak_flops("cpu")
    total = train["tflop"] + ref["tflop"]
    result = {"preset": args.preset, "model": spec.model, "lang": spec.lang, "system_prompt": spec.system_prompt,
              "share_prompts": spec.share_prompts, "threads": torch.get_num_threads(), "sizes": sizes,
              "steps": n_steps, "training": train, "reference": ref, "tflop": round(total, 2),
              "peak_gflops": round(peak / 1e9, 1), "peak": how,
              "floor_s": {"reference": round(ref["tflop"] * 1e12 / peak, 1),
                          "training": round(train["tflop"] * 1e12 / peak, 1),
                          "both": round(total * 1e12 / peak, 1)},
              "counting_s": round(counting.seconds, 1)}
    if args.check:
        result["check"] = check_one_batch(trainer, sizes)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
