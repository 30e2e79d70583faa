"""Taking a tuned model home (docs/workshop.md, "Take a tuned model home"): a run's model as a standalone folder
that ``transformers`` alone loads, with a model card and an Ollama ``Modelfile``, and optionally one GGUF file.

    python -m clo export runs/X --out exports/X                 # folder: safetensors, tokenizer, README.md, Modelfile
    python -m clo export runs/X --out exports/X --gguf          # + X-f16.gguf (--gguf f32 for full precision)
    python -m clo export runs/X --out exports/X --gguf --verify 10   # + greedy answers compared on held-out prompts

- :func:`export_run` writes the folder into a temporary sibling and renames it into place when it is complete; an
  existing non-empty ``--out`` is refused, so nothing is ever overwritten. A LoRA run is merged into its base model.
  The tokenizer carries the chat template the run trained with (``system_prompt`` included), and
  ``generation_config.json`` holds CLO's evaluation settings (greedy, repetition penalty 1.2, every end-of-turn token),
  so a plain ``model.generate`` answers as ``clo eval`` does.
- The GGUF (:func:`write_gguf`, the ``gguf`` package): for a run on a bundled model, which ships as a GGUF, the source
  file's metadata and tokenizer are copied and its tensors replaced by the tuned ones (unquantized); for llama and
  qwen2 models from a folder, the file is built from the model's config and its byte-level BPE tokenizer. llama.cpp's
  tensor names come from ``gguf``'s own name map; Q and K of llama models get llama.cpp's row permutation, Gemma 3's
  norms its +1 (what transformers' GGUF loader undoes). The tokenizer the GGUF describes is read back with
  transformers and must tokenize like the run's, or the GGUF is refused.
- :func:`verify_export` loads the export back with transformers alone (``gguf_file=`` for the GGUF) and compares its
  greedy answers with the run's, token for token.
- :class:`ExportError`: what cannot be exported, and why (no model, a broken run folder, a run still training, an
  architecture or tokenizer without GGUF names).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from clo.core.files import check_free_space
from clo.core.languages import get_language
from clo.core.spec import TrainSpec
from clo.models.chat import PLAIN_CHAT_TEMPLATE, TURN_MARKERS, stop_token_ids
from clo.models.registry import BUNDLED, ModelNotFoundError, bundled_model, canonical_name
from clo.runs.rundir import RunDir, RunError, resolve_run

log = logging.getLogger(__name__)

__all__ = ["ExportError", "ExportResult", "GGUF_TYPES", "export_run", "verify_export", "write_gguf",
           "default_export_dir", "ollama_template"]

GGUF_TYPES = ("f16", "f32")  # what --gguf writes; quantizing (llama.cpp's llama-quantize) is the next step
GGUF_DIR = "gguf"  # the export's subfolder for the GGUF file
# the Hugging Face ids of the bundled models, for the card's base_model
BASE_MODEL_IDS = {"smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct", "gemma-3-270m": "google/gemma-3-270m"}
LICENSES = {"smollm2-135m-instruct": "apache-2.0", "gemma-3-270m": "gemma"}
REPETITION_PENALTY = 1.2  # clo.evaluation.generate.GenerationOptions' default, written into generation_config.json
MAX_NEW_TOKENS = 128
# model_type → the gguf architecture written for a model that does not come from a GGUF
BUILT_ARCHS = {"llama": "llama", "qwen2": "qwen2"}
# gguf architectures whose tensors a bundled GGUF may have, with what llama.cpp did to them
SOURCE_ARCHS = ("llama", "gemma3")


class ExportError(ValueError):
    """A run that cannot be exported; the message says why and what to do."""


@dataclass
class ExportResult:
    folder: Path
    gguf: Path | None = None
    base_model: str = ""
    merged_lora: bool = False
    gguf_source: str = ""  # "copied from <bundled GGUF>" or "built from the config"
    verified: dict | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {"folder": str(self.folder), "gguf": str(self.gguf) if self.gguf else None,
                "base_model": self.base_model, "merged_lora": self.merged_lora, "gguf_source": self.gguf_source,
                "verified": self.verified, "notes": self.notes,
                "files": sorted(p.name for p in self.folder.iterdir()) if self.folder.is_dir() else []}


def default_export_dir(run: RunDir) -> Path:
    """Where the app suggests exporting a run: ``~/clo-exports/<run id>`` (outside the run, so that deleting the run
    keeps it), or ``<run id>-2``, ``-3``… when that is taken."""
    base = Path("~/clo-exports").expanduser() / run.id
    path, n = base, 1
    while path.exists() and (not path.is_dir() or any(path.iterdir())):
        n += 1
        path = base.with_name(f"{run.id}-{n}")
    return path


# -- which run, which model --------------------------------------------------------------------------------------


def _checked_run(run) -> tuple[RunDir, TrainSpec]:
    """The run and its settings, or the reason it cannot be exported."""
    if not isinstance(run, RunDir):
        try:
            run = resolve_run(run)
        except RunError as e:
            raise ExportError(f"Cannot export: {e}") from None
    status = run.status(shown=True)
    state = status.get("state")
    if state == "unreadable":
        raise ExportError(f"Cannot export run {run.id}: its folder is broken ({status.get('error')}).")
    if state in ("running", "queued"):
        raise ExportError(f"Cannot export run {run.id}: it is {state}. Export it when it has finished or stopped "
                          "(a stop keeps the model of the step it reached).")
    if not run.has_model():
        raise ExportError(f"Cannot export run {run.id}: it has no model ({state}; model/ holds no config.json or "
                          "adapter_config.json). A run saves its model when it finishes or is stopped; a run that "
                          "failed before its first save has none.")
    cfg, why = run.read_config()
    if why or not cfg:
        raise ExportError(f"Cannot export run {run.id}: its config.yaml cannot be used ({why or 'it is missing'}).")
    try:
        spec = TrainSpec.from_dict(dict(cfg), source=str(run.config_path))
    except ValueError as e:
        raise ExportError(f"Cannot export run {run.id}: its config.yaml is not valid ({e}).") from None
    return run, spec


def _base_chain(model: str) -> tuple[str, str | None]:
    """The model a run was trained from, followed through runs used as base models: ``(name, bundled name)``."""
    seen = set()
    name = str(model)
    while name not in seen:
        seen.add(name)
        if bundled_model(name):
            return name, canonical_name(name)
        path = Path(name).expanduser()
        if (path / "config.yaml").exists() and (path / "status.json").exists():
            base = RunDir(path).config().get("model")
            if base:
                name = str(base)
                continue
        break
    return name, None


def _base_model_id(model: str) -> tuple[str, str | None]:
    """For the card: ``(base_model id or "", bundled name or None)``."""
    name, bundled = _base_chain(model)
    if bundled:
        return BASE_MODEL_IDS.get(bundled, ""), bundled
    if "/" in name and not Path(name).expanduser().exists() and not name.startswith((".", "/", "~")):
        return name, None  # a Hugging Face id from the local cache
    return "", None


# -- the export ------------------------------------------------------------------------------------------------------


def export_run(run, out, *, gguf: str | None = None, verify_prompts: list[dict] | None = None,
               max_new_tokens: int = MAX_NEW_TOKENS, progress=None) -> ExportResult:
    """Export a run (id, path or :class:`RunDir`) into the new folder ``out`` (see the module docstring).

    ``gguf``: ``"f16"``, ``"f32"`` or None. ``verify_prompts``: held-out prompts (``{id, lang, prompt}``) to compare
    the export's greedy answers with the run's before the folder is published (recorded in the card).
    ``progress``: called with a line of text per stage."""
    say = progress or (lambda _m: None)
    run, spec = _checked_run(run)
    if gguf is not None and gguf not in GGUF_TYPES:
        raise ExportError(f"Unknown GGUF type {gguf!r}: choose one of {', '.join(GGUF_TYPES)} (quantize it "
                          "afterwards with llama.cpp's llama-quantize).")
    out = Path(out).expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} already exists and is not an empty folder; choose a new one (an export never "
                          "overwrites anything).")
    if run.path.resolve() in out.parents and out.parent != run.path.resolve():
        raise ExportError(f"{out} is inside the run's own files; use {default_export_dir(run)} or another folder "
                          "outside the run.")
    source = _gguf_source(spec.model) if gguf else None

    import torch

    from clo.models.load import load_model

    say(f"Loading {run.id}…")
    try:
        lm = load_model(str(run.path), device="cpu", dtype="float32")
    except (ModelNotFoundError, OSError, ValueError) as e:
        raise ExportError(f"Cannot export run {run.id}: its model does not load ({e}).") from None
    model, tok = lm.model, lm.tokenizer
    merged = hasattr(model, "peft_config")
    if merged:
        say("Merging the LoRA adapter into the base model…")
        model = model.merge_and_unload()
    model.eval()
    if gguf and source is None:
        _check_buildable(model, tok)  # refused before anything is written
    out.parent.mkdir(parents=True, exist_ok=True)
    n_params = sum(p.numel() for p in model.parameters())
    check_free_space(out.parent, n_params * (4 + ({"f16": 2, "f32": 4}.get(gguf, 0))) + 64 * 2**20,
                     f"the export of {run.id} (nothing was written)")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    result = ExportResult(folder=out, merged_lora=merged)
    try:
        say("Writing the model folder…")
        with torch.no_grad():
            model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        _write_generation_config(tmp, tok)
        (tmp / "clo_config.yaml").write_text(run.config_path.read_text(encoding="utf-8"), encoding="utf-8")
        gguf_name = None
        if gguf:
            gguf_name = f"{GGUF_DIR}/{run.id}-{gguf}.gguf"  # its own folder: transformers would mix in this one's
            say(f"Writing {gguf_name}…")                      # tokenizer files when reading the GGUF's tokenizer
            (tmp / GGUF_DIR).mkdir()
            result.gguf_source = write_gguf(model, tok, tmp / gguf_name, gguf, source=source)
        template = ollama_template(tok)
        if template.get("problem"):
            result.notes.append(f"Modelfile has no TEMPLATE: {template['problem']}")
        (tmp / "Modelfile").write_text(_modelfile(tok, template, gguf_name), encoding="utf-8")
        del model, lm
        if verify_prompts:
            say(f"Comparing greedy answers on {len(verify_prompts)} held-out prompts…")
            result.verified = verify_export(run, tmp, verify_prompts, gguf_file=gguf_name,
                                            max_new_tokens=max_new_tokens, progress=say)
        base_id, bundled = _base_model_id(spec.model)
        result.base_model = base_id or spec.model
        (tmp / "README.md").write_text(model_card(run, spec, base_id, bundled, merged, gguf_name, result),
                                       encoding="utf-8")
        _usual_modes(tmp)
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if result.gguf is None and gguf_name:
        result.gguf = out / gguf_name
    return result


def _usual_modes(folder: Path) -> None:
    """The modes a folder made by hand would have (mkdtemp's is 0700): others may read what is meant to be shared."""
    mask = os.umask(0)
    os.umask(mask)
    for path in [folder, *folder.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def _write_generation_config(folder: Path, tok) -> None:
    """Greedy, CLO's repetition penalty, stop at every end-of-turn token: ``model.generate`` answers as clo eval."""
    from transformers import GenerationConfig

    stops = stop_token_ids(tok)
    GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=stops if len(stops) > 1 else stops[0],
                     pad_token_id=tok.pad_token_id, do_sample=False, repetition_penalty=REPETITION_PENALTY,
                     max_new_tokens=MAX_NEW_TOKENS).save_pretrained(folder)


# -- GGUF ------------------------------------------------------------------------------------------------------------


def _gguf_source(model: str) -> Path | None:
    """The bundled GGUF a run's base model came from (followed through runs used as base), else None."""
    _, bundled = _base_chain(model)
    if not bundled:
        return None
    path = BUNDLED[bundled].gguf_path()
    if path is None:
        raise ExportError(f"The run was trained from the bundled {bundled}, whose GGUF (Python package "
                          f"{BUNDLED[bundled].package!r}) is not installed; its metadata and tokenizer are copied "
                          f"from that file. Install it with: {BUNDLED[bundled].install}.")
    return path


def _model_type(model) -> str:
    return getattr(model.config, "model_type", "") or ""


def _check_buildable(model, tok) -> None:
    mt = _model_type(model)
    if mt not in BUILT_ARCHS:
        raise ExportError(f"Cannot write a GGUF for a {mt or 'unknown'} model: CLO Studio builds GGUF files for "
                          f"{', '.join(sorted(BUILT_ARCHS))} models and for the bundled models (from their own GGUF). "
                          "Export without --gguf and convert the folder with llama.cpp's convert_hf_to_gguf.py.")
    rope = getattr(model.config, "rope_scaling", None) or {}
    if isinstance(rope, dict) and rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
        raise ExportError(f"Cannot write a GGUF for this {mt} model: its RoPE scaling ({rope.get('rope_type')}) is "
                          "not written by CLO Studio. Export without --gguf and use llama.cpp's convert_hf_to_gguf.py.")
    _pre_tokenizer(tok)  # raises with the reason


def _pre_tokenizer(tok) -> str:
    """llama.cpp's name for how this byte-level BPE tokenizer splits text (``tokenizer.ggml.pre``)."""
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:
        raise ExportError("Cannot write a GGUF: the tokenizer is not a fast (tokenizer.json) tokenizer.")
    spec = json.loads(backend.to_str())
    model, pre, dec = spec.get("model") or {}, spec.get("pre_tokenizer") or {}, spec.get("decoder") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback") or dec.get("type") != "ByteLevel":
        raise ExportError("Cannot write a GGUF: CLO Studio writes byte-level BPE tokenizers (GPT-2 style) only, and "
                          f"this one is {model.get('type')} with a {dec.get('type')} decoder. Export without --gguf "
                          "and use llama.cpp's convert_hf_to_gguf.py.")
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"
    raise ExportError(f"Cannot write a GGUF: the tokenizer splits text with a {pre.get('type')} pre-tokenizer that "
                      "CLO Studio cannot name for llama.cpp. Export without --gguf and use llama.cpp's "
                      "convert_hf_to_gguf.py.")


def _permute_qk(w, n_head: int, n_head_kv: int | None = None):
    """llama.cpp's row order for Q and K of llama models (convert_hf_to_gguf.py, ``LlamaModel.permute``)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _gguf_tensors(model, arch: str, ftype: str) -> dict:
    """The model's tensors under llama.cpp's names, as llama.cpp stores them (numpy, f16 or f32)."""
    import gguf
    import numpy as np

    arch_id = next((k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch), None)
    if arch_id is None:
        raise ExportError(f"The gguf package knows no architecture {arch!r}.")
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    names = gguf.get_tensor_name_map(arch_id, cfg.num_hidden_layers)
    tied = bool(getattr(cfg, "tie_word_embeddings", False) or getattr(model.config, "tie_word_embeddings", False))
    out = {}
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ExportError(f"Cannot write a GGUF: the tensor {hf_name} of this {_model_type(model)} model has no "
                              "llama.cpp name.")
        data = tensor.detach().to("cpu").float().numpy()
        if arch == "llama" and hf_name.endswith("q_proj.weight"):
            data = _permute_qk(data, cfg.num_attention_heads, cfg.num_attention_heads)
        elif arch == "llama" and hf_name.endswith("k_proj.weight"):
            data = _permute_qk(data, cfg.num_attention_heads, cfg.num_key_value_heads)
        elif arch == "gemma3" and hf_name.endswith("norm.weight"):
            data = data + 1.0  # llama.cpp stores Gemma's (1 + w) norms as 1 + w
        if ftype == "f16" and data.ndim > 1:
            data = data.astype(np.float16)
        out[name] = np.ascontiguousarray(data.astype(np.float32) if data.dtype != np.float16 else data)
    return out


def write_gguf(model, tok, path: Path, ftype: str = "f16", source: Path | None = None) -> str:
    """Write ``model`` as one GGUF file at ``path``; returns how (copied from ``source``'s metadata, or built).

    ``source``: the GGUF the model was dequantized from (a bundled model): its metadata and tokenizer are copied,
    its tensors replaced, its chat template replaced by ``tok``'s (the one the run trained with). Otherwise the file
    is built from the model's config (llama, qwen2) and ``tok`` (byte-level BPE). The tokenizer the written file
    describes must tokenize like ``tok`` (read back with transformers), else the file is removed and refused."""
    import gguf

    path = Path(path)
    file_type = gguf.LlamaFileType.MOSTLY_F16 if ftype == "f16" else gguf.LlamaFileType.ALL_F32
    template = tok.chat_template or PLAIN_CHAT_TEMPLATE
    if source is not None:
        reader = gguf.GGUFReader(source)
        arch = reader.fields["general.architecture"].contents()
        if arch not in SOURCE_ARCHS:
            raise ExportError(f"Cannot write a GGUF: the bundled GGUF is a {arch} model, whose tensors CLO Studio "
                              f"does not write (it writes {', '.join(SOURCE_ARCHS)}).")
        tensors = _gguf_tensors(model, arch, ftype)
        theirs = {t.name: [int(x) for x in reversed(t.shape.tolist())] for t in reader.tensors}
        ours = {n: list(a.shape) for n, a in tensors.items()}
        if set(theirs) != set(ours):
            extra, missing = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
            raise ExportError(f"Cannot write a GGUF: the tuned model's tensors do not match {source.name}'s "
                              f"(only in the model: {extra[:3]}; only in the file: {missing[:3]}).")
        bad = [n for n in ours if _squeeze(ours[n]) != _squeeze(theirs[n])]
        if bad:
            raise ExportError(f"Cannot write a GGUF: tensor shapes differ from {source.name}'s ({bad[:3]}).")
        writer = gguf.GGUFWriter(path, arch)
        skip = {"general.architecture", "general.file_type", "general.quantization_version",
                "tokenizer.chat_template"}
        for f in reader.fields.values():
            if f.name.startswith("GGUF.") or f.name in skip:
                continue
            vtype = f.types[0]
            sub = f.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(f.name, f.contents(), vtype, sub_type=sub)
        how = f"metadata and tokenizer copied from {source.name}, tensors replaced by the tuned model's"
    else:
        arch = BUILT_ARCHS[_model_type(model)]
        tensors = _gguf_tensors(model, arch, ftype)
        writer = gguf.GGUFWriter(path, arch)
        _add_config(writer, model.config)
        _add_tokenizer(writer, tok)
        how = f"built from the model's config ({arch}) and tokenizer"
    writer.add_file_type(int(file_type))
    writer.add_chat_template(template)
    for name, data in tensors.items():
        writer.add_tensor(name, data)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    problem = _gguf_tokenizer_problem(path, tok)
    if problem:
        path.unlink(missing_ok=True)
        raise ExportError(f"Cannot write a GGUF: the tokenizer it describes does not tokenize like the run's "
                          f"({problem}).")
    return how


def _squeeze(shape: list[int]) -> list[int]:
    return [s for s in shape if s != 1] or [1]


def _add_config(writer, config) -> None:
    cfg = config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    rope = getattr(cfg, "rope_parameters", None) or {}
    theta = rope.get("rope_theta") if isinstance(rope, dict) else None
    theta = theta or getattr(cfg, "rope_theta", None) or 10000.0
    writer.add_context_length(int(cfg.max_position_embeddings))
    writer.add_embedding_length(int(cfg.hidden_size))
    writer.add_block_count(int(cfg.num_hidden_layers))
    writer.add_feed_forward_length(int(cfg.intermediate_size))
    writer.add_head_count(int(cfg.num_attention_heads))
    writer.add_head_count_kv(int(getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads))
    writer.add_rope_dimension_count(int(head_dim))
    writer.add_rope_freq_base(float(theta))
    writer.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
    writer.add_vocab_size(int(cfg.vocab_size))


def _add_tokenizer(writer, tok) -> None:
    """A byte-level BPE tokenizer as llama.cpp's ``gpt2`` model: tokens in id order, their types (special tokens
    CONTROL, other added tokens USER_DEFINED), the merges, the special ids."""
    import gguf

    pre = _pre_tokenizer(tok)
    spec = json.loads(tok.backend_tokenizer.to_str())
    vocab = tok.get_vocab()
    size = max(vocab.values()) + 1
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [gguf.TokenType.UNUSED] * size
    for text, i in vocab.items():
        tokens[i], types[i] = text, gguf.TokenType.NORMAL
    special = set(tok.all_special_ids)
    for i, added in tok.added_tokens_decoder.items():
        tokens[i] = added.content
        types[i] = gguf.TokenType.CONTROL if (added.special or i in special) else gguf.TokenType.USER_DEFINED
    for i in special:
        types[i] = gguf.TokenType.CONTROL
    merges = spec["model"].get("merges") or []
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types([int(t) for t in types])
    writer.add_token_merges(merges)
    for kind in ("bos", "eos", "unk", "pad"):
        i = getattr(tok, f"{kind}_token_id", None)
        if i is not None:
            {"bos": writer.add_bos_token_id, "eos": writer.add_eos_token_id, "unk": writer.add_unk_token_id,
             "pad": writer.add_pad_token_id}[kind](int(i))
    # llama.cpp adds BOS itself where the chat template starts with one (the Ollama TEMPLATE leaves it out)
    writer.add_add_bos_token(bool(ollama_template(tok).get("bos")))
    writer.add_add_eos_token(False)


_PROBE = ["Habari yako? Unaweza kunisaidia kupika wali?", "Explain why the sky is blue, in two sentences.",
          "Oòrùn máa ń yọ ní ìlà oòrùn.", "太阳从东方升起。", "해는 동쪽에서 뜹니다.", "  spaces\tand\nnewlines  ",
          "Numbers 12345 and symbols #@!"]


def _gguf_tokenizer_problem(path: Path, tok) -> str | None:
    """Why the tokenizer transformers reads from the GGUF at ``path`` differs from ``tok`` (None: it does not), on
    chat-formatted probe texts in several scripts."""
    from transformers import AutoTokenizer

    try:
        theirs = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    except Exception as e:  # noqa: BLE001 - any failure to read it back is a reason to refuse the file
        return f"transformers cannot read it back: {e}"
    texts = []
    for p in _PROBE:
        texts.append(p)
        try:
            texts.append(tok.apply_chat_template([{"role": "user", "content": p}, {"role": "assistant",
                                                  "content": p[::-1]}], tokenize=False))
        except Exception:  # noqa: BLE001 - a template that cannot render an answer turn: the prompt texts suffice
            pass
    for text in texts:
        a = tok(text, add_special_tokens=False)["input_ids"]
        b = theirs(text, add_special_tokens=False)["input_ids"]
        if a != b:
            return f"{text[:40]!r} gives {len(a)} tokens with the run's tokenizer and {len(b)} differing ones"
    if (theirs.chat_template or "") != (tok.chat_template or PLAIN_CHAT_TEMPLATE):
        return "its chat template differs"
    return None


# -- Ollama ------------------------------------------------------------------------------------------------------


def ollama_template(tok) -> dict:
    """The chat template as pieces an Ollama (Go) TEMPLATE is made of, found by rendering the Jinja template on
    marker messages: ``{system: (prefix, suffix), user: …, assistant: …, generation, default_system, template}``, or
    ``{problem: why}`` when it does not split into per-message pieces. The pieces are checked by rebuilding a
    six-message conversation and comparing it with the Jinja rendering."""
    S, U, A, U2, A2, U3 = "SYSMARK0", "USRMARK1", "ANSMARK2", "USRMARK3", "ANSMARK4", "USRMARK5"

    def render(msgs, gen=False):
        return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)

    def m(role, text):
        return {"role": role, "content": text}

    try:
        r_s = render([m("system", S)])
        r_su = render([m("system", S), m("user", U)])
        r_sua = render([m("system", S), m("user", U), m("assistant", A)])
        r_su_gen = render([m("system", S), m("user", U)], gen=True)
        r_u = render([m("user", U)])
        six = render([m("system", S), m("user", U), m("assistant", A), m("user", U2), m("assistant", A2),
                      m("user", U3)], gen=True)
        five = render([m("user", U), m("assistant", A), m("user", U2), m("assistant", A2), m("user", U3)], gen=True)
    except Exception as e:  # noqa: BLE001 - a template that refuses these messages cannot be translated
        return {"problem": f"the chat template cannot render a plain conversation ({e})"}
    bos = tok.bos_token or ""
    # a BOS the template writes once at the start (llama.cpp adds it itself), not a token every turn starts with
    lead = bos if bos and r_s.startswith(bos) and not r_su[len(r_s):].startswith(bos) else ""

    def split(text, marker):
        if text.count(marker) != 1:
            return None
        return tuple(text.split(marker))

    s = split(r_s[len(lead):], S)
    if s is None or not r_su.startswith(r_s) or not r_sua.startswith(r_su) or not r_su_gen.startswith(r_su):
        return {"problem": "the chat template does not render one message after another"}
    u = split(r_su[len(r_s):], U)
    a = split(r_sua[len(r_su):], A)
    gen = r_su_gen[len(r_su):]
    if u is None or a is None:
        return {"problem": "the chat template does not render one message after another"}
    turn = u[0] + U + u[1]
    if not r_u.endswith(turn) or not r_u.startswith(lead):
        return {"problem": "a conversation without a system message renders differently"}
    default_block = r_u[len(lead):len(r_u) - len(turn)]
    if default_block and not (default_block.startswith(s[0]) and default_block.endswith(s[1])):
        return {"problem": "its default system prompt is not a system message"}
    default = default_block[len(s[0]):len(default_block) - len(s[1])] if default_block else None
    parts = {"system": s, "user": u, "assistant": a, "generation": gen, "default_system": default, "bos": lead}

    def rebuild(msgs):
        text = lead
        if msgs[0]["role"] != "system" and default is not None:
            text += s[0] + default + s[1]
        for msg in msgs:
            pre, suf = parts[msg["role"]]
            text += pre + msg["content"] + suf
        return text + gen

    convo = [m("user", U), m("assistant", A), m("user", U2), m("assistant", A2), m("user", U3)]
    if rebuild([m("system", S), *convo]) != six or rebuild(convo) != five:
        return {"problem": "the chat template renders turns differently by position"}
    try:
        parts["template"] = _go_template(parts)
    except ValueError as e:
        return {"problem": f"the chat template writes text Ollama's template syntax cannot hold ({str(e)[:40]!r})"}
    return parts


def _go(text: str) -> str:
    if "{{" in text or '"""' in text:
        raise ValueError(text)
    return text


def _go_template(p: dict) -> str:
    """Ollama's TEMPLATE (Go text/template over .Messages) for the pieces of :func:`ollama_template`. One line, no
    ``{{-`` trims: the pieces' own newlines are part of the format."""
    (s0, s1), (u0, u1), (a0, a1) = p["system"], p["user"], p["assistant"]
    text = ""
    if p["default_system"] is not None:  # the Jinja template always writes a system turn: its default, or empty
        text += ('{{ if or (not .Messages) (ne (index .Messages 0).Role "system") }}'
                 f"{_go(s0)}{_go(p['default_system'])}{_go(s1)}{{{{ end }}}}")
    text += (f'{{{{ range .Messages }}}}{{{{ if eq .Role "system" }}}}{_go(s0)}{{{{ .Content }}}}{_go(s1)}'
             f'{{{{ else if eq .Role "user" }}}}{_go(u0)}{{{{ .Content }}}}{_go(u1)}'
             f'{{{{ else if eq .Role "assistant" }}}}{_go(a0)}{{{{ .Content }}}}{_go(a1)}'
             f"{{{{ end }}}}{{{{ end }}}}{_go(p['generation'])}")
    return text


def _modelfile(tok, template: dict, gguf_name: str | None) -> str:
    lines = ["# Ollama Modelfile written by CLO Studio (clo export). Create the model with:",
             "#   ollama create NAME -f Modelfile",
             "# Greedy decoding and repetition penalty 1.2 are what clo eval used; change them as you like.",
             *([f"FROM ./{gguf_name}"] if gguf_name else
               ["# FROM this folder's safetensors (Ollama imports llama-family folders); --gguf writes a GGUF",
                "FROM ."])]
    if template.get("template"):
        lines.append(f'TEMPLATE """{template["template"]}"""')
    else:
        lines.append(f"# no TEMPLATE: {template.get('problem', 'the chat template could not be translated')}")
    stops = [tok.convert_ids_to_tokens(i) for i in stop_token_ids(tok)]
    if not tok.chat_template or tok.chat_template == PLAIN_CHAT_TEMPLATE:
        stops += [t.strip("\n") for t in TURN_MARKERS]  # a base model's next invented turn
    for s in dict.fromkeys(stops):
        lines.append(f"PARAMETER stop {json.dumps(s, ensure_ascii=False)}")
    lines += ["PARAMETER temperature 0", f"PARAMETER repeat_penalty {REPETITION_PENALTY}"]
    return "\n".join(lines) + "\n"


# -- checking the export --------------------------------------------------------------------------------------------


def _greedy_ids(model, tok, prompts: list[str], max_new_tokens: int, stops: list[int]) -> list[list[int]]:
    """Each prompt's greedy answer as token ids, one prompt at a time (no padding), with CLO's settings."""
    import torch

    out = []
    for prompt in prompts:
        text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                       add_generation_prompt=True)
        enc = tok(text, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, temperature=None,
                                 top_p=None, top_k=None, repetition_penalty=REPETITION_PENALTY,
                                 eos_token_id=stops, pad_token_id=tok.pad_token_id)
        ids = gen[0, enc["input_ids"].shape[1]:].tolist()
        cut = next((i + 1 for i, t in enumerate(ids) if t in stops), len(ids))
        out.append(ids[:cut])
    return out


