"""Test-only hooks and fixtures, in one place: tiny models, fault injection, and the per-rank sample log.

Nothing here runs in normal use: :func:`fault_point` and :func:`debug_write` do nothing unless their
environment variable is set, and the tiny models are built only when asked for.

- **Tiny models** — randomly initialised, built offline in a second, for tests, benchmarks and UI smoke runs.
  They exercise the real loading, training and generation code (``from_pretrained`` on a folder) without any
  download. The tokenizer is a byte-level BPE trained here on a few hundred sentences, with a ChatML template::

      python -c "from clo.core.testing import make_tiny_model; print(make_tiny_model('/tmp/tiny-llama'))"

- **Fault points** (``CLO_FAULT=name[:N]``) — the process SIGKILLs itself at a named point
  (tests/test_faults.py), the same as ``kill -9`` or the out-of-memory killer; ``name:N:hang`` waits there
  forever instead (tests/test_signals.py: a step that does not end when asked to stop).
- **FSDP on a CPU** (``CLO_TEST_FSDP_ON_CPU=1``) — accelerate 1.15 turns its FSDP integration on only for
  accelerators (CUDA, XPU, …): on a CPU under ``accelerate launch`` with an FSDP config it silently falls back to
  DDP. With this set, :func:`fsdp_on_cpu` switches the trainer's accelerator to FSDP after it is built, so the
  real FSDP2 code (``fully_shard`` over gloo, DTensor shards, the full-state-dict gather, FSDP checkpoints) runs on
  two CPU processes (tests/test_distributed.py). Never needed on a GPU.
- **Sample log** (``CLO_DEBUG_SAMPLES=<path>``) — each process appends JSON lines to ``<path>.rank<N>``: one per
  training micro-batch, the reference-cache decision, and at the end of each stage its step count, stop flag and a
  SHA-256 of its trainable weights (tests/test_distributed.py: ranks see disjoint data, end with equal weights).
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path

__all__ = ["make_tiny_tokenizer", "make_tiny_model", "ARCHS", "fault_point", "FAULT_ENV", "DEBUG_SAMPLES_ENV",
           "debug_write", "debug_watch", "debug_end", "fsdp_on_cpu", "FSDP_CPU_ENV", "CHATML", "CHATML_DEFAULT_SYSTEM"]

FAULT_ENV = "CLO_FAULT"
FSDP_CPU_ENV = "CLO_TEST_FSDP_ON_CPU"
DEBUG_SAMPLES_ENV = "CLO_DEBUG_SAMPLES"

# -- tiny models ------------------------------------------------------------------------------------------------
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# ChatML that adds a default system prompt to a conversation without one, as SmolLM2's template does.
CHATML_DEFAULT_SYSTEM = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant named Tiny, trained on a few sentences<|im_end|>\n' }}"
    "{% endif %}" + CHATML[len("{% for message in messages %}"):]
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

    return GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=512,
                                      initializer_range=0.2, **kw))


def _qwen2(vocab: int, **kw):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      initializer_range=0.2, **kw)
    return Qwen2ForCausalLM(cfg)


ARCHS = {"llama": _llama, "gpt2": _gpt2, "qwen2": _qwen2}


def make_tiny_model(folder: str | Path, arch: str = "llama", seed: int = 0, template: str | None = None) -> Path:
    """Write a tiny random causal LM + tokenizer to ``folder`` (safetensors) and return the folder.
    ``template``: another chat template (e.g. :data:`CHATML_DEFAULT_SYSTEM`)."""
    import torch

    folder = Path(folder)
    if (folder / "config.json").exists():
        return folder
    torch.manual_seed(seed)
    tok = make_tiny_tokenizer()
    if template:
        tok.chat_template = template
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = ARCHS[arch](len(tok), **ids)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


# -- fault injection --------------------------------------------------------------------------------------------

_FAULT_HITS: dict[str, int] = {}


def fault_point(name: str, index: int | None = None) -> None:
    """Does nothing unless ``CLO_FAULT`` is set. ``CLO_FAULT=name`` or ``name:N`` makes the process SIGKILL itself
    (no cleanup) the N-th time (default 1) it reaches the point ``name``, or where ``index`` (e.g. the step number)
    equals N. Points: ``ref_pass`` (after a batch of the reference pass), ``step`` (mid-step N: gradients computed,
    optimizer not stepped), ``save`` (the N-th model save: new files written, not yet published by the rename).
    ``name:N:hang`` makes it wait there instead, until a signal ends the wait (a step that never ends); it first
    prints ``fault: hanging at name N`` on stderr, so a test can wait until the hang has begun."""
    want = os.environ.get(FAULT_ENV)
    if not want or want.partition(":")[0] != name:
        return
    _FAULT_HITS[name] = _FAULT_HITS.get(name, 0) + 1
    _, n, action = (want.split(":") + ["", ""])[:3]
    if (index if index is not None else _FAULT_HITS[name]) == int(n or 1):
        if action == "hang":
            print(f"fault: hanging at {name} {n or 1}", file=sys.stderr, flush=True)
            while True:
                time.sleep(3600)
        os.kill(os.getpid(), signal.SIGKILL)


# -- FSDP on a CPU ----------------------------------------------------------------------------------------------


def fsdp_on_cpu(trainer) -> bool:
    """Does nothing unless ``CLO_TEST_FSDP_ON_CPU`` is set. Called right after a trainer has built its accelerator:
    when ``accelerate launch`` asked for FSDP (``ACCELERATE_USE_FSDP``) but accelerate set the CPU processes up for
    DDP (``MULTI_CPU``: its state enables FSDP only for accelerator types), switch the accelerator to FSDP with the
    plugin the launcher's environment describes, as it would be on a GPU. Returns whether it switched."""
    if not os.environ.get(FSDP_CPU_ENV) or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        return False
    from accelerate import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    state = trainer.accelerator.state
    if state.distributed_type != DistributedType.MULTI_CPU:
        return False
    # both shared states: every later AcceleratorState() copies PartialState's fields over its own
    PartialState().distributed_type = state.distributed_type = DistributedType.FSDP
    state.fsdp_plugin = FullyShardedDataParallelPlugin()  # from the FSDP_* variables the launcher set
    trainer.is_fsdp_enabled = True
    return True


