"""Training settings: :class:`TrainSpec`, declared once; the CLI flags, ``config.yaml`` and the Train page's
widgets are all derived from its fields (docs/design.md, "Settings").

    >>> from clo.core.spec import TrainSpec
    >>> TrainSpec(method="clo", lang="sw", lr=4e-4).to_dict()["lambda"]
    0.5

Each field carries, in its ``metadata``:

- ``help`` — one line, shown by ``clo train --help`` and as the widget's tooltip;
- ``choices`` — the allowed values (checked by :meth:`TrainSpec.validate`, listed in the help);
- ``key`` — the YAML key and flag name when they differ from the field name (``lam`` is ``lambda``: a Python
  keyword cannot be a field name);
- ``form`` — a widget hint for the Train page (``row``: which row of the form, ``label``, ``widget``: slider,
  number, select or checkbox, the widget's ``min``/``max``/``step``/``format``, ``explain``: a select
  that shows the current choice's one-line description under it, and ``advanced``: folded into the form's
  "Advanced settings" section, out of a newcomer's way); fields without one are settable from the CLI and presets
  only.

Adding a setting means adding a field here (and its use in the trainer); ``clo train --help``, ``config.yaml``,
presets and, with a ``form`` hint, the Train page follow.

A settings file is a flat YAML mapping of these keys. A *preset* is a named one, ``presets/<name>.yaml`` (plus a
``description`` line), chosen with ``--preset NAME``; ``--config FILE`` reads any settings file, such as the
``config.yaml`` every run writes so that it can be reproduced.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from clo.core.languages import get_language
from clo.core.paths import PRESETS_DIR
from clo.core.precision import PRECISIONS

__all__ = [
    "METHODS",
    "SYSTEM_PROMPTS",
    "OBJECTIVE_HELP",
    "REFERENCE_FREE",
    "needs_reference",
    "SCOPES",
    "SCHEDULERS",
    "REPORT_TO",
    "TRACKER_PACKAGES",
    "SFT_DIRECTIONS",
    "PRESETS_DIR",
    "SpecError",
    "TrainSpec",
    "setting",
    "spec_fields",
    "changed_settings",
    "yaml_key",
    "add_spec_arguments",
    "spec_from_sources",
    "list_presets",
    "load_preset",
]


# What a conversation without a system turn starts with (the ``system_prompt`` setting; docs/design.md, "System
# prompt"). Some chat templates add a default system prompt to every such conversation — SmolLM2's adds "You are a
# helpful AI assistant named SmolLM, trained by Hugging Face", 16 tokens of every sequence it trains on.
SYSTEM_PROMPTS = {
    "model": "the model's chat template as it is, with any default system prompt it adds",
    "none": "no default system prompt: an empty system turn where the template would add its own (SmolLM2: 16 "
            "fewer tokens in every sequence, in training and in every later use of the tuned model)",
}
METHODS = {
    "clo": "Cross-Lingual Optimization: λ·NLL(target) + (1-λ)·cross-lingual DPO",
    "sft": "NLL on English and target pairs",
    "sft-tgt": "NLL on target pairs only",
    "sft-eng": "NLL on English pairs only",
    "sft-dpo": "sft, then standard DPO on the cross-lingual pairs",
}
# the objectives over the cross-lingual pairs (clo/training/losses.py holds their functions; this table stays
# torch-free)
OBJECTIVE_HELP = {
    "clo": "the paper: DPO sigmoid on the cross-lingual pairs, against the frozen reference",
    "ipo": "IPO: squared distance of the per-token log-ratio margin from 1/(2β); bounded, against the reference",
    "kto": "KTO: each chosen answer desirable, each rejected undesirable, judged against a KL reference point; "
           "against the reference",
    "orpo": "ORPO: odds ratio of the per-token probabilities, weighted by β; reference-free (no reference pass)",
    "simpo": "SimPO: length-normalised log-prob margin above γ (simpo_gamma); reference-free (no reference pass)",
}
REFERENCE_FREE = ("orpo", "simpo")  # the objectives that read no reference log-probs


def needs_reference(objective: str, english_anchor: float = 0.0) -> bool:
    """Whether a run needs the reference log-probs (and so the reference pass and its cache): the objective uses
    them, or the English anchor (which compares with the reference) is on. The one definition: the spec, the
    objectives' table (:mod:`clo.training.losses`) and the trainer's config ask it."""
    return objective not in REFERENCE_FREE or english_anchor > 0


SCOPES = {
    "attention": "only attention projections train (the paper)",
    "full": "every parameter trains",
    "lora": "LoRA adapters (on attention or all linear layers); reference = adapters disabled",
}
# the SFT methods: the directions of each sample they train on ("en": English prompt → answer, "tgt": target;
# clo.data.pairs names a pair's direction the same way)
SFT_DIRECTIONS = {"sft": ("en", "tgt"), "sft-tgt": ("tgt",), "sft-eng": ("en",), "sft-dpo": ("en", "tgt")}
SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
              "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "warmup_stable_decay")
DEVICES = ("auto", "cpu", "cuda")
# the trackers a run can report to (transformers' own integrations, TrainingArguments.report_to; docs/design.md,
# "Trackers"), each with its line, and the pip package each needs
REPORT_TO = {
    "none": "metrics.jsonl only (the app's charts read it)",
    "tensorboard": "also TensorBoard event files in the run folder (RUN/tb/<stage>/; `tensorboard --logdir RUN/tb`)",
    "mlflow": "also MLflow (MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_NAME; needs `pip install mlflow`)",
    "trackio": "also Trackio (its local dashboard: `trackio show`; needs `pip install trackio`)",
}
TRACKER_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "trackio": "trackio"}
LORA_TARGETS = ("attention", "all-linear")


class SpecError(ValueError):
    """An invalid training setting; the message names the setting and what is allowed."""


def setting(default, help: str, *, choices=None, key: str | None = None, form: dict | None = None):
    """A TrainSpec field with its help line, allowed values (a dict: with a line on each), YAML key and Train-page
    widget hint."""
    meta = {"help": help}
    if choices is not None:
        meta["choices"] = tuple(choices)
        if isinstance(choices, dict):  # a line per choice (the Train page's tooltips)
            meta["descriptions"] = dict(choices)
    if key is not None:
        meta["key"] = key
    if form is not None:
        meta["form"] = form
    return field(default=default, metadata=meta)


@dataclass
class TrainSpec:
    """Everything a run needs. Written to ``config.yaml``; ``clo train --config`` reads it back."""

    # -- what to train ------------------------------------------------------------------------------------
    method: str = setting("clo", "training method: " + "; ".join(f"{k}: {v}" for k, v in METHODS.items()),
                           choices=METHODS, form={"row": 1, "label": "Method", "widget": "select"})
    lang: str = setting("sw", "target language code, or several separated by commas (sw,yo,zh; YAML also takes a "
                              "list): each sample pairs with its translation in every one (see `clo langs`)")
    model: str = setting("default", "'default', a bundled name, a run directory, a local folder or a cached HF id")
    data: str = setting("demo", "cross-lingual JSONL/CSV file, or 'demo' for the bundled set")
    limit: int | None = setting(None, "use only the first N samples (of each target language)",
                                 form={"row": 4, "label": "Samples", "advanced": True,
                                       "widget": "number", "min": 0, "max": 1_000_000,
                                       "step": 10, "none": 0, "help": "Use only the first N samples; 0: all"})
    scope: str = setting("attention", "which parameters train: " + "; ".join(f"{k}: {v}" for k, v in SCOPES.items()),
                          choices=SCOPES, form={"row": 1, "label": "Trainable scope", "advanced": True,
                                                "widget": "select"})
    lora_r: int = setting(16, "LoRA rank (scope lora)")
    lora_alpha: int = setting(32, "LoRA alpha (scope lora)")
    lora_target: str = setting("attention", "LoRA on 'attention' or 'all-linear' layers (scope lora)",
                                choices=LORA_TARGETS)
    # -- the loss -----------------------------------------------------------------------------------------
    lam: float = setting(0.5, "λ: weight of the target NLL in λ·NLL + (1-λ)·CL, in [0, 1] (paper: 0.5)", key="lambda",
                          form={"row": 2, "label": "λ", "advanced": True,
                                "widget": "slider", "min": 0.0, "max": 1.0, "step": 0.05,
                                "help": "Weight of the target-language NLL: L = λ·NLL(target) + (1−λ)·cross-lingual "
                                        "loss. CLO only."})
    objective: str = setting(
        "clo", "objective over the cross-lingual pairs (method clo; sft-dpo's second stage with λ = 0): "
               + "; ".join(f"{k}: {v}" for k, v in OBJECTIVE_HELP.items()),
        choices=OBJECTIVE_HELP, form={"row": 2, "label": "Objective", "advanced": True,
                                      "widget": "select", "explain": True,
                                      "help": "What the cross-lingual pairs are trained with."})
    beta: float = setting(0.1, "β: DPO/IPO temperature, SimPO scale, ORPO's odds-ratio weight (paper: 0.1)",
                           form={"row": 2, "label": "β", "advanced": True,
                                 "widget": "number", "min": 0.001, "max": 10.0, "step": 0.05,
                                 "format": "%.3f", "help": "DPO temperature: how sharply the preference loss separates "
                                                           "chosen from rejected (SimPO: the scale of the length-"
                                                           "normalised margin; ORPO: the weight of the odds-ratio "
                                                           "term)."})
    simpo_gamma: float = setting(0.5, "SimPO's target margin γ in -log σ(β·Δ - γ), ≥ 0 (objective simpo)",
                                  form={"row": 6, "label": "SimPO γ", "advanced": True,
                                        "widget": "number", "min": 0.0, "max": 10.0,
                                        "step": 0.1, "help": "SimPO only: the margin the length-normalised "
                                                             "reward gap must exceed."})
    english_anchor: float = setting(
        0.0, "weight of the English anchor w·max(0, logp_ref(y_en|x_en) - logp(y_en|x_en))/|y_en| (0: off; "
             "needs the reference pass)",
        form={"row": 6, "label": "English anchor", "advanced": True,
              "widget": "number", "min": 0.0, "max": 100.0, "step": 0.1,
              "help": "Keeps the English answer's likelihood from falling under the starting model's "
                      "(DPO-Positive style). 0: off. Turns the reference pass on for every objective."})
    english_nll: float = setting(
        0.0, "weight of NLL(y_en | x_en) added to the loss (0: off; the paper found plain English NLL hurts the "
             "target)",
        form={"row": 6, "label": "English NLL weight", "advanced": True,
              "widget": "number", "min": 0.0, "max": 10.0, "step": 0.05,
              "help": "Adds w · NLL of the English answer to its English prompt. 0: off."})
    # -- optimisation -------------------------------------------------------------------------------------
    lr: float = setting(5e-5, "learning rate (paper: 5e-5)",
                         form={"row": 3, "label": "Learning rate", "widget": "number", "min": 1e-7, "max": 1e-2,
                               "step": 1e-5, "format": "%.1e"})
    epochs: float = setting(1.0, "passes over the data (paper: 1)",
                             form={"row": 3, "label": "Epochs", "widget": "number", "min": 0.1, "max": 100.0,
                                   "step": 1.0})
    batch_size: int = setting(8, "samples per forward pass on each process (paper: 8); CLO: 2 pairs = 4 sequences each",
                               form={"row": 3, "label": "Batch size", "advanced": True,
                                     "widget": "number", "min": 1, "max": 256,
                                     "step": 1, "help": "Samples per forward pass. CLO: each sample gives 2 "
                                                        "preference pairs = 4 sequences."})
    grad_accum: int = setting(1, "gradient accumulation: forward passes per optimizer step (a step trains on "
                                 "batch_size × grad_accum samples on each process)")
    max_steps: int | None = setting(None, "stop after this many optimizer steps (sft-dpo: per stage)",
                                     form={"row": 4, "label": "Max steps", "widget": "number", "min": 0,
                                           "max": 1_000_000, "step": 1, "none": 0,
                                           "help": "0: no limit (epochs decide)"})
    system_prompt: str = setting(
        "model", "what a prompt starts with: " + "; ".join(f"{k}: {v}" for k, v in SYSTEM_PROMPTS.items()),
        choices=SYSTEM_PROMPTS,
        form={"row": 4, "label": "System prompt", "advanced": True, "widget": "select", "explain": True,
              "help": "model: the chat template as it is. none: drop the default system prompt some templates add "
                      "to every conversation (SmolLM2's: 16 tokens a sequence; docs/performance.md measures "
                      "what dropping it saves). The tuned model keeps the choice in its saved template, so every "
                      "later use reads prompts as training did."})
    max_length: int = setting(256, "max tokens of prompt + answer",
                               form={"row": 4, "label": "Max length", "advanced": True,
                                     "widget": "number", "min": 16, "max": 8192,
                                     "step": 16, "help": "Tokens of prompt + answer."})
    skip_truncated: bool = setting(
        True, "skip samples whose answer would lose its end-of-turn token at max_length (both directions of a "
              "sample together); --no-skip-truncated trains on the cut answers",
        form={"row": 5, "label": "Skip samples cut by max length", "advanced": True,
              "help": "A sample whose answer does not fit in Max length would compare a whole answer with a cut "
                      "one and teach the model never to stop. On: such samples are left out (the count is shown "
                      "when the run starts). Off: they train cut, as TRL does.", "widget": "checkbox"})
    warmup_ratio: float = setting(0.0, "share of steps with linear warm-up, in [0, 1)")
    scheduler: str = setting("linear", "learning-rate schedule (transformers name)", choices=SCHEDULERS)
    weight_decay: float = setting(0.0, "AdamW weight decay (≥ 0)")
    seed: int = setting(42, "random seed (data order, LoRA init)")
    group_by_length: bool = setting(
        False, "batch samples of similar length together (less padding, faster steps; order stays shuffled)",
        form={"row": 5, "label": "Group samples by length", "advanced": True, "widget": "checkbox",
              "help": "Batches hold samples of similar length: less padding, faster steps (docs/performance.md); "
                      "the order of batches stays shuffled."})
    share_prompts: bool = setting(
        False, "score each preference pair's prompt once for both answers (one masked sequence; same log-probs, "
               "fewer positions; CLO methods with the answer-only head on a CPU, eager or SDPA attention)",
        form={"row": 5, "label": "Share prompts", "advanced": True, "widget": "checkbox",
              "help": "Computes each pair's prompt once for its chosen and its rejected answer (one sequence, "
                      "masked so that neither answer sees the other): the same log-probs with fewer positions. "
                      "Used where the model allows it (CPU, eager or SDPA attention); otherwise ignored with a "
                      "warning."})
    sft_logps: bool = setting(
        True, "SFT methods: also score the other-language answer to each trained prompt (one forward pass without "
              "gradients per step, about a third of an SFT step) to log its log-prob (logps_rejected) beside the "
              "trained answer's")
    save_steps: int = setting(
        0, "also save the model and a resumable checkpoint every N steps (0: only at the end)",
        form={"row": 5, "label": "Save every N steps", "advanced": True,
              "widget": "number", "min": 0, "max": 1_000_000, "step": 10,
              "help": "Also saves the model and a checkpoint of the training state every N steps, which lets an "
                      "interrupted or stopped run be resumed from the Runs page (from its last checkpoint). "
                      "0: save only at the end; such a run cannot be resumed."})
    # -- hardware and trust -------------------------------------------------------------------------------
    gradient_checkpointing: bool = setting(
        False, "recompute activations in the backward pass: less memory, slower steps (for large models on a GPU)")
    device: str = setting("auto", "auto, cpu or cuda", choices=DEVICES)
    precision: str = setting(
        "auto", "compute precision: " + "; ".join(f"{k}: {v}" for k, v in PRECISIONS.items()),
        choices=PRECISIONS, form={"row": 6, "label": "Precision", "advanced": True, "widget": "select", "explain": True,
                                  "help": "bf16 multiplies matrices in bfloat16 (weights and updates stay fp32): "
                                          "several times faster where the hardware has it natively."})
    trust_remote_code: bool = setting(False, "allow a model's own Python code to run (off by default)")
    report_to: str = setting(
        "none", "where else the run's metrics and settings go: " + "; ".join(f"{k}: {v}" for k, v in REPORT_TO.items()),
        choices=REPORT_TO,
        form={"row": 6, "label": "Report to", "advanced": True, "widget": "select", "explain": True,
              "help": "Also sends each step's metrics (under their metrics.jsonl names) and the run's settings (as "
                      "hyperparameters) to a tracker, through transformers' own integration. metrics.jsonl stays "
                      "what the app's charts read."})

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Every setting checked before anything is written; the first problem is a SpecError naming the setting
        (as the YAML key and the CLI flag spell it) and what is allowed. Fields without a rule of their own get
        the check of their type (text, true/false, whole number, finite number, one of ``choices``)."""
        def need(ok: bool, msg: str):
            if not ok:
                raise SpecError(msg)

        def number(v) -> bool:  # a real number; YAML's true/false are not numbers
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        def whole(v) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        by_name = {f.name: f for f in fields(self)}
        if isinstance(self.lang, (list, tuple)):  # YAML `lang: [sw, yo]`
            self.lang = ",".join(str(x) for x in self.lang)
        for name, f in by_name.items():  # text fields first: a list where a name goes says so
            if _base_type(f) is str:
                need(isinstance(getattr(self, name), str), f"{yaml_key(f)} must be text, got {getattr(self, name)!r}.")
        need(self.method in METHODS, f"Unknown method {self.method!r}. Choose one of: {', '.join(METHODS)}.")
        need(self.scope in SCOPES, f"Unknown scope {self.scope!r}. Choose one of: {', '.join(SCOPES)}.")
        codes = []
        for part in self.lang.split(","):
            try:
                lang = get_language(part.strip())
            except ValueError as e:
                raise SpecError(str(e)) from None
            need(lang.code != "en", "The target language must not be English: CLO pairs English with another language.")
            need(lang.code not in codes, f"lang names {lang.code} twice.")
            codes.append(lang.code)
        self.lang = ",".join(codes)
        ruled = {"method", "scope", "lang"}
        for name in ("lr", "epochs", "beta"):
            ruled.add(name)
            v = getattr(self, name)
            need(number(v) and v > 0, f"{name} must be a positive number, got {v!r}.")
        for name in ("batch_size", "grad_accum", "max_length", "lora_r", "lora_alpha", "max_steps", "limit"):
            ruled.add(name)
            v = getattr(self, name)
            need((v is None and _optional(by_name[name])) or (whole(v) and v > 0),
                 f"{name} must be a positive integer, got {v!r}.")
        for name in ("simpo_gamma", "english_anchor", "english_nll"):
            ruled.add(name)
            v = getattr(self, name)
            need(number(v) and v >= 0, f"{name} must be a number ≥ 0, got {v!r}.")
        ruled.add("lam")
        need(number(self.lam) and 0.0 <= self.lam <= 1.0, f"lambda must be in [0, 1], got {self.lam!r}.")
        for name, f in by_name.items():  # the rest by type
            if name in ruled:
                continue
            v, kind, key = getattr(self, name), _base_type(f), yaml_key(f)
            if v is None and _optional(f):
                continue
            if kind is bool:  # "false" in YAML must not read as true
                need(isinstance(v, bool), f"{key} must be true or false, got {v!r}.")
            elif kind is int:
                need(whole(v) and v >= 0, f"{key} must be a whole number ≥ 0, got {v!r}.")
            elif kind is float:
                need(number(v), f"{key} must be a finite number, got {v!r}.")
            choices = f.metadata.get("choices")
            if choices:
                need(v in choices, f"Unknown {key} {v!r}. Choose one of: {', '.join(choices)}.")
        need(0.0 <= self.warmup_ratio < 1.0, f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}.")
        need(self.weight_decay >= 0, f"weight_decay must be ≥ 0, got {self.weight_decay!r}.")
        need(bool(self.model.strip()), "model must not be empty.")
        need(bool(self.data.strip()), "data must not be empty.")

    def check_tracker(self) -> None:
        """Refuse, naming the pip package, a ``report_to`` tracker that is not installed here. Not part of
        :meth:`validate`: a run's config.yaml stays readable on a machine without the tracker; a run refuses to
        start (before any folder is made) and the Train page to queue it."""
        import importlib.util

        package = TRACKER_PACKAGES.get(self.report_to)
        if package and importlib.util.find_spec(package) is None:
            usable = [k for k, p in TRACKER_PACKAGES.items() if importlib.util.find_spec(p)] + ["none"]
            raise SpecError(f"report_to {self.report_to} needs the {package} package, which is not installed here: "
                            f"`pip install {package}`, or choose report_to {' or '.join(usable)}.")

    @property
    def langs(self) -> list[str]:
        """The target languages, in the order given (``lang: sw,yo`` → ``["sw", "yo"]``)."""
        return self.lang.split(",")

    def samples_per_step(self, processes: int = 1) -> int:
        """Samples one optimizer step trains on: ``batch_size`` on each of ``processes``, ``grad_accum`` times."""
        return self.batch_size * self.grad_accum * max(1, processes)

    def n_samples_used(self, n_samples: int, processes: int = 1) -> int:
        """How many of ``n_samples`` a run on ``processes`` processes trains on: when its ``max_steps`` cover less
        than one pass, that many steps of :meth:`samples_per_step`; sft-dpo (two stages) and runs without
        ``max_steps`` use all. The one count: the run picks them (:func:`clo.training.run.samples_used`) and its
        time estimate counts them (:func:`clo.runs.estimate.estimate_run`)."""
        if not self.max_steps or self.method == "sft-dpo":
            return n_samples
        return min(n_samples, self.max_steps * self.samples_per_step(processes))

    @property
    def needs_reference(self) -> bool:
        """Whether training runs the reference pass (:func:`needs_reference`)."""
        return needs_reference(self.objective, self.english_anchor)

    # -- YAML -----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The content of ``config.yaml``: every field, under its YAML key."""
        return {yaml_key(f): getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> TrainSpec:
        """A spec from YAML keys (as in ``config.yaml`` and presets); unknown keys are refused by name, numbers
        written as text (YAML reads ``5e-5`` as a string) are read as numbers."""
        d = dict(d or {})
        d.pop("description", None)
        by_key = {yaml_key(f): f for f in fields(cls)}
        unknown = sorted(set(d) - set(by_key))
        if unknown:
            raise SpecError(f"{source}: unknown setting(s) {', '.join(unknown)}. Known: {', '.join(sorted(by_key))}.")
        kwargs = {}
        for key, v in d.items():
            f = by_key[key]
            if isinstance(v, str) and _base_type(f) is float:
                try:
                    v = float(v)
                except ValueError:
                    raise SpecError(f"{source}: {key} must be a number, got {v!r}.") from None
            kwargs[f.name] = v
        return cls(**kwargs)


# -- fields ---------------------------------------------------------------------------------------------------


def spec_fields(cls=None) -> tuple[dataclasses.Field, ...]:
    """The fields of ``cls`` (default :class:`TrainSpec`, looked up when called, so a subclass or a patched
    class is seen)."""
    return fields(cls or TrainSpec)


def changed_settings(spec: TrainSpec, names) -> dict[str, object]:
    """Of the fields ``names``, those whose value in ``spec`` is not the field's default, with that value (the
    Train page lists what a preset or the user set in its folded "Advanced settings").

    >>> changed_settings(TrainSpec(max_length=512, beta=0.1), ["max_length", "beta"])
    {'max_length': 512}
    """
    wanted = set(names)
    return {f.name: getattr(spec, f.name) for f in spec_fields(type(spec))
            if f.name in wanted and getattr(spec, f.name) != f.default}


def yaml_key(f: dataclasses.Field) -> str:
    """The name a setting has in YAML and on the command line (``lam`` → ``lambda``)."""
    return f.metadata.get("key", f.name)


def _resolved_type(f: dataclasses.Field):
    t = f.type
    if isinstance(t, str):  # `from __future__ import annotations`: "int | None"
        t = eval(t, {"__builtins__": {}}, {"int": int, "float": float, "str": str, "bool": bool, "None": None})
    return t


def _optional(f: dataclasses.Field) -> bool:
    t = _resolved_type(f)
    return isinstance(t, types.UnionType) or typing.get_origin(t) is typing.Union


def _base_type(f: dataclasses.Field) -> type:
    t = _resolved_type(f)
    if _optional(f):
        t = next(a for a in typing.get_args(t) if a is not type(None))
    return t


def add_spec_arguments(parser: argparse.ArgumentParser, cls=None) -> None:
    """One flag per field: ``--batch-size`` for ``batch_size``, ``--lambda`` for ``lam``, ``--x/--no-x`` for
    booleans. Every flag defaults to None (not given), so that a preset or ``--config`` supplies what the
    command line leaves out; :meth:`TrainSpec.validate` checks the values, with the same messages as for YAML.

    (transformers' ``HfArgumentParser`` does this for its own dataclasses, but passes every metadata key to
    argparse, enforces ``choices`` with argparse's message, fills dataclass defaults that would override a
    preset, and costs a second of import for every ``clo`` command.)"""
    group = parser.add_argument_group("settings (also the keys of config.yaml and presets)")
    for f in spec_fields(cls):
        key, kind = yaml_key(f), _base_type(f)
        flag = "--" + key.replace("_", "-")
        help_text = f.metadata.get("help", "")
        if f.default is not dataclasses.MISSING and f.default is not None and kind is not bool:
            help_text += f" (default {f.default})"
        kw = dict(dest=f.name, default=None, help=help_text.replace("%", "%%"))
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        else:
            metavar = "|".join(f.metadata["choices"]) if f.metadata.get("choices") and len(f.metadata["choices"]) <= 6 \
                else key.upper()
            group.add_argument(flag, type=kind, metavar=metavar, **kw)


def spec_from_sources(preset: str | None = None, config: str | None = None, flags=None, cls=None) -> TrainSpec:
    """defaults ← preset ← config ← flags (an argparse namespace or a dict by field name), validated."""
    cls = cls or TrainSpec
    merged: dict = {}
    if preset:
        merged.update(load_preset(preset))
    if config:
        merged.update(load_preset(config))
    values = vars(flags) if isinstance(flags, argparse.Namespace) else dict(flags or {})
    for f in spec_fields(cls):
        if values.get(f.name) is not None:
            merged[yaml_key(f)] = values[f.name]
    return cls.from_dict(merged, source=config or preset or "flags")


# -- presets ----------------------------------------------------------------------------------------------------


def list_presets() -> dict[str, str]:
    """Named presets: ``presets/<name>.yaml`` → their description line."""
    out = {}
    for p in sorted(PRESETS_DIR.glob("*.yaml")):
        try:
            d = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, OSError, UnicodeDecodeError):
            d = None
        out[p.stem] = str(d.get("description") or "") if isinstance(d, dict) else "(unreadable)"
    return out


def load_preset(name_or_path: str) -> dict:
    """A preset by name (``demo``, ``paper``, …) or a YAML file path, as a dict of YAML keys."""
    p = Path(name_or_path)
    if not p.suffix:  # a preset name: a file directly in presets/, never a path out of it
        text = str(name_or_path)
        bad_name = not text.strip() or any(c in text for c in "/\\") or text.startswith(".")
        p = PRESETS_DIR / f"{name_or_path}.yaml"
        if bad_name or not p.is_file():
            raise SpecError(f"Unknown preset {name_or_path!r}. Presets: {', '.join(list_presets()) or 'none'}.")
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
