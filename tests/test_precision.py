"""Compute precision (clo/core/precision.py): what ``auto`` picks, and a bf16 run end to end on a tiny model."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from clo.core import precision as P
from clo.core.spec import SpecError, TrainSpec
from clo.training.run import run_training


@pytest.mark.parametrize("native", [True, False])
def test_auto_is_bf16_only_where_the_hardware_has_it(monkeypatch, native):
    monkeypatch.setattr(P, "native_bf16", lambda kind: native)
    assert P.resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")
    assert P.resolve_precision("auto", "cuda:1") == ("bf16" if native else "fp32")
    assert P.resolve_precision("auto", "cpu", processes=2) == "fp32"  # gloo processes stay fp32
    assert P.resolve_precision("fp32", "cuda:0") == "fp32"  # asked for: always what was asked
    assert P.resolve_precision("bf16", "cpu", processes=2) == "bf16"
    with pytest.raises(ValueError, match="fp16"):
        P.resolve_precision("fp16", "cpu")


def test_native_bf16_reads_the_cpu_capabilities(monkeypatch):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": True, "avx512_bf16": True})
    assert P.native_bf16("cpu")
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": False, "avx512_bf16": True})
    assert not P.native_bf16("cpu")  # bf16 dot products alone are not the AMX tiles that make bf16 pay
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: 1 / 0)
    assert not P.native_bf16("cpu")  # an unreadable CPU claims nothing


def test_the_context_autocasts_only_for_bf16():
    x, w = torch.randn(4, 8), torch.randn(8, 8)
    with P.precision_context("bf16", "cpu"):
        assert (x @ w).dtype == torch.bfloat16
    with P.precision_context("fp32", "cpu"):
        assert (x @ w).dtype == torch.float32


def test_the_spec_refuses_an_unknown_precision_by_name():
    assert TrainSpec().precision == "auto"
    with pytest.raises(SpecError, match="precision.*auto, fp32, bf16"):
        TrainSpec(precision="half")


def test_a_bf16_run_trains_in_bf16_and_keeps_its_own_reference_cache(tiny_model, xl_file, tmp_path, monkeypatch):
    """bf16 forced (the test must not depend on the CI machine's AMX): the run says it computed in bf16, its
    reference log-probs are bf16's (close to fp32's, not equal), and an fp32 run never reads them."""
    home = tmp_path / "home"
    monkeypatch.setenv("CLO_HOME", str(home))
    common = dict(method="clo", model=str(tiny_model), data=str(xl_file), max_steps=2, batch_size=2, lr=1e-3)
    monkeypatch.setattr(P, "native_bf16", lambda kind: False)  # as on the 2-core AVX2 EPYC: bf16 emulated
    events: list = []
    bf16 = run_training(TrainSpec(**common, precision="bf16"), tmp_path / "bf16", events=events.append)
    said = [e["message"] for e in events if e.get("phase") == "loading" and "computing in" in e.get("message", "")]
    assert len(said) == 1 and "computing in bf16" in said[0] and "no native bf16" in said[0]  # the user is warned
    monkeypatch.undo()
    monkeypatch.setenv("CLO_HOME", str(home))
    from clo.runs.rundir import RunDir

    run = RunDir(tmp_path / "bf16")
    assert bf16.state == "finished" and run.status()["precision"] == "bf16"
    assert bf16.ref_cache_hit is False
    rows = run.metrics()
    assert all(r["loss"] == r["loss"] and abs(r["loss"]) < 1e4 for r in rows)  # finite
    (cache_bf16,) = (home / "refcache").glob("*.safetensors")
    fp32 = run_training(TrainSpec(**common, precision="fp32"), tmp_path / "fp32")
    assert fp32.ref_cache_hit is False and RunDir(tmp_path / "fp32").status()["precision"] == "fp32"
    (cache_fp32,) = set((home / "refcache").glob("*.safetensors")) - {cache_bf16}
    a, b = load_file(cache_bf16), load_file(cache_fp32)
    for key in ("ref_chosen_logps", "ref_rejected_logps"):
        diff = (a[key] - b[key]).abs()
        assert diff.max() > 0, key  # really computed in bf16
        assert diff.max() < 0.05 * b[key].abs().max(), key  # and still the same log-probs to bf16's precision
    again = run_training(TrainSpec(**common, precision="bf16"), tmp_path / "again")
    assert again.ref_cache_hit is True
    from clo.runs.catalog import run_table

    assert {r["run"]: r["precision"] for r in run_table(tmp_path)} == {"bf16": "bf16", "fp32": "fp32", "again": "bf16"}
    # the time estimate beside Launch comes from a run of the same precision: bf16 steps are not fp32's
    from clo.runs.estimate import estimate_run

    assert estimate_run(TrainSpec(**common, precision="fp32"), 8, tmp_path).basis == "fp32"
    assert estimate_run(TrainSpec(**common, precision="bf16"), 8, tmp_path).basis in ("bf16", "again")


def test_a_run_saved_before_the_setting_resumes_in_fp32(tmp_path):
    """config.yaml of a run from before ``precision`` existed: it computed in fp32 on this CPU, and its resume must
    not switch to bf16 halfway (its reference cache, checkpoint and steps are fp32's)."""
    from clo.runs.rundir import RunDir
    from clo.training.run import saved_spec

    config = TrainSpec(method="clo", max_steps=3).to_dict()
    config.pop("precision")
    run = RunDir.create(tmp_path / "old", config)
    assert saved_spec(run).precision == ("auto" if torch.cuda.is_available() else "fp32")
    new = RunDir.create(tmp_path / "new", TrainSpec(method="clo", precision="bf16").to_dict())
    assert saved_spec(new).precision == "bf16"


def test_forcing_bf16_where_it_is_emulated_is_said_plainly(monkeypatch):
    monkeypatch.setattr(P, "native_bf16", lambda kind: False)
    assert P.describe_precision("fp32", "cpu") == "computing in fp32"
    line = P.describe_precision("bf16", "cpu")
    assert line.startswith("computing in bf16") and "no native bf16" in line and "--precision auto or fp32" in line
    monkeypatch.setattr(P, "native_bf16", lambda kind: True)
    assert "warning" not in P.describe_precision("bf16", "cuda:0")
