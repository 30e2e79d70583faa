"""Compare: the base model and tuned runs side by side — which language do they answer in, and is it real text?"""
import plotly.express as px
import streamlit as st

from app_pages._shared import (
    MISSING,
    answer_view,
    current_lang,
    current_model,
    detect_text,
    fmt_number,
    loaded_model,
    runs_root,
    text_file_uploader,
)
from clo.core.downloads import rows_to_csv
from clo.core.languages import language_name
from clo.data.formats import DataError, load_prompts
from clo.evaluation.endpoint import ENDPOINT_KEY_ENV, Endpoint, EndpointClient, EndpointError, has_key, public_url
from clo.evaluation.evaluate import evaluate, parse_responses, score_answers
from clo.evaluation.generate import GenerationOptions, stream
from clo.evaluation.lexicon import has_lexicon
from clo.evaluation.metrics import COMPARE_COLUMNS, METRICS
from clo.runs.catalog import default_picks, model_choices, runs_with_model

lang, base = current_lang(), current_model()
st.title("Compare")
RUNS = runs_with_model(runs_root())  # the runs the picker offers after the sidebar's model
# run path → its target languages (a run may have several: sw,yo)
RUN_LANGS = {r["path"]: [c for c in str(r["lang"] or "").split(",") if c] for r in RUNS}


def pick_models(opts: dict[str, str]) -> list[str]:
    ss = st.session_state
    opened = ss.pop("compare_open", None)  # "Open in Compare" on the Runs page
    if opened in opts:
        ss["cmp_models"] = [m for m in (base, opened) if m in opts]
        for stale in ("cmp_answers", "cmp_batch", "cmp_batch_file"):  # answers of other models or settings: start fresh
            ss.pop(stale, None)
    elif "cmp_models" in ss:
        ss["cmp_models"] = [m for m in ss["cmp_models"] if m in opts][:3]
    else:
        ss["cmp_models"] = default_picks(opts, base, RUNS)
    return st.multiselect("Models (two or three)", list(opts), format_func=opts.get, max_selections=3,
                          key="cmp_models", help="The base model from the sidebar and any run that saved a model.")


def served_models() -> dict[str, Endpoint]:
    """Models served at a URL that this session added (value in the model picker → :class:`Endpoint`)."""
    return {name: Endpoint(e["url"], e["model"]) for name, e in st.session_state.get("cmp_endpoints", {}).items()}


def add_served_model() -> None:
    """"A model served at a URL": any OpenAI-compatible chat endpoint, beside the local models. It is checked
    (reachable, takes the key, has the model) before it joins the picker; the key is read from the environment
    only."""
    with st.expander("Add a model served at a URL", icon=":material/cloud:"):
        st.caption("Any OpenAI-compatible chat endpoint: `clo serve`, Ollama, llama.cpp's server, vLLM or a hosted "
                   "API. Its answers get the same prompt, settings and language badges as a local model's.")
        c1, c2 = st.columns([3, 2])
        url = c1.text_input("Endpoint URL", key="cmp_ep_url", placeholder="http://127.0.0.1:8000/v1").strip()
        name = c2.text_input("Model name there", key="cmp_ep_model", placeholder="default").strip()
        state = "is set" if has_key() else "is not set: fine for a server without a key"
        st.caption(f"The key comes only from the environment variable `{ENDPOINT_KEY_ENV}` of the app's process "
                   f"(now it {state}). It is never asked for here, shown or saved.")
        # never greyed: a click on it is what commits a URL just typed (as the Answer button)
        if st.button("Add", key="cmp_ep_add", icon=":material/add:"):
            if not (url and name):
                st.warning("Give the endpoint's URL and the model's name there, then press **Add**.",
                           icon=":material/edit:")
                return
            try:
                ep = Endpoint(url, name)
                EndpointClient(ep).check()
            except EndpointError as e:
                st.error(str(e), icon=":material/error:")
                return
            st.session_state.setdefault("cmp_endpoints", {})[ep.name] = {"url": public_url(url), "model": name}
            picked = st.session_state.get("cmp_models", [])
            if ep.name not in picked and len(picked) < 3:
                st.session_state["cmp_models"] = [*picked, ep.name]
            st.success(f"Added {ep.name}.", icon=":material/check:")


