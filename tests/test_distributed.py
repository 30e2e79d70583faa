"""Several processes: `accelerate launch` with two CPU processes (DDP over gloo) trains one run correctly.

The runs are real: ``python -m accelerate.commands.launch --config_file configs/accelerate/cpu-2proc.yaml -m clo
train …`` on a tiny model. What each rank trained on is read from the ``CLO_DEBUG_SAMPLES`` diagnostic
(clo/core/testing.py): one JSON line per micro-batch per rank, the reference-cache decision, and a SHA-256 of each
rank's trainable weights at the end. Nothing is mocked.

Also checks that every YAML under configs/accelerate/ is accepted by accelerate's own launcher code (the GPU
ones cannot run here: this machine has no GPU, and DeepSpeed is not installed).
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import SAMPLES, two_language_file, write_xl

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs" / "accelerate"
# samples used (--limit 8 of 12; --max-length 96 keeps all 8 whole): two ranks × 2 samples a step → 2 steps an epoch
N = 8
TIMEOUT = 300  # generous: only a guard against a hang (a rank stuck in a collective), never asserted on
_DIST_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model):
    base = tmp_path_factory.mktemp("dist")
    samples = [(f"{a} ({i})", b, f"{c} ({i})", d) for i, (a, b, c, d) in enumerate(SAMPLES * 3)]
    xl = write_xl(base / "xl.jsonl", samples)
    (base / "home").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCELERATE_") and k not in _DIST_VARS}
    env.update({
        "HOME": str(base / "home"),  # no user accelerate config, no ~/.cache
        "CLO_HOME": str(base / "clo_home"),  # one reference cache shared by this module's runs
        "CLO_RUNS": str(base / "default_runs"),  # must stay absent: every run goes to its --out
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
        "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
        "CLO_NO_PROGRESS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    })
    return {"base": base, "xl": xl, "model": tiny_model, "env": env}


def _cmd(setup, out: Path, *extra: str, config: str = "cpu-2proc.yaml") -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / config),
            "-m", "clo", "train", "--model", str(setup["model"]), "--data", str(setup["xl"]), "--lang", "sw",
            "--limit", str(N), "--max-length", "128", "--device", "cpu", "--out", str(out), *extra]


def _launch(setup, name: str, *extra: str):
    """Run to the end; returns (run dir, debug base)."""
    p, out, dbg = _start(setup, name, *extra)
    _finish(p, out, dbg)
    return out, dbg


def _debug(dbg: Path) -> dict[int, list[dict]]:
    files = sorted(dbg.parent.glob(dbg.name + ".rank*"))
    assert [f.name for f in files] == [f"{dbg.name}.rank0", f"{dbg.name}.rank1"], files
    return {r: [json.loads(line) for line in files[r].read_text().splitlines()] for r in (0, 1)}


def _events(rows: list[dict], event: str) -> list[dict]:
    return [r for r in rows if r["event"] == event]


def _saved_checksum(run: Path, names: list[str]) -> str:
    from safetensors.torch import load_file

    weights = load_file(str(run / "model" / "model.safetensors"))
    h = hashlib.sha256()
    for name in names:
        h.update(name.encode())
        h.update(weights[name].float().numpy().tobytes())
    return h.hexdigest()


def _check_one_complete_run(setup, run: Path, state: str, steps: int, dbg: dict) -> None:
    """One run directory, written once, by rank 0 only; both ranks end on the same weights, the saved ones."""
    from clo.models.load import load_model
    from clo.runs.rundir import RunDir

    assert sorted(p.name for p in run.parent.iterdir()) == ["run"]  # no stray run directories
    assert not (setup["base"] / "default_runs").exists()
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith(".") and p.name != "STOP") == \
        ["config.yaml", "metrics.jsonl", "model", "status.json"]
    assert not list(run.glob(".model.*"))  # no half-written model left behind
    rd = RunDir(run)
    st = rd.status()
    assert st["state"] == state and st["step"] == steps, st
    assert st["pid"] == dbg[0][0]["pid"]  # the status was written by rank 0
    assert rd.config()["limit"] == N and rd.config()["method"] in ("clo", "sft")
    rows = rd.metrics()
    assert [r["step"] for r in rows] == list(range(1, steps + 1)), rows  # one line per step: no rank-1 duplicates
    ends = {r: _events(dbg[r], "end") for r in (0, 1)}
    assert len(ends[0]) == len(ends[1]) == 1, ends
    e0, e1 = ends[0][0], ends[1][0]
    assert e0["steps"] == e1["steps"] == steps and e0["stopped"] == e1["stopped"] == (state == "stopped")
    assert e0["params"] == e1["params"] and e0["params"]
    # gradients are all-reduced: both ranks hold identical trainable weights although they saw different data
    assert e0["checksum"] == e1["checksum"]
    assert _saved_checksum(run, e0["params"]) == e0["checksum"]
    load_model(str(run))


def _check_clo_batches(dbg: dict, steps: int = 2) -> dict[int, set[int]]:
    """Every micro-batch holds both directions of each of its samples; returns the samples each rank saw in
    its first ``steps`` steps (one epoch)."""
    seen: dict[int, set[int]] = {}
    for r in (0, 1):
        seen[r] = set()
        for b in _events(dbg[r], "batch"):
            pairs = sorted(zip(b["samples"], b["is_target"]))
            for s in set(b["samples"]):
                assert [p for p in pairs if p[0] == s] == [(s, 0), (s, 1)], b  # en and target direction, together
            if b["step"] < steps:
                seen[r] |= set(b["samples"])
    return seen


@pytest.fixture(scope="module")
def clo_run(setup):
    run, dbg = _launch(setup, "clo", "--batch-size", "2", "--epochs", "1")
    return run, _debug(dbg)


def test_two_processes_train_one_clo_run_on_disjoint_data(setup, clo_run):
    run, dbg = clo_run
    _check_one_complete_run(setup, run, "finished", 2, dbg)
    seen = _check_clo_batches(dbg)
    assert seen[0] and seen[1] and not seen[0] & seen[1], seen  # disjoint…
    assert seen[0] | seen[1] == set(range(N))  # …and together the whole (limited) data set, once
    assert all(len(_events(dbg[r], "batch")) == 2 for r in (0, 1))
    assert [e["hit"] for r in (0, 1) for e in _events(dbg[r], "ref_cache")] == [False, False]
    from clo.runs.rundir import RunDir

    rows = RunDir(run).metrics()
    assert rows[-1]["epoch"] == pytest.approx(1.0)  # 2 steps × 2 ranks × 2 samples = 8 samples
    # step 1 runs the untouched model: its log-probs equal the reference ones, which the ranks computed on
    # their shares and gathered; rewards 0 means each reference value landed on its own row
    assert rows[0]["rewards_chosen"] == pytest.approx(0, abs=1e-4)
    assert rows[0]["rewards_rejected"] == pytest.approx(0, abs=1e-4)


def test_two_processes_sft(setup):
    run, dbg = _launch(setup, "sft", "--method", "sft", "--batch-size", "1", "--epochs", "1")
    dbg = _debug(dbg)
    _check_one_complete_run(setup, run, "finished", 4, dbg)  # 16 rows (en + sw), 2 a rank a step
    rows = {r: [h for b in _events(dbg[r], "batch") for h in b["rows"]] for r in (0, 1)}
    assert len(rows[0]) == len(rows[1]) == N  # half of the 2·N rows each
    assert not set(rows[0]) & set(rows[1]) and len(set(rows[0]) | set(rows[1])) == 2 * N


def _start(setup, name: str, *extra: str, cmd: list[str] | None = None, env: dict | None = None):
    out, dbg = setup["base"] / name / "run", setup["base"] / f"{name}.dbg"
    out.parent.mkdir(exist_ok=True)
    log = open(_log(out), "w")  # a file, not a pipe: nobody reads while it trains
    # its own session: on failure the launcher and both ranks are ended together, and only them
    p = subprocess.Popen(cmd or _cmd(setup, out, *extra), cwd=ROOT,
                         env={**setup["env"], "CLO_DEBUG_SAMPLES": str(dbg), **(env or {})},
                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    return p, out, dbg


def _log(run: Path) -> Path:
    return run.parent.with_name(run.parent.name + ".log")  # beside the run's parent, which must hold only the run


def _output(run: Path) -> str:
    return _log(run).read_text(errors="replace")[-4000:]


def _wait_for_step(p, run: Path, dbg: Path) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not (run / "metrics.jsonl").exists() or not (run / "metrics.jsonl").read_text().strip():
        if p.poll() is not None or time.monotonic() > deadline:
            _end(p, dbg)
            pytest.fail(f"no training step logged (rc {p.returncode}):\n{_output(run)}")
        time.sleep(0.05)


def _finish(p, run: Path, dbg: Path, code: int = 0) -> None:
    try:
        p.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        _end(p, dbg)
        pytest.fail(f"the ranks did not end (one waits in a collective?):\n{_output(run)}")
    assert p.returncode == code, _output(run)
    if code == 0:
        assert "Traceback" not in _output(run), _output(run)


def _end(p, dbg: Path) -> None:
    """End the launcher and both ranks this test started (torchrun starts each rank in a session of its own, so
    the ranks are found by the pids they wrote to the debug files)."""
    pids = {p.pid}
    for f in dbg.parent.glob(dbg.name + ".rank*"):
        lines = f.read_text().splitlines()
        if lines:
            pids.add(json.loads(lines[0])["pid"])
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL) if pid == p.pid else os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    p.wait()


MANY_EPOCHS = ("--batch-size", "2", "--epochs", "1000")  # 2,000 steps: only a stop request ends it early


def _check_stopped(setup, run: Path, dbg_base: Path) -> dict:
    dbg = _debug(dbg_base)
    steps = _events(dbg[0], "end")[0]["steps"]
    assert 1 <= steps < 2000
    _check_one_complete_run(setup, run, "stopped", steps, dbg)
    seen = _check_clo_batches(dbg)
    assert not seen[0] & seen[1]
    if steps >= 2:  # a whole first epoch
        assert seen[0] | seen[1] == set(range(N))
    return dbg


def test_stop_file_stops_both_ranks_cleanly(setup, clo_run):
    """STOP is read by rank 0 only and its decision is shared: both ranks leave after the same step, the model
    of that step is saved. Runs after clo_run with the same data: both ranks agree on a reference-cache hit."""
    p, run, dbg = _start(setup, "stopfile", *MANY_EPOCHS)
    _wait_for_step(p, run, dbg)
    (run / "STOP").write_text("test")
    _finish(p, run, dbg)
    dbg = _check_stopped(setup, run, dbg)
    assert [e["hit"] for r in (0, 1) for e in _events(dbg[r], "ref_cache")] == [True, True]


def test_ctrl_c_on_one_rank_stops_both(setup):
    """A stop that only rank 1 sees (its own SIGINT, as the CLI's first Ctrl-C) must still end both ranks at the
    same step; a rank that left alone would leave the other waiting in the next all-reduce."""
    p, run, dbg = _start(setup, "sigint", *MANY_EPOCHS)
    _wait_for_step(p, run, dbg)
    rank1 = json.loads(Path(f"{dbg}.rank1").read_text().splitlines()[0])["pid"]
    os.kill(rank1, signal.SIGINT)
    _finish(p, run, dbg)
    _check_stopped(setup, run, dbg)


# -- configs ---------------------------------------------------------------------------------------


def _launch_args(name: str):
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args = launch_command_parser().parse_args(["--config_file", str(CONFIGS / name), "-m", "clo", "train"])
    return _validate_launch_command(args)


def test_accelerate_configs_are_accepted_by_accelerate(monkeypatch, tmp_path):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DeepSpeedPlugin, patch_environment
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    monkeypatch.setenv("HOME", str(tmp_path))
    names = sorted(p.name for p in CONFIGS.glob("*.yaml"))
    assert names == ["cpu-2proc.yaml", "deepspeed-zero2.yaml", "deepspeed-zero3.yaml", "fsdp-cpu-2proc.yaml",
                     "fsdp.yaml"]
    for name in names:
        cfg = load_config_from_file(str(CONFIGS / name))  # unknown keys raise here
        on_cpu = "cpu" in name
        assert cfg.num_processes == (2 if on_cpu else 8)
        assert cfg.mixed_precision == ("no" if on_cpu else "bf16")

    args, _, _ = _launch_args("cpu-2proc.yaml")
    assert args.multi_gpu and args.num_processes == 2  # torchrun: two processes (`--cpu` would start one)
    args, _, _ = _launch_args("fsdp-cpu-2proc.yaml")
    assert args.use_fsdp and args.num_processes == 2
    env = prepare_multi_gpu_env(args)
    assert env["FSDP_VERSION"] == "2" and env["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"
    assert env["FSDP_SYNC_MODULE_STATES"] == "false"  # accelerate implements it with a GPU only

    for name, stage in (("deepspeed-zero2.yaml", 2), ("deepspeed-zero3.yaml", 3)):
        args, defaults, mp_from_config = _launch_args(name)
        assert args.use_deepspeed
        args.deepspeed_fields_from_accelerate_config = ",".join(
            list(defaults.deepspeed_config) + (["mixed_precision"] if mp_from_config else []))
        _, env = prepare_deepspeed_cmd_env(args)
        with patch_environment(**{k: v for k, v in env.items() if k.startswith("ACCELERATE_")}):
            ds = DeepSpeedPlugin().deepspeed_config  # what the trainer gets (DeepSpeed itself is not needed)
        assert ds["zero_optimization"]["stage"] == stage
        assert ds["gradient_accumulation_steps"] == "auto"  # from clo's --grad-accum, never a second value
        assert ds["train_micro_batch_size_per_gpu"] == "auto"
        assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] == (stage == 3)

    args, _, _ = _launch_args("fsdp.yaml")
    assert args.use_fsdp
    env = prepare_multi_gpu_env(args)  # the FSDP plugin itself needs a GPU to be built
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_SHARDING_STRATEGY"] == "FULL_SHARD"
    assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP" and env["FSDP_USE_ORIG_PARAMS"] == "true"
    assert env["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"
    assert "FSDP_TRANSFORMER_CLS_TO_WRAP" not in env  # taken from the model's _no_split_modules instead


def test_fsdp_wraps_the_decoder_layer_of_each_paper_family():
    """fsdp.yaml names no layer class: accelerate then wraps the model's _no_split_modules."""
    from transformers import LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM

    assert LlamaForCausalLM._no_split_modules == ["LlamaDecoderLayer"]
    assert MistralForCausalLM._no_split_modules == ["MistralDecoderLayer"]
    assert Qwen2ForCausalLM._no_split_modules == ["Qwen2DecoderLayer"]


# -- sharded training (FSDP2) ------------------------------------------------------------------------


FSDP = {"CLO_TEST_FSDP_ON_CPU": "1"}  # clo.core.testing.fsdp_on_cpu: accelerate enables FSDP only on accelerators
FSDP_RUN = ("--batch-size", "2", "--max-steps", "6", "--save-steps", "3", "--lr", "1e-3")


def _fsdp_cmd(setup, out: Path, *extra: str) -> list[str]:
    return _cmd(setup, out, *FSDP_RUN, *extra, config="fsdp-cpu-2proc.yaml")


def _tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_fsdp_saves_a_whole_model_and_resumes_after_a_kill(setup, clo_run):
    """FSDP2 over gloo on two CPU processes (every parameter sharded in halves, DTensor): the saved model/ is
    whole — every tensor of the unsharded model at full shape, equal to what both ranks end with — and loadable;
    a run killed mid-step resumes (under the same launch) from its sharded checkpoint to the uninterrupted
    run's weights. ``clo_run`` (DDP) is the unsharded save beside it."""
    import torch

    from clo.models.load import load_model
    from clo.runs.rundir import RunDir

    # 1. uninterrupted
    p, run, dbg_base = _start(setup, "fsdp", cmd=_fsdp_cmd(setup, setup["base"] / "fsdp" / "run"), env=FSDP)
    _finish(p, run, dbg_base)
    dbg = _debug(dbg_base)
    e0, e1 = _events(dbg[0], "end")[0], _events(dbg[1], "end")[0]
    assert e0["steps"] == e1["steps"] == 6 and e0["checksum"] == e1["checksum"]
    assert _saved_checksum(run, e0["params"]) == e0["checksum"]  # the gathered save is what the ranks trained
    st = RunDir(run).status()
    assert (st["state"], st["step"]) == ("finished", 6) and not (run / "checkpoint").exists()
    assert [r["step"] for r in RunDir(run).metrics()] == [1, 2, 3, 4, 5, 6]
    saved, base = _tensors(run / "model" / "model.safetensors"), _tensors(setup["model"] / "model.safetensors")
    assert {k: tuple(v.shape) for k, v in saved.items()} == {k: tuple(v.shape) for k, v in base.items()}
    ddp_model = clo_run[0] / "model" / "model.safetensors"  # the same model saved unsharded (DDP)
    assert abs((run / "model" / "model.safetensors").stat().st_size - ddp_model.stat().st_size) < 256  # header only
    for k in base:
        if not any(k.endswith(f"{x}.weight") for x in ("q_proj", "k_proj", "v_proj", "o_proj")):
            assert torch.equal(saved[k], base[k]), k  # attention scope: the frozen rest is saved untouched
    load_model(str(run), device="cpu")

    # 2. killed in step 5 (both ranks: CLO_FAULT kills each process at its own fault point), checkpoint of step 3
    p, killed, kdbg = _start(setup, "fsdpkill", cmd=_fsdp_cmd(setup, setup["base"] / "fsdpkill" / "run"),
                             env={**FSDP, "CLO_FAULT": "step:5"})
    _finish(p, killed, kdbg, code=1)  # the launcher reports its killed ranks
    rd = RunDir(killed)
    assert rd.checkpoint_step() == 3 and rd.status()["saved_step"] == 3
    ckpt = {f.name for f in (killed / "checkpoint").iterdir()}
    assert {"pytorch_model_fsdp.bin", "optimizer.bin", "rng_state_0.pth", "rng_state_1.pth", "scheduler.pt"} <= ckpt
    lost = {r["step"]: r for r in rd.metrics()}
    assert sorted(lost) == [1, 2, 3, 4]

    # 3. resumed under the same launch: the sharded checkpoint needs a sharded run to load it
    resume = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / "fsdp-cpu-2proc.yaml"),
              "-m", "clo", "runs", "resume", str(killed)]
    p, _, rdbg = _start(setup, "fsdpkill", cmd=resume, env={**FSDP, "CLO_DEBUG_SAMPLES": str(kdbg) + ".resume"})
    _finish(p, killed, rdbg)
    st = rd.status()
    assert (st["state"], st["step"], st["resumed_from_step"]) == ("finished", 6, 3), st
    assert st["attempts"][0]["state"] == "interrupted"
    rows = rd.metrics()
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    for key in ("loss", "margin", "lr", "grad_norm"):  # step 4 again from the checkpoint: as the lost attempt
        assert rows[3][key] == pytest.approx(lost[4][key], rel=1e-5, abs=1e-7), key
    resumed, whole = _tensors(killed / "model" / "model.safetensors"), saved
    for k in whole:  # the resumed run ends where the uninterrupted one did
        torch.testing.assert_close(resumed[k], whole[k], rtol=1e-5, atol=1e-6)
    load_model(str(killed), device="cpu")


