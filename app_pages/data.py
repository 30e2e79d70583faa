"""Data: an English set → translated cross-lingual set → preference pairs, checked and fixed before training."""
from pathlib import Path

import streamlit as st

from app_pages._shared import badge_markdown, current_lang, detect_text, text_file_uploader
from clo.core.languages import language_name
from clo.data.formats import DataError, load_crosslingual, load_sft, read_records
from clo.data.pairs import build_pairs
from clo.data.stored import (
    dataset_path,
    datasets_dir,
    edit_record,
    edited_ids,
    free_dataset_path,
    keep_edits,
    list_datasets,
    load_english,
    parse_upload,
    previous_versions,
    save_dataset,
    search_records,
)
from clo.data.translate import BACKENDS, ReferenceTranslator, TranslationError, translate_records

SOURCES = {"demo": "Bundled demo set", "upload": "Upload JSONL or CSV", "file": "File on this machine"}
PAGE_SIZES = (3, 10, 25, 50)
BUNDLED = "__bundled__"  # the review choice "the bundled demo set" (read from assets/, fixes saved as a copy)

lang = current_lang()
st.title("Data")
st.caption(f"English instruction pairs and their {language_name(lang)} translation make the cross-lingual set. "
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
        up = text_file_uploader("English pairs {id, instruction, response} — or a ready cross-lingual set",
                                key="data_upload", help="One pair per row.")
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
    names = {"reference": "Bundled references", "m2m100": "M2M100 (the paper's)", "nllb": "NLLB-200"}
    default = 0 if source == "demo" and lang in refs else 1
    c1, c2, c3 = st.columns([2, 2, 1])
    translator = c1.selectbox("Translator", list(names), index=default, format_func=names.get, key="data_translator")
    model = None
    if BACKENDS[translator].default_model:
        model = c2.text_input("Translation model (local folder or cached id)", BACKENDS[translator].default_model,
                              key=f"data_mt_{translator}", help="Nothing is downloaded: put the checkpoint in a local "
                              "folder or the Hugging Face cache first.")
    else:
        c2.caption(f"Hand-written translations of the bundled demo and held-out texts — only those texts "
                   f"({', '.join(map(language_name, refs)) or 'none yet'}).")
    limit = c3.number_input("Records", 1, max(1, len(rows)), len(rows), key=f"data_tr_limit_{source}_{len(rows)}")
    target = dataset_path(source, lang)
    try:
        existing = read_records(target) if target.is_file() else []
    except DataError:
        existing = []
    edits = edited_ids(existing)
    ss = st.session_state
    if st.button(f"Translate {int(limit)} records into {language_name(lang)}", type="primary", key="data_translate"):
        if edits:
            ss["data_confirm"] = target.name  # ask first: the set holds hand fixes
        else:
            run_translation(source, rows[: int(limit)], translator, model, target, existing, "replace")
    if edits and ss.get("data_confirm") == target.name:
        with st.container(border=True):
            st.warning(f"`{target.name}` holds {len(edits)} record{'s' if len(edits) != 1 else ''} you fixed by hand "
                       f"({', '.join(edits[:5])}{', …' if len(edits) > 5 else ''}). What should the new translation "
                       "do with them?", icon=":material/edit_note:")
            b1, b2, b3, b4 = st.columns(4)
            mode = None
            if b1.button(f"Keep my edit{'s' if len(edits) != 1 else ''}", type="primary", key="data_keep_edits",
                         help="Translate the rest again; the records you fixed stay as you wrote them."):
                mode = "keep"
            if b2.button("Write a new set", key="data_new_set", help=f"Leave `{target.name}` as it is and save the "
                         f"translation as `{free_dataset_path(source, lang).name}`."):
                mode = "new"
            if b3.button("Replace them", key="data_replace", help="Overwrite the fixes too; the current file is kept "
                         "as a previous version in the data folder's .versions/ folder."):
                mode = "replace"
            if b4.button("Cancel", key="data_cancel"):
                ss.pop("data_confirm", None)
                st.rerun()
            if mode:
                ss.pop("data_confirm", None)
                run_translation(source, rows[: int(limit)], translator, model, target, existing, mode)


def run_translation(source, rows, translator, model, target: Path, existing: list[dict], mode: str) -> None:
    """Translate ``rows`` and save them: over ``target`` (``replace``; ``keep`` puts the hand-fixed records
    back), or as a new set beside it (``new``). An overwritten file is kept as a previous version."""
    bar = st.progress(0.0, text="Translating…")

    def progress(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"Translating… {done}/{total} segments")

    try:
        out = translate_records(rows, lang, translator, model=model or None, progress=progress)
    except (TranslationError, DataError, FileNotFoundError, ValueError) as e:
        bar.empty()
        st.error(str(e))
        return
    kept: list[str] = []
    if mode == "keep":
        out, kept = keep_edits(out, existing)
    path = free_dataset_path(source, lang) if mode == "new" else target
    replaced = path.is_file()
    try:
        path = save_dataset(out, path)
    except (DataError, OSError) as e:
        bar.empty()
        st.error(str(e))
        return
    bar.progress(1.0, text="Done")
    st.session_state["data_review_set"] = str(path)
    note = f"{len(out)} samples translated ({out[0]['translator']}) → `{path}`."
    if kept:
        note += (f" Your {len(kept)} hand-fixed record{'s' if len(kept) != 1 else ''} ({', '.join(kept[:5])})"
                 " kept as you wrote them.")
    if mode == "new":
        note += f" A new set: `{target.name}` is unchanged."
    if replaced:
        note += (f" The file it replaced is kept as `{previous_versions(path)[0].name}`"
                 f" in `{path.parent / '.versions'}`.")
    st.success(note)


def use_ready_set(source: str, rows: list[dict]) -> None:
    langs = sorted({r["lang"] for r in rows})
    st.info(f"This file is already a cross-lingual set ({len(rows)} samples, {', '.join(map(language_name, langs))}): "
            "no translation needed.")
    if lang not in langs:
        st.warning(f"It holds no {language_name(lang)} samples; pick its language in the sidebar.")
        return
    if st.button("Save it to the data folder", type="primary", key="data_use_ready"):
        target = dataset_path(source, lang)
        replaced = target.is_file()
        try:
            path = save_dataset([r for r in rows if r["lang"] == lang], target)
        except (DataError, OSError) as e:
            st.error(str(e))
            return
        st.session_state["data_review_set"] = str(path)
        kept = (f" The file it replaced is kept as `{previous_versions(path)[0].name}` in `.versions/`."
                if replaced else "")
        st.success(f"Saved → `{path}`.{kept}")


LEGEND = ("Each badge is the language detected in that text, and how many of the language detectors consulted "
          "named it (a text in a script only one language uses is told by its script). "
          ":green-badge[:material/check_circle: green] the text is in the language this side should be in · "
          ":red-badge[:material/error: red] it is not (check that translation) · "
          ":orange-badge[:material/swap_horiz: orange] the rejected answer, in the *other* language on purpose: "
          "CLO learns from that contrast.")


def text_with_badge(label: str, text: str, expected: str, *, rejected: bool = False) -> None:
    """A label with the detected-language badge beside it (wrapping below in a narrow column), then the text."""
    st.markdown(f"**{label}** &nbsp; {badge_markdown(detect_text(text), expected, rejected=rejected)}")
    st.text(text)


def show_pair(pair: dict) -> None:
    """One preference pair: prompt, then the chosen and the rejected answer, each with its detected language."""
    with st.container(border=True):
        text_with_badge(f"Prompt ({language_name(pair['prompt_lang'])})", pair["prompt"], pair["prompt_lang"])
        with st.container(border=True):
            text_with_badge(":green[✓ Chosen]", pair["chosen"], pair["chosen_lang"])
        with st.container(border=True):
            text_with_badge(f":orange[✗ Rejected — {language_name(pair['rejected_lang'])}, the wrong language here]",
                            pair["rejected"], pair["rejected_lang"], rejected=True)


def fix_form(path: Path | None, rows: list[dict], rec: dict) -> None:
    """Fix one record's translation. ``path`` None: the bundled set, whose fixes go to a copy in the data folder."""
    with st.expander(f"Fix the {language_name(rec['lang'])} translation of {rec['id']}"):
        with st.form(f"data_fix_{rec['id']}"):
            instr = st.text_area("Instruction", rec["instruction"], key=f"data_fix_i_{rec['id']}")
            resp = st.text_area("Response", rec["response"], height=150, key=f"data_fix_r_{rec['id']}")
            if path is None:
                st.caption(f"The bundled set stays as it ships: the fix is saved in a copy, "
                           f"`{free_dataset_path('demo', lang).name}` in the data folder.")
            if st.form_submit_button("Save fix"):
                target = path or free_dataset_path("demo", lang)
                try:
                    saved = save_dataset(edit_record(rows, rec["id"], instr, resp), target)
                except DataError as e:
                    st.error(str(e))
                else:
                    st.session_state["data_saved_note"] = f"Saved the fix to {rec['id']} in `{saved.name}`."
                    st.session_state["data_review_next"] = str(saved)  # chosen above the selectbox, next run
                    st.rerun()


def review(path: Path | None) -> None:
    """Browse, search and fix a set; ``path`` None: the bundled demo set of this language (read-only)."""
    try:
        rows = read_records(path) if path is not None else load_crosslingual("demo", lang)
    except DataError as e:  # a set in the data folder damaged (or replaced) outside the app
        st.error(str(e), icon=":material/error:")
        return
    if note := st.session_state.pop("data_saved_note", None):
        st.success(note)
    c1, c3, c4 = st.columns([3, 1, 1], vertical_alignment="bottom")
    query = c1.text_input("Search", key="data_search", placeholder="an id or any word, English or translated",
                          help="Shows the samples whose id, English or translated text contains this.")
    per_page = c3.selectbox("Per page", PAGE_SIZES, key="data_per_page")
    suspect_only = st.toggle("Only suspect translations", key="data_suspect",
                             help=f"Samples whose translated instruction or response is not detected as "
                                  f"{language_name(lang)}.")
    rows_shown = search_records(rows, query)
    if suspect_only:
        rows_shown = [r for r in rows_shown if detect_text(r["instruction"])["lang"] != r["lang"]
                      or detect_text(r["response"])["lang"] != r["lang"]]
    pages = max(1, -(-len(rows_shown) // per_page))
    page = c4.number_input(f"Page (of {pages})", 1, pages, 1,
                           key=f"data_page_{path.name if path else 'bundled'}_{suspect_only}_{query}_{per_page}")
    shown = f"{len(rows_shown)} match" + ("es" if len(rows_shown) != 1 else "") if (query or suspect_only) else ""
    st.caption(f"{len(rows)} samples{' · ' + shown if shown else ''} · each gives two preference pairs, kept in one "
               f"batch: English prompt → English answer chosen; {language_name(lang)} prompt → "
               f"{language_name(lang)} answer chosen.")
    st.caption(LEGEND)
    if not rows_shown:
        st.info("No sample matches." if query else "Every translation is detected as the target language.")
    start = (int(page) - 1) * per_page
    for rec in rows_shown[start:start + per_page]:
        st.markdown(f"##### {rec['id']}  ·  translator `{rec.get('translator', '?')}`")
        en, tgt = build_pairs([rec])
        c_en, c_tgt = st.columns(2)
        with c_en:
            show_pair(en)
        with c_tgt:
            show_pair(tgt)
        fix_form(path, rows, rec)
    if path is not None:
        st.download_button("Download JSONL", path.read_bytes(), file_name=path.name, mime="application/jsonl",
                           icon=":material/download:", key="data_download")
        if versions := previous_versions(path):
            st.caption(f"{len(versions)} earlier version{'s' if len(versions) != 1 else ''} of this set kept in "
                       f"`{path.parent / '.versions'}` (newest: `{versions[0].name}`).")
    if st.button("Train on this set →", key="data_to_train"):
        st.session_state["train_data"] = str(path) if path is not None else "demo"
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
options = [str(p) for p in list_datasets(lang)]
labels = {p: Path(p).name for p in options}
try:
    load_crosslingual("demo", lang)
    options.append(BUNDLED)
    labels[BUNDLED] = f"Bundled demo set ({language_name(lang)})"
except DataError:
    pass  # no bundled set in this language
if not options:
    st.info(f"No {language_name(lang)} set in the data folder yet: translate one above.")
else:
    if (wanted := st.session_state.pop("data_review_next", None)) in options:
        st.session_state["data_review_set"] = wanted
    if st.session_state.get("data_review_set") not in options:
        st.session_state["data_review_set"] = options[0]
    choice = st.selectbox("Cross-lingual set", options, format_func=labels.get, key="data_review_set",
                          help="Your sets in the data folder, newest first, and the bundled demo set, which ships "
                               "with the app (a fix to it is saved as a copy in the data folder).")
    review(None if choice == BUNDLED else Path(choice))
