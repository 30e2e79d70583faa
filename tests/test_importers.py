"""Importers: OpenAssistant exports in their own schema, generic JSONL/CSV/datasets tables, `clo data`."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from clo.cli.main import main
from clo.data.formats import DataError, load_sft
from clo.data.importers import import_oasst, import_table, read_oasst_messages

FIXTURES = Path(__file__).resolve().parent / "fixtures"
OASST = FIXTURES / "oasst_small.jsonl"
OASST_TREES = FIXTURES / "oasst_trees_small.jsonl"

BLACK_HOLE = "6ab24d72-0181-4594-a9cd-deaf170242fb"
GREEN_TEA = "d41f7c2e-8a3b-4f6d-9e1c-2b5a7d3e8f10"


# -- OpenAssistant ----------------------------------------------------------------------------------------------


def test_oasst_keeps_english_first_turns_with_the_top_ranked_reply():
    stats: dict = {}
    rows = import_oasst(OASST, stats=stats)
    assert [r["id"] for r in rows] == [BLACK_HOLE, GREEN_TEA]
    black_hole, tea = rows
    assert black_hole["instruction"] == "Can you explain what a black hole is in simple terms?"
    assert black_hole["response"].startswith("Imagine squeezing a whole star")  # rank 0, not the rank-1 reply
    assert "\n\nScientists" in black_hole["response"]  # paragraphs kept
    assert tea["response"].startswith("Heat water to about 80 °C")  # rank 0 failed review → next best
    assert all(r["source"] == "oasst1" and set(r) == {"id", "instruction", "response", "source"} for r in rows)
    text = json.dumps(rows)
    for never in ("How big can they get?", "billions of times", "Nairobi", "neighbour", "idk lol", "Bubbles"):
        assert never not in text  # second turn, Spanish, deleted, unranked
    assert stats == {"messages": 15, "prompts": 5, "kept": 2, "skipped_prompt": 2, "no_ranked_reply": 1}


def test_oasst_trees_and_gzip_give_the_same_records(tmp_path):
    flat = import_oasst(OASST)
    assert import_oasst(OASST_TREES) == flat
    gz = tmp_path / "2023-04-12_oasst_ready.trees.jsonl.gz"
    gz.write_bytes(gzip.compress(OASST_TREES.read_bytes()))
    assert import_oasst(gz) == flat
    assert import_oasst(OASST, limit=1) == flat[:1]
    messages = read_oasst_messages(OASST_TREES)
    second_turn = next(m for m in messages if m["text"] == "How big can they get?")
    assert second_turn["parent_id"] == "73d6f715-3787-409c-81e4-fde0e5ef60cd" and second_turn["_line"] == 1


def test_oasst_from_a_datasets_folder(tmp_path):
    from datasets import Dataset, DatasetDict

    rows = [json.loads(line) for line in OASST.read_text().splitlines()]
    for r in rows:  # keep the columns a datasets table can type consistently
        for k in ("emojis", "labels", "detoxify", "model_name"):
            r.pop(k)
    DatasetDict({"train": Dataset.from_list(rows[:10]), "validation": Dataset.from_list(rows[10:])}) \
        .save_to_disk(str(tmp_path / "oasst1"))
    assert import_oasst(tmp_path / "oasst1") == import_oasst(OASST)  # every split is read


@pytest.mark.parametrize("line, message", [
    ('{"message_id": "x", "parent_id": null, "role": "prompter", "text": "Hi", "lang": "en"', "not valid JSON"),
    ('["a list"]', "expected a JSON object"),
    ('{"id": 1, "instruction": "Hi"}', "neither an oasst message"),
    ('{"message_id": "x", "role": "user", "text": "Hi"}', "role 'user'"),
    ('{"message_id": "x", "role": "prompter"}', "without 'text'"),
    ('{"message_id": "x", "role": "assistant", "text": "Hi", "rank": "first"}', "'rank' must be a number"),
])
def test_oasst_malformed_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "broken.jsonl"
    good = OASST.read_text().splitlines()[:2]
    path.write_text("\n".join(good + [line]) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=message) as e:
        import_oasst(path)
    assert e.value.line == 3 and str(path) in str(e.value) and "line 3" in str(e.value)


def test_oasst_empty_duplicate_and_unusable_inputs(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        import_oasst(empty)
    dup = tmp_path / "dup.jsonl"
    first = OASST.read_text().splitlines()[0]
    dup.write_text(first + "\n" + first + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="duplicate message_id") as e:
        import_oasst(dup)
    assert e.value.line == 2
    spanish = tmp_path / "es.jsonl"
    spanish.write_text("\n".join(OASST.read_text().splitlines()[6:8]) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="no usable en first-turn pairs"):
        import_oasst(spanish)
    with pytest.raises(DataError, match="file not found"):
        import_oasst(tmp_path / "missing.jsonl.gz")
    bad_gz = tmp_path / "bad.jsonl.gz"
    bad_gz.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read"):
        import_oasst(bad_gz)


# -- generic tables ---------------------------------------------------------------------------------------------


def test_import_table_jsonl_and_csv(tmp_path):
    jsonl = tmp_path / "alpaca.jsonl"
    jsonl.write_text("".join(json.dumps({"uid": 10 + i, "prompt": f"Question {i}?", "output": f" Answer {i}. "}) + "\n"
                             for i in range(3)), encoding="utf-8")
    rows = import_table(jsonl, "prompt", "output")
    assert rows[0] == {"id": "alpaca-00001", "instruction": "Question 0?", "response": "Answer 0.", "source": "alpaca"}
    assert [r["id"] for r in import_table(jsonl, "prompt", "output", id_col="uid")] == ["10", "11", "12"]
    assert len(import_table(jsonl, "prompt", "output", limit=2, source="mine")) == 2

    csv = tmp_path / "qa.csv"
    csv.write_text('question,answer\n"What, exactly?","This, exactly."\nWhy?,Because.\n', encoding="utf-8")
    rows = import_table(csv, "question", "answer")
    assert [(r["instruction"], r["response"]) for r in rows] == [("What, exactly?", "This, exactly."),
                                                                  ("Why?", "Because.")]


def test_import_table_bad_input_is_named(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"q": "Hi?", "a": "Hello."}\n{"q": "Bye?"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="no column 'answer'; the columns are: q, a"):
        import_table(path, "q", "answer")
    with pytest.raises(DataError, match="column 'a' is missing") as e:
        import_table(path, "q", "a")
    assert e.value.line == 2 and "line 2" in str(e.value)

    path.write_text('{"q": "Hi?", "a": "Hello."}\n{"q": "Bye?", "a": 3}\n', encoding="utf-8")
    with pytest.raises(DataError, match="must be text") as e:
        import_table(path, "q", "a")
    path.write_text('{"q": "Hi?", "a": "Hello."}\n{"q": "Bye?", "a": "Bye."\n', encoding="utf-8")
    with pytest.raises(DataError, match="not valid JSON") as e:
        import_table(path, "q", "a")
    assert e.value.line == 2 and str(path) in str(e.value)
    path.write_text('{"k": 1, "q": "Hi?", "a": "Hello."}\n{"k": 1, "q": "Bye?", "a": "Bye."}\n', encoding="utf-8")
    with pytest.raises(DataError, match="duplicate id '1'"):
        import_table(path, "q", "a", id_col="k")
    path.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        import_table(path, "q", "a")


def test_import_table_from_a_datasets_folder(tmp_path):
    from datasets import Dataset, DatasetDict

    train = Dataset.from_dict({"instruction": ["Hi?", "Bye?"], "output": ["Hello.", "Goodbye."]})
    test = Dataset.from_dict({"instruction": ["Why?"], "output": ["Because."]})
    DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "ds"))
    rows = import_table(tmp_path / "ds", response_col="output")
    assert [r["response"] for r in rows] == ["Hello.", "Goodbye."] and rows[0]["source"] == "ds"
    assert [r["response"] for r in import_table(tmp_path / "ds", response_col="output", split="test")] == ["Because."]
    with pytest.raises(DataError, match="no split 'dev'; splits: train, test"):
        import_table(tmp_path / "ds", response_col="output", split="dev")
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataError, match="not a dataset saved with save_to_disk"):
        import_table(tmp_path / "plain")


# -- CLI --------------------------------------------------------------------------------------------------------


def test_cli_data_import_commands(tmp_path, capsys):
    out = tmp_path / "oasst-en.jsonl"
    assert main(["data", "import-oasst", str(OASST), "--out", str(out)]) == 0
    assert "2 English SFT records" in capsys.readouterr().out
    assert [r["id"] for r in load_sft(out)] == [BLACK_HOLE, GREEN_TEA]

    table = tmp_path / "t.csv"
    table.write_text("q,a\nHi?,Hello.\n", encoding="utf-8")
    out2 = tmp_path / "t.jsonl"
    assert main(["data", "import", str(table), "--instruction-col", "q", "--response-col", "a", "--out", str(out2),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["records"] == 1
    assert load_sft(out2)[0]["response"] == "Hello."
