"""`clo export` (docs/workshop.md, "Take a tuned model home"): a run's model as a folder that transformers loads
alone, and as a GGUF that transformers' own GGUF loader reads; both give the run's greedy answers token for token.
What cannot be exported is refused with the reason, and nothing is written then."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import run_cli, write_xl

from clo.core.spec import TrainSpec
from clo.data.formats import load_prompts
from clo.runs.rundir import RunDir
from clo.workshop.export import ExportError, export_run, ollama_template

PROMPTS = load_prompts("demo", ["sw", "en"], per_lang=3)

# A child process that may import transformers and torch, and nothing of CLO Studio or peft: it loads the exported
# folder and prints each prompt's greedy answer (token ids) under the folder's own generation_config.json.
ALONE = r"""
import json, sys
sys.modules["peft"] = None  # importing peft (or clo) fails here
sys.modules["clo"] = None
from transformers import AutoModelForCausalLM, AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
model = AutoModelForCausalLM.from_pretrained(sys.argv[1])
out = []
for p in json.loads(sys.argv[2]):
    enc = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, return_tensors="pt",
                                  return_dict=True)
    out.append(model.generate(**enc, max_new_tokens=24)[0, enc["input_ids"].shape[1]:].tolist())
print(json.dumps(out))
"""


def _alone(where: Path, prompts: list[str]) -> list[list[int]]:
    p = subprocess.run([sys.executable, "-c", ALONE, str(where), json.dumps(prompts)], capture_output=True, text=True,
                       timeout=300, cwd="/")
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def _run_answers(run: Path, prompts: list[str]) -> tuple[list[str], list[int]]:
    """The run's greedy answers as CLO Studio generates them (clo.evaluation.generate), and its stop tokens."""
    from clo.evaluation.generate import GenerationOptions, generate_answers
    from clo.models.chat import stop_token_ids
    from clo.models.load import load_model

    lm = load_model(str(run), device="cpu", dtype="float32")
    answers = generate_answers(lm, prompts, GenerationOptions(max_new_tokens=24, batch_size=1))
    return [a.text for a in answers], stop_token_ids(lm.tokenizer)


def _texts(where: Path, answers: list[list[int]], stops, **kw) -> list[str]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(where, **kw)
    cut = [a[:next((i for i, t in enumerate(a) if t in stops), len(a))] for a in answers]
    return [tok.decode(a, skip_special_tokens=True).strip() for a in cut]


@pytest.fixture(scope="module")
def lora_run(tiny_model, tmp_path_factory) -> Path:
    """A short real CLO run with LoRA adapters on the tiny llama model."""
    from clo.training.run import run_training

    tmp = tmp_path_factory.mktemp("export")
    spec = TrainSpec(method="clo", model=str(tiny_model), data=str(write_xl(tmp / "xl.jsonl")), scope="lora",
                     max_steps=2, batch_size=2, lr=1e-2, lora_r=4, lora_alpha=8)
    run_training(spec, tmp / "run")
    return tmp / "run"


def test_folder_and_gguf_give_the_runs_greedy_answers(lora_run, tmp_path):
    """`clo export --gguf f32 --verify`: both forms answer like the run, token for token; and in a process with
    transformers only (no peft, no CLO Studio), the folder's own generation_config gives clo's greedy answers."""
    out = tmp_path / "home"
    code, stdout, err = run_cli("export", str(lora_run), "--out", str(out), "--gguf", "f32", "--verify", "1",
                                "--max-new-tokens", "24", "--json")
    assert code == 0, err
    result = json.loads(stdout)
    n = 2  # the first held-out prompt in Swahili and in English
    assert result["verified"]["prompts"] == n
    assert result["verified"]["folder"] == {"identical": n, "differ": []}
    assert result["verified"]["gguf"] == {"identical": n, "differ": []}
    assert result["merged_lora"] and result["gguf"] == str(out / "gguf" / "run-f32.gguf")
    assert "built from the model's config (llama)" in result["gguf_source"]
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json", "README.md", "Modelfile",
            "clo_config.yaml", "gguf"} <= set(result["files"])
    assert not (out / "adapter_config.json").exists()  # merged: no peft needed
    assert not list(tmp_path.glob(".home.partial-*"))
    assert f"- folder: {n}/{n} identical" in (out / "README.md").read_text(encoding="utf-8")

    texts = [p["prompt"] for p in PROMPTS[1:5]]
    theirs, stops = _run_answers(lora_run, texts)
    assert sum(len(a) for a in theirs) > 5 * len(texts), "the answers are too short to prove anything"
    folder = _alone(out, texts)  # generation_config.json alone: greedy, repetition penalty 1.2, end-of-turn tokens
    assert _texts(out, folder, stops) == theirs