def gen_options() -> GenerationOptions:
    with st.expander("Generation settings"):
        c1, c2, c3 = st.columns(3)
        # defaults in session state only (init_state): a widget given a value as well draws a warning
        n = c1.number_input("Max new tokens", 8, 1024, step=8, key="cmp_max_new")
        rp = c2.number_input("Repetition penalty", 1.0, 2.0, step=0.05, key="cmp_rep",
                             help="1.2 by default: tiny models loop without it.")
        sample = c3.toggle("Sample (else greedy)", key="cmp_sample")
    return GenerationOptions(max_new_tokens=int(n), repetition_penalty=float(rp), do_sample=sample)


def checked_answer(prompt: str, prompt_lang: str, answer: str, info: dict | None = None) -> None:
    """A complete answer, checked once (``answer_view``): its text with the words the lexicon does not know
    marked, the verdict as a badge (clean; shaped like the language but not real words; another language; echo;
    loop) with its reason, and the real-word count with what was left out of it; a note when the answer ran
    out of tokens (``info``: ``{tokens, cut}`` from clo.evaluation.generate)."""
    view = answer_view(prompt, answer, prompt_lang) if answer else None
    st.markdown(view["markdown"] if view else "_(nothing)_")
    if info and info.get("cut"):
        st.caption(f":material/content_cut: cut at {info['tokens']} tokens (Max new tokens): the answer did not end "
                   "by itself.")
    if not answer.strip():
        st.warning("Empty answer.", icon=":material/block:")
        return
    verdict = view["verdict"]
    color, icon = VERDICT_BADGES.get(verdict["key"], ("red", "error"))
    st.markdown(f":{color}-badge[:material/{icon}: {verdict['label']}]")
    legend = (" In the answer, red: words no lexicon knows; grey: names, numbers, code and the like, left out of "
              "the count." if has_lexicon(prompt_lang) else "")
    st.caption((verdict["reason"] + legend).replace("$", "\\$"))


VERDICT_BADGES = {"clean": ("green", "check_circle"), "not_real_words": ("orange", "blur_on"),
                  "not_spelled": ("orange", "spellcheck"), "echo": ("orange", "content_copy"),
                  "loop": ("orange", "repeat"), "wrong_language": ("red", "error"), "excluded": ("gray", "block")}


def short(text: str, n: int = 64) -> str:
    """A picker's text, short enough not to be cut off in a narrow column."""
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def show_answer(text: str) -> None:
    """The answer as it is (while it streams, and the reference answer)."""
    st.markdown(text.replace("$", "\\$") if text else "_(nothing)_")


def single_prompt(models: list[str], labels: dict[str, str], opts: GenerationOptions) -> None:
    mode = st.radio("Prompt", ["held-out", "own"], horizontal=True, key="cmp_prompt_mode",
                    format_func={"held-out": "A held-out prompt", "own": "Write my own"}.get)
    if mode == "held-out":
        try:
            prompts = load_prompts("demo", [lang, "en"])
        except DataError as e:
            st.warning(f"{e}. Write your own prompt instead.")
            return
        idx = st.selectbox("Held-out prompt", range(len(prompts)), key="cmp_heldout",
                           format_func=lambda i: short(f"{language_name(prompts[i]['lang'])} · {prompts[i]['prompt']}"))
        prompt, prompt_lang = prompts[idx]["prompt"], prompts[idx]["lang"]
        reference = prompts[idx].get("reference")
        st.caption(f"A {language_name(prompt_lang)} prompt: a green badge means the answer is in "
                   f"{language_name(prompt_lang)} too.")
    else:
        reference = None
        prompt = st.text_area("Your prompt", key="cmp_own",
                              placeholder="Habari! Unaweza kunieleza kuhusu mvua?").strip()
        prompt_lang = detect_text(prompt)["lang"] if prompt else lang
        if prompt:
            st.caption(f"Prompt detected as {language_name(prompt_lang)}.")
    # enabled with an empty prompt too: a click on it is what commits a prompt just typed (the text box applies
    # its text when it loses focus), so a button greyed until then would swallow that first click
    go = st.button("Answer", type="primary", icon=":material/play_arrow:", key="cmp_go", disabled=not models)
    if go and not prompt:
        st.warning("Write a prompt first, then press **Answer**.", icon=":material/edit:")
        go = False
    cols = st.columns(max(len(models), 1) + (1 if reference else 0))
    if reference:
        with cols[-1].container(border=True):
            st.markdown("**Reference answer**")
            st.caption("hand-written, shipped with the held-out prompts (what chrF++ compares against)")
            show_answer(reference)
    if go:
        answers, infos = stream_side_by_side(models, labels, prompt, prompt_lang, opts, cols)
        st.session_state["cmp_answers"] = {"prompt": prompt, "lang": prompt_lang, "answers": answers, "infos": infos,
                                           "models": list(models), "options": repr(opts)}
        return
    last = st.session_state.get("cmp_answers")
    if last and last["prompt"] == prompt and last.get("options") == repr(opts):
        for col, m in zip(cols, models):
            with col:
                st.markdown(f"**{labels.get(m, m)}**")
                if m in last["answers"]:
                    checked_answer(last["prompt"], last["lang"], last["answers"][m], last.get("infos", {}).get(m))
                else:
                    st.caption("Press **Answer** to hear from this model too.")


