"""``python -m clo pair``: inside one preference pair, and the pairs a run still learns from (docs/design.md,
"Inside a pair").

    python -m clo pair --model runs/X --sample 3 [--checkpoint K] [--beta B --lambda L] [--json]
    python -m clo pair --model default --sample 3 --data demo --lang sw
    python -m clo pair --hardest runs/X [--top 10] [--json]

Bad input (an unknown sample, run, checkpoint or model) prints one line on stderr and exits with status 2.
"""
from __future__ import annotations

import json
import sys

from clo.core.spec import OBJECTIVE_HELP

__all__ = ["PAIR_COMMANDS"]


def _pair_parser(sub):
    p = sub.add_parser(
        "pair", help="look inside one preference pair: per-token log-probs, rewards, margin, loss, gradient weight",
        description="Both preference pairs of one sample (English prompt: English ✓ / target ✗; target prompt: "
                    "target ✓ / English ✗) under a model and its reference: every answer token's log-prob, the sums, "
                    "the rewards β·(log π − log π_ref), the margin, the pair's loss under the run's objective and the "
                    "weight the gradient gives it. --hardest ranks every pair a run trained on by its margin. "
                    "docs/design.md, 'Inside a pair'.")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="'default' (the bundled base), a model folder, or a run id/directory")
    what.add_argument("--hardest", metavar="RUN", help="a run: all its pairs, hardest (lowest margin) first")
    p.add_argument("--sample", type=int, help="the sample's number in the data set (0-based; with --model)")
    p.add_argument("--checkpoint", help="a run's checkpoint, by step or name (model, checkpoint); default: its model")
    p.add_argument("--reference", help="the reference model (default: the run's base; a base model: itself)")
    p.add_argument("--before", help="also score the pair under this model (e.g. default): token-by-token deltas")
    p.add_argument("--data", help="data set for a base model (default: demo, the bundled set)")
    p.add_argument("--lang", help="target language for a base model (default: sw)")
    p.add_argument("--objective", choices=[*OBJECTIVE_HELP, "dpo"], help="objective (default: the run's)")
    p.add_argument("--beta", type=float, help="β (default: the run's)")
    p.add_argument("--lambda", dest="lam", type=float, help="λ (default: the run's)")
    p.add_argument("--simpo-gamma", dest="gamma", type=float, help="SimPO's γ (default: the run's)")
    p.add_argument("--top", type=int, help="with --hardest: only the first K pairs")
    p.add_argument("--json", action="store_true", help="print JSON")
    return p


def cmd_pair(args) -> int:
    from clo.evaluation.pair import PairError, format_hardest, format_pair, hardest_pairs, inspect_pair

    try:
        if args.hardest:
            if args.sample is not None:
                raise PairError("--sample goes with --model; --hardest ranks every pair of the run.")
            if args.top is not None and args.top < 1:
                raise PairError(f"--top must be at least 1 (got {args.top}).")
            result = hardest_pairs(args.hardest, top=args.top, checkpoint=args.checkpoint,
                                   objective=args.objective, beta=args.beta, lam=args.lam)
            text = format_hardest
        else:
            if args.sample is None:
                raise PairError("Which sample? Add --sample N (0-based), e.g. --sample 0.")
            result = inspect_pair(args.model, args.sample, checkpoint=args.checkpoint, reference=args.reference,
                                  data=args.data, lang=args.lang, before=args.before, objective=args.objective,
                                  beta=args.beta, lam=args.lam, gamma=args.gamma)
            text = format_pair
    except PairError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(json.dumps(result, ensure_ascii=False, indent=1) if args.json else text(result))
    return 0


PAIR_COMMANDS = {"pair": (_pair_parser, cmd_pair)}
