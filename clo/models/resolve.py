"""From a model name to a folder on this disk, with the safety checks (docs/design.md, "Models").

A name resolves, in this order, to: a bundled model (its safetensors copy under ``$CLO_HOME/models``, made
from its GGUF on first use), a run directory holding ``model/``, a local folder with ``config.json``, or a
Hugging Face id already in the local cache (``local_files_only=True``). Nothing here touches the network.
Only safetensors weights are accepted (:func:`refuse_pickle_only`), and a folder whose code would run
(``trust_remote_code``) is refused unless the caller asks for it (:func:`check_model_folder`).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from clo.core.paths import clo_home
from clo.models.cache import _move_aside, cached_copy_problem, dequantize_to_cache
from clo.models.registry import BUNDLED, ModelNotFoundError, UnsafeModelError, canonical_name

log = logging.getLogger(__name__)

__all__ = ["check_model_folder", "resolve_model"]


def resolve_model(name: str, *, trust_remote_code: bool | None = None) -> tuple[str, Path | str]:
    """Decide where ``name`` loads from, without loading it (and without running anything from it).

    Returns ``(kind, location)`` with kind one of ``bundled``, ``run``, ``adapter``, ``folder``, ``hub-cache``.
    Raises :class:`ModelNotFoundError` naming every place that was looked at, and :class:`UnsafeModelError` for a
    local folder with pickle weights only — or, when ``trust_remote_code`` is given as False, one that needs its
    own Python code (see :func:`check_model_folder`).
    """
    kind, where = _resolve(name)
    if kind in ("folder", "adapter") or (kind == "hub-cache" and trust_remote_code is not None):
        folder = Path(where) if kind != "hub-cache" else _hub_snapshot(str(where))
        if folder is not None:
            check_model_folder(folder, name, trust_remote_code=bool(trust_remote_code) if trust_remote_code is not None
                               else True)
    return kind, where


def _hub_snapshot(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not in the cache: transformers reports it when loading
        return None


def _remote_code_files(folder: Path) -> tuple[list[str], str]:
    """Python files a model folder maps its classes to (``auto_map``) although transformers has its own
    implementation of neither the model type nor the tokenizer class; and why."""
    files: list[str] = []
    reasons = []
    for cfg_name, kind_key in (("config.json", "model_type"), ("tokenizer_config.json", "tokenizer_class")):
        try:
            cfg = json.loads((folder / cfg_name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        auto = cfg.get("auto_map") if isinstance(cfg, dict) else None
        if not auto or not isinstance(auto, dict):
            continue
        value = cfg.get(kind_key)
        if _builtin(kind_key, value):
            continue  # transformers loads its own class and never imports the folder's code
        for ref in auto.values():
            for r in ref if isinstance(ref, (list, tuple)) else [ref]:
                if isinstance(r, str) and "." in r:
                    module = r.split("--")[-1].rsplit(".", 1)[0]
                    files.append(f"{module.replace('.', '/')}.py")
        reasons.append(f"{cfg_name} maps its classes to that code (auto_map) and transformers has no built-in "
                       f"{kind_key} {value!r}")
    return sorted(set(files)), "; ".join(reasons)


def _builtin(kind_key: str, value) -> bool:
    if not isinstance(value, str) or not value:
        return False
    try:
        if kind_key == "model_type":
            from transformers.models.auto.configuration_auto import CONFIG_MAPPING

            return value in CONFIG_MAPPING
        import transformers

        return getattr(transformers, value, None) is not None
    except ImportError:  # the class exists but needs an optional package: still transformers' own code
        return True
    except Exception:
        return False


def check_model_folder(folder: str | Path, name: str | None = None, *, trust_remote_code: bool = False) -> None:
    """Refuse, before anything is loaded, a model folder that is unsafe to open:

    - pickle weights only (``pytorch_model.bin``, ``*.pt``): unpickling can run arbitrary code;
    - code of its own: ``config.json`` (or ``tokenizer_config.json``) has an ``auto_map`` pointing at Python files
      in the folder and transformers has no built-in class for it — unless ``trust_remote_code`` is set.

    Nothing in the folder is imported or unpickled here; only JSON is read.
    """
    folder = Path(folder)
    refuse_pickle_only(folder)
    if trust_remote_code:
        return
    files, why = _remote_code_files(folder)
    if files:
        raise UnsafeModelError(
            f"{name or folder} needs its own Python code to load ({', '.join(files)}): {why}. That code would run on "
            "this machine with your permissions, so CLO Studio refuses it. Read the code first; if you trust it, pass "
            "--trust-remote-code (config: trust_remote_code: true). The app never runs such code."
        )


def _resolve(name: str) -> tuple[str, Path | str]:
    if not name or not str(name).strip():
        raise ModelNotFoundError("No model given. Use 'default' for the bundled SmolLM2-135M-Instruct.")
    name = str(name).strip()
    looked: list[str] = []
    canon = canonical_name(name)
    if canon in BUNDLED:
        spec = BUNDLED[canon]
        cached = clo_home() / "models" / spec.name
        aside = None
        if cached.exists():
            problem = cached_copy_problem(cached)
            if problem is None:
                return "bundled", cached
            aside = _move_aside(cached, problem)
        gguf = spec.gguf_path()
        if gguf is not None:
            return "bundled", gguf  # load_model dequantizes it again into a fresh cached copy
        was = f" (the cached copy there was damaged and was moved to {aside})" if aside else ""
        raise ModelNotFoundError(
            f"Bundled model {spec.name!r} is not installed: no cached copy at {cached}{was} and no GGUF in the "
            f"Python package {spec.package!r}. Install it with: {spec.install}."
        )
    path = Path(name).expanduser()
    if path.exists():
        if (path / "model" / "config.json").exists() or (path / "model" / "adapter_config.json").exists():
            path = path / "model"
        if (path / "adapter_config.json").exists():
            return "adapter", path
        if (path / "config.json").exists():
            return "folder", path
        raise ModelNotFoundError(
            f"{path.resolve()} exists but holds no model: expected config.json (a transformers model), "
            "adapter_config.json (a LoRA adapter) or model/ (a CLO run directory)."
        )
    looked.append(f"local path {path.resolve()} (does not exist)")
    if "/" in name and not name.startswith((".", "/", "~")):
        from huggingface_hub import constants
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            from huggingface_hub import snapshot_download

            local = snapshot_download(name, local_files_only=True)
            if (Path(local) / "config.json").exists():
                return "hub-cache", name
            looked.append(f"Hugging Face cache {constants.HF_HUB_CACHE} (snapshot without config.json)")
        except (LocalEntryNotFoundError, OSError, ValueError):
            looked.append(f"Hugging Face cache {constants.HF_HUB_CACHE} (not downloaded)")
    known = ", ".join(["default"] + list(BUNDLED))
    raise ModelNotFoundError(
        f"Model {name!r} is not available offline. Looked in: " + "; ".join(looked) + ". "
        f"Bundled models: {known}. Nothing is downloaded at run time: put the model in a local folder or "
        "the Hugging Face cache first (for example with `huggingface-cli download` on a connected machine)."
    )


def refuse_pickle_only(folder: Path) -> None:
    if folder.is_dir() and not any(folder.glob("*.safetensors")):
        pickles = sorted(p.name for pat in ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl") for p in folder.glob(pat))
        if pickles:
            raise UnsafeModelError(
                f"{folder} has only pickle weights ({', '.join(pickles[:3])}). CLO Studio reads safetensors only, "
                "because unpickling can run arbitrary code. Convert it once on a trusted machine: "
                "load it with transformers and call save_pretrained(..., safe_serialization=True)."
            )


def adapter_base(adapter_dir: Path) -> tuple[str, str | Path]:
    """A LoRA run saves its adapter and records the base model's name in clo_base.json."""
    meta = adapter_dir / "clo_base.json"
    if meta.exists():
        base = json.loads(meta.read_text())["base_model"]
    else:
        base = json.loads((adapter_dir / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise ModelNotFoundError(f"LoRA adapter at {adapter_dir} does not say which base model it belongs to.")
    kind, where = resolve_model(base)
    if kind == "bundled" and Path(where).suffix == ".gguf":
        where = dequantize_to_cache(BUNDLED[canonical_name(base)], Path(where))
    # the tokenizer is saved beside the adapter
    return base, adapter_dir if (adapter_dir / "tokenizer_config.json").exists() else where

