"""Training: scopes move the right parameters, batches keep both directions, runs are complete and reproducible."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from trl.trainer.dpo_trainer import DataCollatorForPreference

from clo.core.spec import SpecError, TrainSpec
from clo.training.run import run_training
from clo.training.sampling import PairSampler
from clo.training.scope import find_attention_modules


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(Path(folder).glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def _classify(name: str) -> str:
    if "self_attn" in name and "proj" in name:
        return "attention"
    if "mlp" in name:
        return "mlp"
    if "norm" in name:
        return "norm"
    if "embed" in name or "lm_head" in name:
        return "embedding"
    return "other"


@pytest.mark.parametrize("method", ["clo", "sft"])
def test_attention_scope_moves_only_attention(tiny_model, xl_file, tmp_path, method):
    spec = TrainSpec(method=method, model=str(tiny_model), data=str(xl_file), scope="attention", max_steps=1,
                     batch_size=2, lr=1e-2)
    run_training(spec, tmp_path / "run")
    before, after = _weights(tiny_model), _weights(tmp_path / "run" / "model")
    assert before.keys() == after.keys()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    kinds = {k: _classify(k) for k in before}
    assert moved, "one optimizer step must change something"
    assert all(kinds[k] == "attention" for k in moved), f"non-attention weights moved: {sorted(moved)}"
    # every attention projection moved; MLP, norms and embeddings are bit-identical
    assert {k for k in before if kinds[k] == "attention"} == moved
    for k in before:
        if kinds[k] in ("mlp", "norm", "embedding"):
            assert torch.equal(before[k], after[k]), k


def test_lora_scope_leaves_base_untouched(tiny_model, xl_file, tmp_path):
    from clo.models.load import load_model

    spec = TrainSpec(method="clo", model=str(tiny_model), data=str(xl_file), scope="lora", max_steps=2,
                     batch_size=2, lr=1e-2, lora_r=4, lora_alpha=8)
    run_training(spec, tmp_path / "run")
    model_dir = tmp_path / "run" / "model"
    assert (model_dir / "adapter_config.json").exists()
    assert json.loads((model_dir / "clo_base.json").read_text())["base_model"] == str(Path(tiny_model).resolve())
    adapter = _weights(model_dir)
    assert any("lora_B" in k and adapter[k].abs().sum() > 0 for k in adapter), "adapters did not train"
    loaded = load_model(str(tmp_path / "run"))
    base_now = {k.replace("base_model.model.", "").replace(".base_layer", ""): v
                for k, v in loaded.model.state_dict().items() if "lora_" not in k}
    before = _weights(tiny_model)
    for k, v in before.items():
        if k in base_now:
            assert torch.equal(v, base_now[k]), k


def test_gpt2_attention_modules_found(tiny_gpt2):
    from transformers import AutoModelForCausalLM

    names = find_attention_modules(AutoModelForCausalLM.from_pretrained(tiny_gpt2))
    assert any(n.endswith("attn.c_attn") for n in names) and any(n.endswith("attn.c_proj") for n in names)
    assert not any("mlp" in n for n in names)


def test_unknown_architecture_is_a_clear_error():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    with pytest.raises(SpecError, match="attention projections"):
        find_attention_modules(model)


def test_sampler_keeps_pairs_together():
    s = PairSampler(20, seed=3)
    order = list(s)
    assert sorted(order) == list(range(20))
    for i in range(0, 20, 2):
        assert order[i] % 2 == 0 and order[i + 1] == order[i] + 1


def test_trainer_batches_never_split_a_sample(tiny_model, tmp_path):
    """Through the real trainer dataloader: each batch holds both directions of every sample in it."""
    from helpers import SAMPLES, write_xl

    from clo.models.load import load_model
    from clo.runs.rundir import RunDir
    from clo.training.run import build_clo_trainer

    samples = SAMPLES * 3  # 12 samples
    samples = [(f"{a} ({i})", b, f"{c} ({i})", d) for i, (a, b, c, d) in enumerate(samples)]
    xl = write_xl(tmp_path / "xl.jsonl", samples)
    spec = TrainSpec(model=str(tiny_model), data=str(xl), batch_size=3, max_steps=1)
    from clo.data.formats import load_crosslingual

    records = load_crosslingual(xl, "sw")
    loaded = load_model(str(tiny_model))
    run = RunDir.create(tmp_path / "run", spec.to_dict())
    trainer = build_clo_trainer(spec=spec, loaded=loaded, records=records, run=run, device="cpu",
                                ref_cache_dir=tmp_path / "refcache")
    tok = loaded.tokenizer
    sample_of = {}
    for r in records:
        sample_of[r["instruction_en"]] = r["id"]
        sample_of[r["instruction"]] = r["id"]
    n_batches = 0
    for batch in trainer.get_train_dataloader():
        n_batches += 1
        half = batch["input_ids"].shape[0] // 2  # [chosen..., rejected...]
        seen: dict[str, set] = {}
        for row, is_t in zip(batch["input_ids"][:half], batch["is_target"]):
            text = tok.decode(row, skip_special_tokens=False)
            sid = next(sid for prompt, sid in sample_of.items() if prompt in text)
            seen.setdefault(sid, set()).add(int(is_t))
        assert all(v == {0, 1} for v in seen.values()), seen
    assert n_batches == 4


def test_reference_pass_scores_longest_first_and_returns_dataset_order(tiny_model, tmp_path):
    """The reference pass batches rows by length (less padding); each row's log-probs, back in dataset order,
    equal that row scored alone, without any padding."""
    from helpers import SAMPLES, write_xl

    from clo.data.formats import load_crosslingual
    from clo.models.load import load_model
    from clo.runs.rundir import RunDir
    from clo.training.run import build_clo_trainer
    from clo.training.sampling import row_lengths

    samples = [(a, " ".join([b] * (1 + i % 4)), c, " ".join([d] * (1 + (i * 3) % 5)))  # lengths vary, unsorted
               for i, (a, b, c, d) in enumerate(SAMPLES * 2)]
    records = load_crosslingual(write_xl(tmp_path / "xl.jsonl", samples), "sw")
    # fp32: the claim is exact agreement (bf16 rounds differently with other padding; tests/test_precision.py)
    spec = TrainSpec(model=str(tiny_model), data="unused", batch_size=2, max_steps=1, precision="fp32")
    loaded = load_model(str(tiny_model))
    trainer = build_clo_trainer(spec=spec, loaded=loaded, records=records,
                                run=RunDir.create(tmp_path / "run", spec.to_dict()), device="cpu", ref_cache_dir=None)
    ds = trainer.train_dataset
    assert trainer.ref_cache_hit is False and len(ds) == 2 * len(records)
    sizes = row_lengths(ds)
    assert sizes != sorted(sizes, reverse=True)  # dataset order is not the pass's order
    for i in range(len(ds)):
        batch = trainer.data_collator([{k: ds[i][k] for k in ("prompt_ids", "chosen_ids", "rejected_ids",
                                                               "is_target")}])
        chosen, rejected = trainer.compute_ref_log_probs(trainer.model, {k: v for k, v in batch.items()
                                                                         if k not in ("is_target", "lang_id")})
        assert float(chosen) == pytest.approx(ds[i]["ref_chosen_logps"], rel=1e-6, abs=1e-5), i
        assert float(rejected) == pytest.approx(ds[i]["ref_rejected_logps"], rel=1e-6, abs=1e-5), i


@pytest.mark.parametrize("buckets", [2, 3, 64])
def test_bucketed_forward_equals_one_forward_with_its_gradients(tiny_model, buckets):
    """Scoring a batch in length buckets (each cut to its longest sequence) gives one forward's log-probs and the
    same gradients; 64 buckets > 8 sequences: one sequence each."""
    from transformers import AutoModelForCausalLM

    from clo.training.logprobs import add_selective_head, bucketed_logps

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert add_selective_head(model)
    torch.manual_seed(0)
    lengths = [5, 17, 9, 30, 12, 3, 22, 8]  # right-padded to 30, as TRL's collator pads
    ids = torch.randint(3, model.config.vocab_size, (len(lengths), 30))
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    ids = ids.masked_fill(mask == 0, 0)
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :2] = -100  # a prompt: not scored

    def run(fn):
        model.zero_grad()
        out = fn()
        out.sum().backward()
        return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    one, g_one = run(lambda: model(input_ids=ids, attention_mask=mask, labels=labels, clo_logps=True))
    many, g_many = run(lambda: bucketed_logps(model, ids, mask, labels, buckets))
    assert many.shape == one.shape == (len(lengths), 29)
    assert torch.allclose(many, one, atol=1e-5)
    assert (one[labels[:, 1:] == -100] == 0).all() and (many[labels[:, 1:] == -100] == 0).all()
    assert g_one.keys() == g_many.keys() and g_one
    for n in g_one:
        assert torch.allclose(g_one[n], g_many[n], atol=1e-5, rtol=1e-4), n


def test_trainer_with_shared_prompts_scores_as_without(tiny_model, tmp_path):
    """``share_prompts`` on the trainer: the reference log-probs of a whole batch and the training path's
    per-token log-probs are those of the plain path (which the reference pass wrote)."""
    from helpers import SAMPLES, write_xl

    from clo.data.formats import load_crosslingual
    from clo.models.load import load_model
    from clo.runs.rundir import RunDir
    from clo.training.run import build_clo_trainer
    from clo.training.sampling import EXTRA_COLUMNS

    records = load_crosslingual(write_xl(tmp_path / "xl.jsonl", SAMPLES * 2), "sw")
    spec = TrainSpec(model=str(tiny_model), data="unused", batch_size=4, max_steps=1, precision="fp32")  # exactness
    trainer = build_clo_trainer(spec=spec, loaded=load_model(str(tiny_model)), records=records,
                                run=RunDir.create(tmp_path / "run", spec.to_dict()), device="cpu", ref_cache_dir=None)
    assert trainer._prompt_sharing
    ds = trainer.train_dataset
    rows = [ds[i] for i in range(len(ds))]
    batch = {k: v for k, v in trainer.data_collator(rows).items() if k not in EXTRA_COLUMNS}
    trainer.args.share_prompts = True
    chosen, rejected = trainer.compute_ref_log_probs(trainer.model, batch)
    assert torch.allclose(chosen, torch.tensor(ds["ref_chosen_logps"]), atol=1e-4)
    assert torch.allclose(rejected, torch.tensor(ds["ref_rejected_logps"]), atol=1e-4)
    shared = trainer._token_logps(trainer.model, batch)
    trainer.args.share_prompts = False
    assert torch.allclose(shared, trainer._token_logps(trainer.model, batch), atol=1e-5)


def _tiny_gemma3():
    """A tiny Gemma 3: sliding-window and full layers, a window shorter than the sequences, logit softcapping."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    cfg = Gemma3TextConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                           num_attention_heads=4, num_key_value_heads=2, head_dim=8, sliding_window=6,
                           layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                           final_logit_softcapping=30.0, max_position_embeddings=128, attn_implementation="sdpa")
    return Gemma3ForCausalLM(cfg)


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
@pytest.mark.parametrize("buckets", [1, 2])
def test_shared_prompts_give_the_plain_log_probs_and_gradients(tiny_model, arch, buckets):
    """Each pair's prompt computed once for both answers (one sequence prompt + chosen + rejected, the rejected
    answer masked off the chosen one and given its positions) scores every answer token as its own sequence
    does, gradients included — also where sliding-window layers see only part of a sequence (Gemma 3)."""
    from transformers import AutoModelForCausalLM

    from clo.training.logprobs import add_selective_head, prompt_sharing_supported, shared_prompt_logps

    model = AutoModelForCausalLM.from_pretrained(tiny_model) if arch == "llama" else _tiny_gemma3()
    assert add_selective_head(model) and prompt_sharing_supported(model) is None
    torch.manual_seed(1)
    examples = [{"prompt_ids": torch.randint(3, 290, (p,)).tolist(), "chosen_ids": torch.randint(3, 290, (c,)).tolist(),
                 "rejected_ids": torch.randint(3, 290, (r,)).tolist()}
                for p, c, r in [(4, 7, 3), (9, 2, 11), (1, 5, 5), (6, 1, 8)]]
    batch = DataCollatorForPreference(pad_token_id=0)(examples)  # TRL's own: [chosen…, rejected…], padded right
    ids, mask, completion = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
    labels = ids.masked_fill(completion == 0, -100)

    def run(fn):
        model.zero_grad()
        out = fn()
        (out * torch.linspace(0.5, 1.5, out.shape[1])).sum().backward()  # weights: a wrong position shows
        return out.detach(), {n: q.grad.clone() for n, q in model.named_parameters() if q.grad is not None}

    plain, g_plain = run(lambda: model(input_ids=ids, attention_mask=mask, labels=labels, clo_logps=True))
    shared, g_shared = run(lambda: shared_prompt_logps(model, ids, mask, completion, buckets))
    assert shared.shape == plain.shape and (plain != 0).sum() == sum(len(e["chosen_ids"]) + len(e["rejected_ids"])
                                                                      for e in examples)
    assert torch.allclose(shared, plain, atol=1e-5), (shared - plain).abs().max()
    assert ((shared == 0) == (plain == 0)).all()
    assert g_plain.keys() == g_shared.keys() and g_plain
    for n in g_plain:
        assert torch.allclose(g_plain[n], g_shared[n], atol=1e-5, rtol=1e-4), n
    # a pair whose rows do not start with the same prompt is not shared: the caller scores the batch plainly
    other = ids.clone()
    other[len(examples), 0] += 1
    assert shared_prompt_logps(model, other, mask, completion) is None


