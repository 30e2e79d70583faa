"""Translation: segmentation, the m2m100 / nllb / reference backends, the SQLite cache, the CLI command.

The model backends run end to end through ``from_pretrained`` on tiny random M2M100 models whose tokenizers
are trained here (a SentencePiece model for M2M100, a BPE tokenizer for NLLB), so nothing is downloaded.
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import sqlite3
from pathlib import Path

import pytest

from clo.cli.main import main
from clo.data.formats import DATA_DIR, load_crosslingual, read_records
from clo.data.translate import (
    BACKENDS,
    MissingReferenceError,
    ReferenceTranslator,
    TranslationCache,
    TranslationError,
    UnsupportedLanguageError,
    load_translator,
    split_text,
    translate_records,
    translate_texts,
)
from clo.models.registry import ModelNotFoundError

EN = [
    "The sun rises in the east and sets in the west.",
    "Water boils at one hundred degrees at sea level.",
    "Wash your hands with soap before you eat.",
    "What is the capital of Kenya? The capital of Kenya is Nairobi.",
    "Rinse the rice, add water, and simmer until soft.",
    "Explain why the sky is blue in simple words.",
    "Write down your tasks and start with the first one.",
    "Birds build nests in tall trees.",
    "Drink enough water on a hot day.",
    "Read a book before you go to sleep.",
]
SW = [
    "Jua huchomoza mashariki na kuzama magharibi.",
    "Maji huchemka kwa nyuzi joto mia moja usawa wa bahari.",
    "Osha mikono yako kwa sabuni kabla ya kula.",
    "Mji mkuu wa Kenya ni Nairobi.",
]

FAST = {"device": "cpu", "max_new_tokens": 12}  # a random model never stops early: keep its answers short

LONG = (
    "To install the package, open a terminal. Then run the command below and wait until it finishes.\n"
    "\n"
    "```bash\n"
    "pip install clo-studio==0.1  # install it\n"
    "\n"
    "python -m clo langs\n"
    "```\n"
    "\n"
    "The docs are at https://example.com/docs/install?lang=en#setup. Call `clo.data.translate.split_text(x)` "
    "to see the pieces.\n"
    "\n"
    "- First item of a list.\n"
    "- Second item, with more words in it.\n"
)
CODE = "```bash\npip install clo-studio==0.1  # install it\n\npython -m clo langs\n```\n"
URL = "https://example.com/docs/install?lang=en#setup"
INLINE = "`clo.data.translate.split_text(x)`"


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models spend their time in thread hand-offs: on a busy 2-core machine, one thread is ~10x faster."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- tiny models ------------------------------------------------------------------------------------------------


def _corpus(path: Path) -> Path:
    lines = [f"{s} {i}" for i in range(30) for s in EN + SW]  # a few hundred lines
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _tiny_config(vocab_size: int):
    from transformers import M2M100Config

    return M2M100Config(vocab_size=vocab_size, d_model=16, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                        max_position_embeddings=256, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                        decoder_start_token_id=2)


def _save_model(folder: Path, tokenizer, vocab_size: int) -> Path:
    import torch
    from transformers import M2M100ForConditionalGeneration

    torch.manual_seed(0)
    model = M2M100ForConditionalGeneration(_tiny_config(vocab_size))
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def m2m_files(tmp_path_factory) -> Path:
    """A SentencePiece BPE model trained here + the vocab.json M2M100Tokenizer reads."""
    import sentencepiece as spm

    d = tmp_path_factory.mktemp("m2m_spm")
    spm.SentencePieceTrainer.train(input=str(_corpus(d / "corpus.txt")), model_prefix=str(d / "spm"),
                                   vocab_size=160, model_type="bpe", character_coverage=1.0, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=str(d / "spm.model"))
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for i in range(sp.get_piece_size()):
        vocab.setdefault(sp.id_to_piece(i), len(vocab))
    # The language tokens (__en__, __sw__, …) are not listed here: M2M100Tokenizer numbers them itself, right
    # after the vocabulary, as the real checkpoints do.
    (d / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def tiny_m2m100(m2m_files, tmp_path_factory) -> Path:
    from transformers import M2M100Tokenizer

    tok = M2M100Tokenizer(vocab_file=str(m2m_files / "vocab.json"), spm_file=str(m2m_files / "spm.model"))
    vocab_size = max(tok.lang_code_to_id.values()) + 1 + tok.num_madeup_words
    return _save_model(tmp_path_factory.mktemp("models") / "tiny-m2m100", tok, vocab_size)


@pytest.fixture(scope="module")
def tiny_nllb(tmp_path_factory) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import NllbTokenizer

    d = tmp_path_factory.mktemp("nllb")
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bpe.train_from_iterator(_corpus(d / "corpus.txt").read_text().splitlines(),
                            trainer=trainers.BpeTrainer(vocab_size=200, show_progress=False,
                                                        special_tokens=["<s>", "<pad>", "</s>", "<unk>"]))
    spec = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in spec["merges"]]
    # only three FLORES-200 codes: German is deliberately missing
    tok = NllbTokenizer(vocab=spec["vocab"], merges=merges, extra_special_tokens=["eng_Latn", "swh_Latn", "zho_Hans"])
    return _save_model(d / "tiny-nllb", tok, len(tok))


def count_generate(translator) -> list:
    """Wrap ``generate`` on the loaded model instance; returns the list that collects each call's batch size."""
    model = translator.hf_model
    assert model is not None, "the model should be loaded by now"
    calls, original = [], model.generate

    def counting(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return original(*args, **kwargs)

    model.generate = counting
    return calls


# -- segmentation -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    LONG,
    "Plain sentence.",
    "Line one.\r\nLine two.\n\n\nLine three",
    "```\nunclosed fence\nstill code",
    "See (https://example.com/a_(b)), then `x = 1`.",
    "   \n\t",
    "1. Step one. Step two!\n2. Step three?",
    "",
])
def test_split_text_gives_the_input_back(text):
    pieces = split_text(text, max_chars=30)
    assert "".join(t for t, _ in pieces) == text
    assert all(t.strip() and any(c.isalpha() for c in t) for t, tr in pieces if tr)


