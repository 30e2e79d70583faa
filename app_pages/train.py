"""Train: settings → a background job (one at a time, the rest queue) → live curves, progress, ETA and Stop."""
from pathlib import Path

import streamlit as st

from app_pages._shared import (
    STATE_ICONS,
    available_models,
    current_lang,
    current_model,
    fmt_duration,
    form_fields,
    job_manager,
    metrics_charts,
    model_guide,
    runs_root,
    setting_key,
)
from clo.core.languages import language_name
from clo.core.paths import clo_home
from clo.core.spec import SpecError, TrainSpec, changed_settings, list_presets, load_preset, yaml_key
from clo.data.formats import DataError, read_records, resolve_data_path
from clo.data.stored import list_datasets
from clo.models.registry import ModelNotFoundError, bundled_model, display_name
from clo.models.resolve import resolve_model
from clo.runs.estimate import estimate_run
from clo.runs.jobs import ACTIVE_STATES, cli_command, read_progress, save_config
from clo.runs.rundir import RunDir, RunError, safe_run_path
from clo.training.run import describe_truncation, load_records, samples_used

OTHER = "__other__"
SHOW_LIVE_JS = """<script>(() => {
  let tries = 0;
  const show = () => {
    const panel = document.querySelector('.st-key-tr_live');
    if (!panel) { if (tries++ < 50) setTimeout(show, 100); return; }
    panel.style.scrollMarginTop = '4.5rem';  // clear of Streamlit's header
    panel.scrollIntoView({block: 'start', behavior: 'smooth'});
  };
  show();
})();</script>"""
mgr = job_manager()
lang, model = current_lang(), current_model()


def presets() -> dict[str, str]:
    """The presets in presets/; a Gemma preset only where Gemma is installed."""
    have_gemma = any(m["name"] == "gemma-3-270m" and m["available"] for m in available_models())
    return {k: v for k, v in list_presets().items() if "gemma" not in k or have_gemma}


def apply_preset() -> None:
    name = st.session_state.get("tr_preset")
    st.session_state.pop("tr_preset_error", None)
    if not name:
        return
    source = f"Preset {name!r} (presets/{name}.yaml)"
    try:
        preset = load_preset(name)
        spec = TrainSpec.from_dict({k: v for k, v in preset.items() if k not in ("model", "data", "lang")},
                                   source=source)
    except SpecError as e:  # a broken or vanished presets/<name>.yaml: say so and keep the current settings
        msg = str(e)
        st.session_state["tr_preset_error"] = msg if msg.startswith((source, "Unknown preset")) else f"{source}: {msg}"
        return
    for f in form_fields():
        st.session_state[setting_key(f.name)] = widget_value(f, getattr(spec, f.name))
    # a preset made for one bundled model (demo-gemma) also picks that model in the sidebar
    wanted = bundled_model(str(preset.get("model", "default")))
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


def setting_widget(f, col, disabled: bool = False) -> None:
    """The widget of one TrainSpec field, from its ``form`` hint (clo/core/spec.py)."""
    hint, key = f.metadata["form"], setting_key(f.name)
    plain, col = col, _Disabled(col, disabled)
    label = hint.get("label", yaml_key(f))
    tip = hint.get("help") or f.metadata.get("help")
    if hint["widget"] == "select":
        choices = list(f.metadata["choices"])
        desc = f.metadata.get("descriptions", {})
        value = col.selectbox(label, choices, key=key,
                              help="\n\n".join(f"**{k}**: {desc[k]}" for k in choices if k in desc) or tip)
        if hint.get("explain") and value in desc:  # a one-line explanation of the current choice
            plain.caption(desc[value])
    elif hint["widget"] == "checkbox":
        col.checkbox(label, key=key, help=tip)
    elif hint["widget"] == "slider":
        col.slider(label, hint["min"], hint["max"], step=hint.get("step"), key=key, help=tip)
    else:
        col.number_input(label, hint.get("min"), hint.get("max"), step=hint.get("step"), key=key, help=tip,
                         **({"format": hint["format"]} if "format" in hint else {}))


