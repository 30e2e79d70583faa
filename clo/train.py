"""Training: CLO on TRL's DPOTrainer, the SFT baselines on TRL's SFTTrainer, and the run loop.

    python -m clo train --method clo --lang sw --model default --data demo --max-steps 2 --out runs/smoke
    python -m clo train --preset demo --method clo --lang sw --data demo
    python -m clo train --config runs/smoke/config.yaml      # reproduce a run

Pieces, in dependency order:

- :class:`TrainSpec` — what a run is (the content of ``config.yaml``), validated before anything is written;
- :func:`apply_scope` — which parameters train (``attention`` / ``full`` / ``lora``);
- :class:`CLOTrainer` — TRL's DPOTrainer with CLO's loss, both directions of a sample in one batch, and
  reference log-probs cached on disk;
- :class:`RunCallback` — ``metrics.jsonl``, a live queue for the UI, and a cooperative stop;
- :func:`run_training` — one function used by the CLI, the app's worker and the tests.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import threading
import time
import traceback
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from clo.languages import get_language
from clo.runs import fault_point

__all__ = [
    "METHODS",
    "SCOPES",
    "TrainSpec",
    "SpecError",
    "load_recipe",
    "list_recipes",
    "find_attention_modules",
    "apply_scope",
    "run_training",
    "resume_training",
    "TrainResult",
    "RECIPES_DIR",
]

log = logging.getLogger(__name__)
RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"

# method -> (trainer family, what it trains on)
METHODS = {
    "clo": "Cross-Lingual Optimization: λ·NLL(target) + (1-λ)·cross-lingual DPO",
    "sft": "NLL on English and target pairs",
    "sft-tgt": "NLL on target pairs only",
    "sft-eng": "NLL on English pairs only",
    "sft-dpo": "sft, then standard DPO on the cross-lingual pairs",
}
SCOPES = {
    "attention": "only attention projections train (the paper)",
    "full": "every parameter trains",
    "lora": "LoRA adapters (on attention or all linear layers); reference = adapters disabled",
}
SFT_ROWS = {"sft": ("en", "tgt"), "sft-tgt": ("tgt",), "sft-eng": ("en",), "sft-dpo": ("en", "tgt")}


class SpecError(ValueError):
    """An invalid training setting; the message names the setting and what is allowed."""


class TrainingStopped(Exception):
    """A stop request arrived before the first optimizer step (while loading or in the reference pass)."""


@dataclass
class TrainSpec:
    """Everything a run needs. Written to ``config.yaml``; ``clo train --config`` reads it back."""

    method: str = field(default="clo", metadata={"help": f"one of {', '.join(METHODS)}"})
    lang: str = field(default="sw", metadata={"help": "target language code (see `clo langs`)"})
    model: str = field(default="default", metadata={"help": "bundled name, run directory, local folder or cached HF id"})
    data: str = field(default="demo", metadata={"help": "cross-lingual JSONL/CSV file, or 'demo' for the bundled set"})
    limit: int | None = field(default=None, metadata={"help": "use only the first N samples"})
    scope: str = field(default="attention", metadata={"help": f"one of {', '.join(SCOPES)}"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank (scope lora)"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (scope lora)"})
    lora_target: str = field(default="attention", metadata={"help": "LoRA on 'attention' or 'all-linear' layers"})
    lr: float = field(default=5e-5, metadata={"help": "learning rate"})
    beta: float = field(default=0.1, metadata={"help": "DPO temperature β"})
    lam: float = field(default=0.5, metadata={"help": "λ in λ·NLL + (1-λ)·CL, in [0, 1] (YAML key: lambda)"})
    epochs: float = field(default=1.0, metadata={"help": "passes over the data"})
    batch_size: int = field(default=8, metadata={"help": "samples per step (CLO: 2 pairs = 4 sequences each)"})
    grad_accum: int = field(default=1, metadata={"help": "gradient accumulation steps"})
    max_steps: int | None = field(default=None, metadata={"help": "stop after this many optimizer steps (sft-dpo: per stage)"})
    max_length: int = field(default=256, metadata={"help": "max tokens of prompt + answer"})
    warmup_ratio: float = field(default=0.0, metadata={"help": "share of steps with linear warm-up"})
    scheduler: str = field(default="linear", metadata={"help": "learning-rate schedule (transformers name)"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    seed: int = field(default=42, metadata={"help": "random seed (data order, LoRA init)"})
    group_by_length: bool = field(default=False, metadata={
        "help": "batch samples of similar length together (less padding, faster steps; order stays shuffled)"})
    save_steps: int = field(default=0, metadata={"help": "also save the model every N steps (0: only at the end)"})
    gradient_checkpointing: bool = field(default=False, metadata={
        "help": "recompute activations in the backward pass: less memory, ~30% slower (for 7B+ models on a GPU)"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow model code from its repository"})

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Every setting checked before anything is written; the first problem is a SpecError naming the setting
        (as the YAML key and the CLI flag spell it) and what is allowed."""
        def need(ok: bool, msg: str):
            if not ok:
                raise SpecError(msg)

        def number(v) -> bool:  # a real number; YAML's true/false are not numbers
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        def whole(v) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        for name in ("method", "scope", "lora_target", "lang", "device", "scheduler", "model", "data"):
            v = getattr(self, name)
            need(isinstance(v, str), f"{name} must be text, got {v!r}.")
        need(self.method in METHODS, f"Unknown method {self.method!r}. Choose one of: {', '.join(METHODS)}.")
        need(self.scope in SCOPES, f"Unknown scope {self.scope!r}. Choose one of: {', '.join(SCOPES)}.")
        need(self.lora_target in ("attention", "all-linear"), "lora_target must be 'attention' or 'all-linear'.")
        try:
            lang = get_language(self.lang)
        except ValueError as e:
            raise SpecError(str(e)) from None
        need(lang.code != "en", "The target language must not be English: CLO pairs English with another language.")
        self.lang = lang.code
        for name in ("lr", "epochs"):
            v = getattr(self, name)
            need(number(v) and v > 0, f"{name} must be a positive number, got {v!r}.")
        for name in ("batch_size", "grad_accum", "max_length", "lora_r", "lora_alpha"):
            v = getattr(self, name)
            need(whole(v) and v > 0, f"{name} must be a positive integer, got {v!r}.")
        need(number(self.beta) and self.beta > 0, f"beta must be a positive number, got {self.beta!r}.")
        need(number(self.lam) and 0.0 <= self.lam <= 1.0, f"lambda must be in [0, 1], got {self.lam!r}.")
        need(self.max_steps is None or (whole(self.max_steps) and self.max_steps > 0),
             f"max_steps must be a positive integer, got {self.max_steps!r}.")
        need(self.limit is None or (whole(self.limit) and self.limit > 0),
             f"limit must be a positive integer, got {self.limit!r}.")
        for name in ("weight_decay", "warmup_ratio"):
            v = getattr(self, name)
            need(number(v), f"{name} must be a finite number, got {v!r}.")
        need(0.0 <= self.warmup_ratio < 1.0, f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}.")
        need(self.weight_decay >= 0, f"weight_decay must be ≥ 0, got {self.weight_decay!r}.")
        need(self.device in ("auto", "cpu", "cuda"), f"device must be auto, cpu or cuda, got {self.device!r}.")
        for name in ("trust_remote_code", "gradient_checkpointing", "group_by_length"):  # "false" in YAML must not read as true
            need(isinstance(getattr(self, name), bool), f"{name} must be true or false, got {getattr(self, name)!r}.")
        for name in ("seed", "save_steps"):
            v = getattr(self, name)
            need(whole(v) and v >= 0, f"{name} must be a whole number ≥ 0, got {v!r}.")
        schedulers = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                      "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "warmup_stable_decay")
        need(self.scheduler in schedulers, f"Unknown scheduler {self.scheduler!r}. Choose one of: {', '.join(schedulers)}.")
        need(bool(self.model.strip()), "model must not be empty.")
        need(bool(self.data.strip()), "data must not be empty.")

    # -- YAML -----------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["lambda"] = d.pop("lam")
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> "TrainSpec":
        d = dict(d or {})
        if "lambda" in d:
            d["lam"] = d.pop("lambda")
        d.pop("description", None)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SpecError(f"{source}: unknown setting(s) {', '.join(unknown)}. Known: {', '.join(sorted(known - {'lam'}) + ['lambda'])}.")
        for f in fields(cls):  # YAML gives 5e-5 as a string; coerce numbers by the field's default type
            if f.name in d and isinstance(d[f.name], str) and f.name in ("lr", "beta", "lam", "epochs", "warmup_ratio", "weight_decay"):
                try:
                    d[f.name] = float(d[f.name])
                except ValueError:
                    key = "lambda" if f.name == "lam" else f.name
                    raise SpecError(f"{source}: {key} must be a number, got {d[f.name]!r}.") from None
        return cls(**d)