def test_spec_rejects_bad_settings():
    for bad in [dict(method="ppo"), dict(scope="mlp"), dict(lang="xx"), dict(lang="en"), dict(lr=0), dict(lr=-1e-4),
                dict(batch_size=0), dict(epochs=0), dict(lam=1.5), dict(lam=-0.1), dict(max_steps=0)]:
        with pytest.raises(SpecError):
            TrainSpec(**bad)


def test_every_preset_loads_into_the_spec():
    from clo.core.spec import list_presets, load_preset

    names = list_presets()
    assert {"demo", "paper"} <= set(names)
    for name in names:
        spec = TrainSpec.from_dict(load_preset(name), source=name)
        assert spec.method in ("clo", "sft", "sft-tgt", "sft-eng", "sft-dpo")
    paper = TrainSpec.from_dict(load_preset("paper"))
    assert (paper.lr, paper.beta, paper.lam, paper.epochs, paper.batch_size, paper.scope) == (
        5e-5, 0.1, 0.5, 1, 8, "attention")


def test_unknown_preset_key_is_an_error(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("method: clo\nlearning_rate: 0.1\n")
    from clo.core.spec import load_preset

    with pytest.raises(SpecError, match="learning_rate"):
        TrainSpec.from_dict(load_preset(str(p)))


def test_reference_cache_second_run_skips_reference_pass(tiny_model, xl_file, tmp_path, monkeypatch):
    monkeypatch.setenv("CLO_HOME", str(tmp_path / "home"))
    spec = TrainSpec(method="clo", model=str(tiny_model), data=str(xl_file), max_steps=1, batch_size=2)
    first = run_training(spec, tmp_path / "a")
    second = run_training(spec, tmp_path / "b")
    assert first.ref_cache_hit is False and second.ref_cache_hit is True
    assert second.ref_pass_seconds is None


def test_stop_event_keeps_model_of_last_step(tiny_model, xl_file, tmp_path):
    import threading

    from clo.runs.rundir import RunDir

    stop = threading.Event()

    def events(e):
        if e.get("metrics", {}).get("step") == 1:
            stop.set()

    result = run_training(TrainSpec(model=str(tiny_model), data=str(xl_file), max_steps=5, batch_size=1),
                          tmp_path / "r", events=events, stop_event=stop)
    assert result.state == "stopped" and result.steps == 1
    run = RunDir(tmp_path / "r")
    assert run.status()["state"] == "stopped" and run.has_model()


def test_yaml_strings_do_not_pass_as_booleans_or_numbers():
    for bad in [dict(trust_remote_code="false"), dict(save_steps="5"), dict(seed="x"), dict(scheduler="bogus"),
                dict(beta=float("inf")), dict(gradient_checkpointing="no")]:
        with pytest.raises(SpecError):
            TrainSpec(**bad)


def test_stop_before_the_first_step_ends_cleanly(tiny_model, xl_file, tmp_path):
    import threading

    from clo.runs.rundir import RunDir

    stop = threading.Event()
    stop.set()
    result = run_training(TrainSpec(model=str(tiny_model), data=str(xl_file), max_steps=3, batch_size=1),
                          tmp_path / "r", stop_event=stop)
    assert result.state == "stopped" and result.steps == 0
    st = RunDir(tmp_path / "r").status()
    assert st["state"] == "stopped" and "no model saved" in st["note"]


def test_gpt2_lora_targets_only_attention(tiny_gpt2, xl_file, tmp_path):
    spec = TrainSpec(method="sft", model=str(tiny_gpt2), data=str(xl_file), scope="lora", max_steps=1, batch_size=1)
    run_training(spec, tmp_path / "run")
    import json as _json

    cfg = _json.loads((tmp_path / "run" / "model" / "adapter_config.json").read_text())
    targets = cfg["target_modules"]
    assert all(".attn." in t for t in targets) and not any("mlp" in t for t in targets)


def test_training_on_a_lora_run_saves_full_weights(tiny_model, xl_file, tmp_path):
    from clo.models.load import load_model

    first = TrainSpec(method="sft", model=str(tiny_model), data=str(xl_file), scope="lora", max_steps=1, batch_size=1)
    run_training(first, tmp_path / "lora")
    second = TrainSpec(method="sft", model=str(tmp_path / "lora"), data=str(xl_file), scope="attention", max_steps=1,
                       batch_size=1)
    run_training(second, tmp_path / "on-top")
    assert (tmp_path / "on-top" / "model" / "model.safetensors").exists()
    assert not (tmp_path / "on-top" / "model" / "adapter_config.json").exists()
    load_model(str(tmp_path / "on-top"))


@pytest.mark.parametrize("lang", ["sw", "zh", "de", "ko", "id", "yo"])
def test_demo_data_trains_in_every_paper_language(tiny_model, tmp_path, lang):
    """`clo train --data demo` works for all six targets (tiny model, 2 samples, 1 step)."""
    from clo.cli.main import main

    out = tmp_path / lang
    assert main(["train", "--model", str(tiny_model), "--data", "demo", "--lang", lang, "--limit", "2",
                 "--batch-size", "2", "--max-steps", "1", "--out", str(out)]) == 0
    from clo.runs.rundir import RunDir

    assert RunDir(out).status()["state"] == "finished" and RunDir(out).config()["lang"] == lang


# -- truncation: what max_length cuts is reported, and cut samples are skipped whole -----------------------------------


def _long_sample_file(tmp_path):
    from helpers import SAMPLES, write_xl

    long_answer = " ".join(["Mji mkuu wa Kenya ni Nairobi, na ni mji mkubwa sana."] * 30)
    samples = list(SAMPLES[:3]) + [("Tell me about Nairobi.", "Nairobi is a big city.", "Niambie kuhusu Nairobi.",
                                    long_answer)]
    return write_xl(tmp_path / "xl-long.jsonl", samples)


def _lengths(tokenizer, records):

    out = []
    for r in records:
        conv = [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["response"]}]
        out.append(len(tokenizer.apply_chat_template(conv, tokenize=True, return_dict=False)))
    return out


