"""``clo serve``: any model or run as an OpenAI-compatible HTTP endpoint (docs/workshop.md, "clo serve").

    python -m clo serve --model runs/X                      # http://127.0.0.1:8000/v1
    curl -s http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\
         -d '{"model": "X", "messages": [{"role": "user", "content": "Habari?"}]}'

Routes: ``GET /v1/models``, ``POST /v1/chat/completions`` (``stream: true`` sends server-sent events),
``GET /health``. Built on Starlette + uvicorn. Greedy unless ``temperature`` > 0, so an answer equals
``clo generate``'s. Requests that arrive within ``batch_window_s`` of each other are answered by one batched
``generate`` call (:class:`Batcher`); streaming requests generate one at a time, token by token. Every bad
request gets a 4xx JSON body in OpenAI's error shape (``{"error": {"message", "type", "param", "code"}}``);
the server keeps serving.
"""
from __future__ import annotations

import asyncio
import contextlib
import copy
import hmac
import json
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from clo.evaluation.generate import GenerationOptions, generate, get_model, stream

__all__ = ["ServeSettings", "Batcher", "build_app", "serve", "running_server", "API_KEY_ENV"]

API_KEY_ENV = "CLO_API_KEY"
log = logging.getLogger("clo.workshop.serve")
ROLES = ("system", "user", "assistant")


@dataclass
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None  # None: no key needed
    max_request_bytes: int = 1_000_000
    max_tokens_limit: int = 512  # the most a request may ask for
    default_max_tokens: int = 128  # clo generate's default
    max_messages: int = 64
    max_prompt_tokens: int = 2048
    batch_window_s: float = 0.02  # gather requests arriving this close together into one batch
    max_batch: int = 16
    repetition_penalty: float = 1.2  # clo generate's default; a request may set its own
    extra: dict = field(default_factory=dict)  # passed to model.generate (tests force min_new_tokens)


class APIError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code

    def response(self) -> JSONResponse:
        return JSONResponse({"error": {"message": self.message, "type": self.type, "param": self.param,
                                       "code": self.code}}, status_code=self.status)


# -- batching -----------------------------------------------------------------------------------------------------


class Batcher:
    """Collects requests for ``window_s`` after the first one and answers each group of equal options with one
    batched :func:`clo.evaluation.generate.generate` call in a worker thread. The model is used by one call at a time
    (``lock``, shared with streaming requests)."""

    def __init__(self, lm, window_s: float = 0.02, max_batch: int = 16):
        self.lm, self.window_s, self.max_batch = lm, window_s, max_batch
        self.lock = threading.Lock()
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="clo-serve")
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None
        self.batches: list[int] = []  # size of every batch run (for tests and the bench)

    def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._worker())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, messages: list, opts: GenerationOptions) -> str:
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((messages, opts, fut))
        return await fut

    def _run(self, prompts: list, opts: GenerationOptions) -> list[str]:
        with self.lock:
            return generate(self.lm, prompts, opts)

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.window_s
            while len(batch) < self.max_batch:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), left))
                except TimeoutError:
                    break
            groups: dict[str, list] = {}
            for item in batch:
                groups.setdefault(repr(item[1]), []).append(item)
            for items in groups.values():
                items = [it for it in items if not it[2].done()]  # a client that went away
                if not items:
                    continue
                opts = items[0][1]
                opts = GenerationOptions(**{**opts.__dict__, "batch_size": max(len(items), 1)})
                self.batches.append(len(items))
                try:
                    answers = await loop.run_in_executor(self.executor, self._run, [it[0] for it in items], opts)
                except Exception as e:  # reported to each waiting request as a 500 in OpenAI's shape
                    log.error("generation failed", exc_info=e)
                    for it in items:
                        if not it[2].done():
                            it[2].set_exception(e)
                    continue
                for it, answer in zip(items, answers):
                    if not it[2].done():
                        it[2].set_result(answer)


# -- request checks -----------------------------------------------------------------------------------------------


