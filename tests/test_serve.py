"""`clo serve` over real HTTP (uvicorn on 127.0.0.1, a free port) with the official openai client; a tiny model."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from helpers import free_port

from clo.evaluation.generate import GenerationOptions, generate
from clo.models.load import load_model
from clo.workshop.serve import ServeSettings, running_server

FORCE = {"min_new_tokens": 8}  # a random model may end at once; make it write
PROMPTS = ["What is the capital of Kenya?", "Habari?", "Explain why the sky is blue.", "Osha mikono yako."]
KEY = "sk-test-123"


@pytest.fixture(scope="module")
def server(tiny_model):
    lm = load_model(str(tiny_model))
    settings = ServeSettings(port=0, api_key=KEY, max_request_bytes=20_000, max_tokens_limit=64,
                             batch_window_s=0.2, extra=FORCE)
    with running_server(lm, settings, model_id="tiny") as (url, app):
        yield url, app, lm


def _client(url, key=KEY):
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=60)


def _expected(lm, prompt, n=12):
    return generate(lm, [prompt], GenerationOptions(max_new_tokens=n, batch_size=1, extra=FORCE))[0]


def _post(url, body: bytes, key=KEY, ctype="application/json"):
    req = urllib.request.Request(url + "/chat/completions", data=body, method="POST",
                                 headers={"Content-Type": ctype, "Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_models_and_greedy_answers_equal_generate(server):
    url, app, lm = server
    c = _client(url)
    assert [m.id for m in c.models.list().data] == ["tiny"]
    r = c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": PROMPTS[0]}], max_tokens=12)
    assert r.choices[0].message.content == _expected(lm, PROMPTS[0])
    assert r.choices[0].message.content
    assert r.usage.completion_tokens > 0 and r.usage.prompt_tokens > 5
    assert r.choices[0].finish_reason in ("stop", "length")


def test_streaming_equals_generate(server):
    url, app, lm = server
    c = _client(url)
    pieces = [ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": PROMPTS[1]}], max_tokens=12, stream=True) if ch.choices]
    assert len([p for p in pieces if p]) >= 2  # it really streams
    assert "".join(pieces) == _expected(lm, PROMPTS[1])


def test_concurrent_requests_are_batched_and_equal_one_at_a_time(server):
    url, app, lm = server
    c = _client(url)
    before = len(app.state.batcher.batches)

    def ask(p):
        return c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": p}],
                                         max_tokens=12).choices[0].message.content

    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        answers = list(pool.map(ask, PROMPTS))
    assert answers == [_expected(lm, p) for p in PROMPTS]
    assert max(app.state.batcher.batches[before:]) > 1  # at least two requests shared one generate call


def test_bad_requests_get_4xx_json_and_the_server_keeps_serving(server):
    url, app, lm = server
    ok = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}).encode()
    cases = {
        "malformed": (_post(url, b'{"model": "tiny", "messages": [')[0:2], 400),
        "not an object": (_post(url, b'[1, 2]'), 400),
        "oversized": (_post(url, json.dumps({"model": "tiny", "messages": [
            {"role": "user", "content": "x" * 30_000}]}).encode()), 413),
        "unknown model": (_post(url, ok.replace(b'"tiny"', b'"gpt-9"')), 404),
        "wrong key": (_post(url, ok, key="sk-wrong"), 401),
        "too many tokens": (_post(url, ok.replace(b'"max_tokens": 4', b'"max_tokens": 100000')), 400),
        "bad role": (_post(url, ok.replace(b'"user"', b'"wizard"')), 400),
        "no messages": (_post(url, b'{"model": "tiny", "messages": []}'), 400),
    }
    for what, ((status, body), want) in cases.items():
        assert status == want, what
        assert set(body["error"]) >= {"message", "type", "code"} and body["error"]["message"], what
        assert "Traceback" not in json.dumps(body), what
    status, body = _post(url, ok)
    assert status == 200 and body["choices"][0]["message"]["role"] == "assistant"
    with pytest.raises(openai.AuthenticationError):
        _client(url, "sk-nope").models.list()
    with pytest.raises(openai.NotFoundError):
        _client(url).chat.completions.create(model="nope", messages=[{"role": "user", "content": "Hi"}])


def test_clo_serve_command_answers_plain_http(tiny_model, tmp_path):
    """`python -m clo serve` as a user runs it: binds 127.0.0.1, the key from the environment, curl-style JSON."""
    port = free_port()
    env = {**os.environ, "CLO_API_KEY": KEY, "HF_HUB_OFFLINE": "1"}
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "clo", "serve", "--model", str(tiny_model), "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/v1"
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                time.sleep(0.1)
        status, body = _post(url, json.dumps({"model": tiny_model.name, "messages": [
            {"role": "user", "content": "Habari?"}], "max_tokens": 6}).encode())
        assert status == 200 and "content" in body["choices"][0]["message"]
        assert _post(url, b"{}", key="")[0] == 401  # the key from $CLO_API_KEY is required
    finally:
        proc.terminate()
        proc.wait(timeout=30)
