"""Where CLO Studio keeps its state: :func:`clo_home` (``$CLO_HOME``, else ``~/.cache/clo-studio``) holds the
models' safetensors copies, stored data sets, the translation cache and the Arena's database.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["clo_home", "REPO_ROOT", "ASSETS", "PRESETS_DIR"]


def clo_home() -> Path:
    """Root of CLO Studio's caches: ``$CLO_HOME`` or ``~/.cache/clo-studio``."""
    return Path(os.environ.get("CLO_HOME") or Path.home() / ".cache" / "clo-studio").expanduser()



# The checkout the package runs from (``pip install -e .`` keeps it there): the bundled data, the presets and
# the Streamlit apps live beside the package, not inside it.
REPO_ROOT = Path(__file__).resolve().parents[2]
ASSETS = REPO_ROOT / "assets"
PRESETS_DIR = REPO_ROOT / "presets"
