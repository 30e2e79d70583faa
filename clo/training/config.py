"""The settings of one CLO trainer (docs/design.md, "Trainer"): :class:`CLOConfig` is TRL's DPOConfig plus
CLO's own fields — the objective, λ, SimPO's γ, the English anchor, shared prompts, the reference cache folder.
A run's settings come from :class:`clo.core.spec.TrainSpec`; this is what the trainer receives of them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from trl import DPOConfig

from clo.core.spec import needs_reference
from clo.training.losses import LOSS_FUNCTIONS

log = logging.getLogger(__name__)

__all__ = ["CLOConfig"]


# -- the trainer ------------------------------------------------------------------------------------------------


@dataclass
class CLOConfig(DPOConfig):
    """TRL's DPOConfig plus CLO's own fields."""

    lam: float = field(default=0.5, metadata={"help": "λ: weight of the target-only NLL term"})
    objective: str = field(default="clo", metadata={"help": "objective (clo.training.losses.LOSS_FUNCTIONS): clo, "
                                                            "ipo, kto, orpo, simpo, or dpo (clo with λ = 0)"})
    simpo_gamma: float = field(default=0.5, metadata={"help": "SimPO's target margin γ"})
    english_anchor: float = field(default=0.0, metadata={"help": "weight of the English anchor (0: off)"})
    english_nll: float = field(default=0.0, metadata={"help": "weight of NLL(y_en | x_en) (0: off)"})
    lang_codes: list[str] = field(default_factory=list, metadata={"help": "target languages, by lang_id (metrics)"})
    ref_cache_dir: str | None = field(default=None, metadata={"help": "folder for cached reference log-probs"})
    length_buckets: int = field(default=2, metadata={"help": "with the answer-only head on one process: score a "
                                "batch's sequences in this many forwards of similar length, each trimmed to its "
                                "longest (less padding; 1: one forward, as TRL does)"})
    share_prompts: bool = field(default=False, metadata={"help": "with the answer-only head: compute each pair's "
                                "prompt once for both answers (one sequence prompt + chosen + rejected, masked so "
                                "that neither answer sees the other; docs/performance.md measures it)"})

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError("lam must be in [0, 1]")
        if self.objective not in LOSS_FUNCTIONS:
            raise ValueError(f"objective must be one of {list(LOSS_FUNCTIONS)}")

    @property
    def needs_reference(self) -> bool:
        """Whether the objective (or the English anchor) uses reference log-probs: reference-free runs skip the
        reference pass and its cache."""
        return needs_reference("clo" if self.objective == "dpo" else self.objective, self.english_anchor)

