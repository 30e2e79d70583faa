"""Inside a pair: one sample's two preference pairs under a model and its reference, token by token, with the
rewards, margin, loss and gradient weight the trainer computes (clo/evaluation/pair.py); β and λ recompute on the
spot; and a run's pairs ranked by how hard the gradient still pushes on them."""

import html
from pathlib import Path

import streamlit as st

from app_pages._shared import current_lang, current_model, runs_root
from clo.core.languages import language_name
from clo.core.spec import OBJECTIVE_HELP
from clo.data.stored import list_datasets
from clo.evaluation.pair import (
    WEIGHT_FORMULAS,
    PairError,
    hardest_pairs,
    inspect_pair,
    list_checkpoints,
    pair_numbers,
    sample_titles,
)
from clo.models.registry import display_name
from clo.runs.catalog import runs_with_model
from clo.runs.rundir import RunDir

BASE = "__base__"


@st.cache_data(max_entries=64, show_spinner="Scoring the pair under the model and its reference…")
def _inspect(model: str, sample: int, checkpoint, data, lang, stamp: float) -> dict:
    return inspect_pair(model, sample, checkpoint=checkpoint, data=data, lang=lang)


@st.cache_data(max_entries=8, show_spinner="Scoring every pair the run trained on (one pass per model)…")
def _hardest(run: str, checkpoint, stamp: float, objective: str, beta: float, lam: float) -> dict:
    return hardest_pairs(run, checkpoint=checkpoint, objective=objective, beta=beta, lam=lam)


@st.cache_data(max_entries=16, show_spinner=False)
def _titles(model: str, data, lang, stamp: float) -> list[str]:
    return sample_titles(model, data=data, lang=lang)


def _stamp(path: str) -> float:
    p = Path(path)
    return max((f.stat().st_mtime for f in p.glob("*.safetensors")), default=0.0) if p.is_dir() else 0.0


def _color(logp: float) -> str:
    """Green for a likely token (log-prob near 0), through yellow, to red for an unlikely one (−10 or less)."""
    hue = 120 * max(0.0, min(1.0, 1 + logp / 10))
    return f"hsl({hue:.0f}, 75%, 82%)"


def _delta_color(d: float) -> str:
    """Blue where training raised the token's log-prob, red where it lowered it (full colour at ±2 nats)."""
    strength = min(1.0, abs(d) / 2)
    light = 97 - 30 * strength
    return f"hsl({215 if d >= 0 else 0}, 80%, {light:.0f}%)"


def _tokens_html(tokens: list[dict], key: str, color) -> str:
    spans = []
    for t in tokens:
        text = t["text"].replace("\n", "⏎")
        spans.append(f'<span title="{html.escape(t["text"])!s} · {t[key]:+.3f}" style="background:{color(t[key])};'
                     f'padding:1px 0;border-radius:3px;white-space:pre-wrap">{html.escape(text)}</span>')
    return ('<div class="clo-tokens" style="font-family:monospace;font-size:0.86rem;line-height:1.9;'
            'margin:0 0 0.4rem 0">' + "".join(spans) + "</div>")


st.title("Inside a pair")
st.caption("Open the loss: one sample's two preference pairs, every answer token's log-probability under the model "
           "and under its reference, and what the objective makes of them — the trainer's own numbers. The bundled "
           "models are tiny: they show the mechanics, not good answers.")

# -- which model, which sample -------------------------------------------------------------------------------------
runs = runs_with_model(runs_root())
base = current_model() or "default"
models = {BASE: f"Base · {display_name(base)} (the sidebar's model)"} | {
    r["path"]: f"{r['id']} · {r['method']} · {language_name(r['lang'])}" for r in runs}
by_id = {r["id"]: r["path"] for r in runs}
if (wanted := st.query_params.get("run")) in by_id and st.session_state.get("pair_linked") != wanted:
    st.session_state["pair_model"] = by_id[wanted]  # a ?run=<id> deep link, once
    st.session_state["pair_linked"] = wanted
if st.session_state.get("pair_model") not in models:
    st.session_state["pair_model"] = next(iter(models))
c1, c2, c3 = st.columns([3, 2, 3])
picked = c1.selectbox("Model", list(models), format_func=models.get, key="pair_model",
                      help="The policy: the base model, or a run (its reference is the model it started from).")
is_run = picked != BASE
model = picked if is_run else base
checkpoint, data, lang = None, None, None
if is_run:
    points = list_checkpoints(RunDir(picked))
    labels = {p["name"]: f"step {p['step']} · {p['label']}" for p in points}
    checkpoint = c2.selectbox("Checkpoint", list(labels), format_func=labels.get, key=f"pair_ckpt_{picked}",
                              help="The run's saved model, or its trainer checkpoint while it has one.")
    folder = next(p["path"] for p in points if p["name"] == checkpoint)