def stream_side_by_side(models, labels, prompt, prompt_lang, opts, cols) -> tuple[dict[str, str], dict[str, dict]]:
    """Stream every model's answer into its column at once (round robin over the token streams). Returns the
    answers and, per model, ``{tokens, cut}``."""
    slots, streams, texts, infos = {}, {}, {}, {}
    for col, m in zip(cols, models):
        with col:
            st.markdown(f"**{labels.get(m, m)}**")
            slots[m] = st.empty()
        try:
            served = SERVED.get(m)  # a model served at a URL streams from there
            streams[m] = (EndpointClient(served).stream(prompt, opts) if served
                          else stream(loaded_model(m), prompt, opts))
            texts[m] = ""
        except Exception as e:  # a model that cannot load must not hide the others
            slots[m].error(f"{type(e).__name__}: {e}")
    while streams:
        for m in list(streams):
            try:
                texts[m] = next(streams[m])
                with slots[m].container():
                    show_answer(texts[m] + " ▌")
            except StopIteration as done:
                if done.value is not None:
                    infos[m] = {"tokens": done.value.tokens, "cut": done.value.cut}
                del streams[m]
            except EndpointError as e:  # the text received so far stays, with what went wrong
                with slots[m].container():
                    if e.answers:
                        show_answer(e.answers[0].text)
                    st.error(str(e), icon=":material/cloud_off:")
                del streams[m], texts[m]
            except Exception as e:
                slots[m].error(f"{type(e).__name__}: {e}")
                del streams[m], texts[m]
    for m, text in texts.items():
        with slots[m].container():
            checked_answer(prompt, prompt_lang, text, infos.get(m))
    return texts, infos


