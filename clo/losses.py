"""The CLO loss (docs/design.md, "Method") as pure functions of log-prob tensors.

    L_CL  = mean over pairs of  -log σ(β · [ratio(chosen) - ratio(rejected)])
    L_SFT = NLL(y_t | x_t), mean over the response tokens of target-direction chosen answers
    L_CLO = λ · L_SFT + (1 - λ) · L_CL

All inputs are per pair (shape ``(P,)``): summed log-probs of chosen and rejected responses under the policy
and the reference, and ``is_target`` (1 for the target-prompt direction). The NLL needs the summed policy
log-prob of the chosen response and its token count, so the same tensors serve both terms.

    >>> import torch
    >>> out = clo_loss(torch.tensor([-5., -4.]), torch.tensor([-9., -9.]), torch.tensor([-6., -6.]),
    ...                torch.tensor([-8., -8.]), is_target=torch.tensor([0, 1]),
    ...                chosen_tokens=torch.tensor([4, 4]), beta=0.1, lam=0.5)
    >>> round(out.loss.item(), 4), round(out.sft_loss.item(), 4)
    (0.7881, 1.0)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["CLOLossOutput", "dpo_sigmoid_loss", "target_nll", "clo_loss", "LOSS_FUNCTIONS"]


@dataclass
class CLOLossOutput:
    loss: torch.Tensor  # scalar, differentiable
    sft_loss: torch.Tensor  # scalar (0 when the batch has no target rows)
    cl_loss: torch.Tensor  # scalar
    rewards_chosen: torch.Tensor  # (P,) β · ratio(chosen), detached
    rewards_rejected: torch.Tensor  # (P,)
    margins: torch.Tensor  # (P,)
    is_target: torch.Tensor  # (P,) bool

    def metrics(self) -> dict[str, float]:
        """Scalars for logging, overall and per direction (``en/…`` English prompt, ``tgt/…`` target prompt)."""
        m = {
            "loss": self.loss.item(),
            "sft_loss": self.sft_loss.item(),
            "cl_loss": self.cl_loss.item(),
            "rewards_chosen": self.rewards_chosen.mean().item(),
            "rewards_rejected": self.rewards_rejected.mean().item(),
            "margin": self.margins.mean().item(),
            "accuracy": (self.margins > 0).float().mean().item(),
        }
        for name, mask in (("en", ~self.is_target), ("tgt", self.is_target)):
            if mask.any():
                m[f"{name}/margin"] = self.margins[mask].mean().item()
                m[f"{name}/accuracy"] = (self.margins[mask] > 0).float().mean().item()
                m[f"{name}/rewards_chosen"] = self.rewards_chosen[mask].mean().item()
                m[f"{name}/rewards_rejected"] = self.rewards_rejected[mask].mean().item()
        return m


def dpo_sigmoid_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair DPO sigmoid loss and rewards: ``-log σ(β·[(πc - rc) - (πr - rr)])``. Shapes ``(P,)``."""
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    losses = -F.logsigmoid(beta * (chosen_ratio - rejected_ratio))
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def target_nll(policy_chosen: torch.Tensor, chosen_tokens: torch.Tensor, is_target: torch.Tensor) -> torch.Tensor:
    """Mean NLL per response token over target-direction chosen answers (0 when there are none)."""
    mask = is_target.bool()
    tokens = chosen_tokens[mask].sum()
    if tokens == 0:
        return policy_chosen.sum() * 0.0  # keeps the graph, contributes nothing
    return -policy_chosen[mask].sum() / tokens


def clo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    *,
    is_target: torch.Tensor,
    chosen_tokens: torch.Tensor,
    beta: float = 0.1,
    lam: float = 0.5,
) -> CLOLossOutput:
    """λ · target-only NLL + (1 - λ) · cross-lingual DPO, averaged over all pairs of the batch."""
    pair_losses, r_chosen, r_rejected = dpo_sigmoid_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    cl = pair_losses.mean()
    sft = target_nll(policy_chosen, chosen_tokens, is_target)
    total = lam * sft + (1.0 - lam) * cl
    return CLOLossOutput(total, sft.detach(), cl.detach(), r_chosen, r_rejected, r_chosen - r_rejected, is_target.bool())


def dpo_only_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, *, is_target, chosen_tokens, beta=0.1,
                  lam=None):
    """Standard DPO on the cross-lingual pairs (the second stage of ``sft-dpo``): CLO with λ = 0 (``lam`` is
    accepted for a common signature and ignored)."""
    return clo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, is_target=is_target,
                    chosen_tokens=chosen_tokens, beta=beta, lam=0.0)


# Preference-loss variants by name (a table, not an if/elif chain).
LOSS_FUNCTIONS = {"clo": clo_loss, "dpo": dpo_only_loss}
