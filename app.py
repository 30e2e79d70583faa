"""CLO Studio — Streamlit entry point (placeholder until the app pages land)."""
import streamlit as st

from clo.languages import target_languages
from clo.models import list_models

st.set_page_config(page_title="CLO Studio", layout="wide")
st.title("CLO Studio")
st.write("Cross-Lingual Optimization for small chat models. The full app (data, train, compare, runs) is coming; "
         "meanwhile every step runs from the CLI: `python -m clo --help`.")
st.subheader("Models available offline")
st.dataframe([{k: m[k] for k in ("name", "title", "kind", "available", "license")} for m in list_models()])
st.subheader("Target languages")
st.write(", ".join(l.label for l in target_languages()))
