"""Security: folders the app may use are not escaped, model folders never run code, uploads and configs are only
parsed, the app binds to 127.0.0.1, and no secret from the environment reaches a run directory or a job log.

Where a test proves that something is *not* executed, a positive control first shows that the same bytes do run
code when they are unpickled or imported on purpose: a missing marker file then means "never run", not "broken
test". docs/reliability.md ("Security") lists each guarantee with its test.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clo.cli.main import main
from clo.runs.rundir import RunDir, RunError, safe_run_path

ROOT = Path(__file__).resolve().parent.parent
XL = {"id": "s1", "lang": "sw", "instruction_en": "What is the capital of Kenya?",
      "response_en": "The capital of Kenya is Nairobi.", "instruction": "Mji mkuu wa Kenya ni upi?",
      "response": "Mji mkuu wa Kenya ni Nairobi.", "translator": "reference"}


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def make_run(path: Path, *, model: bool = False) -> RunDir:
    run = RunDir.create(path, {"method": "clo", "lang": "sw", "model": "tiny"})
    run.append_metrics({"step": 1, "loss": 0.5})
    if model:
        run.model_path.mkdir()
        (run.model_path / "config.json").write_text("{}")
    run.set_status("finished")
    return run


# -- run ids and paths ------------------------------------------------------------------------------------------------

BAD_RUN_IDS = ["..", "../victim", "../../etc", "/etc/passwd", "a/b", "a\\b", "", ".", ".hidden", "x/../../victim",
               "~root", "run\x00id", "-rf", "a" * 200, "..\\victim"]


@pytest.mark.parametrize("run_id", BAD_RUN_IDS, ids=[repr(r)[:20] for r in BAD_RUN_IDS])
def test_run_ids_cannot_leave_the_runs_folder(run_id, tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    with pytest.raises(RunError):
        safe_run_path(root, run_id)


def test_a_symlinked_run_id_pointing_outside_is_refused(tmp_path):
    root, victim = tmp_path / "runs", tmp_path / "victim"
    root.mkdir()
    make_run(victim)
    (root / "linked").symlink_to(victim, target_is_directory=True)
    assert safe_run_path(root, "20260101-clo-sw") == (root / "20260101-clo-sw").resolve()
    with pytest.raises(RunError, match="outside"):
        safe_run_path(root, "linked")


def test_the_job_manager_deletes_nothing_outside_the_runs_folder(tmp_path):
    from clo.runs.jobs import JobManager

    root, victim = tmp_path / "runs", tmp_path / "victim"
    make_run(victim, model=True)
    root.mkdir()
    (root / "linked").symlink_to(victim, target_is_directory=True)
    before = tree_digest(victim)
    mgr = JobManager(root, adopt=False)
    try:
        for run_id in ("../victim", str(victim), "linked", "..", "linked/../../victim"):
            with pytest.raises(RunError):
                mgr.delete(run_id)
            with pytest.raises(RunError):
                mgr.stop(run_id)
    finally:
        mgr.close()
    assert tree_digest(victim) == before and (root / "linked").is_symlink()


# the `app` fixture (a fresh AppTest session on the tiny model) is in conftest.py


def texts(at, kind: str) -> str:
    return "\n".join(str(e.value) for e in at.get(kind))


def test_runs_and_compare_pages_show_no_run_or_file_from_outside(app, tmp_path):
    root, outside = tmp_path / "runs", tmp_path / "outside"
    real = make_run(root / "real", model=True)
    secret = outside / "secret.txt"
    outside.mkdir()
    secret.write_text("TOPSECRET contents of a file outside the runs folder")
    (real.path / "train.log").symlink_to(secret)  # a run folder with a link to a file elsewhere
    make_run(outside / "elsewhere", model=True)
    (root / "linked").symlink_to(outside / "elsewhere", target_is_directory=True)
    app.run()
    at = app.switch_page("app_pages/runs.py").run()
    assert not at.exception, at.exception
    assert list(at.dataframe[0].value["run"]) == ["real"]  # the linked run is not listed
    assert at.selectbox(key="runs_sel").options == ["real — finished"]
    assert "TOPSECRET" not in texts(at, "code")  # the linked log is not shown
    at.switch_page("app_pages/compare.py").run()
    assert not at.exception, at.exception
    options = at.multiselect(key="cmp_models").options
    assert any("real" in o for o in options) and not any("elsewhere" in o or "linked" in o for o in options)
    # deleting the run removes the link, never what it points to
    at.switch_page("app_pages/runs.py").run()
    at.button(key="runs_delete").click().run()
    at.button(key="runs_delete_yes").click().run()
    assert not at.exception, at.exception
    assert not real.path.exists() and secret.read_text().startswith("TOPSECRET")
    assert (outside / "elsewhere" / "status.json").exists()


UPLOAD_NAMES = ["../../escape.jsonl", "/tmp/absolute.jsonl", "..\\..\\windows.jsonl", "....jsonl", "a/../../b.jsonl",
                ".hidden.jsonl"]


@pytest.mark.parametrize("name", UPLOAD_NAMES)
def test_an_upload_name_cannot_place_the_saved_set_outside_the_data_folder(name, app, tmp_path):
    datasets = (tmp_path / "datasets").resolve()
    app.run()
    at = app.switch_page("app_pages/data.py").run()
    at.radio(key="data_source").set_value("upload").run()
    at.file_uploader(key="data_upload").upload(name, (json.dumps(XL) + "\n").encode(), "application/jsonl")
    at.run()
    at.button(key="data_use_ready").click().run()
    assert not at.exception, at.exception
    saved = Path(at.session_state["data_review_set"])
    assert saved.parent.resolve() == datasets and saved.name.endswith("-sw.jsonl") and "/" not in saved.name
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".jsonl")] == []  # nothing beside the folder
    assert not Path("/tmp/absolute.jsonl").exists() or name != "/tmp/absolute.jsonl"


def test_a_symlink_in_the_data_folder_is_neither_offered_nor_written_through(app, tmp_path):
    from clo.data.formats import DataError
    from clo.data.stored import list_datasets, save_dataset

    datasets, outside = tmp_path / "datasets", tmp_path / "outside.jsonl"
    datasets.mkdir()
    outside.write_text(json.dumps(XL) + "\n")
    (datasets / "linked-sw.jsonl").symlink_to(outside)
    (datasets / "real-sw.jsonl").write_text(json.dumps(XL) + "\n")
    assert [p.name for p in list_datasets("sw")] == ["real-sw.jsonl"]
    with pytest.raises(DataError, match="saved in"):
        save_dataset([XL], datasets / "linked-sw.jsonl")
    with pytest.raises(DataError, match="saved in"):
        save_dataset([XL], tmp_path / "elsewhere.jsonl")
    at = app.run()
    at.switch_page("app_pages/train.py").run()
    assert not at.exception, at.exception
    assert not any("linked" in o for o in at.selectbox(key="tr_data").options)
    assert outside.read_text() == json.dumps(XL) + "\n"


# -- model folders: safetensors only, no code of their own ------------------------------------------------------------


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: the marker file appears if the pickle is ever loaded."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def evil_pickle(marker: Path) -> bytes:
    data = pickle.dumps({"model.embed_tokens.weight": _Payload(marker)})
    pickle.loads(data)  # positive control: loading these bytes does run code
    assert marker.exists()
    marker.unlink()
    return data


@pytest.fixture()
def pickled_model(tmp_path, tiny_model) -> tuple[Path, Path]:
    folder, marker = tmp_path / "pickled", tmp_path / "UNPICKLED"
    shutil.copytree(tiny_model, folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(evil_pickle(marker))
    return folder, marker


def test_a_pickle_only_model_is_refused_and_never_unpickled(pickled_model, tmp_path, capsys):
    from clo.models.load import load_model
    from clo.models.registry import UnsafeModelError
    from clo.models.resolve import resolve_model

    folder, marker = pickled_model
    with pytest.raises(UnsafeModelError, match=r"only pickle weights \(pytorch_model.bin\).*safetensors only"):
        load_model(str(folder))
    with pytest.raises(UnsafeModelError):
        resolve_model(str(folder))
    out = tmp_path / "run"
    assert main(["train", "--model", str(folder), "--data", "demo", "--lang", "sw", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "only pickle weights" in err and "unpickling can run arbitrary code" in err
    assert not out.exists()  # refused before any run folder is made
    assert main(["generate", "--model", str(folder), "Habari?"]) == 2
    assert "only pickle weights" in capsys.readouterr().err
    assert not marker.exists()


def test_a_pickle_beside_safetensors_is_ignored(tmp_path, tiny_model):
    from clo.models.load import load_model

    folder, marker = tmp_path / "both", tmp_path / "UNPICKLED"
    shutil.copytree(tiny_model, folder)
    (folder / "pytorch_model.bin").write_bytes(evil_pickle(marker))
    assert load_model(str(folder)).model is not None  # safetensors weights are read
    assert not marker.exists()


def test_a_pickle_only_lora_adapter_is_refused(tmp_path):
    from clo.models.load import load_model
    from clo.models.registry import UnsafeModelError

    folder, marker = tmp_path / "adapter", tmp_path / "UNPICKLED"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "default"}))
    (folder / "adapter_model.bin").write_bytes(evil_pickle(marker))
    with pytest.raises(UnsafeModelError, match="only pickle weights"):
        load_model(str(folder))
    assert not marker.exists()


def remote_code_model(tmp_path: Path, tiny_model: Path, *, model_type: str = "clo-evil", tokenizer: bool = False):
    """A copy of the tiny model whose config maps its classes to a .py file that writes a marker when imported."""
    folder, marker = tmp_path / f"remote-{model_type}-{tokenizer}", tmp_path / f"IMPORTED-{model_type}-{tokenizer}"
    shutil.copytree(tiny_model, folder)
    code = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('the model folder ran its own code')\n"
    (folder / "modeling_evil.py").write_text(code)
    runpy.run_path(str(folder / "modeling_evil.py"))  # positive control: importing the file writes the marker
    assert marker.exists()
    marker.unlink()
    if tokenizer:
        cfg = json.loads((folder / "tokenizer_config.json").read_text())
        cfg.update(tokenizer_class="EvilTokenizer", auto_map={"AutoTokenizer": ["modeling_evil.EvilTokenizer", None]})
        (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    else:
        cfg = json.loads((folder / "config.json").read_text())
        cfg.update(model_type=model_type, auto_map={"AutoConfig": "modeling_evil.EvilConfig",
                                                    "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"})
        (folder / "config.json").write_text(json.dumps(cfg))
    return folder, marker


@pytest.mark.parametrize("tokenizer", [False, True], ids=["model-auto_map", "tokenizer-auto_map"])
def test_a_model_that_needs_its_own_code_is_refused_and_the_code_never_runs(tokenizer, tmp_path, tiny_model, capsys):
    from clo.models.load import load_model
    from clo.models.registry import UnsafeModelError
    from clo.models.resolve import check_model_folder

    folder, marker = remote_code_model(tmp_path, tiny_model, tokenizer=tokenizer)
    with pytest.raises(UnsafeModelError, match=r"needs its own Python code to load \(modeling_evil.py\)"):
        load_model(str(folder))
    out = tmp_path / "run"
    code = main(["train", "--model", str(folder), "--data", "demo", "--lang", "sw", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "--trust-remote-code" in err and "auto_map" in err, err
    assert not out.exists()
    check_model_folder(folder, trust_remote_code=True)  # only an explicit opt-in lets it through (not loaded here)
    assert not marker.exists()


def test_auto_map_on_a_built_in_model_type_loads_transformers_own_code(tmp_path, tiny_model):
    from clo.models.load import load_model

    folder, marker = remote_code_model(tmp_path, tiny_model, model_type="llama")
    assert type(load_model(str(folder)).model).__name__ == "LlamaForCausalLM"
    assert not marker.exists()


def test_the_app_refuses_unsafe_model_folders_in_the_sidebar(app, tmp_path, tiny_model, pickled_model):
    folder, pickle_marker = pickled_model
    remote, remote_marker = remote_code_model(tmp_path, tiny_model)
    at = app.run()
    for path, message in [(folder, "only pickle weights"), (remote, "needs its own Python code")]:
        at.sidebar.text_input(key="sb_model_path").input(str(path)).run()
        assert not at.exception, at.exception
        assert message in texts(at.sidebar, "error")
    at.switch_page("app_pages/compare.py").run()  # the page that would load it
    assert not at.exception
    assert not pickle_marker.exists() and not remote_marker.exists()


# -- uploads and configs are parsed, never run ------------------------------------------------------------------------


def test_uploads_are_parsed_never_executed(app, tmp_path):
    marker = tmp_path / "EXECUTED"
    python = f"import pathlib; pathlib.Path({str(marker)!r}).write_text('ran')\n".encode()
    runpy.run_path(str(_write(tmp_path / "control.py", python)))  # positive control
    assert marker.exists()
    marker.unlink()
    app.run()
    at = app.switch_page("app_pages/data.py").run()
    at.radio(key="data_source").set_value("upload").run()
    for name, content, message in [("code.jsonl", python, "not valid JSON"),
                                   ("code.csv", python, "file has a header but no records"),
                                   ("pickle.jsonl", evil_pickle(marker), "Python pickle")]:
        at.file_uploader(key="data_upload").upload(name, content, "application/octet-stream")
        at.run()
        assert not at.exception, at.exception
        assert message in texts(at, "error")
    assert not marker.exists()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_a_config_with_a_python_tag_is_refused_not_run(tmp_path, capsys):
    marker = tmp_path / "YAML-RAN"
    config = _write(tmp_path / "config.yaml", f"lr: !!python/object/apply:builtins.open ['{marker}', 'w']\n".encode())
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    assert "could not determine a constructor" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "run").exists()


# -- the server binds to this machine ---------------------------------------------------------------------------------


def test_streamlit_reads_the_project_config_and_binds_to_localhost():
    from clo.data.formats import DEFAULT_MAX_UPLOAD_MB

    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}
    probe = ("import json, streamlit.config as c; c.get_config_options(force_reparse=True); print(json.dumps({k: "
             "[c.get_option(k), c.get_where_defined(k)] for k in ('server.address', 'server.maxUploadSize', "
             "'server.enableXsrfProtection')}))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    options = json.loads(out.stdout.strip().splitlines()[-1])
    config = str(ROOT / ".streamlit" / "config.toml")
    assert options["server.address"] == ["127.0.0.1", config]
    assert options["server.maxUploadSize"] == [DEFAULT_MAX_UPLOAD_MB, config]  # the same cap as clo.data.formats's
    assert options["server.enableXsrfProtection"][0] is True
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Opening the app to a network", 1)[1].split("\n## ", 1)[0]
    assert "127.0.0.1" in section and "0.0.0.0" in section and "no login" in section


# -- no secret in a run directory or a job log ------------------------------------------------------------------------

SECRETS = {"HF_TOKEN": "hf_secretTOKENdoNotLeak0123456789", "HUGGING_FACE_HUB_TOKEN": "hf_secretHUBdoNotLeak987",
           "OPENAI_API_KEY": "sk-secretKEYdoNotLeak42"}


def assert_no_secret(folder: Path) -> list[str]:
    checked = []
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            for name, value in SECRETS.items():
                assert value.encode() not in data, f"{name} found in {p}"
            checked.append(str(p.relative_to(folder)))
    return checked


def test_no_secret_reaches_a_run_directory_or_the_job_log(tmp_path, tiny_model):
    from clo.core.spec import TrainSpec
    from clo.runs.jobs import LOG_NAME, JobManager

    data = _write(tmp_path / "xl.jsonl", "".join(json.dumps({**XL, "id": f"s{i}"}) + "\n" for i in range(2)).encode())
    spec = TrainSpec(model=str(tiny_model), data=str(data), lang="sw", max_steps=1, batch_size=2)
    mgr = JobManager(tmp_path / "runs", env={**os.environ, **SECRETS}, adopt=False)  # a real `clo train` child
    try:
        job = mgr.submit(spec)
        assert mgr.wait(job.run_id, timeout=300) == "finished", (job.run_dir / LOG_NAME).read_text()
    finally:
        mgr.close()
    checked = assert_no_secret(job.run_dir)
    assert {"config.yaml", "status.json", "metrics.jsonl", LOG_NAME, "model/model.safetensors"} <= set(checked)
    config = RunDir(job.run_dir).config()
    assert set(config) == set(spec.to_dict())  # settings only, no environment
    status = RunDir(job.run_dir).status()
    assert not set(status) & (set(SECRETS) | {"PATH", "HOME", "env", "environ"})


def test_no_secret_in_the_error_of_a_failed_run(tmp_path, tiny_model, monkeypatch):
    from clo.core.spec import SpecError, TrainSpec
    from clo.training.run import run_training

    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    data = _write(tmp_path / "xl.jsonl", (json.dumps(XL) + "\n").encode())
    spec = TrainSpec(model=str(tiny_model), data=str(data), lang="sw", max_steps=1, batch_size=1, max_length=8)
    with pytest.raises(SpecError):
        run_training(spec, tmp_path / "failed")
    status = RunDir(tmp_path / "failed").status()
    assert status["state"] == "failed" and "max_length 8" in status["error"] and status.get("traceback")
    assert_no_secret(tmp_path / "failed")


# -- downloads ---------------------------------------------------------------------------------------------------------

FORMULAS = ["=HYPERLINK(\"http://evil.example\",\"click\")", "+1+1", "-2+3", "@SUM(A1:A2)", "\t=1", "\r=1",
            "=cmd|' /C calc'!A0"]


@pytest.mark.parametrize("text", FORMULAS)
def test_csv_downloads_never_hand_a_spreadsheet_a_formula(text):
    """A model answer (or prompt, or label) is untrusted text: in the Compare page's CSV downloads a cell that a
    spreadsheet would read as a formula starts with a single quote (OWASP's recipe against CSV injection)."""
    import csv
    import io

    from clo.core.downloads import csv_safe, rows_to_csv

    assert csv_safe(text) == "'" + text
    rows = [{"model": "run-1", "prompt": "Habari?", "response": text, "chrf": -0.5, "n": 3, "reference": None}]
    back = list(csv.DictReader(io.StringIO(rows_to_csv(rows))))
    assert back[0]["response"] == "'" + text
    assert (back[0]["chrf"], back[0]["n"], back[0]["reference"]) == ("-0.5", "3", "")  # numbers stay numbers
    assert back[0]["prompt"] == "Habari?"


def test_csv_safe_leaves_ordinary_text_alone():
    from clo.core.downloads import csv_safe, rows_to_csv

    for text in ("Mji mkuu wa Kenya ni Nairobi.", "a = b", "1+1", "", "'quoted", " =not first"):
        assert csv_safe(text) == text
    assert rows_to_csv([]) == ""
    assert rows_to_csv([{"=header": "x"}]).splitlines()[0] == '"\'=header"'
    assert "rows_to_csv(" in (ROOT / "app_pages" / "compare.py").read_text()  # both Compare downloads use it
