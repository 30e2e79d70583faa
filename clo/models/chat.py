"""How a prompt becomes model input (docs/design.md, "Models"): chat templates and system prompts.

- :data:`PLAIN_CHAT_TEMPLATE` — the fallback for tokenizers without a template (base models such as
  Gemma-3-270M): one ``User:`` / ``Assistant:`` line per turn; :data:`TURN_MARKERS` end a generation there;
- :func:`format_prompt` — one user prompt as the model's generation prompt;
- :func:`set_system_prompt` — the run's system-prompt setting (:data:`clo.core.spec.SYSTEM_PROMPTS`) applied to a
  tokenizer.
"""
from __future__ import annotations

import logging

from clo.core.spec import SYSTEM_PROMPTS

log = logging.getLogger(__name__)

__all__ = ["ensure_chat_template", "format_prompt", "PLAIN_CHAT_TEMPLATE", "default_system_prompt_tokens",
           "set_system_prompt", "stop_token_ids", "END_OF_TURN_TOKENS"]

# Fallback for tokenizers without a chat template (base models such as Gemma-3-270M):
#
#     <bos>User: {prompt}
#     Assistant: {answer}<eos>
#
# One line per turn; generation stops at <eos> or where the model starts a new "User:" turn.
PLAIN_CHAT_TEMPLATE = (
    "{{ bos_token if bos_token else '' }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}\n\n"
    "{% elif message['role'] == 'user' %}User: {{ message['content'] }}\n"
    "{% else %}Assistant: {{ message['content'] }}{{ eos_token }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
# Where a base model invents the next turn, generated text is cut at these markers.
TURN_MARKERS = ("\nUser:", "\nAssistant:")
# End-of-turn tokens of the chat formats CLO Studio meets (ChatML, Gemma, Llama 3); generation stops at any of them.
END_OF_TURN_TOKENS = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|endoftext|>")


def stop_token_ids(tokenizer) -> list[int]:
    """The ids generation stops at: the tokenizer's end of sequence and every :data:`END_OF_TURN_TOKENS` it has."""
    ids = {tokenizer.eos_token_id}
    vocab = tokenizer.get_vocab()
    for tok in END_OF_TURN_TOKENS:
        if tok in vocab:
            ids.add(tokenizer.convert_tokens_to_ids(tok))
    return sorted(i for i in ids if i is not None)


def ensure_chat_template(tokenizer) -> bool:
    """Give ``tokenizer`` a chat template if it has none. Returns True when it had its own."""
    if getattr(tokenizer, "chat_template", None):
        return True
    tokenizer.chat_template = PLAIN_CHAT_TEMPLATE
    return False


def format_prompt(tokenizer, prompt: str) -> str:
    """Render one user turn with the generation prompt, as training and generation both see it."""
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )


# Prepended to a template that adds a default system prompt: a conversation without a system turn gets an empty one.
_EMPTY_SYSTEM_TURN = ("{%- if not messages or messages[0]['role'] != 'system' %}"
                      "{%- set messages = [{'role': 'system', 'content': ''}] + messages %}{%- endif %}")


def default_system_prompt_tokens(tokenizer) -> int:
    """Tokens the chat template adds to a conversation without a system turn, beyond an empty system turn: its
    default system prompt (0: it adds none, or an empty system turn is as long)."""
    user = [{"role": "user", "content": "x"}]
    with_default = tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=True, return_dict=False)
    empty = tokenizer.apply_chat_template([{"role": "system", "content": ""}, *user], add_generation_prompt=True,
                                          tokenize=True, return_dict=False)
    return max(0, len(with_default) - len(empty))


def set_system_prompt(tokenizer, choice: str) -> int:
    """Apply the ``system_prompt`` setting to ``tokenizer``'s chat template; returns the tokens it takes off every
    conversation. ``"none"``: where the template adds a default system prompt, it gets an empty system turn
    instead — in the template itself, so that the tuned model's saved tokenizer reads prompts as training did
    (evaluation, the API, exports). A conversation that brings its own system turn is unchanged. Idempotent;
    a template without a default system prompt is left as it is (returns 0)."""
    if choice not in SYSTEM_PROMPTS:
        raise ValueError(f"Unknown system_prompt {choice!r}. Choose one of: {', '.join(SYSTEM_PROMPTS)}.")
    if choice == "model":
        return 0
    saved = default_system_prompt_tokens(tokenizer)
    if saved:
        tokenizer.chat_template = _EMPTY_SYSTEM_TURN + tokenizer.chat_template
    return saved


def finish_tokenizer(tokenizer) -> bool:
    own = ensure_chat_template(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # generation pads on the left; TRL's collators pad by hand on the right
    return own

