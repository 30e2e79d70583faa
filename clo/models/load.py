"""Loading a resolved model and its tokenizer (docs/design.md, "Models"): :func:`load_model` returns a
:class:`LoadedModel` on the asked device and dtype; a run's LoRA adapter is loaded on top of its base model.
torch and transformers are imported inside :func:`load_model`, so importing this module stays cheap.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from clo.models.cache import dequantize_to_cache
from clo.models.chat import finish_tokenizer
from clo.models.registry import BUNDLED, ModelNotFoundError, canonical_name
from clo.models.resolve import adapter_base, refuse_pickle_only, resolve_model

log = logging.getLogger(__name__)

__all__ = ["LoadedModel", "load_model"]


@dataclass
class LoadedModel:
    model: object  # transformers PreTrainedModel (or peft PeftModel)
    tokenizer: object
    name: str  # what the user asked for
    source: str  # where the weights came from
    chat: bool = True  # has a real chat template
    load_seconds: float = 0.0
    meta: dict = field(default_factory=dict)


def device_and_dtype(device: str | None, dtype: str | None):
    import torch

    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype in (None, "auto"):
        dtype = "bfloat16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() else "float32"
    return device, getattr(torch, dtype)


def load_model(
    name: str,
    *,
    device: str | None = None,
    dtype: str | None = None,
    trust_remote_code: bool = False,
    progress=None,
) -> LoadedModel:
    """Load a model and its tokenizer offline. ``name``: bundled name/alias, run dir, folder or HF id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    kind, where = resolve_model(name, trust_remote_code=trust_remote_code)  # refuses unsafe folders before loading
    device, torch_dtype = device_and_dtype(device, dtype)
    adapter = None
    chat = True
    if kind == "bundled":
        spec = BUNDLED[canonical_name(name)]
        chat = spec.chat
        if Path(where).suffix == ".gguf":
            where = dequantize_to_cache(spec, Path(where), progress)
    elif kind == "adapter":
        adapter = Path(where)
        refuse_pickle_only(adapter)  # peft would read adapter_model.bin
        base, tok_where = adapter_base(adapter)
        base_loaded = load_model(base, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
        from peft import PeftModel

        model = PeftModel.from_pretrained(base_loaded.model, adapter, is_trainable=False)
        tokenizer = AutoTokenizer.from_pretrained(tok_where, local_files_only=True)
        chat = finish_tokenizer(tokenizer)
        return LoadedModel(model, tokenizer, name, str(adapter), chat, time.perf_counter() - t0, {"base": base})
    if isinstance(where, Path):
        refuse_pickle_only(where)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            where, local_files_only=True, trust_remote_code=trust_remote_code
        )
        model = AutoModelForCausalLM.from_pretrained(
            where,
            local_files_only=True,
            trust_remote_code=trust_remote_code,
            use_safetensors=True,
            dtype=torch_dtype,
        )
    except ValueError as e:
        if "trust_remote_code" in str(e):
            raise ModelNotFoundError(
                f"{name} needs custom code from its repository (trust_remote_code). That code would run on this "
                "machine; CLO Studio refuses it unless you pass --trust-remote-code after reading the code."
            ) from e
        raise
    except OSError as e:
        if "safetensors" in str(e).lower() or ".bin" in str(e):
            raise ModelNotFoundError(
                f"{name}: no safetensors weights found ({e}). CLO Studio reads safetensors only."
            ) from e
        raise ModelNotFoundError(f"Could not load {name} from {where}: {e}") from e
    model.to(device)
    model.eval()
    own_template = finish_tokenizer(tokenizer)
    chat = chat and own_template
    if model.generation_config is not None and tokenizer.pad_token_id is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return LoadedModel(model, tokenizer, name, str(where), chat, time.perf_counter() - t0, {"kind": kind})

