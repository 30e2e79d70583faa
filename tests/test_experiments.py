"""The experiments of docs/results.md: YAML files (experiments/*.yaml) declare the rows, one runner runs them,
and the page's tables are generated from docs/results-data.jsonl (bench/experiments.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import experiments, objectives_table

ROOT = Path(__file__).resolve().parent.parent
# the experiment files with a table on the page
PUBLISHED = ["smollm2-sw", "gemma-sw", "smollm2-languages", "smollm2-multi"]


def test_every_table_of_results_md_is_what_the_data_gives():
    """`python -m bench.experiments docs --check`: a hand edit of a table, or a row re-measured without the page
    regenerated, fails here."""
    assert experiments.docs(check=True) == 0
    page = experiments.PAGE.read_text(encoding="utf-8")
    assert [m.group(2) for m in experiments.MARK.finditer(page)] == [f"experiments/{r}.yaml" for r in PUBLISHED]


def test_a_changed_row_changes_the_page():
    records = experiments.read_records(experiments.DATA)
    page = experiments.PAGE.read_text(encoding="utf-8")
    moved = [{**r, "scores": {**r["scores"], "sw": {**r["scores"]["sw"], "chrf": 99.0, "chrf_ci": None}}}
             if r["name"] == "ipo-sw-default-s1" else r for r in records]
    new = experiments.rewrite_page(page, moved)
    assert new != page
    assert "| ipo-sw-default | 1 | 0.00 (0.00–0.07) | 0.00 (0.00–0.07) | 0.23 (0.20–0.25) | 99.0 |" in new
    assert experiments.rewrite_page(new, records) == page  # and back


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (ROOT / "experiments").glob("*.yaml")))
def test_every_experiment_plans_rows_the_runner_knows(experiment):
    r = experiments.load_experiment(ROOT / "experiments" / f"{experiment}.yaml")
    runs = experiments.plan(r)
    assert runs and len({name for name, *_ in runs}) == len(runs) or r.get("multi") or any(
        "multi" in e for e in r.get("rows", []))  # a multi row shares its single-target rows with the table's
    if experiment in PUBLISHED:  # every row of a published table is published
        published = {rec["name"] for rec in experiments.read_records(experiments.DATA)}
        assert {name for name, *_ in runs} <= published


def test_the_published_rows_keep_their_names_and_commands():
    """The experiment files declare the rows the page was measured with: same names, same `clo train` flags as
    bench/objectives_table.py gives them."""
    runs = {name: (lang, options, flags) for name, lang, options, flags in
            experiments.plan(experiments.load_experiment(ROOT / "experiments" / "smollm2-sw.yaml"))}
    assert runs["base-sw-default"] == ("sw", ["--base", "--model", "default"], [])
    assert runs["sft-sw-default-s3"][2] == ["--method", "sft", "--precision", "fp32", "--preset", "demo", "--model",
                                            "default", "--max-steps", "21", "--seed", "3"]
    assert "clo-sw-default-s2" in runs and "kto-sw-default-s2" not in runs  # seeds per row
    langs = experiments.plan(experiments.load_experiment(ROOT / "experiments" / "smollm2-languages.yaml"))
    assert [n for n, *_ in langs][:4] == ["base-de-default", "clo-de-default-s1", "sft-de-default-s1",
                                          "base-id-default"]
    multi = experiments.plan(experiments.load_experiment(ROOT / "experiments" / "smollm2-multi.yaml"))
    assert multi[0][:2] == ("multi-sw-yo-de-default-s1", "sw,yo,de") and "63" in multi[0][3]


def test_the_runner_runs_what_is_not_measured_and_stops_at_a_failure(tmp_path, monkeypatch, capsys):
    experiment = tmp_path / "tiny.yaml"
    experiment.write_text("model: default\npreset: demo\nlang: sw\nsteps: 2\nrows:\n  - row: base\n"
                      "  - {row: clo, seeds: [1, 2]}\n  - row: orpo\n")
    ran = []
    monkeypatch.setattr(objectives_table, "done_names", lambda: {"clo-sw-default-s1"})
    monkeypatch.setattr(objectives_table, "run_one",
                        lambda name, lang, flags, options=(): ran.append((name, options, flags)) or 0)
    assert experiments.main(["run", str(experiment)]) == 0
    assert [n for n, *_ in ran] == ["base-sw-default", "clo-sw-default-s2", "orpo-sw-default-s1"]
    assert ran[0][1] == ["--base", "--model", "default"] and "--max-steps" in ran[1][2]
    assert "clo-sw-default-s1: already measured, skipped" in capsys.readouterr().out
    ran.clear()
    monkeypatch.setattr(objectives_table, "run_one", lambda name, lang, flags, options=(): ran.append(name) or 3)
    assert experiments.main(["run", str(experiment)]) == 3 and ran == ["base-sw-default"]
    assert experiments.main(["run", str(experiment), "--dry-run"]) == 0


def test_the_runner_writes_its_rows_where_the_table_reads_them(tmp_path, monkeypatch, capsys):
    """`run_one` appends the row's record; `table` prints it from artifacts/experiments/results.jsonl."""
    results = tmp_path / "results.jsonl"
    monkeypatch.setattr(objectives_table, "RESULTS", results)
    rec = {"name": "clo-sw-default-s1", "lang": "sw", "kind": "train", "rescored": "now",
           "scores": {"sw": {"clean_lpr": 0.5, "clean_lpr_ci": [0.4, 0.6]}, "en": {"chrf": 20.0}}}
    results.write_text(json.dumps(rec) + "\n")
    experiment = tmp_path / "r.yaml"
    experiment.write_text("lang: sw\nrows:\n  - row: clo\n")
    assert experiments.main(["table", str(experiment)]) == 0
    assert "| clo-sw-default ‡ | 1 | – | 0.50 (0.40–0.60) | – | – | – | – | 20.0 | – | – |" in capsys.readouterr().out


@pytest.mark.parametrize("text, message", [("rows:\n  - row: dpo\n", "unknown row 'dpo'"),
                                           ("modle: default\n", "unknown key"),
                                           ("rows:\n  - {seeds: [1]}\n", "a row is")])
def test_a_wrong_experiment_file_is_refused_with_the_file_named(tmp_path, capsys, text, message):
    experiment = tmp_path / "bad.yaml"
    experiment.write_text(text)
    assert experiments.main(["run", str(experiment), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert message in err and "bad.yaml" in err
