"""Training runs: CLO on TRL's DPOTrainer, the SFT baselines on TRL's SFTTrainer (docs/design.md, "Training").

    python -m clo train --method clo --lang sw --model default --data demo --max-steps 2 --out runs/smoke
    python -m clo train --preset demo --method clo --lang sw --data demo
    python -m clo train --config runs/smoke/config.yaml      # reproduce a run

:func:`run_training` is the one function the CLI, the app's jobs and the tests call. It validates the
:class:`~clo.core.spec.TrainSpec`, writes ``config.yaml`` first, then trains one or two stages (:func:`_run_stage`)
with trainers from :func:`build_sft_trainer` / :func:`build_clo_trainer`, and saves the model atomically.
torch, transformers and TRL are imported only inside those functions, so importing this module is cheap.
"""
from __future__ import annotations

import copy
import json
import logging
import os
import random
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from clo.core.files import check_free_space
from clo.core.paths import clo_home
from clo.core.spec import SFT_DIRECTIONS, SpecError, TrainSpec
from clo.core.testing import debug_end, debug_watch
from clo.data.formats import load_crosslingual
from clo.data.pairs import build_pairs, to_conversational
from clo.models.chat import set_system_prompt
from clo.models.load import load_model
from clo.models.resolve import resolve_model
from clo.runs.resume import prepare_resume, resume_point
from clo.runs.rundir import RunDir, RunError, now_iso
from clo.training.distributed import gathered_state_dict
from clo.training.scope import apply_scope, count_trainable
from clo.training.stopping import StopRequest, TrainingStopped, stopped_by

log = logging.getLogger(__name__)

__all__ = ["run_training", "resume_training", "TrainResult", "build_sft_trainer", "build_clo_trainer", "common_args",
           "quiet", "fit_to_length", "samples_used", "describe_truncation", "load_records"]


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


# -- the run ----------------------------------------------------------------------------------------------------


def run_training(spec: TrainSpec, run_dir: str | Path, *, events=None, stop_event: threading.Event | None = None,
                 create: bool = True, resume_from: str | Path | None = None) -> TrainResult:
    """Train one run into ``run_dir``. Writes config.yaml first, then status/metrics/model as it goes.

    ``events(dict)`` receives live progress (each phase of :data:`clo.runs.rundir.PHASES`, one metrics row per step);
    ``stop_event`` ends training after the current step, keeping the model of that step. Raises on failure after
    marking the run ``failed`` with the error text; a finished or stopped run has a loadable ``model/``.
    ``resume_from``: a trainer checkpoint to continue from (see :func:`resume_training`).
    """
    from accelerate import PartialState

    from clo.training.distributed import use_cpu

    spec.validate()
    spec.check_tracker()  # report_to's package must be installed here
    # a missing or unsafe model or bad data fails before any folder is made
    resolve_model(spec.model, trust_remote_code=spec.trust_remote_code)
    records = load_records(spec)
    # one process normally; several under `accelerate launch` / torchrun. CPU processes need cpu=True, else
    # accelerate sees no distributed setup and every rank would act as the main one (and write the run)
    dist = PartialState(cpu=use_cpu(spec))
    if dist.is_main_process:
        run = RunDir.create(run_dir, spec.to_dict(), events=events) if create else RunDir(run_dir, events=events)
    dist.wait_for_everyone()
    if not dist.is_main_process:
        run = RunDir(run_dir, readonly=True)  # one run directory, written by the main process only
    t0 = time.perf_counter()
    try:
        run.phase("loading", n_samples=len(records))
        run.emit({"phase": "loading", "model": spec.model})
        result = _train_stages(spec, run, records, stop_event, resume_from)
        result.seconds = time.perf_counter() - t0
        by = stopped_by(stop_event) if result.state == "stopped" else {}
        if by:
            by["note"] = f"stopped by {by['signal']} after step {result.steps}; the model of that step is kept"
        run.finish(result.state, step=result.steps, duration_s=round(result.seconds, 1),
                   ref_cache_hit=result.ref_cache_hit, ref_pass_s=result.ref_pass_seconds,
                   trainable_params=result.trainable, total_params=result.total_params, **by)
        return result
    except TrainingStopped as e:
        kept = run.status().get("saved_step") if run.has_model() else None  # a resumed run's earlier model
        note = f"{e}: the model saved earlier (step {kept}) is kept" if kept else f"{e}: no model saved"
        if kept and run.checkpoint_step():
            note += f", and so is the checkpoint of step {run.checkpoint_step()} (resume it again from there)"
        run.finish("stopped", step=kept or 0, note=note, duration_s=round(time.perf_counter() - t0, 1),
                   **stopped_by(stop_event))
        return TrainResult(state="stopped", run_dir=run.path, steps=kept or 0, seconds=time.perf_counter() - t0)
    except KeyboardInterrupt as e:  # a second signal (or a stop that missed its deadline): abort now
        name = getattr(e, "signal", None) or "SIGINT"
        _record_end(run.mark_lost, f"aborted by {name} before the current step ended" + (
            f" ({e})" if str(e) else "") + "; the last saved model and checkpoint are kept", lost_at=now_iso(),
            signal=name, duration_s=round(time.perf_counter() - t0, 1))
        raise
    except BaseException as e:
        msg = f"{type(e).__name__}: {e}"
        _record_end(run.fail, msg, traceback=traceback.format_exc()[-4000:],
                    duration_s=round(time.perf_counter() - t0, 1))
        raise