def batch(models: list[str], labels: dict[str, str], opts: GenerationOptions) -> None:
    st.caption("Generates answers to held-out prompts and scores them: **LPR** — answers whose every line is in "
               "the prompt's language; **clean LPR** — the same, neither echo nor loop, and enough words a "
               "dictionary of the language knows (**real words**; none for Yoruba); chrF++ against the reference "
               "answers. n is small: read small differences as noise.")
    c1, c2 = st.columns([3, 1])
    # the sidebar's language, every target language of the chosen runs (one run may have several), and English
    choices = list(dict.fromkeys([lang, *(c for m in models for c in RUN_LANGS.get(m, [])), "en"]))
    if "cmp_batch_langs" in st.session_state:
        st.session_state["cmp_batch_langs"] = [c for c in st.session_state["cmp_batch_langs"] if c in choices]
    else:
        st.session_state["cmp_batch_langs"] = choices  # the default, in session state only (no warning)
    langs = c1.multiselect("Prompt languages", choices, key="cmp_batch_langs",
                           format_func=language_name,
                           help="Target prompts test fidelity; English prompts test preservation. "
                                "A run trained on several languages is scored on each.")
    per_lang = c2.number_input("Prompts per language", 1, 48, key="cmp_batch_n")
    if st.button("Run batch evaluation", type="primary", key="cmp_batch_go", disabled=not (models and langs)):
        try:
            prompts = load_prompts("demo", langs, per_lang=int(per_lang))
        except DataError as e:
            st.error(str(e))
            return
        bar = st.progress(0.0, text="Generating…")
        order = {m: i for i, m in enumerate(models)}

        def progress(name, done, total):
            frac = (order.get(name, 0) + done / max(total, 1)) / len(models)
            bar.progress(min(frac, 1.0), text=f"{labels.get(name, name)}: {done}/{total} prompts")

        try:
            result = evaluate([SERVED.get(m, m) for m in models], prompts, options=opts, progress=progress)
        except EndpointError as e:  # checked before anything generates: nothing was lost
            bar.empty()
            st.error(str(e), icon=":material/cloud_off:")
            return
        bar.empty()
        if partial := result.get("partial"):
            st.warning(f"{partial['error']}. The scores below are partial: {partial['answered']} of "
                       f"{partial['prompts']} answers from {labels.get(partial['model'], partial['model'])}"
                       + (f"; not evaluated: {', '.join(labels.get(m, m) for m in partial['not_evaluated'])}"
                          if partial["not_evaluated"] else "") + ". The answers received are kept below and in the "
                       "answers CSV (column partial).", icon=":material/cloud_off:")
        st.session_state["cmp_batch"] = {"labels": dict(labels), "models": result["models"],
                                         "responses": result["responses"], "per_lang": int(per_lang)}
    if held := st.session_state.get("cmp_batch"):
        n = f": {held['per_lang']} per language" if held.get("per_lang") else ""
        st.markdown(f"#### Held-out prompts{n}")
        show_batch(held, "cmp")
    st.divider()
    # answers made elsewhere are scored beside the held-out results, never in their place
    uploaded_answers()
    if up := st.session_state.get("cmp_upload"):
        st.markdown(f"#### Answers made elsewhere: `{up['file']}`")
        show_batch(up, "cmp_up")


def uploaded_answers() -> None:
    """Score answers made elsewhere (``clo eval --responses``'s file): no model loads, the same scores and view."""
    up = text_file_uploader("Or score answers made elsewhere: JSON Lines or CSV of {id, lang, prompt, response} "
                            "(optional: model, reference)", key="cmp_resp_upload",
                            help="No model loads: the answers are scored as they are, with the same scores as "
                                 "`python -m clo eval --responses FILE --json`. One result per `model` value.")
    if up is None or st.session_state.get("cmp_batch_file") == up.file_id:
        return
    try:
        result = score_answers(parse_responses(up.name, up.getvalue()))
    except DataError as e:
        st.error(f"{e} — fix the file and upload it again.", icon=":material/error:")
        return
    st.session_state["cmp_batch_file"] = up.file_id  # scored once per upload, not on every rerun
    st.session_state["cmp_upload"] = {"labels": {m: m for m in result["models"]}, "models": result["models"],
                                      "responses": result["responses"], "file": up.name}


QUANTITY = {"count": "count", "rate": "rate", "mean": "rate", "corpus": "chrf"}  # a metric's kind → its number format
METRIC_COLUMNS = {k: (METRICS[k].label, QUANTITY[METRICS[k].kind], METRICS[k].tip.format(missing=MISSING))
                  for k in COMPARE_COLUMNS}  # key → (column, quantity, tooltip)
CHART_COLORS = {"clean_lpr": "#0f766e", "lpr": "#5eead4", "real_word_rate": "#f59e0b", "chrf": "#a78bfa"}  # the bars
ANSWERS_PER_PAGE = 5


