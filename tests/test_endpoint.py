"""A model served at a URL (`clo eval --endpoint`, clo/evaluation/endpoint.py) over real HTTP: `clo serve` started
as a real process gives the greedy answers a local model gives, token for token; a small real HTTP server that
fails on purpose (500, 429, a timeout, a refused key, a server that goes away mid-batch or mid-answer) gives one
clear message and keeps the answers received; the key never reaches an output."""
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import clo_env, free_port, run_cli, stop_process, wait_for

from clo.cli.main import main
from clo.evaluation.endpoint import ENDPOINT_KEY_ENV, RATE_LIMIT_RETRIES, Endpoint, EndpointClient, EndpointError
from clo.evaluation.evaluate import evaluate
from clo.evaluation.generate import GenerationOptions, generate

KEY = "sk-endpoint-secret-7319"
PROMPTS = [("1", "sw", "Habari yako leo?"), ("2", "sw", "Mji mkuu wa Kenya ni upi?"),
           ("3", "en", "Why is the sky blue?"), ("4", "sw", "Eleza jinsi ya kupika wali."),
           ("5", "en", "Name three colours."), ("6", "sw", "Osha mikono.")]
SWAHILI = "Ndiyo, habari njema sana. Karibu nyumbani kwetu, tutakula chakula pamoja leo jioni."


def _prompts_file(path: Path) -> Path:
    path.write_text("".join(json.dumps({"id": i, "lang": lang, "prompt": p}) + "\n" for i, lang, p in PROMPTS),
                    encoding="utf-8")
    return path


