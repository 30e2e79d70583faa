"""Checking the cached safetensors copy of a bundled model before it is used (docs/reliability.md, "Caches
heal"): every file's size as recorded when it was written, and every safetensors header. A copy cut short by a
full disk, or overwritten, is found here in milliseconds and rebuilt from its GGUF by :func:`dequantize_to_cache`.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import tempfile
from pathlib import Path

from clo.core.files import check_free_space, move_aside
from clo.core.paths import clo_home
from clo.models.chat import PLAIN_CHAT_TEMPLATE
from clo.models.registry import BundledModel, ModelNotFoundError

log = logging.getLogger(__name__)

__all__ = ["safetensors_problem", "cached_copy_problem"]


def safetensors_problem(path: Path) -> str | None:
    """What is wrong with a safetensors file, from its size and header alone (no tensor is read): too short, a
    header length or header that is not what the format says, or tensors that end past the end of the file (a
    copy cut short by a full disk). None when it is whole."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return f"{path.name} is {size} bytes, shorter than a safetensors header"
            (n,) = struct.unpack("<Q", head)
            if n > min(size - 8, 100 * 2**20):
                return f"{path.name}: invalid header length {n} for a file of {size} bytes (cut short?)"
            header = json.loads(f.read(n).decode("utf-8"))
    except OSError as e:
        return f"{path.name} cannot be read ({e.strerror or e})"
    except (ValueError, UnicodeDecodeError):
        return f"{path.name}: the safetensors header is not valid JSON"
    if not isinstance(header, dict):
        return f"{path.name}: the safetensors header is not a mapping"
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (TypeError, KeyError, IndexError, ValueError):
        return f"{path.name}: the safetensors header has a tensor without offsets"
    if 8 + n + end > size:
        return f"{path.name} is {size} bytes but its tensors need {8 + n + end} (cut short?)"
    return None


def cached_copy_problem(folder: Path) -> str | None:
    """Why the cached safetensors copy of a bundled model cannot be used (None: it can): config and tokenizer
    files present, the sizes recorded when it was written (clo_source.json), every weights file whole."""
    for name in ("config.json", "tokenizer_config.json", "clo_source.json"):
        if not (folder / name).is_file():
            return f"{name} is missing"
    try:
        source = json.loads((folder / "clo_source.json").read_text(encoding="utf-8"))
        sizes = source.get("files") or {}
    except (OSError, ValueError, AttributeError):
        return "clo_source.json cannot be read"
    for name, size in sizes.items():
        try:
            actual = (folder / name).stat().st_size
        except OSError:
            return f"{name} is missing"
        if actual != size:
            return f"{name} is {actual} bytes, not the {size} it was written with"
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        return "it holds no safetensors weights"
    for path in weights:
        problem = safetensors_problem(path)
        if problem:
            return problem
    return None



def _move_aside(folder: Path, problem: str) -> Path | None:
    """Move a damaged cached copy out of the way (kept for inspection, never read again), with a warning."""
    try:
        aside = move_aside(folder)
    except OSError as e:
        log.warning("the cached copy %s is damaged (%s) and could not be moved aside: %s", folder, problem, e)
        raise ModelNotFoundError(f"The cached model copy {folder} is damaged ({problem}) and could not be moved "
                                 f"aside ({e.strerror or e}); delete it, and it is rebuilt from its GGUF.") from e
    if aside is not None:  # (None: another process moved it first)
        log.warning("the cached model copy %s is damaged (%s); moved it to %s and rebuilding it from its GGUF "
                    "(delete the damaged copy when you no longer need it)", folder, problem, aside)
    return aside


def _strip_quantization(model) -> None:
    """transformers tags GGUF-loaded models as quantized (and then refuses save/train). The weights are
    already dequantized to plain tensors, so the tag is removed."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config._name_or_path = ""


def dequantize_to_cache(spec: BundledModel, gguf: Path, progress=None) -> Path:
    """GGUF → transformers → safetensors under $CLO_HOME/models/<name>, written atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = clo_home() / "models" / spec.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if progress:
        progress(f"Dequantizing {gguf.name} once (tens of seconds); later loads read the cached copy.")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
    _strip_quantization(model)
    if not tokenizer.chat_template and not spec.chat:
        tokenizer.chat_template = PLAIN_CHAT_TEMPLATE
    check_free_space(target.parent, sum(p.numel() for p in model.parameters()) * 4 + 16 * 2**20,
                     f"the cached copy of {spec.name} (nothing was written; later loads would dequantize again)")
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}.", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / "clo_source.json").write_text(  # written last: the sizes let a later load see a copy cut short
            json.dumps({"bundled": spec.name, "gguf": str(gguf), "license": spec.license, "files": files}, indent=2)
        )
        if target.exists() and cached_copy_problem(target) is None:  # another process won the race; keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            if target.exists():
                _move_aside(target, cached_copy_problem(target))
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target

