"""The CLO loss: matches TRL's DPO sigmoid loss, reduces to target NLL at λ = 1, margins flip with the pair."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from clo.losses import clo_loss, dpo_sigmoid_loss, target_nll


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


def test_loss_equals_trl_dpotrainer_on_same_batch(tiny_model, xl_file):
    """Run TRL's own DPOTrainer and our CLOTrainer (λ = 0) on the same pairs and weights: same loss."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from clo.data import load_crosslingual
    from clo.pairs import build_pairs, to_conversational
    from clo.trainer import CLOConfig, CLOTrainer, PairCollator

    tok = AutoTokenizer.from_pretrained(tiny_model)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    pairs = [to_conversational(p) for p in build_pairs(load_crosslingual(xl_file, "sw"))]
    common = dict(output_dir="/tmp/unused", report_to="none", use_cpu=True, per_device_train_batch_size=4, bf16=False,
                  precompute_ref_log_probs=True, beta=0.1, max_length=128, logging_steps=1)

    trl_trainer = DPOTrainer(model=copy.deepcopy(base), args=DPOConfig(**common),
                             train_dataset=Dataset.from_list([{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs]),
                             processing_class=tok)
    clo_trainer = CLOTrainer(model=copy.deepcopy(base), args=CLOConfig(**common, lam=0.0),
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
    assert abs(trl_loss.item() - 0.6931) > 1e-4  # not the trivial log 2
    assert clo_fused.item() == pytest.approx(trl_loss.item(), abs=1e-6)
    # our answer-only head computes the same log-probs up to float rounding
    assert clo_loss_value.item() == pytest.approx(trl_loss.item(), abs=1e-5)


def test_dpo_sigmoid_loss_rewards():
    losses, rc, rr = dpo_sigmoid_loss(torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]),
                                      torch.tensor([-2.0]), beta=0.5)
    assert rc.item() == pytest.approx(0.5) and rr.item() == pytest.approx(-0.5)
    assert losses.item() == pytest.approx(-F.logsigmoid(torch.tensor(1.0)).item())
