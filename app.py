"""CLO Studio — the Streamlit app: navigation and the sidebar; each page lives in app_pages/.

The folder is not called pages/: Streamlit (1.67) treats a pages/ folder as its old multipage layout, and a
deep link such as /data would then run that page alone, without st.navigation and this sidebar.

    python -m streamlit run app.py          # or: make run

Environment: CLO_RUNS (runs folder, default runs/), CLO_HOME (caches, data folder), CLO_MODEL (a local model
folder to preselect). Training jobs run in child processes (clo/runs/jobs.py), so closing a tab ends nothing.
"""
import streamlit as st

from app_pages._shared import init_state, sidebar

st.set_page_config(page_title="CLO Studio", page_icon=":material/translate:", layout="wide")
init_state()
page = st.navigation([
    st.Page("app_pages/home.py", title="Overview", icon=":material/home:", default=True),
    st.Page("app_pages/data.py", title="Data", icon=":material/dataset:"),
    st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("app_pages/compare.py", title="Compare", icon=":material/compare:"),
    st.Page("app_pages/runs.py", title="Runs", icon=":material/folder_open:"),
    st.Page("app_pages/pair.py", title="Inside a pair", icon=":material/balance:"),
    st.Page("app_pages/arena.py", title="Arena", icon=":material/how_to_vote:"),
])
sidebar()
page.run()
# drawn last, once the page has run to its end: browser tests wait for its count to grow (tests/test_browser.py)
st.session_state["_drawn"] = st.session_state.get("_drawn", 0) + 1
st.html(f'<span data-testid="clo-drawn" data-run="{st.session_state["_drawn"]}" hidden></span>')
