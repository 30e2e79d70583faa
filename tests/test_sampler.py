"""Length grouping (--group-by-length): pairs stay together, every sample once, less padding, real training runs."""
from __future__ import annotations

import random

import pytest
import yaml

from clo.core.spec import TrainSpec
from clo.training.run import run_training
from clo.training.sampling import PairSampler


def _padded(order: list[int], row_lengths: list[int], batch_rows: int) -> tuple[int, int]:
    real = padded = 0
    for i in range(0, len(order), batch_rows):
        batch = [row_lengths[r] for r in order[i : i + batch_rows]]
        real += sum(batch)
        padded += max(batch) * len(batch)
    return real, padded


def test_grouped_sampler_keeps_pairs_and_covers_every_sample_once():
    rng = random.Random(0)
    lengths = [rng.randint(10, 200) for _ in range(2 * 100)]
    s = PairSampler(len(lengths), seed=1, lengths=lengths, batch_samples=4)
    order = list(s)
    assert sorted(order) == list(range(200))
    for i in range(0, 200, 2):
        assert order[i] % 2 == 0 and order[i + 1] == order[i] + 1
    assert list(s) != order  # the next epoch gets another order


def test_grouped_sampler_pads_less_than_random_order():
    rng = random.Random(1)
    lengths = [rng.randint(10, 200) for _ in range(2 * 160)]
    grouped = list(PairSampler(len(lengths), seed=2, lengths=lengths, batch_samples=8))
    plain = list(PairSampler(len(lengths), seed=2))
    real_g, pad_g = _padded(grouped, lengths, 16)
    real_p, pad_p = _padded(plain, lengths, 16)
    assert real_g == real_p
    assert pad_g < 0.85 * pad_p  # uniform lengths: grouping removes most of the padding


@pytest.mark.parametrize("method", ["clo", "sft"])
def test_training_with_length_grouping(tiny_model, xl_file, tmp_path, method):
    spec = TrainSpec(method=method, model=str(tiny_model), data=str(xl_file), batch_size=2, max_steps=2,
                     group_by_length=True, max_length=256)
    result = run_training(spec, tmp_path / "run")
    assert result.state == "finished" and result.steps == 2
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["group_by_length"] is True and TrainSpec.from_dict(config).group_by_length  # reproducible


def test_cli_flag_sets_and_unsets_grouping(tmp_path):
    from clo.cli.main import build_parser, spec_from_args

    args = build_parser().parse_args(["train", "--group-by-length", "--data", "demo"])
    assert spec_from_args(args).group_by_length is True
    args = build_parser().parse_args(["train", "--no-group-by-length", "--data", "demo"])
    assert spec_from_args(args).group_by_length is False


# -- several target languages: stratified batches ------------------------------------------------------------------


def _langs(sizes: tuple[int, ...], seed: int = 0) -> list[int]:
    """Each sample's language (0, 1, …; ``sizes[k]`` samples of language k), in a scrambled data order."""
    units = [k for k, n in enumerate(sizes) for _ in range(n)]
    random.Random(seed).shuffle(units)
    return units


def _rows(units: list[int]) -> list[int]:
    return [g for g in units for _ in range(2)]  # both rows of a sample carry its language