# -- the per-rank sample log ------------------------------------------------------------------------------------


def debug_write(row: dict) -> None:
    """Append ``row`` to this process's sample log (only with ``CLO_DEBUG_SAMPLES`` set)."""
    base = os.environ.get(DEBUG_SAMPLES_ENV)
    if not base:
        return
    from accelerate import PartialState

    rank = PartialState().process_index
    with open(f"{base}.rank{rank}", "a", encoding="utf-8") as f:
        f.write(json.dumps({"rank": rank, "pid": os.getpid(), **row}) + "\n")


def debug_watch(trainer, stage: str) -> None:
    """Record what each training micro-batch of ``trainer`` holds (only with ``CLO_DEBUG_SAMPLES`` set):
    CLO, the sample indices and directions; SFT, a hash of each row's tokens (padding left out)."""
    if not os.environ.get(DEBUG_SAMPLES_ENV):
        return
    inner = trainer.training_step

    def training_step(model, inputs, *args, **kwargs):
        inputs = dict(inputs)
        samples = inputs.pop("sample", None)
        row = {"event": "batch", "stage": stage, "step": trainer.state.global_step}
        if samples is not None:
            row["samples"], row["is_target"] = samples.tolist(), inputs["is_target"].tolist()
            if "lang_id" in inputs:
                row["lang_id"] = inputs["lang_id"].tolist()
        else:
            ids, mask = inputs["input_ids"], inputs.get("attention_mask")
            rows = list(ids) if mask is None else [r[m.bool()] for r, m in zip(ids, mask)]
            row["rows"] = [hashlib.sha256(str(r.tolist()).encode()).hexdigest()[:16] for r in rows]
        debug_write(row)
        return inner(model, inputs, *args, **kwargs)

    trainer.training_step = training_step


def debug_end(trainer, stage: str, stopped: bool) -> None:
    """The stage's step count, stop flag and a SHA-256 of the trainable weights (only with the log on)."""
    if not os.environ.get(DEBUG_SAMPLES_ENV):
        return
    model = trainer.accelerator.unwrap_model(trainer.model)
    h, names = hashlib.sha256(), []
    for name, p in sorted(model.named_parameters(), key=lambda np: np[0]):
        if p.requires_grad:
            t = p.detach()
            if hasattr(t, "full_tensor"):  # an FSDP2 shard (DTensor): every rank gathers the whole parameter
                t = t.full_tensor()
            h.update(name.encode())
            h.update(t.float().cpu().numpy().tobytes())
            names.append(name)
    debug_write({"event": "end", "stage": stage, "steps": trainer.state.global_step, "stopped": stopped,
                 "checksum": h.hexdigest(), "params": names})
