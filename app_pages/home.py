"""Overview: what CLO does, the honest note about the tiny models (here only, not on every page), and the app's
pages."""
import streamlit as st

from app_pages._shared import HONEST_NOTE, current_lang, model_guide
from clo.core.languages import language_name

lang = language_name(current_lang())
st.title("CLO Studio")
st.markdown(
    f"Teach a small English chat model to answer **{lang}** prompts in **{lang}** with **Cross-Lingual "
    "Optimization** ([arXiv 2505.14297](https://arxiv.org/abs/2505.14297)): English instruction data and its "
    "translation, a DPO-style loss over cross-lingual preference pairs (English prompt → English answer "
    f"preferred; {lang} prompt → {lang} answer preferred), an NLL term on {lang} only, and only the attention "
    "layers trained."
)
st.info(HONEST_NOTE, icon=":material/info:")
with st.container(border=True):
    st.markdown("##### Which model shows the paper's point?")
    model_guide()
    st.caption("Figures from this project's own runs on 48 held-out Swahili prompts (docs/results.md).")

steps = [
    ("app_pages/data.py", "1 · Data", ":material/dataset:",
     "Pick an English set, translate it, check each preference pair and fix a bad translation."),
    ("app_pages/train.py", "2 · Train", ":material/model_training:",
     "CLO or an SFT baseline in a background job, with live loss, reward and accuracy curves."),
    ("app_pages/compare.py", "3 · Compare", ":material/compare:",
     "Base model and tuned runs side by side: which language do they answer in, and is it real text?"),
    ("app_pages/runs.py", "4 · Runs", ":material/folder_open:",
     "Every run with its settings and results; open one in Compare or delete it."),
    ("app_pages/arena.py", "5 · Arena", ":material/how_to_vote:",
     "A blind vote for the whole room: each participant judges two anonymous answers, then sees who wrote them."),
]
# two to a row: more in a row cut the links off in a narrow window
cols = [c for _ in range(0, len(steps), 2) for c in st.columns(2)]
for col, (path, label, icon, text) in zip(cols, steps):
    with col.container(border=True):
        st.page_link(path, label=label, icon=icon)
        st.caption(text)

st.caption("Everything here also runs from the command line with the same functions: `python -m clo --help`.")
