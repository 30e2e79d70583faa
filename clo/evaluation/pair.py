"""Inside one preference pair (docs/design.md, "Inside a pair"): what the loss sees of one sample, token by token.

A cross-lingual sample gives two pairs (English prompt: English ✓ / target ✗; target prompt: target ✓ /
English ✗). :func:`inspect_pair` scores both under a policy (the base model, a run, or one of its checkpoints)
and its reference (the run's base model, or the base itself) with the training code's own pieces — TRL's
tokenization as :class:`~clo.training.trainer.CLOTrainer` runs it, the run's collator, the answer-only head of
:mod:`clo.training.logprobs` — and hands the summed log-probs to the objectives of :mod:`clo.training.losses`:
the numbers are the trainer's own for a batch of exactly that sample. :func:`pair_numbers` recomputes the losses,
rewards and gradient weights from the cached log-probs for another β, λ or objective, without a forward pass.
:func:`hardest_pairs` ranks every pair a run trained on by its current margin.

    python -m clo pair --model runs/X --sample 3            # both pairs of sample 3, policy and reference
    python -m clo pair --hardest runs/X --top 10            # the pairs the gradient still pushes hardest

torch, transformers and TRL are imported inside the functions, so importing this module is cheap.
"""
from __future__ import annotations

import logging
import math
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from clo.core.spec import SpecError, TrainSpec
from clo.models.registry import ModelNotFoundError, display_name
from clo.runs.rundir import RunDir, RunError

log = logging.getLogger(__name__)

__all__ = ["PairError", "ModelChoice", "choose_model", "list_checkpoints", "inspect_pair", "pair_numbers",
           "hardest_pairs", "sample_titles", "weights", "WEIGHT_FORMULAS", "format_pair", "format_hardest"]

# What the gradient weight of each objective is: -dℓ/dh, ℓ the pair's loss and h the quantity it is a function of
WEIGHT_FORMULAS = {
    "clo": ("h = β·[(log π(y✓) − log π_ref(y✓)) − (log π(y✗) − log π_ref(y✗))] (the margin)",
            "ℓ = −log σ(h)", "w = −dℓ/dh = σ(−h)"),
    "ipo": ("h = (log-ratio of y✓)/|y✓| − (log-ratio of y✗)/|y✗| (per-token)",
            "ℓ = (h − 1/(2β))²", "w = −dℓ/dh = 1/β − 2h (negative past the target 1/(2β): pulled back)"),
    "simpo": ("h = β·(log π(y✓)/|y✓| − log π(y✗)/|y✗|) − γ", "ℓ = −log σ(h)", "w = −dℓ/dh = σ(−h)"),
    "orpo": ("h = log odds(y✓) − log odds(y✗), odds = p/(1−p), p = exp(log π/|y|)",
             "ℓ = −β·log σ(h)", "w = −dℓ/dh = β·σ(−h)"),
    "kto": ("h✓ = β·(log-ratio of y✓ − z), h✗ = β·(z − log-ratio of y✗); z = the batch's mean log-ratio, ≥ 0",
            "ℓ = [(1 − σ(h✓)) + (1 − σ(h✗))] / 2",
            "w = −dℓ/dt (both h moved by t) = [σ(h✓)σ(−h✓) + σ(h✗)σ(−h✗)] / 2"),
}


class PairError(ValueError):
    """Bad input to the pair view (unknown sample, run, checkpoint or model): one line saying what to do."""


# -- which model ----------------------------------------------------------------------------------------------------


@dataclass
class ModelChoice:
    """A policy to look through: the base model, a run's saved model, or its trainer checkpoint."""

    name: str  # what load_model takes
    label: str  # for people
    kind: str  # base | run | checkpoint
    step: int | None = None
    run: RunDir | None = None
    spec: TrainSpec = field(default_factory=TrainSpec)  # the run's settings (defaults for a base model)

    def to_dict(self) -> dict:
        return {"name": self.name, "label": self.label, "kind": self.kind, "step": self.step,
                "run": str(self.run.path) if self.run else None}