def _record_end(write, *args, **fields) -> None:
    """Record how a run ended without hiding why it ended: when the record itself cannot be written (the disk
    that just filled up), the original error goes on, and the next listing finds the process gone."""
    try:
        write(*args, **fields)
    except OSError as e:
        log.warning("could not record the end of the run in status.json: %s", e)


def load_records(spec: TrainSpec) -> list[dict]:
    """The cross-lingual records of a run: for each target language in ``spec.lang`` (in that order), its
    records, the first ``spec.limit`` of each. With several languages an English sample gives one record per
    language; each record is one (sample, language) and trains as a unit (both directions together)."""
    records = []
    for code in spec.langs:
        rows = load_crosslingual(spec.data, code)
        records += rows[: spec.limit] if spec.limit else rows
    return records


def resume_training(run_dir: str | Path, *, events=None, stop_event: threading.Event | None = None) -> TrainResult:
    """Continue an interrupted (or failed, or stopped) run in its own directory from its last checkpoint.

    A run keeps a checkpoint when it was started with ``save_steps``: at each periodic save the trainer's
    weights, optimizer, scheduler, RNG and step are published atomically as ``checkpoint/``. Resuming reloads
    the base model from ``config.yaml`` (so CLO's reference stays the original model; its log-probs come from
    the on-disk cache), restores the checkpoint and goes on with the same learning-rate schedule and data order
    (:mod:`clo.runs.resume` does the bookkeeping). Raises :class:`clo.runs.rundir.RunError`, touching nothing, when
    the run cannot be resumed (still running, finished, no checkpoint, sft-dpo).
    """
    run = RunDir(run_dir)
    if not run.exists():
        raise RunError(f"{run.path} is not a run directory (no status.json or config.yaml).")
    spec = saved_spec(run)
    if spec.method == "sft-dpo":
        raise RunError(f"Run {run.id} cannot be resumed: sft-dpo trains in two stages (SFT, then DPO on the SFT "
                       f"model), which a single checkpoint does not capture. Start it again with "
                       f"`python -m clo train --config {run.config_path}`.")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        _prepare_resume_on_main(run, spec)  # under accelerate launch: the main process does the bookkeeping
    else:
        step = resume_point(run)
        resolve_model(spec.model)  # the base model must still be there before anything is changed
        prepare_resume(run, step)
    return run_training(spec, run.path, events=events, stop_event=stop_event, create=False,
                        resume_from=run.checkpoint_path)


def saved_spec(run: RunDir) -> TrainSpec:
    """The settings a run was started with (its ``config.yaml``), as a resume must go on with them. A run saved
    before the ``precision`` setting computed in fp32 on a CPU (bf16 on a GPU, as ``auto`` still does there) and
    goes on so: never half in one precision and half in another."""
    config = run.config()
    if "precision" not in config:
        import torch

        config["precision"] = "auto" if torch.cuda.is_available() else "fp32"
    return TrainSpec.from_dict(config, source=str(run.config_path))