class _Disabled:
    """A column whose widgets are all drawn with ``disabled`` (the settings of a running job are read-only)."""

    def __init__(self, col, disabled: bool):
        self.col, self.disabled = col, disabled

    def __getattr__(self, name):
        fn = getattr(self.col, name)
        return lambda *a, **kw: fn(*a, disabled=self.disabled, **kw)


def fill_from_run(run: RunDir) -> None:
    """Put a run's settings (its config.yaml) into the form, as a reloaded page shows the job it trains."""
    try:
        spec = TrainSpec.from_dict(run.config(), source=str(run.config_path))
    except SpecError:
        return
    for f in form_fields():
        st.session_state[setting_key(f.name)] = widget_value(f, getattr(spec, f.name))
    st.session_state["train_data"] = spec.data
    st.session_state["tr_langs"], st.session_state["tr_langs_for"] = list(spec.langs), lang


def data_picker(disabled: bool = False) -> str:
    sets = [str(p) for p in list_datasets(lang)]
    options = ["demo", *sets, OTHER]
    labels = {"demo": f"Bundled demo set ({language_name(lang)})", OTHER: "Another file…"} | {
        p: Path(p).name for p in sets}
    wanted = st.session_state.pop("train_data", None)  # sent by the Data page
    if wanted in options:
        st.session_state["tr_data"] = wanted
    elif wanted:
        st.session_state["tr_data"], st.session_state["tr_data_path"] = OTHER, wanted
    if st.session_state.get("tr_data") not in options:
        st.session_state["tr_data"] = sets[0] if sets else "demo"
    choice = st.selectbox("Cross-lingual set", options, format_func=labels.get, key="tr_data", disabled=disabled)
    if choice == OTHER:
        return st.text_input("File", key="tr_data_path", placeholder="/path/to/crosslingual.jsonl",
                             disabled=disabled).strip()
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


def target_langs(data: str, disabled: bool = False) -> list[str]:
    """The run's target languages: the sidebar's, plus any other the set holds (several in one run)."""
    ss = st.session_state
    if ss.get("tr_langs_for") != lang:  # the sidebar's language changed: start again from it
        ss["tr_langs"], ss["tr_langs_for"] = [lang], lang
    choices = list(dict.fromkeys([lang, *ss.get("tr_langs", []), *data_langs(data)]))
    ss["tr_langs"] = [c for c in ss.get("tr_langs", [lang]) if c in choices] or [lang]
    picked = st.multiselect("Target languages", choices, key="tr_langs", format_func=language_name, disabled=disabled,
                            help="Several languages train in one run: each English sample pairs with its translation "
                                 "in every one, and batches mix them. The first comes from the sidebar.")
    return picked or [lang]


def settings_form(locked: RunDir | None = None) -> TrainSpec | None:
    """The settings widgets; returns a validated spec, or None after showing what is wrong. ``locked``: the job
    that trains now, whose settings the form shows, read-only."""
    ps = presets()
    if "tr_preset" not in st.session_state:
        st.session_state["tr_preset"] = "demo" if "demo" in ps else next(iter(ps), None)
        if locked is None:  # a running job's settings were filled in already: the preset must not replace them
            apply_preset()
    if st.session_state.get("tr_preset") not in ps:
        st.session_state["tr_preset"] = next(iter(ps), None)
    disabled = locked is not None
    if locked is not None:
        st.info(f"The settings of **{locked.id}**: read-only while it is queued or training.", icon=":material/lock:")
        st.button("Edit settings for the next job", key="tr_unlock", icon=":material/edit:",
                  on_click=lambda: st.session_state.update(tr_unlocked=locked.id),
                  help="Change the settings and queue another job: it starts when this one ends.")
    st.selectbox("Preset", list(ps), key="tr_preset", on_change=apply_preset, disabled=disabled,
                 help="Fills the settings below from presets/<name>.yaml; change any of them afterwards.")
    if ps.get(st.session_state.get("tr_preset")):
        st.caption(ps[st.session_state["tr_preset"]])
    if "demo-gemma" not in ps:
        st.caption(":material/lightbulb: The **demo-gemma** preset (Gemma 3 270M, real Swahili words) appears "
                   "after `make install-extras`.")
    if err := st.session_state.get("tr_preset_error"):
        st.error(f"{err} The settings below were left as they were.", icon=":material/error:")
    data = data_picker(disabled)
    langs = target_langs(data, disabled)
    fields = sorted(form_fields(), key=lambda f: f.metadata["form"].get("row", 99))  # stable: the spec's order
    advanced = [f for f in fields if f.metadata["form"].get("advanced")]
    setting_rows([f for f in fields if f not in advanced], disabled)  # the few a newcomer needs
    ss = st.session_state
    values = {f.name: spec_value(f, ss.get(setting_key(f.name))) for f in form_fields()}
    changed = advanced_summary(values, advanced)
    with st.expander(f"Advanced settings ({len(changed)} changed)" if changed else "Advanced settings",
                     icon=":material/tune:"):
        setting_rows(advanced, disabled)
    st.caption(f":material/tune: Advanced, not at their defaults: {' · '.join(changed)}." if changed
               else ":material/tune: Every advanced setting is at its default.")
    try:
        return TrainSpec(**values, lang=",".join(langs), model=model or "", data=data or "")
    except (SpecError, TypeError) as e:
        st.error(str(e))
        return None