def _run_of(ref: str) -> RunDir | None:
    """The run ``ref`` names (an id under the runs folder, or its path), or None when it names no run."""
    p = Path(ref).expanduser()
    if (p / "status.json").exists() or (p / "config.yaml").exists():
        return RunDir(p)
    if "/" not in ref and os.sep not in ref:
        from clo.runs.rundir import resolve_run

        try:
            return resolve_run(ref)
        except (RunError, ValueError):
            return None
    return None


def list_checkpoints(run: RunDir) -> list[dict]:
    """What of ``run`` can be looked through: its saved ``model/`` (the last save) and its trainer
    ``checkpoint/`` (a run with save_steps that has not finished), each with its step and folder."""
    status = run.status()
    out = []
    if run.has_model():
        out.append({"name": "model", "step": status.get("saved_step") or status.get("step"),
                    "path": str(run.model_path), "label": "saved model"})
    step = run.checkpoint_step()
    folder = run.checkpoint_path
    if step and ((folder / "config.json").exists() or (folder / "adapter_config.json").exists()):
        out.append({"name": "checkpoint", "step": step, "path": str(run.checkpoint_path),
                    "label": f"trainer checkpoint of step {step}"})
    return out


def choose_model(model: str, checkpoint: str | int | None = None) -> ModelChoice:
    """``model`` (a bundled name, a folder, a run id or directory) as a :class:`ModelChoice`; ``checkpoint``
    picks one of the run's :func:`list_checkpoints` by step or name (default: its saved model)."""
    from clo.models.resolve import resolve_model

    if not str(model or "").strip():
        raise PairError("No model given: use --model default (the bundled base) or a run.")
    run = _run_of(str(model))
    if run is None:
        if checkpoint not in (None, ""):
            raise PairError(f"--checkpoint needs a run, and {model!r} is not a run directory.")
        try:
            kind, where = resolve_model(str(model), trust_remote_code=False)
        except ModelNotFoundError as e:
            raise PairError(str(e)) from e
        return ModelChoice(str(model), f"base · {display_name(str(model))}", "base")
    try:
        spec = TrainSpec.from_dict(run.config(), source=str(run.config_path))
    except (SpecError, RunError, OSError, ValueError) as e:
        raise PairError(f"Run {run.id}: its config.yaml cannot be read ({e}).") from e
    options = list_checkpoints(run)
    if not options:
        raise PairError(f"Run {run.id} has no saved model yet (state {run.status().get('state')}): nothing to look "
                        "through. Wait until it saves one, or pick another run.")
    if checkpoint in (None, ""):
        pick = options[0]
    else:
        wanted = str(checkpoint)
        found = [o for o in options if wanted in (o["name"], str(o["step"]))]
        if not found:
            have = ", ".join(f"{o['name']} (step {o['step']})" for o in options)
            raise PairError(f"Run {run.id} has no checkpoint {wanted!r}; it has: {have}.")
        pick = found[0]
    kind = "run" if pick["name"] == "model" else "checkpoint"
    label = f"{run.id} · step {pick['step']}" + (" (checkpoint)" if kind == "checkpoint" else "")
    return ModelChoice(pick["path"], label, kind, pick["step"], run, spec)


# -- loading, cached per process --------------------------------------------------------------------------------------

_LOADED: OrderedDict = OrderedDict()
_KEEP = 3  # models kept loaded: policy, reference and one more (the app switching between two runs)


def _stamp(name: str) -> float:
    p = Path(name).expanduser()
    for f in (p / "model.safetensors", p / "adapter_model.safetensors", p / "config.json"):
        if f.exists():
            return f.stat().st_mtime
    return 0.0


def _load(name: str):
    """``load_model(name)`` on the CPU in fp32, kept for the next call (a retrained run's folder reloads)."""
    from clo.models.load import load_model

    key = (name, _stamp(name))
    if key in _LOADED:
        _LOADED.move_to_end(key)
        return _LOADED[key]
    try:
        loaded = load_model(name, device="cpu", dtype="float32")
    except ModelNotFoundError as e:
        raise PairError(str(e)) from e
    _LOADED[key] = loaded
    while len(_LOADED) > _KEEP:
        _LOADED.popitem(last=False)
    return loaded


