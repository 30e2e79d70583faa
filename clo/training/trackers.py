"""Runs that show up in the user's tracker (docs/design.md, "Trackers"): the ``report_to`` setting goes to
transformers' own integrations (``TrainingArguments.report_to``: TensorBoard, MLflow, Trackio), and
:func:`attach_trackers` makes them report what CLO reports.

- Metrics: each step's ``metrics.jsonl`` row (:class:`clo.training.callbacks.RunCallback`), every number in it but
  ``step``, under its metrics.jsonl name (TensorBoard and Trackio put transformers' ``train/`` in front:
  ``train/margin_sw``), at the trainer's step. The integrations, moved after the run's callback, receive that
  row in place of the trainer's own log line.
- Settings: the run's settings (its config.yaml) as hyperparameters — TensorBoard's hparams (under their YAML keys),
  MLflow params and Trackio config (``clo/<key>``, beside transformers' own arguments, which the integrations log).
- TensorBoard writes into the run folder, ``RUN/tb/<stage>/`` (``tensorboard --logdir RUN/tb``); a resumed run
  starts its writer with ``purge_step`` = the checkpoint's step + 1, so TensorBoard drops the lost attempt's later
  points as ``metrics.jsonl`` does (clo/runs/resume.py).

``metrics.jsonl`` stays the source of the app's charts; a tracker is an extra copy. Imports transformers at its
top; imported lazily by :mod:`clo.training.run`.
"""
from __future__ import annotations

import logging

from transformers import TrainerCallback
from transformers.integrations.integration_utils import (
    INTEGRATION_TO_CALLBACK,
    MLflowCallback,
    TensorBoardCallback,
    TrackioCallback,
)

from clo.training.callbacks import METRIC_KEYS, PER_LANGUAGE

log = logging.getLogger(__name__)

__all__ = ["attach_trackers", "tracked_metrics", "TB_DIR"]

TB_DIR = "tb"  # RUN/tb/<stage>/: TensorBoard's event files


def tracked_metrics(row: dict) -> dict[str, float]:
    """What a tracker receives of a metrics.jsonl row: every number but ``step`` (the tracker's own axis)."""
    return {k: v for k, v in row.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}


def settings_params(spec) -> dict:
    """The run's settings as hyperparameters: config.yaml's keys; unset ones (``max_steps: null``) left out."""
    return {k: v for k, v in spec.to_dict().items() if v is not None}


def attach_trackers(trainer, spec, run, source) -> None:
    """Make the trainer's report_to integrations report the run's rows (``source``: its RunCallback) and settings.
    A run with ``report_to: none`` has none, and nothing changes."""
    handler = trainer.callback_handler
    kinds = tuple(INTEGRATION_TO_CALLBACK.values())
    integrations = [cb for cb in handler.callbacks if isinstance(cb, kinds)]
    if not integrations:
        return
    for cb in integrations:
        handler.callbacks.remove(cb)
    # after the run's callback: its row replaces the log line, then the integrations send it, then the settings
    handler.callbacks += [TrackerRows(source, spec, run, integrations), *integrations,
                          TrackerParams(spec, integrations)]


class TrackerRows(TrainerCallback):
    """Before the integrations: points TensorBoard at the run folder (with the settings as hparams) when training
    begins, and hands them the run's metrics row instead of the trainer's log line at each log."""

    def __init__(self, source, spec, run, integrations):
        self.source, self.spec, self.run, self.integrations = source, spec, run, integrations

    def on_train_begin(self, args, state, control, **kw):
        if not state.is_world_process_zero:
            return
        for cb in self.integrations:
            if isinstance(cb, TensorBoardCallback):
                cb.logging_dir = str(self.run.path / TB_DIR / self.source.stage)
                writer = cb._SummaryWriter(log_dir=cb.logging_dir, purge_step=state.global_step + 1
                                           if state.global_step else None)
                write_hparams(writer, settings_params(self.spec), self.spec.langs)
                cb.tb_writer = writer  # the integration adds its own "args" text and logs through it

    def on_log(self, args, state, control, logs=None, **kw):
        row = getattr(self.source, "last_row", None)
        if logs is None or row is None or "train_runtime" in logs:  # the trainer's final summary: left as it is
            return
        logs.clear()
        logs.update(tracked_metrics(row))


class TrackerParams(TrainerCallback):
    """After the integrations (their MLflow run or Trackio run has started): the run's settings as MLflow params
    and Trackio config, ``clo/<key>``."""

    def __init__(self, spec, integrations):
        self.spec, self.integrations = spec, integrations

    def on_train_begin(self, args, state, control, **kw):
        if not state.is_world_process_zero:
            return
        params = {f"clo/{k}": v for k, v in settings_params(self.spec).items()}
        for cb in self.integrations:
            if isinstance(cb, MLflowCallback) and cb._ml_flow.active_run() is not None:
                cb._ml_flow.log_params(params)
            elif isinstance(cb, TrackioCallback) and cb._initialized:
                cb._trackio.config.update(params, allow_val_change=True)


def write_hparams(writer, params: dict, langs: list[str]) -> None:
    """TensorBoard's HParams summaries (experiment and session start) in the writer's own run, so that the
    HParams dashboard lists the run with its settings beside its metrics (``train/<name>``). torch's
    ``SummaryWriter.add_hparams`` would write them to a separate run of its own instead."""
    from torch.utils.tensorboard.summary import hparams

    names = list(dict.fromkeys(METRIC_KEYS.values()))
    if len(langs) > 1:
        names += [f"{m}_{code}" for code in langs for m in ("margin", "accuracy") if PER_LANGUAGE.match(f"{m}_{code}")]
    for summary in hparams(params, {f"train/{n}": 0.0 for n in names}):
        writer.file_writer.add_summary(summary)
    writer.flush()