def setting_rows(fields: list, disabled: bool) -> None:
    """Choices first, each on a row of its own (a half row cut "attention" at 1024 px, and squeezed the line that
    explains the choice), then numbers two to a row (a third would cut labels and values in a narrow column), then
    checkboxes, each on a line of its own (a checkbox's label is a sentence)."""
    kind = {f.name: f.metadata["form"]["widget"] for f in fields}
    selects = [f for f in fields if kind[f.name] == "select"]
    boxes = [f for f in fields if kind[f.name] == "checkbox"]
    numbers = [f for f in fields if f not in selects and f not in boxes]
    for f in selects:
        setting_widget(f, st, disabled)
    for i in range(0, len(numbers), 2):
        for f, col in zip(numbers[i:i + 2], st.columns(2)):
            setting_widget(f, col, disabled)
    for f in boxes:
        setting_widget(f, st, disabled)


def advanced_summary(values: dict, advanced: list) -> list[str]:
    """The advanced settings that differ from their defaults, as "label value" (the preset's or the user's
    choices, readable while the section is folded)."""
    try:
        spec = TrainSpec(**{**values, "lang": lang, "model": model or "default"})
    except (SpecError, TypeError):  # an invalid value: the error under the form names it
        return []
    hints = {f.name: f.metadata["form"] for f in advanced}
    out = []
    for name, value in changed_settings(spec, hints).items():
        hint = hints[name]
        if hint["widget"] == "checkbox":
            text = "on" if value else "off"
        elif "format" in hint:
            text = hint["format"] % value
        else:
            text = f"{value:g}" if isinstance(value, float) else str(value)
        out.append(f"{hint['label']} **{text}**")
    return out


def time_estimate(spec: TrainSpec) -> None:
    """How long this would take here, from the newest comparable finished run (clo.runs.estimate)."""
    try:
        n = len(load_records(spec))
    except (DataError, OSError, ValueError):
        return
    est = estimate_run(spec, n, runs_root())
    if est is None:
        st.caption(f":material/timer: No time estimate yet: the first {display_name(spec.model)} {spec.method} run "
                   "on this machine measures it, and later launches show how long they will take here.")
        return
    ref = f", {fmt_duration(est.reference_s)} of it the reference pass (skipped when cached)" if est.reference_s else ""
    st.caption(f":material/timer: About **{fmt_duration(est.seconds)}** for {est.steps} steps here{ref}; "
               f"measured by run `{est.basis}`.")