# -- scoring ----------------------------------------------------------------------------------------------------------


def _records(spec: TrainSpec) -> list[dict]:
    from clo.data.formats import DataError
    from clo.training.run import load_records

    try:
        return load_records(spec)
    except DataError as e:
        raise PairError(str(e)) from e


def _batch(tokenizer, records: list[dict], spec: TrainSpec):
    """The trainer's batch of ``records`` (both pairs of each, TRL's ``[chosen…, rejected…]`` layout): tokenized by
    the trainer's own dataset preparation (:meth:`DPOTrainer._prepare_dataset`, which CLOTrainer inherits) and
    padded by the run's collator (:class:`~clo.training.sampling.PairCollator`)."""
    from types import SimpleNamespace

    from datasets import Dataset

    from clo.data.pairs import build_pairs, to_conversational
    from clo.training.sampling import PairCollator
    from clo.training.trainer import CLOTrainer

    pairs = [to_conversational(p, spec.langs) for p in build_pairs(records)]
    args = SimpleNamespace(dataset_num_proc=None, max_length=spec.max_length, truncation_mode="keep_start")
    from datasets.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled

    shown = is_progress_bar_enabled()
    disable_progress_bar()  # two rows: no bar
    try:
        ds = CLOTrainer._prepare_dataset(SimpleNamespace(_tokenizer=tokenizer), Dataset.from_list(pairs), tokenizer,
                                         args, "pair")
    finally:
        if shown:
            enable_progress_bar()
    if len(ds) != len(pairs):
        raise PairError(f"max_length {spec.max_length} leaves no answer tokens in this sample: its prompt alone "
                        "fills it. The trainer drops such pairs; raise --max-length.")
    rows = [{k: ds[i][k] for k in ("prompt_ids", "chosen_ids", "rejected_ids", "is_target", "lang_id")}
            for i in range(len(ds))]
    return PairCollator(tokenizer.pad_token_id, spec.max_length)(rows)


def _token_logps(model, batch, precision: str):
    """(B, T-1) log-probs of the answer tokens, 0 elsewhere: the trainer's answer-only head on a CPU
    (:func:`clo.training.logprobs.add_selective_head`), TRL's fused head where that head cannot go."""
    import torch

    from clo.core.precision import precision_context
    from clo.training.logprobs import add_selective_head, prompt_sharing_supported, shared_prompt_logps

    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not hasattr(target, "_clo_pair_head"):
        target._clo_pair_head = add_selective_head(target)
        if not target._clo_pair_head:
            from trl.trainer.utils import add_fused_lm_head

            add_fused_lm_head(target)
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    kwargs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels,
                  use_cache=False)
    with torch.no_grad(), precision_context(precision, "cpu"):
        out = None
        if target._clo_pair_head and prompt_sharing_supported(target) is None:
            # the trainer's share_prompts path: each pair's prompt once for both answers, the same log-probs
            out = shared_prompt_logps(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"],
                                      config=target.config)
        if out is None and target._clo_pair_head:
            out = model(**kwargs, clo_logps=True)
        elif out is None:
            out = model(**kwargs, fused_lm_head=True).log_probs
    return out[:, -(batch["completion_mask"].shape[1] - 1):].float()


def _precision(spec: TrainSpec) -> str:
    from clo.core.precision import resolve_precision

    return resolve_precision(spec.precision, "cpu", 1)


def _pieces(tokenizer, ids: list[int]) -> list[str]:
    """Each token's own text, so that the pieces join into the decoded answer (a character split over two byte
    tokens shows on the token that completes it)."""
    out, before = [], ""
    for i in range(len(ids)):
        text = tokenizer.decode(ids[: i + 1], skip_special_tokens=False)
        out.append(text[len(before):] if text.startswith(before) else tokenizer.decode([ids[i]]))
        before = text
    return out