def verify_export(run, folder, prompts: list[dict], *, gguf_file: str | None = None,
                  max_new_tokens: int = MAX_NEW_TOKENS, progress=None) -> dict:
    """Greedy answers of the export, loaded with transformers alone (the folder, and ``gguf_file`` — a path inside
    it — through transformers' GGUF loader), against the run's (loaded by CLO Studio), token for token, one prompt
    at a time.

    Returns ``{"prompts": n, "max_new_tokens": …, "folder": {"identical": k, "differ": [ids]}, "gguf": {…}}``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from clo.models.load import load_model

    say = progress or (lambda _m: None)
    run = run if isinstance(run, RunDir) else resolve_run(run)
    folder = Path(folder)
    texts = [p["prompt"] for p in prompts]
    lm = load_model(str(run.path), device="cpu", dtype="float32")
    theirs = _greedy_ids(lm.model, lm.tokenizer, texts, max_new_tokens, stop_token_ids(lm.tokenizer))
    del lm
    result = {"prompts": len(texts), "max_new_tokens": max_new_tokens, "repetition_penalty": REPETITION_PENALTY}
    targets = [("folder", folder, {})]
    if gguf_file:
        gguf_path = folder / gguf_file
        targets.append(("gguf", gguf_path.parent, {"gguf_file": gguf_path.name}))
    for key, where, kw in targets:
        say(f"Loading the export's {key} with transformers alone…")
        tok = AutoTokenizer.from_pretrained(where, **kw)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=torch.float32, **kw)
        model.eval()
        ours = _greedy_ids(model, tok, texts, max_new_tokens, stop_token_ids(tok))
        same = [a == b for a, b in zip(ours, theirs)]
        result[key] = {"identical": sum(same), "differ": [p.get("id", i) for i, (p, ok) in
                                                           enumerate(zip(prompts, same)) if not ok]}
        del model
    return result


# -- the model card ----------------------------------------------------------------------------------------------


def _lang_codes(spec: TrainSpec) -> list[str]:
    codes = []
    for code in [*spec.langs, "en"]:
        try:
            codes.append(get_language(code).code)
        except ValueError:
            codes.append(code)
    return list(dict.fromkeys(codes))


def _lang_names(codes: list[str]) -> str:
    names = []
    for code in codes:
        try:
            names.append(f"{get_language(code).name} ({code})")
        except ValueError:
            names.append(code)
    return ", ".join(names)


def _scores_section(run: RunDir, spec: TrainSpec) -> list[str]:
    ev = run.eval()
    if not ev or not isinstance(ev.get("models"), dict) or not ev["models"]:
        return ["## Held-out scores", "",
                "This run has not been evaluated. Score it (the result is saved in the run as eval.json and shows "
                "in the next export's card):", "",
                f"    python -m clo eval --model {run.path} --lang {','.join(_lang_codes(spec))}", ""]
    opts = ev.get("options") or {}
    lines = ["## Held-out scores", "",
             f"From the run's eval.json (evaluated {ev.get('evaluated', 'at an unrecorded time')}): "
             f"{opts.get('n_prompts', '?')} held-out prompts, greedy, max_new_tokens {opts.get('max_new_tokens')}, "
             f"repetition penalty {opts.get('repetition_penalty')}. *Clean LPR*: the share of answers in the prompt's "
             "language that are neither an echo nor a loop and are made of real words (docs/evaluation.md).", "",
             "| model | language | n | LPR | clean LPR | real-word rate | chrF++ |", "|---|---|---|---|---|---|---|"]

    def fmt(v):
        return "-" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)

    for name, langs in ev["models"].items():
        for lang, m in (langs or {}).items():
            if isinstance(m, dict):
                lines.append(f"| {Path(str(name)).name} | {lang} | {fmt(m.get('n'))} | {fmt(m.get('lpr'))} | "
                             f"{fmt(m.get('clean_lpr'))} | {fmt(m.get('real_word_rate'))} | {fmt(m.get('chrf'))} |")
    command = ev.get("command") or (
        f"python -m clo eval --model {run.path} --lang {','.join(opts.get('langs') or _lang_codes(spec))} "
        f"--max-new-tokens {opts.get('max_new_tokens', 128)} "
        f"--repetition-penalty {opts.get('repetition_penalty', 1.2)}")
    lines += ["", "Produced by (the held-out prompts are `--prompts demo` unless another file was given):", "",
              f"    {command}", ""]
    return lines


def model_card(run: RunDir, spec: TrainSpec, base_id: str, bundled: str | None, merged: bool,
               gguf_name: str | None, result: ExportResult) -> str:
    """README.md in the Hugging Face model-card format: YAML front matter, then what it is, how it was trained,
    its held-out scores and their command, how to load it, and its limits."""
    codes = _lang_codes(spec)
    status = run.status()
    front = {"library_name": "transformers", "pipeline_tag": "text-generation", "language": codes,
             "tags": ["clo-studio", "cross-lingual-optimization", spec.method, *(["lora"] if merged else []),
                      *(["gguf"] if gguf_name else [])]}
    if base_id:
        front = {"base_model": base_id, **front}
    if bundled and LICENSES.get(bundled):
        front["license"] = LICENSES[bundled]
    base_text = f"`{base_id}`" if base_id else f"`{spec.model}` (a local model)"
    objective = spec.objective if spec.method in ("clo", "sft-dpo") else "-"
    lines = ["---", yaml.safe_dump(front, sort_keys=False, allow_unicode=True).strip(), "---", "",
             f"# {run.id}", "",
             f"{base_text} tuned with CLO Studio so that it answers in the language it is asked in "
             f"({_lang_names(codes)}).", "",
             "| | |", "|---|---|",
             f"| base model | {base_text} |",
             f"| method | `{spec.method}` (docs/design.md, \"Method\") |",
             f"| objective | `{objective}` |",
             f"| target languages | {_lang_names([c for c in codes if c != 'en'] or codes)} |",
             f"| trainable scope | `{spec.scope}`"
             + (" (LoRA adapters, merged into the weights here)" if merged else "") + " |",
             f"| steps | {status.get('step', '?')} on {status.get('n_samples', '?')} samples ({status.get('state')}) |",
             f"| precision | {status.get('precision', '?')} |", "",
             "## Settings", "",
             "Every setting of the run; `clo_config.yaml` in this folder reproduces it with "
             "`python -m clo train --config clo_config.yaml`.", "", "```yaml",
             yaml.safe_dump(spec.to_dict(), sort_keys=False, allow_unicode=True).strip(), "```", ""]
    lines += _scores_section(run, spec)
    lines += ["## Use it", "", "With transformers alone (no CLO Studio, no peft):", "", "```python",
              "from transformers import AutoModelForCausalLM, AutoTokenizer",
              'tok = AutoTokenizer.from_pretrained("PATH/TO/THIS/FOLDER")',
              'model = AutoModelForCausalLM.from_pretrained("PATH/TO/THIS/FOLDER")',
              'ids = tok.apply_chat_template([{"role": "user", "content": "Habari yako?"}],',
              '                              add_generation_prompt=True, return_tensors="pt", return_dict=True)',
              "out = model.generate(**ids)  # generation_config.json: greedy, repetition penalty 1.2, 128 new tokens",
              'print(tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))', "```", ""]
    if gguf_name:
        lines += [f"`{gguf_name}` is the same model as one GGUF file ({result.gguf_source}; unquantized — "
                  "quantize it with llama.cpp's `llama-quantize` if you want it smaller). With Ollama: "
                  "`ollama create NAME -f Modelfile`, then `ollama run NAME`. transformers reads it too: "
                  f'`AutoModelForCausalLM.from_pretrained("PATH/TO/THIS/FOLDER/{GGUF_DIR}", '
                  f'gguf_file="{Path(gguf_name).name}")` (the GGUF has its own folder: transformers would mix this '
                  "folder's tokenizer files into the GGUF's).", ""]
    else:
        lines += ["The `Modelfile` imports this folder into Ollama (`ollama create NAME -f Modelfile`); "
                  "`clo export --gguf` also writes one GGUF file for llama.cpp and Ollama.", ""]
    if result.verified:
        v = result.verified
        lines += ["## Export check", "",
                  f"Greedy answers (max_new_tokens {v['max_new_tokens']}, repetition penalty "
                  f"{v['repetition_penalty']}) on {v['prompts']} held-out prompts, this export loaded with "
                  "transformers alone against the run loaded by CLO Studio, compared token for token:", "",
                  f"- folder: {v['folder']['identical']}/{v['prompts']} identical"]
        if "gguf" in v:
            lines.append(f"- {gguf_name}: {v['gguf']['identical']}/{v['prompts']} identical")
        lines.append("")
    finding = BUNDLED[bundled].finding if bundled else ""
    lines += ["## Limits", "",
              "This is a small model tuned on a small data set for a few steps. It shows what cross-lingual "
              "preference tuning does to *which language* a model answers in; it does not make the answers correct, "
              "fluent or safe. Check the held-out scores above, read its answers before relying on them, and do not "
              "use it where a wrong answer can hurt someone.", ""]
    if finding:
        lines += [f"What the demo run of this base model shows: {finding}", ""]
    lines += [f"Exported with `python -m clo export {run.path} --out FOLDER"
              + (f" --gguf {gguf_name.rsplit('-', 1)[-1][:-5]}" if gguf_name else "") + "` (CLO Studio).", ""]
    return "\n".join(lines)
