"""Two methods over several seeds: the bootstrap over prompts and seeds (clo.evaluation.intervals.seeds_bootstrap)
and the comparison built on real answers files (clo.evaluation.comparison, bench/seed_compare.py)."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from clo.data.formats import DataError, load_prompts
from clo.evaluation.comparison import compare_methods
from clo.evaluation.intervals import seeds_bootstrap


def rates(*seeds: list[int]) -> np.ndarray:
    """(seeds, prompts, 2) rows [passed, 1] from 0/1 lists."""
    return np.array([[[float(v), 1.0] for v in s] for s in seeds])


def test_the_value_is_the_mean_over_seeds_and_a_constant_has_no_spread():
    a = rates([1, 1, 0, 0], [1, 1, 1, 0])  # 0.50 and 0.75
    r = seeds_bootstrap(a)
    assert r["value"] == pytest.approx(0.625)
    assert r["per_seed"] == [0.5, 0.75]
    const = seeds_bootstrap(rates([1, 1, 1], [1, 1, 1]), rates([0, 0, 0], [0, 0, 0]))
    assert const["value"] == 1.0 and const["ci"] == (1.0, 1.0)


def test_seeds_that_disagree_widen_the_interval_beyond_the_prompts_alone():
    rng = np.random.default_rng(0)
    flags = rng.random(48) < 0.5
    same = rates(flags, flags, flags)  # three seeds that gave the same answers: only the prompts vary
    split = rates(np.ones(48), flags, np.zeros(48))  # same mean over seeds, seeds far apart
    lo_s, hi_s = seeds_bootstrap(same, n_resamples=1000)["ci"]
    lo_x, hi_x = seeds_bootstrap(split, n_resamples=1000)["ci"]
    assert hi_x - lo_x > 2 * (hi_s - lo_s)


def test_a_difference_is_signed_a_minus_b_and_excluded_answers_do_not_count():
    a = rates([1] * 30, [1] * 29 + [0])
    b = rates([0] * 30, [1] + [0] * 29)
    d = seeds_bootstrap(a, b, n_resamples=500)
    assert d["value"] == pytest.approx((1 + 29 / 30) / 2 - (1 / 30) / 2)
    assert d["ci"][0] > 0.8  # far from 0: A higher
    left_out = np.array([[[1.0, 1.0], [0.0, 0.0], [0.0, 1.0]]])  # the middle answer is excluded
    assert seeds_bootstrap(left_out)["value"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same prompts"):
        seeds_bootstrap(rates([1, 0]), rates([1, 0, 1]))


def shuffle_words(text: str, rng: random.Random) -> str:
    out = []
    for word in text.split():
        chars = list(word)
        rng.shuffle(chars)
        out.append("".join(chars))
    return " ".join(out)


def write_answers(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_real_swahili_against_shuffled_letters_over_two_seeds(tmp_path):
    prompts = load_prompts("demo", ["sw"])[:16]
    real, noise = [], []
    for seed in (1, 2):
        rng = random.Random(seed)
        real.append(write_answers(tmp_path / f"real-s{seed}.jsonl", [
            {**p, "model": "real", "response": p["reference"]} for p in prompts]))
        noise.append(write_answers(tmp_path / f"noise-s{seed}.jsonl", [  # ids in another order: matched by id
            {**p, "model": "noise", "response": shuffle_words(p["reference"], rng)} for p in reversed(prompts)]))
    r = compare_methods(real, noise, "sw", n_resamples=300)
    assert r["n_prompts"] == 16 and r["seeds"] == [2, 2]
    words = r["metrics"]["real_word_rate"]
    assert words["a"]["value"] > 0.8 and words["b"]["value"] < 0.3
    assert words["diff"]["ci"][0] > 0.4  # the whole interval above 0
    assert r["metrics"]["clean_lpr"]["diff"]["value"] > 0.7
    assert r["metrics"]["chrf"]["a"]["value"] == pytest.approx(100.0)  # the references themselves
    assert r["metrics"]["chrf"]["diff"]["ci"][0] > 0


def test_answers_to_other_prompts_are_refused_with_the_file_named(tmp_path):
    prompts = load_prompts("demo", ["sw"])
    a = write_answers(tmp_path / "a-s1.jsonl", [{**p, "response": p["reference"]} for p in prompts[:4]])
    b = write_answers(tmp_path / "b-s1.jsonl", [{**p, "response": p["reference"]} for p in prompts[4:8]])
    with pytest.raises(DataError, match="different sw prompts"):
        compare_methods([a], [b], "sw")
    with pytest.raises(DataError, match="no yo answers"):
        compare_methods([a], [a], "yo")


def test_seed_compare_script_finds_each_rows_seed_files_and_prints_the_table(tmp_path, capsys):
    from bench.seed_compare import main

    prompts = load_prompts("demo", ["sw"])[:6]
    for seed in (1, 2, 10):  # seed 10 sorts after 2
        write_answers(tmp_path / f"clo-sw-x-s{seed}.responses.jsonl",
                      [{**p, "response": p["reference"]} for p in prompts])
    write_answers(tmp_path / "sft-sw-x-s1.responses.jsonl", [{**p, "response": "hello there"} for p in prompts])
    assert main(["clo-sw-x", "sft-sw-x", "--lang", "sw", "--folder", str(tmp_path), "--resamples", "100",
                 "--json", str(tmp_path / "out.json")]) == 0
    out = capsys.readouterr().out
    assert "| sw | real words | 3/1 |" in out and "A higher" in out
    assert json.loads((tmp_path / "out.json").read_text())["results"][0]["seeds"] == [3, 1]
    assert main(["clo-sw-x", "nothing", "--folder", str(tmp_path)]) == 2


def test_published_answers_serve_seed_compare_where_the_runs_are_not(tmp_path, monkeypatch, capsys):
    """bench/results_chart.py copies each row's answers to docs/answers/ (gzipped, byte-stable); on a machine
    without the runs, bench/seed_compare.py compares the published copies."""
    import bench.results_chart as chart
    import bench.seed_compare as compare

    runs, published = tmp_path / "experiments", tmp_path / "answers"
    runs.mkdir()
    monkeypatch.setattr(chart, "SRC", runs / "results.jsonl")
    monkeypatch.setattr(chart, "ANSWERS", published)
    monkeypatch.setattr(compare, "PUBLISHED", published)
    prompts = load_prompts("demo", ["sw"])[:6]
    for seed in (1, 2):
        write_answers(runs / f"orpo-sw-x-s{seed}.responses.jsonl", [{**p, "response": p["reference"]} for p in prompts])
    write_answers(runs / "sft-sw-x-s1.responses.jsonl", [{**p, "response": "hello there"} for p in prompts])
    chart.publish_answers(["orpo-sw-x-s1", "orpo-sw-x-s2", "sft-sw-x-s1", "gone-s1"])
    first = (published / "orpo-sw-x-s1.responses.jsonl.gz").read_bytes()
    chart.publish_answers(["orpo-sw-x-s1"])
    assert (published / "orpo-sw-x-s1.responses.jsonl.gz").read_bytes() == first  # same answers, same bytes
    assert sorted(p.name for p in published.iterdir()) == ["orpo-sw-x-s1.responses.jsonl.gz",
                                                           "orpo-sw-x-s2.responses.jsonl.gz",
                                                           "sft-sw-x-s1.responses.jsonl.gz"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert compare.main(["orpo-sw-x", "sft-sw-x", "--lang", "sw", "--folder", str(empty), "--resamples", "50"]) == 0
    assert "| sw | real words | 2/1 |" in capsys.readouterr().out