def _score(policy, reference, tokenizer, records: list[dict], spec: TrainSpec, *, tokens: bool):
    """Per-token and summed log-probs of every pair of ``records`` under both models. Returns one dict per pair
    (in sample order, English pair first) with the sums, token counts and, with ``tokens``, every answer token."""
    batch = _batch(tokenizer, records, spec)
    precision = _precision(spec)
    pol = _token_logps(policy.model, batch, precision)
    ref = pol if reference is None else _token_logps(reference.model, batch, precision)
    shift = batch["completion_mask"][:, 1:]
    ids = batch["input_ids"][:, 1:]
    n = ids.shape[0] // 2
    out = []
    for i in range(n):
        pair = {"is_target": int(batch["is_target"][i])}
        for side, row in (("chosen", i), ("rejected", n + i)):
            m = shift[row] == 1
            pair[side] = {"logp": float(pol[row].sum()), "ref_logp": float(ref[row].sum()), "n_tokens": int(m.sum())}
            if tokens:
                tid = ids[row][m].tolist()
                pair[side]["tokens"] = [{"id": t, "text": s, "logp": float(a), "ref_logp": float(b)}
                                        for t, s, a, b in zip(tid, _pieces(tokenizer, tid), pol[row][m].tolist(),
                                                              ref[row][m].tolist())]
        out.append(pair)
    return out


# -- the numbers ------------------------------------------------------------------------------------------------------


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def weights(objective: str, pc: float, pr: float, rc: float, rr: float, nc: int, nr: int, *, beta: float,
            gamma: float = 0.5, z: float = 0.0) -> dict:
    """The gradient weight of one pair under ``objective`` (:data:`WEIGHT_FORMULAS`): ``h`` (what the pair's loss
    is a function of), ``weight = −dℓ/dh``, and how hard the gradient pushes each answer's summed log-prob —
    ``push_chosen = −∂ℓ/∂log π(y✓)`` (up) and ``push_rejected = ∂ℓ/∂log π(y✗)`` (down). Closed forms, derived
    from each loss; tests/test_pair.py checks them against autograd through :mod:`clo.training.losses`."""
    obj = "clo" if objective == "dpo" else objective
    nc, nr = max(nc, 1), max(nr, 1)
    if obj == "clo":
        h = beta * ((pc - rc) - (pr - rr))
        w = _sigmoid(-h)
        return {"h": h, "weight": w, "push_chosen": beta * w, "push_rejected": beta * w}
    if obj == "ipo":
        h = (pc - rc) / nc - (pr - rr) / nr
        w = 1.0 / beta - 2.0 * h
        return {"h": h, "weight": w, "push_chosen": w / nc, "push_rejected": w / nr}
    if obj == "simpo":
        h = beta * (pc / nc - pr / nr) - gamma
        w = _sigmoid(-h)
        return {"h": h, "weight": w, "push_chosen": beta * w / nc, "push_rejected": beta * w / nr}
    if obj == "orpo":
        ac, ar = pc / nc, pr / nr

        def log_odds(a):
            return a - math.log(-math.expm1(a))

        h = log_odds(ac) - log_odds(ar)
        w = beta * _sigmoid(-h)
        return {"h": h, "weight": w, "push_chosen": w / (-math.expm1(ac)) / nc,
                "push_rejected": w / (-math.expm1(ar)) / nr}
    if obj == "kto":
        hc, hr = beta * ((pc - rc) - z), beta * (z - (pr - rr))
        dc, dr = _sigmoid(hc) * _sigmoid(-hc), _sigmoid(hr) * _sigmoid(-hr)
        return {"h": hc, "h_rejected": hr, "weight": (dc + dr) / 2, "push_chosen": beta * dc / 2,
                "push_rejected": beta * dr / 2}
    raise PairError(f"Unknown objective {objective!r}.")


