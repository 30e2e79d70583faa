"""Streamlit-side pieces shared by the pages: session defaults, the sidebar, cached resources, small renderers.

``clo/`` never imports Streamlit; the caching wrappers around its functions live here. Environment:

- ``CLO_RUNS``  runs folder (default ``runs``); ``CLO_HOME`` caches, saved configs and the data folder;
- ``CLO_MODEL`` preselects a local model folder in the sidebar (used by the tests and for workshops).
"""
from __future__ import annotations

import atexit
import math
import os
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from clo.core.languages import get_language, language_name, target_languages
from clo.core.spec import spec_fields
from clo.data.formats import max_upload_mb
from clo.evaluation.langid import detect
from clo.evaluation.lexicon import marked_markdown
from clo.evaluation.metrics import check_response
from clo.models.load import load_model
from clo.models.registry import BUNDLED, ModelNotFoundError, bundled_model, list_models
from clo.models.resolve import resolve_model
from clo.runs.charts import Chart, Overlay, run_charts
from clo.runs.jobs import JobManager
from clo.runs.rundir import default_runs_root

LOCAL = "__local__"  # the sidebar choice "a folder or run directory on this machine"
HONEST_NOTE = (
    "The bundled models are tiny (135M and 270M parameters). They show the *mechanics* — the switch of output "
    "language, the loss curves, the detection — not good answers. A tuned tiny model can 'answer in Swahili' by "
    "echoing the prompt or looping a phrase; Compare flags both."
)


# -- state --------------------------------------------------------------------------------------------------------


# Settings a user expects to find again after visiting another page. Streamlit forgets the value of a widget that
# was not drawn in a run; copying it into session state at the start of every run keeps it.
PERSISTENT = (
    "sb_model_path",
    "data_source", "data_path", "data_path_limit", "data_translator", "data_review_set",
    "tr_preset", "tr_data", "tr_data_path",
    "cmp_models", "cmp_max_new", "cmp_rep", "cmp_sample", "cmp_prompt_mode", "cmp_heldout", "cmp_own",
    "cmp_batch_langs", "cmp_batch_n",
)


# The starting values of kept widgets, set here and never as the widget's own value: Streamlit warns ("created with
# a default value but also had its value set via the Session State API") about a widget given both.
WIDGET_DEFAULTS = {"cmp_max_new": 96, "cmp_rep": 1.2, "cmp_batch_n": 8}


def setting_key(name: str) -> str:
    """The session key of a TrainSpec field's widget on the Train page."""
    return f"tr_{name}"


def form_fields() -> list:
    """The TrainSpec fields the Train page shows: those with a ``form`` hint (clo/core/spec.py)."""
    return [f for f in spec_fields() if "form" in f.metadata]


def init_state() -> None:
    """Every session-state default in one place (widget keys are prefixed by their page: sb_, data_, tr_, …)."""
    ss = st.session_state
    for key in PERSISTENT + tuple(setting_key(f.name) for f in form_fields()):
        if key in ss:
            ss[key] = ss[key]
    env_model = os.environ.get("CLO_MODEL")
    ss.setdefault("sb_model", LOCAL if env_model else "default")
    ss.setdefault("sb_model_path", env_model or "")
    ss.setdefault("sb_lang", "sw")
    for key, value in WIDGET_DEFAULTS.items():
        ss.setdefault(key, value)


def runs_root() -> Path:
    """The runs folder (``$CLO_RUNS`` or ./runs), as every command sees it."""
    return default_runs_root()


def current_model() -> str:
    """What the sidebar picked, as ``TrainSpec.model`` / ``load_model`` take it."""
    ss = st.session_state
    return (ss.get("sb_model_path") or "").strip() if ss.get("sb_model") == LOCAL else ss.get("sb_model", "default")


def current_lang() -> str:
    return st.session_state.get("sb_lang", "sw")


# -- cached resources ---------------------------------------------------------------------------------------------


@st.cache_resource(show_spinner=False)
def _job_manager(root: str):
    mgr = JobManager(root)
    # the app shutting down (Ctrl-C, SIGTERM: Streamlit then exits normally) stops the job it trains as cleanly as a
    # Ctrl-C would: after its current step, with that step's model (JobManager.close). A killed app (SIGKILL) or
    # one without its terminal (SIGHUP) leaves it training: the next app finds it.
    atexit.register(mgr.close)
    return mgr


def job_manager():
    """The process-wide job manager of this runs folder: every tab and every reload gets the same one."""
    return _job_manager(str(runs_root()))


@st.cache_data(ttl=120, show_spinner=False)
def available_models() -> list[dict]:
    return list_models()


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def _loaded_model(name: str, stamp: float):
    return load_model(name)


def loaded_model(name: str):
    """A model loaded once per process (reloaded when its folder changes, e.g. a retrained run)."""
    p = Path(name).expanduser()
    target = p / "model" if (p / "model").exists() else p
    stamp = target.stat().st_mtime if target.exists() else 0.0
    return _loaded_model(name, stamp)