def launch(spec: TrainSpec) -> None:
    """Check what can be checked here, then queue the job. A refusal creates nothing and touches no other run."""
    try:
        spec.check_tracker()  # report_to's package must be installed here
        resolve_model(spec.model, trust_remote_code=spec.trust_remote_code)
        records = load_records(spec)
    except (ModelNotFoundError, DataError, SpecError, OSError) as e:
        st.error(str(e))
        return
    ahead = mgr.waits_for()  # what a new job would wait for
    try:
        job = mgr.submit(spec)
    except (SpecError, RunError, OSError) as e:
        st.error(str(e))
        return
    used, n = len(samples_used(records, spec)), len(records)
    samples = f"{used} of {n} samples ({spec.max_steps} steps × {spec.batch_size})" if used < n else f"{n} samples"
    ss = st.session_state
    ss["train_run"] = job.run_id
    ss["tr_show_live"] = True  # the next run brings the progress panel into view
    ss.pop("tr_unlocked", None)
    if ahead:
        ss["tr_launch_note"] = ("info", f"Queued **{job.run_id}** ({samples}): one job trains at a time, and "
                                f"{len(ahead)} {'is' if len(ahead) == 1 else 'are'} ahead of it ({', '.join(ahead)}). "
                                "It starts by itself.")
    else:
        ss["tr_launch_note"] = ("success", f"Started **{job.run_id}** on {samples}.")
    st.rerun()  # draw the form read-only with the job's settings at once


def watched_run() -> str | None:
    """A ``?run=<id>`` deep link, else what trains now, else this session's last job, else the newest run."""
    wanted = st.query_params.get("run")
    if wanted:
        try:
            if RunDir(safe_run_path(runs_root(), wanted)).exists():
                return wanted
        except RunError:
            pass
    return mgr.watched_run(st.session_state.get("train_run"))


def progress_text(run: RunDir, prog) -> str:
    """What the run waits for or does, with how far it is and how long is left."""
    if prog.state == "queued":
        pos = mgr.position(run.id)
        ahead = mgr.waits_for(run.id)  # never the run itself, which the worker may have taken a moment ago
        if pos == 0 or not ahead:
            return f"Starting the training process… · {prog.phase}"
        first = RunDir(runs_root() / ahead[0])
        p0 = read_progress(first)
        eta = f", ETA {fmt_duration(p0.eta_s)}" if p0.eta_s is not None else ""
        jobs = f"{len(ahead)} job{'s' if len(ahead) > 1 else ''}"
        return (f"In the queue, position {pos or len(ahead)}: waits for {jobs} "
                f"(`{ahead[0]}`: {p0.phase}, step {p0.step}/{p0.max_steps or '?'}{eta})")
    if prog.in_reference:
        eta = f" · ETA {fmt_duration(prog.ref_eta_s)}" if prog.ref_eta_s is not None else ""
        return (f"Reference pass: batch {prog.ref_done}/{prog.ref_total}{eta} · scores the frozen model's "
                "log-probs once, before step 1")
    total = f"{prog.max_steps}" if prog.max_steps else "?"
    if prog.state == "running" and prog.phase == "loading model":
        since = f" · {fmt_duration(prog.phase_s)} so far" if prog.phase_s is not None else ""
        return f"Loading the model{since} (a model's first load here converts it once; later loads are quick)"
    eta = f" · ETA {fmt_duration(prog.eta_s)}" if prog.eta_s is not None else ""
    stage = f" ({prog.stage})" if prog.stage and run.config().get("method") == "sft-dpo" else ""
    if prog.state in ("finished", "stopped", "failed", "interrupted") and prog.duration_s is not None:
        eta = f" · took {fmt_duration(prog.duration_s)}"
    return f"Step {prog.step}/{total}{stage}{eta} · {prog.phase}"


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
    st.markdown(f"#### {STATE_ICONS.get(prog.state, '')} `{run_id}` — {prog.state}\n"
                f"{cfg.get('method')} · {language_name(cfg.get('lang'))} · "
                f"model `{display_name(cfg.get('model') or '')}`")
    st.progress(prog.fraction, text=progress_text(run, prog))
    if prog.active:
        stopping = run.stop_requested()
        st.button("Stopping…" if stopping else "Stop", icon=":material/stop_circle:", key="tr_stop",
                  disabled=stopping, on_click=mgr.stop, args=(run_id,),
                  help="Ends after the current step and keeps that step's model.")
    for i, q in enumerate(j.run_id for j in mgr.queued()):
        c1, c2 = st.columns([4, 1], vertical_alignment="center")
        c1.caption(f"{i + 1}. in the queue: `{q}` — starts when the job before it ends")
        c2.button("Cancel", key=f"tr_cancel_{q}", on_click=mgr.stop, args=(q,), icon=":material/close:")
    status = run.status()
    if prog.error:
        st.error(prog.error, icon=":material/error:")
    if status.get("resume_error"):
        st.error(f"Resume failed: {status['resume_error']}", icon=":material/error:")
    if status.get("note"):
        st.info(status["note"], icon=":material/info:")
    if isinstance(status.get("truncation"), dict):
        st.caption(f":material/content_cut: {describe_truncation(status['truncation'])}")
    metrics_charts(rows, key=f"tr-{run_id}", stacked=True, config=cfg)
    if prog.state in ("finished", "stopped") and run.has_model():
        step = status.get("step") or (rows[-1]["step"] if rows else 0)
        took = f" in {fmt_duration(prog.duration_s)}" if prog.duration_s is not None else ""
        st.success(f"{'Finished' if prog.state == 'finished' else 'Stopped'} after {step} steps{took}; the model is "
                   f"in `{run.model_path}`. Try it on the Compare page.", icon=":material/check_circle:")
    was_active = st.session_state.get("tr_was_active")
    st.session_state["tr_was_active"] = prog.active
    if was_active and not prog.active:
        st.rerun()  # the job ended: redraw the page once so that the panel stops polling quickly


