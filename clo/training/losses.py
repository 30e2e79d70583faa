"""The training objectives (docs/design.md, "Method" and "Objectives") as pure functions of log-prob tensors.

Every objective scores the same cross-lingual pairs and has the same form:

    L_pair = mean over pairs of the objective's pair loss          (OBJECTIVES: clo, ipo, kto, orpo, simpo)
    L_SFT  = NLL(y_t | x_t), mean over the response tokens of target-direction chosen answers
    L      = λ · L_SFT + (1 - λ) · L_pair  [+ w_anchor · A_en]  [+ w_en · NLL(y_en | x_en)]

The paper's CLO is ``clo``: the DPO sigmoid pair loss. ``A_en`` is the English anchor (DPO-Positive style):
the mean over English-direction pairs of ``max(0, logp_ref(y_en|x_en) - logp_policy(y_en|x_en)) / |y_en|``.

All inputs are per pair (shape ``(P,)``): summed log-probs of chosen and rejected responses under the policy
and (for objectives that need it) the reference, ``is_target`` (1 for the target-prompt direction) and the
token counts of the chosen and rejected responses.

    >>> import torch
    >>> out = clo_loss(torch.tensor([-5., -4.]), torch.tensor([-9., -9.]), torch.tensor([-6., -6.]),
    ...                torch.tensor([-8., -8.]), is_target=torch.tensor([0, 1]),
    ...                chosen_tokens=torch.tensor([4, 4]), beta=0.1, lam=0.5)
    >>> round(out.loss.item(), 4), round(out.sft_loss.item(), 4)
    (0.7881, 1.0)
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clo.core.spec import OBJECTIVE_HELP, needs_reference

__all__ = ["CLOLossOutput", "Objective", "OBJECTIVES", "LOSS_FUNCTIONS", "dpo_sigmoid_loss", "ipo_pair_loss",
           "simpo_pair_loss", "orpo_pair_loss", "kto_pair_loss", "target_nll", "english_nll", "english_anchor",
           "objective_loss", "clo_loss", "needs_reference"]


@dataclass
class CLOLossOutput:
    loss: torch.Tensor  # scalar, differentiable
    sft_loss: torch.Tensor  # scalar (0 when the batch has no target rows)
    cl_loss: torch.Tensor  # scalar: the objective's pair loss, averaged over pairs
    rewards_chosen: torch.Tensor  # (P,) the objective's reward of the chosen answer, detached
    rewards_rejected: torch.Tensor  # (P,)
    margins: torch.Tensor  # (P,)
    is_target: torch.Tensor  # (P,) bool
    anchor_loss: torch.Tensor | None = None  # scalar A_en (unweighted), when the anchor is on
    en_sft_loss: torch.Tensor | None = None  # scalar NLL(y_en | x_en), when its weight is on
    logps_chosen: torch.Tensor | None = None  # (P,) the policy's summed log-prob of each chosen answer, detached
    logps_rejected: torch.Tensor | None = None  # (P,) the same of each rejected answer

    def metrics(self) -> dict[str, float]:
        """Scalars for logging, overall and per direction (``en/…`` English prompt, ``tgt/…`` target prompt).
        ``logps/chosen`` and ``logps/rejected`` are the policy's log-probs the loss read, averaged over pairs (TRL's
        ``logps/chosen``: each answer's log-prob summed over its tokens)."""
        m = {
            "loss": self.loss.item(),
            "sft_loss": self.sft_loss.item(),
            "cl_loss": self.cl_loss.item(),
            "rewards_chosen": self.rewards_chosen.mean().item(),
            "rewards_rejected": self.rewards_rejected.mean().item(),
            "margin": self.margins.mean().item(),
            "accuracy": (self.margins > 0).float().mean().item(),
        }
        if self.anchor_loss is not None:
            m["anchor_loss"] = self.anchor_loss.item()
        if self.en_sft_loss is not None:
            m["en_sft_loss"] = self.en_sft_loss.item()
        if self.logps_chosen is not None:
            m["logps/chosen"] = self.logps_chosen.mean().item()
            m["logps/rejected"] = self.logps_rejected.mean().item()
        for name, mask in (("en", ~self.is_target), ("tgt", self.is_target)):
            if mask.any():
                m[f"{name}/margin"] = self.margins[mask].mean().item()
                m[f"{name}/accuracy"] = (self.margins[mask] > 0).float().mean().item()
                m[f"{name}/rewards_chosen"] = self.rewards_chosen[mask].mean().item()
                m[f"{name}/rewards_rejected"] = self.rewards_rejected[mask].mean().item()
                if self.logps_chosen is not None:
                    m[f"{name}/logps_chosen"] = self.logps_chosen[mask].mean().item()
                    m[f"{name}/logps_rejected"] = self.logps_rejected[mask].mean().item()
        return m


