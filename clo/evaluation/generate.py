"""Generation: batched (left padding), greedy by default, stopping at the end-of-turn token, and streaming.

Works on a model name (``default``), a run directory (``runs/X``), a folder, or an already loaded model.
:func:`generate_answers` and :func:`stream` also tell how many tokens an answer took and whether it was cut at
``max_new_tokens`` (it stopped because it ran out of tokens, not because it ended).

    python -m clo generate --model default "Habari, unaweza kunisaidia?"
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from clo.models.chat import TURN_MARKERS, format_prompt
from clo.models.chat import stop_token_ids as _stop_ids
from clo.models.load import LoadedModel, load_model

__all__ = ["GenerationOptions", "Answer", "generate", "generate_answers", "stream", "get_model"]


@dataclass(frozen=True)
class Answer:
    text: str
    tokens: int  # new tokens generated (up to and including the end-of-turn token)
    cut: bool  # stopped at max_new_tokens without an end-of-turn token: the text ends mid-way


@dataclass
class GenerationOptions:
    max_new_tokens: int = 128
    do_sample: bool = False  # greedy by default: results are reproducible
    temperature: float = 0.7
    top_p: float = 0.9
    repetition_penalty: float = 1.2  # the app's default too; tiny models loop without it
    seed: int = 0
    batch_size: int = 16
    extra: dict = field(default_factory=dict)

    def kwargs(self, tokenizer) -> dict:
        kw = dict(max_new_tokens=self.max_new_tokens, do_sample=self.do_sample,
                  repetition_penalty=self.repetition_penalty, pad_token_id=tokenizer.pad_token_id,
                  eos_token_id=_stop_ids(tokenizer))
        if self.do_sample:
            kw.update(temperature=self.temperature, top_p=self.top_p)
        else:
            kw.update(temperature=None, top_p=None, top_k=None)
        kw.update(self.extra)
        return kw



def get_model(model) -> LoadedModel:
    """Accept a LoadedModel, or a name / run directory / folder to load."""
    if isinstance(model, LoadedModel):
        return model
    return load_model(str(model))


def render(tokenizer, prompt) -> str:
    """A prompt string (one user turn) or a list of chat messages, rendered with the generation prompt."""
    if isinstance(prompt, str):
        return format_prompt(tokenizer, prompt)
    return tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)


def clean_answer(text: str) -> str:
    """Cut where a base model starts inventing the next turn, and trim."""
    for marker in TURN_MARKERS:
        i = text.find(marker)
        if i >= 0:
            text = text[:i]
    return text.strip()


def generate(model, prompts: list, options: GenerationOptions | None = None, progress=None) -> list[str]:
    """Answers for ``prompts`` (strings, or lists of chat messages), in order. Batched with left padding; same
    greedy text as one at a time."""
    return [a.text for a in generate_answers(model, prompts, options, progress)]


def _answer(ids: list[int], stop: set[int], max_new_tokens: int, cleaned: str, raw: str) -> Answer:
    """An :class:`Answer` from the new token ids of one answer (padding after an end-of-turn token dropped)."""
    n = next((i + 1 for i, t in enumerate(ids) if t in stop), len(ids))
    ended = any(t in stop for t in ids) or cleaned != raw.strip()  # a base model's new turn ends it too
    return Answer(cleaned, n, not ended and n >= max_new_tokens)


def generate_answers(model, prompts: list, options: GenerationOptions | None = None,
                     progress=None) -> list[Answer]:
    """:func:`generate` with each answer's token count and whether it was cut at ``max_new_tokens``."""
    import torch

    opts = options or GenerationOptions()
    lm = get_model(model)
    tok, net = lm.tokenizer, lm.model
    tok.padding_side = "left"
    device = next(net.parameters()).device
    texts = [render(tok, p) for p in prompts]
    # longest first keeps padding small inside each batch; results are put back in order
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out: list[Answer | None] = [None] * len(texts)
    stop = set(_stop_ids(tok))
    net.eval()
    for start in range(0, len(order), opts.batch_size):
        idx = order[start : start + opts.batch_size]
        enc = tok([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        if opts.do_sample:
            torch.manual_seed(opts.seed + start)
        with torch.no_grad():
            gen = net.generate(**enc, **opts.kwargs(tok))
        new = gen[:, enc["input_ids"].shape[1] :]
        for j, i in enumerate(idx):
            raw = tok.decode(new[j], skip_special_tokens=True)
            out[i] = _answer(new[j].tolist(), stop, opts.max_new_tokens, clean_answer(raw), raw)
        if progress:
            progress(min(start + len(idx), len(texts)), len(texts))
    return out  # type: ignore[return-value]


def stream(model, prompt, options: GenerationOptions | None = None):
    """Yield the answer text as it grows (for the UI). Runs generation in a background thread. When the answer
    is complete, the generator returns its :class:`Answer` (``StopIteration.value``; None if it was abandoned)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    class _Cancelled(StoppingCriteria):
        """Ends generation when the reader stops reading (turn cut, page rerun, closed generator)."""

        def __init__(self):
            self.flag = threading.Event()

        def __call__(self, input_ids, scores, **kwargs):
            return self.flag.is_set()

    opts = options or GenerationOptions()
    lm = get_model(model)
    tok, net = lm.tokenizer, lm.model
    device = next(net.parameters()).device
    enc = tok([render(tok, prompt)], return_tensors="pt", add_special_tokens=False).to(device)
    streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
    error: list[BaseException] = []
    result: list = []
    cancel = _Cancelled()

    def work():
        try:
            with torch.no_grad():
                result.append(net.generate(**enc, **opts.kwargs(tok), streamer=streamer,
                                           stopping_criteria=StoppingCriteriaList([cancel])))
        except BaseException as e:  # surfaced to the caller below
            error.append(e)
            streamer.end()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    text = cut = ""
    try:
        for piece in streamer:
            text += piece
            cut = clean_answer(text)
            yield cut
            if cut != text.strip():  # a base model started a new turn: stop showing it
                break
    finally:  # also on GeneratorExit when the page reruns: stop the background generation
        cancel.flag.set()
        thread.join(timeout=60)
    if error:
        raise error[0]
    if not result:
        return None
    new = result[0][0, enc["input_ids"].shape[1]:].tolist()
    return _answer(new, set(_stop_ids(tok)), opts.max_new_tokens, cut, text)