else:
    lang = current_lang()
    sets = {"demo": "Bundled demo set"} | {str(p): p.name for p in list_datasets(lang)}
    data = c2.selectbox("Data set", list(sets), format_func=sets.get, key="pair_data",
                        help="The bundled set, or one you made on the Data page (the sidebar's language).")
    folder = model
try:
    titles = _titles(model, data, lang, _stamp(folder))
except PairError as e:
    st.error(str(e), icon=":material/error:")
    st.stop()
if (wanted := st.query_params.get("sample", "")).isdigit() and st.session_state.get("pair_linked_sample") != wanted:
    st.session_state["pair_goto"] = int(wanted)  # a ?sample=N deep link, once
    st.session_state["pair_linked_sample"] = wanted
if (goto := st.session_state.pop("pair_goto", None)) is not None:
    st.session_state["pair_sample"] = goto
if st.session_state.get("pair_sample", 0) >= len(titles):
    st.session_state["pair_sample"] = 0
sample = c3.selectbox("Sample", range(len(titles)), format_func=lambda i: f"{i} · {titles[i]}", key="pair_sample",
                      help="Numbered as in `clo pair --sample N`: a run's own data, in its order.")

try:
    result = _inspect(model, sample, checkpoint if is_run else None, data, lang, _stamp(folder))
except PairError as e:
    st.error(str(e), icon=":material/error:")
    st.stop()

# -- β, λ, objective: recomputed from the cached log-probs, no forward pass -----------------------------------------
run_set = result["run_settings"]
k = f"{model}|{checkpoint}"
s1, s2, s3 = st.columns(3)
objectives = [*OBJECTIVE_HELP]
objective = s1.selectbox("Objective", objectives, index=objectives.index(run_set["objective"]), key=f"pair_obj_{k}",
                         help="The run's objective is preselected; another one shows what it would make of the same "
                              "log-probabilities.")
beta = s2.slider("β", 0.01, 2.0, float(run_set["beta"]), 0.01, key=f"pair_beta_{k}",
                 help="Scales the rewards: β·(log π − log π_ref). Small β: the loss tolerates a large drift from the "
                      "reference; large β: a small drift already counts.")
lam = s3.slider("λ", 0.0, 1.0, float(run_set["lam"]), 0.05, key=f"pair_lam_{k}",
                help="Weight of the target-language NLL: λ·NLL + (1 − λ)·pair loss.")
num = pair_numbers(result["pairs"], objective=objective, beta=beta, lam=lam, gamma=run_set["gamma"],
                   anchor=run_set["anchor"], en_nll=run_set["en_nll"])
ref = result["reference"]
st.markdown(f"**Model** {result['model']['label']} · **reference** {ref['label']}"
            + (" (the model itself: every reward is 0)" if ref["same_as_model"] else "")
            + f" · sample {result['sample']} (`{result['id']}`) of {Path(result['data']).name}")
if ref.get("note"):
    st.info(ref["note"], icon=":material/info:")
total = num["total"]
t1, t2, t3 = st.columns(3)
t1.metric("Loss of this sample", f"{total['loss']:.4f}",
          help="What the trainer computes for a batch holding exactly this sample (both pairs).")
t2.metric("Target NLL", f"{total['nll']:.4f}",
          help="Mean negative log-probability per token of the target-language chosen answer: the SFT term, × λ.")
t3.metric("Mean pair loss", f"{total['pair_term']:.4f}", help="The objective's loss averaged over the two pairs, "
          "× (1 − λ).")
st.caption(f"loss = λ·NLL + (1 − λ)·mean pair loss = {total['lambda']:g} × {total['nll']:.3f} + "
           f"{1 - total['lambda']:g} × {total['pair_term']:.3f}"
           + (f" + anchor {total['anchor']:.3f}" if "anchor" in total else "")
           + (f" + English NLL {total['en_nll']:.3f}" if "en_nll" in total else "")
           + f". Gradient weight: {'; '.join(WEIGHT_FORMULAS[objective])}.")

# -- the two pairs ----------------------------------------------------------------------------------------------------
st.subheader("The two pairs")
st.caption("Each token is coloured by its log-probability: green ≈ likely (near 0), red ≈ unlikely (−10 or less); "
           "hover for the value. **log π** sums them over the answer; **reward** = β·(log π − log π_ref): how much "
           "more likely the model finds the answer than the reference does. **Margin** = reward ✓ − reward ✗. The "
           "**weight** is how hard the gradient still pushes this pair: σ(−margin) for CLO's sigmoid loss — 0.5 "
           "while the model agrees with the reference, towards 0 once the pair is learnt. A chosen answer's "
           "log-probability may fall while the margin grows: the rejected one just has to fall faster.")