def list_recipes() -> dict[str, str]:
    """Named presets: ``recipes/<name>.yaml`` → their description line."""
    out = {}
    for p in sorted(RECIPES_DIR.glob("*.yaml")):
        try:
            d = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, OSError, UnicodeDecodeError):
            d = None
        out[p.stem] = str(d.get("description") or "") if isinstance(d, dict) else "(unreadable)"
    return out


def load_recipe(name_or_path: str) -> dict:
    """A preset by name (``demo``, ``paper``, …) or a YAML file path, as a dict of TrainSpec fields."""
    p = Path(name_or_path)
    if not p.suffix:  # a preset name: a file directly in recipes/, never a path out of it
        bad_name = not str(name_or_path).strip() or any(c in str(name_or_path) for c in "/\\") or str(name_or_path).startswith(".")
        p = RECIPES_DIR / f"{name_or_path}.yaml"
        if bad_name or not p.is_file():
            raise SpecError(f"Unknown preset {name_or_path!r}. Presets: {', '.join(list_recipes()) or 'none'}.")
    if not p.exists():
        raise SpecError(f"Config file {p} not found.")
    try:
        d = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise SpecError(f"{p}: not UTF-8 text; save the config as UTF-8 YAML.") from None
    except OSError as e:
        raise SpecError(f"{p}: cannot read it ({e.strerror or e}).") from None
    except yaml.YAMLError as e:  # safe_load: a !!python tag is refused here, never run
        mark = getattr(e, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise SpecError(f"{p}{where}: not valid YAML ({getattr(e, 'problem', None) or e}).") from None
    if not isinstance(d, dict):
        raise SpecError(f"{p}: expected a mapping of settings.")
    d.pop("description", None)
    return d


# ---------------------------------------------------------------------------------------------------
# Trainable scope
# ---------------------------------------------------------------------------------------------------


def _is_linear(module) -> bool:
    import torch.nn as nn

    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"  # GPT-2's Conv1D


def find_attention_modules(model) -> list[str]:
    """Names of the linear projections inside attention blocks, found by module type, not family names.

    Covers Llama/Qwen/Mistral/Gemma (``q_proj``…``o_proj``), GPT-2 (``attn.c_attn``/``attn.c_proj``), fused
    ``qkv_proj`` and others whose attention class is named ``*Attention*``/``*SelfAttention*``.
    """
    names = []
    for name, module in model.named_modules():
        cls = type(module).__name__
        if "Attention" not in cls or "CrossAttention" in cls:
            continue
        for child_name, child in module.named_modules():
            if child_name and _is_linear(child):
                full = f"{name}.{child_name}" if name else child_name
                if full not in names:
                    names.append(full)
    if not names:
        raise SpecError(
            f"Could not find attention projections in {type(model).__name__}: no module whose class name contains "
            "'Attention' holds linear layers. Use --scope full or --scope lora with lora_target all-linear."
        )
    return names


def apply_scope(model, spec: TrainSpec):
    """Set ``requires_grad`` for the chosen scope; for ``lora`` return a peft config (else None)."""
    if spec.scope == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return None
    attn = find_attention_modules(model)
    if spec.scope == "attention":
        for p in model.parameters():
            p.requires_grad_(False)
        modules = dict(model.named_modules())
        for name in attn:
            for p in modules[name].parameters():
                p.requires_grad_(True)
        return None
    from peft import LoraConfig

    # full module names: a short name such as GPT-2's c_proj would also match the MLP's c_proj
    targets = attn if spec.lora_target == "attention" else "all-linear"
    return LoraConfig(r=spec.lora_r, lora_alpha=spec.lora_alpha, lora_dropout=0.0, target_modules=targets,
                      task_type="CAUSAL_LM")


def count_trainable(model) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return train, total


# ---------------------------------------------------------------------------------------------------
# CLO trainer (TRL DPOTrainer + CLO loss)
# ---------------------------------------------------------------------------------------------------


GROUP_BATCHES = 8  # length grouping sorts within chunks of this many batches


class PairSampler:
    """Shuffles samples, never pairs: yields row indices ``2s, 2s+1`` together, so a batch of an even size
    always holds both directions of each of its samples."""

    def __init__(self, n_rows: int, seed: int, lengths: list[int] | None = None, batch_samples: int = 1):
        if n_rows % 2:
            raise ValueError("CLO datasets hold two rows per sample")
        self.n_samples = n_rows // 2
        self.seed, self.epoch = seed, 0
        # optional length grouping: tokens of each sample's longest sequence, and samples per batch
        self.lengths = [max(lengths[2 * s], lengths[2 * s + 1]) for s in range(self.n_samples)] if lengths else None
        self.batch_samples = max(1, batch_samples)

    def set_epoch(self, epoch: int) -> None:
        """Called by the trainer before each epoch. The order of an epoch depends only on (seed, epoch), so a
        run resumed from a checkpoint (``clo runs resume``) sees the order an uninterrupted run would."""
        self.epoch = epoch

    def __len__(self):
        return 2 * self.n_samples

    def __iter__(self):
        import torch

        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1  # without set_epoch the next pass still gets a new order
        order = torch.randperm(self.n_samples, generator=generator).tolist()
        if self.lengths is not None:
            order = self._grouped(order, generator)
        for s in order:
            yield 2 * s
            yield 2 * s + 1

    def _grouped(self, order: list[int], generator) -> list[int]:
        """Length grouping: within each chunk of ``GROUP_BATCHES`` batches of the shuffled order, samples are
        sorted by length and cut into batches, and those batches are shuffled. Batches then hold samples of
        similar length (less padding for the collator to add) while the epoch order stays random."""
        import torch

        b, out = self.batch_samples, []
        for i in range(0, len(order), b * GROUP_BATCHES):
            chunk = sorted(order[i : i + b * GROUP_BATCHES], key=lambda s: -self.lengths[s])
            batches = [chunk[j : j + b] for j in range(0, len(chunk), b)]
            for k in torch.randperm(len(batches), generator=generator).tolist():
                out += batches[k]
        return out


def _make_collator(pad_token_id: int, max_length: int):
    import torch
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    base = DataCollatorForPreference(pad_token_id=pad_token_id, max_length=max_length)

    debug = bool(os.environ.get(DEBUG_SAMPLES_ENV))

    def collate(examples):
        out = base(examples)
        out["is_target"] = torch.tensor([int(e["is_target"]) for e in examples])  # TRL's collator carries the ref log-probs
        if debug and "sample" in examples[0]:  # for _debug_watch only; never reaches the model
            out["sample"] = torch.tensor([int(e["sample"]) for e in examples])
        return out

    return collate


# ---------------------------------------------------------------------------------------------------
# Several processes (`accelerate launch`): decisions every rank must share, and a sample-level diagnostic
# ---------------------------------------------------------------------------------------------------


def _all_agree(flag: bool, op: str = "any") -> bool:
    """``flag`` combined over all processes (``any``: true if one rank says so; ``all``: only if every rank
    does). One process: ``flag`` itself, no collective. Every rank must call it at the same point."""
    from accelerate import PartialState

    state = PartialState()
    if state.num_processes <= 1:
        return bool(flag)
    import torch
    import torch.distributed as dist

    t = torch.tensor([int(bool(flag))], device=state.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "any" else dist.ReduceOp.MIN)
    return bool(t.item())


def _use_cpu(spec) -> bool:
    import torch

    return spec.device == "cpu" or (spec.device == "auto" and not torch.cuda.is_available())


def _stop_requested(run, stop_event) -> bool:
    """The stop decision, the same on every rank: the main process reads the run's STOP file (the only one
    that owns the run directory; on several machines the others may not even see it), any rank's own
    ``stop_event`` (e.g. its Ctrl-C) counts, and the flags are combined so that no rank leaves a collective
    that the others still wait in."""
    from accelerate import PartialState

    local = stop_event is not None and stop_event.is_set()
    if not local and run is not None and PartialState().is_main_process:
        local = run.stop_requested()
    return _all_agree(local, "any")


# CLO_DEBUG_SAMPLES=<path>: each process appends JSON lines to <path>.rank<N>: one per training micro-batch
# (CLO: the sample indices and directions in it; SFT: a hash of each row's tokens), the reference-cache
# decision, and at the end of each stage its step count, stop flag and a SHA-256 of its trainable weights.
# Used by tests/test_distributed.py to prove that ranks see disjoint data and end with identical weights.
DEBUG_SAMPLES_ENV = "CLO_DEBUG_SAMPLES"


def _debug_write(row: dict) -> None:
    base = os.environ.get(DEBUG_SAMPLES_ENV)
    if not base:
        return
    from accelerate import PartialState

    rank = PartialState().process_index
    with open(f"{base}.rank{rank}", "a", encoding="utf-8") as f:
        f.write(json.dumps({"rank": rank, "pid": os.getpid(), **row}) + "\n")


def _debug_watch(trainer, stage: str) -> None:
    """Record what each training micro-batch of ``trainer`` holds (only with CLO_DEBUG_SAMPLES set)."""
    if not os.environ.get(DEBUG_SAMPLES_ENV):
        return
    inner = trainer.training_step

    def training_step(model, inputs, *args, **kwargs):
        inputs = dict(inputs)
        samples = inputs.pop("sample", None)
        row = {"event": "batch", "stage": stage, "step": trainer.state.global_step}
        if samples is not None:
            row["samples"], row["is_target"] = samples.tolist(), inputs["is_target"].tolist()
        else:
            ids, mask = inputs["input_ids"], inputs.get("attention_mask")
            rows = list(ids) if mask is None else [r[m.bool()] for r, m in zip(ids, mask)]  # padding left out
            row["rows"] = [hashlib.sha256(str(r.tolist()).encode()).hexdigest()[:16] for r in rows]
        _debug_write(row)
        return inner(model, inputs, *args, **kwargs)

    trainer.training_step = training_step


def _debug_end(trainer, stage: str, stopped: bool) -> None:
    if not os.environ.get(DEBUG_SAMPLES_ENV):
        return
    model = trainer.accelerator.unwrap_model(trainer.model)
    h, names = hashlib.sha256(), []
    for name, p in sorted(model.named_parameters(), key=lambda np: np[0]):
        if p.requires_grad:
            h.update(name.encode())
            h.update(p.detach().float().cpu().numpy().tobytes())
            names.append(name)
    _debug_write({"event": "end", "stage": stage, "steps": trainer.state.global_step, "stopped": stopped,
                  "checksum": h.hexdigest(), "params": names})


_EXOTIC_HEAD_SCALES = ("logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")


def add_selective_head(model) -> bool:
    """Let ``model(..., labels=L, clo_logps=True)`` return per-token log-probs of the labelled tokens only.

    TRL's fused LM head scores every position (prompt and padding included) in tiles unless Triton is
    available; on a CPU that is most of a CLO step (profiled: ~75% of step time for SmolLM2). This head runs
    the backbone, then projects only the answer positions. It patches ``forward`` (not a submodule call), so
    DDP's hooks still see the forward. Returns False (and patches nothing) for heads with exotic scaling.
    """
    import torch

    text_config = model.config.get_text_config()
    if any(getattr(text_config, a, None) is not None for a in _EXOTIC_HEAD_SCALES):
        return False
    softcap = getattr(text_config, "final_logit_softcapping", None)
    inner = model.forward

    @functools.wraps(inner)
    def forward(*args, clo_logps: bool = False, labels=None, **kwargs):
        if not clo_logps:
            return inner(*args, labels=labels, **kwargs) if labels is not None else inner(*args, **kwargs)
        kwargs["use_cache"] = False
        hidden = model.base_model(*args, **kwargs).last_hidden_state[:, :-1]  # (B, T-1, H)
        targets = labels[:, 1:]
        mask = targets != -100  # answer tokens only
        head = model.get_output_embeddings()
        logits = head(hidden[mask]).float()  # (N, V): N answer tokens, not B*T
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        logp = logits.log_softmax(-1).gather(-1, targets[mask].unsqueeze(-1)).squeeze(-1)  # (N,)
        return torch.zeros(mask.shape, dtype=logp.dtype, device=logp.device).masked_scatter(mask, logp)

    model.forward = forward
    return True


@functools.cache
def _build_clo_trainer_class():
    """Defined lazily so that importing clo.train does not import TRL/torch."""
    import torch
    from safetensors.torch import load_file, save_file
    from torch.utils.data import DataLoader
    from trl import DPOConfig, DPOTrainer

    from clo.losses import LOSS_FUNCTIONS

    @dataclass
    class CLOConfig(DPOConfig):
        """TRL's DPOConfig plus CLO's own fields."""

        clo_lambda: float = field(default=0.5, metadata={"help": "weight of the target-only NLL term"})
        clo_loss: str = field(default="clo", metadata={"help": "preference loss variant: clo or dpo (λ = 0)"})
        ref_cache_dir: str | None = field(default=None, metadata={"help": "folder for cached reference log-probs"})

        def __post_init__(self):
            super().__post_init__()
            if not 0.0 <= self.clo_lambda <= 1.0:
                raise ValueError("clo_lambda must be in [0, 1]")
            if self.clo_loss not in LOSS_FUNCTIONS:
                raise ValueError(f"clo_loss must be one of {list(LOSS_FUNCTIONS)}")

    class CLOTrainer(DPOTrainer):
        """DPOTrainer whose loss is CLO's. TRL keeps tokenization, collation, the fused LM head, the optimizer
        loop and logging; this class changes only what CLO changes."""

        _tag_names = ["trl", "dpo", "clo"]

        def __init__(self, *args, events=None, should_stop=None, **kwargs):
            self.clo_events = events  # set first: the reference pass runs inside DPOTrainer.__init__
            self.clo_should_stop = should_stop
            self.ref_cache_hit = None
            self.ref_pass_seconds = None
            self.selective_head = None  # decided once TRL has built the model (inside __init__)
            super().__init__(*args, **kwargs)
            self._ensure_head()

        def _ensure_head(self) -> None:
            if self.selective_head is None:
                patched = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
                on_cuda = self.accelerator.device.type == "cuda"  # TRL's head is compact (Triton) there: keep it
                self.selective_head = not on_cuda and add_selective_head(patched)

        def _token_logps(self, model, inputs):
            """(B, T-1) log-probs of answer tokens (0 elsewhere), through the selective or TRL's fused head."""
            labels = inputs["input_ids"].masked_fill(inputs["completion_mask"] == 0, -100)
            kwargs = dict(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=labels,
                          use_cache=False)
            if self.selective_head:
                return model(**kwargs, clo_logps=True)
            return model(**kwargs, fused_lm_head=True).log_probs

        def compute_ref_log_probs(self, model, inputs):
            if not self.selective_head:
                return super().compute_ref_log_probs(model, inputs)
            import contextlib

            from trl.trainer.utils import use_adapter

            ctx = contextlib.nullcontext()
            if self.ref_model is None and hasattr(self.model, "peft_config"):
                ctx = use_adapter(self.accelerator.unwrap_model(self.model), adapter_name=None)
            with torch.no_grad(), ctx:
                per_token = self._token_logps(model, inputs)
            return per_token.sum(dim=1).chunk(2, dim=0)

        def _set_signature_columns_if_needed(self):
            super()._set_signature_columns_if_needed()
            if "is_target" not in self._signature_columns:
                self._signature_columns = list(self._signature_columns) + ["is_target", "sample"]

        def _get_train_sampler(self, train_dataset=None):
            ds = train_dataset if train_dataset is not None else self.train_dataset
            if self.args.train_sampling_strategy != "group_by_length":
                return PairSampler(len(ds), self.args.seed)
            lengths = [len(p) + max(len(c), len(r))
                       for p, c, r in zip(ds["prompt_ids"], ds["chosen_ids"], ds["rejected_ids"])]
            return PairSampler(len(ds), self.args.seed, lengths, self.args.per_device_train_batch_size // 2)

        # -- reference log-probs, cached on disk ------------------------------------------------------
        def _ref_cache_key(self, dataset) -> str:
            h = hashlib.sha256()
            h.update(str(self._precompute_model_hash).encode())
            h.update(str(self.args.max_length).encode())
            for col in ("prompt_ids", "chosen_ids", "rejected_ids"):
                h.update(json.dumps(list(dataset[col])).encode())
            return h.hexdigest()[:32]

        def _precompute_ref_logps(self, dataset, name: str, batch_size: int):
            self._ensure_head()
            cache_dir = Path(self.args.ref_cache_dir) if self.args.ref_cache_dir else None
            key = self._ref_cache_key(dataset)
            path = cache_dir / f"{key}.safetensors" if cache_dir else None
            t = None
            if path is not None and path.exists():
                try:
                    t = load_file(str(path))
                    if t["ref_chosen_logps"].shape != t["ref_rejected_logps"].shape or len(t["ref_chosen_logps"]) != len(dataset):
                        t = None
                except Exception as e:  # unreadable: recompute (and rewrite) rather than fail
                    log.warning("reference cache %s unreadable (%s); recomputing", path, e)
                    t = None
            # a hit only if every rank has the file: ranks taking different branches would leave some waiting
            # in the reference pass's collectives (another job writing the file meanwhile; several machines)
            self.ref_cache_hit = _all_agree(t is not None, "all")
            _debug_write({"event": "ref_cache", "hit": self.ref_cache_hit})
            if self.ref_cache_hit:
                chosen, rejected = t["ref_chosen_logps"], t["ref_rejected_logps"]
            else:
                t0 = time.perf_counter()
                if self.clo_events:
                    self.clo_events({"phase": "reference", "rows": len(dataset)})
                loader = DataLoader(dataset, batch_size=batch_size, collate_fn=self.data_collator, shuffle=False)
                loader = self.accelerator.prepare(loader)
                model = self.ref_model or self.model
                chosen, rejected = [], []
                for batch in loader:
                    if self.clo_should_stop is not None and self.clo_should_stop():
                        raise TrainingStopped("stopped during the reference pass, before the first step")
                    batch = {k: v for k, v in batch.items() if k not in ("is_target", "sample")}
                    c, r = self.compute_ref_log_probs(model, batch)
                    c, r = self.accelerator.gather_for_metrics((c, r))
                    chosen.append(c.float().cpu())
                    rejected.append(r.float().cpu())
                    fault_point("ref_pass")  # test-only (CLO_FAULT); a no-op otherwise
                chosen, rejected = torch.cat(chosen), torch.cat(rejected)
                self.ref_pass_seconds = time.perf_counter() - t0
                if path is not None and self.accelerator.is_main_process:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_suffix(f".tmp{os.getpid()}")
                    save_file({"ref_chosen_logps": chosen.contiguous(), "ref_rejected_logps": rejected.contiguous()}, str(tmp))
                    os.replace(tmp, path)
            self.accelerator.wait_for_everyone()
            dataset = dataset.add_column("ref_chosen_logps", chosen.tolist())
            return dataset.add_column("ref_rejected_logps", rejected.tolist())

        # -- loss -----------------------------------------------------------------------------------
        def _compute_loss(self, model, inputs, return_outputs):
            mode = "train" if self.model.training else "eval"
            completion_mask = inputs["completion_mask"]
            shift_mask = completion_mask[..., 1:]
            per_token = self._token_logps(model, inputs)[:, -shift_mask.size(1):]
            logps = per_token.sum(dim=1)
            policy_chosen, policy_rejected = logps.chunk(2, dim=0)  # batch is [chosen..., rejected...]
            chosen_tokens = shift_mask.chunk(2, dim=0)[0].sum(dim=1)
            if self.precompute_ref_logps:
                ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
            else:
                ref_chosen, ref_rejected = self.compute_ref_log_probs(
                    self.ref_model or self.model, {k: v for k, v in inputs.items() if k != "is_target"})
            fn = LOSS_FUNCTIONS[self.args.clo_loss]
            out = fn(policy_chosen, policy_rejected, ref_chosen.to(logps.dtype), ref_rejected.to(logps.dtype),
                     is_target=inputs["is_target"], chosen_tokens=chosen_tokens, beta=self.beta,
                     lam=self.args.clo_lambda)
            gathered = {}
            for k, v in out.metrics().items():
                gathered[k] = self.accelerator.gather_for_metrics(torch.tensor(v, device=logps.device)).mean().item()
            for k, v in gathered.items():
                if k != "loss":
                    self._metrics[mode][k].append(v)
            if mode == "train":
                n = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
                self._total_train_tokens += n
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
            return (out.loss, per_token) if return_outputs else out.loss

    # picklable as clo.train.CLOConfig: a trainer checkpoint (save_steps) stores its args with torch.save
    CLOConfig.__qualname__ = "CLOConfig"
    globals()["CLOConfig"] = CLOConfig
    return CLOConfig, CLOTrainer


# ---------------------------------------------------------------------------------------------------
# Callback: metrics.jsonl, live queue, stop
# ---------------------------------------------------------------------------------------------------

METRIC_KEYS = {  # logged name -> metrics.jsonl name
    "loss": "loss",
    "sft_loss": "sft_loss",
    "cl_loss": "cl_loss",
    "rewards_chosen": "rewards_chosen",
    "rewards_rejected": "rewards_rejected",
    "margin": "margin",
    "accuracy": "accuracy",
    "learning_rate": "lr",
    "grad_norm": "grad_norm",
    "en/margin": "en_margin",
    "tgt/margin": "tgt_margin",
    "en/accuracy": "en_accuracy",
    "tgt/accuracy": "tgt_accuracy",
    "mean_token_accuracy": "token_accuracy",
    "num_tokens": "num_tokens",
}


def _make_callback_class():
    from transformers import TrainerCallback

    class RunCallback(TrainerCallback):
        """Writes one metrics line per logged step, feeds ``events`` (a callable) for live views, and ends
        training cleanly after the current step when ``stop_event`` is set."""

        def __init__(self, run, stage: str, events=None, stop_event=None, step_offset: int = 0, save=None,
                     save_every: int = 0, checkpoint: bool = False):
            self.run, self.stage, self.events, self.stop_event = run, stage, events, stop_event
            self.save, self.save_every = save, save_every
            self.checkpoint = checkpoint  # with each periodic save, also the trainer's state (for resume)
            self.step_offset = step_offset
            self.t_last = None
            self.tokens_last = 0
            self.t_start = time.perf_counter()

        def on_train_begin(self, args, state, control, **kw):
            self.t_last = time.perf_counter()
            self.t_start = self.t_last
            if state.global_step and self.run is not None:  # resumed: the stage's clock goes on from the checkpoint
                done = [r for r in self.run.metrics() if r.get("stage") == self.stage]
                self.t_start -= float(done[-1].get("elapsed_s") or 0.0) if done else 0.0
            self._emit({"phase": "train", "stage": self.stage, "max_steps": state.max_steps + self.step_offset})

        def _stopping(self) -> bool:  # the same answer on every rank (called by all of them, in step)
            return _stop_requested(self.run, self.stop_event)

        def on_step_end(self, args, state, control, model=None, **kw):
            if self._stopping():
                control.should_training_stop = True
            elif self.save and self.save_every and state.global_step % self.save_every == 0:
                self.save(model)  # periodic save: a later crash keeps this step's model
                self.run.set_status("running", saved_step=state.global_step + self.step_offset)
                if self.checkpoint:
                    control.should_save = True  # the trainer writes its checkpoint after logging: see on_save

        def on_pre_optimizer_step(self, args, state, control, **kw):
            fault_point("step", state.global_step + self.step_offset + 1)  # test-only (CLO_FAULT)

        def on_save(self, args, state, control, **kw):
            """The trainer has written ``output_dir/checkpoint-N`` (weights, optimizer, scheduler, RNG,
            trainer_state.json): publish it whole as the run's ``checkpoint/``, replacing the previous one."""
            from accelerate import PartialState

            PartialState().wait_for_everyone()  # every rank has written its RNG state
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if self.run is not None and not self.run.readonly and folder.is_dir():
                self.run.save_checkpoint(folder)
                self.run.set_status("running", checkpoint_step=state.global_step + self.step_offset)

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            if "train_runtime" in logs:  # the final summary line
                return
            now = time.perf_counter()
            row = {"step": state.global_step + self.step_offset, "stage": self.stage,
                   "epoch": round(float(state.epoch or 0.0), 4)}
            for k, name in METRIC_KEYS.items():
                if k in logs and logs[k] is not None:
                    row[name] = float(logs[k])
            tokens = row.get("num_tokens")
            if tokens is not None and self.t_last is not None and now > self.t_last:
                row["tokens_per_s"] = round((tokens - self.tokens_last) / (now - self.t_last), 2)
                self.tokens_last = tokens
            row["elapsed_s"] = round(now - self.t_start, 2)
            row["max_steps"] = state.max_steps + self.step_offset
            self.t_last = now
            if self.run is not None:
                self.run.append_metrics(row)
            self._emit({"phase": "train", "metrics": row})
            if self._stopping():
                control.should_training_stop = True  # checked by the trainer right after logging

        def _emit(self, event):
            if self.events is not None:
                try:
                    self.events(event)
                except Exception:  # a broken viewer must not break training
                    log.exception("event sink failed")

    return RunCallback


# ---------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    state: str  # finished | stopped
    run_dir: Path
    steps: int
    seconds: float
    ref_cache_hit: bool | None = None
    ref_pass_seconds: float | None = None
    trainable: int = 0
    total_params: int = 0
    final: dict = field(default_factory=dict)


def _sft_dataset(records, rows: tuple[str, ...]):
    from datasets import Dataset

    items = []
    for r in records:
        if "en" in rows:
            items.append({"prompt": [{"role": "user", "content": r["instruction_en"]}],
                          "completion": [{"role": "assistant", "content": r["response_en"]}]})
        if "tgt" in rows:
            items.append({"prompt": [{"role": "user", "content": r["instruction"]}],
                          "completion": [{"role": "assistant", "content": r["response"]}]})
    return Dataset.from_list(items)


def _common_args(spec: TrainSpec, out_dir: Path, per_device: int, device: str) -> dict:
    import torch

    on_gpu = device.startswith("cuda")
    return dict(
        output_dir=str(out_dir / ".trainer"),
        learning_rate=spec.lr,
        num_train_epochs=spec.epochs,
        max_steps=spec.max_steps or -1,
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=spec.grad_accum,
        lr_scheduler_type=spec.scheduler,
        warmup_steps=spec.warmup_ratio,
        weight_decay=spec.weight_decay,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=spec.seed,
        data_seed=spec.seed,
        bf16=on_gpu and torch.cuda.is_bf16_supported(),
        use_cpu=not on_gpu,
        dataloader_num_workers=0,
        max_length=spec.max_length,
        gradient_checkpointing=spec.gradient_checkpointing,  # TRL turns it on by default; small models don't need it
        disable_tqdm=True,  # progress is shown by whoever listens to events (the CLI's bar, the app's charts)
        remove_unused_columns=True,
        ddp_find_unused_parameters=False,  # every trainable parameter gets a gradient: skip DDP's extra graph walk
        # CLO: PairSampler's own grouping (pairs stay together); SFT: transformers' LengthGroupedSampler
        train_sampling_strategy="group_by_length" if spec.group_by_length else "random",
    )


def _check_prompt_lengths(tokenizer, prompts: list, spec: TrainSpec) -> None:
    """Every prompt must leave room for answer tokens; otherwise say which and by how much."""
    too_long = []
    for i, prompt in enumerate(prompts):
        n = len(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=False))
        if n >= spec.max_length:
            too_long.append((i, n))
    if too_long:
        worst = max(n for _, n in too_long)
        raise SpecError(
            f"max_length {spec.max_length} is shorter than {len(too_long)} prompt(s) (longest: {worst} tokens with "
            f"the chat template), which would leave no answer tokens to learn from. Use --max-length {worst + 64} "
            "or more."
        )


def _writer(spec: TrainSpec, model, tokenizer, base_is_adapter: bool = False):
    """A function that writes ``model`` + tokenizer into a folder (used through RunDir.save_model)."""

    def write(folder: Path):
        m = model
        if hasattr(m, "peft_config") and (spec.method == "sft-dpo" or base_is_adapter):
            # the adapter sits on a merged model (SFT stage, or a LoRA run used as base): save full weights,
            # merging a copy so that the live model keeps training after a periodic save
            import copy

            m = copy.deepcopy(m).merge_and_unload()
        m.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
        if hasattr(m, "peft_config"):
            base = str(Path(spec.model).resolve()) if Path(spec.model).exists() else spec.model
            (folder / "clo_base.json").write_text(json.dumps({"base_model": base}))

    return write


def run_training(spec: TrainSpec, run_dir: str | Path, *, events=None, stop_event: threading.Event | None = None,
                 create: bool = True, resume_from: str | Path | None = None) -> TrainResult:
    """Train one run into ``run_dir``. Writes config.yaml first, then status/metrics/model as it goes.

    ``events(dict)`` receives live progress (phase changes, one metrics row per step); ``stop_event`` ends
    training after the current step, keeping the model of that step. Raises on failure after marking the run
    ``failed`` with the error text; a finished or stopped run has a loadable ``model/``. ``resume_from``: a
    trainer checkpoint to continue from (see :func:`resume_training`).
    """
    from clo.data import load_crosslingual
    from clo.models import resolve_model
    from clo.runs import RunDir

    spec.validate()
    resolve_model(spec.model, trust_remote_code=spec.trust_remote_code)  # a missing or unsafe model or bad data fails before any folder is made
    records = load_crosslingual(spec.data, spec.lang)
    if spec.limit:
        records = records[: spec.limit]
    from accelerate import PartialState

    # one process normally; several under `accelerate launch` / torchrun. CPU processes need cpu=True, else
    # accelerate sees no distributed setup and every rank would act as the main one (and write the run)
    dist = PartialState(cpu=_use_cpu(spec))
    if dist.is_main_process:
        run = RunDir.create(run_dir, spec.to_dict()) if create else RunDir(run_dir)
    dist.wait_for_everyone()
    if not dist.is_main_process:
        run = RunDir(run_dir, readonly=True)  # one run directory, written by the main process only
    t0 = time.perf_counter()
    emit = (events or (lambda e: None)) if dist.is_main_process else (lambda e: None)
    try:
        run.set_status("running", phase="loading model", n_samples=len(records))
        emit({"phase": "loading", "model": spec.model})
        result = _train_stages(spec, run, records, emit, stop_event, resume_from)
        result.seconds = time.perf_counter() - t0
        run.set_status(result.state, phase="done", step=result.steps, duration_s=round(result.seconds, 1),
                       ref_cache_hit=result.ref_cache_hit, ref_pass_s=result.ref_pass_seconds,
                       trainable_params=result.trainable, total_params=result.total_params)
        emit({"phase": "done", "state": result.state})
        return result
    except TrainingStopped as e:
        kept = run.status().get("saved_step") if run.has_model() else None  # a resumed run's earlier model
        note = f"{e}: the model saved earlier (step {kept}) is kept" if kept else f"{e}: no model saved"
        if kept and run.checkpoint_step():
            note += f", and so is the checkpoint of step {run.checkpoint_step()} (resume it again from there)"
        run.set_status("stopped", phase="done", step=kept or 0, note=note,
                       duration_s=round(time.perf_counter() - t0, 1))
        emit({"phase": "done", "state": "stopped"})
        return TrainResult(state="stopped", run_dir=run.path, steps=kept or 0, seconds=time.perf_counter() - t0)
    except BaseException as e:
        msg = f"{type(e).__name__}: {e}"
        state = "stopped" if isinstance(e, KeyboardInterrupt) else "failed"
        run.set_status(state, error=msg, traceback=traceback.format_exc()[-4000:],
                       duration_s=round(time.perf_counter() - t0, 1))
        emit({"phase": "done", "state": state, "error": msg})
        raise


def _train_stages(spec: TrainSpec, run, records, emit, stop_event, resume_from=None) -> TrainResult:
    from clo.models import clo_home, load_model

    from accelerate import PartialState

    device = str(PartialState().device) if spec.device == "auto" else spec.device  # each process its own device
    # fp32 weights: on a GPU, bf16 autocast computes and AdamW updates fp32 masters (pure bf16 weights would
    # round most updates at lr 5e-5 away)
    loaded = load_model(spec.model, device=device, dtype="float32", trust_remote_code=spec.trust_remote_code,
                        progress=lambda m: emit({"phase": "loading", "message": m}))
    def should_stop() -> bool:  # agreed by all ranks: every rank must call it at the same point
        return _stop_requested(run, stop_event)

    if should_stop():
        raise TrainingStopped("stopped while loading the model, before the first step")
    base_is_adapter = hasattr(loaded.model, "peft_config")
    if base_is_adapter:  # a LoRA run as the starting point: train on its merged weights
        loaded.model = loaded.model.merge_and_unload()
    device = str(next(loaded.model.parameters()).device)
    peft_config = apply_scope(loaded.model, spec)
    RunCallback = _make_callback_class()

    def save(model):
        run.save_model(_writer(spec, model, loaded.tokenizer, base_is_adapter))

    def callback(stage, offset=0):
        # one-stage methods also keep a trainer checkpoint at each periodic save, for `clo runs resume`
        return RunCallback(run, stage, emit, stop_event, offset, save, spec.save_steps,
                           checkpoint=spec.method != "sft-dpo")

    resume = str(resume_from) if resume_from else None  # the base model loads above; the checkpoint's weights,
    # optimizer, scheduler, RNG and step replace it in train(): the reference stays the base model

    result = TrainResult(state="finished", run_dir=run.path, steps=0, seconds=0.0)
    step_offset = 0
    stopped = False

    if spec.method in SFT_ROWS:  # sft, sft-tgt, sft-eng, and the first stage of sft-dpo
        run.set_status("running", phase="training (sft)" if spec.method == "sft-dpo" else "training")
        trainer = _sft_trainer(spec, loaded, records, run, device, peft_config,
                               callback("sft"), emit)
        tr, ta = count_trainable(trainer.model)
        result.trainable, result.total_params = tr, ta
        _debug_watch(trainer, "sft")
        trainer.train(resume_from_checkpoint=resume)
        step_offset = trainer.state.global_step
        stopped = should_stop()
        _debug_end(trainer, "sft", stopped)
        loaded.model = trainer.model
        if spec.method == "sft-dpo" and not stopped:
            if spec.scope == "lora":
                loaded.model = loaded.model.merge_and_unload()  # DPO stage trains fresh adapters on the SFT model
            peft_config = apply_scope(loaded.model, spec)
    if spec.method in ("clo", "sft-dpo") and not stopped:
        run.set_status("running", phase="reference pass")
        trainer = _clo_trainer(spec, loaded, records, run, device, peft_config,
                               callback("dpo" if spec.method == "sft-dpo" else "clo", step_offset), emit,
                               clo_home() / "refcache", should_stop)
        result.ref_cache_hit = getattr(trainer, "ref_cache_hit", None)
        result.ref_pass_seconds = getattr(trainer, "ref_pass_seconds", None)
        tr, ta = count_trainable(trainer.model)
        result.trainable, result.total_params = tr, ta
        run.set_status("running", phase="training", ref_cache_hit=result.ref_cache_hit)
        _debug_watch(trainer, "clo")
        trainer.train(resume_from_checkpoint=resume)
        step_offset += trainer.state.global_step
        loaded.model = trainer.model
        stopped = should_stop()
        _debug_end(trainer, "clo", stopped)
    result.steps = step_offset
    result.state = "stopped" if stopped else "finished"
    run.set_status("running", phase="saving model", step=result.steps)
    emit({"phase": "saving"})
    run.save_model(_writer(spec, loaded.model, loaded.tokenizer, base_is_adapter))
    if result.state == "finished":
        run.drop_checkpoint()  # nothing left to resume: free the optimizer state
    rows = run.metrics()
    result.final = rows[-1] if rows else {}
    return result


def resume_training(run_dir: str | Path, *, events=None, stop_event: threading.Event | None = None) -> TrainResult:
    """Continue an interrupted (or failed, or stopped) run in its own directory from its last checkpoint.

    A run keeps a checkpoint when it was started with ``save_steps``: at each periodic save the trainer's
    weights, optimizer, scheduler, RNG and step are published atomically as ``checkpoint/``. Resuming reloads
    the base model from ``config.yaml`` (so CLO's reference stays the original model; its log-probs come from
    the on-disk cache), restores the checkpoint and goes on with the same learning-rate schedule and data order.
    Rows the lost attempt logged after the checkpoint move to ``metrics.replaced.jsonl``; the status goes
    ``interrupted`` → ``running`` → ``finished`` with ``resumed_from_step``. Raises :class:`clo.runs.RunError`,
    touching nothing, when the run cannot be resumed (still running, finished, no checkpoint, sft-dpo).
    """
    from clo.runs import RunDir, RunError

    run = RunDir(run_dir)
    if not run.exists():
        raise RunError(f"{run.path} is not a run directory (no status.json or config.yaml).")
    spec = TrainSpec.from_dict(run.config(), source=str(run.config_path))
    if spec.method == "sft-dpo":
        raise RunError(f"Run {run.id} cannot be resumed: sft-dpo trains in two stages (SFT, then DPO on the SFT "
                       f"model), which a single checkpoint does not capture. Start it again with "
                       f"`python -m clo train --config {run.config_path}`.")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise RunError("Resuming runs in one process; start `python -m clo runs resume` without accelerate/torchrun.")
    step = run.resume_point()
    from clo.models import resolve_model

    resolve_model(spec.model)  # the base model must still be there before anything is changed
    run.prepare_resume(step)
    return run_training(spec, run.path, events=events, stop_event=stop_event, create=False,
                        resume_from=run.checkpoint_path)


def _sft_trainer(spec, loaded, records, run, device, peft_config, callback, emit):
    from trl import SFTConfig, SFTTrainer

    rows = SFT_ROWS[spec.method]
    ds = _sft_dataset(records, rows)
    _check_prompt_lengths(loaded.tokenizer, ds["prompt"], spec)
    args = SFTConfig(**_common_args(spec, run.path, spec.batch_size * len(rows), device),
                     completion_only_loss=True, packing=False, dataset_num_proc=None)
    trainer = SFTTrainer(model=loaded.model, args=args, train_dataset=ds, processing_class=loaded.tokenizer,
                         peft_config=peft_config, callbacks=[callback])
    _quiet(trainer)
    return trainer


def _quiet(trainer) -> None:
    """transformers prints each log dict to stdout; our callback records it instead."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


def _clo_trainer(spec, loaded, records, run, device, peft_config, callback, emit, ref_cache_dir, should_stop=None):
    from datasets import Dataset

    from clo.pairs import build_pairs, to_conversational

    CLOConfig, CLOTrainer = _build_clo_trainer_class()
    pairs = [to_conversational(p) for p in build_pairs(records)]
    ds = Dataset.from_list(pairs)
    args = CLOConfig(**_common_args(spec, run.path, 2 * spec.batch_size, device),
                     beta=spec.beta, clo_lambda=spec.lam, clo_loss="dpo" if spec.method == "sft-dpo" else "clo",
                     precompute_ref_log_probs=True, precompute_ref_batch_size=2 * spec.batch_size,
                     ref_cache_dir=str(ref_cache_dir), loss_type=["sigmoid"])
    collator = _make_collator(loaded.tokenizer.pad_token_id, spec.max_length)

    _check_prompt_lengths(loaded.tokenizer, [p["prompt"] for p in pairs], spec)
    trainer = CLOTrainer(model=loaded.model, args=args, data_collator=collator, train_dataset=ds,
                         processing_class=loaded.tokenizer, peft_config=peft_config,
                         callbacks=[callback] if callback else None, events=emit, should_stop=should_stop)
    _quiet(trainer)
    if len(trainer.train_dataset) != len(pairs):  # TRL dropped rows: never train on misaligned pairs
        raise SpecError(f"{len(pairs) - len(trainer.train_dataset)} pair(s) were dropped while tokenizing; "
                        "raise --max-length.")
    return trainer