# -- pair losses: (P,) losses, chosen rewards, rejected rewards -------------------------------------------------


def dpo_sigmoid_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float, **_):
    """DPO sigmoid (the paper's CL term): ``-log σ(β·[(πc - rc) - (πr - rr)])``; rewards ``β·(π - r)``."""
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    losses = -F.logsigmoid(beta * (chosen_ratio - rejected_ratio))
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def ipo_pair_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float, *, chosen_tokens,
                  rejected_tokens, **_):
    """IPO (Azar et al. 2023, eq. 17): ``(Δ - 1/(2β))²`` with Δ the difference of the per-token log-ratios
    (each answer's log-ratio divided by its token count, as TRL's ``loss_type="ipo"``); rewards ``β·(π - r)``."""
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    delta = chosen_ratio / chosen_tokens.clamp(min=1) - rejected_ratio / rejected_tokens.clamp(min=1)
    losses = (delta - 1.0 / (2.0 * beta)) ** 2
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def simpo_pair_loss(policy_chosen, policy_rejected, ref_chosen=None, ref_rejected=None, beta: float = 0.1, *,
                    chosen_tokens, rejected_tokens, gamma: float = 0.5, **_):
    """SimPO (Meng et al. 2024), reference-free: ``-log σ(β·(πc/|yc| - πr/|yr|) - γ)``; rewards ``β·π/|y|``
    (the length-normalised log-probs)."""
    r_chosen = beta * policy_chosen / chosen_tokens.clamp(min=1)
    r_rejected = beta * policy_rejected / rejected_tokens.clamp(min=1)
    losses = -F.logsigmoid(r_chosen - r_rejected - gamma)
    return losses, r_chosen.detach(), r_rejected.detach()


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, stable on both sides of -ln 2."""
    return torch.where(x < -0.6931471805599453, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def orpo_pair_loss(policy_chosen, policy_rejected, ref_chosen=None, ref_rejected=None, beta: float = 0.1, *,
                   chosen_tokens, rejected_tokens, **_):
    """ORPO's odds-ratio term (Hong et al. 2024), reference-free: ``-β · log σ(log odds(yc) - log odds(yr))``
    with ``odds(y) = p/(1-p)`` of the per-token probability ``p = exp(π/|y|)``; β is ORPO's λ (the weight of
    this term next to the NLL). Rewards ``β·π/|y|``, as TRL's ORPOTrainer logs them."""
    avg_chosen = policy_chosen / chosen_tokens.clamp(min=1)
    avg_rejected = policy_rejected / rejected_tokens.clamp(min=1)
    log_odds = (avg_chosen - avg_rejected) - (_log1mexp(avg_chosen) - _log1mexp(avg_rejected))
    losses = -beta * F.logsigmoid(log_odds)
    return losses, beta * avg_chosen.detach(), beta * avg_rejected.detach()


def kto_pair_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float, **_):
    """KTO (Ethayarajh et al. 2024, eq. 7) on the unpaired view of the pairs: each chosen answer is desirable,
    each rejected one undesirable. ``1 - σ(β·(πc - rc - z))`` and ``1 - σ(β·(z - (πr - rr)))``, where the
    reference point ``z`` is the batch's mean log-ratio over all its answers, detached and clamped at 0 (TRL
    instead scores a mismatched completion in an extra forward). A pair's loss is the mean of its two terms —
    TRL's mean over the concatenated desirable and undesirable losses at weights 1. Rewards ``β·(π - r)``."""
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    z = torch.cat([chosen_ratio, rejected_ratio]).detach().mean().clamp(min=0)
    chosen_losses = 1 - torch.sigmoid(beta * (chosen_ratio - z))
    rejected_losses = 1 - torch.sigmoid(beta * (z - rejected_ratio))
    return (chosen_losses + rejected_losses) / 2, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


# -- the terms around the pair loss -----------------------------------------------------------------------------


def target_nll(policy_chosen: torch.Tensor, chosen_tokens: torch.Tensor, is_target: torch.Tensor) -> torch.Tensor:
    """Mean NLL per response token over target-direction chosen answers (0 when there are none)."""
    mask = is_target.bool()
    tokens = chosen_tokens[mask].sum()
    if tokens == 0:
        return policy_chosen.sum() * 0.0  # keeps the graph, contributes nothing
    return -policy_chosen[mask].sum() / tokens


def english_nll(policy_chosen: torch.Tensor, chosen_tokens: torch.Tensor, is_target: torch.Tensor) -> torch.Tensor:
    """Mean NLL per response token of ``y_en | x_en`` (the English-direction chosen answers)."""
    return target_nll(policy_chosen, chosen_tokens, ~is_target.bool())