def _prepare_resume_on_main(run: RunDir, spec: TrainSpec) -> None:
    """``clo runs resume`` under ``accelerate launch`` (e.g. an FSDP run, whose checkpoint only a sharded run can
    load): the main process checks and prepares the run (it alone writes the run directory); every rank learns
    whether that worked, so that none waits alone for the others."""
    from accelerate import PartialState

    from clo.training.distributed import all_agree, use_cpu

    dist = PartialState(cpu=use_cpu(spec))
    error = None
    if dist.is_main_process:
        try:
            step = resume_point(run)
            resolve_model(spec.model)
            prepare_resume(run, step)
        except Exception as e:  # noqa: BLE001 - re-raised below, after every rank has heard of it
            error = e
    if not all_agree(error is None, "all"):
        raise error or RunError(f"Run {run.id} cannot be resumed: the main process refused (see its message).")


def _train_stages(spec: TrainSpec, run: RunDir, records, stop_event, resume_from=None) -> TrainResult:
    """Load the model, then train the SFT stage, the preference stage, or both (sft-dpo), and save."""
    from accelerate import PartialState

    from clo.core.precision import describe_precision, resolve_precision
    from clo.training.stopping import stop_requested

    device = str(PartialState().device) if spec.device == "auto" else spec.device  # each process its own device
    # fp32 weights: under bf16 (clo/core/precision.py) autocast computes and AdamW updates fp32 masters (pure bf16
    # weights would round most updates at lr 5e-5 away)
    precision = resolve_precision(spec.precision, device, PartialState().num_processes)
    run.record(precision=precision)
    run.emit({"phase": "loading", "message": describe_precision(precision, device)})
    loaded = load_model(spec.model, device=device, dtype="float32", trust_remote_code=spec.trust_remote_code,
                        progress=lambda m: run.emit({"phase": "loading", "message": m}))

    def should_stop() -> bool:  # agreed by all ranks: every rank must call it at the same point
        return stop_requested(run, stop_event)

    if should_stop():
        raise TrainingStopped("stopped while loading the model, before the first step")
    dropped = set_system_prompt(loaded.tokenizer, spec.system_prompt)  # saved with the model: evaluation agrees
    run.record(system_prompt=spec.system_prompt, system_prompt_tokens_dropped=dropped)
    if spec.system_prompt != "model":
        run.emit({"phase": "loading", "message": f"system prompt: {spec.system_prompt} — "
                  + (f"{dropped} default tokens off every sequence" if dropped
                     else "this model's template adds no default system prompt; nothing changes")})
    records, report = fit_to_length(loaded.tokenizer, records, spec)
    records = samples_used(records, spec, PartialState().num_processes)
    run.record(truncation=report, n_samples=len(records))
    run.emit({"phase": "loading", "truncation": report, "n_samples": len(records)})
    base_is_adapter = hasattr(loaded.model, "peft_config")
    if base_is_adapter:  # a LoRA run as the starting point: train on its merged weights
        loaded.model = loaded.model.merge_and_unload()
    device = str(next(loaded.model.parameters()).device)
    peft_config = apply_scope(loaded.model, spec)
    save_bytes = _save_bytes(loaded.model, spec, peft_config, base_is_adapter)
    check_free_space(run.path, _run_bytes(save_bytes, loaded.model, spec), "this run's model" + (
        " and checkpoint" if spec.save_steps and spec.method != "sft-dpo" else ""))
    resume = str(resume_from) if resume_from else None  # the base model loads above; the checkpoint's weights,
    # optimizer, scheduler, RNG and step replace it in train(): the reference stays the base model
    common = dict(spec=spec, run=run, loaded=loaded, base_is_adapter=base_is_adapter, stop_event=stop_event,
                  save_bytes=save_bytes)
    result = TrainResult(state="finished", run_dir=run.path, steps=0, seconds=0.0)
    stopped = False
    if spec.method in SFT_DIRECTIONS:  # sft, sft-tgt, sft-eng, and the first stage of sft-dpo
        stage = "sft"
        run.phase("training", stage=stage)
        trainer = build_sft_trainer(spec=spec, loaded=loaded, records=records, run=run, device=device,
                                    peft_config=peft_config,
                                    callback=_callback(stage=stage, offset=0, **common))
        stopped = _run_stage(trainer, stage, should_stop, resume, result)
        loaded.model = trainer.model
        if spec.method == "sft-dpo" and not stopped:
            if spec.scope == "lora":
                loaded.model = loaded.model.merge_and_unload()  # DPO stage trains fresh adapters on the SFT model
            peft_config = apply_scope(loaded.model, spec)
    if spec.method in ("clo", "sft-dpo") and not stopped:
        stage = "dpo" if spec.method == "sft-dpo" else "clo"
        if spec.needs_reference:  # reference-free objectives (orpo, simpo without the anchor) skip it
            run.phase("reference")
        trainer = build_clo_trainer(spec=spec, loaded=loaded, records=records, run=run, device=device,
                                    peft_config=peft_config,
                                    callback=_callback(stage=stage, offset=result.steps, **common),
                                    ref_cache_dir=clo_home() / "refcache", should_stop=should_stop)
        result.ref_cache_hit, result.ref_pass_seconds = trainer.ref_cache_hit, trainer.ref_pass_seconds
        run.phase("training", stage=stage, ref_cache_hit=result.ref_cache_hit)
        stopped = _run_stage(trainer, stage, should_stop, resume, result)
        loaded.model = trainer.model
    result.state = "stopped" if stopped else "finished"
    if isinstance(stop_event, StopRequest):
        stop_event.settle()  # the steps are over: a stop's deadline never cuts the save short
    run.phase("saving", step=result.steps)
    save_whole_model(run, _writer(spec, loaded.model, loaded.tokenizer, base_is_adapter), loaded.model, need=save_bytes)
    if result.state == "finished":
        run.drop_checkpoint()  # nothing left to resume: free the optimizer state
    rows = run.metrics()
    result.final = rows[-1] if rows else {}
    return result