def test_split_text_keeps_code_urls_and_markers():
    pieces = split_text(LONG, max_chars=60)
    kept = "".join(t for t, tr in pieces if not tr)
    translated = [t for t, tr in pieces if tr]
    assert CODE in kept and URL in kept and INLINE in kept
    assert not any("pip install" in t or "https://" in t or "`" in t for t in translated)
    assert "First item of a list." in translated  # list marker kept outside
    # the first paragraph is longer than 60 characters: split between its sentences
    assert "To install the package, open a terminal." in translated
    assert split_text("Go to https://x.org/a.")[-1] == (" https://x.org/a.", False)  # full stop is not the URL's
    assert ("https://x.org/a" in split_text("Go to https://x.org/a. Now.")[1][0])


# -- m2m100 -----------------------------------------------------------------------------------------------------


def test_m2m100_batches_caches_and_reports_progress(tiny_m2m100, tmp_path):
    cache = TranslationCache(tmp_path / "cache.sqlite")
    tr = load_translator("m2m100", str(tiny_m2m100), batch_size=4, **FAST)
    seen = []
    out = translate_texts(EN, "sw", tr, cache=cache, progress=lambda d, t: seen.append((d, t)))
    assert len(out) == len(EN) and all(isinstance(o, str) for o in out)
    assert tr.stats.generate_calls == 3 and tr.stats.generated == 10  # 10 segments in batches of 4
    assert seen[0] == (0, 10) and seen[-1] == (10, 10) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert cache.count("m2m100") == 10
    assert tr.label == f"m2m100:{tiny_m2m100.resolve()}"

    calls = count_generate(tr)
    again = translate_texts(EN, "sw", tr, cache=cache)
    assert again == out and calls == [] and tr.stats.generate_calls == 3  # all from the cache

    fresh = load_translator("m2m100", str(tiny_m2m100), **FAST)  # e.g. a later run
    assert translate_texts(EN[:3], "sw", fresh, cache=cache) == out[:3]
    assert fresh.hf_model is None and fresh.stats.cached == 3  # the weights were never loaded

    more = translate_texts(EN + ["A new sentence about the sea."], "sw", tr, cache=cache)
    assert more[:10] == out and calls == [1]  # only the new text is generated