def test_two_processes_several_target_languages(setup):
    """`--lang sw,yo` on two ranks: every (sample, language) once per epoch, on one rank only, both directions
    of it in one micro-batch, every micro-batch one unit of each language (stratified: 8 and 8 units); both
    per-language margins logged at every step. With shared prompts
    (each pair one masked sequence) under DDP: step 1's log-probs equal the reference pass's."""
    from clo.runs.rundir import RunDir

    data = two_language_file(setup["base"] / "sw-yo.jsonl", copies=3)  # 12 samples in each language
    run, dbg = _launch(setup, "multi", "--data", str(data), "--lang", "sw,yo", "--batch-size", "2", "--epochs", "1",
                         "--share-prompts")
    dbg = _debug(dbg)
    _check_one_complete_run(setup, run, "finished", 4, dbg)  # --limit 8 of each: 16 units, 2 ranks × 2 a step
    seen = _check_clo_batches(dbg, steps=4)
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(2 * N))  # each unit once, on one rank
    units = {}
    for r in (0, 1):
        for b in _events(dbg[r], "batch"):
            for s, lang in zip(b["samples"], b["lang_id"]):
                units.setdefault(s, set()).add(lang)
    assert all(len(v) == 1 for v in units.values())  # both rows of a unit carry its one language
    assert sorted(next(iter(v)) for v in units.values()) == [0] * N + [1] * N  # units 0..7 sw, 8..15 yo
    for r in (0, 1):
        for b in _events(dbg[r], "batch"):
            langs = {s: lang for s, lang in zip(b["samples"], b["lang_id"])}
            assert sorted(langs.values()) == [0, 1], b  # one Swahili and one Yoruba unit in each micro-batch
    rows = RunDir(run).metrics()
    assert all("margin_sw" in r and "margin_yo" in r for r in rows), rows
    assert RunDir(run).config()["lang"] == "sw,yo" and RunDir(run).config()["share_prompts"] is True
    assert rows[0]["rewards_chosen"] == pytest.approx(0, abs=1e-4)
    assert rows[0]["rewards_rejected"] == pytest.approx(0, abs=1e-4)