def _run_stage(trainer, stage: str, should_stop, resume: str | None, result: TrainResult) -> bool:
    """Train one stage to its end or a stop; add its steps and parameter counts to ``result``. Returns whether
    a stop was requested (the same answer on every rank)."""
    result.trainable, result.total_params = count_trainable(trainer.model)
    debug_watch(trainer, stage)
    trainer.train(resume_from_checkpoint=resume)
    result.steps += trainer.state.global_step
    stopped = should_stop()
    debug_end(trainer, stage, stopped)
    return stopped


def _save_bytes(model, spec: TrainSpec, peft_config, base_is_adapter: bool) -> int:
    """About what one save of the run's model writes: fp32 weights (a LoRA run: only its adapters, unless they
    are merged into full weights), plus 1 MB for the tokenizer and configs."""
    params = model.parameters()
    if peft_config is not None and spec.method != "sft-dpo" and not base_is_adapter:
        params = (p for p in model.parameters() if p.requires_grad)
    return sum(p.numel() for p in params) * 4 + 2**20


def _run_bytes(save_bytes: int, model, spec: TrainSpec) -> int:
    """Free space a run needs beyond what its folder holds: one more model (a save writes the new one before the
    old one goes) and, with save_steps, one more checkpoint (weights and AdamW's two moments), plus 8 MB."""
    need = save_bytes + 8 * 2**20
    if spec.save_steps and spec.method != "sft-dpo":
        need += save_bytes + 8 * sum(p.numel() for p in model.parameters() if p.requires_grad)
    return need


def _callback(*, spec, run, stage, loaded, offset, base_is_adapter, stop_event, save_bytes):
    """The run's callback for one stage: metrics, live events, periodic saves; one-stage methods also keep a
    trainer checkpoint at each periodic save, for `clo runs resume`."""
    from clo.training.callbacks import RunCallback

    def save(model):  # called by every rank
        save_whole_model(run, _writer(spec, model, loaded.tokenizer, base_is_adapter), model, need=save_bytes)

    return RunCallback(run, stage, stop_event=stop_event, step_offset=offset, save=save, save_every=spec.save_steps,
                       checkpoint=spec.method != "sft-dpo")


