"""Runs: every run with its status, settings, results and duration; open one in Compare, resume, stop or delete it."""

import streamlit as st

from app_pages._shared import (
    MISSING,
    STATE_ICONS,
    fmt_duration,
    fmt_number,
    job_manager,
    metrics_charts,
    overlay_charts,
    runs_root,
)
from clo.core.languages import language_name
from clo.models.registry import display_name
from clo.runs.catalog import run_file_text, run_table
from clo.runs.charts import DEFAULT_OVERLAY, OVERLAY_METRICS, overlay
from clo.runs.jobs import ACTIVE_STATES, LOG_NAME
from clo.runs.rundir import RunDir, RunError
from clo.workshop.export import ExportError, default_export_dir, export_run

mgr = job_manager()
DANGER_CSS = """<style>
.st-key-runs_delete_yes button { background-color: #b91c1c; border-color: #b91c1c; color: #fff; }
.st-key-runs_delete_yes button:hover { background-color: #991b1b; border-color: #991b1b; color: #fff; }
</style>"""
st.title("Runs")
st.caption(f"Run folder `{runs_root()}` (set `CLO_RUNS` to use another). Each run keeps `config.yaml`, "
           "`status.json`, `metrics.jsonl` and its `model/`.")

rows = run_table(runs_root())
if not rows:
    st.info("No runs yet: launch one on the Train page.")
    st.page_link("app_pages/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()

COLUMNS = {  # column → (runs-table key, quantity, tooltip); every cell a formatted text, "—" where there is none
    "steps": ("steps", "count", "optimizer steps done"),
    "loss": ("loss", "loss", "the last logged training loss (nats)"),
    "margin": ("margin", "loss", f"chosen minus rejected reward at the last step ({MISSING}: SFT has no pairs)"),
    "accuracy": ("accuracy", "rate", f"share of pairs whose chosen answer wins ({MISSING}: SFT has no pairs)"),
    "clean LPR": ("clean_lpr", "rate", f"from the run's last evaluation on Compare ({MISSING}: not evaluated yet)"),
    "LPR": ("lpr", "rate", f"from the run's last evaluation on Compare ({MISSING}: not evaluated yet)"),
    "lr": ("lr", "lr", "learning rate"), "λ": ("lambda", "weight", "weight of the SFT term"),
    "β": ("beta", "weight", "DPO temperature"), "epochs": ("epochs", "weight", "passes over the data"),
    "batch": ("batch", "count", "samples per batch"),
}
# Twenty columns do not fit a window (at 1440 px the table was cut at "epochs"): each view shows the run and a few
# columns, sized so that it fits a 1024 px window (tests/test_browser.py checks); the table's column menu shows any
# other column on demand. Widths in px: a header's text and its padding; None: as wide as the longest cell.
VIEWS = {
    "Overview": ("status", "method", "language", "duration"),
    "Training": ("steps", "loss", "margin", "accuracy"),
    "Evaluation": ("clean LPR", "LPR"),
    "Settings": ("objective", "lr", "λ", "β", "epochs", "batch"),
    "Model": ("model", "scope", "precision"),
}
WIDTHS = {"run": None, "status": 90, "method": 70, "language": None, "duration": 70, "steps": 55, "loss": 55,
          "margin": 60, "accuracy": 75, "clean LPR": 80, "LPR": 55, "objective": 80, "lr": 70, "λ": 45, "β": 45,
          "epochs": 60, "batch": 55, "model": None, "scope": 80, "precision": 80}
TIPS = {col: tip for col, (_, _, tip) in COLUMNS.items()} | {
    "run": "the run's folder under the runs folder", "duration": "from start to end (m:ss)",
    "precision": "what the run computed in: fp32, or bf16 autocast where the hardware has it (the Precision setting)"}
st.session_state.setdefault("runs_view", "Overview")
view = st.segmented_control("Columns", list(VIEWS), required=True, key="runs_view",
                            help="Which columns the table shows; its column menu (⋮ at a column's header) "
                                 "shows any other.")
st.dataframe(
    [{"run": r["run"], "status": r["state"], "method": r["method"] or MISSING, "objective": r["objective"] or MISSING,
      "language": language_name(r["lang"]),
      **{col: fmt_number(r[key], kind) for col, (key, kind, _) in COLUMNS.items()},
      "duration": fmt_duration(r["duration_s"]), "precision": r["precision"] or MISSING, "scope": r["scope"] or MISSING,
      "model": display_name(r["model"] or "") or MISSING} for r in rows],
    hide_index=True, key="runs_table", column_order=("run", *VIEWS[view]),
    column_config={col: st.column_config.TextColumn(col, help=TIPS.get(col), width=WIDTHS[col],
                                                    pinned=col == "run")
                   for col in ("run", *(c for cols in VIEWS.values() for c in cols))},
)

by_id = {r["run"]: r for r in rows}
if (wanted := st.query_params.get("run")) in by_id and st.session_state.get("runs_linked") != wanted:
    st.session_state["runs_sel"] = st.session_state["runs_linked"] = wanted  # a ?run=<id> deep link, once
if st.session_state.get("runs_sel") not in by_id:
    st.session_state["runs_sel"] = rows[0]["run"]
run_id = st.selectbox("Run", list(by_id), key="runs_sel",
                      format_func=lambda i: f"{i} — {by_id[i]['state']}")
r = by_id[run_id]
run = RunDir(r["path"])
st.markdown(f"{STATE_ICONS.get(r['state'], '')} **{r['state']}** · {r['method']} · {language_name(r['lang'])} · "
            f"model `{r['model']}` · "
            f"{fmt_number(r['steps'] or 0, 'count')} steps · took {fmt_duration(r['duration_s'])}")
st.caption(f"Link to this run: `?run={run_id}` on the Runs or the Train page.")
if r["error"]:
    st.error(r["error"], icon=":material/error:")
if r["resume_error"]:
    st.error(f"Resume failed: {r['resume_error']}", icon=":material/error:")
if r["note"]:
    st.info(r["note"], icon=":material/info:")
if r["resume_queued"]:
    st.info("Waiting in the training queue to resume from its checkpoint; the Train page shows it when it starts.",
            icon=":material/schedule:")
elif r["not_resumable"]:
    st.caption(f":material/block: Cannot resume. {r['not_resumable']}")

c1, c2, c3 = st.columns(3)
if c1.button("Open in Compare", icon=":material/compare:", disabled=not r["has_model"], key="runs_open",
             help=None if r["has_model"] else "This run saved no model."):
    st.session_state["compare_open"] = r["path"]
    st.switch_page("app_pages/compare.py")
active = r["state"] in ACTIVE_STATES
if active and c2.button("Stop", icon=":material/stop_circle:", key="runs_stop"):
    st.toast(f"{run_id}: {mgr.stop(run_id)}")
if r["resumable"] and c2.button(f"Resume from step {r['resume_step']}", icon=":material/play_arrow:", key="runs_resume",
                                type="primary", help="Continues this run from its checkpoint as a background job, "
                                "in the training queue (one job at a time); the Train page shows it live."):
    try:
        mgr.submit_resume(run_id)
    except (RunError, OSError) as e:
        st.error(str(e))
    else:
        st.session_state["train_run"] = run_id
        st.switch_page("app_pages/train.py")
if c3.button("Delete…", icon=":material/delete:", key="runs_delete", disabled=active,
             help="Stop it first." if active else "Removes the run folder and its model."):
    st.session_state["runs_confirm"] = run_id
if st.session_state.get("runs_confirm") == run_id:
    st.warning(f"Delete **{run_id}** with its model and metrics? This cannot be undone.")
    y, n = st.columns(2)
    # Streamlit has no destructive button type: a primary button that the page's style paints red (DANGER_CSS),
    # with a warning icon in its label, so that it reads as the irreversible choice even without the colour
    st.html(DANGER_CSS)
    if y.button("Yes, delete it", type="primary", key="runs_delete_yes", icon=":material/delete_forever:"):
        try:
            mgr.delete(run_id)
        except (RunError, OSError) as e:
            st.error(str(e))
        else:
            st.session_state.pop("runs_confirm", None)
            st.session_state.pop("runs_sel", None)
            st.toast(f"Deleted {run_id}.")
            st.rerun()
    if n.button("Cancel", key="runs_delete_no"):
        st.session_state.pop("runs_confirm", None)
        st.rerun()

with st.expander("Take this model home", icon=":material/output:"):
    st.caption("A folder that transformers loads on its own (LoRA merged, the chat template it trained with), with a "
               "model card (README.md) and an Ollama Modelfile; optionally one GGUF file for llama.cpp and Ollama. "
               "Same as `python -m clo export`.")
    if st.session_state.get("runs_export_for") != run_id:  # a fresh suggestion for each run
        st.session_state["runs_export_for"] = run_id
        st.session_state["runs_export_dir"] = str(default_export_dir(run))
    where = st.text_input("Export to folder", key="runs_export_dir", help="A new or empty folder; nothing is "
                          "overwritten. The default is outside the run, so deleting the run keeps the export.")
    g1, g2 = st.columns(2)
    with_gguf = g1.checkbox("Also write a GGUF", key="runs_export_gguf", help="One file for llama.cpp and Ollama, "
                            "unquantized: quantize it afterwards with llama.cpp's llama-quantize.")
    gguf_type = g2.radio("GGUF precision", ["f16", "f32"], key="runs_export_gguf_type", horizontal=True,
                         disabled=not with_gguf, help="f16: half the size; f32: exactly the run's weights.")
    if st.button("Export", icon=":material/output:", key="runs_export", disabled=not r["has_model"] or active,
                 help="This run saved no model." if not r["has_model"] else "Wait until it ends." if active else None):
        try:
            with st.spinner(f"Exporting {run_id}…"):
                done = export_run(run, where, gguf=gguf_type if with_gguf else None)
        except (ExportError, OSError) as e:
            st.error(str(e), icon=":material/error:")
        else:
            st.success(f"Exported to `{done.folder}`" + (" (LoRA merged)" if done.merged_lora else "")
                       + (f" · GGUF `{done.gguf}`" if done.gguf else ""), icon=":material/check_circle:")
            st.caption("Wrote " + ", ".join(f"`{name}`" for name in done.summary()["files"])
                       + ". Check it against the run: `python -m clo export RUN --out NEW_FOLDER --gguf --verify 10`.")
            for note in done.notes:
                st.caption(note)

metrics_charts(run.metrics(), key=f"runs-{run_id}", config=run.config())
with st.expander("Runs on the same axes", icon=":material/stacked_line_chart:",
                 expanded=bool(st.session_state.get("runs_overlay"))):
    st.caption("Pick two or more runs: one chart per metric, one line per run, named by the settings in which the "
               "runs differ (β, λ, the objective…), so their effect shows side by side.")
    picked = st.multiselect("Runs", list(by_id), key="runs_overlay", placeholder="Choose runs to overlay",
                            format_func=lambda i: f"{i} — {by_id[i]['method'] or MISSING}")
    st.session_state.setdefault("runs_overlay_metrics", list(DEFAULT_OVERLAY))
    shown = st.multiselect("Metrics", list(OVERLAY_METRICS), key="runs_overlay_metrics",
                           format_func=lambda m: OVERLAY_METRICS[m][0])
    overlay_charts(overlay([by_id[i]["path"] for i in picked], shown), key="runs-overlay")
with st.expander("config.yaml"):  # files of the run itself only: a link to a file elsewhere is not shown
    st.code(run_file_text(run.path, "config.yaml") or "", language="yaml")
    st.caption(f"Reproduce: `python -m clo train --config {run.config_path}`")
log_text = run_file_text(run.path, LOG_NAME, max_chars=200_000)
if log_text is not None:
    with st.expander("Training log (last lines)"):
        text = log_text.replace("\r", "\n")
        st.code("\n".join(line for line in text.splitlines() if line.strip())[-6000:], language=None)
