"""Data: an English set → translated cross-lingual set → preference pairs, checked and fixed before training."""
import math
from pathlib import Path

import streamlit as st

from clo.data import DataError, load_sft, max_upload_mb, read_records
from clo.pairs import build_pairs
from clo.translate import BACKENDS, ReferenceTranslator, TranslationError, translate_records
from clo.datasets import dataset_path, datasets_dir, edit_record, list_datasets, load_english, parse_upload, save_dataset
from app_pages._shared import current_lang, detect_text, lang_name, language_badge

SOURCES = {"demo": "Bundled demo set", "upload": "Upload JSONL or CSV", "file": "File on this machine"}
PER_PAGE = 3

lang = current_lang()
st.title("Data")
st.caption(f"English instruction pairs and their {lang_name(lang)} translation make the cross-lingual set. "
           f"Sets are saved in `{datasets_dir()}`; the Train page offers every set there.")


@st.cache_data(show_spinner="Reading the file…", max_entries=8)
def _english_from_file(path: str, mtime: float, limit: int | None) -> list[dict]:
    return load_english(path, limit)


def english_set() -> tuple[str, list[dict] | None, str]:
    """(source name, records or None, kind: 'sft' or 'xl')."""
    source = st.radio("English set", list(SOURCES), format_func=SOURCES.get, horizontal=True, key="data_source")
    if source == "demo":
        return "demo", load_sft("demo"), "sft"
    if source == "upload":
        cap = max_upload_mb()
        up = st.file_uploader("English pairs {id, instruction, response} — or a ready cross-lingual set",
                              type=["jsonl", "json", "csv"], key="data_upload", max_upload_size=max(1, math.ceil(cap)),
                              help=f"UTF-8 JSON Lines or CSV, up to {cap:g} MB (CLO_MAX_UPLOAD_MB). The file is "
                                   "only parsed as text, never run.")
        if up is None:
            return "upload", None, "sft"
        kind, rows = parse_upload(up.name, up.getvalue())
        return up.name, rows, kind
    path = st.text_input("Path", key="data_path",
                         placeholder="data/oasst-en.jsonl or 2023-04-12_oasst_ready.messages.jsonl.gz",
                         help="An OpenAssistant export (imported as the paper does: English first turns, top-ranked "
                              "reply) or a file from `python -m clo data import-oasst … --out FILE`.")
    limit = st.number_input("Keep the first N pairs (0 = all)", 0, 100_000, 200, step=50, key="data_path_limit")
    if not path.strip():
        return "file", None, "sft"
    p = Path(path.strip()).expanduser()
    rows = _english_from_file(str(p), p.stat().st_mtime if p.exists() else 0.0, int(limit) or None)
    return p.name.split(".")[0], rows, "sft"


def translate_panel(source: str, rows: list[dict]) -> None:
    refs = ReferenceTranslator().languages()
    names = {"reference": f"Bundled references ({', '.join(refs) or 'none yet'})", "m2m100": "M2M100 (the paper's)",
             "nllb": "NLLB-200"}
    default = 0 if source == "demo" and lang in refs else 1
    c1, c2, c3 = st.columns([2, 3, 1])
    translator = c1.selectbox("Translator", list(names), index=default, format_func=names.get, key="data_translator")
    model = None
    if BACKENDS[translator].default_model:
        model = c2.text_input("Translation model (local folder or cached id)", BACKENDS[translator].default_model,
                              key=f"data_mt_{translator}", help="Nothing is downloaded: put the checkpoint in a local "
                              "folder or the Hugging Face cache first.")
    else:
        c2.caption("Hand-written translations of the bundled demo and held-out texts — only those texts.")
    limit = c3.number_input("Records", 1, max(1, len(rows)), len(rows), key=f"data_tr_limit_{source}_{len(rows)}")
    if st.button(f"Translate {int(limit)} records into {lang_name(lang)}", type="primary", key="data_translate"):
        bar = st.progress(0.0, text="Translating…")

        def progress(done: int, total: int) -> None:
            bar.progress(done / max(total, 1), text=f"Translating… {done}/{total} segments")

        try:
            out = translate_records(rows[: int(limit)], lang, translator, model=model or None, progress=progress)
        except (TranslationError, DataError, FileNotFoundError, ValueError) as e:
            bar.empty()
            st.error(str(e))
            return
        try:
            path = save_dataset(out, dataset_path(source, lang))
        except (DataError, OSError) as e:
            bar.empty()
            st.error(str(e))
            return
        bar.progress(1.0, text="Done")
        st.session_state["data_review_set"] = str(path)
        st.success(f"{len(out)} samples translated ({out[0]['translator']}) → `{path}`")


