"""CLO Arena — the participants' app: the round page and nothing else (docs/workshop.md).

Served by ``python -m clo arena --host 0.0.0.0`` next to the host's CLO Studio. It has no navigation, no Train,
Runs or Data page, no path field and no upload; it reads and writes only the Arena database. Model names stay
on the server until this participant has voted. The page says what to judge (the better answer in the prompt's
language: the right language, and a good answer) and, when the host turns it on for the round, shows each prompt's
English version under it.

A participant is this browser, not this tab: a random token lives in a cookie (written once with
extra-streamlit-components' CookieManager, read back from the request with ``st.context.cookies``), so a reload,
a second tab or a restarted browser votes as the same participant (``clo.workshop.arena.participant_id``). Votes
count against the client's address (``st.context.ip_address``) under the round's limits.

    python -m streamlit run arena_app.py     # what `clo arena` starts
"""
import datetime

import extra_streamlit_components as stx
import streamlit as st

from clo.core.languages import language_name
from clo.models.registry import display_name
from clo.workshop.arena import (
    COOKIE,
    COOKIE_DAYS,
    VOTES,
    Arena,
    ArenaError,
    ArenaLimit,
    client_address,
    new_token,
    participant_id,
    valid_token,
)

st.set_page_config(page_title="CLO Arena", page_icon=":material/how_to_vote:", layout="wide",
                   initial_sidebar_state="collapsed")
ss = st.session_state


def browser_token() -> str:
    """This browser's token: the cookie the browser sent, else a new one, for :func:`write_cookie` to store."""
    if "arena_token" not in ss:
        sent = valid_token(st.context.cookies.get(COOKIE))
        ss["arena_token"] = sent or new_token()
        ss.setdefault("arena_cookie_stored", bool(sent))
    if ss.get("arena_cookie_write"):  # the cookie component's answer: the browser has run the write
        ss["arena_cookie_stored"] = True
    return ss["arena_token"]


def write_cookie() -> None:
    """Store a new token in the browser with the cookie component, drawn last on the page (its frames appear and
    go, and nothing a participant clicks may move). It stays until the browser says the cookie is stored; a
    returning browser gets no component at all."""
    if not ss["arena_cookie_stored"]:
        expires = datetime.datetime.now() + datetime.timedelta(days=COOKIE_DAYS)
        stx.CookieManager(key="arena_cookie_read").set(COOKIE, ss["arena_token"], key="arena_cookie_write",
                                                       expires_at=expires.replace(second=0, microsecond=0),
                                                       same_site="strict")


def done() -> None:
    write_cookie()
    st.stop()


token = browser_token()
address = client_address(st.context.ip_address)
st.title("Arena")
try:
    arena = Arena()
except ArenaError as e:
    st.error(f"{e} Tell the host.")
    done()


code = (st.query_params.get("round") or ss.get("arena_code") or "").strip().upper()
if not code:
    typed = st.text_input("Round code", max_chars=8, key="arena_code_in", placeholder="e.g. K7QM")
    if st.button("Join", key="arena_join") and typed.strip():
        ss["arena_code"] = typed.strip().upper()
        st.rerun()
    done()
try:
    rnd = arena.round(code)  # read on every run: the host's settings (the English toggle) reach the next run
except ArenaError:
    st.error(f"There is no round {code!r}. Check the code with the host.")
    ss.pop("arena_code", None)
    done()
me = participant_id(code, token)

if ss.get("arena_round") != code or "arena_matchup" not in ss:
    ss["arena_round"], ss["arena_voted"], ss["arena_limited"] = code, None, None
    ss["arena_matchup"] = arena.next_matchup(code, me)
m = ss["arena_matchup"]
if m is None:
    st.success("You have voted on every pair in this round (or the host closed it). Thank you!")
    done()
if not ss.get("arena_voted") and (full := arena.admission(code, me, address)):
    st.warning(full)
    done()

language = language_name(m["lang"]) if m.get("lang") else None


def vote(choice: str) -> None:
    real = ss.get("arena_real")
    real = None if real in (None, "not sure") else real
    try:
        ok = arena.record_vote(code, me, m, choice, real, address=address)
    except ArenaLimit as e:  # nothing stored: the pair and the "real language" answer stay for another try
        ss["arena_limited"] = str(e)
        return
    ss["arena_voted"], ss["arena_limited"] = (choice if ok else "already"), None
    ss.pop("arena_real", None)


def next_pair() -> None:
    ss["arena_voted"] = None
    ss["arena_matchup"] = arena.next_matchup(code, me)


if language and m["lang"] != "en":
    st.markdown(f"**Which answer is better in {language}?** A good answer is written in {language} — not in English "
                f"or another language — and answers the prompt well: right, clear, to the point.")
else:
    st.markdown(f"**Which answer is better{f' in {language}' if language else ''}?** A good answer answers the prompt "
                "well: right, clear, to the point.")
st.caption(f"Round {code} · the models' names appear after your vote.")
st.markdown("**Prompt**")
st.info(m["prompt"])
if rnd["show_english"] and m.get("prompt_en"):
    st.caption(f"In English: {m['prompt_en']}")
ca, cb = st.columns(2)
voted = ss.get("arena_voted")
for col, side in ((ca, "a"), (cb, "b")):
    with col:
        title = f"Answer {side.upper()}"
        if voted:  # the reveal, only after the vote
            title += f" — {display_name(m['model_' + side])}"
        st.markdown(f"**{title}**")
        st.text(m["answer_" + side] or "(empty answer)")

if not voted:
    if ss.get("arena_limited"):
        st.error(ss["arena_limited"])
    if language:
        st.radio(f"Which one is real {language}?", ["not sure", "A", "B", "both", "neither"], horizontal=True,
                 key="arena_real")
    # a brand-new browser votes once its id is stored: a reload before that would make it a new participant, and
    # a click while the cookie component reports back could be lost between two reruns
    ready = ss["arena_cookie_stored"]
    cols = st.columns(len(VOTES))
    for col, (key, label) in zip(cols, VOTES.items()):
        col.button(label, key=f"arena_vote_{key}", on_click=vote, args=(key,), use_container_width=True,
                   disabled=not ready)
    if not ready:
        st.caption("Getting your ballot ready (this browser is storing its participant id)… If the buttons stay "
                   "grey, reload the page.")
else:
    st.success("Vote recorded." if voted != "already" else "You had already voted on this pair.")
    st.button("Next pair", type="primary", key="arena_next", on_click=next_pair)
write_cookie()
