"""Arena (host): open a blind voting round on two or more models, give the room the join link and its QR code,
choose whether participants see each prompt's English version, watch the votes come in live (round picker,
leaderboard, exports), see who voted how often and exclude outliers, set the round's limits, let an LLM judge
vote (docs/workshop.md). Participants vote in `clo arena`."""
import json
import os

import streamlit as st

from app_pages._shared import current_lang, current_model, loaded_model, runs_root
from clo.core.languages import language_name, target_languages
from clo.data.formats import DataError, load_prompts, parse_bytes
from clo.evaluation.generate import GenerationOptions, generate
from clo.models.registry import display_name
from clo.runs.catalog import default_picks, model_choices, runs_with_model
from clo.workshop.arena import VOTES, Arena, ArenaError, Limits
from clo.workshop.join import join_url, machine_addresses, qr_png, running_apps
from clo.workshop.judge import JUDGE_KEY_ENV, JudgeError, judge_round

LIVE_S = 2  # how often the round picker, the leaderboard and the exports re-read the votes
APP_PORT = 8502  # `clo arena`'s default port

st.title("Arena")
st.caption("A blind vote the whole room takes part in: each participant sees one prompt and two anonymous answers, "
           "votes, and only then learns which model wrote which. Participants join on their phones through the "
           "participants' app (`python -m clo arena --host 0.0.0.0`) — a separate app that serves the round page and "
           "nothing else; the join link and its QR code are below.")
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
        up = st.file_uploader("Prompts (JSON Lines or CSV: id, lang, prompt, optionally prompt_en)",
                              type=["jsonl", "json", "csv"], key="ar_upload")
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
    RUNS = runs_with_model(runs_root())
    opts = model_choices(RUNS, (current_model(), "default"))
    # the base model and the newest run, as Compare starts; a pick that is no longer offered is dropped
    ss["ar_models"] = ([m for m in ss["ar_models"] if m in opts] if "ar_models" in ss
                       else default_picks(opts, current_model(), RUNS))
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
if ss.get("ar_round") not in [r["code"] for r in rounds]:
    ss["ar_round"] = rounds[0]["code"]
code = ss["ar_round"]  # the round this run of the page draws; the picker below may change it


def round_label(r: dict) -> str:
    return f"{r['code']} · {len(r['models'])} models · {r['votes']} vote{'' if r['votes'] == 1 else 's'} · {r['state']}"


@st.fragment(run_every=LIVE_S)
def round_picker(drawn: str) -> None:
    """The round picker, its vote counts re-read every LIVE_S seconds; picking another round redraws the page."""
    by_code = {r["code"]: r for r in arena.rounds()}
    picked = st.selectbox("Round", list(by_code), key="ar_round", format_func=lambda c: round_label(by_code[c]))
    if picked != drawn:
        st.rerun()


round_picker(code)
rnd = arena.round(code)


def join_panel(code: str) -> None:
    """The join link with this machine's real address and the participants' app's real port, and its QR code."""
    apps = running_apps(arena.apps())
    addresses = machine_addresses()
    with st.container(border=True):
        left, right = st.columns([2, 3], vertical_alignment="center")
        with right:
            if apps:
                app = apps[0]
                port = app["port"]
                st.caption(f"The participants' app (`clo arena`) is serving on port {port}"
                           + (f", bound to {app['host']}." if app["host"] != "0.0.0.0" else ", on every address."))
                if app["local_only"]:
                    st.warning(f"It is bound to {app['host']}: only this machine can open it. Restart it with "
                               f"`python -m clo arena --host 0.0.0.0 --port {port}` so the room can join.")
            else:
                st.warning("The participants' app is not running here. Start it on this machine: "
                           f"`python -m clo arena --host 0.0.0.0 --port {APP_PORT}` — this panel finds its port "
                           "once it answers. Running it elsewhere? Give its port:")
                port = int(st.number_input("Participants' app port", 1, 65535, APP_PORT, key="ar_port"))
            if not addresses:
                st.warning("This machine has no network address but its own (loopback): connect it to the room's "
                           "Wi-Fi or open a hotspot, then reload this page.")
                address = "127.0.0.1"
            elif len(addresses) > 1:
                address = st.selectbox("Address the room reaches", addresses, key="ar_address",
                                       help="Every IPv4 address of this machine; the one its default route "
                                       "leaves by first. Pick the one on the room's network.")
            else:
                address = addresses[0]
            url = join_url(address, port, code)
            st.markdown(f"### Join: `{url}`")
            st.markdown(f"Scan the code, or open the link, or open `http://{address}:{port}` and type the round "
                        f"code **{code}**.")
            if len(addresses) > 1:
                st.caption("Other addresses of this machine: "
                           + ", ".join(f"`{join_url(a, port, code)}`" for a in addresses if a != address))
        with left:
            st.image(qr_png(url), width="stretch", caption=f"Round {code}")  # as large as its column


join_panel(code)
n_en = sum(bool(p.get("prompt_en")) for p in rnd["prompts"])
st.toggle("Show participants the English version of each prompt", value=rnd["show_english"], key=f"ar_en_{code}",
          disabled=not n_en, on_change=lambda: arena.set_show_english(code, ss[f"ar_en_{code}"]),
          help="For voters who do not read the prompt's language: they can then judge whether an answer is good, "
               "not only whether it looks like the language. Every participant's page follows from its next vote, "
               "next pair or reload.")
st.caption(f"{n_en} of {len(rnd['prompts'])} prompt(s) of this round have an English version"
           + (" (the held-out set's English parallel, or an uploaded `prompt_en`)." if n_en else
              ": held-out prompts have one; typed or uploaded prompts only with a `prompt_en` column."))