# -- trainers ---------------------------------------------------------------------------------------------------


def build_sft_trainer(*, spec: TrainSpec, loaded, records, run: RunDir, device: str, peft_config=None,
                      callback=None):
    """TRL's SFTTrainer on the directions of ``spec.method`` (English, target or both; completion-only loss), as
    :class:`clo.training.sft.CLOSFTTrainer`: it also logs the log-probs of the other-language answers."""
    from trl import SFTConfig

    from clo.training.sft import CLOSFTTrainer

    directions = SFT_DIRECTIONS[spec.method]
    ds = _sft_dataset(records, directions, other=spec.sft_logps)
    _check_prompt_lengths(loaded.tokenizer, ds["prompt"], spec)
    args = SFTConfig(**common_args(spec, run.path, spec.batch_size * len(directions), device),
                     completion_only_loss=True, packing=False, dataset_num_proc=None)
    trainer = CLOSFTTrainer(model=loaded.model, args=args, train_dataset=ds, processing_class=loaded.tokenizer,
                           peft_config=peft_config, callbacks=[callback] if callback else None)
    quiet(trainer, spec, run, callback)
    return trainer


def build_clo_trainer(*, spec: TrainSpec, loaded, records, run: RunDir, device: str, peft_config=None,
                      callback=None, ref_cache_dir: str | Path | None = None, should_stop=None):
    """:class:`clo.training.trainer.CLOTrainer` on both preference pairs of every sample, under ``spec.objective``
    (sft-dpo: λ = 0). Its reference pass (or cache hit) runs inside the constructor; a reference-free objective
    has none."""
    from datasets import Dataset

    from clo.training.config import CLOConfig
    from clo.training.sampling import PairCollator
    from clo.training.trainer import CLOTrainer

    pairs = [to_conversational(p, spec.langs) for p in build_pairs(records)]
    # precompute_ref_log_probs stays on for reference-free objectives too: it keeps TRL from loading a second
    # copy of the model as the reference; CLOTrainer then skips the pass itself
    args = CLOConfig(**common_args(spec, run.path, 2 * spec.batch_size, device),
                     beta=spec.beta, lam=0.0 if spec.method == "sft-dpo" else spec.lam,
                     objective=spec.objective, simpo_gamma=spec.simpo_gamma,
                     english_anchor=spec.english_anchor, english_nll=spec.english_nll,
                     lang_codes=spec.langs, share_prompts=spec.share_prompts,
                     precompute_ref_log_probs=True, precompute_ref_batch_size=2 * spec.batch_size,
                     ref_cache_dir=str(ref_cache_dir) if ref_cache_dir else None, loss_type=["sigmoid"])
    _check_prompt_lengths(loaded.tokenizer, [p["prompt"] for p in pairs], spec)
    trainer = CLOTrainer(
        model=loaded.model, args=args, data_collator=PairCollator(loaded.tokenizer.pad_token_id, spec.max_length),
        train_dataset=Dataset.from_list(pairs), processing_class=loaded.tokenizer, peft_config=peft_config,
        callbacks=[callback] if callback else None, events=run.emit, should_stop=should_stop,
        ref_progress=lambda done, total, seconds: run.phase("reference", ref_done=done, ref_total=total,
                                                            ref_elapsed_s=round(seconds, 1)))
    quiet(trainer, spec, run, callback)
    if len(trainer.train_dataset) != len(pairs):  # TRL dropped rows: never train on misaligned pairs
        raise SpecError(f"{len(pairs) - len(trainer.train_dataset)} pair(s) were dropped while tokenizing; "
                        "raise --max-length.")
    return trainer


