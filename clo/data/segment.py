"""Segmentation for translation: a text becomes pieces ``(text, translate?)``. Joining the pieces' texts gives
the input back exactly; replacing the translatable ones by their translations gives the output, with every line
break, fenced code block, inline code span, URL and list/heading marker where it was (docs/design.md,
"Data flow"). Splitting around code and URLs (instead of masking them with placeholders) is deliberate: an MT
model may mangle a placeholder, it cannot mangle text it never sees.

    >>> from clo.data.segment import split_text
    >>> split_text("See `x`.")
    [('See', True), (' `x`.', False)]
"""
from __future__ import annotations

import re

__all__ = ["Piece", "split_text"]

Piece = tuple[str, bool]

_FENCE_OPEN = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})")
# list bullets, numbered items, headings, block quotes: kept as they are, the text after them is translated
_LINE_PREFIX = re.compile(r"^(\s*(?:(?:[-*+•]|\d{1,3}[.)]|#{1,6}|>)\s+)*)")
# inline code with any number of backticks, then URLs (trailing punctuation is trimmed in _keep_spans)
_KEEP = re.compile(r"(`+)[^`\n].*?\1|<?(?:https?|ftp)://[^\s<>\"'`]+|\bwww\.[^\s<>\"'`]+\.[^\s<>\"'`]+")
_SENTENCE_END = re.compile(r"(?<=[.!?…])(\s+)(?=[\"'“‘(\[]?[A-Z0-9¿¡])")
_URL_TAIL = ".,;:!?'\")]}>"
_HARD_LIMIT = 2000  # a "sentence" longer than this (a table row, a run-on list) is split between words


def _keep_spans(body: str) -> list[tuple[int, int]]:
    """Character spans of inline code and URLs inside one line."""
    spans = []
    for m in _KEEP.finditer(body):
        start, end = m.span()
        if not m.group(1):  # a URL: a sentence's full stop or a closing bracket is not part of it
            while end > start and body[end - 1] in _URL_TAIL:
                ch = body[end - 1]
                if ch == ")" and body[start:end].count("(") >= body[start:end].count(")"):
                    break
                end -= 1
        spans.append((start, end))
    return spans


def _chunk_sentences(core: str, max_chars: int) -> list[Piece]:
    """Group whole sentences into chunks of at most ``max_chars``; the spaces between chunks are kept.
    A single sentence longer than ``_HARD_LIMIT`` is split between words rather than truncated by the model."""
    parts: list[str] = []  # [text, space, text, space, ..., text]
    for i, part in enumerate(_SENTENCE_END.split(core)):
        parts += re.split(r"(\s+)", part) if i % 2 == 0 and len(part) > _HARD_LIMIT else [part]
    out: list[Piece] = []
    chunk = parts[0]
    for i in range(1, len(parts), 2):
        space, sentence = parts[i], parts[i + 1]
        if len(chunk) + len(space) + len(sentence) <= max_chars:
            chunk += space + sentence
        else:
            out += [(chunk, True), (space, False)]
            chunk = sentence
    out.append((chunk, True))
    return out


def _split_fragment(text: str, max_chars: int) -> list[Piece]:
    """Plain prose between kept spans: keep its outer whitespace, translate what has letters in it."""
    core = text.strip()
    if not core or not any(ch.isalpha() for ch in core):
        return [(text, False)]
    lead = text[: len(text) - len(text.lstrip())]
    tail = text[len(text.rstrip()):]
    pieces = [(lead, False)] if lead else []
    pieces += _chunk_sentences(core, max_chars)
    if tail:
        pieces.append((tail, False))
    return pieces


def _split_line(line: str, max_chars: int) -> list[Piece]:
    prefix = _LINE_PREFIX.match(line).group(1)
    body = line[len(prefix):]
    pieces: list[Piece] = [(prefix, False)] if prefix else []
    pos = 0
    for start, end in _keep_spans(body):
        if start > pos:
            pieces += _split_fragment(body[pos:start], max_chars)
        pieces.append((body[start:end], False))
        pos = end
    if pos < len(body):
        pieces += _split_fragment(body[pos:], max_chars)
    return pieces


def split_text(text: str, max_chars: int = 400) -> list[Piece]:
    """Split ``text`` into pieces ``(text, translate)``; ``"".join(t for t, _ in pieces) == text``.

    >>> split_text("Run `ls` now.\\n\\n```\\nls -l\\n```")
    [('Run', True), (' `ls` ', False), ('now.', True), ('\\n\\n```\\nls -l\\n```', False)]
    """
    pieces: list[Piece] = []
    fence: str | None = None  # the opening fence while inside a code block
    for line in text.splitlines(keepends=True):
        if fence is not None:
            pieces.append((line, False))
            stripped = line.strip()
            if stripped.startswith(fence) and set(stripped) == {fence[0]}:
                fence = None
            continue
        m = _FENCE_OPEN.match(line)
        if m:
            fence = m.group(1)
            pieces.append((line, False))
            continue
        ending = line[len(line.rstrip("\r\n")):]
        content = line[: len(line) - len(ending)]
        if content:
            pieces += _split_line(content, max_chars)
        if ending:
            pieces.append((ending, False))
    return _merge_kept(pieces)


def _merge_kept(pieces: list[Piece]) -> list[Piece]:
    """Drop empty pieces and join neighbouring kept ones (a code block becomes one piece)."""
    out: list[Piece] = []
    for text, translate in pieces:
        if not text:
            continue
        if out and not translate and not out[-1][1]:
            out[-1] = (out[-1][0] + text, False)
        else:
            out.append((text, translate))
    return out


