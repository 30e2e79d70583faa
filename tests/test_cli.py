"""The CLI end to end: train a tiny model, reproduce from config.yaml, and reject bad input cleanly."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_cli

from clo.cli.main import main
from clo.runs.rundir import RunDir

ROOT = Path(__file__).resolve().parent.parent


def test_cli_trains_tiny_llama_and_reproduces(tiny_model, xl_file, tmp_path):
    out = tmp_path / "runs" / "smoke"
    code, stdout, stderr = run_cli("train", "--method", "clo", "--lang", "sw", "--model", str(tiny_model),
                                   "--data", str(xl_file), "--max-steps", "2", "--batch-size", "2", "--lr", "1e-3",
                                   "--out", str(out), "--json")
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["state"] == "finished" and summary["steps"] == 2
    run = RunDir(out)
    assert run.status()["state"] == "finished"
    rows = run.metrics()
    assert [r["step"] for r in rows] == [1, 2]
    for key in ("loss", "sft_loss", "cl_loss", "rewards_chosen", "rewards_rejected", "margin", "accuracy", "lr",
                "tokens_per_s", "epoch"):
        assert key in rows[-1], key
    assert (out / "config.yaml").exists() and (out / "model" / "model.safetensors").exists()

    # the run's model loads and generates
    code, stdout, stderr = run_cli("generate", "--model", str(out), "--max-new-tokens", "5", "Habari?")
    assert code == 0, stderr
    assert isinstance(stdout, str)

    # reproducible from its config.yaml
    out2 = tmp_path / "runs" / "again"
    code, _, stderr = run_cli("train", "--config", str(out / "config.yaml"), "--out", str(out2))
    assert code == 0, stderr
    again = RunDir(out2).metrics()
    assert [round(r["loss"], 5) for r in again] == [round(r["loss"], 5) for r in rows]
    assert RunDir(out2).config() == run.config()


@pytest.mark.parametrize("args, message", [
    (["--method", "ppo"], "Unknown method"),
    (["--scope", "mlp"], "Unknown scope"),
    (["--lang", "xx"], "Unknown language"),
    (["--lambda", "2"], "lambda must be in [0, 1]"),
    (["--lr", "-1"], "lr must be a positive number"),
    (["--batch-size", "0"], "batch_size must be a positive integer"),
    (["--preset", "nope"], "Unknown preset"),
    (["--max-length", "4"], "max_length 4 is shorter than"),
])
def test_bad_settings_exit_nonzero_without_a_finished_run(tiny_model, xl_file, tmp_path, args, message, capsys):
    out = tmp_path / "run"
    code = main(["train", "--model", str(tiny_model), "--data", str(xl_file), "--max-steps", "1",
                 "--out", str(out), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert not out.exists() or RunDir(out).status().get("state") != "finished"


def test_missing_model_says_where_it_looked(xl_file, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--model", str(tmp_path / "no-such-model"), "--data", str(xl_file), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "not available offline" in err and "no-such-model" in err
    assert not out.exists()
    code = main(["train", "--model", "someorg/not-downloaded", "--data", str(xl_file), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Hugging Face cache" in err


@pytest.mark.parametrize("content, message", [
    ("", "empty"),
    ('{"id": "1", "lang": "sw", "instruction_en": "Hi", "response_en": "Hello", "instruction": "Habari"}\n',
     "line 1: field 'response' is missing"),
    ('{"id": "1", "lang": "sw", "instruction_en": "a", "response_en": "b", "instruction": "c", "response": "d", '
     '"translator": "reference"}\n{broken\n', "line 2: not valid JSON"),
    ('{"id": "1", "lang": "zz", "instruction_en": "a", "response_en": "b", "instruction": "c", "response": "d", '
     '"translator": "reference"}\n', "Unknown language 'zz'"),
    ('{"id": "1", "instruction": "Hi", "response": "Hello"}\n', "English SFT file"),
])
def test_bad_data_names_file_and_line(tiny_model, tmp_path, content, message, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_text(content)
    out = tmp_path / "run"
    code = main(["train", "--model", str(tiny_model), "--data", str(data), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "bad.jsonl" in err, err
    assert not out.exists()


def test_out_folder_in_use_is_refused(tiny_model, xl_file, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    code = main(["train", "--model", str(tiny_model), "--data", str(xl_file), "--out", str(out), "--max-steps", "1"])
    assert code == 2 and "already exists" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "precious"


def test_langs_and_models_commands(capsys):
    assert main(["langs"]) == 0
    out = capsys.readouterr().out
    for code in ("sw", "zh", "de", "ko", "id", "yo"):
        assert f"\n{code} " in out
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["name"] == "smollm2-135m-instruct" and "default" in rows[0]["aliases"]


def test_help_for_every_command():
    for cmd in ("train", "generate", "models", "langs", "runs"):
        code, stdout, _ = run_cli(cmd, "--help")
        assert code == 0 and "usage" in stdout


def test_unicode_line_separators_survive_a_round_trip(tmp_path):
    from clo.data.formats import load_crosslingual, write_jsonl

    row = {"id": "1", "lang": "sw", "instruction_en": "a\u2028b", "response_en": "c\u2029d", "instruction": "e\x85f",
           "response": "g", "translator": "reference"}
    path = write_jsonl(tmp_path / "x.jsonl", [row])
    assert load_crosslingual(path, "sw")[0]["instruction_en"] == "a\u2028b"


def test_english_loader_rejects_a_crosslingual_file(xl_file):
    from clo.data.formats import DataError, load_sft

    with pytest.raises(DataError, match="cross-lingual"):
        load_sft(xl_file)


@pytest.mark.parametrize("args", [["runs", "--json"], ["langs"], ["--help"]])
def test_output_into_a_closed_pipe_ends_quietly(tmp_path, args):
    """`python -m clo runs --json | head -1`: the reader goes away before (or while) the command writes. A pipe
    whose reading end is already closed makes this deterministic: every write fails with EPIPE."""
    if args[0] == "runs":
        for i in range(3):
            RunDir.create(tmp_path / "runs" / f"r{i}", {"method": "clo", "lang": "sw"})
        args = [*args, "--root", str(tmp_path / "runs")]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    read, write = os.pipe()
    os.close(read)
    try:
        p = subprocess.run([sys.executable, "-m", "clo", *args], stdout=write, stderr=subprocess.PIPE, text=True,
                           cwd=ROOT, env=env, timeout=600)
    finally:
        os.close(write)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr and "BrokenPipeError" not in p.stderr, p.stderr


def test_eval_checks_its_out_path_before_any_work(tmp_path, capsys):
    """An --out that cannot be written is refused before the models load: the model here does not even exist,
    and the error is about --out, not about the model."""
    folder = tmp_path / "a-folder"
    folder.mkdir()
    code = main(["eval", "--model", str(tmp_path / "no-such-model"), "--prompts", "demo", "--out", str(folder)])
    err = capsys.readouterr().err
    assert code == 2 and "--out is a folder" in err and "no-such-model" not in err, err
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    code = main(["eval", "--model", str(tmp_path / "no-such-model"), "--out", str(a_file / "answers.jsonl")])
    err = capsys.readouterr().err
    assert code == 2 and "is a file, not a folder" in err, err
    assert list(folder.iterdir()) == [] and a_file.read_text() == "x"


def test_eval_scores_existing_responses_without_a_model(tmp_path, capsys):
    rows = [
        {"id": "1", "lang": "sw", "prompt": "Kwa nini anga ni la buluu?", "model": "mine",
         "response": "Anga linaonekana la buluu kwa sababu hewa hutawanya mwanga wa buluu zaidi."},
        {"id": "1", "lang": "sw", "prompt": "Kwa nini anga ni la buluu?", "model": "theirs",
         "response": "Kuwa ziyeka vakuno mwena. Inamatika na piahekezieki naiyimana kwa sasa."},
        {"id": "2", "lang": "yo", "prompt": "Báwo ni?", "response": "Mo wà dáadáa, ẹ ṣé púpọ̀ fún ìbéèrè yín lónìí."},
    ]
    path = tmp_path / "answers.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert main(["eval", "--responses", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["models"]) == {"mine", "theirs", "responses"}
    mine = out["models"]["mine"]["sw"]
    assert {"clean_lpr", "clean_lpr_strict", "lpr", "real_word_rate", "real_word_rate_ci"} <= set(mine)
    assert mine["clean_lpr"] == 1.0 and out["models"]["theirs"]["sw"]["clean_lpr"] == 0.0
    assert out["models"]["responses"]["yo"]["real_word_rate"] is None


@pytest.mark.parametrize("content, message", [
    ('{"id": 1, "lang": "sw", "prompt": "p", "response": "r"}\n', "field 'id' must be a string"),
    ('{"id": "1", "lang": "sw", "prompt": "p"}\n', "field 'response' is missing"),
    ('{"id": "1", "lang": "xx", "prompt": "p", "response": "r"}\n', "line 1"),
    ('{"id": "1", "lang": "sw", "prompt": "p", "response": "r"}\n'
     '{"id": "1", "lang": "sw", "prompt": "p", "response": "r"}\n', "duplicate id"),
    ("not json\n", "not valid JSON"),
])
def test_eval_responses_bad_input_is_one_error_line(tmp_path, capsys, content, message):
    path = tmp_path / "answers.jsonl"
    path.write_text(content, encoding="utf-8")
    assert main(["eval", "--responses", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert main(["eval", "--responses", str(path), "--model", "default"]) == 2
