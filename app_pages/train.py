"""Train: settings → a background job (one at a time, the rest queue) → live curves, progress, ETA and Stop."""
from pathlib import Path

import streamlit as st

from clo.data import DataError, read_records, resolve_data_path
from clo.datasets import list_datasets
from clo.jobs import cli_command, read_progress, save_config
from clo.models import ModelNotFoundError, bundled_model, clo_home, resolve_model
from clo.runs import RunDir, RunError, safe_run_path
from clo.spec import METHODS, OBJECTIVE_HELP, SCOPES, SpecError, TrainSpec, list_recipes, load_recipe, yaml_key
from clo.train import describe_truncation, load_records
from app_pages._shared import (STATE_ICONS, available_models, current_lang, current_model, fmt_duration, form_fields,
                               job_manager, lang_name, metrics_charts, runs_root, setting_key)

OTHER = "__other__"
DESCRIPTIONS = {"method": METHODS, "scope": SCOPES, "objective": OBJECTIVE_HELP}  # a tooltip line per choice
mgr = job_manager()
lang, model = current_lang(), current_model()


def presets() -> dict[str, str]:
    """Recipes from recipes/; a Gemma preset only where Gemma is installed."""
    have_gemma = any(m["name"] == "gemma-3-270m" and m["available"] for m in available_models())
    return {k: v for k, v in list_recipes().items() if "gemma" not in k or have_gemma}


def apply_preset() -> None:
    name = st.session_state.get("tr_preset")
    st.session_state.pop("tr_preset_error", None)
    if not name:
        return
    source = f"Preset {name!r} (recipes/{name}.yaml)"
    try:
        recipe = load_recipe(name)
        spec = TrainSpec.from_dict({k: v for k, v in recipe.items() if k not in ("model", "data", "lang")},
                                   source=source)
    except SpecError as e:  # a broken or vanished recipes/<name>.yaml: say so and keep the current settings
        msg = str(e)
        st.session_state["tr_preset_error"] = msg if msg.startswith((source, "Unknown preset")) else f"{source}: {msg}"
        return
    for f in form_fields():
        st.session_state[setting_key(f.name)] = widget_value(f, getattr(spec, f.name))
    # a preset made for one bundled model (demo-gemma) also picks that model in the sidebar
    wanted = bundled_model(str(recipe.get("model", "default")))
    if wanted is not None and "default" not in wanted.aliases:
        st.session_state["sb_model"] = wanted.name


def widget_value(f, value):
    """A spec value as its widget holds it (a None that means "no limit" is the hint's ``none`` number)."""
    hint = f.metadata["form"]
    if value is None:
        return hint.get("none", 0)
    if hint["widget"] == "checkbox":
        return bool(value)
    if hint["widget"] == "select":
        return value
    return type(hint.get("min", value))(value)  # float or int, as the widget's bounds are


def spec_value(f, value):
    """A widget's value as the spec field takes it (the reverse of :func:`widget_value`)."""
    hint = f.metadata["form"]
    if "none" in hint and value == hint["none"]:
        return None
    return value


def setting_widget(f, col) -> None:
    """The widget of one TrainSpec field, from its ``form`` hint (clo/spec.py)."""
    hint, key = f.metadata["form"], setting_key(f.name)
    label = hint.get("label", yaml_key(f))
    tip = hint.get("help") or f.metadata.get("help")
    if hint["widget"] == "select":
        choices = list(f.metadata["choices"])
        desc = DESCRIPTIONS.get(f.name, {})
        value = col.selectbox(label, choices, key=key,
                              help="\n\n".join(f"**{k}**: {desc[k]}" for k in choices if k in desc) or tip)
        if hint.get("explain") and value in desc:  # a one-line explanation of the current choice
            col.caption(desc[value])
    elif hint["widget"] == "checkbox":
        col.checkbox(label, key=key, help=tip)
    elif hint["widget"] == "slider":
        col.slider(label, hint["min"], hint["max"], step=hint.get("step"), key=key, help=tip)
    else:
        col.number_input(label, hint.get("min"), hint.get("max"), step=hint.get("step"), key=key, help=tip,
                         **({"format": hint["format"]} if "format" in hint else {}))