def english_anchor(policy_chosen: torch.Tensor, ref_chosen: torch.Tensor, chosen_tokens: torch.Tensor,
                   is_target: torch.Tensor) -> torch.Tensor:
    """DPO-Positive-style anchor on English: mean over English-direction pairs of
    ``max(0, logp_ref(y_en|x_en) - logp_policy(y_en|x_en)) / |y_en|``. Zero while the policy's English
    likelihood is at or above the reference's; below it, its gradient raises the English likelihood."""
    mask = ~is_target.bool()
    if not mask.any():
        return policy_chosen.sum() * 0.0
    gap = torch.relu(ref_chosen[mask] - policy_chosen[mask]) / chosen_tokens[mask].clamp(min=1)
    return gap.mean()


# -- the table --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Objective:
    name: str
    pair_loss: Callable
    needs_reference: bool
    summary: str  # one line, shown on the Train page and in `clo train --help`


_PAIR_LOSSES = {"clo": dpo_sigmoid_loss, "ipo": ipo_pair_loss, "kto": kto_pair_loss, "orpo": orpo_pair_loss,
                "simpo": simpo_pair_loss}
# names, summaries and which ones need no reference come from clo.core.spec (torch-free, read by the CLI and the app)
OBJECTIVES: dict[str, Objective] = {name: Objective(name, _PAIR_LOSSES[name], needs_reference(name), summary)
                                    for name, summary in OBJECTIVE_HELP.items()}
assert set(OBJECTIVES) == set(_PAIR_LOSSES), "clo.core.spec.OBJECTIVE_HELP and clo.training.losses disagree"


def objective_loss(policy_chosen, policy_rejected, ref_chosen=None, ref_rejected=None, *, is_target,
                   chosen_tokens, rejected_tokens=None, objective: str = "clo", beta: float = 0.1, lam: float = 0.5,
                   gamma: float = 0.5, anchor: float = 0.0, en_nll: float = 0.0) -> CLOLossOutput:
    """``λ · target NLL + (1 - λ) · mean pair loss of `objective` [+ anchor · A_en] [+ en_nll · NLL(y_en)]``.
    ``ref_*`` may be None for a reference-free objective without the anchor."""
    obj = OBJECTIVES[objective]
    if rejected_tokens is None:
        rejected_tokens = chosen_tokens
    if ref_chosen is None and needs_reference(objective, anchor):
        raise ValueError(f"objective {objective!r} (or the English anchor) needs reference log-probs")
    pair_losses, r_chosen, r_rejected = obj.pair_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta,
                                                      chosen_tokens=chosen_tokens, rejected_tokens=rejected_tokens,
                                                      gamma=gamma)
    cl = pair_losses.mean()
    sft = target_nll(policy_chosen, chosen_tokens, is_target)
    total = lam * sft + (1.0 - lam) * cl
    anchor_term = en_term = None
    if anchor > 0:
        anchor_term = english_anchor(policy_chosen, ref_chosen, chosen_tokens, is_target)
        total = total + anchor * anchor_term
    if en_nll > 0:
        en_term = english_nll(policy_chosen, chosen_tokens, is_target)
        total = total + en_nll * en_term
    return CLOLossOutput(total, sft.detach(), cl.detach(), r_chosen, r_rejected, r_chosen - r_rejected,
                         is_target.bool(), None if anchor_term is None else anchor_term.detach(),
                         None if en_term is None else en_term.detach(),
                         logps_chosen=policy_chosen.detach(), logps_rejected=policy_rejected.detach())


def clo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, *, is_target, chosen_tokens, beta=0.1,
             lam=0.5, **kw) -> CLOLossOutput:
    """The paper's loss: λ · target-only NLL + (1 - λ) · cross-lingual DPO, averaged over all pairs of the batch."""
    return objective_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, is_target=is_target,
                          chosen_tokens=chosen_tokens, objective="clo", beta=beta, lam=lam, **kw)


def dpo_only_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, *, is_target, chosen_tokens, beta=0.1,
                  lam=None, **kw):
    """Standard DPO on the cross-lingual pairs: CLO with λ = 0 (``lam`` is accepted for a common signature and
    ignored)."""
    return clo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, is_target=is_target,
                    chosen_tokens=chosen_tokens, beta=beta, lam=0.0, **kw)


def _named(objective: str):
    def fn(*args, **kw):
        return objective_loss(*args, objective=objective, **kw)

    fn.__name__ = f"{objective}_loss"
    fn.__doc__ = OBJECTIVES[objective].summary
    return fn


# Loss functions by name (a table, not an if/elif chain): every objective, plus ``dpo`` (clo with λ = 0).
LOSS_FUNCTIONS = {"clo": clo_loss, "dpo": dpo_only_loss,
                  **{name: _named(name) for name in OBJECTIVES if name != "clo"}}
