"""The reference model's log-probs, cached on disk (docs/design.md, "Reference cache"): a run's cache is keyed
by everything that changes them (:func:`ref_cache_key`: weights, length, columns, dtype, device, head), checked
by a SHA-256 of its tensors, and reused by a resumed run or a run on the same data and model.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch
import trl
from safetensors import safe_open

log = logging.getLogger(__name__)

__all__ = ["ref_cache_key", "read_ref_cache"]


def ref_cache_key(*, weights: str, max_length: int, columns: list, dtype: str, device: str, head: str,
                  config: str) -> str:
    """The reference cache's file name (see :meth:`CLOTrainer._ref_cache_key`)."""
    h = hashlib.sha256()
    for part in (weights, str(max_length), dtype, device, head, trl.__version__,
                 hashlib.sha256(config.encode()).hexdigest()):
        h.update(part.encode() + b"\0")
    for col in columns:
        h.update(json.dumps(col).encode())
    return h.hexdigest()[:32]


def tensors_sha256(tensors: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode() + b"\0" + tensors[name].float().cpu().numpy().tobytes())
    return h.hexdigest()


def read_ref_cache(path: Path, rows: int) -> tuple[dict | None, str | None]:
    """The cached reference log-probs at ``path`` and None, or None and what is wrong with them: a file that
    does not read as safetensors (cut short, overwritten), one without the checksum this version writes, values
    that do not match their checksum, the wrong shape or length, or values that are not finite."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            t = {k: f.get_tensor(k) for k in ("ref_chosen_logps", "ref_rejected_logps")}
    except Exception as e:  # SafetensorError, a missing tensor, an unreadable file
        return None, f"{type(e).__name__}: {e}"
    if "sha256" not in meta:
        return None, "it has no checksum (written by an earlier version)"
    if t["ref_chosen_logps"].shape != (rows,) or t["ref_rejected_logps"].shape != (rows,):
        return None, f"it holds {tuple(t['ref_chosen_logps'].shape)} values for {rows} rows"
    if tensors_sha256(t) != meta["sha256"]:
        return None, "its values do not match their checksum"
    if not all(bool(torch.isfinite(v).all()) for v in t.values()):
        return None, "it holds values that are not finite"
    return t, None