def pair_numbers(pairs: list[dict], *, objective: str = "clo", beta: float = 0.1, lam: float = 0.5,
                 gamma: float = 0.5, anchor: float = 0.0, en_nll: float = 0.0) -> dict:
    """The losses, rewards, margins and weights of one sample's pairs (as :func:`inspect_pair` scored them), from
    their summed log-probs alone — no forward pass: what a β or λ slider recomputes. The loss is
    :data:`clo.training.losses.LOSS_FUNCTIONS` on a batch of exactly these pairs, as the trainer calls it."""
    import torch

    from clo.training.losses import LOSS_FUNCTIONS, OBJECTIVES

    if objective not in LOSS_FUNCTIONS:
        raise PairError(f"Unknown objective {objective!r}: one of {', '.join(LOSS_FUNCTIONS)}.")
    if beta <= 0:
        raise PairError(f"β must be > 0 (got {beta}).")
    if not 0.0 <= lam <= 1.0:
        raise PairError(f"λ must be in [0, 1] (got {lam}).")

    obj = "clo" if objective == "dpo" else objective
    lam_used = 0.0 if objective == "dpo" else lam
    settings = {"objective": objective, "beta": beta, "lambda": lam_used, "gamma": gamma, "english_anchor": anchor,
                "english_nll": en_nll}
    if not pairs:  # the settings checked, nothing to score
        return {"settings": settings, "pairs": [], "total": {}, "formula": list(WEIGHT_FORMULAS[obj])}

    def col(side, key):
        return torch.tensor([p[side][key] for p in pairs], dtype=torch.float32)

    pc, pr, rc, rr = col("chosen", "logp"), col("rejected", "logp"), col("chosen", "ref_logp"), col("rejected",
                                                                                                     "ref_logp")
    nc = torch.tensor([p["chosen"]["n_tokens"] for p in pairs])
    nr = torch.tensor([p["rejected"]["n_tokens"] for p in pairs])
    is_target = torch.tensor([p["is_target"] for p in pairs])
    out = LOSS_FUNCTIONS[objective](pc, pr, rc, rr, is_target=is_target, chosen_tokens=nc, rejected_tokens=nr,
                                    beta=beta, lam=lam_used, gamma=gamma, anchor=anchor, en_nll=en_nll)
    per_pair, _, _ = OBJECTIVES[obj].pair_loss(pc, pr, rc, rr, beta, chosen_tokens=nc, rejected_tokens=nr,
                                               gamma=gamma)
    z = float(torch.cat([pc - rc, pr - rr]).mean().clamp(min=0)) if obj == "kto" else 0.0
    rows = []
    for i, p in enumerate(pairs):
        w = weights(obj, float(pc[i]), float(pr[i]), float(rc[i]), float(rr[i]), int(nc[i]), int(nr[i]), beta=beta,
                    gamma=gamma, z=z)
        rows.append({"direction": "tgt" if p["is_target"] else "en",
                     "reward_chosen": float(out.rewards_chosen[i]), "reward_rejected": float(out.rewards_rejected[i]),
                     "margin": float(out.margins[i]), "loss": float(per_pair[i]), **w,
                     # this pair's share of the sample's total loss: (1 − λ) · ℓ / (pairs in the batch)
                     "in_total": (1.0 - lam_used) * float(per_pair[i]) / len(pairs)})
    total = {"loss": float(out.loss), "pair_term": float(out.cl_loss), "nll": float(out.sft_loss),
             "lambda": lam_used}
    if out.anchor_loss is not None:
        total["anchor"] = float(out.anchor_loss)
    if out.en_sft_loss is not None:
        total["en_nll"] = float(out.en_sft_loss)
    if obj == "kto":
        settings["kto_z"] = z
    return {"settings": settings, "pairs": rows, "total": total, "formula": list(WEIGHT_FORMULAS[obj])}


def _run_settings(spec: TrainSpec) -> dict:
    """The objective settings a run trained with (sft-dpo's preference stage: λ = 0; an SFT run: CLO's
    defaults, as it has no pair loss)."""
    return {"objective": spec.objective if spec.method in ("clo", "sft-dpo") else "clo", "beta": spec.beta,
            "lam": 0.0 if spec.method == "sft-dpo" else spec.lam, "gamma": spec.simpo_gamma,
            "anchor": spec.english_anchor, "en_nll": spec.english_nll}