def quiet(trainer, spec: TrainSpec | None = None, run: RunDir | None = None, callback=None) -> None:
    """transformers prints each log dict to stdout; the run's callback records it instead, and hands each row to
    the trackers of ``report_to`` (:func:`clo.training.trackers.attach_trackers`)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if callback is not None and spec is not None and spec.report_to != "none":
        from clo.training.trackers import attach_trackers

        attach_trackers(trainer, spec, run, callback)


def common_args(spec: TrainSpec, out_dir: Path, per_device: int, device: str) -> dict:
    """The TrainingArguments every trainer here shares (TRL's DPOConfig/SFTConfig take them as keywords)."""
    from accelerate import PartialState

    from clo.core.precision import resolve_precision

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
        report_to=spec.report_to,  # transformers' own integration; clo/training/trackers.py feeds it CLO's rows
        run_name=out_dir.name,
        seed=spec.seed,
        data_seed=spec.seed,
        # autocast over fp32 weights (clo/core/precision.py)
        bf16=resolve_precision(spec.precision, device, PartialState().num_processes) == "bf16",
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


def _conversations(record: dict, method: str) -> list[tuple[list, list]]:
    """(prompt messages, answer messages) of every sequence a sample gives under ``method``: a preference
    method scores both answers after both prompts; an SFT method trains each of its rows' own answer."""
    en = [{"role": "user", "content": record["instruction_en"]}]
    tgt = [{"role": "user", "content": record["instruction"]}]
    a_en = [{"role": "assistant", "content": record["response_en"]}]
    a_tgt = [{"role": "assistant", "content": record["response"]}]
    if method in ("clo", "sft-dpo"):
        return [(en, a_en), (en, a_tgt), (tgt, a_tgt), (tgt, a_en)]  # sft-dpo's SFT rows are among these
    directions = SFT_DIRECTIONS[method]
    return ([(en, a_en)] if "en" in directions else []) + ([(tgt, a_tgt)] if "tgt" in directions else [])


def fit_to_length(tokenizer, records: list[dict], spec: TrainSpec) -> tuple[list[dict], dict]:
    """What ``spec.max_length`` cuts, and the samples to train on.

    A sequence is the chat-template prompt followed by its answer and end-of-turn token; TRL keeps its first
    ``max_length`` tokens. Counted per sequence: ``cut`` (longer than max_length) and ``lost_end`` (its last
    end-of-turn token falls outside, so the model would learn an answer that never ends; in a preference pair
    a whole answer would be compared with a cut one). With ``skip_truncated`` (the default) every sample with
    a ``lost_end`` sequence is left out whole — both directions together — so the pairs stay comparable;
    without it they train cut. A sample whose *prompt* alone does not fit is kept, so that the prompt check
    of the trainer builders names it."""
    eos = tokenizer.eos_token_id
    keep, report = [], {"max_length": spec.max_length, "sequences": 0, "cut": 0, "lost_end": 0,
                        "skipped_samples": 0, "policy": "skip" if spec.skip_truncated else "cut"}
    for r in records:
        lost = False
        for prompt, answer in _conversations(r, spec.method):
            ids = tokenizer.apply_chat_template(prompt + answer, tokenize=True, return_dict=False)
            n_prompt = len(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True,
                                                         return_dict=False))
            report["sequences"] += 1
            if len(ids) <= spec.max_length:
                continue
            report["cut"] += 1
            ends = [i for i, t in enumerate(ids) if t == eos]
            if n_prompt < spec.max_length and (not ends or ends[-1] >= spec.max_length):
                report["lost_end"] += 1
                lost = True
        if lost and spec.skip_truncated:
            report["skipped_samples"] += 1
        else:
            keep.append(r)
    if not keep:
        raise SpecError(f"max_length {spec.max_length} cuts the answer of every one of the {len(records)} "
                        "sample(s). Raise --max-length, or train on cut answers with --no-skip-truncated.")
    return keep, report


