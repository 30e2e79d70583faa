"""report_to: a real run reports to TensorBoard through transformers' own integration, and the event file it writes
in the run folder holds every metric of metrics.jsonl (same values, same steps) and the run's settings as hparams.
A tracker that is not installed is refused, naming its pip package, before any folder is made."""
from __future__ import annotations

import importlib.util
import json

import pytest
import yaml
from helpers import run_cli, two_language_file

from clo.core.spec import REPORT_TO, TRACKER_PACKAGES, SpecError, TrainSpec
from clo.runs.rundir import RunDir


def _event_file(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    return ea


def _hparams(ea) -> dict:
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = ea.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    return {k: v.string_value if v.HasField("string_value") else v.number_value for k, v in start.hparams.items()}


@pytest.fixture(scope="module")
def tb_run(tmp_path_factory, tiny_model):
    """`clo train --report-to tensorboard` on two languages, three steps, as a user runs it."""
    base = tmp_path_factory.mktemp("tb")
    data = two_language_file(base / "sw-yo.jsonl", copies=3)
    out = base / "run"
    code, stdout, stderr = run_cli("train", "--model", str(tiny_model), "--data", str(data), "--lang", "sw,yo",
                                   "--batch-size", "2", "--max-steps", "3", "--max-length", "128", "--device", "cpu",
                                   "--report-to", "tensorboard", "--out", str(out),
                                   env={"CLO_HOME": str(base / "home"), "HF_HUB_OFFLINE": "1",
                                        "OMP_NUM_THREADS": "1", "CLO_NO_PROGRESS": "1"})
    assert code == 0, stderr[-3000:]
    return RunDir(out)


def test_the_event_file_holds_every_metric_of_metrics_jsonl(tb_run):
    rows = tb_run.metrics()
    assert [r["step"] for r in rows] == [1, 2, 3]
    folders = [p for p in (tb_run.path / "tb").iterdir()]
    assert [p.name for p in folders] == ["clo"]  # RUN/tb/<stage>/, inside the run folder
    ea = _event_file(folders[0])
    tags = set(ea.Tags()["scalars"])
    checked = 0
    for row in rows:
        for key, value in row.items():
            if key == "step" or not isinstance(value, (int, float)):
                continue  # the step is TensorBoard's own axis; the stage names the folder
            points = {e.step: e.value for e in ea.Scalars(f"train/{key}")}
            assert row["step"] in points, (key, row["step"], points)
            assert points[row["step"]] == pytest.approx(value, rel=1e-6, abs=1e-12), key  # float32 in the file
            checked += 1
    assert checked > 60
    # the CLO metrics under their metrics.jsonl names: per-direction margins and accuracies, per-language rows
    assert {"train/en_margin", "train/tgt_margin", "train/en_accuracy", "train/tgt_accuracy", "train/margin_sw",
            "train/margin_yo", "train/accuracy_sw", "train/accuracy_yo", "train/lr", "train/loss"} <= tags
    assert not {"train/en/margin", "train/learning_rate"} & tags  # not the trainer's own names beside them


def test_the_event_file_holds_the_run_settings_as_hparams(tb_run):
    ea = _event_file(tb_run.path / "tb" / "clo")
    hp = _hparams(ea)
    config = yaml.safe_load(tb_run.config_path.read_text())
    assert config["report_to"] == "tensorboard"
    for key, value in config.items():
        if value is None:
            assert key not in hp  # an unset setting (limit: null) is left out
        elif isinstance(value, str):
            assert hp[key] == value, key
        else:
            assert hp[key] == pytest.approx(float(value)), key
    assert hp["lang"] == "sw,yo" and hp["lambda"] == pytest.approx(0.5) and hp["method"] == "clo"
    # and transformers' integration adds its own record of the TrainingArguments
    args = json.loads(ea.Tensors("args/text_summary")[0].tensor_proto.string_val[0].decode())
    assert args["report_to"] == ["tensorboard"] and args["run_name"] == "run"


def test_a_tracker_that_is_not_installed_is_refused_before_any_folder(tmp_path):
    missing = [t for t, package in TRACKER_PACKAGES.items() if not importlib.util.find_spec(package)]
    if not missing:
        pytest.skip("every tracker is installed here")
    for tracker in missing:
        with pytest.raises(SpecError, match=rf"pip install {TRACKER_PACKAGES[tracker]}"):
            TrainSpec(report_to=tracker).check_tracker()
    tracker, out = missing[0], tmp_path / "run"
    code, stdout, stderr = run_cli("train", "--report-to", tracker, "--max-steps", "1", "--out", str(out),
                                   env={"CLO_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"})
    assert code != 0 and f"pip install {TRACKER_PACKAGES[tracker]}" in stderr, (code, stderr[-2000:])
    assert "Traceback" not in stderr and not out.exists()


def test_report_to_is_a_setting_like_every_other():
    from clo.core.spec import add_spec_arguments, spec_from_sources

    assert TrainSpec().report_to == "none" and list(REPORT_TO)[:2] == ["none", "tensorboard"]
    with pytest.raises(SpecError, match="Unknown report_to 'wandb'"):
        TrainSpec(report_to="wandb")
    import argparse

    parser = argparse.ArgumentParser()
    add_spec_arguments(parser)
    assert spec_from_sources(flags=parser.parse_args(["--report-to", "tensorboard"])).report_to == "tensorboard"
    assert TrainSpec.from_dict({"report_to": "tensorboard"}).to_dict()["report_to"] == "tensorboard"


def test_a_resumed_run_replaces_the_lost_points_in_tensorboard(tmp_path, tiny_model, monkeypatch):
    """Stopped after logging step 3 (checkpoint of step 2), then resumed: metrics.jsonl holds each step once (the
    first attempt's step 3 moved aside), and so does TensorBoard — the resumed writer's purge_step drops the
    first attempt's later points — with the resumed values."""
    from helpers import write_xl

    from clo.training.run import resume_training, run_training
    from clo.training.stopping import StopRequest

    monkeypatch.setenv("CLO_HOME", str(tmp_path / "home"))
    spec = TrainSpec(model=str(tiny_model), data=str(write_xl(tmp_path / "xl.jsonl")), batch_size=1, max_steps=5,
                     save_steps=2, max_length=128, device="cpu", report_to="tensorboard")
    stop = StopRequest()

    def events(e):
        if (e.get("metrics") or {}).get("step") == 3:
            stop.request()

    out = tmp_path / "run"
    assert run_training(spec, out, events=events, stop_event=stop).state == "stopped"
    run = RunDir(out)
    assert [r["step"] for r in run.metrics()] == [1, 2, 3] and run.checkpoint_step() == 2
    first = {e.step: e.value for e in _event_file(out / "tb" / "clo").Scalars("train/elapsed_s")}
    assert sorted(first) == [1, 2, 3]
    assert resume_training(out).state == "finished"
    rows = run.metrics()
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert len(list((out / "tb" / "clo").glob("events.out.tfevents.*"))) == 2  # one file per attempt
    ea = _event_file(out / "tb" / "clo")
    for key in ("loss", "elapsed_s", "lr"):
        points = [(e.step, e.value) for e in ea.Scalars(f"train/{key}")]
        assert [s for s, _ in points] == [1, 2, 3, 4, 5], (key, points)  # step 3 once: the resumed attempt's
        assert [v for _, v in points] == pytest.approx([r[key] for r in rows], rel=1e-6), key


def test_the_train_page_offers_report_to_under_advanced_and_refuses_a_missing_tracker(app, xl_file, tmp_path):
    """The Train page's select comes from the setting's form hint; its choice reaches config.yaml, and a tracker
    that is not installed is refused at launch with the pip command, before anything is queued."""
    at = app
    at.run()
    at.switch_page("app_pages/train.py").run()
    assert not at.exception, at.exception
    advanced = at.get("expander")[-1]
    assert advanced.label.startswith("Advanced settings")
    sel = next(w for w in advanced.get("selectbox") if w.key == "tr_report_to")
    assert sel.label == "Report to" and sel.value == "none" and list(sel.options) == list(REPORT_TO)
    assert all(line in sel.help for line in REPORT_TO.values())
    sel.set_value("tensorboard").run()
    at.button(key="tr_cli").click().run()
    config = "\n".join(str(c.value) for c in at.code).split("--config ", 1)[1].split()[0].strip("'\"")
    assert yaml.safe_load(open(config, encoding="utf-8"))["report_to"] == "tensorboard"
    missing = next((t for t, p in TRACKER_PACKAGES.items() if not importlib.util.find_spec(p)), None)
    if missing is None:
        return
    at.selectbox(key="tr_data").set_value("__other__").run()
    at.text_input(key="tr_data_path").input(str(xl_file))
    at.number_input(key="tr_max_steps").set_value(1)
    at.selectbox(key="tr_report_to").set_value(missing).run()
    at.button(key="tr_launch").click().run()
    assert not at.exception, at.exception
    errors = [str(e.value) for e in at.error]
    assert any(f"pip install {TRACKER_PACKAGES[missing]}" in e for e in errors), errors
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir())
