"""Tiny randomly initialised models, built offline in a second, for tests, benchmarks and UI smoke runs.

They exercise the real loading, training and generation code (``from_pretrained`` on a folder) without any
download. The tokenizer is a byte-level BPE trained here on a few hundred sentences, with a ChatML template.

    python -c "from clo.tiny import make_tiny_model; print(make_tiny_model('/tmp/tiny-llama'))"
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["make_tiny_tokenizer", "make_tiny_model", "ARCHS"]

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = [
    "The sun rises in the east and sets in the west.",
    "Jua huchomoza mashariki na kuzama magharibi.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "Maji huchemka kwa nyuzi joto mia moja usawa wa bahari.",
    "Wash your hands with soap before you eat.",
    "Osha mikono yako kwa sabuni kabla ya kula.",
    "Die Sonne geht im Osten auf. Das Wasser kocht bei hundert Grad.",
    "Matahari terbit di timur. Air mendidih pada seratus derajat.",
    "Oòrùn máa ń yọ ní ìlà oòrùn. Omi máa ń hó ní ìwọ̀n ọgọ́rùn-ún.",
    "太阳从东方升起。水在一百度沸腾。",
    "해는 동쪽에서 뜹니다. 물은 백 도에서 끓습니다.",
    "How do I cook rice? Rinse it, add water, and simmer until soft.",
    "Ninapikaje wali? Osha mchele, ongeza maji, na uupike hadi ulainike.",
    "What is the capital of Kenya? The capital of Kenya is Nairobi.",
    "Mji mkuu wa Kenya ni upi? Mji mkuu wa Kenya ni Nairobi.",
    "Explain why the sky is blue in simple words.",
    "Eleza kwa nini anga ni la buluu kwa maneno rahisi.",
]


def make_tiny_tokenizer(vocab_size: int = 400):
    """A byte-level BPE tokenizer trained on a small multilingual corpus, with ChatML special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|im_end|>", unk_token="<|endoftext|>")
    fast.chat_template = CHATML
    return fast


# initializer_range 0.2 (not 0.02): a near-uniform random model only ever writes newlines, which tests nothing.
def _llama(vocab: int, **kw):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True, initializer_range=0.2, **kw)
    return LlamaForCausalLM(cfg)


def _gpt2(vocab: int, **kw):
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=512, initializer_range=0.2, **kw))


def _qwen2(vocab: int, **kw):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.2, **kw)
    return Qwen2ForCausalLM(cfg)


ARCHS = {"llama": _llama, "gpt2": _gpt2, "qwen2": _qwen2}


def make_tiny_model(folder: str | Path, arch: str = "llama", seed: int = 0) -> Path:
    """Write a tiny random causal LM + tokenizer to ``folder`` (safetensors) and return the folder."""
    import torch

    folder = Path(folder)
    if (folder / "config.json").exists():
        return folder
    torch.manual_seed(seed)
    tok = make_tiny_tokenizer()
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = ARCHS[arch](len(tok), **ids)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder
