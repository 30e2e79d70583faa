"""Checking the cached safetensors copy of a bundled model before it is used (docs/reliability.md, "Caches
heal"): every file's size as recorded when it was written, and every safetensors header. A copy cut short by a
full disk, or overwritten, is found here in milliseconds and rebuilt from its GGUF by :mod:`clo.models`.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

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
