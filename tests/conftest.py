"""Shared fixtures: an isolated CLO_HOME, tiny random models built offline, a small cross-lingual file."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("CLO_NO_PROGRESS", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

ROOT = Path(__file__).resolve().parent.parent

SAMPLES = [
    ("What is the capital of Kenya?", "The capital of Kenya is Nairobi.",
     "Mji mkuu wa Kenya ni upi?", "Mji mkuu wa Kenya ni Nairobi."),
    ("How do I cook rice?", "Rinse it, add water, and simmer until soft.",
     "Ninapikaje wali?", "Osha mchele, ongeza maji, na uupike hadi ulainike."),
    ("Why should I wash my hands?", "Wash your hands with soap before you eat.",
     "Kwa nini ninawe mikono?", "Osha mikono yako kwa sabuni kabla ya kula."),
    ("Why is the sky blue?", "The sky looks blue because air scatters blue light.",
     "Kwa nini anga ni la buluu?", "Anga linaonekana la buluu kwa sababu hewa hutawanya mwanga wa buluu."),
]


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


def write_xl(path: Path, samples=SAMPLES, lang="sw") -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i, (ie, re_, it, rt) in enumerate(samples):
            f.write(json.dumps({"id": f"s{i}", "lang": lang, "instruction_en": ie, "response_en": re_,
                                "instruction": it, "response": rt, "translator": "reference"}, ensure_ascii=False) + "\n")
    return path


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
