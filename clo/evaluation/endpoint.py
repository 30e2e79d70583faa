"""A model served at a URL: answers from any OpenAI-compatible chat endpoint, scored like a local model's
(docs/evaluation.md, "A served model").

    python -m clo eval --model default --endpoint http://127.0.0.1:8000/v1 --endpoint-model default --lang sw

Each prompt is sent as it is sent to a local model: one user turn and no system turn (the server's chat template
adds its own default system prompt, as the local tokenizer's does), ``max_tokens`` = ``max_new_tokens``,
``temperature`` 0 (greedy) unless sampling, ``repetition_penalty`` as an extra field (dropped, and said so, where
the server refuses it). ``batch_size`` requests are in flight at once. The answer is cut at a new turn exactly as
a local answer (:func:`clo.evaluation.generate.clean_answer`).

The key, where the endpoint needs one, comes only from the environment (``$CLO_ENDPOINT_API_KEY``); it is never
written to a result, a file, a log or the page, and is masked in any message the server sends back. A timeout, a
refusal, a rate limit (429; its ``Retry-After`` is waited for, :data:`RATE_LIMIT_RETRIES` times at most) or a
server that goes away is one :class:`EndpointError` that names the problem and what to do, and carries the answers
already received.
"""
from __future__ import annotations

import email.utils
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from clo.evaluation.generate import Answer, GenerationOptions, clean_answer

__all__ = ["ENDPOINT_KEY_ENV", "RATE_LIMIT_RETRIES", "Endpoint", "EndpointError", "EndpointClient", "has_key",
           "body_message"]

ENDPOINT_KEY_ENV = "CLO_ENDPOINT_API_KEY"
RATE_LIMIT_RETRIES = 5  # waits after a 429 before giving up
MAX_WAIT_S = 60.0  # the longest a Retry-After is waited for, each time
DEFAULT_TIMEOUT_S = 120.0


def has_key() -> bool:
    """Whether ``$CLO_ENDPOINT_API_KEY`` is set (the page says so; it never shows the key)."""
    return bool(os.environ.get(ENDPOINT_KEY_ENV))


def public_url(url: str) -> str:
    """``url`` without user, password, query or fragment: what results, messages and the page show."""
    p = urlsplit(url.strip())
    host = p.hostname or ""
    if p.port:
        host += f":{p.port}"
    return urlunsplit((p.scheme, host, p.path.rstrip("/"), "", ""))


@dataclass(frozen=True)
class Endpoint:
    """A model at an OpenAI-compatible endpoint: ``url`` is the base URL (``http://HOST:PORT/v1``), ``model`` the
    name the server knows it by."""

    url: str
    model: str
    timeout: float = DEFAULT_TIMEOUT_S

    def __post_init__(self):
        p = urlsplit(self.url.strip())
        if p.scheme not in ("http", "https") or not p.hostname:
            raise EndpointError(f"{self.url!r} is not an endpoint URL: give the base URL of an OpenAI-compatible "
                                "server, such as http://127.0.0.1:8000/v1")
        if not self.model.strip():
            raise EndpointError(f"no model name for the endpoint {public_url(self.url)}: give the name the server "
                                "knows it by (--endpoint-model; GET /v1/models lists them)")
        if not self.timeout > 0:
            raise EndpointError(f"the endpoint timeout must be above 0 seconds, not {self.timeout:g}")

    @property
    def name(self) -> str:
        """How results name it: ``MODEL@HOST:PORT/PATH`` (no credentials)."""
        p = urlsplit(self.url.strip())
        where = (p.hostname or "") + (f":{p.port}" if p.port else "") + p.path.rstrip("/")
        return f"{self.model.strip()}@{where}"


class EndpointError(RuntimeError):
    """The endpoint cannot be used: one message naming the problem and what to do. ``answers``: one per prompt, in
    the prompts' order, ``None`` where none was received; ``received``: how many were."""

    def __init__(self, message: str, answers: list | None = None):
        super().__init__(message)
        self.answers = answers or []

    @property
    def received(self) -> int:
        return sum(a is not None for a in self.answers)


def _mask(text: str) -> str:
    key = os.environ.get(ENDPOINT_KEY_ENV)
    return text.replace(key, "***") if key else text


def error_body(e) -> dict | str:
    """What an OpenAI-compatible server's error body says: its ``error`` member (a dict, or a plain string some
    servers send), or the whole body."""
    body = e.body if isinstance(e.body, dict) else {}
    return body.get("error", body) if isinstance(body, dict) else {}


def body_message(e) -> str | None:
    """The ``message`` of an error body shaped as OpenAI's (``{"error": {"message": …}}``); None otherwise."""
    err = error_body(e)
    return err.get("message") if isinstance(err, dict) else None


def _server_message(e) -> str:
    err = error_body(e)
    msg = body_message(e) or (err if isinstance(err, str) else None)
    if not msg:
        msg = (getattr(e.response, "text", "") or "").strip()[:200] or getattr(e.response, "reason_phrase", "")
    return _mask(str(msg))