# -- `clo serve` as a real process --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tiny_model, tmp_path_factory):
    """`python -m clo serve` on the tiny model, with a key ($CLO_API_KEY on the server's side)."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "clo", "serve", "--model", str(tiny_model), "--port", str(port)],
                                env=clo_env(CLO_API_KEY=KEY), stdout=out, stderr=subprocess.STDOUT)

    def up() -> bool:
        assert proc.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return True
        except OSError:
            return False

    try:
        wait_for(up, timeout=120, what="clo serve")
        yield f"http://127.0.0.1:{port}/v1", tiny_model.name
    finally:
        stop_process(proc)


def _outputs_hold(text: str, *paths: Path) -> list[str]:
    """The files under ``paths`` whose bytes contain ``text``."""
    found = []
    for root in paths:
        for f in [root] if root.is_file() else root.rglob("*"):
            if f.is_file() and text.encode() in f.read_bytes():
                found.append(str(f))
    return found


def test_clo_eval_endpoint_equals_local_greedy_answers(served, tiny_model, tmp_path):
    """`clo eval --model M --endpoint URL` as a user runs it: the served answers are the local ones, token for token,
    so the scores are equal too; the key is in no output."""
    url, name = served
    prompts, out, home = _prompts_file(tmp_path / "p.jsonl"), tmp_path / "answers.jsonl", tmp_path / "home"
    code, stdout, stderr = run_cli("eval", "--model", str(tiny_model), "--endpoint", url, "--endpoint-model", name,
                                   "--prompts", str(prompts), "--max-new-tokens", "12", "--out", str(out), "--json",
                                   env=clo_env(home, **{ENDPOINT_KEY_ENV: KEY}))
    assert code == 0, stderr
    result = json.loads(stdout)
    served_name = f"{name}@{url.removeprefix('http://')}"
    assert list(result["models"]) == [str(tiny_model), served_name]
    rows = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    local = {r["id"]: r["response"] for r in rows if r["model"] == str(tiny_model)}
    remote = {r["id"]: r["response"] for r in rows if r["model"] == served_name}
    assert len(local) == len(PROMPTS) and local == remote
    assert any(local.values())  # answers with text in them, not only empty ones
    assert result["models"][served_name] == result["models"][str(tiny_model)]
    assert result["options"]["endpoints"][served_name] == {"url": url, "model": name, "notes": []}
    assert KEY not in stdout + stderr and not _outputs_hold(KEY, out, home)


def test_without_the_key_one_line_names_the_variable(served, tmp_path, capsys, monkeypatch):
    url, name = served
    monkeypatch.delenv(ENDPOINT_KEY_ENV, raising=False)
    code = main(["eval", "--endpoint", url, "--endpoint-model", name, "--prompts", str(_prompts_file(tmp_path / "p")),
                 "--max-new-tokens", "4"])
    err = capsys.readouterr().err
    assert code == 2 and "refused the key (401" in err and f"${ENDPOINT_KEY_ENV}" in err, err
    assert "Traceback" not in err
    monkeypatch.setenv(ENDPOINT_KEY_ENV, KEY)
    assert main(["eval", "--endpoint", url, "--endpoint-model", "nope", "--prompts", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert "has no model 'nope'; it serves: " in err and name in err and KEY not in err


def test_streaming_from_clo_serve_equals_local_generation(served, tiny_model, monkeypatch):
    url, name = served
    monkeypatch.setenv(ENDPOINT_KEY_ENV, KEY)
    opts = GenerationOptions(max_new_tokens=12)
    client = EndpointClient(Endpoint(url, name))
    for prompt in ("Habari yako leo?", "Eleza jinsi ya kupika wali."):
        pieces, gen = [], client.stream(prompt, opts)
        try:
            while True:
                pieces.append(next(gen))
        except StopIteration as done:
            answer = done.value
        expected = generate(str(tiny_model), [prompt], opts)[0]
        assert answer.text == expected == (pieces[-1] if pieces else "")
        assert all(b.startswith(a) for a, b in zip(pieces, pieces[1:]))  # it grows


# -- a server that fails on purpose -------------------------------------------------------------------------------


class Faulty:
    """A real HTTP server (http.server, a thread) speaking enough of the OpenAI API; ``mode`` picks its fault."""

    def __init__(self):
        self.mode, self.after, self.calls, self.bodies, self.keys = "ok", 0, 0, [], set()
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _json(self, status: int, body: dict, headers: dict | None = None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if outer.mode == "wrong-key":
                    return self._json(401, {"error": {"message": f"Incorrect API key provided: {self._key()}"}})
                self._json(200, {"object": "list", "data": [{"id": "m", "object": "model", "owned_by": "test"}]})

            def _key(self) -> str:
                return self.headers.get("Authorization", "")[7:]

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.calls += 1
                    n = outer.calls
                    outer.bodies.append(body)
                    outer.keys.add(self._key())
                mode = outer.mode
                if mode == "500" and n > outer.after:
                    return self._json(500, {"error": {"message": "CUDA out of memory", "type": "server_error"}})
                if mode == "429" and n > outer.after:
                    return self._json(429, {"error": {"message": "Rate limit reached"}}, {"Retry-After": "7"})
                if mode == "hang":
                    time.sleep(3)
                if mode == "gone" and n > outer.after:  # the server goes away: this connection and all later ones
                    threading.Thread(target=outer.stop, daemon=True).start()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if mode == "no-rep" and "repetition_penalty" in body:
                    refusal = "Unrecognized request argument supplied: repetition_penalty"
                    return self._json(400, {"error": {"message": refusal, "type": "invalid_request_error"}})
                if body.get("stream"):
                    return self._stream(mode)
                self._json(200, {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": SWAHILI}}],
                                 "usage": {"prompt_tokens": 5, "completion_tokens": 17, "total_tokens": 22}})

            def _stream(self, mode):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                words = SWAHILI.split(" ")
                for i, w in enumerate(words):
                    if mode == "slow-stream":  # a browser can see the answer grow
                        time.sleep(0.4)
                    if mode == "gone-stream" and i == 3:
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
                             "choices": [{"index": 0, "delta": {"content": (" " if i else "") + w},
                                          "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                done = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
                        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                self.wfile.write(f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n".encode())
                self.close_connection = True

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):  # a client that timed out and left: no noise
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.stopped = False

    def stop(self):
        if not self.stopped:
            self.stopped = True
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture()
def faulty():
    server = Faulty()
    yield server
    server.stop()


def _eval(faulty, tmp_path, *extra) -> tuple[int, Path]:
    """`clo eval --endpoint` (in this process) against ``faulty``: the exit code and the --out file."""
    out = tmp_path / "answers.jsonl"
    code = main(["eval", "--endpoint", faulty.url, "--endpoint-model", "m", "--prompts",
                 str(_prompts_file(tmp_path / "p.jsonl")), "--out", str(out), "--batch-size", "2", *extra])
    return code, out


@pytest.mark.parametrize("mode, message", [
    ("500", "failed (500: CUDA out of memory): see the server's log"),
    ("gone", "stopped answering"),
])
def test_a_failure_mid_batch_keeps_the_answers_received(faulty, tmp_path, capsys, monkeypatch, mode, message):
    monkeypatch.setenv(ENDPOINT_KEY_ENV, KEY)
    faulty.mode, faulty.after = mode, 3
    code, out = _eval(faulty, tmp_path)
    std = capsys.readouterr()
    assert code == 1 and message in std.err and "Traceback" not in std.err, std.err
    assert "3 of 6 prompts answered before it" in std.err and f"in {out}" in std.err and "--responses" in std.err
    rows = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert len(rows) == 3 and all(r["partial"] and r["response"] == SWAHILI for r in rows)
    assert "m@127.0.0.1" in std.out  # the scores of what was received are printed too
    assert KEY not in std.out + std.err + out.read_text("utf-8")
    # the answers received are scored again as a user is told to
    assert main(["eval", "--responses", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["models"]


def test_a_partial_evaluation_without_out_writes_a_file_here(faulty, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    faulty.mode, faulty.after = "500", 2
    code = main(["eval", "--endpoint", faulty.url, "--endpoint-model", "m", "--prompts",
                 str(_prompts_file(tmp_path / "p.jsonl")), "--batch-size", "1", "--json"])
    err = capsys.readouterr().err
    kept = list(tmp_path.glob("clo-eval-partial-*.jsonl"))
    assert code == 1 and len(kept) == 1 and kept[0].name in err
    assert len(kept[0].read_text("utf-8").splitlines()) == 2


def test_rate_limits_wait_for_retry_after_a_bounded_number_of_times(faulty, tmp_path):
    faulty.mode, faulty.after = "429", 0
    waits: list[float] = []
    client = EndpointClient(Endpoint(faulty.url, "m"), sleep=waits.append)
    with pytest.raises(EndpointError) as e:
        client.answers(["Habari?"], GenerationOptions(batch_size=1))
    assert waits == [7.0] * RATE_LIMIT_RETRIES and faulty.calls == RATE_LIMIT_RETRIES + 1
    assert "still answers 429 Too Many Requests" in str(e.value) and "--batch-size" in str(e.value)
    # a limit that lifts: the answers come, nothing is lost
    faulty.calls = 0
    waits.clear()

    def lift(seconds):
        waits.append(seconds)
        faulty.after = 10**6  # the next request is answered

    client.sleep = lift
    assert [a.text for a in client.answers(["Habari?", "Jambo?"], GenerationOptions(batch_size=1))] == [SWAHILI] * 2
    assert waits == [7.0]


def test_a_timeout_names_the_wait_and_the_flag(faulty, tmp_path, capsys):
    faulty.mode = "hang"
    code, out = _eval(faulty, tmp_path, "--endpoint-timeout", "0.5")
    err = capsys.readouterr().err
    assert code == 1 and "no answer from the endpoint" in err and "within 0.5 s" in err and "--endpoint-timeout" in err
    assert "Traceback" not in err


def test_refusals_and_unreachable_servers_are_one_line(faulty, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(ENDPOINT_KEY_ENV, KEY)
    faulty.mode = "wrong-key"  # the server echoes the key back: it is masked
    code, _ = _eval(faulty, tmp_path)
    err = capsys.readouterr().err
    assert code == 2 and "refused the key (401: Incorrect API key provided: ***)" in err and KEY not in err
    faulty.stop()
    code, _ = _eval(faulty, tmp_path)
    err = capsys.readouterr().err
    assert code == 2 and "cannot be reached" in err and "that the server is running" in err
    for bad in (["--endpoint", "ftp://x/v1", "--endpoint-model", "m"], ["--endpoint", faulty.url],
                ["--endpoint-model", "m", "--model", "default"]):
        assert main(["eval", *bad]) == 2
        assert "error: " in capsys.readouterr().err


def test_a_refused_repetition_penalty_is_dropped_and_said(faulty, tmp_path):
    faulty.mode = "no-rep"
    result = evaluate([Endpoint(faulty.url, "m")], [{"id": "1", "lang": "sw", "prompt": "Habari?"}])
    info = result["options"]["endpoints"]["m@" + faulty.url.removeprefix("http://")]
    assert result["responses"][0]["response"] == SWAHILI and "partial" not in result
    assert info["notes"] == ["repetition_penalty not accepted by the endpoint: its own was used"]
    sent = faulty.bodies[-1]
    assert sent["messages"] == [{"role": "user", "content": "Habari?"}] and sent["temperature"] == 0
    assert sent["max_tokens"] == 128 and "repetition_penalty" not in sent


def test_a_stream_cut_mid_answer_keeps_its_text(faulty):
    faulty.mode = "gone-stream"
    gen = EndpointClient(Endpoint(faulty.url, "m")).stream("Habari?", GenerationOptions())
    seen = []
    with pytest.raises(EndpointError) as e:
        for text in gen:
            seen.append(text)
    assert "stopped in the middle of an answer" in str(e.value)
    assert e.value.answers[0].text == seen[-1] == "Ndiyo, habari njema"


def test_the_key_reaches_no_log_even_at_debug_level(faulty, tmp_path, monkeypatch, capsys, caplog):
    """The key is sent (the server sees it) but no logger writes it, not even the HTTP libraries at DEBUG."""
    monkeypatch.setenv(ENDPOINT_KEY_ENV, KEY)
    for name in (None, "openai", "httpx", "httpcore", "httpx2", "httpcore2"):
        caplog.set_level(logging.DEBUG, logger=name)
    seen = []
    faulty.mode = "ok"
    assert main(["-v", "eval", "--endpoint", faulty.url, "--endpoint-model", "m", "--prompts",
                 str(_prompts_file(tmp_path / "p.jsonl")), "--json"]) == 0
    seen.append(capsys.readouterr())
    faulty.mode = "wrong-key"
    assert main(["-v", "eval", "--endpoint", faulty.url, "--endpoint-model", "m", "--prompts",
                 str(tmp_path / "p.jsonl")]) == 2
    seen.append(capsys.readouterr())
    assert faulty.keys == {KEY}  # sent as the bearer token
    assert caplog.records and KEY not in caplog.text
    assert not [s for s in seen if KEY in s.out + s.err]
    ep = Endpoint(faulty.url, "m")
    assert KEY not in repr(ep) and os.environ[ENDPOINT_KEY_ENV] == KEY


# -- the Compare page ---------------------------------------------------------------------------------------------


def test_compare_page_adds_a_model_served_at_a_url(app, faulty, monkeypatch):
    """The Compare page: a served model joins the picker, streams its answer beside the local one with the same
    language badge, is scored in the batch view, and a server failing part-way leaves a warning and its answers;
    the key is never on the page."""
    monkeypatch.setenv(ENDPOINT_KEY_ENV, KEY)
    at = app
    at.run()
    at.switch_page("app_pages/compare.py").run()
    assert not at.exception, at.exception
    assert any(ENDPOINT_KEY_ENV in c.value and "is set" in c.value for c in at.caption)
    at.text_input(key="cmp_ep_url").input(faulty.url.replace("/v1", "/nope"))
    at.text_input(key="cmp_ep_model").input("m")
    faulty.mode = "wrong-key"
    at.button(key="cmp_ep_add").click().run()
    assert any("refused the key" in e.value for e in at.error) and "cmp_endpoints" not in at.session_state
    faulty.mode = "ok"
    at.text_input(key="cmp_ep_url").input(faulty.url)
    at.button(key="cmp_ep_add").click().run()
    assert not at.exception, at.exception
    name = "m@" + faulty.url.removeprefix("http://")
    picked = at.multiselect(key="cmp_models").value
    assert len(picked) == 2 and picked[-1] == name
    at.button(key="cmp_go").click().run()  # a held-out Swahili prompt
    assert not at.exception, at.exception
    assert at.session_state["cmp_answers"]["answers"][name] == SWAHILI
    assert faulty.bodies[-1]["stream"] is True  # it streamed
    badges = [m.value for m in at.markdown if "-badge[" in m.value]
    assert len(badges) == 2 and any("clean" in b for b in badges), badges
    at.number_input(key="cmp_batch_n").set_value(1)
    at.number_input(key="cmp_max_new").set_value(8).run()
    at.button(key="cmp_batch_go").click().run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert {"m · served at " + faulty.url} <= set(table["model"]) and len(table) == 4
    faulty.mode, faulty.after = "500", faulty.calls + 1  # one more answer, then the server fails
    at.button(key="cmp_batch_go").click().run()
    assert not at.exception, at.exception
    warning = " ".join(w.value for w in at.warning)
    assert "failed (500: CUDA out of memory)" in warning and "1 of 2 answers" in warning
    kept = at.session_state["cmp_batch"]["responses"]
    assert [r["response"] for r in kept if r["model"] == name] == [SWAHILI] and all(
        r["partial"] for r in kept if r["model"] == name)
    shown = [str(e.value) for kind in ("markdown", "caption", "error", "warning", "success", "text_input")
             for e in getattr(at, kind)]
    assert not [s for s in shown if KEY in s] and KEY not in repr(
        [at.session_state[k] for k in ("cmp_endpoints", "cmp_answers", "cmp_batch")])