def test_a_sample_whose_answer_would_be_cut_is_reported_and_skipped_whole(tiny_model, tmp_path):
    from transformers import AutoTokenizer

    from clo.data.formats import load_crosslingual
    from clo.runs.rundir import RunDir
    from clo.training.run import fit_to_length

    data = _long_sample_file(tmp_path)
    records = load_crosslingual(str(data), "sw")
    tok = AutoTokenizer.from_pretrained(tiny_model)
    short_max = max(_lengths(tok, records[:3])) + 40  # every short sequence fits; the long Swahili answer does not
    assert _lengths(tok, records[3:])[0] > short_max + 100
    spec = TrainSpec(model=str(tiny_model), data=str(data), max_length=short_max, batch_size=1, max_steps=3)
    kept, report = fit_to_length(tok, records, spec)
    # the long answer is the chosen side of one pair and the rejected side of the other: both would lose their end
    assert report == {"max_length": short_max, "sequences": 16, "cut": 2, "lost_end": 2, "skipped_samples": 1,
                      "policy": "skip"}
    assert [r["id"] for r in kept] == ["s0", "s1", "s2"]  # the whole sample goes: both directions together
    keep_all = TrainSpec(model=str(tiny_model), data=str(data), max_length=short_max, skip_truncated=False)
    kept, report = fit_to_length(tok, records, keep_all)
    assert len(kept) == 4 and report["policy"] == "cut" and report["skipped_samples"] == 0

    result = run_training(spec, tmp_path / "run")
    status = RunDir(result.run_dir).status()
    assert status["truncation"]["skipped_samples"] == 1 and status["n_samples"] == 3
    assert result.state == "finished"


