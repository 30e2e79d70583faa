"""Objectives beyond the paper, several target languages in one run, the English anchor: real runs on a tiny
model (docs/design.md, "Objectives", "Several target languages")."""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest
import yaml
from helpers import run_cli, two_language_file

from bench import objectives_table
from clo.core.spec import SpecError, TrainSpec
from clo.runs.catalog import run_table
from clo.runs.rundir import RunDir
from clo.training.run import load_records, run_training


def _phases(events: list[dict]) -> list[str]:
    return [e["phase"] for e in events if "phase" in e]


# -- settings -------------------------------------------------------------------------------------------------


def test_spec_takes_several_languages_and_keeps_one():
    assert TrainSpec(lang="sw").langs == ["sw"] and TrainSpec(lang="sw").to_dict()["lang"] == "sw"
    s = TrainSpec.from_dict({"lang": ["sw", "yo", "zh"], "objective": "simpo", "simpo_gamma": 1.0,
                             "english_anchor": 0.5})
    assert s.langs == ["sw", "yo", "zh"] and s.lang == "sw,yo,zh"
    again = TrainSpec.from_dict(yaml.safe_load(yaml.safe_dump(s.to_dict())))  # config.yaml round trip (resume)
    assert again == s and again.needs_reference  # the anchor needs the reference even under SimPO
    assert TrainSpec(lang=" sw , yo").lang == "sw,yo"
    assert not TrainSpec(objective="orpo").needs_reference and TrainSpec(objective="ipo").needs_reference
    for bad, msg in ((dict(lang="sw,sw"), "twice"), (dict(lang="sw,en"), "English"), (dict(lang="sw,xx"), "xx"),
                     (dict(objective="ppo"), "Unknown objective"), (dict(simpo_gamma=-1), "simpo_gamma"),
                     (dict(english_nll="a"), "english_nll")):
        with pytest.raises(SpecError, match=msg):
            TrainSpec(**bad)


def test_cli_flags_for_the_new_settings():
    from clo.cli.main import build_parser, spec_from_args

    args = build_parser().parse_args(["train", "--objective", "orpo", "--lang", "sw,yo", "--english-anchor", "0.2",
                                      "--english-nll", "0.1", "--simpo-gamma", "0.3", "--data", "demo"])
    s = spec_from_args(args)
    assert (s.objective, s.langs, s.english_anchor, s.english_nll, s.simpo_gamma) == ("orpo", ["sw", "yo"], 0.2,
                                                                                      0.1, 0.3)


def test_records_of_several_languages_pair_each_sample_with_each_translation(tmp_path):
    data = two_language_file(tmp_path / "xl.jsonl")
    recs = load_records(TrainSpec(lang="sw,yo", data=str(data)))
    assert [r["lang"] for r in recs] == ["sw"] * 4 + ["yo"] * 4
    assert [r["id"] for r in recs[:4]] == [r["id"] for r in recs[4:]]  # the same English samples in each
    assert len(load_records(TrainSpec(lang="sw,yo", data=str(data), limit=2))) == 4  # the first N of each
    demo = load_records(TrainSpec(lang="sw,yo", data="demo", limit=3))
    assert [r["lang"] for r in demo] == ["sw"] * 3 + ["yo"] * 3


# -- reference-free objectives --------------------------------------------------------------------------------


@pytest.mark.parametrize("objective", ["simpo", "orpo"])
def test_reference_free_run_has_no_reference_pass_and_no_cache(tiny_model, xl_file, tmp_path, monkeypatch,
                                                               objective):
    home = tmp_path / "home"
    monkeypatch.setenv("CLO_HOME", str(home))
    events = []
    spec = TrainSpec(objective=objective, model=str(tiny_model), data=str(xl_file), batch_size=2, max_steps=2,
                     lr=1e-3)
    result = run_training(spec, tmp_path / "run", events=events.append)
    assert result.state == "finished" and result.steps == 2
    assert "reference" not in _phases(events) and "training" in _phases(events)
    assert result.ref_cache_hit is None and result.ref_pass_seconds is None
    assert not (home / "refcache").exists() or not list((home / "refcache").iterdir())  # no cache file
    st = RunDir(tmp_path / "run").status()
    assert st["state"] == "finished" and st.get("ref_pass_s") is None
    rows = RunDir(tmp_path / "run").metrics()
    assert all(r["loss"] == r["loss"] for r in rows) and "margin" in rows[-1]  # finite, logged
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["objective"] == objective