def samples_used(records: list[dict], spec: TrainSpec, num_processes: int = 1) -> list[dict]:
    """The samples a run with ``max_steps`` will see: when its steps cover less than one pass over the data,
    a seeded random subset of that many samples (in data order), so that the reference pass scores only what
    trains — a 5-step demo run scores 40 samples, not 168. Deterministic in (data, seed, steps, batch), so a
    resumed or reproduced run picks the same samples. With several target languages, each language gives its
    share (in proportion to its samples; every language at least one when there are as many samples to pick).
    sft-dpo (two stages) and runs without max_steps use all."""
    need = spec.n_samples_used(len(records), num_processes)
    if need >= len(records):
        return records
    langs = [r.get("lang") for r in records]
    if len(set(langs)) < 2:
        chosen = sorted(random.Random(spec.seed).sample(range(len(records)), need))
    else:  # several target languages: each in proportion (clo.training.sampling.stratified_subset)
        from clo.training.sampling import stratified_subset

        chosen = stratified_subset(langs, need, spec.seed)
    return [records[i] for i in chosen]


def describe_truncation(t: dict) -> str:
    """One line on what max_length cuts (the report of :func:`fit_to_length`), for the CLI and the app."""
    if not t.get("cut"):
        return f"max_length {t['max_length']}: all {t['sequences']} sequences fit."
    line = (f"max_length {t['max_length']} cuts {t['cut']} of {t['sequences']} sequences; {t['lost_end']} "
            "lose their end-of-turn token")
    if t.get("policy") == "skip":
        return line + f": {t['skipped_samples']} sample(s) skipped (skip_truncated: false trains them cut)."
    return line + ": trained cut (skip_truncated: true leaves such samples out)."


def _sft_dataset(records, directions: tuple[str, ...], other: bool = True):
    """The SFT rows: prompt, the answer trained on, its direction (``is_target``) and, with ``other``, the
    other-language answer to the same prompt (scored, never trained: ``sft_logps``)."""
    from datasets import Dataset

    items = []
    for r in records:
        en = [{"role": "assistant", "content": r["response_en"]}]
        tgt = [{"role": "assistant", "content": r["response"]}]
        if "en" in directions:
            items.append({"prompt": [{"role": "user", "content": r["instruction_en"]}], "completion": en,
                          "other": tgt, "is_target": False})
        if "tgt" in directions:
            items.append({"prompt": [{"role": "user", "content": r["instruction"]}], "completion": tgt,
                          "other": en, "is_target": True})
    if not other:
        for item in items:
            del item["other"]
    return Dataset.from_list(items)


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


def save_whole_model(run: RunDir, writer, model, need: int | None = None) -> None:
    """Save ``model`` through ``writer`` (:func:`_writer`) as the run's ``model/``; called by **every** rank. Sharded
    weights (FSDP, ZeRO-3) are first gathered by all ranks together (:func:`gathered_state_dict`), so the saved
    model is whole; the main process alone writes it (``RunDir.save_model`` is a no-op on the others)."""
    writer.state_dict = gathered_state_dict(model)
    run.save_model(writer, need=need)


def _writer(spec: TrainSpec, model, tokenizer, base_is_adapter: bool = False):
    """A function that writes ``model`` + tokenizer into a folder (used through RunDir.save_model). Its
    ``state_dict`` attribute, when set (:func:`save_whole_model`), gives the weights to write instead of the
    model's own (gathered from the shards of a sharded model)."""

    def write(folder: Path):
        m, state_dict = model, write.state_dict
        if hasattr(m, "peft_config") and (spec.method == "sft-dpo" or base_is_adapter):
            if state_dict is not None:
                raise RunError("saving a merged LoRA model from sharded (FSDP/ZeRO-3) weights is not supported: "
                               "use ZeRO-2 or DDP for sft-dpo with --scope lora, or a full base model")
            # the adapter sits on a merged model (SFT stage, or a LoRA run used as base): save full weights,
            # merging a copy so that the live model keeps training after a periodic save
            m = copy.deepcopy(m).merge_and_unload()
        extra = {} if state_dict is None else {"state_dict": state_dict}
        m.save_pretrained(folder, safe_serialization=True, **extra)
        tokenizer.save_pretrained(folder)
        if hasattr(m, "peft_config"):
            base = str(Path(spec.model).resolve()) if Path(spec.model).exists() else spec.model
            (folder / "clo_base.json").write_text(json.dumps({"base_model": base}))

    write.state_dict = None
    return write

