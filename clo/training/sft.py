"""The SFT baselines' trainer: TRL's SFTTrainer, also logging the log-probabilities of both answers after each
trained prompt (docs/design.md, "Trainer": log-probabilities). Imports torch and TRL at its top; the run driver
(:mod:`clo.training.run`) imports it inside the function that builds the trainer.

Each SFT row is one prompt and the answer trained on, with its direction (``is_target``) and, with the
``sft_logps`` setting (on by default), ``other``: the same sample's answer in the other language. The trainer
tokenizes ``prompt + other`` with TRL's own dataset preparation (the same template and truncation as the trained
row), and at each step scores those sequences in one forward pass without gradients. It logs, per direction, what
CLO's trainer logs for its pairs: ``logps/chosen`` (the trained answer's log-prob, read from the forward the SFT
loss used: free) and ``logps/rejected`` (the other-language answer's), each summed over the answer's tokens and
averaged over the batch's rows.
"""
from __future__ import annotations

import logging

import torch
from trl import SFTTrainer

log = logging.getLogger(__name__)

__all__ = ["CLOSFTTrainer", "OTHER_COLUMNS", "EXTRA_COLUMNS"]

OTHER_COLUMNS = ("other_input_ids", "other_labels")
EXTRA_COLUMNS = (*OTHER_COLUMNS, "is_target")


class OtherAnswerCollator:
    """The SFT collator, with each row's ``is_target`` and, where the rows have one, its other-language sequence
    padded beside it (``other_input_ids``, ``other_attention_mask``, ``other_labels``)."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, examples):
        main = [{k: v for k, v in e.items() if k not in EXTRA_COLUMNS} for e in examples]
        batch = self.inner(main)
        if examples and all(k in examples[0] for k in OTHER_COLUMNS):
            other = self.inner([{"input_ids": e["other_input_ids"], "labels": e["other_labels"]} for e in examples])
            batch["other_input_ids"] = other["input_ids"]
            batch["other_attention_mask"] = other["attention_mask"]
            batch["other_labels"] = other["labels"]
        if examples and "is_target" in examples[0]:
            batch["is_target"] = torch.tensor([bool(e["is_target"]) for e in examples])
        return batch


class CLOSFTTrainer(SFTTrainer):
    """SFTTrainer whose metrics also hold the trained and the other-language answer's log-probs per direction."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._scores_other = self._add_other_answers()
        if self.train_dataset is not None and "is_target" in self.train_dataset.column_names:
            self.data_collator = OtherAnswerCollator(self.data_collator)

    def _add_other_answers(self) -> bool:
        ds = self.train_dataset
        if ds is None or not {"prompt", "other", "is_target"} <= set(ds.column_names):
            return False
        if getattr(self.args, "shuffle_dataset", False) or getattr(self.args, "packing", False):
            log.warning("the other-language answers' log-probs are not logged: the SFT rows are packed or shuffled")
            return False
        other = ds.select_columns(["prompt", "other"]).rename_column("other", "completion")
        other = self._prepare_dataset(other, self.processing_class, self.args, False, None, "other-language")
        if len(other) != len(ds):  # a row dropped while preparing: the two would no longer line up
            log.warning("the other-language answers' log-probs are not logged: %d of %d rows were dropped while "
                        "tokenizing them", len(ds) - len(other), len(ds))
            return False
        self.train_dataset = (ds.add_column("other_input_ids", other["input_ids"])
                              .add_column("other_labels", other["labels"]))
        return True

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if self._signature_columns is not None and "is_target" not in self._signature_columns:
            self._signature_columns = list(self._signature_columns) + list(EXTRA_COLUMNS)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        other = {k: inputs.pop(k) for k in ("other_input_ids", "other_attention_mask", "other_labels", "is_target")
                 if k in inputs}
        if "is_target" not in other:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        seen = []  # the forward TRL's loss reads (its per-token log-probs of the trained answer)
        hook = self.accelerator.unwrap_model(model).register_forward_hook(
            lambda _m, _a, out: seen.append(out) if getattr(out, "log_probs", None) is not None else None)
        try:
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        finally:
            hook.remove()
        if seen:
            chosen = seen[-1].log_probs.detach().float().sum(dim=1)
            rejected = None
            if "other_input_ids" in other:
                with torch.no_grad():
                    rejected = model(input_ids=other["other_input_ids"], attention_mask=other["other_attention_mask"],
                                     labels=other["other_labels"], fused_lm_head=True, use_cache=False).log_probs
                rejected = rejected.float().sum(dim=1)
            self._log_answer_logps(chosen, rejected, other["is_target"].to(chosen.device))
        return result

    def _log_answer_logps(self, chosen, rejected, is_target) -> None:
        """``logps/chosen``, ``logps/rejected`` over all rows and ``en/…``, ``tgt/…`` per direction (``rejected``
        None: the chosen ones only); sums and counts are reduced over every rank (a rank's batch may lack a
        direction)."""
        mode = "train" if self.model.training else "eval"
        masks = {"logps/": torch.ones_like(is_target), "en/logps_": ~is_target, "tgt/logps_": is_target}
        other = rejected if rejected is not None else torch.zeros_like(chosen)
        stats = torch.stack([torch.stack([m.sum().float(), chosen[m].sum(), other[m].sum()])
                             for m in masks.values()])
        stats = self.accelerator.reduce(stats, reduction="sum")
        for (prefix, _), (n, c, r) in zip(masks.items(), stats.tolist()):
            if n > 0:
                self._metrics[mode][f"{prefix}chosen"].append(c / n)
                if rejected is not None:
                    self._metrics[mode][f"{prefix}rejected"].append(r / n)