def _reference_name(choice: ModelChoice, reference: str | None) -> str | None:
    """What the reference is: the one asked for, the run's base model, or (a base model) the model itself
    (None: the policy is its own reference, scored once)."""
    if reference:
        return reference
    if choice.run is not None:
        return choice.spec.model
    return None


def _spec_for(choice: ModelChoice, data: str | None, lang: str | None) -> TrainSpec:
    """The settings whose data and language number the samples: a run's own, or a base model's ``data`` (default
    the bundled set) in ``lang`` (default sw)."""
    spec = choice.spec
    if choice.run is None:
        spec = TrainSpec(model=choice.name, data=data or "demo", lang=lang or "sw")
    elif data or lang:
        raise PairError("A run's samples come from its own data and language: leave out --data and --lang.")
    try:
        spec.validate()
    except SpecError as e:
        raise PairError(str(e)) from e
    return spec


def sample_titles(model: str = "default", *, data: str | None = None, lang: str | None = None,
                  width: int = 70) -> list[str]:
    """One line per sample that :func:`inspect_pair` can open for ``model`` (its English instruction, cut to
    ``width`` characters), in sample order: what a sample picker lists."""
    records = _records(_spec_for(choose_model(model), data, lang))
    return [r["instruction_en"] if len(r["instruction_en"]) <= width else r["instruction_en"][: width - 1] + "…"
            for r in records]


def inspect_pair(model: str = "default", sample: int = 0, *, checkpoint: str | int | None = None,
                 reference: str | None = None, data: str | None = None, lang: str | None = None,
                 before: str | None = None, objective: str | None = None, beta: float | None = None,
                 lam: float | None = None, gamma: float | None = None) -> dict:
    """Both preference pairs of ``sample`` under ``model`` (a base, a run, or its ``checkpoint``) and its
    reference: every answer token's log-prob under each, their sums, and :func:`pair_numbers` for the run's
    objective (or the given one; β, λ, γ default to the run's). A run's sample numbers count the records of its
    own data and language(s); a base model reads ``data`` (default: the bundled set) in ``lang`` (default sw).
    ``before``: a second policy (e.g. the base model) scored on the same tokens, for a "before → after" view.

    The result's ``pairs`` hold the log-probs (``pair_numbers(result["pairs"], …)`` recomputes the rest)."""
    choice = choose_model(model, checkpoint)
    spec = _spec_for(choice, data, lang)
    records = _records(spec)
    if not isinstance(sample, int) or not 0 <= sample < len(records):
        raise PairError(f"No sample {sample}: {spec.data} has {len(records)} sample(s) in {spec.lang} "
                        f"(numbers 0 to {len(records) - 1}).")
    record = records[sample]
    settings = _run_settings(spec)
    for key, value in (("objective", objective), ("beta", beta), ("lam", lam), ("gamma", gamma)):
        if value is not None:
            settings[key] = value
    pair_numbers([], **settings)  # bad settings fail here, before any model loads
    policy = _load(choice.name)
    tokenizer = policy.tokenizer
    if choice.run is not None:
        from clo.models.chat import set_system_prompt

        set_system_prompt(tokenizer, spec.system_prompt)  # idempotent: the run's saved template already has it
    ref_name = _reference_name(choice, reference)
    ref = _load(ref_name) if ref_name and ref_name != choice.name else None
    scored = _score(policy, ref, tokenizer, [record], spec, tokens=True)
    from clo.data.pairs import build_pairs

    texts = build_pairs([record])
    for pair, text in zip(scored, texts):
        pair.update(direction=text["direction"], prompt=text["prompt"], prompt_lang=text["prompt_lang"])
        pair["chosen"].update(text=text["chosen"], lang=text["chosen_lang"])
        pair["rejected"].update(text=text["rejected"], lang=text["rejected_lang"])
    result = {"sample": sample, "id": record["id"], "lang": record["lang"], "data": str(spec.data),
              "n_samples": len(records), "model": choice.to_dict(),
              "reference": {"name": ref_name or choice.name, "label": display_name(ref_name or choice.name),
                            "same_as_model": ref is None},
              "pairs": scored, "numbers": pair_numbers(scored, **settings), "run_settings": _run_settings(spec)}
    if choice.run is not None and spec.method == "sft-dpo" and not reference:
        result["reference"]["note"] = ("sft-dpo's preference stage used its SFT model as the reference, which is not "
                                       "saved: the base model stands in for it here.")
    if choice.run is not None and spec.method in ("sft", "sft-tgt", "sft-eng"):
        result["reference"]["note"] = (f"{spec.method} trains no preference pairs: the numbers show what CLO's loss "
                                       "would make of this pair now.")
    if before:
        other = _load(choose_model(before).name)
        prior = _score(other, None, tokenizer, [record], spec, tokens=True)
        result["before"] = {"name": before, "label": choose_model(before).label,
                            "pairs": [{side: {"logp": p[side]["logp"],
                                              "tokens": [t["logp"] for t in p[side]["tokens"]]}
                                       for side in ("chosen", "rejected")} for p in prior]}
    return result


