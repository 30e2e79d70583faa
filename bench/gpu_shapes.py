"""The bench on randomly initialised models of real shapes (Qwen2.5-3B, Llama-3-8B), for a GPU machine.

Weights cannot be downloaded there and speed depends on shapes only, so this builds each model from its
published configuration with random weights (bf16 on disk; training keeps fp32 master weights as ``clo
train`` does), saves it with the tiny offline tokenizer (its few hundred token ids fit any vocabulary), and runs
``clo bench``'s trainer rows on it: TRL DPOTrainer vs CLO (first run and cached) vs SFT — tokens/s, MFU
against the GPU's datasheet peak, and ``torch.cuda.max_memory_allocated``. A row that runs out of memory is
reported as such (TRL's row keeps a second full model for its reference; CLO's does not).

    python bench/gpu_shapes.py --shape qwen2.5-3b --out artifacts/bench/gpu-qwen2.5-3b.json
    python bench/gpu_shapes.py --shape llama-3-8b --batch-size 2 --max-length 512
    python bench/gpu_shapes.py --shape qwen2.5-3b --divide 16 --device cpu   # CPU smoke test of this script
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from clo.bench.suite import TRAINER_ROWS  # light: torch is imported inside its functions

os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# from the models' published config.json files
SHAPES = {
    "qwen2.5-3b": ("qwen2", dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                                 num_attention_heads=16, num_key_value_heads=2, vocab_size=151936,
                                 tie_word_embeddings=True, rope_theta=1e6)),
    "llama-3-8b": ("llama", dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                                 num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                                 tie_word_embeddings=False, rope_theta=5e5)),
}


def build(shape: str, folder: Path, divide: int = 1) -> tuple[Path, int]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from clo.core.testing import make_tiny_tokenizer

    arch, dims = SHAPES[shape]
    dims = dict(dims)
    if divide > 1:  # a scaled-down copy of the shape, to try this script on a CPU
        for k in ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers"):
            dims[k] = max(dims[k] // divide, 2 if k != "hidden_size" else 64)
        dims["num_key_value_heads"] = min(dims["num_key_value_heads"], dims["num_attention_heads"])
        dims["vocab_size"] = max(dims["vocab_size"] // divide, 1024)
    tok = make_tiny_tokenizer()
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    cfg_cls, model_cls = (Qwen2Config, Qwen2ForCausalLM) if arch == "qwen2" else (LlamaConfig, LlamaForCausalLM)
    cfg = cfg_cls(max_position_embeddings=4096, **dims, **ids)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = model_cls(cfg).to(torch.bfloat16)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    n = sum(p.numel() for p in model.parameters())
    del model
    return folder, n


def _summary(res: dict) -> dict:
    """Per row: tokens/s, MFU and peak memory; plus the ratios (what the GPU check is read for)."""
    rows = {name: {"tokens_per_s": r["tokens_per_s"], "mfu": r["mfu"], "peak_gb": r["peak_gb"],
                   "s_per_pair": r["s_per_pair"]} for name, r in res.get("rows", {}).items()}
    return {"rows": rows, "ratios": res.get("ratios", {}), "errors": res.get("errors", {})}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="qwen2.5-3b")
    ap.add_argument("--divide", type=int, default=1, help="scale the shape down (CPU smoke test)")
    ap.add_argument("--batch-size", type=int, default=4, help="samples per step (2 preference pairs each)")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--scope", default="attention", help="trainable scope; several, comma-separated, give one "
                    "JSON with a result per scope (scopes) on the same random model")
    ap.add_argument("--rows", help=f"comma-separated trainer rows (default: all of {','.join(TRAINER_ROWS)})")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--work", help="folder for the random model (default: a temporary folder)")
    ap.add_argument("--out", help="write the JSON result here too")
    args = ap.parse_args()
    from clo.bench.suite import print_report, run_bench

    work = Path(args.work or tempfile.mkdtemp(prefix="clo-gpu-shapes-"))
    folder, n = build(args.shape, work / args.shape, args.divide)
    print(f"{args.shape} (divide {args.divide}): {n / 1e9:.2f} B parameters in {folder}", file=sys.stderr)
    rows = tuple(args.rows.split(",")) if args.rows else None
    results = {}
    for scope in args.scope.split(","):
        res = run_bench(model=str(folder), scope=scope, device=args.device, batch_size=args.batch_size,
                        max_length=args.max_length, steps=args.steps, skip=("load", "padding", "generate", "langid"),
                        log=lambda m: print(m, file=sys.stderr, flush=True), rows=rows)
        res["config"].update(shape=args.shape, divide=args.divide, parameters=n)
        print_report(res)
        results[scope] = res
    out = results[args.scope] if "," not in args.scope else {
        "shape": args.shape, "divide": args.divide, "parameters": n, "device": args.device,
        "scopes": results, "summary": {scope: _summary(r) for scope, r in results.items()}}
    text = json.dumps(out, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