def locked_run() -> RunDir | None:
    """The job whose settings the form shows read-only: the watched run while it is queued or training (unless
    this session chose to edit the next job's settings). Its settings are filled in once per run."""
    run_id = watched_run()
    if run_id is None:
        return None
    run = RunDir(runs_root() / run_id)
    if run.status().get("state") not in ACTIVE_STATES or st.session_state.get("tr_unlocked") == run_id:
        return None
    if st.session_state.get("tr_filled_from") != run_id:
        fill_from_run(run)
        st.session_state["tr_filled_from"] = run_id
    return run


st.title("Train")
st.caption(f"Base model `{display_name(model) if model else '—'}` and target language {language_name(lang)} come "
           "from the sidebar (add more target languages below). Training runs in a background process: closing or "
           "reloading this tab does not stop it.")
with st.expander("Which model shows the paper's point?", icon=":material/lightbulb:"):
    model_guide()
left, right = st.columns([1, 1], gap="large")
with left:
    if note := st.session_state.pop("tr_launch_note", None):
        kind, text = note
        (st.info if kind == "info" else st.success)(text, icon=":material/schedule:" if kind == "info"
                                                     else ":material/rocket_launch:")
    locked = locked_run()
    spec = settings_form(locked)
    if st.button("Launch training", type="primary", icon=":material/play_arrow:",
                 disabled=spec is None or locked is not None,
                 key="tr_launch", width="stretch",
                 help="A job is running with these settings." if locked is not None else None):
        launch(spec)
    if spec is not None and locked is None:
        time_estimate(spec)  # right under Launch
    if st.button("Show CLI command", icon=":material/terminal:", disabled=spec is None, key="tr_cli"):
        path = save_config(spec, clo_home() / "configs")
        st.code(cli_command(path), language="bash", wrap_lines=True)
        st.caption(f"`{path}` holds these settings; a finished run keeps its own copy as `config.yaml`.")
with right, st.container(key="tr_live"):
    polling = any(RunDir(runs_root() / r).status().get("state") in ACTIVE_STATES
                  for r in filter(None, [watched_run()]))
    st.fragment(live_panel, run_every=1.5 if polling else 5.0)()
if st.session_state.pop("tr_show_live", False):
    # Launch sits at the foot of a long form: without this the page stays scrolled there, the progress panel out
    # of view. The browser scrolls the panel in (st.html runs it in this page, no iframe), once per launch.
    st.html(SHOW_LIVE_JS, unsafe_allow_javascript=True)