def use_ready_set(source: str, rows: list[dict]) -> None:
    langs = sorted({r["lang"] for r in rows})
    st.info(f"This file is already a cross-lingual set ({len(rows)} samples, {', '.join(map(lang_name, langs))}): "
            "no translation needed.")
    if lang not in langs:
        st.warning(f"It holds no {lang_name(lang)} samples; pick its language in the sidebar.")
        return
    if st.button("Save it to the data folder", type="primary", key="data_use_ready"):
        try:
            path = save_dataset([r for r in rows if r["lang"] == lang], dataset_path(source, lang))
        except (DataError, OSError) as e:
            st.error(str(e))
            return
        st.session_state["data_review_set"] = str(path)
        st.success(f"Saved → `{path}`")


def text_with_badge(label: str, text: str, expected: str) -> None:
    det = detect_text(text)
    c1, c2 = st.columns([3, 2], vertical_alignment="center")
    c1.markdown(f"**{label}**")
    with c2:
        language_badge(det, expected)
    st.text(text)


def show_pair(pair: dict) -> None:
    """One preference pair: prompt, then the chosen and the rejected answer, each with its detected language."""
    with st.container(border=True):
        text_with_badge(f"Prompt ({lang_name(pair['prompt_lang'])})", pair["prompt"], pair["prompt_lang"])
        with st.container(border=True):
            text_with_badge(":green[✓ Chosen]", pair["chosen"], pair["chosen_lang"])
        with st.container(border=True):
            text_with_badge(":red[✗ Rejected]", pair["rejected"], pair["rejected_lang"])


def fix_form(path: Path, rows: list[dict], rec: dict) -> None:
    with st.expander(f"Fix the {lang_name(rec['lang'])} translation of {rec['id']}"):
        with st.form(f"data_fix_{rec['id']}"):
            instr = st.text_area("Instruction", rec["instruction"], key=f"data_fix_i_{rec['id']}")
            resp = st.text_area("Response", rec["response"], height=150, key=f"data_fix_r_{rec['id']}")
            if st.form_submit_button("Save fix"):
                try:
                    save_dataset(edit_record(rows, rec["id"], instr, resp), path)
                except DataError as e:
                    st.error(str(e))
                else:
                    st.session_state["data_saved_note"] = f"Saved the fix to {rec['id']} in `{path.name}`."
                    st.rerun()


def review(path: Path) -> None:
    try:
        rows = read_records(path)
    except DataError as e:  # a set in the data folder damaged (or replaced) outside the app
        st.error(str(e), icon=":material/error:")
        return
    if note := st.session_state.pop("data_saved_note", None):
        st.success(note)
    c1, c2, c3 = st.columns([2, 2, 1], vertical_alignment="bottom")
    suspect_only = c1.toggle(f"Only translations not detected as {lang_name(lang)}", key="data_suspect")
    if suspect_only:
        rows_shown = [r for r in rows if detect_text(r["instruction"])["lang"] != r["lang"]
                      or detect_text(r["response"])["lang"] != r["lang"]]
    else:
        rows_shown = rows
    pages = max(1, -(-len(rows_shown) // PER_PAGE))
    page = c2.number_input(f"Page (of {pages})", 1, pages, 1, key=f"data_page_{path.name}_{suspect_only}")
    c3.download_button("Download JSONL", path.read_bytes(), file_name=path.name, mime="application/jsonl",
                       icon=":material/download:", key="data_download")
    st.caption(f"{len(rows)} samples · each gives two preference pairs, kept in one batch: English prompt → English "
               f"answer chosen; {lang_name(lang)} prompt → {lang_name(lang)} answer chosen."
               + (f" {len(rows_shown)} suspect." if suspect_only else ""))
    if not rows_shown:
        st.success("Every translation is detected as the target language.")
    start = (int(page) - 1) * PER_PAGE
    for rec in rows_shown[start:start + PER_PAGE]:
        st.markdown(f"##### {rec['id']}  ·  translator `{rec.get('translator', '?')}`")
        en, tgt = build_pairs([rec])
        c_en, c_tgt = st.columns(2)
        with c_en:
            show_pair(en)
        with c_tgt:
            show_pair(tgt)
        fix_form(path, rows, rec)
    if st.button(f"Train on this set →", key="data_to_train"):
        st.session_state["train_data"] = str(path)
        st.switch_page("app_pages/train.py")


st.subheader("1 · Make a cross-lingual set")
try:
    source, rows, kind = english_set()
except (DataError, OSError) as e:  # OSError: a path on this machine that cannot be read
    st.error(str(e), icon=":material/error:")
    source, rows, kind = None, None, "sft"
if rows:
    if kind == "xl":
        use_ready_set(source, rows)
    else:
        st.caption(f"{len(rows)} English pairs from {source}.")
        translate_panel(source, rows)

st.subheader("2 · Review and fix")
sets = list_datasets(lang)
if not sets:
    st.info(f"No {lang_name(lang)} set in the data folder yet: translate one above.")
else:
    options = [str(p) for p in sets]
    if st.session_state.get("data_review_set") not in options:
        st.session_state["data_review_set"] = options[0]
    path = st.selectbox("Cross-lingual set", options, format_func=lambda p: Path(p).name, key="data_review_set")
    review(Path(path))
