"""Requests per second of `clo serve` with N concurrent clients (official openai client, real HTTP on 127.0.0.1),
with request batching on, and off (max batch 1) as the baseline measured in the same run (docs/workshop.md).

    .venv/bin/python bench/serve_rps.py --model default --clients 8 --requests 3 --max-tokens 32
"""
from __future__ import annotations

import argparse
import json
import os
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import openai  # noqa: E402

from clo.bench.measure import Timer  # noqa: E402
from clo.data.formats import load_prompts  # noqa: E402
from clo.models.load import load_model
from clo.workshop.serve import ServeSettings, running_server  # noqa: E402


def measure(lm, prompts, clients: int, per_client: int, max_tokens: int, max_batch: int) -> dict:
    settings = ServeSettings(port=0, max_batch=max_batch, batch_window_s=0.02 if max_batch > 1 else 0.0)
    with running_server(lm, settings, model_id="m") as (url, app):
        client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=600)

        def worker(c: int) -> int:
            tokens = 0
            for i in range(per_client):
                p = prompts[(c * per_client + i) % len(prompts)]["prompt"]
                r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": p}],
                                                   max_tokens=max_tokens)
                tokens += r.usage.completion_tokens
            return tokens

        with Timer() as t, ThreadPoolExecutor(clients) as pool:
            tokens = sum(pool.map(worker, range(clients)))
        wall = t.seconds
        batches = list(app.state.batcher.batches)
    n = clients * per_client
    return {"requests": n, "seconds": round(wall, 2), "requests_per_s": round(n / wall, 3),
            "completion_tokens_per_s": round(tokens / wall, 1), "mean_batch": round(sum(batches) / len(batches), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=3, help="requests per client")
    ap.add_argument("--max-tokens", type=int, default=32, dest="max_tokens")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unbatched run")
    args = ap.parse_args()
    lm = load_model(args.model)
    prompts = load_prompts("demo")
    measure(lm, prompts, 1, 1, 4, 1)  # warm-up
    out = {"model": args.model, "clients": args.clients, "max_tokens": args.max_tokens,
           "batched": measure(lm, prompts, args.clients, args.requests, args.max_tokens, 16)}
    if not args.no_baseline:
        out["unbatched"] = measure(lm, prompts, args.clients, args.requests, args.max_tokens, 1)
        out["speedup"] = round(out["batched"]["requests_per_s"] / out["unbatched"]["requests_per_s"], 2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
