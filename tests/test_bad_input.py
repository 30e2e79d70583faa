"""Bad input, table-driven, through the CLI (``clo.cli.main.main``, exit status 2 and one ``error:`` line) and the app
(Streamlit AppTest: an ``st.error`` on the page, no exception) — and in every case nothing already saved is touched.

Tables: :data:`BAD_FILES` (data files and uploads), :data:`BAD_FLAGS` and :data:`BAD_CONFIGS` (training settings
on the command line and in a config file), :data:`BAD_PRESETS` (the same settings reaching the app through a preset
file). docs/reliability.md ("Bad input") lists them with the messages they produce.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import pickle
from pathlib import Path

import pytest

from clo.cli.main import main
from clo.runs.rundir import RunDir

ROOT = Path(__file__).resolve().parent.parent

XL_ROWS = [
    {"id": "s1", "lang": "sw", "instruction_en": "What is the capital of Kenya?",
     "response_en": "The capital of Kenya is Nairobi.", "instruction": "Mji mkuu wa Kenya ni upi?",
     "response": "Mji mkuu wa Kenya ni Nairobi.", "translator": "reference"},
    {"id": "s2", "lang": "sw", "instruction_en": "How do I cook rice?",
     "response_en": "Rinse it, add water, and simmer.", "instruction": "Ninapikaje wali?",
     "response": "Osha mchele, ongeza maji, na uupike.", "translator": "reference"},
]
SFT_ROWS = [{"id": r["id"], "instruction": r["instruction_en"], "response": r["response_en"]} for r in XL_ROWS]


def jsonl(rows) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def csv_bytes(rows, drop: str | None = None, extra_cell_on: int | None = None, short_on: int | None = None) -> bytes:
    """CSV of ``rows``; ``drop`` leaves a column out, ``extra_cell_on``/``short_on`` (0-based row) add/remove a cell."""
    fields = [k for k in rows[0] if k != drop]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(fields)
    for i, r in enumerate(rows):
        cells = [r[k] for k in fields]
        if i == extra_cell_on:
            cells.append("stray, cell")
        if i == short_on:
            cells = cells[:-1]
        w.writerow(cells)
    return buf.getvalue().encode("utf-8")


def many(rows, n=40):
    return [{**rows[i % len(rows)], "id": f"r{i}"} for i in range(n)]


def latin1_on_line_2(rows) -> bytes:
    second = json.dumps({**rows[1], "response": rows[1]["response"] + " café"}, ensure_ascii=False)
    return jsonl(rows[:1]) + second.encode("latin-1") + b"\n"


# (case id, file name, content made from good rows, environment, message). The message is the same on the
# command line and on the Data page: both read through clo.data.formats.
BAD_FILES = [
    ("empty-file", "data.jsonl", lambda rows: b"", {}, "file is empty: no records"),
    ("only-blank-lines", "data.jsonl", lambda rows: b"\n   \n\n", {}, "file is empty: no records"),
    ("empty-csv", "data.csv", lambda rows: b"", {}, "file is empty: no header row"),
    ("csv-header-only", "data.csv", lambda rows: csv_bytes(rows).split(b"\n")[0] + b"\n", {},
     "file has a header but no records"),
    ("utf-16", "data.jsonl", lambda rows: jsonl(rows).decode("utf-8").encode("utf-16"), {},
     "is UTF-16 (or UTF-32) text, not UTF-8; save the file as UTF-8"),
    ("utf-16-csv-no-bom", "data.csv", lambda rows: csv_bytes(rows).decode("utf-8").encode("utf-16-le"), {},
     "is UTF-16 (or UTF-32) text"),
    ("latin-1", "data.jsonl", latin1_on_line_2, {}, "line 2: not valid UTF-8 text (byte 0xe9"),
    ("broken-jsonl-line", "data.jsonl",
     lambda rows: jsonl(rows[:1]) + b'{"id": "x", "instruction": \n' + jsonl(rows[1:]), {}, "line 2: not valid JSON"),
    ("json-array-line", "data.jsonl", lambda rows: jsonl(rows[:1]) + b"[1, 2]\n", {},
     "line 2: expected a JSON object, got list"),
    ("field-missing", "data.jsonl",
     lambda rows: jsonl([rows[0], {k: v for k, v in rows[1].items() if k != "response"}]), {},
     "line 2: field 'response' is missing"),
    ("field-not-text", "data.jsonl", lambda rows: jsonl([rows[0], {**rows[1], "response": 42}]), {},
     "line 2: field 'response' must be a string, got int"),
    ("duplicate-id", "data.jsonl", lambda rows: jsonl([rows[0], {**rows[1], "id": rows[0]["id"]}]), {},
     "line 2: duplicate id 's1' (first on line 1)"),
    ("csv-missing-column", "data.csv", lambda rows: csv_bytes(rows, drop="response"), {},
     "line 2: field 'response' is missing"),
    ("csv-extra-cells", "data.csv", lambda rows: csv_bytes(rows, extra_cell_on=1), {},
     "line 3: 1 more cell(s) than the header's"),
    ("csv-missing-cells", "data.csv", lambda rows: csv_bytes(rows, short_on=1), {},
     "line 3: fewer cells than the header's"),
    ("over-size-cap", "data.jsonl", lambda rows: jsonl(many(rows)), {"CLO_MAX_UPLOAD_MB": "0.001"},
     "over the 1.0 KB limit (set CLO_MAX_UPLOAD_MB to change it)"),
    ("bad-size-cap-setting", "data.jsonl", lambda rows: jsonl(rows), {"CLO_MAX_UPLOAD_MB": "lots"},
     "CLO_MAX_UPLOAD_MB must be a positive number of megabytes, got 'lots'"),
    ("binary-renamed", "data.jsonl", lambda rows: bytes(range(256)) * 8, {},
     "looks like a binary file, not UTF-8 text"),
    ("gzip-renamed", "data.jsonl", lambda rows: gzip.compress(jsonl(rows), mtime=0), {},
     "it looks like a gzip archive"),
    ("pickle-renamed", "data.jsonl", lambda rows: pickle.dumps(rows, protocol=4), {},
     "it looks like a Python pickle"),
    ("zip-renamed-csv", "data.csv", lambda rows: b"PK\x03\x04" + bytes(60), {}, "it looks like a ZIP archive"),
]
FILE_IDS = [c[0] for c in BAD_FILES]
# Cross-lingual files only: an unknown language code in the records.
XL_ONLY = [("unknown-language", "data.jsonl", lambda rows: jsonl([rows[0], {**rows[1], "lang": "zz"}]), {},
            "line 2: Unknown language 'zz'")]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with a hash of its bytes (and the set of names): "nothing is touched"."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def saved(tmp_path) -> dict[str, Path]:
    """Things already saved: a finished run directory and a pairs file, both given as --out to failing commands."""
    run = RunDir.create(tmp_path / "runs" / "earlier", {"method": "clo", "lang": "sw"})
    run.append_metrics({"step": 1, "loss": 0.5})
    (run.model_path).mkdir()
    (run.model_path / "config.json").write_text("{}")
    run.set_status("finished")
    pairs = tmp_path / "kept" / "pairs.jsonl"
    pairs.parent.mkdir()
    pairs.write_bytes(jsonl(XL_ROWS))
    return {"run": run.path, "pairs": pairs, "root": tmp_path}


def cli(capsys, *argv) -> tuple[int, str]:
    """``python -m clo ARGV`` in this process: (exit status, the ``error:`` line — or all of stderr if none)."""
    code = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    return code, lines[-1] if len(lines) == 1 else err


# -- data files on the command line --------------------------------------------------------------------------------


@pytest.mark.parametrize("case, name, make, env, message", BAD_FILES + XL_ONLY, ids=FILE_IDS + ["unknown-language"])
def test_cli_train_refuses_a_bad_data_file(case, name, make, env, message, tiny_model, saved, monkeypatch, capsys):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    data = saved["root"] / name
    data.write_bytes(make(XL_ROWS))
    before = snapshot(saved["run"])
    code, err = cli(capsys, "train", "--model", str(tiny_model), "--data", str(data), "--out", str(saved["run"]),
                    "--max-steps", "1")
    assert code == 2, err
    assert err.startswith("error: ") and message in err, err
    assert str(data) in err or "CLO_MAX_UPLOAD_MB must" in err  # the message names the file
    assert snapshot(saved["run"]) == before  # the run given as --out is untouched (the data fails first)


@pytest.mark.parametrize("case, name, make, env, message", BAD_FILES, ids=FILE_IDS)
def test_cli_translate_and_import_refuse_a_bad_file_and_keep_the_output(case, name, make, env, message, saved,
                                                                         monkeypatch, capsys):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    data = saved["root"] / name
    data.write_bytes(make(SFT_ROWS))
    before = saved["pairs"].read_bytes()
    code, err = cli(capsys, "translate", "--data", str(data), "--lang", "sw", "--translator", "reference",
                    "--out", str(saved["pairs"]))
    assert code == 2 and message in err, err
    if case != "duplicate-id":  # `data import` numbers records itself: duplicate ids do not matter there
        code, err = cli(capsys, "data", "import", str(data), "--out", str(saved["pairs"]))
        assert code == 2 and err.startswith("error: "), err
        if case not in ("field-missing", "field-not-text", "csv-missing-column"):  # import names columns its own way
            assert message in err, err
    assert saved["pairs"].read_bytes() == before  # the existing pairs file is neither replaced nor deleted
    assert sorted(p.name for p in saved["pairs"].parent.iterdir()) == ["pairs.jsonl"]  # and no temp file is left


def test_cli_output_that_is_a_folder_is_refused_before_any_work(saved, tiny_model, capsys):
    folder = saved["root"] / "a-folder"
    folder.mkdir()
    code, err = cli(capsys, "translate", "--data", "demo", "--lang", "sw", "--translator", "reference",
                    "--out", str(folder))
    assert code == 2 and "--out is a folder" in err, err
    assert list(folder.iterdir()) == [] and not list(saved["root"].glob(".a-folder*"))
    # a file where train expects a run directory: one line, not a traceback, and the file is kept
    code, err = cli(capsys, "train", "--data", "demo", "--lang", "sw", "--out", str(saved["pairs"]),
                    "--model", str(tiny_model))
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err, err
    assert saved["pairs"].read_bytes() == jsonl(XL_ROWS)


# -- settings on the command line and in config files ---------------------------------------------------------------

BAD_FLAGS = [
    (["--lr", "0"], "lr must be a positive number, got 0.0"),
    (["--lr=-5e-5"], "lr must be a positive number, got -5e-05"),
    (["--lr", "nan"], "lr must be a positive number, got nan"),
    (["--batch-size", "0"], "batch_size must be a positive integer, got 0"),
    (["--batch-size", "-8"], "batch_size must be a positive integer, got -8"),
    (["--epochs", "0"], "epochs must be a positive number, got 0.0"),
    (["--epochs", "-1"], "epochs must be a positive number, got -1.0"),
    (["--lambda", "-0.1"], "lambda must be in [0, 1], got -0.1"),
    (["--lambda", "1.5"], "lambda must be in [0, 1], got 1.5"),
    (["--beta", "0"], "beta must be a positive number, got 0.0"),
    (["--lang", "xx"], "Unknown language 'xx'. Known languages: en (English), sw (Swahili)"),
    (["--lang", "en"], "The target language must not be English"),
    (["--method", "ppo"], "Unknown method 'ppo'. Choose one of: clo, sft, sft-tgt, sft-eng, sft-dpo."),
    (["--scope", "mlp"], "Unknown scope 'mlp'. Choose one of: attention, full, lora."),
    (["--preset", "nope"], "Unknown preset 'nope'. Presets:"),
    (["--preset", "../presets/demo"], "Unknown preset '../presets/demo'"),
    (["--max-length", "0"], "max_length must be a positive integer, got 0"),
    (["--max-steps", "0"], "max_steps must be a positive integer, got 0"),
    (["--warmup-ratio", "1"], "warmup_ratio must be in [0, 1), got 1.0"),
]


@pytest.mark.parametrize("args, message", BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_cli_train_refuses_a_bad_setting(args, message, tiny_model, saved, capsys):
    data = saved["root"] / "xl.jsonl"
    data.write_bytes(jsonl(XL_ROWS))
    before = snapshot(saved["run"])
    code, err = cli(capsys, "train", "--model", str(tiny_model), "--data", str(data), "--out", str(saved["run"]),
                    *args)
    assert code == 2 and err.startswith("error: ") and message in err, err
    assert snapshot(saved["run"]) == before


def test_cli_max_length_shorter_than_the_prompts_fails_clearly_and_spares_other_runs(tiny_model, saved, capsys):
    data = saved["root"] / "xl.jsonl"
    data.write_bytes(jsonl(XL_ROWS))
    before = snapshot(saved["run"])
    out = saved["run"].parent / "too-short"
    code, err = cli(capsys, "train", "--model", str(tiny_model), "--data", str(data), "--out", str(out),
                    "--max-length", "8", "--max-steps", "1", "--batch-size", "2")
    assert code == 2 and "max_length 8 is shorter than 4 prompt(s)" in err and "Use --max-length" in err, err
    assert RunDir(out).status()["state"] == "failed" and not RunDir(out).has_model()
    assert snapshot(saved["run"]) == before


BAD_CONFIGS = [  # (config.yaml bytes, message)
    (b"lr: -1\n", "lr must be a positive number, got -1"),
    (b"lr: true\n", "lr must be a positive number, got True"),
    (b"batch_size: 2.5\n", "batch_size must be a positive integer, got 2.5"),
    (b"lambda: abc\n", "lambda must be a number, got 'abc'"),
    (b"method: [clo]\n", "method must be text, got ['clo']"),
    (b"epochs: 0\n", "epochs must be a positive number, got 0"),
    (b"learning_rate: 1e-4\n", "unknown setting(s) learning_rate"),
    (b"- lr: 1\n", "expected a mapping of settings"),
    (b"lr: [\n", "line 2: not valid YAML"),
    ("lr: 0.1\n".encode("utf-16"), "not UTF-8 text; save the config as UTF-8 YAML"),
    (b"lr: !!python/object/apply:os.getcwd []\n", "not valid YAML (could not determine a constructor"),
]


@pytest.mark.parametrize("content, message", BAD_CONFIGS, ids=[m.split(",")[0][:40] for _, m in BAD_CONFIGS])
def test_cli_train_refuses_a_bad_config_file(content, message, tiny_model, saved, capsys):
    config = saved["root"] / "config.yaml"
    config.write_bytes(content)
    before = snapshot(saved["run"])
    code, err = cli(capsys, "train", "--config", str(config), "--model", str(tiny_model), "--data", "demo",
                    "--out", str(saved["run"]))
    assert code == 2 and message in err, err
    assert "\n" not in err.strip()  # one line, not a traceback or a YAML dump
    assert snapshot(saved["run"]) == before


def test_cli_unknown_language_in_pairs_and_translate(tmp_path, capsys):
    code, err = cli(capsys, "pairs", "--data", "demo", "--lang", "xx")
    assert code == 2 and "Unknown language 'xx'" in err
    code, err = cli(capsys, "pairs", "--data", "demo", "--lang", "en")
    assert code == 2 and "English is the source side of every sample" in err, err
    out = tmp_path / "x.jsonl"
    code, err = cli(capsys, "translate", "--data", "demo", "--lang", "xx", "--translator", "reference",
                    "--out", str(out))
    assert code == 2 and "Unknown language 'xx'" in err and not out.exists()


# -- the app ---------------------------------------------------------------------------------------------------------


# the `app` fixture (a fresh AppTest session on the tiny model) is in conftest.py


def errors(at) -> str:
    return "\n".join(str(e.value) for e in at.error)


def open_page(at, page):
    at.run()
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


@pytest.mark.parametrize("case, name, make, env, message", BAD_FILES + XL_ONLY, ids=FILE_IDS + ["unknown-language"])
def test_app_upload_of_a_bad_file_shows_an_error_and_saves_nothing(case, name, make, env, message, app, tmp_path,
                                                                   monkeypatch):
    datasets = tmp_path / "datasets"
    datasets.mkdir()
    (datasets / "kept-sw.jsonl").write_bytes(jsonl(XL_ROWS))  # a set saved earlier
    before = snapshot(datasets)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    at = open_page(app, "data")
    at.radio(key="data_source").set_value("upload").run()
    rows = XL_ROWS if case == "unknown-language" else SFT_ROWS
    if case == "bad-size-cap-setting":  # said at once, before any upload, and no uploader is offered
        assert not at.get("file_uploader")
    else:
        at.file_uploader(key="data_upload").upload(name, make(rows), "application/octet-stream")
        at.run()
    assert not at.exception, at.exception
    assert message in errors(at), errors(at)
    assert not any(b.key in ("data_translate", "data_use_ready") for b in at.button)  # nothing to go on with
    assert snapshot(datasets) == before


def test_app_uploader_takes_its_cap_from_clo_max_upload_mb(app, monkeypatch):
    monkeypatch.setenv("CLO_MAX_UPLOAD_MB", "3")
    at = open_page(app, "data")
    at.radio(key="data_source").set_value("upload").run()
    assert at.file_uploader(key="data_upload").proto.max_upload_size_mb == 3  # the browser refuses bigger files
    assert "up to 3 MB" in at.file_uploader(key="data_upload").proto.help
    at = open_page(app, "compare")  # the responses uploader has the same cap
    assert at.file_uploader(key="cmp_resp_upload").proto.max_upload_size_mb == 3


def test_app_file_path_that_is_binary_or_a_folder_shows_an_error(app, tmp_path):
    at = open_page(app, "data")
    at.radio(key="data_source").set_value("file").run()
    blob = tmp_path / "blob.jsonl"
    blob.write_bytes(bytes(range(256)) * 4)
    for path, message in [(blob, "blob.jsonl"), (tmp_path, "not a dataset saved with save_to_disk"),
                          (tmp_path / "missing.jsonl", "file not found")]:
        at.text_input(key="data_path").input(str(path)).run()
        assert not at.exception, at.exception
        assert message in errors(at), errors(at)


# Settings reach the app only through its widgets (bounded: an out-of-range value is clamped to the bound) and
# through preset files in presets/. A broken preset is reported and the settings on the page stay as they were.
BAD_PRESETS = [  # (preset file content, message)
    ("lr: -1\n", "lr must be a positive number, got -1"),
    ("lr: 0\n", "lr must be a positive number, got 0"),
    ("batch_size: 0\n", "batch_size must be a positive integer, got 0"),
    ("epochs: -1\n", "epochs must be a positive number, got -1"),
    ("lambda: 1.5\n", "lambda must be in [0, 1], got 1.5"),
    ("method: ppo\n", "Unknown method 'ppo'"),
    ("scope: mlp\n", "Unknown scope 'mlp'"),
    ("max_length: 0\n", "max_length must be a positive integer, got 0"),
    ("learning_rate: 1e-4\n", "unknown setting(s) learning_rate"),
    ("lr: [\n", "not valid YAML"),
    ("- lr: 1\n", "expected a mapping of settings"),
]


@pytest.fixture()
def presets(tmp_path, monkeypatch):
    """The real presets plus room for broken ones, in a folder of this test (clo.core.spec reads PRESETS_DIR)."""
    import shutil

    import clo.core.spec

    folder = tmp_path / "presets"
    shutil.copytree(ROOT / "presets", folder)
    monkeypatch.setattr(clo.core.spec, "PRESETS_DIR", folder)
    return folder


@pytest.mark.parametrize("content, message", BAD_PRESETS, ids=[m[:40] for _, m in BAD_PRESETS])
def test_app_bad_preset_shows_an_error_and_keeps_the_settings(content, message, app, presets):
    (presets / "broken.yaml").write_text(content)
    at = open_page(app, "train")
    lr = at.number_input(key="tr_lr").value
    at.selectbox(key="tr_preset").set_value("broken").run()
    assert not at.exception, at.exception
    assert message in errors(at) and "Preset 'broken'" in errors(at), errors(at)
    assert at.number_input(key="tr_lr").value == lr
    assert not at.button(key="tr_launch").disabled  # the settings on the page are still valid


def test_app_preset_that_vanished_is_reported(app, presets):
    (presets / "gone.yaml").write_text("lr: 1e-4\n")
    at = open_page(app, "train")
    (presets / "gone.yaml").unlink()
    at.selectbox(key="tr_preset").set_value("gone").run()
    assert not at.exception, at.exception
    assert "Unknown preset 'gone'" in errors(at)


@pytest.mark.parametrize("key, value, lowest", [("tr_lr", -1.0, 1e-7), ("tr_lr", 0.0, 1e-7), ("tr_batch_size", 0, 1),
                                                ("tr_batch_size", -8, 1), ("tr_epochs", 0.0, 0.1),
                                                ("tr_epochs", -1.0, 0.1), ("tr_max_length", 4, 16),
                                                ("tr_beta", 0.0, 0.001)])
def test_app_number_widgets_keep_settings_in_range(key, value, lowest, app):
    at = open_page(app, "train")
    at.number_input(key=key).set_value(value).run()
    assert not at.exception and not at.error, errors(at)
    assert at.number_input(key=key).value == pytest.approx(lowest)  # clamped to the smallest allowed value


def test_app_lambda_slider_stays_in_0_1(app):
    at = open_page(app, "train")
    for value in (-0.5, 1.5):
        at.slider(key="tr_lam").set_value(value).run()
        assert not at.exception and not at.error
        assert 0.0 <= at.slider(key="tr_lam").value <= 1.0


@pytest.mark.parametrize("data, message", [
    ("missing.jsonl", "file not found"),
    ("binary.jsonl", "looks like a binary file"),
    ("english.jsonl", "this is an English SFT file"),
])
def test_app_launch_with_bad_data_creates_no_run_and_touches_none(data, message, app, tmp_path, saved):
    (tmp_path / "binary.jsonl").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "english.jsonl").write_bytes(jsonl(SFT_ROWS))
    app_runs = tmp_path / "runs"  # CLO_RUNS of the app fixture: the saved fixture's finished run lives here
    before = snapshot(app_runs)
    at = open_page(app, "train")
    at.selectbox(key="tr_data").set_value("__other__").run()
    at.text_input(key="tr_data_path").input(str(tmp_path / data)).run()
    at.button(key="tr_launch").click().run()
    assert not at.exception, at.exception
    assert message in errors(at), errors(at)
    assert snapshot(app_runs) == before  # no new run, the earlier one as it was


def test_app_job_failing_on_max_length_shows_why_and_spares_other_runs(app, tmp_path, saved):
    import time

    data = tmp_path / "xl.jsonl"
    data.write_bytes(jsonl(XL_ROWS))
    before = snapshot(saved["run"])
    at = open_page(app, "train")
    at.selectbox(key="tr_data").set_value("__other__").run()
    at.text_input(key="tr_data_path").input(str(data))
    at.number_input(key="tr_batch_size").set_value(2)
    at.number_input(key="tr_max_length").set_value(16)  # the smallest the widget allows; every prompt is longer
    at.number_input(key="tr_max_steps").set_value(1).run()
    at.button(key="tr_launch").click().run()
    run = RunDir(tmp_path / "runs" / at.session_state["train_run"])
    deadline = time.monotonic() + 300
    while run.status().get("state") not in ("failed", "finished", "stopped", "interrupted"):
        assert time.monotonic() < deadline, run.status()
        time.sleep(0.2)
    at.run()
    assert not at.exception, at.exception
    assert run.status()["state"] == "failed"
    assert "max_length 16 is shorter than" in errors(at), errors(at)
    assert snapshot(saved["run"]) == before