def _retry_after(response) -> float | None:
    """Seconds a 429's ``Retry-After`` (or ``retry-after-ms``) asks for; None when it gives none."""
    headers = getattr(response, "headers", {}) or {}
    ms = headers.get("retry-after-ms")
    try:
        if ms is not None:
            return max(0.0, float(ms) / 1000)
    except ValueError:
        pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, when.timestamp() - time.time()) if when else None


def _cause(e: BaseException) -> str:
    inner = e.__cause__ or e.__context__
    text = str(inner or e).strip() or type(inner or e).__name__
    return _mask(text)


class EndpointClient:
    """Talks to one :class:`Endpoint` with the official ``openai`` client; its own bounded retries on 429 only."""

    def __init__(self, endpoint: Endpoint, sleep=time.sleep):
        import openai  # the client is imported only where an endpoint is used

        self.endpoint, self.openai, self.sleep = endpoint, openai, sleep
        key = os.environ.get(ENDPOINT_KEY_ENV) or "none"  # from the environment only; never stored
        self.client = openai.OpenAI(base_url=endpoint.url.strip(), api_key=key, timeout=endpoint.timeout,
                                    max_retries=0)
        self.send_repetition_penalty = True
        self.notes: list[str] = []  # what the server would not take (shown beside the results)
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return public_url(self.endpoint.url)

    # -- requests -----------------------------------------------------------------------------------------------

    def _body(self, prompt, opts: GenerationOptions, streaming: bool) -> dict:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        body = {"model": self.endpoint.model.strip(), "messages": messages, "max_tokens": opts.max_new_tokens}
        if opts.do_sample:
            body.update(temperature=opts.temperature, top_p=opts.top_p, seed=opts.seed)
        else:
            body["temperature"] = 0
        if self.send_repetition_penalty:
            body["extra_body"] = {"repetition_penalty": opts.repetition_penalty}
        if streaming:
            body["stream"] = True
        return body

    def _create(self, prompt, opts: GenerationOptions, streaming: bool = False):
        """One chat completion, waiting out 429s (``Retry-After``, at most :data:`RATE_LIMIT_RETRIES` times) and
        dropping ``repetition_penalty`` once where the server refuses it; any other failure is an
        :class:`EndpointError`."""
        waits = 0
        while True:
            try:
                return self.client.chat.completions.create(**self._body(prompt, opts, streaming))
            except self.openai.RateLimitError as e:
                if waits >= RATE_LIMIT_RETRIES:
                    raise EndpointError(
                        f"the endpoint {self.where} still answers 429 Too Many Requests after {waits} waits "
                        f"({_server_message(e)}): wait a while and run again, or send fewer requests at once "
                        "(--batch-size)") from None
                ask = _retry_after(e.response)
                self.sleep(min(MAX_WAIT_S, ask if ask is not None else 2.0 ** waits))
                waits += 1
            except self.openai.APIStatusError as e:
                msg = _server_message(e)
                if (e.status_code in (400, 422) and self.send_repetition_penalty
                        and "repetition_penalty" in msg.lower()):
                    with self._lock:
                        if self.send_repetition_penalty:
                            self.send_repetition_penalty = False
                            self.notes.append("repetition_penalty not accepted by the endpoint: its own was used")
                    continue
                raise EndpointError(self._status_message(e.status_code, msg)) from None
            except self.openai.APITimeoutError:
                raise EndpointError(f"no answer from the endpoint {self.where} within {self.endpoint.timeout:g} s: "
                                    "the server is stuck or slow; check it, or allow more time "
                                    "(--endpoint-timeout)") from None
            except self.openai.APIConnectionError as e:
                raise EndpointError(f"the endpoint {self.where} cannot be reached ({_cause(e)}): check the URL and "
                                    "that the server is running") from None
            except self.openai.APIError as e:
                raise EndpointError(f"the endpoint {self.where} answered something that is not an OpenAI chat "
                                    f"completion ({_cause(e)})") from None

    def _status_message(self, status: int, msg: str) -> str:
        where = self.where
        if status in (401, 403):
            return (f"the endpoint {where} refused the key ({status}: {msg}): set ${ENDPOINT_KEY_ENV} to its key "
                    "in the environment of this command")
        if status == 404:
            return (f"the endpoint {where} has no model {self.endpoint.model!r} or no chat completions ({status}: "
                    f"{msg}): check --endpoint-model (GET {where}/models lists them) and that the URL ends in /v1")
        if status < 500:
            return f"the endpoint {where} refused the request ({status}: {msg})"
        return f"the endpoint {where} failed ({status}: {msg}): see the server's log, then run again"

    def _cut_off(self, text: str, pieces: int, why: str) -> EndpointError:
        cut = clean_answer(text)
        return EndpointError(f"the endpoint {self.where} stopped in the middle of an answer ({why}): check that the "
                             "server is still running, then ask again", [Answer(cut, pieces, True)] if cut else [])

    def check(self) -> None:
        """Before any generation: the server answers, takes the key, and (where it lists its models) has this
        one. A server without ``GET /models`` passes."""
        try:
            listed = [m.id for m in self.client.models.list().data]
        except self.openai.APIStatusError as e:
            if e.status_code in (404, 405, 501):
                return
            raise EndpointError(self._status_message(e.status_code, _server_message(e))) from None
        except self.openai.APITimeoutError:
            raise EndpointError(f"no answer from the endpoint {self.where} within {self.endpoint.timeout:g} s: "
                                "check the server, or allow more time (--endpoint-timeout)") from None
        except self.openai.APIConnectionError as e:
            raise EndpointError(f"the endpoint {self.where} cannot be reached ({_cause(e)}): check the URL and that "
                                "the server is running") from None
        except self.openai.APIError as e:
            raise EndpointError(f"the endpoint {self.where} did not list its models ({_cause(e)})") from None
        if listed and self.endpoint.model.strip() not in listed:
            shown = ", ".join(listed[:8]) + (" …" if len(listed) > 8 else "")
            raise EndpointError(f"the endpoint {self.where} has no model {self.endpoint.model!r}; it serves: "
                                f"{shown} (--endpoint-model)")

    # -- answers ------------------------------------------------------------------------------------------------

    def ask(self, prompt, opts: GenerationOptions) -> Answer:
        """One answer, whole."""
        r = self._create(prompt, opts)
        choice = r.choices[0] if getattr(r, "choices", None) else None
        content = getattr(getattr(choice, "message", None), "content", None) if choice else None
        if choice is None or not isinstance(content, (str, type(None))):
            raise EndpointError(f"the endpoint {self.where} answered without a message: is it an OpenAI-compatible "
                                "chat endpoint (the URL usually ends in /v1)?")
        text = clean_answer(content or "")
        usage = getattr(r, "usage", None)
        tokens = getattr(usage, "completion_tokens", None) or 0
        return Answer(text, int(tokens), choice.finish_reason == "length" and text == (content or "").strip())

    def answers(self, prompts: list, opts: GenerationOptions | None = None, progress=None) -> list[Answer]:
        """Answers to ``prompts`` in order, ``opts.batch_size`` requests at once. On a failure, the requests not yet
        sent are not sent, those in flight are waited for, and the :class:`EndpointError` carries every answer
        received (``None`` for the others)."""
        opts = opts or GenerationOptions()
        out: list[Answer | None] = [None] * len(prompts)
        failure: EndpointError | None = None
        done = 0
        todo = iter(range(len(prompts)))
        with ThreadPoolExecutor(max_workers=max(1, min(opts.batch_size, 64)),
                                thread_name_prefix="clo-endpoint") as pool:
            running = {}

            def feed():
                while failure is None and len(running) < max(1, opts.batch_size):
                    i = next(todo, None)
                    if i is None:
                        return
                    running[pool.submit(self.ask, prompts[i], opts)] = i

            feed()
            while running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    i = running.pop(fut)
                    try:
                        out[i] = fut.result()
                        done += 1
                        if progress:
                            progress(done, len(prompts))
                    except EndpointError as e:
                        failure = failure or e
                    except Exception as e:  # noqa: BLE001 - anything else the client raised: same message shape
                        failure = failure or EndpointError(f"the endpoint {self.where} failed: "
                                                           f"{type(e).__name__}: {_mask(str(e))}")
                feed()
        if failure is not None:
            got = sum(a is not None for a in out)
            msg = str(failure).replace("cannot be reached", "stopped answering", 1) if got else str(failure)
            raise EndpointError(f"{msg} ({got} of {len(prompts)} prompts answered before it)", out)
        return out  # type: ignore[return-value]

    def stream(self, prompt, opts: GenerationOptions | None = None):
        """Yield the answer text as it grows, like :func:`clo.evaluation.generate.stream`; returns the
        :class:`Answer`. An endpoint that refuses to stream answers whole (one piece). A failure mid-answer is an
        :class:`EndpointError` whose ``answers`` hold the text received so far."""
        opts = opts or GenerationOptions()
        try:
            chunks = self._create(prompt, opts, streaming=True)
        except EndpointError as e:
            if "refused the request" not in str(e):
                raise
            answer = self.ask(prompt, opts)  # no streaming there: the whole answer at once
            yield answer.text
            return answer
        text = shown = ""
        pieces, finish, tokens = 0, None, None
        try:
            for chunk in chunks:
                if getattr(chunk, "usage", None) is not None:
                    tokens = getattr(chunk.usage, "completion_tokens", None)
                for choice in getattr(chunk, "choices", None) or []:
                    piece = getattr(choice.delta, "content", None) if choice.delta else None
                    if piece:
                        text += piece
                        pieces += 1
                    finish = choice.finish_reason or finish
                shown = clean_answer(text)
                if text and shown:
                    yield shown
                if shown != text.strip():  # a base model started a new turn: stop reading
                    break
        except (self.openai.APIError, OSError) as e:
            raise self._cut_off(text, pieces, _cause(e)) from None
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()
        shown = clean_answer(text)
        if finish is None and shown == text.strip():  # the stream ended with no reason: the server went away
            raise self._cut_off(text, pieces, "the stream ended without a finish_reason")
        return Answer(shown, int(tokens or pieces), finish == "length" and shown == text.strip())
