"""Train: settings → a background job (one at a time, the rest queue) → live curves, progress, ETA and Stop."""
from pathlib import Path

import streamlit as st

from clo.data import DataError, load_crosslingual
from clo.jobs import cli_command, read_progress, save_config
from clo.models import BUNDLED, ModelNotFoundError, clo_home, resolve_model
from clo.runs import RunDir, RunError, list_runs, safe_run_path
from clo.train import METHODS, SCOPES, SpecError, TrainSpec, list_recipes, load_recipe
from clo.ui_state import list_datasets
from app_pages._shared import (STATE_ICONS, available_models, current_lang, current_model, fmt_duration, job_manager,
                           lang_name, metrics_charts, runs_root)

FIELDS = ("method", "scope", "lam", "beta", "lr", "epochs", "batch_size", "max_steps", "max_length", "limit",
          "save_steps", "group_by_length")
FLOATS = ("lam", "beta", "lr", "epochs")
BOOLS = ("group_by_length",)
OTHER = "__other__"
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
    for f in FIELDS:
        v = getattr(spec, f)
        st.session_state[f"tr_{f}"] = (float(v) if f in FLOATS else bool(v) if f in BOOLS
                                       else v if f in ("method", "scope") else int(v or 0))
    # a preset made for one bundled model (demo-gemma) also picks that model in the sidebar
    if str(recipe.get("model", "default")) in {a for m in BUNDLED.values() for a in (m.name, *m.aliases)} - {"default"}:
        st.session_state["sb_model"] = recipe["model"]


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
    c1, c2 = st.columns(2)
    c1.selectbox("Method", list(METHODS), key="tr_method",
                 help="\n\n".join(f"**{k}**: {v}" for k, v in METHODS.items()))
    c2.selectbox("Trainable scope", list(SCOPES), key="tr_scope",
                 help="\n\n".join(f"**{k}**: {v}" for k, v in SCOPES.items()))
    c1, c2 = st.columns(2)
    c1.slider("λ", 0.0, 1.0, step=0.05, key="tr_lam",
              help="Weight of the target-language NLL: L = λ·NLL(target) + (1−λ)·cross-lingual loss. CLO only.")
    c2.number_input("β", 0.001, 10.0, step=0.05, format="%.3f", key="tr_beta",
                    help="DPO temperature: how sharply the preference loss separates chosen from rejected.")
    c1, c2, c3 = st.columns(3)
    c1.number_input("Learning rate", 1e-7, 1e-2, step=1e-5, format="%.1e", key="tr_lr")
    c2.number_input("Epochs", 0.1, 100.0, step=1.0, key="tr_epochs")
    c3.number_input("Batch size", 1, 256, step=1, key="tr_batch_size",
                    help="Samples per step. CLO: each sample gives 2 preference pairs = 4 sequences.")
    c1, c2, c3 = st.columns(3)
    c1.number_input("Max steps", 0, 1_000_000, step=1, key="tr_max_steps", help="0: no limit (epochs decide)")
    c2.number_input("Max length", 16, 8192, step=16, key="tr_max_length", help="Tokens of prompt + answer.")
    c3.number_input("Samples", 0, 1_000_000, step=10, key="tr_limit", help="Use only the first N samples; 0: all")
    c1, c2, _ = st.columns(3)
    c2.checkbox("Group samples by length", key="tr_group_by_length",
                help="Batches hold samples of similar length: less padding, about 12% faster on the demo data; "
                     "the order of batches stays shuffled.")
    c1.number_input("Save every N steps", 0, 1_000_000, step=10, key="tr_save_steps",
                    help="Also saves the model and a checkpoint of the training state every N steps, which lets an "
                         "interrupted or stopped run be resumed from the Runs page (from its last checkpoint). "
                         "0: save only at the end; such a run cannot be resumed.")
    ss = st.session_state
    try:
        return TrainSpec(method=ss.tr_method, lang=lang, model=model or "", data=data or "", scope=ss.tr_scope,
                         lam=float(ss.tr_lam), beta=float(ss.tr_beta), lr=float(ss.tr_lr), epochs=float(ss.tr_epochs),
                         batch_size=int(ss.tr_batch_size), max_steps=int(ss.tr_max_steps) or None,
                         max_length=int(ss.tr_max_length), limit=int(ss.tr_limit) or None,
                         save_steps=int(ss.get("tr_save_steps") or 0),
                         group_by_length=bool(ss.get("tr_group_by_length")))
    except SpecError as e:
        st.error(str(e))
        return None


def launch(spec: TrainSpec) -> None:
    """Check what can be checked here, then queue the job. A refusal creates nothing and touches no other run."""
    try:
        resolve_model(spec.model, trust_remote_code=spec.trust_remote_code)
        n = len(load_crosslingual(spec.data, spec.lang))
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
    """What trains now (so a reload or a second tab re-attaches to it); else this session's last job; else the
    newest run in the folder."""
    active = mgr.active()
    if active:
        return active.run_id
    elsewhere = mgr.running_elsewhere()
    if elsewhere:
        return elsewhere[0]
    own = st.session_state.get("train_run")
    if own and RunDir(runs_root() / own).exists():
        return own
    newest = list_runs(runs_root())
    return newest[0]["id"] if newest else None


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
st.caption(f"Base model `{model or '—'}` and target language {lang_name(lang)} come from the sidebar. "
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
