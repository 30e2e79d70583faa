"""The objectives: CLO matches TRL's DPO sigmoid loss, reduces to target NLL at λ = 1, margins flip with the pair;
IPO, SimPO and ORPO by hand and against TRL; KTO by hand and against TRL's lines; the English anchor."""
from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from clo.training.losses import (
    LOSS_FUNCTIONS,
    OBJECTIVES,
    clo_loss,
    dpo_sigmoid_loss,
    english_anchor,
    ipo_pair_loss,
    kto_pair_loss,
    needs_reference,
    objective_loss,
    orpo_pair_loss,
    simpo_pair_loss,
    target_nll,
)

T = torch.tensor


def _batch(seed=0, pairs=6):
    g = torch.Generator().manual_seed(seed)
    pc, pr, rc, rr = (-(torch.rand(pairs, generator=g) * 40 + 1) for _ in range(4))
    is_target = torch.tensor([0, 1] * (pairs // 2))
    tokens = torch.randint(3, 30, (pairs,), generator=g)
    return pc, pr, rc, rr, is_target, tokens


def test_cl_term_matches_dpo_formula():
    pc, pr, rc, rr, is_t, tok = _batch()
    out = clo_loss(pc, pr, rc, rr, is_target=is_t, chosen_tokens=tok, beta=0.1, lam=0.0)
    expected = -F.logsigmoid(0.1 * ((pc - rc) - (pr - rr))).mean()
    assert torch.allclose(out.loss, expected, atol=1e-6)
    assert torch.allclose(out.cl_loss, expected, atol=1e-6)


def test_lambda_one_is_target_only_nll():
    pc, pr, rc, rr, is_t, tok = _batch(1)
    out = clo_loss(pc, pr, rc, rr, is_target=is_t, chosen_tokens=tok, beta=0.1, lam=1.0)
    mask = is_t.bool()
    assert torch.allclose(out.loss, -pc[mask].sum() / tok[mask].sum(), atol=1e-6)
    # English rows never enter the NLL: changing them leaves the loss unchanged
    pc2 = pc.clone()
    pc2[~mask] -= 100
    out2 = clo_loss(pc2, pr, rc, rr, is_target=is_t, chosen_tokens=tok, beta=0.1, lam=1.0)
    assert torch.allclose(out.loss, out2.loss)


def test_swapping_chosen_and_rejected_flips_margins():
    pc, pr, rc, rr, is_t, tok = _batch(2)
    a = clo_loss(pc, pr, rc, rr, is_target=is_t, chosen_tokens=tok)
    b = clo_loss(pr, pc, rr, rc, is_target=is_t, chosen_tokens=tok)
    assert torch.allclose(a.margins, -b.margins)
    assert (torch.sign(a.margins) == -torch.sign(b.margins)).all()


def test_metrics_have_directions_and_components():
    pc, pr, rc, rr, is_t, tok = _batch(3)
    m = clo_loss(pc, pr, rc, rr, is_target=is_t, chosen_tokens=tok).metrics()
    for key in ("loss", "sft_loss", "cl_loss", "rewards_chosen", "rewards_rejected", "margin", "accuracy",
                "en/margin", "tgt/margin", "en/accuracy", "tgt/accuracy"):
        assert key in m


def test_no_target_rows_gives_zero_nll_with_graph():
    pc = torch.tensor([-3.0, -4.0], requires_grad=True)
    nll = target_nll(pc, torch.tensor([2, 2]), torch.tensor([0, 0]))
    assert nll.item() == 0.0
    nll.backward()  # still differentiable


@pytest.mark.parametrize("loss_type,objective", [("sigmoid", "clo"), ("ipo", "ipo")])
def test_loss_equals_trl_dpotrainer_on_same_batch(tiny_model, xl_file, loss_type, objective):
    """Run TRL's own DPOTrainer and our CLOTrainer (λ = 0) on the same pairs and weights: same loss (the paper's
    DPO sigmoid, and IPO: TRL's ``loss_type="ipo"``, length-normalised the same way)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from clo.data.formats import load_crosslingual
    from clo.data.pairs import build_pairs, to_conversational
    from clo.training.config import CLOConfig
    from clo.training.sampling import PairCollator
    from clo.training.trainer import CLOTrainer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    pairs = [to_conversational(p) for p in build_pairs(load_crosslingual(xl_file, "sw"))]
    common = dict(output_dir="/tmp/unused", report_to="none", use_cpu=True, per_device_train_batch_size=4, bf16=False,
                  precompute_ref_log_probs=True, beta=0.1, max_length=128, logging_steps=1)

    rows = [{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs]
    trl_trainer = DPOTrainer(model=copy.deepcopy(base), args=DPOConfig(**common, loss_type=[loss_type]),
                             train_dataset=Dataset.from_list(rows), processing_class=tok)
    clo_trainer = CLOTrainer(model=copy.deepcopy(base), args=CLOConfig(**common, lam=0.0, objective=objective),
                             data_collator=PairCollator(tok.pad_token_id, 128),
                             train_dataset=Dataset.from_list(pairs), processing_class=tok)
    assert clo_trainer.selective_head  # on CPU our head scores only answer tokens
    # perturb the policies identically so that ratios are not zero
    torch.manual_seed(0)
    noise = {n: torch.randn_like(p) * 0.05 for n, p in base.named_parameters()}
    for trainer in (trl_trainer, clo_trainer):
        with torch.no_grad():
            for n, p in trainer.model.named_parameters():
                p.add_(noise[n])
    rows = list(range(len(pairs)))
    trl_batch = trl_trainer.data_collator([trl_trainer.train_dataset[i] for i in rows])
    clo_batch = clo_trainer.data_collator([clo_trainer.train_dataset[i] for i in rows])
    with torch.no_grad():
        trl_loss = trl_trainer.compute_loss(trl_trainer.model, trl_batch)
        clo_loss_value = clo_trainer.compute_loss(clo_trainer.model, clo_batch)
        # the same log-probs through TRL's own fused head: equal to 1e-6
        clo_trainer.selective_head = False
        clo_fused = clo_trainer.compute_loss(clo_trainer.model, clo_batch)
    assert abs(trl_loss.item() - (0.6931 if loss_type == "sigmoid" else 25.0)) > 1e-4  # not the trivial value
    assert clo_fused.item() == pytest.approx(trl_loss.item(), abs=1e-6, rel=1e-6)  # IPO's loss is ~26: relative
    # our answer-only head computes the same log-probs up to float rounding
    assert clo_loss_value.item() == pytest.approx(trl_loss.item(), abs=1e-5, rel=1e-5)


def test_dpo_sigmoid_loss_rewards():
    losses, rc, rr = dpo_sigmoid_loss(torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]),
                                      torch.tensor([-2.0]), beta=0.5)
    assert rc.item() == pytest.approx(0.5) and rr.item() == pytest.approx(-0.5)
    assert losses.item() == pytest.approx(-F.logsigmoid(torch.tensor(1.0)).item())


# -- the other objectives: hand computations, TRL's own implementations ---------------------------------------



def _logsig(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_ipo_by_hand():
    # chosen: ratio -4 - (-6) = +2 over 2 tokens; rejected: -9 - (-8) = -1 over 4 tokens
    losses, rc, rr = ipo_pair_loss(T([-4.0]), T([-9.0]), T([-6.0]), T([-8.0]), 0.5, chosen_tokens=T([2]),
                                   rejected_tokens=T([4]))
    delta = 2 / 2 - (-1) / 4  # 1.25
    assert losses.item() == pytest.approx((delta - 1 / (2 * 0.5)) ** 2)  # 0.0625
    assert rc.item() == pytest.approx(1.0) and rr.item() == pytest.approx(-0.5)  # β · summed ratio, signs kept


def test_simpo_by_hand_and_length_normalisation():
    # chosen -4 over 2 tokens (-2 a token), rejected -9 over 3 tokens (-3 a token); β 2, γ 0.5
    losses, rc, rr = simpo_pair_loss(T([-4.0]), T([-9.0]), None, None, 2.0, chosen_tokens=T([2]),
                                     rejected_tokens=T([3]), gamma=0.5)
    assert rc.item() == pytest.approx(-4.0) and rr.item() == pytest.approx(-6.0)  # both negative, chosen higher
    assert losses.item() == pytest.approx(-_logsig(2.0 * (-2 - -3) - 0.5))
    # per token: twice the log-prob over twice the tokens is the same answer
    same, _, _ = simpo_pair_loss(T([-8.0]), T([-18.0]), None, None, 2.0, chosen_tokens=T([4]),
                                 rejected_tokens=T([6]), gamma=0.5)
    assert same.item() == pytest.approx(losses.item())
    # a summed log-prob would have ranked them the other way: -4 over 2 vs -3 over 1
    flipped, rc2, rr2 = simpo_pair_loss(T([-4.0]), T([-3.0]), None, None, 1.0, chosen_tokens=T([2]),
                                        rejected_tokens=T([1]), gamma=0.0)
    assert rc2.item() > rr2.item() and flipped.item() < math.log(2)


def test_orpo_by_hand():
    # chosen -2 over 2 tokens: p = e^-1; rejected -6 over 3 tokens: p = e^-2
    losses, rc, rr = orpo_pair_loss(T([-2.0]), T([-6.0]), None, None, 0.1, chosen_tokens=T([2]),
                                    rejected_tokens=T([3]))
    log_odds = lambda lp: lp - math.log(1 - math.exp(lp))  # noqa: E731
    expected = -0.1 * _logsig(log_odds(-1.0) - log_odds(-2.0))
    assert losses.item() == pytest.approx(expected, rel=1e-6)
    assert rc.item() == pytest.approx(-0.1) and rr.item() == pytest.approx(-0.2)


def test_kto_by_hand():
    # pair 0: chosen log-ratio +2, rejected -4; pair 1: chosen +1, rejected +3 → z = mean(2, 1, -4, 3) = 0.5
    pc, rc = T([-8.0, -9.0]), T([-10.0, -10.0])
    pr, rr = T([-14.0, -7.0]), T([-10.0, -10.0])
    losses, r_c, r_r = kto_pair_loss(pc, pr, rc, rr, 0.5)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    want = [((1 - sig(0.5 * (2 - 0.5))) + (1 - sig(0.5 * (0.5 + 4)))) / 2,
            ((1 - sig(0.5 * (1 - 0.5))) + (1 - sig(0.5 * (0.5 - 3)))) / 2]
    assert losses.tolist() == pytest.approx(want, rel=1e-6)
    assert r_c.tolist() == pytest.approx([1.0, 0.5]) and r_r.tolist() == pytest.approx([-2.0, 1.5])
    # the reference point never goes below 0 and carries no gradient: a policy far below the reference
    low_c = T([-30.0, -30.0], requires_grad=True)
    losses, _, _ = kto_pair_loss(low_c, T([-30.0, -30.0]), rc, rr, 0.5)
    direct = ((1 - torch.sigmoid(0.5 * (low_c - rc - 0.0)))
              + (1 - torch.sigmoid(0.5 * (0.0 - (T([-30.0] * 2) - rr))))) / 2
    assert torch.allclose(losses, direct)
    losses.sum().backward()
    assert (low_c.grad < 0).all()  # descending the loss raises the desirable answer's likelihood


def test_kto_equals_trl_kto_trainer_lines():
    """TRL's KTO loss is written inline in ``KTOTrainer._compute_loss`` (trl/trainer/kto_trainer.py, TRL 1.16),
    not callable alone: its lines for ``loss_type="kto"`` below, given our reference point as its ``kl``; ours
    is the mean over the concatenated desirable and undesirable losses, as TRL's trainer averages them."""
    import inspect

    from trl.trainer.kto_trainer import KTOTrainer

    src = inspect.getsource(KTOTrainer._compute_loss)
    assert "chosen_losses = 1 - F.sigmoid(self.beta * (chosen_logratios - kl))" in src
    assert "rejected_losses = 1 - F.sigmoid(self.beta * (kl - rejected_logratios))" in src
    assert ".mean().clamp(min=0)" in src
    pc, pr, rc, rr, is_t, tok = _batch(9)
    beta = 0.3
    kl = torch.cat([pc - rc, pr - rr]).mean().clamp(min=0)
    chosen_logratios, rejected_logratios = pc - rc, pr - rr
    chosen_losses = 1 - F.sigmoid(beta * (chosen_logratios - kl))
    rejected_losses = 1 - F.sigmoid(beta * (kl - rejected_logratios))
    trl_loss = torch.cat((1.0 * chosen_losses, 1.0 * rejected_losses), 0).mean()
    ours = objective_loss(pc, pr, rc, rr, is_target=is_t, chosen_tokens=tok, objective="kto", beta=beta, lam=0.0)
    assert ours.loss.item() == pytest.approx(trl_loss.item(), rel=1e-6)
    assert torch.allclose(ours.rewards_chosen, beta * chosen_logratios)
    assert torch.allclose(ours.rewards_rejected, beta * rejected_logratios)


def test_objectives_table_and_reference_needs():
    assert set(OBJECTIVES) == {"clo", "ipo", "kto", "orpo", "simpo"}
    assert [n for n, o in OBJECTIVES.items() if not o.needs_reference] == ["orpo", "simpo"]
    assert needs_reference("simpo", 0.0) is False and needs_reference("simpo", 0.5) is True
    pc, pr, rc, rr, is_t, tok = _batch(4)
    for name in ("orpo", "simpo"):  # reference-free: the same loss without any reference tensors
        a = LOSS_FUNCTIONS[name](pc, pr, None, None, is_target=is_t, chosen_tokens=tok, beta=0.1, lam=0.5)
        b = LOSS_FUNCTIONS[name](pc, pr, rc, rr, is_target=is_t, chosen_tokens=tok, beta=0.1, lam=0.5)
        assert a.loss.item() == pytest.approx(b.loss.item())
    with pytest.raises(ValueError, match="reference"):
        LOSS_FUNCTIONS["ipo"](pc, pr, None, None, is_target=is_t, chosen_tokens=tok)


@pytest.mark.parametrize("objective", ["clo", "ipo", "kto", "orpo", "simpo"])
def test_every_objective_mixes_target_nll_by_lambda(objective):
    pc, pr, rc, rr, is_t, tok = _batch(5)
    kw = dict(is_target=is_t, chosen_tokens=tok, rejected_tokens=tok + 2, objective=objective, beta=0.2)
    one, zero, half = (objective_loss(pc, pr, rc, rr, lam=lam, **kw) for lam in (1.0, 0.0, 0.5))
    assert one.loss.item() == pytest.approx(target_nll(pc, tok, is_t).item())
    assert half.loss.item() == pytest.approx(0.5 * one.loss.item() + 0.5 * zero.loss.item())
    assert zero.cl_loss.item() == pytest.approx(zero.loss.item())


def test_orpo_equals_trl_orpo_trainer_odds_ratio_loss():
    """TRL's experimental ORPOTrainer: loss = NLL(all chosen) - β · mean log σ(log odds) on per-token log-probs.
    Ours with the cross-lingual specifics off (NLL over every chosen answer, λ 0.5) is half of it."""
    from trl.experimental.orpo.orpo_trainer import ORPOTrainer

    pc, pr, rc, rr, is_t, tok = _batch(6)
    rtok = tok + 3
    fake = SimpleNamespace(beta=0.1, accelerator=SimpleNamespace(device="cpu"))
    trl_or, trl_c, trl_r, _, _ = ORPOTrainer.odds_ratio_loss(fake, pc / tok, pr / rtok)
    trl_nll = -pc.sum() / tok.sum()  # cross-entropy over all chosen tokens
    trl_loss = trl_nll - trl_or.mean()
    all_rows = torch.ones_like(is_t)  # the NLL on every chosen answer: TRL's, not the target-only one
    ours = objective_loss(pc, pr, None, None, is_target=all_rows, chosen_tokens=tok, rejected_tokens=rtok,
                          objective="orpo", beta=0.1, lam=0.5)
    assert ours.loss.item() * 2 == pytest.approx(trl_loss.item(), rel=1e-6)
    assert torch.allclose(ours.rewards_chosen, trl_c) and torch.allclose(ours.rewards_rejected, trl_r)


def test_simpo_equals_trl_cpo_trainer_simpo_loss():
    """TRL's experimental CPOTrainer with loss_type simpo (no NLL: cpo_alpha 0) on per-token log-probs."""
    from trl.experimental.cpo.cpo_trainer import CPOTrainer

    pc, pr, rc, rr, is_t, tok = _batch(7)
    rtok = tok + 1
    fake = SimpleNamespace(beta=2.0, simpo_gamma=0.7, alpha=0.0, label_smoothing=0.0, loss_type="simpo",
                           accelerator=SimpleNamespace(device="cpu"))
    trl_losses, trl_c, trl_r = CPOTrainer.cpo_loss(fake, pc / tok, pr / rtok)
    ours = objective_loss(pc, pr, None, None, is_target=is_t, chosen_tokens=tok, rejected_tokens=rtok,
                          objective="simpo", beta=2.0, gamma=0.7, lam=0.0)
    assert ours.loss.item() == pytest.approx(trl_losses.mean().item(), rel=1e-6)
    assert torch.allclose(ours.rewards_chosen, trl_c) and torch.allclose(ours.rewards_rejected, trl_r)


# -- the English anchor -------------------------------------------------------------------------------------


def test_english_anchor_is_zero_at_or_above_the_reference():
    is_t = T([0, 1, 0, 1])
    tok = T([4, 4, 5, 5])
    ref = T([-10.0, -10.0, -12.0, -12.0])
    for policy in (ref.clone(), ref + 3.0):  # equal, and above
        assert english_anchor(policy, ref, tok, is_t).item() == 0.0
    # target rows never count, however low
    assert english_anchor(T([-10.0, -99.0, -12.0, -99.0]), ref, tok, is_t).item() == 0.0


def test_english_anchor_gradient_pushes_english_likelihood_back_up():
    is_t = T([0, 1, 0, 1])
    tok = T([4, 4, 5, 5])
    ref = T([-10.0, -10.0, -12.0, -12.0])
    policy = T([-14.0, -20.0, -11.0, -20.0], requires_grad=True)  # row 0 fell 4 nats under; row 2 is above
    a = english_anchor(policy, ref, tok, is_t)
    assert a.item() == pytest.approx((4 / 4 + 0) / 2)  # mean over English pairs of max(0, ref - policy)/|y_en|
    a.backward()
    assert policy.grad[0].item() < 0  # descending the loss raises logp(y_en | x_en)
    assert policy.grad[1:].abs().sum().item() == 0  # above the reference, or target rows: no push
    # inside a whole objective, with its weight
    pc = policy.detach().clone().requires_grad_(True)
    pr, rr = T([-30.0] * 4), T([-30.0] * 4)
    out = objective_loss(pc, pr, ref, rr, is_target=is_t, chosen_tokens=tok, objective="simpo", lam=0.0, anchor=2.0)
    base = objective_loss(pc.detach(), pr, ref, rr, is_target=is_t, chosen_tokens=tok, objective="simpo", lam=0.0)
    assert out.loss.item() == pytest.approx(base.loss.item() + 2.0 * 0.5)
    assert out.anchor_loss.item() == pytest.approx(0.5) and "anchor_loss" in out.metrics()


def test_english_nll_weight_adds_the_english_answers_nll_only():
    pc, pr, rc, rr, is_t, tok = _batch(8)
    base = objective_loss(pc, pr, rc, rr, is_target=is_t, chosen_tokens=tok)
    with_en = objective_loss(pc, pr, rc, rr, is_target=is_t, chosen_tokens=tok, en_nll=0.1)
    en = ~is_t.bool()
    assert with_en.loss.item() == pytest.approx(base.loss.item() + 0.1 * (-pc[en].sum() / tok[en].sum()).item())
    assert with_en.metrics()["en_sft_loss"] == pytest.approx((-pc[en].sum() / tok[en].sum()).item())