def test_m2m100_long_text_keeps_code_urls_and_paragraphs(tiny_m2m100, tmp_path):
    tr = load_translator("m2m100", str(tiny_m2m100), batch_size=3, max_chars=60, **FAST)
    records = [{"id": "r1", "instruction": "How do I install it?", "response": LONG, "source": "test"}]
    [row] = translate_records(records, "sw", tr, cache=tmp_path / "c.sqlite")
    assert set(row) == {"id", "lang", "instruction_en", "response_en", "instruction", "response", "translator",
                        "source"}
    assert (row["id"], row["lang"], row["response_en"], row["translator"]) == ("r1", "sw", LONG, tr.label)
    out = row["response"]
    assert CODE in out and URL in out and INLINE in out  # byte-identical
    assert out.count("\n\n") == LONG.count("\n\n") and out.count("\n") == LONG.count("\n")
    assert out.split(CODE)[0].endswith("\n\n")  # the code block is still its own paragraph
    assert "\n- " in out  # list markers kept
    assert tr.stats.segments >= 6 and tr.stats.generate_calls >= 2


def test_m2m100_resumes_after_an_interruption(tiny_m2m100, tmp_path):
    cache = TranslationCache(tmp_path / "c.sqlite")
    tr = load_translator("m2m100", str(tiny_m2m100), batch_size=2, **FAST)
    real, n = tr.generate, []

    def failing(*args, **kwargs):
        if len(n) == 2:
            raise KeyboardInterrupt  # the user pressed Ctrl-C during the third batch
        n.append(1)
        return real(*args, **kwargs)

    tr.generate = failing
    with pytest.raises(KeyboardInterrupt):
        translate_texts(EN, "sw", tr, cache=cache)
    assert cache.count() == 4  # two finished batches were committed

    again = load_translator("m2m100", str(tiny_m2m100), batch_size=2, **FAST)
    out = translate_texts(EN, "sw", again, cache=cache)
    assert len(out) == 10 and again.stats.cached == 4 and again.stats.generate_calls == 3


def test_language_not_in_the_registry_fails_before_any_work(tiny_m2m100, tmp_path, monkeypatch):
    from clo.core import languages

    monkeypatch.setitem(languages.LANGUAGES, "yo", dataclasses.replace(languages.LANGUAGES["yo"], m2m100=None))
    tr = load_translator("m2m100", str(tiny_m2m100), **FAST)
    with pytest.raises(UnsupportedLanguageError, match="does not cover Yoruba"):
        translate_records([{"id": "1", "instruction": "Hi?", "response": "Hello."}], "yo", tr,
                          cache=tmp_path / "c.sqlite")
    assert tr.tokenizer is None and tr.hf_model is None and not (tmp_path / "c.sqlite").exists()


def test_language_missing_from_the_tokenizer_fails_before_any_work(m2m_files, tiny_m2m100, tmp_path):
    from transformers import M2M100Tokenizer

    # the WMT21 variant of the tokenizer knows 8 languages, Swahili not among them
    folder = tmp_path / "wmt21"
    M2M100Tokenizer(vocab_file=str(m2m_files / "vocab.json"), spm_file=str(m2m_files / "spm.model"),
                    language_codes="wmt21").save_pretrained(folder)
    for name in ("config.json", "model.safetensors"):
        (folder / name).write_bytes((tiny_m2m100 / name).read_bytes())
    tr = load_translator("m2m100", str(folder), **FAST)
    with pytest.raises(UnsupportedLanguageError, match="__sw__"):
        translate_texts(["Hello."], "sw", tr, cache=tmp_path / "c.sqlite")
    assert tr.hf_model is None and tr.stats.generate_calls == 0 and not (tmp_path / "c.sqlite").exists()
    with pytest.raises(TranslationError, match="English"):
        translate_records([{"id": "1", "instruction": "Hi?", "response": "Hello."}], "en", tr)


def test_missing_model_names_where_it_looked(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelNotFoundError) as e:
        translate_texts(["Hello."], "sw", "m2m100", model=str(tmp_path / "nope"))
    assert str(tmp_path / "nope") in str(e.value)
    with pytest.raises(ModelNotFoundError) as e:
        translate_texts(["Hello."], "sw", "m2m100", model="m2m100_418M")  # short name → facebook/m2m100_418M
    assert "facebook/m2m100_418M" in str(e.value) and "Hugging Face cache" in str(e.value)
    assert str(tmp_path / "hub") in str(e.value)
    (tmp_path / "pickle").mkdir()
    (tmp_path / "pickle" / "config.json").write_text("{}")
    (tmp_path / "pickle" / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match="safetensors"):
        load_translator("nllb", str(tmp_path / "pickle")).check("en", "sw")
    with pytest.raises(TranslationError, match="unknown translator 'google'"):
        load_translator("google")


