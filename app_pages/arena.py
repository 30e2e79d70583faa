"""Arena (host): open a blind voting round on two or more models, watch the leaderboard live, export the votes as
CSV or as preference pairs, see who voted how often and exclude outliers, set the round's limits, let an LLM judge
vote (docs/workshop.md). Participants vote in `clo arena`."""
import json
import os

import streamlit as st

from app_pages._shared import current_lang, current_model, loaded_model, runs_root
from clo.core.languages import language_name, target_languages
from clo.data.formats import DataError, load_prompts, parse_bytes
from clo.evaluation.generate import GenerationOptions, generate
from clo.models.registry import display_name
from clo.runs.catalog import model_choices, runs_with_model
from clo.workshop.arena import VOTES, Arena, ArenaError, Limits
from clo.workshop.judge import JUDGE_KEY_ENV, JudgeError, judge_round

st.title("Arena")
st.caption("A blind vote the whole room takes part in: each participant sees one prompt and two anonymous answers, "
           "votes, and only then learns which model wrote which. Participants open the round with "
           "`python -m clo arena --host 0.0.0.0` — a separate app that serves the round page and nothing else.")
try:
    arena = Arena()
except ArenaError as e:
    st.error(str(e))
    st.stop()
ss = st.session_state


def prompt_set() -> list[dict]:
    source = st.radio("Prompts", ["Held-out", "Upload", "Type them"], horizontal=True, key="ar_source")
    if source == "Held-out":
        langs = st.multiselect("Languages", [l.code for l in target_languages()] + ["en"], default=[current_lang()],
                               format_func=language_name, key="ar_langs")
        n = st.number_input("Prompts per language", 1, 50, 4, key="ar_n")
        return load_prompts("demo", langs or None, per_lang=int(n))
    if source == "Upload":
        up = st.file_uploader("Prompts (JSON Lines or CSV: id, lang, prompt)", type=["jsonl", "json", "csv"],
                              key="ar_upload")
        if up is None:
            return []
        try:
            return [r for r in parse_bytes(up.name, up.getvalue()) if r.get("prompt")]
        except DataError as e:
            st.error(str(e))
            return []
    lang = st.selectbox("Language of the prompts", [l.code for l in target_languages()] + ["en"],
                        format_func=language_name, key="ar_typed_lang")
    text = st.text_area("One prompt per line", key="ar_typed")
    return [{"id": f"t{i}", "lang": lang, "prompt": line.strip()}
            for i, line in enumerate(text.splitlines()) if line.strip()]


with st.expander("Open a round", expanded=not arena.rounds()):
    opts = model_choices(runs_with_model(runs_root()), (current_model(), "default"))
    models = st.multiselect("Models (two or more)", list(opts), format_func=opts.get, key="ar_models")
    prompts = prompt_set()
    n_new = st.number_input("Max new tokens", 8, 512, 96, step=8, key="ar_max_new")
    st.caption(f"{len(prompts)} prompt(s) × {len(models)} model(s): every answer is generated once (greedy) and "
               "cached; participants only read them.")
    if st.button("Open round", type="primary", disabled=len(models) < 2 or not prompts, key="ar_open"):
        bar = st.progress(0.0, "Generating answers…")

        def progress(i, total, model):
            bar.progress(i / total, f"Generating answers of {display_name(model)}…" if model else "Done")

        try:
            code = arena.create_round(models, prompts, GenerationOptions(max_new_tokens=int(n_new)), progress,
                                      generate_fn=lambda m, ps, o: generate(loaded_model(m), ps, o))
            ss["ar_round"] = code
            st.success(f"Round **{code}** is open.")
        except (ArenaError, DataError, OSError, ValueError) as e:
            st.error(str(e))

rounds = arena.rounds()
if not rounds:
    st.info("No round yet: pick two or more models and a prompt set above.")
    st.stop()
codes = [r["code"] for r in rounds]
if ss.get("ar_round") not in codes:
    ss["ar_round"] = codes[0]
code = st.selectbox("Round", codes, key="ar_round",
                    format_func=lambda c: next(f"{c} · {len(r['models'])} models · {r['votes']} votes · {r['state']}"
                                               for r in rounds if r["code"] == c))
st.markdown(f"Participants: run `python -m clo arena --host 0.0.0.0` on this machine and open "
            f"`http://<this machine>:8502/?round={code}` (or type the code **{code}**).")


@st.fragment(run_every=2)
def board(code: str) -> None:
    res = arena.leaderboard(code)
    s = res["summary"]
    m1, m2, m3 = st.columns(3)
    m1.metric("Votes", res["n_votes"])
    m2.metric("Participants", s["participants"] - s["excluded_participants"])
    m3.metric("Excluded", s["excluded_participants"], help=f"{s['excluded_votes']} vote(s) left out of the "
              "leaderboard and the exports, kept in the database")
    rows = []
    for r in res["models"]:
        ci = r["win_rate_ci"]
        row = {"model": r["label"], "votes": r["votes"], "wins": r["wins"], "ties": r["ties"], "losses": r["losses"],
               "both bad": r["both_bad"],
               "win rate": None if r["win_rate"] is None else round(r["win_rate"], 3),
               "95% interval": "" if not ci else f"{ci[0]:.2f}–{ci[1]:.2f}",
               "real language": None if r["real_lang_rate"] is None else round(r["real_lang_rate"], 2)}
        if "bt" in r:
            row["Bradley–Terry"] = round(r["bt"])
            row["BT 95% interval"] = f"{r['bt_ci'][0]:.0f}–{r['bt_ci'][1]:.0f}"
        rows.append(row)
    st.dataframe(rows, hide_index=True)
    if res.get("judge_agreement", {}).get("n"):
        a = res["judge_agreement"]
        st.caption(f"The LLM judge agrees with {a['agreement']:.0%} of {a['n']} human votes "
                   f"(95% interval {a['agreement_ci'][0]:.0%}–{a['agreement_ci'][1]:.0%}).")
    st.caption("Win rate = (wins + ties/2) / (wins + ties + losses); 'both bad' counts for neither. With few votes "
               "the intervals are wide — that is the honest picture.")


