"""Which rows a batch holds and how they are padded (docs/design.md, "Trainer"): :class:`PairSampler` keeps
both directions of a sample in one batch (length-grouped within :data:`GROUP_BATCHES` batches) and
:class:`PairCollator` pads them, keeping CLO's own columns (:data:`EXTRA_COLUMNS`) away from the model.
"""
from __future__ import annotations

import logging
import os

import torch
from trl.trainer.dpo_trainer import DataCollatorForPreference

log = logging.getLogger(__name__)

__all__ = ["PairSampler", "PairCollator", "GROUP_BATCHES"]

GROUP_BATCHES = 8  # length grouping sorts within chunks of this many batches
EXTRA_COLUMNS = ("is_target", "sample", "lang_id")  # CLO's own columns: never passed to the model


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
        b, out = self.batch_samples, []
        for i in range(0, len(order), b * GROUP_BATCHES):
            chunk = sorted(order[i : i + b * GROUP_BATCHES], key=lambda s: -self.lengths[s])
            batches = [chunk[j : j + b] for j in range(0, len(chunk), b)]
            for k in torch.randperm(len(batches), generator=generator).tolist():
                out += batches[k]
        return out


class PairCollator:
    """TRL's preference collator, plus each row's direction (``is_target``: 1 for the target-language prompt).
    With the sample log on (clo.core.testing), also each row's sample index; it never reaches the model."""

    def __init__(self, pad_token_id: int, max_length: int):
        self.base = DataCollatorForPreference(pad_token_id=pad_token_id, max_length=max_length)
        self.debug = bool(os.environ.get("CLO_DEBUG_SAMPLES"))

    def __call__(self, examples):
        out = self.base(examples)  # TRL's collator also carries the reference log-probs
        out["is_target"] = torch.tensor([int(e["is_target"]) for e in examples])
        out["lang_id"] = torch.tensor([int(e.get("lang_id", 0)) for e in examples])  # index into the run's langs
        if self.debug and "sample" in examples[0]:
            out["sample"] = torch.tensor([int(e["sample"]) for e in examples])
        return out


def row_lengths(dataset) -> list[int]:
    """Tokens of each preference row's longer sequence (prompt + the longer of its two answers): what the
    collator pads that row to. Length grouping and the reference pass's order sort by it."""
    return [len(p) + max(len(c), len(r))
            for p, c, r in zip(dataset["prompt_ids"], dataset["chosen_ids"], dataset["rejected_ids"])]