async def _read_json(request: Request, limit: int) -> dict:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"Request body is {int(declared):,} bytes; the limit is {limit:,}.",
                       code="request_too_large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise APIError(413, f"Request body is over the limit of {limit:,} bytes.", code="request_too_large")
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise APIError(400, f"The request body is not valid JSON: {e}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise APIError(400, "The request body must be a JSON object.", code="invalid_json")
    return data


def _messages(data: dict, settings: ServeSettings) -> list[dict]:
    msgs = data.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise APIError(400, "'messages' must be a non-empty list of {role, content} objects.", param="messages")
    if len(msgs) > settings.max_messages:
        raise APIError(400, f"At most {settings.max_messages} messages per request.", param="messages")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise APIError(400, f"messages[{i}] needs a role among {', '.join(ROLES)}.", param=f"messages[{i}].role")
        content = m.get("content")
        if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                       for p in content):
                raise APIError(400, f"messages[{i}].content: only text parts are supported.",
                               param=f"messages[{i}].content")
            content = "".join(p["text"] for p in content)
        if not isinstance(content, str):
            raise APIError(400, f"messages[{i}].content must be a string.", param=f"messages[{i}].content")
        out.append({"role": m["role"], "content": content})
    if out[-1]["role"] != "user":
        raise APIError(400, "The last message must come from the user.", param="messages")
    return out


def _number(data: dict, key: str, default, lo: float, hi: float, whole: bool = False):
    v = data.get(key)
    if v is None:
        return default
    if (isinstance(v, bool) or not isinstance(v, (int, float)) or (whole and not float(v).is_integer())
            or not lo <= v <= hi):
        kind = "a whole number" if whole else "a number"
        raise APIError(400, f"'{key}' must be {kind} between {lo:g} and {hi:g}.", param=key)
    return int(v) if whole else float(v)


def _options(data: dict, settings: ServeSettings) -> GenerationOptions:
    limit = settings.max_tokens_limit
    key = "max_completion_tokens" if data.get("max_completion_tokens") is not None else "max_tokens"
    max_new = _number(data, key, min(settings.default_max_tokens, limit), 1, limit, whole=True)
    temperature = _number(data, "temperature", 0.0, 0.0, 2.0)
    top_p = _number(data, "top_p", 1.0, 0.0, 1.0)
    rep = _number(data, "repetition_penalty", settings.repetition_penalty, 0.5, 3.0)
    seed = _number(data, "seed", 0, 0, 2**31 - 1, whole=True)
    if data.get("n") not in (None, 1):
        raise APIError(400, "Only n = 1 is supported.", param="n")
    sample = temperature > 0
    return GenerationOptions(max_new_tokens=max_new, do_sample=sample, temperature=temperature if sample else 0.7,
                             top_p=top_p if sample else 0.9, repetition_penalty=rep, seed=seed,
                             extra=dict(settings.extra))


# -- the app ------------------------------------------------------------------------------------------------------


