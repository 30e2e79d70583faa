"""The ``system_prompt`` setting: a template's default system prompt dropped in training, and kept dropped in the
tuned model's saved template so that evaluation and every later use read prompts as training did."""
from __future__ import annotations

import json

import pytest

from clo.core.spec import SpecError, TrainSpec
from clo.core.testing import CHATML_DEFAULT_SYSTEM, make_tiny_model, make_tiny_tokenizer
from clo.models.chat import default_system_prompt_tokens, format_prompt, set_system_prompt
from clo.models.load import load_model

USER = [{"role": "user", "content": "Habari yako?"}]
DEFAULT = "You are a helpful assistant named Tiny"


@pytest.fixture(scope="module")
def system_model(tmp_path_factory):
    """A tiny Llama whose chat template adds a default system prompt, as SmolLM2's does."""
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-system", template=CHATML_DEFAULT_SYSTEM)


def _tokenizer(template=CHATML_DEFAULT_SYSTEM):
    tok = make_tiny_tokenizer()
    tok.chat_template = template
    return tok


def test_none_replaces_the_default_system_prompt_with_an_empty_turn():
    tok = _tokenizer()
    before = tok.apply_chat_template(USER, tokenize=False, add_generation_prompt=True)
    n = default_system_prompt_tokens(tok)
    assert DEFAULT in before and n > 5
    assert set_system_prompt(tok, "none") == n
    after = tok.apply_chat_template(USER, tokenize=False, add_generation_prompt=True)
    assert after == "<|im_start|>system\n<|im_end|>\n" + before.split("<|im_end|>\n", 1)[1]
    ids = lambda t: t.apply_chat_template(USER, add_generation_prompt=True, return_dict=False)  # noqa: E731
    assert len(ids(tok)) == len(ids(_tokenizer())) - n
    # idempotent, and a conversation with its own system turn reads as before
    assert set_system_prompt(tok, "none") == 0
    own = [{"role": "system", "content": "Jibu kwa Kiswahili."}, *USER]
    assert tok.apply_chat_template(own, tokenize=False) == _tokenizer().apply_chat_template(own, tokenize=False)


def test_model_and_templates_without_a_default_change_nothing():
    from clo.core.testing import CHATML

    tok = _tokenizer()
    assert set_system_prompt(tok, "model") == 0 and tok.chat_template == CHATML_DEFAULT_SYSTEM
    plain = _tokenizer(CHATML)
    assert set_system_prompt(plain, "none") == 0 and plain.chat_template == CHATML
    with pytest.raises(ValueError, match="Unknown system_prompt 'short'"):
        set_system_prompt(tok, "short")
    with pytest.raises(SpecError, match="system_prompt"):
        TrainSpec.from_dict({"system_prompt": "short"})


def test_a_run_without_the_default_system_prompt_saves_a_model_that_reads_prompts_as_training_did(
        system_model, xl_file, tmp_path, monkeypatch):
    from clo.cli.main import main

    monkeypatch.setenv("CLO_HOME", str(tmp_path / "home"))
    out = tmp_path / "run"
    assert main(["train", "--model", str(system_model), "--data", str(xl_file), "--out", str(out), "--max-steps", "1",
                 "--batch-size", "2", "--system-prompt", "none"]) == 0
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "finished" and status["system_prompt"] == "none"
    assert status["system_prompt_tokens_dropped"] == default_system_prompt_tokens(_tokenizer())
    tuned, base = load_model(str(out)), load_model(str(system_model))
    assert DEFAULT in format_prompt(base.tokenizer, "Habari yako?")
    assert format_prompt(tuned.tokenizer, "Habari yako?").startswith("<|im_start|>system\n<|im_end|>\n<|im_start|>user")
    # the reference cache of a run with the default prompt is not read by one without it (other token ids)
    again = tmp_path / "with-default"
    assert main(["train", "--model", str(system_model), "--data", str(xl_file), "--out", str(again), "--max-steps",
                 "1", "--batch-size", "2"]) == 0
    assert json.loads((again / "status.json").read_text())["ref_cache_hit"] is False
    assert DEFAULT in format_prompt(load_model(str(again)).tokenizer, "Habari yako?")
