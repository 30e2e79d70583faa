"""The answers' log-probabilities in metrics.jsonl (logps_chosen, logps_rejected, per direction), for CLO and for
SFT, checked against a direct computation on the tiny model and against the loss that used them; the charts of a
run with and without them; several runs on the same axes, in clo and on the Runs page."""
from __future__ import annotations

import json

import pytest
import torch
from helpers import SAMPLES

from clo.core.spec import TrainSpec
from clo.runs.charts import overlay, run_charts
from clo.runs.rundir import RunDir
from clo.training.run import run_training

DIRECTIONS = ("en", "tgt")
LOGPS = ("logps_chosen", "logps_rejected", "en_logps_chosen", "en_logps_rejected", "tgt_logps_chosen",
         "tgt_logps_rejected")


def answer_logp(model, tok, prompt: str, answer: str) -> tuple[float, int]:
    """log π(answer | prompt) summed over the answer's tokens (its end-of-turn included), from the model's full
    logits, and the number of those tokens: the chat template as the trainers tokenize it, no TRL, no answer-only
    head."""
    user = [{"role": "user", "content": prompt}]
    full = tok.apply_chat_template(user + [{"role": "assistant", "content": answer}], tokenize=True, return_dict=False)
    head = tok.apply_chat_template(user, add_generation_prompt=True, tokenize=True, return_dict=False)
    n = next((i for i, (a, b) in enumerate(zip(head, full)) if a != b), min(len(head), len(full)))
    ids = torch.tensor([full])
    with torch.no_grad():
        logp = model(ids).logits[0, :-1].float().log_softmax(-1).gather(-1, ids[0, 1:, None])[:, 0]
    return logp[n - 1:].sum().item(), len(full) - n