def test_f16_gguf_holds_the_weights_rounded_to_f16(lora_run, tmp_path):
    """transformers' GGUF loader undoes llama.cpp's names and Q/K permutation: every weight comes back as the run's
    merged weight rounded to f16 (norms stay f32)."""
    import torch
    from transformers import AutoModelForCausalLM

    from clo.models.load import load_model

    result = export_run(str(lora_run), tmp_path / "h", gguf="f16")
    back = AutoModelForCausalLM.from_pretrained(result.gguf.parent, gguf_file=result.gguf.name, dtype=torch.float32)
    merged = load_model(str(lora_run), device="cpu", dtype="float32").model.merge_and_unload().state_dict()
    got = back.state_dict()
    assert set(got) == set(merged)
    for name, w in merged.items():
        want = w if w.dim() == 1 else w.to(torch.float16).to(torch.float32)
        assert torch.equal(got[name], want), name


def _source_gguf(tiny_model: Path, folder: Path) -> Path:
    """A bundled-style GGUF of the tiny model: Q8_0 matrices, metadata of its own (an organization, a name)."""
    import gguf
    import numpy as np
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from clo.workshop.export import write_gguf

    plain = folder / "plain.gguf"
    model, tok = AutoModelForCausalLM.from_pretrained(tiny_model), AutoTokenizer.from_pretrained(tiny_model)
    write_gguf(model, tok, plain, "f32")
    reader = gguf.GGUFReader(plain)
    target = folder / "pkg" / "clo_test_tiny_gguf"
    target.mkdir(parents=True)
    (target / "__init__.py").write_text("")
    writer = gguf.GGUFWriter(target / "tiny.Q8_0.gguf", "llama")
    for f in reader.fields.values():
        if f.name.startswith("GGUF.") or f.name == "general.architecture":
            continue
        writer.add_key_value(f.name, f.contents(), f.types[0],
                             sub_type=f.types[-1] if f.types[0] == gguf.GGUFValueType.ARRAY else None)
    writer.add_key_value("general.organization", "clo-test", gguf.GGUFValueType.STRING)
    for t in reader.tensors:
        data = np.array(t.data).reshape(list(reversed(t.shape.tolist())))
        if data.ndim == 2 and data.shape[-1] % 32 == 0:
            q = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(t.name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(t.name, data.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target.parent


def test_a_bundled_gguf_model_keeps_its_source_metadata(tiny_model, tmp_path, monkeypatch):
    """A run on a model that ships as a GGUF: the export copies that file's metadata and tokenizer and replaces its
    tensors (unquantized), with the run's chat template; its greedy answers are the run's."""
    import gguf

    from clo.models import registry
    from clo.training.run import run_training

    monkeypatch.syspath_prepend(str(_source_gguf(tiny_model, tmp_path)))
    monkeypatch.setitem(registry.BUNDLED, "tiny-gguf", registry.BundledModel(
        name="tiny-gguf", title="Tiny GGUF (test)", package="clo_test_tiny_gguf", install="(test)", license="MIT",
        chat=True))
    spec = TrainSpec(method="clo", model="tiny-gguf", data=str(write_xl(tmp_path / "xl.jsonl")), scope="full",
                     max_steps=1, batch_size=2, lr=1e-2, system_prompt="none")
    run_training(spec, tmp_path / "run")
    result = export_run(str(tmp_path / "run"), tmp_path / "home", gguf="f32", verify_prompts=PROMPTS[:4],
                        max_new_tokens=24)
    assert "copied from tiny.Q8_0.gguf" in result.gguf_source
    assert result.verified["gguf"]["identical"] == 4 and result.verified["folder"]["identical"] == 4
    fields = gguf.GGUFReader(result.gguf).fields
    assert fields["general.organization"].contents() == "clo-test"
    assert fields["general.file_type"].contents() == int(gguf.LlamaFileType.ALL_F32)
    assert {t.tensor_type for t in gguf.GGUFReader(result.gguf).tensors} == {gguf.GGMLQuantizationType.F32}
    saved = json.loads((tmp_path / "home" / "tokenizer_config.json").read_text()).get("chat_template") or \
        (tmp_path / "home" / "chat_template.jinja").read_text()
    assert fields["tokenizer.chat_template"].contents() == saved  # the template the run trained with


def test_model_card_and_modelfile(lora_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(lora_run, run)
    # what `clo eval --model RUN` leaves in the run (clo.evaluation.evaluate), scores made up
    summary = {"lpr": 0.5, "clean_lpr": 0.25, "real_word_rate": 0.4, "chrf": 12.5, "n": 2}
    RunDir(run).write_eval({"models": {str(run): {"en": {**summary, "lpr": 1.0}, "sw": summary}},
                            "options": {"max_new_tokens": 8, "do_sample": False, "repetition_penalty": 1.2,
                                        "n_prompts": 4, "langs": ["en", "sw"]}, "evaluated": "2026-01-01T10:00:00"})
    lora_run = run
    out = tmp_path / "home"
    export_run(str(lora_run), out, gguf="f16")
    card = (out / "README.md").read_text(encoding="utf-8")
    front = yaml.safe_load(card.split("---")[1])
    assert front["library_name"] == "transformers" and front["language"] == ["sw", "en"]
    assert {"clo-studio", "clo", "lora", "gguf"} <= set(front["tags"])
    for words in ("| method | `clo`", "| objective | `clo`", "Swahili (sw)", "## Held-out scores",
                  "| run | sw | 2 | 0.50 | 0.25 | 0.40 | 12.50 |", f"python -m clo eval --model {lora_run}",
                  "## Limits", "gguf/run-f16.gguf", "clo_config.yaml"):
        assert words in card, words
    assert yaml.safe_load((out / "clo_config.yaml").read_text())["scope"] == "lora"
    modelfile = (out / "Modelfile").read_text(encoding="utf-8")
    assert "FROM ./gguf/run-f16.gguf" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    assert 'TEMPLATE """{{ range .Messages }}' in modelfile


def test_bundled_base_model_ids():
    from clo.workshop.export import _base_model_id

    assert _base_model_id("default") == ("HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-135m-instruct")
    assert _base_model_id("/somewhere/local") == ("", None)


def _go_render(template: str, messages: list[dict]) -> str:
    """Ollama's TEMPLATE, as clo export writes it, rendered for ``messages`` (the few Go template forms it uses)."""
    import re

    default = re.match(r'\{\{ if or \(not \.Messages\) \(ne \(index \.Messages 0\)\.Role "system"\) \}\}(.*?)'
                       r'\{\{ end \}\}', template, re.S)
    text = ""
    if default:
        if messages[0]["role"] != "system":
            text += default.group(1)
        template = template[default.end():]
    body = re.fullmatch(r'\{\{ range \.Messages \}\}\{\{ if eq \.Role "system" \}\}(.*?)'
                        r'\{\{ else if eq \.Role "user" \}\}(.*?)\{\{ else if eq \.Role "assistant" \}\}(.*?)'
                        r'\{\{ end \}\}\{\{ end \}\}(.*)', template, re.S)
    assert body, template
    parts = dict(zip(("system", "user", "assistant"), body.groups()[:3]))
    for m in messages:
        text += parts[m["role"]].replace("{{ .Content }}", m["content"])
    return text + body.group(4)


@pytest.mark.parametrize("template", ["chatml", "default-system", "system-none", "plain"])
def test_ollama_template_renders_like_the_chat_template(template):
    from clo.core.testing import CHATML_DEFAULT_SYSTEM, make_tiny_tokenizer
    from clo.models.chat import PLAIN_CHAT_TEMPLATE, set_system_prompt

    tok = make_tiny_tokenizer()
    tok.chat_template = {"default-system": CHATML_DEFAULT_SYSTEM, "system-none": CHATML_DEFAULT_SYSTEM,
                         "plain": PLAIN_CHAT_TEMPLATE}.get(template, tok.chat_template)
    if template == "system-none":
        set_system_prompt(tok, "none")
    go = ollama_template(tok)["template"]
    for msgs in ([{"role": "user", "content": "Habari?"}],
                 [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                  {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Habari?"}]):
        want = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        if template == "plain":
            want = want[len(tok.bos_token):]  # llama.cpp adds BOS itself (tokenizer.ggml.add_bos_token)
        assert _go_render(go, msgs) == want


def _fake_run(folder: Path, model_dir: Path | None, state: str = "finished") -> Path:
    run = RunDir.create(folder, TrainSpec(model=str(model_dir or "default"), data="demo").to_dict())
    run.set_status(state, step=1)
    if model_dir is not None:
        shutil.copytree(model_dir, run.model_path)
    return folder


def test_refusals_name_the_reason_and_write_nothing(tiny_gpt2, tiny_model, tmp_path):
    out = tmp_path / "home"
    cases = [
        (_fake_run(tmp_path / "empty", None, "failed"), {}, "it has no model"),
        (_fake_run(tmp_path / "gpt2", tiny_gpt2), {"gguf": "f16"}, "Cannot write a GGUF for a gpt2 model"),
        (_fake_run(tmp_path / "busy", tiny_model, "queued"), {}, "it is queued"),
        (_fake_run(tmp_path / "llama", tiny_model), {"gguf": "q4"}, "Unknown GGUF type 'q4'"),
        (tmp_path / "nowhere", {}, "No run directory"),
    ]
    broken = _fake_run(tmp_path / "broken", tiny_model)
    (broken / "status.json").write_text("{not json")
    cases.append((broken, {}, "its folder is broken"))
    for run, kw, words in cases:
        with pytest.raises(ExportError, match=words.replace("(", r"\(")):
            export_run(str(run), out, **kw)
        assert not out.exists() and not list(tmp_path.glob(".home.partial-*")), words
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not an empty folder"):
        export_run(str(tmp_path / "llama"), out)
    assert (out / "mine.txt").read_text() == "keep me"
    code, _, err = run_cli("export", str(tmp_path / "llama"), "--out", str(out))
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: ") and "not an empty folder" in err
    # a folder export needs no GGUF names: a gpt2 run exports without --gguf
    assert (export_run(str(tmp_path / "gpt2"), tmp_path / "g2").folder / "model.safetensors").is_file()


def test_runs_page_exports_the_selected_run(app, lora_run, tmp_path):
    shutil.copytree(lora_run, tmp_path / "runs" / "tuned")
    app.run()
    app.switch_page("app_pages/runs.py").run()
    assert not app.exception, app.exception
    suggested = app.text_input(key="runs_export_dir").value
    assert suggested.endswith("clo-exports/tuned") or "clo-exports/tuned-" in suggested  # shown before it is used
    app.text_input(key="runs_export_dir").set_value(str(tmp_path / "home"))
    app.checkbox(key="runs_export_gguf").check()
    app.button(key="runs_export").click().run()
    assert not app.exception, app.exception
    assert f"Exported to `{tmp_path / 'home'}` (LoRA merged)" in "\n".join(s.value for s in app.success)
    assert (tmp_path / "home" / "gguf" / "tuned-f16.gguf").is_file() and (tmp_path / "home" / "Modelfile").is_file()
    app.button(key="runs_export").click().run()  # again into the same folder: refused, the export is kept
    assert "not an empty folder" in "\n".join(e.value for e in app.error)
    assert (tmp_path / "home" / "README.md").is_file()


def test_gemma3_source_gguf_round_trips_through_transformers(tmp_path):
    """The bundled Gemma 3 path, on a tiny Gemma 3: llama.cpp's names and its (1 + w) norms. A source GGUF written
    from one model, then the export of another model over that source's metadata: transformers' GGUF loader gives
    back exactly the exported model's weights, and the source's metadata stays."""
    import gguf
    import torch
    from transformers import AutoModelForCausalLM, Gemma3ForCausalLM, Gemma3TextConfig

    from clo.core.testing import make_tiny_tokenizer
    from clo.workshop.export import _add_tokenizer, _gguf_tensors, write_gguf

    torch.manual_seed(0)
    tok = make_tiny_tokenizer()
    cfg = Gemma3TextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=512,
                           sliding_window=64, initializer_range=0.2, bos_token_id=tok.bos_token_id,
                           eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    base, tuned = Gemma3ForCausalLM(cfg), Gemma3ForCausalLM(cfg)
    with torch.no_grad():
        for p in [*base.parameters(), *tuned.parameters()]:
            p.normal_(0, 0.2)  # the norms too, so that a lost +1 shows
    source = tmp_path / "src" / "gemma.gguf"
    source.parent.mkdir()
    w = gguf.GGUFWriter(source, "gemma3")
    w.add_context_length(512), w.add_embedding_length(32), w.add_block_count(2), w.add_feed_forward_length(64)
    w.add_head_count(4), w.add_head_count_kv(2), w.add_key_length(8), w.add_value_length(8)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps), w.add_rope_freq_base(1e6), w.add_sliding_window(64)
    w.add_vocab_size(len(tok)), w.add_file_type(0), w.add_chat_template(tok.chat_template)
    _add_tokenizer(w, tok)
    for name, data in _gguf_tensors(base, "gemma3", "f32").items():
        w.add_tensor(name, data)
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    out = tmp_path / "out" / "tuned.gguf"
    out.parent.mkdir()
    assert "copied from gemma.gguf" in write_gguf(tuned, tok, out, "f32", source=source)
    back = AutoModelForCausalLM.from_pretrained(out.parent, gguf_file=out.name, dtype=torch.float32)
    assert back.config.model_type == "gemma3_text" and back.config.sliding_window == 64
    want, got = tuned.state_dict(), back.state_dict()
    assert set(got) == set(want)
    # exact, but for the norms' float rounding of (w + 1) − 1
    same = {k: torch.equal(got[k], want[k]) if "norm" not in k else torch.allclose(got[k], want[k], rtol=0, atol=1e-6)
            for k in want}
    assert all(same.values()), [k for k, ok in same.items() if not ok]