board(code)
summary = arena.summary(code)
st.caption(f"The exports hold the votes of {summary['participants'] - summary['excluded_participants']} "
           f"participant(s); {summary['excluded_participants']} excluded participant(s) and their "
           f"{summary['excluded_votes']} vote(s) are left out (they stay in the database, marked).")
c1, c2, c3 = st.columns(3)
c1.download_button("Votes (CSV)", arena.votes_csv(code), f"arena-{code}.csv", "text/csv", key="ar_csv")
pairs = arena.preference_pairs(code)
c2.download_button(f"Preference pairs ({len(pairs)}, JSONL)",
                   "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs),
                   f"arena-{code}-pairs.jsonl", "application/jsonl", key="ar_pairs", disabled=not pairs)
state = next(r["state"] for r in rounds if r["code"] == code)
if c3.button("Close round" if state == "open" else "Reopen round", key="ar_close"):
    arena.set_state(code, "closed" if state == "open" else "open")
    st.rerun()
st.caption(f"Train on the pairs (plain DPO): `python -m clo train --method clo --lambda 0 --lang {current_lang()} "
           f"--data arena-{code}-pairs.jsonl` — see docs/workshop.md.")



@st.fragment(run_every=5)
def voters(code: str) -> None:
    rows = [{"participant": p["participant"][:8], "votes": p["votes"], "address": ", ".join(p["addresses"]),
             "median s between votes": None if p["median_gap_s"] is None else round(p["median_gap_s"], 1),
             **{label: p["choices"][k] for k, label in VOTES.items()},
             "flags": "; ".join(p["flags"]), "excluded": p["excluded"]} for p in arena.participants(code)]
    if rows:
        st.dataframe(rows, hide_index=True)
    else:
        st.caption("No participant has voted yet.")


with st.expander("Participants: flags, exclusions and limits", expanded=True):
    st.caption("Each participant is one browser (a cookie), so reloads and new tabs do not make new ones. Flags: "
               "many votes (over 3× the median participant's, and 10 or more), fast (under 3 s between votes), "
               "always the same choice (6 or more votes). A flag decides nothing: you do.")
    voters(code)
    people = arena.participants(code)
    by_id = {p["participant"]: p for p in people}
    chosen = st.multiselect("Participants", list(by_id), key=f"ar_people_{code}",
                            format_func=lambda i: f"{i[:8]} · {by_id[i]['votes']} votes"
                            + (" · excluded" if by_id[i]["excluded"] else "")
                            + (f" · {'; '.join(by_id[i]['flags'])}" if by_id[i]["flags"] else ""))
    reason = st.text_input("Reason (kept with the exclusion)", key="ar_reason", max_chars=200)

    def exclude() -> None:
        n = sum(arena.exclude(code, who, reason) for who in chosen)
        ss["ar_flash"] = (f"Excluded {len(chosen)} participant(s): {n} vote(s) left out of the leaderboard and the "
                          "exports, kept in the database.")

    def include() -> None:
        n = sum(arena.include(code, who) for who in chosen)
        ss["ar_flash"] = f"Included {len(chosen)} participant(s) again: {n} vote(s) count again."

    e1, e2 = st.columns(2)
    e1.button("Exclude their votes", disabled=not chosen, key="ar_exclude", on_click=exclude)
    e2.button("Include them again", disabled=not chosen, key="ar_include", on_click=include)
    if flash := ss.pop("ar_flash", None):
        st.success(flash)
    limits = arena.limits(code)
    with st.form("ar_limits_form", border=False):
        l1, l2 = st.columns(2)
        vpm = l1.number_input("Votes per minute from one network address", 1, 100_000, limits.votes_per_minute,
                              key=f"ar_vpm_{code}", help="A room behind one router shares one address: allow the whole "
                              "room (about 5 votes a minute per person).")
        ppa = l2.number_input("Participants per network address", 1, 100_000, limits.participants_per_address,
                              key=f"ar_ppa_{code}", help="The size of the room, or a little more: a script that "
                              "drops its cookie becomes a new participant, and stops here.")
        if st.form_submit_button("Save limits"):
            arena.set_limits(code, Limits(votes_per_minute=int(vpm), participants_per_address=int(ppa)))
            st.success("Saved: the limits apply to the next vote.")

with st.expander("LLM judge (off by default)"):
    st.warning("A judge is only as good as its model: a tiny model's verdicts mean nothing. Point this at a "
               "capable model behind any OpenAI-compatible endpoint.")
    url = st.text_input("Judge endpoint (OpenAI-compatible base URL)", "http://127.0.0.1:8000/v1", key="ar_judge_url")
    name = st.text_input("Judge model name", key="ar_judge_model")
    st.caption(f"An API key, if the endpoint needs one, is read from ${JUDGE_KEY_ENV} "
               f"({'set' if os.environ.get(JUDGE_KEY_ENV) else 'not set'}); it is never stored.")
    if st.button("Let the judge vote on every pair", disabled=not name.strip(), key="ar_judge_go"):
        try:
            with st.spinner("Judging (each pair twice, positions swapped)…"):
                n = judge_round(arena, code, url.strip(), name.strip())
            st.success(f"The judge voted on {n} pair(s).")
        except JudgeError as e:
            st.error(str(e))