@pytest.fixture(scope="module")
def direct(tiny_model):
    """For each direction, the mean log-prob of its chosen and rejected answers over every sample, and the token
    counts, under the untrained tiny model (what step 1 scores: the first step's batch holds every sample)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model)
    out = {}
    for d in DIRECTIONS:  # en: x_en → y_en ✓ / y_t ✗;  tgt: x_t → y_t ✓ / y_en ✗
        chosen, rejected = [], []
        for ie, re_, it, rt in SAMPLES:
            prompt, ok, other = (ie, re_, rt) if d == "en" else (it, rt, re_)
            chosen.append(answer_logp(model, tok, prompt, ok))
            rejected.append(answer_logp(model, tok, prompt, other))
        out[d] = {"chosen": sum(c for c, _ in chosen) / len(chosen),
                  "rejected": sum(r for r, _ in rejected) / len(rejected),
                  "chosen_tokens": sum(n for _, n in chosen)}
    return out


def train(tmp_path, name, tiny_model, xl_file, **settings) -> list[dict]:
    spec = TrainSpec(model=str(tiny_model), data=str(xl_file), lang="sw", batch_size=len(SAMPLES), max_steps=2,
                     lr=1e-3, **settings)
    run_training(spec, tmp_path / name)
    return RunDir(tmp_path / name).metrics()


def test_clo_logs_the_log_probs_its_loss_used(tmp_path, tiny_model, xl_file, direct):
    rows = train(tmp_path, "clo", tiny_model, xl_file)
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert all(isinstance(r.get(k), float) for k in LOGPS), r
    first = rows[0]  # before the first update the policy is the untrained model
    for d in DIRECTIONS:
        assert first[f"{d}_logps_chosen"] == pytest.approx(direct[d]["chosen"], rel=1e-4, abs=1e-3)
        assert first[f"{d}_logps_rejected"] == pytest.approx(direct[d]["rejected"], rel=1e-4, abs=1e-3)
    both = (first["en_logps_chosen"] + first["tgt_logps_chosen"]) / 2  # the same number of pairs each way
    assert first["logps_chosen"] == pytest.approx(both, rel=1e-5)
    # the loss read these very log-probs: its SFT term is the target answers' NLL per token
    tokens = direct["tgt"]["chosen_tokens"]
    assert first["sft_loss"] == pytest.approx(-first["tgt_logps_chosen"] * len(SAMPLES) / tokens, rel=1e-4)
    # and the rewards are their drift from the reference: 0 at step 1, then β times the change of the log-prob
    assert first["rewards_chosen"] == pytest.approx(0, abs=1e-4)
    second = rows[1]  # the same four samples (one batch an epoch): reward = β·(log π now − log π at step 1)
    assert second["rewards_chosen"] == pytest.approx(0.1 * (second["logps_chosen"] - first["logps_chosen"]),
                                                     rel=1e-3, abs=1e-4)
    assert second["rewards_rejected"] == pytest.approx(0.1 * (second["logps_rejected"] - first["logps_rejected"]),
                                                       rel=1e-3, abs=1e-4)


def test_sft_logs_the_trained_and_the_other_language_answer(tmp_path, tiny_model, xl_file, direct):
    rows = train(tmp_path, "sft", tiny_model, xl_file, method="sft")
    assert [r["step"] for r in rows] == [1, 2]
    first = rows[0]
    for d in DIRECTIONS:  # trained answer = chosen, the other-language answer after the same prompt = rejected
        assert first[f"{d}_logps_chosen"] == pytest.approx(direct[d]["chosen"], rel=1e-4, abs=1e-3)
        assert first[f"{d}_logps_rejected"] == pytest.approx(direct[d]["rejected"], rel=1e-4, abs=1e-3)
    # the SFT loss is the NLL of exactly the answers logged as chosen, per token over both directions
    tokens = sum(direct[d]["chosen_tokens"] for d in DIRECTIONS)
    logged_sum = sum(first[f"{d}_logps_chosen"] for d in DIRECTIONS) * len(SAMPLES)
    assert first["loss"] == pytest.approx(-logged_sum / tokens, rel=1e-4)
    assert "rewards_chosen" not in first and "margin" not in first  # SFT has no pairs

    # sft_logps off: no extra forward pass, so only the trained answer's log-prob (free: the loss's own forward)
    one_way = train(tmp_path, "sft-tgt", tiny_model, xl_file, method="sft-tgt", sft_logps=False)[0]
    assert one_way["tgt_logps_chosen"] == pytest.approx(direct["tgt"]["chosen"], rel=1e-4, abs=1e-3)
    assert one_way["logps_chosen"] == one_way["tgt_logps_chosen"]
    assert "logps_rejected" not in one_way and "tgt_logps_rejected" not in one_way
    assert "en_logps_chosen" not in one_way  # the English direction is not trained, so not scored


def old_run(path, rows, config):
    """A run folder as CLO Studio wrote it before the log-probabilities were logged."""
    path.mkdir(parents=True)
    (path / "config.yaml").write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in config.items()))
    (path / "status.json").write_text(json.dumps({"state": "finished", "started": "2026-01-01T00:00:00+00:00"}))
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return RunDir(path)


OLD_ROWS = [{"step": s, "stage": "clo", "loss": 3.0 - 0.1 * s, "sft_loss": 5.3, "cl_loss": 0.69 - 0.1 * s,
             "rewards_chosen": 0.1 * s, "rewards_rejected": -0.2 * s, "margin": 0.3 * s, "accuracy": min(1.0, 0.4 * s),
             "en_accuracy": 1.0, "tgt_accuracy": 1.0} for s in (1, 2, 3, 4)]


def test_charts_explain_themselves_and_old_runs_still_chart(tmp_path):
    charts = {c.title: c for c in run_charts(OLD_ROWS, {"method": "clo", "lambda": 0.5, "beta": 0.1})}
    assert list(charts) == ["Loss", "Rewards", "Log-probabilities", "Preference accuracy"]
    assert not charts["Log-probabilities"].series and "before" in charts["Log-probabilities"].empty
    assert "β·log(π/π_ref)" in charts["Rewards"].caption and "β = 0.1" in charts["Rewards"].caption
    assert "reached 1.0 at step 3" in charts["Preference accuracy"].caption
    loss = charts["Loss"].caption  # the NLL term (0.5·5.3) is most of the total: why the total barely moves
    assert "0.59 → 0.29" in loss and "most of the total" in loss
    sft = {c.title: c for c in run_charts([{"step": 1, "loss": 2.0, "logps_chosen": -50.0, "logps_rejected": -60.0,
                                             "tgt_logps_chosen": -50.0, "tgt_logps_rejected": -60.0}],
                                           {"method": "sft-tgt"})}
    assert [s.label for s in sft["Log-probabilities"].series] == ["trained · target prompts",
                                                                  "other language · target prompts"]
    assert "SFT" in sft["Log-probabilities"].caption and not sft["Rewards"].series
    assert run_charts([], {})[0].series == []  # nothing logged yet: nothing to draw, no error


def test_overlay_aligns_runs_by_step_and_names_what_differs(tmp_path):
    base = {"method": "clo", "lang": "sw", "objective": "clo", "beta": 0.1, "lambda": 0.5, "lr": 5e-5}
    a = old_run(tmp_path / "a", OLD_ROWS, base)
    b = old_run(tmp_path / "b", OLD_ROWS[:2], {**base, "beta": 0.5})
    c = old_run(tmp_path / "c", OLD_ROWS, {**base, "beta": 0.5, "objective": "ipo"})
    ov = overlay([a.path, b.path, c, tmp_path / "nothing"], ["margin", "logps_chosen", "nope"])
    assert ov.differ == ["objective", "beta"]
    assert [r["label"] for r in ov.runs] == ["objective=clo, beta=0.1", "objective=clo, beta=0.5",
                                             "objective=ipo, beta=0.5"]
    assert ov.steps == [1, 2, 3, 4]
    margin = ov.charts[0]
    assert [c.title for c in ov.charts] == ["Margin"]  # no run logged logps_chosen
    assert margin.series[1].values == [0.3, 0.6, None, None]  # b stopped at step 2: aligned, not shifted
    assert any("nothing" in p for p in ov.problems) and any("nope" in p for p in ov.problems)
    same = overlay([a.path, old_run(tmp_path / "a2", OLD_ROWS, base).path])  # nothing differs: named by folder
    assert same.differ == [] and [r["label"] for r in same.runs] == ["a", "a2"]
    sft = old_run(tmp_path / "sft", OLD_ROWS, {**base, "method": "sft", "beta": 0.5})
    mixed = overlay([a.path, sft.path])  # β does not apply to SFT: its line is not named by it
    assert mixed.differ == ["method", "beta"] and [r["label"] for r in mixed.runs] == ["method=clo, beta=0.1",
                                                                                     "method=sft"]


def test_runs_page_overlays_two_runs_named_by_beta(app, tmp_path, tiny_model, xl_file):
    runs = tmp_path / "runs"
    for name, beta in (("beta-small", 0.1), ("beta-large", 0.5)):
        run_training(TrainSpec(model=str(tiny_model), data=str(xl_file), lang="sw", batch_size=2, max_steps=2,
                               beta=beta), runs / name)
    old_run(runs / "old", OLD_ROWS, {"method": "clo", "lang": "sw", "beta": 0.1})  # no log-prob columns
    at = app
    at.run()
    at.switch_page("app_pages/runs.py").run()
    at.selectbox(key="runs_sel").set_value("old").run()  # a run from before: its charts still draw
    assert not at.exception, at.exception
    assert "trained before CLO Studio logged" in "\n".join(c.value for c in at.caption)
    at.multiselect(key="runs_overlay").set_value(["beta-small", "beta-large"]).run()
    assert not at.exception, at.exception
    overlaid = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if "runs-overlay" in c.proto.id]
    titles = [f["layout"]["title"]["text"] for f in overlaid]
    assert titles == ["Total loss", "Margin", "Preference accuracy", "log π of the chosen answer",
                      "log π of the rejected answer"]
    for fig in overlaid:  # one line per run, named by the setting that differs, on the same steps
        assert [t["name"] for t in fig["data"]] == ["beta=0.1", "beta=0.5"]
        assert [t["x"] for t in fig["data"]] == [[1, 2], [1, 2]]
    assert "`beta`" in "\n".join(c.value for c in at.caption)
    at.multiselect(key="runs_overlay").set_value(["beta-small", "old"]).run()  # an old run beside a new one
    assert not at.exception, at.exception
