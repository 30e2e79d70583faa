"""The training callback: one ``metrics.jsonl`` line per logged step, live events, periodic saves and a
cooperative stop (docs/design.md, "Run directories"). Imports transformers at its top; imported lazily as a
module by :mod:`clo.training.run`.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

from accelerate import PartialState
from transformers import TrainerCallback

from clo.core.testing import fault_point
from clo.training.stopping import stop_requested

__all__ = ["METRIC_KEYS", "RunCallback"]

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
    "en/rewards_chosen": "en_rewards_chosen",  # the English answer's drift from the reference (clo, ipo)
    # the policy's log-prob of each answer, summed over its tokens, averaged over the batch's pairs (TRL's
    # logps/chosen); SFT runs: chosen = the answer trained on, rejected = the other-language answer after that prompt
    "logps/chosen": "logps_chosen",
    "logps/rejected": "logps_rejected",
    "en/logps_chosen": "en_logps_chosen",
    "en/logps_rejected": "en_logps_rejected",
    "tgt/logps_chosen": "tgt_logps_chosen",
    "tgt/logps_rejected": "tgt_logps_rejected",
    "anchor_loss": "anchor_loss",
    "en_sft_loss": "en_sft_loss",
    "mean_token_accuracy": "token_accuracy",
    "num_tokens": "num_tokens",
}
PER_LANGUAGE = re.compile(r"^(margin|accuracy)_[a-z]{2,3}$")  # several target languages: margin_sw, accuracy_yo


class RunCallback(TrainerCallback):
    """Writes one metrics line per logged step through the run (which feeds its live view), saves every
    ``save_every`` steps (with a trainer checkpoint when ``checkpoint``), and ends training cleanly after the
    current step when a stop is requested (``stop_event`` or the run's STOP file, agreed by all ranks)."""

    def __init__(self, run, stage: str, stop_event=None, step_offset: int = 0, save=None,
                 save_every: int = 0, checkpoint: bool = False):
        self.run, self.stage, self.stop_event = run, stage, stop_event
        self.save, self.save_every = save, save_every
        self.checkpoint = checkpoint  # with each periodic save, also the trainer's state (for resume)
        self.step_offset = step_offset
        self.t_last = None
        self.tokens_last = 0
        self.t_start = time.perf_counter()
        self.last_row = None  # the latest metrics row: what report_to's trackers receive (clo/training/trackers.py)

    def on_train_begin(self, args, state, control, **kw):
        self.t_last = time.perf_counter()
        self.t_start = self.t_last
        if state.global_step and self.run is not None:  # resumed: the stage's clock goes on from the checkpoint
            done = [r for r in self.run.metrics() if r.get("stage") == self.stage]
            self.t_start -= float(done[-1].get("elapsed_s") or 0.0) if done else 0.0
        if self.run is not None:
            self.run.phase("training", stage=self.stage, max_steps=state.max_steps + self.step_offset)

    def _stopping(self) -> bool:  # the same answer on every rank (called by all of them, in step)
        return stop_requested(self.run, self.stop_event)

    def on_step_end(self, args, state, control, model=None, **kw):
        if self._stopping():
            control.should_training_stop = True
        elif self.save and self.save_every and state.global_step % self.save_every == 0:
            self.save(model)  # periodic save: a later crash keeps this step's model
            self.run.record(saved_step=state.global_step + self.step_offset)
            if self.checkpoint:
                control.should_save = True  # the trainer writes its checkpoint after logging: see on_save

    def on_pre_optimizer_step(self, args, state, control, **kw):
        fault_point("step", state.global_step + self.step_offset + 1)  # test-only (CLO_FAULT)

    def on_save(self, args, state, control, **kw):
        """The trainer has written ``output_dir/checkpoint-N`` (weights, optimizer, scheduler, RNG,
        trainer_state.json): publish it whole as the run's ``checkpoint/``, replacing the previous one."""
        PartialState().wait_for_everyone()  # every rank has written its RNG state
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if self.run is not None and not self.run.readonly and folder.is_dir():
            self.run.save_checkpoint(folder)
            self.run.record(checkpoint_step=state.global_step + self.step_offset)

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
        for k, v in logs.items():
            if PER_LANGUAGE.match(k) and v is not None:
                row[k] = float(v)
        tokens = row.get("num_tokens")
        if tokens is not None and self.t_last is not None and now > self.t_last:
            row["tokens_per_s"] = round((tokens - self.tokens_last) / (now - self.t_last), 2)
            self.tokens_last = tokens
        row["elapsed_s"] = round(now - self.t_start, 2)
        row["max_steps"] = state.max_steps + self.step_offset
        self.t_last = now
        self.last_row = row
        if self.run is not None:
            self.run.append_metrics(row)  # also the live view's row
        if self._stopping():
            control.should_training_stop = True  # checked by the trainer right after logging