@st.cache_data(max_entries=20_000, show_spinner="Loading the language detectors (once, about 10 s)…")
def detect_text(text: str) -> dict:
    d = detect(text)
    votes = [v for v in d.votes.values() if v != "unknown"]
    return {"lang": d.lang, "confidence": float(d.confidence), "reason": d.reason,
            "agree": sum(v == d.lang for v in votes), "voters": len(d.votes)}


@st.cache_data(max_entries=5_000, show_spinner="Checking the answer (the lexicons load once, up to 20 s)…")
def answer_view(prompt: str, answer: str, lang: str) -> dict:
    """One answer checked once (:func:`clo.evaluation.metrics.check_response`): ``verdict`` (``{key, label,
    reason}``) and ``markdown``, the answer with the marks its real-word rate counted
    (:func:`clo.evaluation.lexicon.marked_markdown`)."""
    check = check_response(prompt, answer, lang)
    return {"verdict": check.verdict, "markdown": marked_markdown(answer, lang, check.answer_marks)}


# -- sidebar ------------------------------------------------------------------------------------------------------


def _model_options() -> tuple[dict[str, str], list[dict]]:
    """(value → label) for the picker, and the bundled models that are not installed."""
    options, missing = {}, []
    for m in available_models():
        if m["kind"] == "bundled":
            value = "default" if "default" in m["aliases"] else m["name"]
            if m["available"]:
                options[value] = m["title"].split(" (")[0]  # the license is shown under the picker
            else:
                missing.append(m)
        elif m["available"]:
            options[m["name"]] = f"{m['name']} — Hugging Face cache"
    options[LOCAL] = "Folder or run directory…"
    return options, missing


def sidebar() -> None:
    """Model and language pickers; Gemma's license notice beside Gemma. (The honest note about the tiny models is
    the Overview page's: said once, not on every page.)"""
    with st.sidebar:
        options, missing = _model_options()
        if st.session_state.get("sb_model") not in options:
            st.session_state["sb_model"] = "default" if "default" in options else LOCAL
        st.selectbox("Model", list(options), format_func=options.get, key="sb_model",
                     help="The base model that Train starts from and Compare answers with.")
        picked = bundled_model(st.session_state["sb_model"]) if st.session_state["sb_model"] != LOCAL else None
        if picked is not None:
            st.caption(f"Bundled with the app · {picked.license}")
        if st.session_state["sb_model"] == LOCAL:
            st.text_input("Model folder or run directory", key="sb_model_path", placeholder="runs/… or /path/to/model",
                          help="A transformers model folder (safetensors), a LoRA adapter or a CLO run directory.")
        name = current_model()
        if name:
            try:
                resolve_model(name, trust_remote_code=False)  # the app never runs a model's own code
            except ModelNotFoundError as e:
                st.error(str(e))
        bundled = bundled_model(name) if name else None
        if bundled and bundled.notice:
            st.info(bundled.notice, icon=":material/gavel:")
        for m in missing:
            st.caption(f"{m['title']}: not installed ({m['install']}).")
        langs = [l.code for l in target_languages()]
        st.selectbox("Target language", langs, key="sb_lang", format_func=lambda c: get_language(c).label,
                     help="The language CLO teaches the model to answer in (prompts in English stay English).")


# -- renderers ----------------------------------------------------------------------------------------------------

STATE_ICONS = {  # Streamlit markdown icons (emoji need an emoji font, which some machines lack)
    "queued": ":gray[:material/schedule:]", "running": ":blue[:material/play_circle:]",
    "finished": ":green[:material/check_circle:]", "stopped": ":orange[:material/stop_circle:]",
    "failed": ":red[:material/error:]", "interrupted": ":orange[:material/warning:]",
    "unknown": ":gray[:material/help:]",
    "unreadable": ":red[:material/broken_image:]",
}


def model_guide() -> None:
    """Which bundled model shows what, with the figures of docs/results.md; how to get the one not installed."""
    installed = {m["name"]: m["available"] for m in available_models()}
    for m in BUNDLED.values():
        how = (f" Preset **{m.preset}** on the Train page." if installed.get(m.name)
               else f" Not installed here: `{m.install}`, then pick it in the sidebar (preset **{m.preset}**).")
        st.markdown(f"**{m.title.split(' (')[0]}** — {m.finding}{how}")


NUMBER_FORMATS = {  # one format per quantity, on every page
    "rate": "{:.2f}",  # LPR, clean LPR, echo, loop, WPR, preference accuracy: shares in [0, 1]
    "chrf": "{:.1f}",  # chrF++, 0–100
    "loss": "{:.3f}",  # losses and reward margins, in nats
    "lr": "{:.1e}",
    "weight": "{:g}",  # λ, β, epochs
    "count": "{:,.0f}",  # steps, n, samples
}
MISSING = "—"


def text_file_uploader(label: str, key: str, help: str):
    """A JSON Lines / CSV uploader capped at ``CLO_MAX_UPLOAD_MB`` (clo.data.formats.max_upload_mb), the cap in its
    help."""
    cap = max_upload_mb()
    return st.file_uploader(label, type=["jsonl", "json", "csv"], key=key, max_upload_size=max(1, math.ceil(cap)),
                            help=f"{help} UTF-8 JSON Lines or CSV, up to {cap:g} MB (CLO_MAX_UPLOAD_MB); "
                                 "only parsed as text, never run.")