cols = st.columns(2)
for col, pair, n in zip(cols, result["pairs"], num["pairs"]):
    with col.container(border=True):
        head = "English prompt" if pair["direction"] == "en" else f"{language_name(pair['prompt_lang'])} prompt"
        st.markdown(f"**{head}**: {pair['prompt']}")
        m1, m2, m3, m4 = st.columns(4)
        m1.metric("reward ✓", f"{n['reward_chosen']:+.3f}")
        m2.metric("reward ✗", f"{n['reward_rejected']:+.3f}")
        m3.metric("margin", f"{n['margin']:+.3f}")
        m4.metric("weight", f"{n['weight']:.3f}", help="−dℓ/dh: " + WEIGHT_FORMULAS[objective][2])
        st.caption(f"pair loss {n['loss']:.4f} · pushes log π(✓) up by {n['push_chosen']:.4f} and log π(✗) down "
                   f"by {n['push_rejected']:.4f} per unit of gradient · share of the sample's loss {n['in_total']:.4f}")
        for side, mark in (("chosen", "✓ chosen"), ("rejected", "✗ rejected")):
            a = pair[side]
            st.markdown(f"**{mark}** · {language_name(a['lang'])} · {a['n_tokens']} tokens · log π "
                        f"**{a['logp']:.2f}** · log π_ref {a['ref_logp']:.2f}")
            st.html("<small>model</small>" + _tokens_html(a["tokens"], "logp", _color))
            if not ref["same_as_model"]:
                st.html("<small>reference</small>" + _tokens_html(a["tokens"], "ref_logp", _color))

# -- base → tuned ------------------------------------------------------------------------------------------------------
st.subheader("Base → tuned, token by token")
if ref["same_as_model"]:
    st.info("A base model is its own reference, so nothing has moved yet: pick a run above to see what training "
            "changed.", icon=":material/info:")
else:
    st.caption(f"The same tokens under the reference ({ref['label']}) and the model: blue where training raised "
               "a token's log-probability, red where it lowered it (full colour at ±2 nats); hover for the change.")
    for pair in result["pairs"]:
        head = "English prompt" if pair["direction"] == "en" else f"{language_name(pair['prompt_lang'])} prompt"
        st.markdown(f"**{head}**")
        left, right = st.columns(2)
        for col, side, mark in ((left, "chosen", "✓"), (right, "rejected", "✗")):
            a = pair[side]
            moved = [{**t, "delta": t["logp"] - t["ref_logp"]} for t in a["tokens"]]
            col.markdown(f"{mark} {language_name(a['lang'])}: log π {a['ref_logp']:.2f} → {a['logp']:.2f} "
                         f"(**{a['logp'] - a['ref_logp']:+.2f}**)")
            col.html(_tokens_html(moved, "delta", _delta_color))

# -- which pairs are still learning ----------------------------------------------------------------------------------
st.subheader("Which pairs are still learning")
if not is_run:
    st.caption("Pick a run above: its pairs ranked by their current margin, hardest first.")
else:
    st.caption("Every pair the run trained on, scored under this checkpoint and its reference, lowest margin first: "
               "where the gradient still goes (weight near 0.5 or above) and which pairs it has already learnt "
               "(weight near 0). Select a row to open its sample above.")
    if st.button("Rank this run's pairs", icon=":material/sort:", key="pair_rank"):
        st.session_state["pair_ranked"] = k
    if st.session_state.get("pair_ranked") == k:
        try:
            ranked = _hardest(model, checkpoint, _stamp(folder), objective, beta, lam)
        except PairError as e:
            st.error(str(e), icon=":material/error:")
        else:
            rows = ranked["pairs"]
            shown = [{"rank": r["rank"], "sample": r["sample"], "direction": r["direction"],
                      "margin": f"{r['margin']:+.4f}", "weight": f"{r['weight']:.4f}", "loss": f"{r['loss']:.4f}",
                      "prompt": r["prompt"]} for r in rows]
            picked_rows = st.dataframe(shown, hide_index=True, key=f"pair_table_{k}", on_select="rerun",
                                       selection_mode="single-row")
            st.caption(f"{ranked['n_pairs']} pairs · objective {ranked['settings']['objective']} · β "
                       f"{ranked['settings']['beta']:g}. Same numbers from the command line: "
                       f"`python -m clo pair --hardest {Path(model).name}`.")
            sel = picked_rows.selection.rows if picked_rows else []
            if sel and rows[sel[0]]["sample"] != sample:
                st.session_state["pair_goto"] = rows[sel[0]]["sample"]
                st.rerun()

st.caption(f"Command line: `python -m clo pair --model {Path(model).name if is_run else model} --sample {sample}"
           + (f" --checkpoint {checkpoint}" if is_run and checkpoint != "model" else "")
           + (f" --data {data}" if data and data != "demo" else "") + (f" --lang {lang}" if lang else "")
           + f" --objective {objective} --beta {beta:g} --lambda {lam:g}`")