def hardest_pairs(run: str, *, top: int | None = None, checkpoint: str | int | None = None,
                  objective: str | None = None, beta: float | None = None, lam: float | None = None,
                  batch_samples: int = 8) -> dict:
    """Every pair ``run`` trained on (the samples it used, after its length filter and max_steps subset), scored
    under its model (or ``checkpoint``) and its base, sorted by the current margin — hardest (lowest) first —
    with each pair's loss and gradient weight; ``top`` keeps the first ones. One forward per model over those
    pairs, ``batch_samples`` samples at a time."""
    if _run_of(str(run)) is None:
        raise PairError(f"{run!r} is not a run directory (an id under the runs folder, or its path): --hardest ranks "
                        "the pairs a run trained on.")
    choice = choose_model(run, checkpoint)
    spec = choice.spec
    from clo.training.run import fit_to_length, samples_used

    records = _records(spec)
    index = {id(r): i for i, r in enumerate(records)}
    policy = _load(choice.name)
    from clo.models.chat import set_system_prompt

    set_system_prompt(policy.tokenizer, spec.system_prompt)
    used, _ = fit_to_length(policy.tokenizer, records, spec)
    used = samples_used(used, spec)
    ref_name = _reference_name(choice, None)
    ref = _load(ref_name) if ref_name and ref_name != choice.name else None
    settings = _run_settings(spec)
    for key, value in (("objective", objective), ("beta", beta), ("lam", lam)):
        if value is not None:
            settings[key] = value
    pair_numbers([], **settings)  # bad settings fail before the passes
    order = sorted(range(len(used)), key=lambda i: len(used[i]["response"]) + len(used[i]["response_en"]))
    rows, used_settings = [], None
    for start in range(0, len(order), batch_samples):
        chunk = [used[i] for i in order[start:start + batch_samples]]
        scored = _score(policy, ref, policy.tokenizer, chunk, spec, tokens=False)
        for k, record in enumerate(chunk):
            both = scored[2 * k: 2 * k + 2]
            numbers = pair_numbers(both, **settings)
            used_settings = numbers["settings"]
            for pair, num in zip(both, numbers["pairs"]):
                prompt = record["instruction"] if pair["is_target"] else record["instruction_en"]
                rows.append({"sample": index[id(record)], "id": record["id"], "lang": record["lang"],
                             "direction": num["direction"], "prompt": prompt,
                             "logp_chosen": pair["chosen"]["logp"], "logp_rejected": pair["rejected"]["logp"],
                             "ref_logp_chosen": pair["chosen"]["ref_logp"],
                             "ref_logp_rejected": pair["rejected"]["ref_logp"],
                             **{k: num[k] for k in ("margin", "loss", "weight", "h", "push_chosen", "push_rejected")}})
    rows.sort(key=lambda r: (r["margin"], r["sample"], r["direction"]))
    for rank, r in enumerate(rows, start=1):
        r["rank"] = rank
    total = len(rows)
    return {"run": str(choice.run.path), "model": choice.to_dict(), "reference": ref_name or choice.name,
            "settings": used_settings or settings,
            "n_pairs": total, "pairs": rows[:top] if top else rows}


