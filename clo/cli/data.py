"""Data commands of ``python -m clo``: translate, pairs, data import. Merged into :data:`clo.cli.main.COMMANDS`.

    python -m clo translate --data demo --lang sw --translator reference --out data/demo-sw.jsonl
    python -m clo translate --data data/oasst-en.jsonl --lang sw --translator m2m100 --model facebook/m2m100_418M \\
        --out data/oasst-sw.jsonl --limit 100
    python -m clo pairs --lang sw --data demo --limit 3
    python -m clo data import-oasst 2023-04-12_oasst_ready.messages.jsonl.gz --out data/oasst-en.jsonl --limit 6400
    python -m clo data import alpaca.csv --instruction-col instruction --response-col output --out data/alpaca.jsonl

Errors in the input print one clear line on stderr and exit with status 2; an output file is only written
(atomically) when the whole command succeeded.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from pathlib import Path

from tqdm import tqdm

from clo.core.languages import get_language
from clo.data.formats import DataError, load_crosslingual, load_sft, write_jsonl
from clo.data.importers import import_oasst, import_table
from clo.data.pairs import build_pairs
from clo.data.translate import BACKENDS, TranslationError, load_translator, translate_records

__all__ = ["DATA_COMMANDS", "cmd_translate", "cmd_pairs", "cmd_data"]


def _fail(e: Exception) -> int:
    print(f"error: {e}", file=sys.stderr)
    return 2


def check_out(out: str) -> None:
    """Refuse an --out that cannot take a file before any work is done (a translation can take hours); a file
    already there is only replaced, atomically, when the whole command succeeded."""
    p = Path(out)
    if not str(out).strip():
        raise DataError("--out is empty; give the name of a .jsonl file to write")
    if p.is_dir():
        raise DataError("--out is a folder; give the name of a .jsonl file to write", p)
    parent = next((q for q in p.absolute().parents if q.exists()), None)
    if parent is not None and not parent.is_dir():
        raise DataError(f"--out cannot be created: {parent} is a file, not a folder", p)
    if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
        raise DataError(f"--out cannot be written: no permission to write in {parent}", p)


def _translation_errors():
    return (TranslationError,)


# -- translate --------------------------------------------------------------------------------------------------


def _translate_parser(sub):
    p = sub.add_parser(
        "translate", help="translate an English SFT set into a cross-lingual set",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Translate English {id, instruction, response} records into one target language and write "
                    "cross-lingual records. Code blocks, inline code and URLs are carried over unchanged; every "
                    "segment is cached, so a second run (or a resumed one) translates only what is new.\n\n"
                    "translators:\n" + "\n".join(
                        f"  {b.name:10} {b.title}" + (f" (default model {b.default_model})" if b.default_model else "")
                        for b in BACKENDS.values()),
    )
    p.add_argument("--data", required=True, help="English SFT JSONL/CSV, or 'demo' for the bundled set")
    p.add_argument("--lang", required=True, help="target language code, e.g. sw (see `clo langs`)")
    p.add_argument("--translator", default="m2m100", choices=list(BACKENDS), help="backend (default m2m100)")
    p.add_argument("--model", help="checkpoint: a local folder or a Hugging Face id already in the cache")
    p.add_argument("--out", required=True, help="cross-lingual JSONL to write")
    p.add_argument("--limit", type=int, help="translate only the first N records")
    p.add_argument("--batch-size", type=int, default=16, dest="batch_size", help="segments per generate call")
    p.add_argument("--num-beams", type=int, dest="num_beams", help="beam search width (default: the model's)")
    p.add_argument("--device", help="auto | cpu | cuda (default auto: the GPU when there is one)")
    p.add_argument("--cache", help="translation cache file (default $CLO_HOME/translations.sqlite)")
    p.add_argument("--no-cache", action="store_true", dest="no_cache", help="neither read nor write the cache")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    return p


class _Bar:
    """progress(done, total) → a tqdm bar on stderr (off when CLO_NO_PROGRESS is set)."""

    def __init__(self, desc: str):
        self.desc, self.bar = desc, None

    def __call__(self, done: int, total: int) -> None:
        if os.environ.get("CLO_NO_PROGRESS"):
            return
        if self.bar is None:
            self.bar = tqdm(total=total, initial=done, desc=self.desc, unit="seg", file=sys.stderr, leave=True)
        self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_translate(args) -> int:
    try:
        check_out(args.out)
        lang = get_language(args.lang)
        options = {"batch_size": args.batch_size, "num_beams": args.num_beams, "device": args.device}
        translator = load_translator(args.translator, args.model,
                                     **({} if args.translator == "reference" else options))
        translator.check("en", lang.code)  # an uncovered language or a missing model fails before reading data
        records = load_sft(args.data)
        if args.limit is not None:
            if args.limit < 1:
                raise DataError(f"--limit must be at least 1, got {args.limit}")
            records = records[: args.limit]
        print(f"Translating {len(records)} records into {lang.label} with {args.translator}…", file=sys.stderr)
        bar = _Bar(f"en→{lang.code}")
        try:
            rows = translate_records(records, lang.code, translator, cache=False if args.no_cache else args.cache,
                                     progress=bar)
        finally:
            bar.close()
    except _translation_errors() as e:
        return _fail(e)
    except KeyboardInterrupt:
        print("Interrupted; finished batches are in the translation cache, run the same command to resume.",
              file=sys.stderr)
        return 130
    out = write_jsonl(args.out, rows)
    s = translator.stats
    summary = {"records": len(rows), "lang": lang.code, "translator": translator.label, "out": str(out),
               "segments": s.segments, "cached": s.cached, "generated": s.generated}
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
        print(f"{len(rows)} records → {out} ({translator.label}; {s.segments} segments, {s.cached} from the cache, "
              f"{s.generated} translated now)")
    return 0


# -- pairs ------------------------------------------------------------------------------------------------------


def _pairs_parser(sub):
    p = sub.add_parser("pairs", help="show a cross-lingual set as CLO's preference pairs",
                       description="Print each sample as its two preference pairs: the English prompt prefers the "
                                   "English answer, the target prompt prefers the target answer.")
    p.add_argument("--lang", required=True, help="target language code, e.g. sw")
    p.add_argument("--data", default="demo", help="cross-lingual JSONL/CSV, or 'demo' (default)")
    p.add_argument("--limit", type=int, default=3, help="show the first N samples (default 3; 0 = all)")
    p.add_argument("--width", type=int, default=100, help="wrap text at this many columns (0 = no wrapping)")
    p.add_argument("--json", action="store_true", help="print the pairs as JSON")
    return p


def _block(label: str, text: str, width: int) -> str:
    """``label text`` with continuation lines indented under the text, paragraphs kept."""
    pad = " " * len(label)
    lines = []
    for para in text.splitlines() or [""]:
        wrapped = textwrap.wrap(para, width=max(20, width - len(label))) if width and para else [para]
        lines += wrapped or [""]
    return "\n".join((label if i == 0 else pad) + ln for i, ln in enumerate(lines)).rstrip()


def cmd_pairs(args) -> int:
    records = load_crosslingual(args.data, args.lang)
    if args.limit:
        records = records[: max(0, args.limit)]
    pairs = build_pairs(records)
    if args.json:
        print(json.dumps([{k: v for k, v in p.items()} for p in pairs], ensure_ascii=False, indent=2))
        return 0
    lang = get_language(records[0]["lang"]) if records else get_language(args.lang)
    names = {"en": "English", lang.code: lang.name}
    for i in range(0, len(pairs), 2):
        en, tgt = pairs[i], pairs[i + 1]
        print(f"── sample {en['sample'] + 1} of {len(records)} · {en['id']} " + "─" * 20)
        for p in (en, tgt):
            print(_block(f"{names[p['prompt_lang']]} prompt: ", p["prompt"], args.width))
            print(_block(f"  chosen ({p['chosen_lang']}):   ", p["chosen"], args.width))
            print(_block(f"  rejected ({p['rejected_lang']}): ", p["rejected"], args.width))
        print()
    print(f"{len(records)} samples → {len(pairs)} preference pairs ({lang.label}).")
    return 0


# -- data import ------------------------------------------------------------------------------------------------


def _data_parser(sub):
    p = sub.add_parser("data", help="import English SFT data (OpenAssistant, JSONL/CSV, datasets folders)",
                       description="Turn outside data into English SFT records {id, instruction, response, source}.")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    o = dsub.add_parser("import-oasst", help="English first-turn, top-ranked pairs from an oasst1 export",
                        description="Read an OpenAssistant export (messages or trees JSONL, optionally .gz, or a "
                                    "datasets folder) and keep English conversation starts with their highest-ranked "
                                    "reply, as the CLO paper does.")
    o.add_argument("path", help="oasst messages/trees .jsonl[.gz] or a datasets folder")
    o.add_argument("--out", required=True, help="English SFT JSONL to write")
    o.add_argument("--limit", type=int, help="keep the first N pairs (the paper uses 6,400)")
    o.add_argument("--json", action="store_true", help="print a JSON summary")
    t = dsub.add_parser("import", help="map two columns of a JSONL/CSV file or datasets folder",
                        description="Read JSONL, CSV or a datasets folder (save_to_disk) and map columns to "
                                    "instruction and response.")
    t.add_argument("path", help=".jsonl, .csv or a datasets folder")
    t.add_argument("--instruction-col", default="instruction", dest="instruction_col", help="default: instruction")
    t.add_argument("--response-col", default="response", dest="response_col", help="default: response")
    t.add_argument("--id-col", dest="id_col", help="column with record ids (default: numbered)")
    t.add_argument("--split", help="split of a datasets folder (default: train)")
    t.add_argument("--source", help="value of the 'source' field (default: the file name)")
    t.add_argument("--limit", type=int, help="keep the first N records")
    t.add_argument("--out", required=True, help="English SFT JSONL to write")
    t.add_argument("--json", action="store_true", help="print a JSON summary")
    return p


def _import_oasst(args) -> tuple[list[dict], dict]:
    stats: dict = {}
    rows = import_oasst(args.path, limit=args.limit, stats=stats)
    return rows, stats


def _import_table(args) -> tuple[list[dict], dict]:
    rows = import_table(args.path, args.instruction_col, args.response_col, args.id_col, split=args.split,
                        source=args.source, limit=args.limit)
    return rows, {}


DATA_ACTIONS = {"import-oasst": _import_oasst, "import": _import_table}


def cmd_data(args) -> int:
    check_out(args.out)
    rows, stats = DATA_ACTIONS[args.data_command](args)
    out = write_jsonl(args.out, rows)
    summary = {"records": len(rows), "out": str(out), **stats}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        detail = ""
        if stats:
            detail = (f" (from {stats['prompts']} conversation starts in {stats['messages']} messages; "
                      f"{stats['skipped_prompt']} other-language, deleted or unreviewed, "
                      f"{stats['no_ranked_reply']} without a ranked reply)")
        print(f"{len(rows)} English SFT records → {out}{detail}")
    return 0


DATA_COMMANDS = {
    "translate": (_translate_parser, cmd_translate),
    "pairs": (_pairs_parser, cmd_pairs),
    "data": (_data_parser, cmd_data),
}
