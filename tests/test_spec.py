"""One settings schema: every TrainSpec field is a CLI flag and a config.yaml key, and a field added to the
dataclass (with help and a widget hint) appears in `clo train --help`, in config.yaml and on the Train page."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest
import yaml

import clo.core.spec
from clo.cli.main import build_parser, main
from clo.core.spec import TrainSpec, add_spec_arguments, setting, spec_fields, spec_from_sources, yaml_key

ROOT = Path(__file__).resolve().parent.parent


def _help(capsys) -> str:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    return " ".join(capsys.readouterr().out.split())  # argparse wraps help lines


def test_every_field_has_a_flag_a_help_line_and_a_config_key(capsys):
    text = _help(capsys)
    config = TrainSpec().to_dict()
    for f in spec_fields():
        assert f.metadata.get("help"), f"{f.name} has no help"
        flag = "--" + yaml_key(f).replace("_", "-")
        assert flag in text, f"{flag} missing from clo train --help"
        assert yaml_key(f) in config, f"{f.name} missing from config.yaml"
    # the three settings that had no flag before
    for flag in ("--lora-alpha", "--scheduler", "--weight-decay"):
        assert flag in text


def test_flags_override_config_which_overrides_the_preset(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("lr: 1.0e-4\nbatch_size: 4\nweight_decay: 0.01\n")
    parser = argparse.ArgumentParser()
    add_spec_arguments(parser)
    args = parser.parse_args(["--batch-size", "2", "--scheduler", "cosine", "--lora-alpha", "8"])
    spec = spec_from_sources("demo", str(config), args)
    assert (spec.lr, spec.batch_size, spec.weight_decay) == (1e-4, 2, 0.01)  # config over preset, flag over config
    assert (spec.scheduler, spec.lora_alpha, spec.max_length) == ("cosine", 8, 512)  # 512 from the demo preset
    assert TrainSpec.from_dict(spec.to_dict()) == spec  # config.yaml reads back to the same settings


def test_choices_are_checked_with_the_setting_named():
    with pytest.raises(clo.core.spec.SpecError, match="Unknown scheduler 'bogus'. Choose one of: linear, cosine"):
        TrainSpec(scheduler="bogus")
    with pytest.raises(clo.core.spec.SpecError, match="Unknown device 'tpu'"):
        TrainSpec(device="tpu")


@dataclasses.dataclass
class WithNewSetting(TrainSpec):
    """TrainSpec plus one setting, added the way a developer would add it to clo/core/spec.py."""

    label_smoothing: float = setting(0.0, "smooth the target NLL's labels by this much (a new setting)",
                                      form={"row": 6, "label": "Label smoothing", "widget": "number", "min": 0.0,
                                            "max": 0.5, "step": 0.05})


@pytest.fixture()
def new_setting(monkeypatch):
    monkeypatch.setattr(clo.core.spec, "TrainSpec", WithNewSetting)
    return WithNewSetting


def test_a_new_field_appears_in_help_and_config_yaml(new_setting, capsys, tiny_model, xl_file, tmp_path):
    text = _help(capsys)
    assert "--label-smoothing" in text and "a new setting" in text
    out = tmp_path / "run"
    code = main(["train", "--model", str(tiny_model), "--data", str(xl_file), "--out", str(out), "--max-steps", "1",
                 "--batch-size", "2", "--label-smoothing", "0.1"])
    assert code == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["label_smoothing"] == 0.1 and config["lambda"] == 0.5


def test_a_new_field_with_a_widget_hint_appears_on_the_train_page(new_setting, app):
    app.run()
    app.switch_page("app_pages/train.py").run()
    assert not app.exception, app.exception
    widget = app.number_input(key="tr_label_smoothing")
    assert widget.label == "Label smoothing" and widget.value == 0.0
    widget.set_value(0.2).run()
    assert not app.exception and app.number_input(key="tr_label_smoothing").value == 0.2
    assert not app.error, [e.value for e in app.error]  # the page built a valid spec with the new setting