# -- text output ------------------------------------------------------------------------------------------------------


def _f(x: float) -> str:
    return f"{x:+.3f}" if abs(x) < 1e4 else f"{x:+.3e}"


def format_pair(result: dict, max_tokens: int = 12) -> str:
    """A readable table of :func:`inspect_pair`'s result (the CLI's output without --json)."""
    num = result["numbers"]
    s = num["settings"]
    lines = [f"sample {result['sample']} (id {result['id']}, {result['lang']}) of {result['data']} · model "
             f"{result['model']['label']} · reference {result['reference']['label']}",
             f"objective {s['objective']} · β {s['beta']:g} · λ {s['lambda']:g}"
             + (f" · γ {s['gamma']:g}" if s["objective"] == "simpo" else "")]
    if result["reference"].get("note"):
        lines.append(f"note: {result['reference']['note']}")
    for pair, n in zip(result["pairs"], num["pairs"]):
        head = "English prompt" if pair["direction"] == "en" else "target prompt"
        lines += ["", f"{head}: {pair['prompt']}"]
        lines.append(f"  {'answer':<12} {'lang':<5} {'tokens':>6} {'log π':>10} {'log π_ref':>10} {'reward':>9}")
        for side, mark, reward in (("chosen", "✓ chosen", n["reward_chosen"]),
                                   ("rejected", "✗ rejected", n["reward_rejected"])):
            a = pair[side]
            lines.append(f"  {mark:<12} {a['lang']:<5} {a['n_tokens']:>6} {a['logp']:>10.3f} {a['ref_logp']:>10.3f} "
                         f"{reward:>+9.4f}")
            toks = a.get("tokens", [])[:max_tokens]
            shown = " ".join(f"{t['text']!r}:{t['logp']:.2f}/{t['ref_logp']:.2f}" for t in toks)
            more = f" … (+{len(a['tokens']) - max_tokens})" if len(a.get("tokens", [])) > max_tokens else ""
            lines.append(f"    per token (π/π_ref): {shown}{more}")
        lines.append(f"  margin {_f(n['margin'])} · pair loss {n['loss']:.4f} · weight {n['weight']:.4f} · "
                     f"push ✓ {n['push_chosen']:.4f} / ✗ {n['push_rejected']:.4f}")
    t = num["total"]
    lines += ["", f"total loss of the sample {t['loss']:.4f} = λ·NLL ({t['lambda']:g} × {t['nll']:.4f}) + (1 − λ)·mean "
              f"pair loss ({1 - t['lambda']:g} × {t['pair_term']:.4f})"
              + (f" + anchor {t['anchor']:.4f}" if "anchor" in t else "")
              + (f" + English NLL {t['en_nll']:.4f}" if "en_nll" in t else ""),
              "weight: " + "; ".join(num["formula"])]
    return "\n".join(lines)


def format_hardest(result: dict) -> str:
    s = result["settings"]
    lines = [f"{result['n_pairs']} pairs of {result['run']} under {result['model']['label']} (reference "
             f"{display_name(result['reference'])}), objective {s['objective']}, β {s['beta']:g}; hardest first",
             f"{'rank':>4} {'sample':>6} {'dir':<4} {'margin':>9} {'loss':>8} {'weight':>8}  prompt"]
    for r in result["pairs"]:
        prompt = r["prompt"] if len(r["prompt"]) <= 60 else r["prompt"][:57] + "…"
        lines.append(f"{r['rank']:>4} {r['sample']:>6} {r['direction']:<4} {r['margin']:>+9.4f} {r['loss']:>8.4f} "
                     f"{r['weight']:>8.4f}  {prompt}")
    return "\n".join(lines)