def test_reference_free_objective_with_the_anchor_runs_the_reference_pass(tiny_model, xl_file, tmp_path,
                                                                          monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("CLO_HOME", str(home))
    events = []
    spec = TrainSpec(objective="simpo", english_anchor=1.0, english_nll=0.1, model=str(tiny_model),
                     data=str(xl_file), batch_size=2, max_steps=2, lr=1e-2, precision="fp32")  # exactly 0 below
    result = run_training(spec, tmp_path / "run", events=events.append)
    assert "reference" in _phases(events) and result.ref_cache_hit is False
    assert len(list((home / "refcache").glob("*.safetensors"))) == 1
    rows = RunDir(tmp_path / "run").metrics()
    assert rows[0]["anchor_loss"] == pytest.approx(0, abs=1e-5)  # step 1: the policy is the reference
    assert "en_sft_loss" in rows[-1] and "en_rewards_chosen" in rows[-1]


@pytest.mark.parametrize("objective", ["ipo", "orpo", "kto"])
def test_sft_dpo_second_stage_takes_the_objective(tiny_model, xl_file, tmp_path, objective):
    spec = TrainSpec(method="sft-dpo", objective=objective, model=str(tiny_model), data=str(xl_file),
                     batch_size=2, max_steps=1)
    result = run_training(spec, tmp_path / "run")
    assert result.state == "finished" and result.steps == 2
    assert [r["stage"] for r in RunDir(tmp_path / "run").metrics()] == ["sft", "dpo"]


# -- several target languages ---------------------------------------------------------------------------------


def test_multi_target_run_covers_every_sample_language_once_with_both_directions_together(tiny_model, tmp_path,
                                                                                        monkeypatch):
    data = two_language_file(tmp_path / "xl.jsonl", copies=2)  # 8 samples × 2 languages = 16 units
    dbg = tmp_path / "samples.dbg"
    monkeypatch.setenv("CLO_DEBUG_SAMPLES", str(dbg))
    spec = TrainSpec(lang="sw,yo", model=str(tiny_model), data=str(data), batch_size=4, epochs=2, max_length=128,
                     lr=1e-3, seed=3)
    result = run_training(spec, tmp_path / "run")
    assert result.state == "finished" and result.steps == 8  # 16 units / 4 a batch × 2 epochs
    rows = [json.loads(line) for line in Path(f"{dbg}.rank0").read_text().splitlines()]
    batches = [r for r in rows if r["event"] == "batch"]
    assert len(batches) == 8
    recs = load_records(spec)
    for epoch in (0, 1):
        seen = Counter()
        for b in batches[4 * epoch: 4 * epoch + 4]:
            pairs = sorted(zip(b["samples"], b["is_target"], b["lang_id"]))
            for s in set(b["samples"]):
                mine = [p for p in pairs if p[0] == s]
                lang = spec.langs.index(recs[s]["lang"])
                assert mine == [(s, 0, lang), (s, 1, lang)], b  # both directions of a (sample, language), together
                seen[s] += 1
        assert sorted(seen) == list(range(16)) and set(seen.values()) == {1}  # each (sample, language) once
    assert any(len(set(b["lang_id"])) == 2 for b in batches)  # batches mix languages
    metrics = RunDir(tmp_path / "run").metrics()
    for key in ("margin_sw", "margin_yo", "accuracy_sw", "accuracy_yo"):
        assert any(key in r for r in metrics), key
    assert os.environ["CLO_DEBUG_SAMPLES"]


def test_done_when_cli_simpo_on_two_demo_languages(tiny_model, tmp_path):
    """`python -m clo train --objective simpo --lang sw,yo --data demo --max-steps 2` (on the tiny model)."""
    out = tmp_path / "runs" / "simpo-sw-yo"
    code, stdout, stderr = run_cli("train", "--objective", "simpo", "--lang", "sw,yo", "--data", "demo",
                                   "--max-steps", "2", "--batch-size", "2", "--model", str(tiny_model),
                                   "--out", str(out), "--json", env={"CLO_HOME": str(tmp_path / "home")})
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["state"] == "finished" and summary["steps"] == 2 and summary["ref_cache_hit"] is None
    cfg = RunDir(out).config()
    assert cfg["objective"] == "simpo" and cfg["lang"] == "sw,yo"
    assert not (tmp_path / "home" / "refcache").exists()

    row = next(r for r in run_table(tmp_path / "runs") if r["run"] == "simpo-sw-yo")
    assert row["objective"] == "simpo" and row["lang"] == "sw,yo"


def test_objectives_table_plans_every_row_on_one_budget(capsys):
    """bench/objectives_table.py (the measured table's command): every objective, the anchor and SFT per seed
    on the same steps; the multi-target run has the steps of its single-target runs together."""
    assert objectives_table.main(["--dry-run", "--seeds", "1,2", "--steps", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 * len(objectives_table.ROWS)
    assert all("--max-steps 5" in line for line in lines)
    for objective in ("clo", "ipo", "kto", "orpo", "simpo"):
        assert any(f"--objective {objective}" in line for line in lines)
    assert any("--english-anchor" in line for line in lines) and any("--method sft " in line for line in lines)
    assert objectives_table.main(["--dry-run", "--multi", "sw,yo,de", "--model", "default", "--seeds", "1",
                                  "--steps", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "--lang sw,yo,de" in lines[0] and "--max-steps 15" in lines[0]
    assert [("--max-steps 5" in line) for line in lines[1:]] == [True, True, True]
    # the single-target runs are the table's own `clo` rows, so a language measured once serves both
    assert [line.split(":")[0] for line in lines[1:]] == ["clo-sw-default-s1", "clo-yo-default-s1", "clo-de-default-s1"]
    # another learning rate than the preset's: its own rows, so they never stand in for the preset's
    assert objectives_table.main(["--dry-run", "--seeds", "1", "--rows", "clo,clo-anchor", "--lr", "4e-4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["clo-sw-gemma-3-270m-lr4e-4-s1",
                                                      "clo-anchor-sw-gemma-3-270m-lr4e-4-s1"]
    assert all("--lr 4e-4" in line for line in lines)
    # every row computes in fp32 as the published rows did, unless asked: then the rows have their own names
    assert all("--precision fp32" in line for line in lines)
    assert objectives_table.main(["--dry-run", "--seeds", "1", "--rows", "clo", "--precision", "bf16"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("clo-sw-gemma-3-270m-bf16-s1:") and "--precision bf16" in line


def test_objectives_table_compares_the_multi_target_run_per_language(tmp_path, monkeypatch, capsys):
    """`--table --multi sw,yo`: per language, the multi-target run's score beside that language's own
    single-target `clo` row; English of the multi run beside each single run's English."""
    def record(name, langs, steps, score):
        scores = {c: {"clean_lpr": score, "clean_lpr_ci": [score - 0.1, score], "real_word_rate": score / 2,
                      "chrf": 10 * score} for c in [*langs, "en"]}
        return json.dumps({"name": name, "lang": ",".join(langs), "config": {"max_steps": steps}, "scores": scores})

    results = tmp_path / "results.jsonl"
    results.write_text("\n".join([record("multi-sw-yo-default-s1", ["sw", "yo"], 10, 0.5),
                                  record("clo-sw-default-s1", ["sw"], 5, 0.9),
                                  record("clo-yo-default-s1", ["yo"], 5, 0.7)]) + "\n")
    monkeypatch.setattr(objectives_table, "RESULTS", results)
    assert objectives_table.main(["--table", "--multi", "sw,yo", "--model", "default", "--seeds", "1"]) == 0
    out = capsys.readouterr().out
    assert "(10 steps)" in out
    assert "| sw | clean LPR | 0.90 (0.80–0.90) | 0.50 (0.40–0.50) |" in out
    assert "| yo | chrF++ | 7.0 | 5.0 |" in out
    assert "| en | real words | sw: 0.45 · yo: 0.35 | 0.25 |" in out
    # nothing measured yet: said, not a crash
    results.write_text("")
    assert objectives_table.main(["--table", "--multi", "sw,yo", "--model", "default", "--seeds", "1"]) == 0
    assert "no multi-target run" in capsys.readouterr().out


def test_demo_experiment_rescore_replaces_scores_from_the_saved_answers(tmp_path, monkeypatch, capsys):
    """`bench/demo_experiment.py --rescore`: a record's scores become those of its saved answers under today's
    scoring code (a fix to a metric reaches every published row); a record without saved answers is kept."""
    from bench import demo_experiment
    from clo.evaluation.evaluate import score_answers

    sw = "Watoto wanacheza mpira shuleni kila siku baada ya masomo, na mwalimu anawaangalia."
    answers = [{"model": "default", "id": "a", "lang": "sw", "prompt": "Habari?", "response": sw, "reference": sw},
               {"model": "default", "id": "b", "lang": "en", "prompt": "Hello?", "response": "Children play.",
                "reference": "Children play football."}]
    (tmp_path / "clo-x.responses.jsonl").write_text("".join(json.dumps(a) + "\n" for a in answers))
    stale = {"sw": {"clean_lpr": 0.0, "real_word_rate": 0.97}}
    results = tmp_path / "results.jsonl"
    results.write_text(json.dumps({"name": "clo-x", "lang": "sw", "scores": stale}) + "\n"
                       + json.dumps({"name": "gone", "lang": "sw", "scores": stale}) + "\n")
    monkeypatch.setattr(demo_experiment, "OUT", tmp_path)
    assert demo_experiment.rescore(results) == 0
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    expected = json.loads(json.dumps(score_answers([{**a, "model": "clo-x"} for a in answers])["models"]["clo-x"]))
    assert rows[0]["scores"] == expected and rows[0]["scores"]["sw"]["clean_lpr"] == 1.0 and "rescored" in rows[0]
    assert rows[0]["scoring"] == demo_experiment.VERDICT  # the row says which verdict scored it
    assert rows[1] == {"name": "gone", "lang": "sw", "scores": stale}
    out = capsys.readouterr().out
    assert "clo-x: " in out and "gone: no saved answers" in out and "1 with new scores" in out

    # a fresh machine has only the answers published in docs/answers/: --rescore reads those
    import gzip

    (tmp_path / "clo-x.responses.jsonl").rename(tmp_path / "moved.jsonl")
    published = tmp_path / "root" / "docs" / "answers"
    published.mkdir(parents=True)
    (published / "clo-x.responses.jsonl.gz").write_bytes(gzip.compress((tmp_path / "moved.jsonl").read_bytes()))
    results.write_text(json.dumps({"name": "clo-x", "lang": "sw", "scores": stale}) + "\n")
    monkeypatch.setattr(demo_experiment, "ROOT", tmp_path / "root")
    assert demo_experiment.rescore(results) == 0
    assert json.loads(results.read_text())["scores"] == expected
