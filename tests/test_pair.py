"""Inside one pair (clo/evaluation/pair.py): the numbers are the trainer's own for a batch of exactly that sample,
for every objective; the gradient weights are the losses' derivatives (autograd); the CLI's output and errors."""
from __future__ import annotations

import json

import pytest
import torch
from helpers import run_cli

from clo.core.spec import TrainSpec
from clo.evaluation.pair import PairError, format_pair, hardest_pairs, inspect_pair, pair_numbers, weights
from clo.training.losses import OBJECTIVES

OBJECTIVE_CASES = [("clo", {}), ("clo", {"english_anchor": 1.0, "english_nll": 0.3}), ("ipo", {}), ("kto", {}),
                   ("orpo", {}), ("simpo", {"simpo_gamma": 0.3})]


def _make_run(path, tiny_model, data, **settings):
    """A run directory whose model is the tiny model with its weights moved (so that policy ≠ reference), and
    the perturbed state dict."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from clo.runs.rundir import RunDir

    spec = TrainSpec(model=str(tiny_model), data=str(data), precision="fp32", **settings)
    run = RunDir.create(path, spec.to_dict())
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(run.model_path, safe_serialization=True)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(run.model_path)
    run.finish("finished", step=3)
    return run, spec, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("objective,extra", OBJECTIVE_CASES)
def test_numbers_equal_the_trainers_loss_on_a_batch_of_that_sample(tiny_model, xl_file, tmp_path, objective, extra):
    """A real CLOTrainer (build_clo_trainer: its reference pass on the base, then the run's weights) computes the
    loss of a batch holding exactly sample 2; inspect_pair of the run gives the same loss, terms and margins."""
    from clo.data.formats import load_crosslingual
    from clo.models.load import load_model
    from clo.runs.rundir import RunDir
    from clo.training.run import build_clo_trainer

    settings = {"objective": objective, "beta": 0.3, "lam": 0.4, **extra}
    run, spec, state = _make_run(tmp_path / "run", tiny_model, xl_file, **settings)
    sample = 2
    records = load_crosslingual(xl_file, "sw")
    trainer = build_clo_trainer(spec=spec, loaded=load_model(str(tiny_model), device="cpu", dtype="float32"),
                                records=[records[sample]], run=RunDir.create(tmp_path / "t", spec.to_dict()),
                                device="cpu", ref_cache_dir=None)
    trainer.model.load_state_dict(state)
    ds = trainer.train_dataset
    batch = trainer.data_collator([ds[0], ds[1]])
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch).item()
    logged = {k: v[-1] for k, v in trainer._metrics["train" if trainer.model.training else "eval"].items() if v}

    got = inspect_pair(str(run.path), sample)
    num = got["numbers"]
    assert abs(loss - 0.6931) > 1e-3  # not a trivial value
    assert num["total"]["loss"] == pytest.approx(loss, rel=1e-5, abs=1e-5)
    assert num["total"]["pair_term"] == pytest.approx(logged["cl_loss"], rel=1e-5, abs=1e-5)
    assert num["total"]["nll"] == pytest.approx(logged["sft_loss"], rel=1e-5, abs=1e-5)
    en, tgt = num["pairs"]
    assert (en["direction"], tgt["direction"]) == ("en", "tgt")
    assert en["margin"] == pytest.approx(logged["en/margin"], rel=1e-4, abs=1e-5)
    assert tgt["margin"] == pytest.approx(logged["tgt/margin"], rel=1e-4, abs=1e-5)
    assert tgt["reward_chosen"] == pytest.approx(logged["tgt/rewards_chosen"], rel=1e-4, abs=1e-5)
    assert (en["loss"] + tgt["loss"]) / 2 == pytest.approx(logged["cl_loss"], rel=1e-5, abs=1e-6)
    if "english_anchor" in extra:
        assert num["total"]["anchor"] == pytest.approx(logged["anchor_loss"], rel=1e-5, abs=1e-6)
        assert num["total"]["en_nll"] == pytest.approx(logged["en_sft_loss"], rel=1e-5, abs=1e-6)
    # per-token log-probs sum to the pair's totals, and the reference (the base) differs from the run
    for pair in got["pairs"]:
        for side in ("chosen", "rejected"):
            a = pair[side]
            assert len(a["tokens"]) == a["n_tokens"] > 0
            assert sum(t["logp"] for t in a["tokens"]) == pytest.approx(a["logp"], abs=1e-3)
            assert sum(t["ref_logp"] for t in a["tokens"]) == pytest.approx(a["ref_logp"], abs=1e-3)
        assert pair["chosen"]["logp"] != pair["chosen"]["ref_logp"]
        assert "".join(t["text"] for t in pair["chosen"]["tokens"]).startswith(pair["chosen"]["text"])


@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_weights_are_the_losses_derivatives(objective):
    """push_chosen = −∂ℓ/∂log π(y✓) and push_rejected = ∂ℓ/∂log π(y✗) by autograd through the objective of
    clo.training.losses; weight = −dℓ/dh by the chain rule from the same gradients."""
    torch.manual_seed(1)
    beta, gamma = 0.25, 0.4
    n = 6
    pc = (-torch.rand(n, dtype=torch.float64) * 40 - 1).requires_grad_()
    pr = (-torch.rand(n, dtype=torch.float64) * 40 - 1).requires_grad_()
    rc = -torch.rand(n, dtype=torch.float64) * 40 - 1
    rr = -torch.rand(n, dtype=torch.float64) * 40 - 1
    nc, nr = torch.randint(3, 30, (n,)), torch.randint(3, 30, (n,))
    losses, _, _ = OBJECTIVES[objective].pair_loss(pc, pr, rc, rr, beta, chosen_tokens=nc, rejected_tokens=nr,
                                                   gamma=gamma)
    gc, gr = torch.autograd.grad(losses.sum(), (pc, pr))  # pair i's loss depends on pair i only (z is detached)
    z = float(torch.cat([pc - rc, pr - rr]).detach().mean().clamp(min=0))
    for i in range(n):
        w = weights(objective, float(pc[i]), float(pr[i]), float(rc[i]), float(rr[i]), int(nc[i]), int(nr[i]),
                    beta=beta, gamma=gamma, z=z)
        assert w["push_chosen"] == pytest.approx(-float(gc[i]), rel=1e-9, abs=1e-12)
        assert w["push_rejected"] == pytest.approx(float(gr[i]), rel=1e-9, abs=1e-12)
        dl_dpc = float(gc[i])  # = dℓ/dh · ∂h/∂log π(y✓)
        dh_dpc = {"clo": beta, "ipo": 1 / int(nc[i]), "simpo": beta / int(nc[i]),
                  "orpo": 1 / (-torch.expm1(pc[i].detach() / nc[i]).item()) / int(nc[i])}.get(objective)
        if objective == "kto":  # both h move with t: −dℓ/dt = −(∂ℓ/∂h✓ + ∂ℓ/∂h✗)
            assert w["weight"] == pytest.approx((-float(gc[i]) + float(gr[i])) / beta, rel=1e-9)
        else:
            assert w["weight"] == pytest.approx(-dl_dpc / dh_dpc, rel=1e-9)


def test_sigmoid_weight_is_sigma_of_minus_margin():
    w = weights("clo", -10.0, -20.0, -12.0, -18.0, 5, 5, beta=0.1)  # margin 0.1·(2 − (−2)) = 0.4
    assert w["h"] == pytest.approx(0.4)
    assert w["weight"] == pytest.approx(1 / (1 + torch.exp(torch.tensor(0.4)).item()))


def test_beta_and_lambda_recompute_without_a_forward_pass(tiny_model, monkeypatch):
    """pair_numbers reads the cached sums only: with the model loader and the scorer broken it still answers, and
    β and λ change the loss and weights as their formulas say."""
    import clo.evaluation.pair as pair_mod

    got = inspect_pair(str(tiny_model), 0)
    monkeypatch.setattr(pair_mod, "_load", lambda *a, **k: pytest.fail("no model may load"))
    monkeypatch.setattr(pair_mod, "_token_logps", lambda *a, **k: pytest.fail("no forward pass"))
    a = pair_numbers(got["pairs"], beta=0.1, lam=0.5)
    b = pair_numbers(got["pairs"], beta=0.1, lam=0.0)
    assert b["total"]["loss"] == pytest.approx(a["total"]["pair_term"])  # λ = 0: the pair term alone
    c = pair_numbers(got["pairs"], objective="ipo", beta=0.5, lam=0.5)
    assert c["pairs"][0]["weight"] == pytest.approx(1 / 0.5 - 2 * c["pairs"][0]["h"])
    assert got["reference"]["same_as_model"] and a["pairs"][0]["margin"] == 0.0  # a base model is its own reference
    assert a["pairs"][0]["weight"] == pytest.approx(0.5)


def test_bad_input_is_one_clear_error(tiny_model, tmp_path):
    with pytest.raises(PairError, match="No sample 99: .* 4 sample"):
        inspect_pair(str(tiny_model), 99, data=str(_xl(tmp_path)))
    with pytest.raises(PairError, match="not available offline"):
        inspect_pair("no-such-model-here", 0)
    with pytest.raises(PairError, match="--checkpoint needs a run"):
        inspect_pair(str(tiny_model), 0, checkpoint="3")
    with pytest.raises(PairError, match="Unknown objective"):
        pair_numbers([], objective="nope")


def _xl(tmp_path):
    from helpers import write_xl

    return write_xl(tmp_path / "xl.jsonl")


def test_hardest_pairs_sorted_by_margin_with_weights(tiny_model, xl_file, tmp_path):
    run, spec, _ = _make_run(tmp_path / "run", tiny_model, xl_file, beta=0.2)
    got = hardest_pairs(str(run.path))
    assert got["n_pairs"] == 8 and len(got["pairs"]) == 8  # 4 samples, both directions
    margins = [p["margin"] for p in got["pairs"]]
    assert margins == sorted(margins)
    assert {(p["sample"], p["direction"]) for p in got["pairs"]} == {(s, d) for s in range(4) for d in ("en", "tgt")}
    one = inspect_pair(str(run.path), got["pairs"][0]["sample"])  # the same numbers as the single view
    pair = next(p for p in one["numbers"]["pairs"] if p["direction"] == got["pairs"][0]["direction"])
    assert pair["margin"] == pytest.approx(got["pairs"][0]["margin"], rel=1e-4, abs=1e-5)
    assert pair["weight"] == pytest.approx(got["pairs"][0]["weight"], rel=1e-4, abs=1e-6)
    assert len(hardest_pairs(str(run.path), top=3)["pairs"]) == 3
    # before → after: the base scored on the same tokens gives the reference's log-probs, token for token
    moved = inspect_pair(str(run.path), 1, before=str(tiny_model))
    for pair, prior in zip(moved["pairs"], moved["before"]["pairs"]):
        for side in ("chosen", "rejected"):
            assert prior[side]["tokens"] == pytest.approx([t["ref_logp"] for t in pair[side]["tokens"]], abs=1e-5)


def test_cli_pair_json_table_and_errors(tiny_model, xl_file, tmp_path):
    run, _, _ = _make_run(tmp_path / "run", tiny_model, xl_file)
    code, out, err = run_cli("pair", "--model", str(run.path), "--sample", "1", "--beta", "0.5", "--json")
    assert code == 0, err
    got = json.loads(out)
    assert got["sample"] == 1 and got["numbers"]["settings"]["beta"] == 0.5
    assert [p["direction"] for p in got["pairs"]] == ["en", "tgt"]
    table = format_pair(got)  # the same text the command prints without --json
    assert "English prompt" in table and "margin" in table and "weight" in table
    code, out, err = run_cli("pair", "--hardest", str(run.path), "--top", "2")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert "8 pairs" in lines[0] and len(lines) == 4  # heading, column names, the top 2
    for args, words in ((("--model", str(run.path), "--sample", "40"), "No sample 40"),
                        (("--hardest", str(tmp_path / "nope")), "not a run directory"),
                        (("--model", "no-such-model-here", "--sample", "0"), "not available offline"),
                        (("--model", str(run.path), "--sample", "0", "--checkpoint", "9"), "no checkpoint '9'"),
                        (("--model", str(run.path), "--sample", "0", "--beta", "0"), "β must be > 0")):
        code, out, err = run_cli("pair", *args)
        assert code == 2, (args, out, err)
        assert words in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1, err