def data_picker() -> str:
    sets = [str(p) for p in list_datasets(lang)]
    options = ["demo", *sets, OTHER]
    labels = {"demo": f"Bundled demo set ({lang_name(lang)})", OTHER: "Another file…"} | {p: Path(p).name for p in sets}
    wanted = st.session_state.pop("train_data", None)  # sent by the Data page
    if wanted in options:
        st.session_state["tr_data"] = wanted
    elif wanted:
        st.session_state["tr_data"], st.session_state["tr_data_path"] = OTHER, wanted
    if st.session_state.get("tr_data") not in options:
        st.session_state["tr_data"] = sets[0] if sets else "demo"
    choice = st.selectbox("Cross-lingual set", options, format_func=labels.get, key="tr_data")
    if choice == OTHER:
        return st.text_input("File", key="tr_data_path", placeholder="/path/to/crosslingual.jsonl").strip()
    return choice


def data_langs(data: str) -> list[str]:
    """The target languages a cross-lingual set holds (the bundled demo: every bundled language)."""
    try:
        if data == "demo":
            folder = resolve_data_path("demo", "xl", lang).parent
            return sorted(p.stem for p in folder.glob("*.jsonl") if p.stem != "en")
        return sorted({str(r.get("lang")) for r in read_records(data)} - {"en"})
    except (DataError, OSError, ValueError):
        return []


def target_langs(data: str) -> list[str]:
    """The run's target languages: the sidebar's, plus any other the set holds (several in one run)."""
    ss = st.session_state
    if ss.get("tr_langs_for") != lang:  # the sidebar's language changed: start again from it
        ss["tr_langs"], ss["tr_langs_for"] = [lang], lang
    choices = list(dict.fromkeys([lang, *data_langs(data)]))
    ss["tr_langs"] = [c for c in ss.get("tr_langs", [lang]) if c in choices] or [lang]
    picked = st.multiselect("Target languages", choices, key="tr_langs", format_func=lang_name,
                            help="Several languages train in one run: each English sample pairs with its translation "
                                 "in every one, and batches mix them. The first comes from the sidebar.")
    return picked or [lang]


def settings_form() -> TrainSpec | None:
    """The settings widgets; returns a validated spec, or None after showing what is wrong."""
    ps = presets()
    if "tr_preset" not in st.session_state:
        st.session_state["tr_preset"] = "demo" if "demo" in ps else next(iter(ps), None)
        apply_preset()
    if st.session_state.get("tr_preset") not in ps:
        st.session_state["tr_preset"] = next(iter(ps), None)
    st.selectbox("Preset", list(ps), key="tr_preset", on_change=apply_preset,
                 format_func=lambda k: f"{k} — {ps[k]}" if ps.get(k) else k,
                 help="Fills the settings below from recipes/<name>.yaml; change any of them afterwards.")
    if err := st.session_state.get("tr_preset_error"):
        st.error(f"{err} The settings below were left as they were.", icon=":material/error:")
    data = data_picker()
    langs = target_langs(data)
    rows: dict[int, list] = {}
    for f in form_fields():
        rows.setdefault(f.metadata["form"].get("row", 99), []).append(f)
    for _, row in sorted(rows.items()):
        for f, col in zip(row, st.columns(max(len(row), 2))):
            setting_widget(f, col)
    ss = st.session_state
    values = {f.name: spec_value(f, ss.get(setting_key(f.name))) for f in form_fields()}
    try:
        return TrainSpec(**values, lang=",".join(langs), model=model or "", data=data or "")
    except (SpecError, TypeError) as e:
        st.error(str(e))
        return None


def launch(spec: TrainSpec) -> None:
    """Check what can be checked here, then queue the job. A refusal creates nothing and touches no other run."""
    try:
        resolve_model(spec.model, trust_remote_code=spec.trust_remote_code)
        n = len(load_records(spec))
    except (ModelNotFoundError, DataError, SpecError, OSError) as e:
        st.error(str(e))
        return
    ahead = ([mgr.active().run_id] if mgr.active() else []) + [j.run_id for j in mgr.queued()] + mgr.running_elsewhere()
    try:
        job = mgr.submit(spec)
    except (SpecError, RunError, OSError) as e:
        st.error(str(e))
        return
    st.session_state["train_run"] = job.run_id
    if ahead:
        st.info(f"Queued **{job.run_id}** ({n} samples): one job trains at a time, and {len(ahead)} "
                f"{'is' if len(ahead) == 1 else 'are'} ahead of it ({', '.join(ahead)}). It starts by itself.",
                icon=":material/schedule:")
    else:
        st.success(f"Started **{job.run_id}** on {n} samples.", icon=":material/rocket_launch:")