def percent(x, digits: int = 0) -> str:
    return "—" if x is None else f"{x:.{digits}%}"


@st.fragment(run_every=LIVE_S)
def board(code: str) -> None:
    """The leaderboard, the counts and the exports, re-read every LIVE_S seconds: no reload needed."""
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
        row = {"model": r["label"], "votes": r["votes"],
               "wins · ties · losses · both bad": f"{r['wins']} · {r['ties']} · {r['losses']} · {r['both_bad']}",
               "win rate": "no votes yet" if r["win_rate"] is None else
               f"{r['win_rate']:.0%} ({ci[0]:.0%}–{ci[1]:.0%})",
               "real language": percent(r["real_lang_rate"])}
        if "bt" in r:
            row["Bradley–Terry"] = f"{r['bt']:.0f} ({r['bt_ci'][0]:.0f}–{r['bt_ci'][1]:.0f})"
        rows.append(row)
    st.table(rows, hide_index=True)  # a few rows: a plain table wraps its text at any width (a projector, 1024 px)
    if res.get("judge_agreement", {}).get("n"):
        a = res["judge_agreement"]
        st.caption(f"The LLM judge agrees with {a['agreement']:.0%} of {a['n']} human votes "
                   f"(95% interval {a['agreement_ci'][0]:.0%}–{a['agreement_ci'][1]:.0%}).")
    st.caption("Win rate = (wins + ties/2) / (wins + ties + losses), with its 95% interval; 'both bad' counts for "
               "neither. Real language: the share of votes that ticked this model's answer as real. With few votes "
               "the intervals are wide — that is the honest picture.")
    st.caption(f"The exports hold the votes of {s['participants'] - s['excluded_participants']} participant(s); "
               f"{s['excluded_participants']} excluded participant(s) and their {s['excluded_votes']} vote(s) are "
               "left out (they stay in the database, marked).")
    state = arena.round(code)["state"]
    pairs = arena.preference_pairs(code)
    with st.container(horizontal=True):
        st.download_button("Votes (CSV)", arena.votes_csv(code), f"arena-{code}.csv", "text/csv", key="ar_csv")
        st.download_button(f"Preference pairs ({len(pairs)}, JSONL)",
                           "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs),
                           f"arena-{code}-pairs.jsonl", "application/jsonl", key="ar_pairs", disabled=not pairs)
        if st.button("Close round" if state == "open" else "Reopen round", key="ar_close"):
            arena.set_state(code, "closed" if state == "open" else "open")
            st.rerun()
    st.caption(f"Train on the pairs (plain DPO): `python -m clo train --method clo --lambda 0 --lang "
               f"{current_lang()} --data arena-{code}-pairs.jsonl` — see docs/workshop.md.")


board(code)


@st.fragment(run_every=LIVE_S)
def voters(code: str) -> None:
    """The participants table and the picker of whom to exclude, re-read every LIVE_S seconds."""
    people = arena.participants(code)
    rows = [{"participant": p["participant"][:8], "votes": p["votes"], "address": ", ".join(p["addresses"]),
             "s between votes": "—" if p["median_gap_s"] is None else f"{p['median_gap_s']:.1f}",
             "A · B · tie · both bad": " · ".join(str(p["choices"][k]) for k in VOTES),
             "flags": "; ".join(p["flags"]) or "—", "excluded": "yes" if p["excluded"] else "no"} for p in people]
    if rows:
        st.table(rows, hide_index=True)  # wraps long flags instead of hiding columns behind a scroll bar
    else:
        st.caption("No participant has voted yet.")
    by_id = {p["participant"]: p for p in people}
    key = f"ar_people_{code}"
    if key in ss:  # a participant stays picked while the table moves
        ss[key] = [i for i in ss[key] if i in by_id]
    st.multiselect("Participants", list(by_id), key=key,
                   format_func=lambda i: f"{i[:8]} · {by_id[i]['votes']} votes"
                   + (" · excluded" if by_id[i]["excluded"] else "")
                   + (f" · {'; '.join(by_id[i]['flags'])}" if by_id[i]["flags"] else ""))


with st.expander("Participants: flags, exclusions and limits", expanded=True):
    st.caption("Each participant is one browser (a cookie), so reloads and new tabs do not make new ones. Flags: "
               "many votes (over 3× the median participant's, and 10 or more), fast (under 3 s between votes), "
               "always the same choice (6 or more votes). A flag decides nothing: you do.")
    voters(code)
    reason = st.text_input("Reason (kept with the exclusion)", key="ar_reason", max_chars=200)

    def exclude() -> None:
        chosen = ss.get(f"ar_people_{code}") or []
        if not chosen:
            ss["ar_flash"] = ("warning", "Pick one or more participants above first.")
            return
        n = sum(arena.exclude(code, who, reason) for who in chosen)
        ss["ar_flash"] = ("success", f"Excluded {len(chosen)} participant(s): {n} vote(s) left out of the "
                          "leaderboard and the exports, kept in the database.")

    def include() -> None:
        chosen = ss.get(f"ar_people_{code}") or []
        if not chosen:
            ss["ar_flash"] = ("warning", "Pick one or more participants above first.")
            return
        n = sum(arena.include(code, who) for who in chosen)
        ss["ar_flash"] = ("success", f"Included {len(chosen)} participant(s) again: {n} vote(s) count again.")

    with st.container(horizontal=True):
        st.button("Exclude their votes", key="ar_exclude", on_click=exclude)
        st.button("Include them again", key="ar_include", on_click=include)
    if flash := ss.pop("ar_flash", None):
        getattr(st, flash[0])(flash[1])
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