def fmt_number(value, kind: str) -> str:
    """``value`` in the format of its quantity ``kind`` (:data:`NUMBER_FORMATS`); ``—`` when there is none."""
    if value is None or value == "":
        return MISSING
    try:
        return NUMBER_FORMATS[kind].format(float(value))
    except (TypeError, ValueError):
        return str(value)


def fmt_duration(seconds) -> str:
    """m:ss (h:mm:ss from an hour); ``—`` when unknown."""
    if seconds is None:
        return "—"
    s = int(round(float(seconds)))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def evidence(det: dict) -> str:
    """What a detection rests on, in words a newcomer can read: "3 of 3 detectors", "by its script"."""
    if det.get("reason") in ("script", "marker"):
        return "by its script" if det.get("reason") == "script" else "not text"
    if det.get("voters"):
        return f"{det.get('agree', 0)} of {det['voters']} detectors"
    return f"{det['confidence']:.0%} sure"


def badge_markdown(det: dict, expected: str | None = None, *, prefix: str = "", rejected: bool = False) -> str:
    """Detected language and confidence as an inline markdown badge: green when it is ``expected``, red when
    not, grey without one; ``rejected`` (a pair's rejected answer, in the wrong language on purpose): orange
    when it is."""
    label = f"{prefix}{language_name(det['lang'])} · {evidence(det)}".replace("[", "(").replace("]", ")")
    if expected is None:
        color, icon = "gray", "language"
    elif rejected and det["lang"] == expected:
        color, icon = "orange", "swap_horiz"
    elif det["lang"] == expected:
        color, icon = "green", "check_circle"
    else:
        color, icon = "red", "error"
    return f":{color}-badge[:material/{icon}: {label}]"


def language_badge(det: dict, expected: str | None = None, *, prefix: str = "", rejected: bool = False) -> None:
    """:func:`badge_markdown` on its own line."""
    st.markdown(badge_markdown(det, expected, prefix=prefix, rejected=rejected))


def _figure(chart: Chart, *, height: int, n_steps: int, legend_y: float = -0.35) -> go.Figure:
    """One chart of :mod:`clo.runs.charts` as a Plotly figure (its series' colours, or Plotly's palette)."""
    fig = go.Figure()
    for s in chart.series:
        line = {"dash": s.dash} | ({"color": s.color} if s.color else {})
        mode = "lines+markers" if n_steps <= 40 else "lines"
        fig.add_trace(go.Scatter(x=s.steps, y=s.values, name=s.label, mode=mode, line=line, connectgaps=True))
    fig.update_layout(title={"text": chart.title, "font": {"size": 15}}, height=height,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10}, xaxis_title="optimizer step",
                      yaxis_title=chart.y_title, legend={"orientation": "h", "y": legend_y}, uirevision=chart.title)
    if n_steps <= 10:
        fig.update_xaxes(dtick=1)  # whole steps, not 1.5
    if chart.y_range:
        fig.update_yaxes(range=list(chart.y_range))
    return fig


def metrics_charts(rows: list[dict], key: str, *, stacked: bool = False, config: dict | None = None) -> None:
    """The run's charts (:func:`clo.runs.charts.run_charts`: loss, rewards, log-probabilities, preference
    accuracy), each with its caption; two by two, or ``stacked`` one under the other (a narrow column).
    ``config``: the run's settings, which the captions quote (λ, β, the method)."""
    if not rows:
        st.caption("No training step logged yet.")
        return
    charts = run_charts(rows, config)
    if stacked:
        cols = [st.container() for _ in charts]
    else:
        cols = [c for _ in range(0, len(charts), 2) for c in st.columns(2)]
    for col, chart in zip(cols, charts):
        if not chart.series:
            col.caption(f"**{chart.title}** — {chart.empty}")
            continue
        fig = _figure(chart, height=260 if stacked else 300, n_steps=len(rows))
        col.plotly_chart(fig, key=f"{key}-{chart.title}", config={"displayModeBar": False})
        col.caption(chart.caption)


def overlay_charts(ov: Overlay, key: str) -> None:
    """Several runs on the same axes (:func:`clo.runs.charts.overlay`): one chart per metric, one line per run
    named by the settings that differ, two charts a row."""
    for problem in ov.problems:
        st.warning(problem, icon=":material/warning:")
    if len(ov.runs) < 2:
        st.caption("Pick two or more runs that have logged steps to draw them on the same axes.")
        return
    st.caption("Lines named by the settings that differ: " + (", ".join(f"`{k}`" for k in ov.differ)
               or "none (the runs are told apart by their folder names)") + ".")
    cols = [c for _ in range(0, len(ov.charts), 2) for c in st.columns(2)]
    for col, chart in zip(cols, ov.charts):
        fig = _figure(chart, height=320, n_steps=len(ov.steps), legend_y=-0.3)
        col.plotly_chart(fig, key=f"{key}-{chart.series[0].key}", config={"displayModeBar": False})
        col.caption(chart.caption)