def test_the_cli_says_what_max_length_cuts(tiny_model, tmp_path, capsys):
    from clo.cli.main import main

    data = _long_sample_file(tmp_path)
    assert main(["train", "--model", str(tiny_model), "--data", str(data), "--out", str(tmp_path / "r"),
                 "--max-steps", "1", "--batch-size", "1", "--max-length", "200"]) == 0
    err = capsys.readouterr().err
    assert "max_length 200 cuts 2 of 16 sequences; 2 lose their end-of-turn token: 1 sample(s) skipped" in err, err


def test_the_reference_cache_key_changes_with_dtype_device_head_and_config():
    from clo.training.reference import ref_cache_key

    base = dict(weights="w1", max_length=160, columns=[[[1, 2]], [[3]], [[4]]], dtype="torch.float32",
                device="cpu", head="answer-only", config='{"hidden_size": 32}')
    key = ref_cache_key(**base)
    assert key == ref_cache_key(**base)  # deterministic
    for change in [dict(dtype="bf16"), dict(device="cuda"), dict(head="trl-fused"),
                   dict(config='{"hidden_size": 64}'), dict(weights="w2"), dict(max_length=256),
                   dict(columns=[[[1, 2]], [[3]], [[5]]])]:
        assert ref_cache_key(**{**base, **change}) != key, change


def test_a_short_run_scores_only_the_samples_it_will_train_on(tiny_model, xl_file, tmp_path):
    from clo.data.formats import load_crosslingual
    from clo.runs.rundir import RunDir
    from clo.training.run import samples_used

    records = load_crosslingual(str(xl_file), "sw")
    spec = TrainSpec(model=str(tiny_model), data=str(xl_file), max_steps=1, batch_size=1, max_length=256)
    used = samples_used(records, spec)
    assert len(used) == 1 and used == samples_used(records, spec)  # deterministic: a resume picks the same one
    assert len(samples_used(records, spec, num_processes=2)) == 2  # one per rank
    assert samples_used(records, TrainSpec(data=str(xl_file), max_steps=50)) == records  # steps cover the data
    events = []
    result = run_training(spec, tmp_path / "run", events=events.append)
    assert RunDir(result.run_dir).status()["n_samples"] == 1
    reference = [e for e in events if e.get("phase") == "reference" and "rows" in e]
    assert reference and reference[0]["rows"] == 2  # one sample's two pairs, not all of them