@pytest.mark.parametrize("sizes", [(12, 12), (30, 10), (7, 5, 3), (40, 1)])
@pytest.mark.parametrize("grouped", [False, True])
def test_several_languages_fill_every_batch_in_proportion(sizes, grouped):
    units = _langs(sizes)
    n, batch = len(units), 4
    rng = random.Random(1)
    lengths = [rng.randint(10, 200) for _ in range(2 * n)] if grouped else None
    order = list(PairSampler(2 * n, seed=3, lengths=lengths, batch_samples=batch, groups=_rows(units)))
    assert sorted(order) == list(range(2 * n))  # every sample once…
    assert all(order[i] % 2 == 0 and order[i + 1] == order[i] + 1 for i in range(0, 2 * n, 2))  # …its pair together
    samples = [r // 2 for r in order[::2]]
    for start in range(0, n, batch):
        got = [units[s] for s in samples[start:start + batch]]
        want = len(got) / n
        for k, size in enumerate(sizes):
            assert abs(got.count(k) - size * want) < 2, (start, got)  # each language's share, within a sample or so
    if sizes == (12, 12) and not grouped:  # two equal languages: every batch holds two of each
        assert all(sorted(units[s] for s in samples[i:i + batch]) == [0, 0, 1, 1] for i in range(0, n, batch))
    if not grouped:  # any first k samples: each language within one sample of its share (two languages)
        for k in range(1, n + 1):
            head = [units[s] for s in samples[:k]]
            assert all(abs(head.count(g) - k * size / n) < (1 if len(sizes) == 2 else 2)
                       for g, size in enumerate(sizes))


def test_stratified_order_is_seeded_and_a_resumed_epoch_gets_the_same():
    rows = _rows(_langs((20, 8, 5)))
    first = PairSampler(len(rows), seed=7, groups=rows)
    epochs = [list(first) for _ in range(3)]
    assert epochs[0] != epochs[1] != epochs[2]  # a new order each epoch…
    again = PairSampler(len(rows), seed=7, groups=rows)
    assert [list(again) for _ in range(3)] == epochs  # …the same ones with the same seed
    assert list(PairSampler(len(rows), seed=8, groups=rows)) != epochs[0]
    resumed = PairSampler(len(rows), seed=7, groups=rows)  # a resume sets the epoch of its checkpoint
    resumed.set_epoch(2)
    assert list(resumed) == epochs[2]
    grouped = [list(PairSampler(len(rows), seed=7, lengths=list(range(len(rows))), batch_samples=3, groups=rows))
               for _ in range(2)]
    assert grouped[0] == grouped[1]


def test_one_language_keeps_the_plain_shuffle():
    plain = list(PairSampler(40, seed=5))
    assert list(PairSampler(40, seed=5, groups=[3] * 40)) == plain
    with pytest.raises(ValueError, match="one language"):
        PairSampler(4, seed=0, groups=[0, 1, 1, 1])


@pytest.mark.parametrize("processes", [2, 3])
def test_process_shares_are_disjoint_cover_the_epoch_and_every_step_is_stratified(processes):
    """Through accelerate's own batch sharding (what `accelerate launch` does to the trainer's loader): batch i goes
    to process i mod P. The shares are disjoint and cover the epoch; each step — the P batches trained together,
    whose gradients DDP averages — holds the languages in proportion, and every process sees both."""
    from accelerate.data_loader import BatchSamplerShard
    from torch.utils.data import BatchSampler

    units = _langs((48, 24))
    rows, batch = _rows(units), 2  # samples per process and batch
    sampler = PairSampler(len(rows), seed=11, groups=rows)
    shares = []
    for rank in range(processes):
        sampler.set_epoch(0)
        shard = BatchSamplerShard(BatchSampler(sampler, 2 * batch, drop_last=False), num_processes=processes,
                                  process_index=rank, split_batches=False, even_batches=False)
        shares.append([list(b) for b in shard])
    seen = [{r for b in s for r in b} for s in shares]
    assert all(seen) and sum(len(s) for s in seen) == len(rows)  # disjoint…
    assert set().union(*seen) == set(range(len(rows)))  # …and covering the epoch
    assert all({rows[r] for r in s} == {0, 1} for s in seen)
    for step in range(len(shares[-1])):
        langs = [units[r // 2] for s in shares for r in s[step][::2]]
        assert abs(langs.count(1) - len(langs) / 3) < 2, (step, langs)  # 2:1 in every step


def test_a_short_run_picks_its_samples_from_every_language():
    from clo.training.run import samples_used

    records = [{"id": i, "lang": "sw"} for i in range(30)] + [{"id": i, "lang": "yo"} for i in range(30)]
    spec = TrainSpec(lang="sw,yo", batch_size=2, max_steps=2)
    picked = samples_used(records, spec)
    assert sorted(r["lang"] for r in picked) == ["sw", "sw", "yo", "yo"]
    assert picked == samples_used(records, spec)  # seeded: a resume or a reproduction picks the same
    uneven = [{"id": i, "lang": "sw"} for i in range(90)] + [{"id": i, "lang": "yo"} for i in range(10)]
    picked = samples_used(uneven, TrainSpec(lang="sw,yo", batch_size=5, max_steps=2))
    assert sorted(r["lang"] for r in picked) == ["sw"] * 9 + ["yo"]
    one = [{"id": i, "lang": "sw"} for i in range(60)]  # one language: the subset runs have always had
    assert [r["id"] for r in samples_used(one, spec)] == sorted(random.Random(42).sample(range(60), 4))


def test_two_steps_on_two_languages_train_and_log_both(tiny_model, tmp_path):
    """The run of the issue: `--lang sw,yo`, batch 2, 2 steps: both languages in every step's metrics row."""
    from helpers import two_language_file

    from clo.runs.rundir import RunDir

    data = two_language_file(tmp_path / "sw-yo.jsonl", copies=3)
    spec = TrainSpec(model=str(tiny_model), data=str(data), lang="sw,yo", batch_size=2, max_steps=2, max_length=128)
    result = run_training(spec, tmp_path / "run")
    assert result.state == "finished" and result.steps == 2
    rows = RunDir(result.run_dir).metrics()
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert {"margin_sw", "accuracy_sw", "margin_yo", "accuracy_yo"} <= set(r), r
    assert not (result.run_dir / "tb").exists()  # report_to none: no tracker files
