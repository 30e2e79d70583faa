"""The data folder keeps what a user wrote: previous versions on overwrite, hand fixes through a re-translation."""
from __future__ import annotations

from clo.data.stored import edit_record, free_dataset_path, keep_edits, previous_versions, save_dataset, search_records


def rec(i, text="Habari?", en="Hello?"):
    return {"id": f"s{i}", "lang": "sw", "instruction_en": en, "response_en": "Hi.", "instruction": text,
            "response": "Jambo.", "translator": "reference"}


def test_overwrites_keep_versions_and_retranslation_keeps_fresh_edits(tmp_path, monkeypatch):
    monkeypatch.setenv("CLO_DATA", str(tmp_path))
    path = free_dataset_path("demo", "sw")
    save_dataset([rec(1), rec(2)], path)
    edited = edit_record([rec(1), rec(2)], "s1", "Habari yako?", "Jambo.")
    save_dataset(edited, path)
    assert len(previous_versions(path)) == 1 and "+edited" not in previous_versions(path)[0].read_text()
    assert free_dataset_path("demo", "sw").name == "demo-sw-2.jsonl"  # taken: the next free name
    fresh = [rec(1, "Salamu?"), rec(2, "Salamu?")]
    rows, kept = keep_edits(fresh, edited)
    assert kept == ["s1"] and rows[0]["instruction"] == "Habari yako?" and rows[1]["instruction"] == "Salamu?"
    # a fix to an English text that has changed since is stale: the new translation wins
    rows, kept = keep_edits([rec(1, "Salamu?", en="Good day?")], edited)
    assert kept == [] and rows[0]["instruction"] == "Salamu?"
    assert [r["id"] for r in search_records(edited, "YAKO")] == ["s1"]
