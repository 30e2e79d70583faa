"""Shared fixtures: an isolated CLO_HOME, tiny random models built offline, a small cross-lingual file."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from helpers import ROOT, write_xl

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("CLO_NO_PROGRESS", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture(scope="session", autouse=True)
def clo_home(tmp_path_factory):
    """Every test session gets its own cache folder: nothing leaks into ~/.cache."""
    home = tmp_path_factory.mktemp("clo_home")
    os.environ["CLO_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from clo.core.testing import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> Path:
    from clo.core.testing import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-gpt2", arch="gpt2")


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of Debian's Chromium for Playwright (``scripts/ensure_chromium.sh`` installs it where it can); the
    test is skipped with the reason where it cannot be had."""
    pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    try:
        r = subprocess.run(["sh", str(ROOT / "scripts" / "ensure_chromium.sh")], capture_output=True, text=True,
                           timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"could not run scripts/ensure_chromium.sh: {e}")
    if r.returncode != 0:
        pytest.skip(f"Chromium is not available: {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout.strip().splitlines()[-1]


@pytest.fixture()
def xl_file(tmp_path) -> Path:
    return write_xl(tmp_path / "xl.jsonl")


@pytest.fixture()
def app(monkeypatch, tmp_path, tiny_model):
    """A fresh AppTest session of the app on a tiny model, with empty runs (tmp_path/"runs") and data folders;
    its job manager is closed afterwards."""
    from streamlit.testing.v1 import AppTest

    runs = tmp_path / "runs"
    monkeypatch.setenv("CLO_RUNS", str(runs))
    monkeypatch.setenv("CLO_DATA", str(tmp_path / "datasets"))
    monkeypatch.setenv("CLO_MODEL", str(tiny_model))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    yield at
    from app_pages._shared import _job_manager

    if runs.exists():
        _job_manager(str(runs.resolve())).close()
    _job_manager.clear()
