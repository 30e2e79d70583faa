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

__all__ = ["PairSampler", "PairCollator", "GROUP_BATCHES", "stratified_subset"]

GROUP_BATCHES = 8  # length grouping sorts within chunks of this many batches
EXTRA_COLUMNS = ("is_target", "sample", "lang_id")  # CLO's own columns: never passed to the model


class PairSampler:
    """Shuffles samples, never pairs: yields row indices ``2s, 2s+1`` together, so a batch of an even size
    always holds both directions of each of its samples.

    With ``groups`` (each row's target language, ``lang_id``; a run with several), the order is *stratified*:
    each language's samples are shuffled, then interleaved in proportion to the languages' sizes, so that every
    stretch of the order — every batch, every process's share of a step — holds each language in proportion
    (within one sample). A short run trains and reports every language from its first steps."""

    def __init__(self, n_rows: int, seed: int, lengths: list[int] | None = None, batch_samples: int = 1,
                 groups: list[int] | None = None):
        if n_rows % 2:
            raise ValueError("CLO datasets hold two rows per sample")
        self.n_samples = n_rows // 2
        self.seed, self.epoch = seed, 0
        # optional length grouping: tokens of each sample's longest sequence, and samples per batch
        self.lengths = [max(lengths[2 * s], lengths[2 * s + 1]) for s in range(self.n_samples)] if lengths else None
        self.batch_samples = max(1, batch_samples)
        self.groups = None
        if groups is not None:
            if len(groups) != n_rows or any(groups[2 * s] != groups[2 * s + 1] for s in range(self.n_samples)):
                raise ValueError("both rows of a sample must carry its one language")
            if len(set(groups)) > 1:  # one language: the plain shuffle (and the order runs have always had)
                self.groups = [int(groups[2 * s]) for s in range(self.n_samples)]

    def set_epoch(self, epoch: int) -> None:
        """Called by the trainer before each epoch. The order of an epoch depends only on (seed, epoch), so a
        run resumed from a checkpoint (``clo runs resume``) sees the order an uninterrupted run would."""
        self.epoch = epoch

    def __len__(self):
        return 2 * self.n_samples

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1  # without set_epoch the next pass still gets a new order
        if self.groups is None:
            order = torch.randperm(self.n_samples, generator=generator).tolist()
        else:
            order = self._stratified(generator)
        if self.lengths is not None:
            order = self._grouped(order, generator)
        for s in order:
            yield 2 * s
            yield 2 * s + 1

    def _stratified(self, generator) -> list[int]:
        """Each language's samples in a random order, interleaved in proportion: the j-th of a language's n
        samples takes a random place in [j/n, (j+1)/n), and the order sorts by place. Any first k samples then
        hold each language's share k·n/N to within one sample (two languages; a little more with more), and the
        random places keep the interleaving from repeating a pattern that several processes, each taking every
        P-th batch, would split unevenly."""
        members: dict[int, list[int]] = {}
        for s, g in enumerate(self.groups):
            members.setdefault(g, []).append(s)
        keyed = []
        for g in sorted(members):
            m = members[g]
            shuffled = [m[i] for i in torch.randperm(len(m), generator=generator).tolist()]
            jitter = torch.rand(len(m), generator=generator, dtype=torch.float64).tolist()
            keyed += [((j + u) / len(m), s) for j, (s, u) in enumerate(zip(shuffled, jitter))]
        return [s for _, s in sorted(keyed)]

    def _grouped(self, order: list[int], generator) -> list[int]:
        """Length grouping: within each chunk of ``GROUP_BATCHES`` batches of the shuffled order, samples are
        sorted by length and cut into batches, and those batches are shuffled. Batches then hold samples of
        similar length (less padding for the collator to add) while the epoch order stays random. A stratified
        order is sorted within each language of the chunk, and the languages interleaved again in proportion:
        a batch holds the chunk's k-th longest samples of each language."""
        b, out = self.batch_samples, []
        for i in range(0, len(order), b * GROUP_BATCHES):
            chunk = sorted(order[i : i + b * GROUP_BATCHES], key=lambda s: -self.lengths[s])
            if self.groups is not None:
                per: dict[int, list[int]] = {}
                for s in chunk:
                    per.setdefault(self.groups[s], []).append(s)
                chunk = [s for *_, s in sorted(((j + 0.5) / len(m), g, s) for g, m in per.items()
                                               for j, s in enumerate(m))]
            batches = [chunk[j : j + b] for j in range(0, len(chunk), b)]
            for k in torch.randperm(len(batches), generator=generator).tolist():
                out += batches[k]
        return out


def stratified_subset(groups: list, need: int, seed: int) -> list[int]:
    """``need`` of the indices of ``groups`` (each item's language), in index order: each language's share in
    proportion to its items (largest remainders round), every language at least one (fewer than one each: the
    largest languages one each), drawn at random with ``seed`` within each language. Deterministic: a resumed
    or reproduced run picks the same."""
    import random

    members: dict = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    if need >= len(groups):
        return list(range(len(groups)))
    exact = {g: need * len(m) / len(groups) for g, m in members.items()}
    quota = {g: int(x) for g, x in exact.items()}
    if need < len(members):  # fewer than one each: one each for the largest languages
        largest = sorted(members, key=lambda g: -len(members[g]))[:need]
        quota = {g: int(g in largest) for g in members}
    else:
        quota = {g: max(1, q) for g, q in quota.items()}
    by_remainder = sorted(members, key=lambda g: (-(exact[g] - int(exact[g])), list(members).index(g)))
    while sum(quota.values()) < need:  # largest remainders first
        for g in by_remainder:
            if sum(quota.values()) < need and quota[g] < len(members[g]):
                quota[g] += 1
    while sum(quota.values()) > need:  # the minimum of one took more than the shares: those above it give back
        g = max((g for g in quota if quota[g] > 1), key=lambda g: quota[g] - exact[g])
        quota[g] -= 1
    rng = random.Random(seed)
    return sorted(i for g, m in members.items() for i in rng.sample(m, quota[g]))


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