def watched_run() -> str | None:
    """What trains now, else this session's last job, else the newest run (clo.jobs decides)."""
    return mgr.watched_run(st.session_state.get("train_run"))


def live_panel() -> None:
    run_id = watched_run()
    if run_id is None:
        st.info("No training job yet: choose the settings and launch one.", icon=":material/model_training:")
        return
    try:
        run = RunDir(safe_run_path(runs_root(), run_id))
    except RunError as e:
        st.error(str(e))
        return
    rows = run.metrics()
    prog = read_progress(run, rows)
    cfg = run.config()
    head, stop_col = st.columns([5, 1], vertical_alignment="center")
    head.markdown(f"#### {STATE_ICONS.get(prog.state, '')} `{run_id}` — {prog.state}\n"
                  f"{cfg.get('method')} · {lang_name(cfg.get('lang'))} · model `{cfg.get('model')}`")
    if prog.active:
        stopping = run.stop_requested()
        stop_col.button("Stopping…" if stopping else "Stop", icon=":material/stop_circle:", key="tr_stop",
                        disabled=stopping, on_click=mgr.stop, args=(run_id,),
                        help="Ends after the current step and keeps that step's model.")
    total = f"{prog.max_steps}" if prog.max_steps else "?"
    eta = f" · ETA {fmt_duration(prog.eta_s)}" if prog.eta_s is not None else ""
    stage = f" ({prog.stage})" if prog.stage and cfg.get("method") == "sft-dpo" else ""
    st.progress(prog.fraction, text=f"Step {prog.step}/{total}{stage}{eta} · {prog.phase}")
    for i, q in enumerate(j.run_id for j in mgr.queued()):
        c1, c2 = st.columns([5, 1], vertical_alignment="center")
        c1.caption(f"{i + 1}. in the queue: `{q}` — starts when the job before it ends")
        c2.button("Cancel", key=f"tr_cancel_{q}", on_click=mgr.stop, args=(q,), icon=":material/close:")
    status = run.status()
    if prog.error:
        st.error(prog.error, icon=":material/error:")
    if status.get("resume_error"):
        st.error(f"Resume failed: {status['resume_error']}", icon=":material/error:")
    if status.get("note"):
        st.info(status["note"], icon=":material/info:")
    if status.get("truncation"):
        st.caption(f":material/content_cut: {describe_truncation(status['truncation'])}")
    metrics_charts(rows, key=f"tr-{run_id}")
    if prog.state in ("finished", "stopped") and run.has_model():
        step = status.get("step") or (rows[-1]["step"] if rows else 0)
        st.success(f"{'Finished' if prog.state == 'finished' else 'Stopped'} after {step} steps; the model is in "
                   f"`{run.model_path}`. Try it on the Compare page.", icon=":material/check_circle:")
    was_active = st.session_state.get("tr_was_active")
    st.session_state["tr_was_active"] = prog.active
    if was_active and not prog.active:
        st.rerun()  # the job ended: redraw the page once so that the panel stops polling quickly


st.title("Train")
st.caption(f"Base model `{model or '—'}` and target language {lang_name(lang)} come from the sidebar (add "
           "more target languages below). "
           "Training runs in a background process: closing or reloading this tab does not stop it.")
left, right = st.columns([2, 3], gap="large")
with left:
    spec = settings_form()
    b1, b2 = st.columns(2)
    if b1.button("Launch training", type="primary", icon=":material/play_arrow:", disabled=spec is None,
                 key="tr_launch", width="stretch"):
        launch(spec)
    if b2.button("Show CLI command", icon=":material/terminal:", disabled=spec is None, key="tr_cli", width="stretch"):
        path = save_config(spec, clo_home() / "configs")
        st.code(cli_command(path), language="bash", wrap_lines=True)
        st.caption(f"`{path}` holds these settings; a finished run keeps its own copy as `config.yaml`.")
with right:
    polling = any(RunDir(runs_root() / r).status().get("state") in ("queued", "running")
                  for r in filter(None, [watched_run()]))
    st.fragment(live_panel, run_every=1.5 if polling else 5.0)()
