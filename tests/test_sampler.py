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