def show_batch(res: dict, key: str) -> None:
    """Scores (chart, table, CSVs) and the answers of one batch; ``key`` prefixes its widgets' keys (the held-out
    batch and an uploaded one are shown together)."""
    table, raw = [], []
    for m, per_lang in res["models"].items():
        for code, s in per_lang.items():
            raw.append({"model": res["labels"].get(m, m), "lang": code,
                        **{col: s.get(k) for k, (col, _, _) in METRIC_COLUMNS.items()}})
            table.append({"model": res["labels"].get(m, m), "prompts in": language_name(code),
                          **{col: fmt_number(s.get(k), kind) for k, (col, kind, _) in METRIC_COLUMNS.items()}})
    chart = {METRICS[k].label: color for k, color in CHART_COLORS.items()}
    long = [{"model": r["model"], "lang": language_name(r["lang"]), "metric": k,
             "value": r[k] / 100 if k == METRICS["chrf"].label else r[k]}
            for r in raw for k in chart if r[k] is not None]
    if long:
        # the axis says what its bars are: chrF++ is scaled to it only where it was computed (it needs references)
        scaled = any(r["metric"] == METRICS["chrf"].label for r in long)
        axis = "share of answers · chrF++ / 100" if scaled else "share of answers"
        fig = px.bar(long, x="model", y="value", color="metric", barmode="group", facet_col="lang", text_auto=".2f",
                     range_y=[0, 1.1], color_discrete_map=chart,
                     labels={"value": axis, "model": "", "metric": ""})
        fig.for_each_annotation(lambda a: a.update(text=f"<b>{a.text.split('=')[-1]} prompts</b>"))
        fig.update_layout(height=380, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                          legend={"orientation": "h", "yanchor": "top", "y": -0.18, "xanchor": "center", "x": 0.5})
        st.plotly_chart(fig, key=f"{key}-batch-chart")
    st.dataframe(table, hide_index=True, key=f"{key}_batch_table",
                 column_config={col: st.column_config.TextColumn(col, help=tip)
                                for col, _, tip in METRIC_COLUMNS.values()})
    c1, c2 = st.columns(2)
    c1.download_button("Download metrics (CSV)", rows_to_csv(raw), file_name="clo-compare-metrics.csv",
                       mime="text/csv", icon=":material/download:", key=f"{key}_dl_metrics")
    fields = ("model", "id", "lang", "prompt", "response", "reference", "tokens", "cut", "clean", "partial")
    rows = [{**{k: r.get(k) for k in fields},
             "verdict": (r.get("verdict") or {}).get("label"), "why": (r.get("verdict") or {}).get("reason"),
             "unknown words": " ".join(r.get("unknown_words") or [])}
            for r in res["responses"]]
    for r in rows:
        r["model"] = res["labels"].get(r["model"], r["model"])
    c2.download_button("Download answers (CSV)", rows_to_csv(rows), file_name="clo-compare-answers.csv",
                       mime="text/csv", icon=":material/download:", key=f"{key}_dl_answers")
    show_batch_answers(res, key)


def show_batch_answers(res: dict, key: str) -> None:
    """The answers themselves, prompt by prompt, every model side by side with its language badge."""
    st.markdown("##### The answers")
    by_prompt: dict[tuple, list] = {}
    for r in res["responses"]:
        by_prompt.setdefault((r["lang"], r["id"], r["prompt"]), []).append(r)
    langs = list(dict.fromkeys(k[0] for k in by_prompt))
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    pick = c1.radio("Prompts in", langs, format_func=language_name, horizontal=True, key=f"{key}_ans_lang")
    items = [(k, v) for k, v in by_prompt.items() if k[0] == pick]
    pages = max(1, -(-len(items) // ANSWERS_PER_PAGE))
    page = c2.number_input(f"Page (of {pages})", 1, pages, 1, key=f"{key}_ans_page_{pick}")
    for (code, _, prompt), answers in items[(page - 1) * ANSWERS_PER_PAGE: page * ANSWERS_PER_PAGE]:
        with st.container(border=True):
            st.markdown(f"**{prompt}**".replace("$", "\\$"))
            if answers[0].get("reference"):
                st.caption(f"Reference answer: {answers[0]['reference']}")
            for col, r in zip(st.columns(len(answers)), answers):
                with col:
                    st.caption(res["labels"].get(r["model"], r["model"]))
                    checked_answer(prompt, code, r["response"], r)


opts_by_value = model_choices(RUNS, (base,))
if not opts_by_value:
    st.info("Pick a model in the sidebar first.")
    st.stop()
add_served_model()
SERVED = served_models()
opts_by_value.update({name: f"{ep.model} · served at {public_url(ep.url)}" for name, ep in SERVED.items()})
models = pick_models(opts_by_value)
if len(opts_by_value) < 2:
    st.caption("Only the base model so far: train a run on the Train page to compare against it.")
options = gen_options()
one, many = st.tabs(["One prompt, side by side", "Batch over held-out prompts"])
with one:
    single_prompt(models, opts_by_value, options)
with many:
    batch(models, opts_by_value, options)
