"""Accuracy and speed of each offline language detector and of the combined one, on the bundled texts.

    python bench/langid_bench.py              # counted lines (≥ 5 tokens), every language with a file
    python bench/langid_bench.py --all-lines  # every non-blank line
    python bench/langid_bench.py -v           # also list the lines the combined detector gets wrong

Accuracy is the share of lines whose label is the file's language (``unknown`` — confidence ≤ 0.3 — is
wrong). Speed is lines per second after each detector is warmed up, measured in the same run for all; the
combined rate includes the stages that decide without a detector (script rule for zh/ko).
"""
from __future__ import annotations

import argparse
from collections import Counter

LANGS = ("en", "sw", "zh", "de", "ko", "id", "yo")


def make_parser(subparsers=None) -> argparse.ArgumentParser:
    p = subparsers.add_parser("langid") if subparsers else argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--all-lines", action="store_true", help="every non-blank line, not only counted ones")
    p.add_argument("-v", "--verbose", action="store_true", help="print the combined detector's mistakes")
    p.add_argument("--langs", nargs="*", default=list(LANGS))
    return p


def main(argv=None) -> int:
    args = make_parser().parse_args(argv)
    from clo.bench.measure import Timer
    from clo.evaluation import langid

    data = {lang: langid.validation_lines(lang, counted_only=not args.all_lines) for lang in args.langs}
    data = {lang: lines for lang, lines in data.items() if lines}
    names = list(langid.DETECTORS) + ["combined"]
    for name in langid.DETECTORS:  # warm up: load models outside the timing
        langid.run_detector(name, "warm up the detector")
    for lines in data.values():  # and the neighbour guard's lexicons and word lists, once per language
        langid.detect(lines[0])

    acc: dict[str, dict[str, float]] = {}
    elapsed = Counter()
    per_lang_rate: dict[str, float] = {}
    reasons: dict[str, Counter] = {}
    mistakes = []
    total = sum(len(v) for v in data.values())
    for lang, lines in data.items():
        acc[lang] = {}
        for name in names:
            if name == "combined":
                with Timer() as t:
                    dets = [langid.detect(x) for x in lines]
                per_lang_rate[lang] = len(lines) / t.seconds
                labels = [d.lang for d in dets]
                reasons[lang] = Counter(d.reason for d in dets)
                mistakes += [(lang, d, x) for d, x in zip(dets, lines) if d.lang != lang]
            else:
                with Timer() as t:
                    labels = [(langid.run_detector(name, x) or [("unknown", 0.0)])[0][0] for x in lines]
            elapsed[name] += t.seconds
            acc[lang][name] = sum(l == lang for l in labels) / len(lines)

    print("lingua here knows the registry languages and 12 confusers only, which flatters its accuracy")
    print(f"{'lang':5} {'lines':>5} " + " ".join(f"{n:>10}" for n in names) + f" {'lines/s':>8}   combined stages")
    for lang, row in acc.items():
        stages = ", ".join(f"{k} {v}" for k, v in reasons[lang].most_common())
        print(f"{lang:5} {len(data[lang]):5d} " + " ".join(f"{row[n]:10.1%}" for n in names)
              + f" {per_lang_rate[lang]:8.0f}   {stages}")
    print(f"{'lines/s':11} " + " ".join(f"{total / elapsed[n]:10.0f}" for n in names))
    if args.verbose:
        for lang, d, x in mistakes:
            print(f"  {lang} → {d.lang} ({d.confidence:.2f}, {d.reason}, {d.votes}): {x[:90]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