# -- nllb -------------------------------------------------------------------------------------------------------


def test_nllb_end_to_end(tiny_nllb, tmp_path):
    cache = TranslationCache(tmp_path / "c.sqlite")
    tr = load_translator("nllb", str(tiny_nllb), batch_size=4, **FAST)
    assert (tr.code("sw"), tr.code("zh"), tr.code("en")) == ("swh_Latn", "zho_Hans", "eng_Latn")
    out = translate_texts(EN[:6], "sw", tr, cache=cache)
    assert len(out) == 6 and tr.stats.generate_calls == 2
    assert not any("swh_Latn" in o or "eng_Latn" in o for o in out)  # language tokens are not text
    calls = count_generate(tr)
    assert translate_texts(EN[:6], "sw", tr, cache=cache) == out and calls == []
    [row] = translate_records([{"id": "1", "instruction": EN[0], "response": LONG}], "sw", tr, cache=cache)
    assert row["instruction"] == out[0] and CODE in row["response"] and row["translator"].startswith("nllb:")
    with pytest.raises(UnsupportedLanguageError, match="deu_Latn"):
        translate_texts(["Hello."], "de", tr, cache=cache)


# -- reference --------------------------------------------------------------------------------------------------


def test_reference_backend_matches_the_bundled_translations():
    english = read_records(DATA_DIR / "demo" / "en.jsonl")
    swahili = {r["id"]: r for r in load_crosslingual("demo", "sw")}
    english = [r for r in english if r["id"] in swahili]
    rows = translate_records(english, "sw", "reference", cache=False)
    assert [r["translator"] for r in rows] == ["reference"] * len(rows)
    for row in rows:
        assert (row["instruction"], row["response"]) == (swahili[row["id"]]["instruction"],
                                                       swahili[row["id"]]["response"])
    # held-out prompts resolve by their exact English wording
    held_en = read_records(DATA_DIR / "heldout" / "en.jsonl")
    if (DATA_DIR / "heldout" / "sw.jsonl").exists():
        held_sw = {r["id"]: r["prompt"] for r in read_records(DATA_DIR / "heldout" / "sw.jsonl")}
        assert translate_texts([held_en[0]["prompt"]], "sw", "reference") == [held_sw[held_en[0]["id"]]]


def test_reference_backend_errors(tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "sw.jsonl").write_text(json.dumps({
        "id": "a", "lang": "sw", "instruction_en": "Hi?", "response_en": "Hello.", "instruction": "Habari?",
        "response": "Salama.", "translator": "reference"}) + "\n", encoding="utf-8")
    tr = ReferenceTranslator(root=tmp_path)
    assert translate_texts(["Hello.", "Hi?"], "sw", tr) == ["Salama.", "Habari?"]
    with pytest.raises(MissingReferenceError, match="'How are you today\\?' \\(id b\\)"):
        translate_records([{"id": "a", "instruction": "Hi?", "response": "Hello."},
                           {"id": "b", "instruction": "How are you today?", "response": "Fine."}], "sw", tr)
    with pytest.raises(UnsupportedLanguageError, match="no bundled German reference translations"):
        translate_texts(["Hello."], "de", tr)
    with pytest.raises(TranslationError, match="takes no --model"):
        load_translator("reference", "facebook/m2m100_418M")


# -- cache ------------------------------------------------------------------------------------------------------


def _fill(path: str, worker: int, start) -> None:
    """One writer process: 200 texts in batches of 5, half of them shared with the other writer."""
    cache = TranslationCache(path, timeout=5.0)
    start.wait(30)
    lo = 0 if worker == 0 else 100
    for i in range(lo, lo + 200, 5):
        batch = [(f"text {j}", f"maandishi {j}") for j in range(i, i + 5)]
        cache.put_many("m2m100", "tiny", "en", "sw", batch)
        cache.get_many("m2m100", "tiny", "en", "sw", [s for s, _ in batch])