def build_app(model, settings: ServeSettings | None = None, model_id: str | None = None) -> Starlette:
    """The Starlette app serving ``model`` (a name, a run directory, a folder or a LoadedModel) as ``model_id``
    (default: the model's name, a path's last part)."""
    settings = settings or ServeSettings()
    lm = get_model(model)
    asked = str(model) if isinstance(model, (str, Path)) else lm.name
    name = model_id or (Path(asked).name if Path(asked).exists() else asked)
    aliases = {name, asked, lm.name}  # the id, or what was given on the command line
    batcher = Batcher(lm, settings.batch_window_s, settings.max_batch)
    created = int(time.time())
    # a private copy for counting tokens: a fast tokenizer's padding state is shared, and generation pads in a
    # worker thread while requests are counted here
    tok = copy.deepcopy(lm.tokenizer)

    def check_key(request: Request) -> None:
        if not settings.api_key:
            return
        auth = request.headers.get("authorization", "")
        given = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(given.encode(), settings.api_key.encode()):
            raise APIError(401, "Incorrect API key provided." if given else "No API key given: send "
                           "'Authorization: Bearer KEY'.", code="invalid_api_key")

    def model_card() -> dict:
        return {"id": name, "object": "model", "created": created, "owned_by": "clo-studio"}

    async def models(request: Request):
        check_key(request)
        return JSONResponse({"object": "list", "data": [model_card()]})

    async def model_one(request: Request):
        check_key(request)
        if request.path_params["model"] not in aliases:
            raise APIError(404, f"The model '{request.path_params['model']}' does not exist; this server has '{name}'.",
                           param="model", code="model_not_found")
        return JSONResponse(model_card())

    async def health(request: Request):
        return JSONResponse({"status": "ok", "model": name})

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    async def completions(request: Request):
        check_key(request)
        data = await _read_json(request, settings.max_request_bytes)
        asked = data.get("model")
        if not isinstance(asked, str) or not asked:
            raise APIError(400, "'model' is required.", param="model")
        if asked not in aliases:
            raise APIError(404, f"The model '{asked}' does not exist; this server has '{name}'.", param="model",
                           code="model_not_found")
        msgs = _messages(data, settings)
        opts = _options(data, settings)
        prompt_tokens = count(tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))
        if prompt_tokens > settings.max_prompt_tokens:
            raise APIError(400, f"The prompt has {prompt_tokens} tokens; the limit is {settings.max_prompt_tokens}.",
                           param="messages", code="context_length_exceeded")
        rid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        now = int(time.time())
        prompt = msgs[0]["content"] if len(msgs) == 1 else msgs  # one user turn: exactly clo generate's prompt

        def finish(n_tokens: int) -> str:
            return "length" if n_tokens >= opts.max_new_tokens else "stop"

        if data.get("stream"):
            return StreamingResponse(_sse(prompt, opts, rid, now, count, finish, data), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        answer = await batcher.submit(prompt, opts)
        n = count(answer)
        return JSONResponse({
            "id": rid, "object": "chat.completion", "created": now, "model": name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": finish(n),
                         "logprobs": None}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n}})

    async def _sse(prompt, opts, rid, now, count, finish, data):
        loop = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue()
        done = object()
        gone = threading.Event()  # the client went away: stop generating (closing stream() cancels it)

        def work():
            try:
                with batcher.lock:
                    for text in stream(lm, prompt, opts):
                        if gone.is_set():
                            break
                        loop.call_soon_threadsafe(q.put_nowait, text)
            except Exception as e:  # noqa: BLE001 - ends the stream with an error event
                loop.call_soon_threadsafe(q.put_nowait, e)
            loop.call_soon_threadsafe(q.put_nowait, done)

        def chunk(delta: dict, reason=None) -> str:
            return "data: " + json.dumps({"id": rid, "object": "chat.completion.chunk", "created": now, "model": name,
                                          "choices": [{"index": 0, "delta": delta, "finish_reason": reason,
                                                       "logprobs": None}]}, ensure_ascii=False) + "\n\n"

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        yield chunk({"role": "assistant", "content": ""})
        sent = ""
        try:
            while True:
                item = await q.get()
                if item is done:
                    break
                if isinstance(item, Exception):
                    log.error("generation failed", exc_info=item)
                    err = {"error": {"message": f"generation failed: {type(item).__name__}", "type": "server_error",
                                     "param": None, "code": None}}
                    yield "data: " + json.dumps(err) + "\n\n"
                    return
                if item.startswith(sent) and len(item) > len(sent):  # the answer only grows (clean_answer trims)
                    yield chunk({"content": item[len(sent):]})
                    sent = item
        finally:
            gone.set()
        yield chunk({}, finish(count(sent)))
        if (data.get("stream_options") or {}).get("include_usage"):
            yield "data: " + json.dumps({"id": rid, "object": "chat.completion.chunk", "created": now, "model": name,
                                         "choices": [], "usage": None}) + "\n\n"
        yield "data: [DONE]\n\n"

    async def on_api_error(request, exc: APIError):
        return exc.response()

    async def on_http_error(request, exc: HTTPException):
        return APIError(exc.status_code, exc.detail or "error", code=None).response()

    async def on_any_error(request, exc: Exception):  # the traceback goes to the server's log, never to the client
        log.error("error answering %s", request.url.path, exc_info=exc)
        return APIError(500, f"internal error: {type(exc).__name__}", type_="server_error").response()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    app = Starlette(routes=[
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/models/{model:path}", model_one, methods=["GET"]),
        Route("/v1/chat/completions", completions, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
    ], exception_handlers={APIError: on_api_error, HTTPException: on_http_error, Exception: on_any_error},
        lifespan=lifespan)
    app.state.batcher, app.state.model_id, app.state.settings = batcher, name, settings
    return app


def serve(model, settings: ServeSettings | None = None, model_id: str | None = None) -> None:
    """Serve until Ctrl-C (blocking)."""
    settings = settings or ServeSettings()
    app = build_app(model, settings, model_id)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)


@contextlib.contextmanager
def running_server(model, settings: ServeSettings | None = None, model_id: str | None = None):
    """A real uvicorn server in a background thread (tests, the bench, the Arena's judge); yields its base URL
    (``http://HOST:PORT/v1``). Port 0 picks a free one."""
    settings = settings or ServeSettings(port=0)
    app = build_app(model, settings, model_id)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{settings.host}:{port}/v1", app
    finally:
        server.should_exit = True
        thread.join(timeout=30)