def test_cache_two_processes_lose_nothing(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    TranslationCache(path)  # schema + WAL
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_fill, args=(path, w, start)) for w in (0, 1)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    cache = TranslationCache(path)
    got = cache.get_many("m2m100", "tiny", "en", "sw", [f"text {j}" for j in range(300)])
    assert got == {f"text {j}": f"maandishi {j}" for j in range(300)} and cache.count() == 300
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_cache_keys_and_a_broken_file(tmp_path):
    cache = TranslationCache(tmp_path / "c.sqlite")
    cache.put_many("m2m100", "m", "en", "sw", [("Hello.", "Habari."), ("Hello.", "Other.")])
    assert cache.get_many("m2m100", "m", "en", "sw", ["Hello."]) == {"Hello.": "Habari."}  # first answer stays
    for key in (("nllb", "m", "en", "sw"), ("m2m100", "m2", "en", "sw"), ("m2m100", "m", "en", "de")):
        assert cache.get_many(*key, ["Hello."]) == {}
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    TranslationCache(bad)  # a broken cache heals: moved aside, a new one made (no dead end, nothing lost)
    assert list(tmp_path.glob("bad.sqlite.broken-*")) and bad.exists()


# -- CLI --------------------------------------------------------------------------------------------------------


def test_cli_translate_with_the_tiny_model(tiny_m2m100, tmp_path, capsys):
    src = tmp_path / "en.jsonl"
    src.write_text("".join(json.dumps({"id": f"e{i}", "instruction": EN[i], "response": EN[i + 1]}) + "\n"
                           for i in range(4)), encoding="utf-8")
    out = tmp_path / "sw.jsonl"
    argv = ["translate", "--data", str(src), "--lang", "sw", "--translator", "m2m100", "--model", str(tiny_m2m100),
            "--out", str(out), "--limit", "3", "--device", "cpu", "--cache", str(tmp_path / "c.sqlite"), "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    rows = load_crosslingual(out, "sw")
    assert len(rows) == 3 and summary["records"] == 3 and summary["generated"] == summary["segments"] == 4
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["generated"] == 0  # second run: all from the cache


def test_cli_translate_errors_before_writing(tmp_path, capsys):
    from clo.core.languages import LANGUAGES

    uncovered = next(lang for code, lang in LANGUAGES.items()
                     if code != "en" and code not in ReferenceTranslator().languages())
    out = tmp_path / "never.jsonl"
    code = main(["translate", "--data", "demo", "--lang", uncovered.code, "--translator", "reference",
                "--out", str(out)])
    assert code == 2 and not out.exists()
    assert f"no bundled {uncovered.name} reference translations" in capsys.readouterr().err


def test_cli_translate_reference_demo(tmp_path):
    out = tmp_path / "demo-sw.jsonl"
    assert main(["translate", "--data", "demo", "--lang", "sw", "--translator", "reference", "--out", str(out),
                 "--limit", "3"]) == 0
    rows = load_crosslingual(out, "sw")
    assert [r["id"] for r in rows] == ["demo-001", "demo-002", "demo-003"]
    assert BACKENDS["reference"].default_model is None


@pytest.mark.parametrize("damage", ["not-a-database", "cut-short"])
def test_a_damaged_translation_cache_is_moved_aside_and_rebuilt(damage, tiny_m2m100, tmp_path, caplog):
    """The cache file is overwritten, or cut short after a checkpoint: the next open runs PRAGMA quick_check,
    moves the file aside with a warning naming both paths, and the texts are translated again into a fresh cache."""
    from clo.data import translation_cache

    path = tmp_path / "c.sqlite"
    tr = load_translator("m2m100", str(tiny_m2m100), batch_size=4, **FAST)
    out = translate_texts(EN, "sw", tr, cache=TranslationCache(path))
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every row in the main file
    con.close()
    data = path.read_bytes()
    path.write_bytes(b"not a database " * 200 if damage == "not-a-database" else data[: len(data) // 2])
    translation_cache._CHECKED.clear()  # as a new process would
    with caplog.at_level("WARNING", logger="clo.data.translation_cache"):
        cache = TranslationCache(path)
    (aside,) = tmp_path.glob("c.sqlite.broken-*")
    warning = "\n".join(r.getMessage() for r in caplog.records)
    assert str(path) in warning and str(aside) in warning and "is damaged" in warning
    assert aside.read_bytes()[:15] == (b"not a database " if damage == "not-a-database" else data[:15])
    assert cache.count() == 0
    generated = tr.stats.generate_calls
    assert translate_texts(EN, "sw", tr, cache=cache) == out  # translated again: the same greedy output
    assert tr.stats.generate_calls > generated and cache.count("m2m100") == 10
