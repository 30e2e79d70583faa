"""Translation of English SFT records into a target language (docs/design.md, "Data flow"), with a shared SQLite cache.

Backends are looked up by name in :data:`BACKENDS`:

- ``m2m100``    any M2M100 checkpoint (default ``facebook/m2m100_1.2B``, as in the paper; ``facebook/m2m100_418M``
                is lighter), from a local folder or the Hugging Face cache — offline, safetensors only;
- ``nllb``      NLLB-200 checkpoints the same way (default ``facebook/nllb-200-distilled-600M``);
- ``reference`` the hand-written translations bundled in ``assets/data/{demo,heldout}/<lang>.jsonl``.

Model backends translate *segments*, not whole texts: a text is split into lines, fenced code blocks
(```` ``` ````/``~~~``), inline code (`` `x` ``), URLs and list/heading markers are carried over byte for byte,
and what is left is grouped into chunks of whole sentences (at most ``max_chars`` characters) that the model
sees. Splitting around code and URLs (instead of masking them with placeholders) is deliberate: an MT model
may mangle a placeholder, it cannot mangle text it never sees. Each segment is translated once per
(translator, model, source lang, target lang, text) across runs and processes; results are committed after
each batch, so an interrupted translation resumes where it stopped.

    python -m clo translate --data demo --lang sw --translator reference --out data/demo-sw.jsonl
    python -m clo translate --data en.jsonl --lang sw --translator m2m100 --model facebook/m2m100_418M --out sw.jsonl

In Python (``cache=None`` is the default cache under ``$CLO_HOME``)::

    from clo.data.translate import translate_records
    rows = translate_records([{"id": "1", "instruction": "Hi?", "response": "Hello."}], "sw", "m2m100",
                             model="facebook/m2m100_418M", progress=lambda done, total: print(done, total))
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from clo.core.languages import Language, get_language
from clo.data.formats import DATA_DIR, SFT_FIELDS, read_records, validate_records
from clo.data.segment import split_text
from clo.data.translation_cache import TranslationCache, TranslationError, default_cache_path, open_cache
from clo.models.registry import ModelNotFoundError

__all__ = [
    "BACKENDS",
    "Backend",
    "TranslationError",
    "UnsupportedLanguageError",
    "MissingReferenceError",
    "TranslationCache",
    "Translator",
    "Seq2SeqTranslator",
    "ReferenceTranslator",
    "TranslationStats",
    "default_cache_path",
    "load_translator",
    "split_text",
    "translate_texts",
    "translate_records",
]

Progress = Callable[[int, int], None]


class UnsupportedLanguageError(TranslationError):
    """The chosen backend (or its checkpoint) does not cover a language."""


class MissingReferenceError(TranslationError):
    """The ``reference`` backend was asked for a text it has no hand-written translation of."""


# -- translators ----------------------------------------------------------------------------------------------


@dataclass
class TranslationStats:
    """Counters over the life of one translator (the CLI prints them; tests read them)."""

    segments: int = 0  # unique segments asked for
    cached: int = 0  # of those, found in the cache
    generated: int = 0  # translated by the model
    generate_calls: int = 0  # model.generate() calls (one per batch)


class Translator:
    """What every backend offers. ``label`` is what cross-lingual records carry in ``translator``."""

    name: str = ""
    model: str = ""  # cache key part: HF id or absolute folder; "" where there is no model
    uses_cache: bool = True  # False where a lookup is as cheap as the cache (reference)

    def __init__(self):
        self.stats = TranslationStats()

    @property
    def label(self) -> str:
        return f"{self.name}:{self.model}" if self.model else self.name

    def check(self, src: str, tgt: str) -> None:
        """Raise :class:`UnsupportedLanguageError` unless ``src`` → ``tgt`` can be translated. Cheap."""
        raise NotImplementedError

    def translate(self, texts: list[str], src: str, tgt: str, *, ids: list[str] | None = None,
                  cache: TranslationCache | None = None, progress: Progress | None = None) -> list[str]:
        raise NotImplementedError


@dataclass(frozen=True)
class _Codes:
    """How a seq2seq family names languages: the registry field and the token spelling (``__sw__``, ``swh_Latn``)."""

    registry_field: str
    token: str  # format string for the language token


class Seq2SeqTranslator(Translator):
    """M2M100 / NLLB through transformers: source language via ``tokenizer.src_lang``, target via
    ``forced_bos_token_id``. The tokenizer is loaded by :meth:`check`; the model only when a segment is not
    cached, so a fully cached translation never loads the weights."""

    def __init__(self, name: str, codes: _Codes, model: str, *, device: str | None = None, dtype: str | None = None,
                 batch_size: int = 16, num_beams: int | None = None, max_new_tokens: int = 512,
                 max_chars: int = 400):
        super().__init__()
        self.name, self.codes, self.requested = name, codes, model
        self.device, self.dtype = device, dtype
        self.batch_size, self.num_beams = max(1, int(batch_size)), num_beams
        self.max_new_tokens, self.max_chars = max_new_tokens, max_chars
        self.tokenizer = None
        self.hf_model = None  # loaded on the first segment the cache does not have
        self._location: Path | str | None = None
        self._vocab_size: int | None = None
        self._max_positions = 1024
        self._skip: set[int] = set()  # ids dropped when decoding (special and language tokens)

    # loading ---------------------------------------------------------------------------------------------
    @property
    def location(self) -> Path | str:
        """The local folder or cached HF id; raises :class:`ModelNotFoundError` naming where it looked."""
        if self._location is None:
            self._location = _resolve_mt_model(self.name, self.requested)
        return self._location

    @property
    def model(self) -> str:  # the cache key's model part and the label's suffix
        loc = self.location
        return loc if isinstance(loc, str) else str(loc.resolve())

    def _load_tokenizer(self):
        if self.tokenizer is None:
            from transformers import AutoConfig, AutoTokenizer

            where = self.location  # raises ModelNotFoundError naming where it looked
            try:
                config = AutoConfig.from_pretrained(where, local_files_only=True)
                tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=True)
            except (OSError, ValueError) as e:
                raise ModelNotFoundError(f"cannot load the {self.name} tokenizer from {where}: {e}") from e
            if not getattr(config, "is_encoder_decoder", False):
                raise TranslationError(
                    f"{self.requested} is a {config.model_type} model, not a sequence-to-sequence translation model; "
                    f"the {self.name} backend needs an M2M100 or NLLB checkpoint")
            self._vocab_size = config.vocab_size
            self._max_positions = int(getattr(config, "max_position_embeddings", 1024) or 1024)
            self.tokenizer = tokenizer
            self._skip = self._skip_ids()
        return self.tokenizer

    def _load_model(self):
        if self.hf_model is None:
            from transformers import AutoModelForSeq2SeqLM

            from clo.models.load import device_and_dtype

            device, dtype = device_and_dtype(self.device, self.dtype)
            where = self.location
            try:
                model = AutoModelForSeq2SeqLM.from_pretrained(where, local_files_only=True,
                                                              use_safetensors=True, dtype=dtype)
            except OSError as e:
                raise ModelNotFoundError(
                    f"{self.requested}: could not load safetensors weights from {where} ({e}). CLO Studio "
                    "reads safetensors only; convert a pickle checkpoint once with save_pretrained(..., "
                    "safe_serialization=True) on a trusted machine.") from e
            self.hf_model = model.to(device).eval()
            self.device = device
        return self.hf_model

    # languages -------------------------------------------------------------------------------------------
    def code(self, lang: str) -> str:
        language: Language = get_language(lang)
        code = getattr(language, self.codes.registry_field)
        if code is None:
            raise UnsupportedLanguageError(f"the {self.name} backend does not cover {language.label}")
        return code

    def token_id(self, code: str) -> int:
        tok = self._load_tokenizer()
        token = self.codes.token.format(code)
        tid = tok.convert_tokens_to_ids(token)
        if tid is None or tid == tok.unk_token_id or (self._vocab_size is not None and tid >= self._vocab_size):
            raise UnsupportedLanguageError(
                f"the {self.name} checkpoint {self.requested} has no language token {token!r} "
                f"(its tokenizer or vocabulary lacks it)")
        return tid

    def check(self, src: str, tgt: str) -> None:
        codes = [self.code(src), self.code(tgt)]  # registry first: no file is read for an uncovered language
        for c in codes:
            self.token_id(c)

    # translation -----------------------------------------------------------------------------------------
    def _skip_ids(self) -> set[int]:
        """Ids never part of a translation: special tokens and every language token (transformers 5 does not
        count M2M100's language tokens as special, so ``skip_special_tokens`` alone leaves ``__sw__`` in)."""
        tok = self.tokenizer
        ids = set(tok.all_special_ids)
        ids.update(getattr(tok, "lang_code_to_id", {}).values())
        for t in getattr(tok, "extra_special_tokens", None) or []:
            tid = tok.convert_tokens_to_ids(str(t))
            if isinstance(tid, int):
                ids.add(tid)
        return ids

    def generate(self, batch: list[str], src_code: str, tgt_id: int) -> list[str]:
        """Translate one batch of segments (no cache). One ``model.generate`` call."""
        import torch

        tok, model = self._load_tokenizer(), self._load_model()
        tok.src_lang = src_code
        limit = min(int(getattr(tok, "model_max_length", 0) or 1024), self._max_positions, 1024)
        enc = tok(batch, return_tensors="pt", padding=True, truncation=True, max_length=limit).to(model.device)
        # a translation is rarely more than twice as long as its source in tokens
        max_new = min(self.max_new_tokens, 2 * enc["input_ids"].shape[1] + 16)
        kw = {"num_beams": self.num_beams} if self.num_beams else {}
        with torch.inference_mode():
            out = model.generate(**enc, forced_bos_token_id=tgt_id, max_new_tokens=max_new, **kw)
        self.stats.generate_calls += 1
        skip = self._skip
        return [tok.decode([i for i in row.tolist() if i not in skip], skip_special_tokens=True,
                           clean_up_tokenization_spaces=False).strip() for row in out]

    def translate(self, texts, src, tgt, *, ids=None, cache=None, progress=None):
        self.check(src, tgt)
        src_code, tgt_id = self.code(src), self.token_id(self.code(tgt))
        src, tgt = get_language(src).code, get_language(tgt).code
        plans = [split_text(t, self.max_chars) for t in texts]
        unique = list(dict.fromkeys(s for plan in plans for s, tr in plan if tr))
        done = cache.get_many(self.name, self.model, src, tgt, unique) if cache is not None else {}
        self.stats.segments += len(unique)
        self.stats.cached += len(done)
        total = len(unique)
        if progress:
            progress(len(done), total)
        pending = sorted((s for s in unique if s not in done), key=len, reverse=True)  # similar lengths batch well
        for i in range(0, len(pending), self.batch_size):
            batch = pending[i:i + self.batch_size]
            out = self.generate(batch, src_code, tgt_id)
            if cache is not None:
                cache.put_many(self.name, self.model, src, tgt, zip(batch, out))  # committed: resumable
            done.update(zip(batch, out))
            self.stats.generated += len(batch)
            if progress:
                progress(len(done), total)
        return ["".join(done[s] if tr else s for s, tr in plan) for plan in plans]


class ReferenceTranslator(Translator):
    """The bundled hand-written translations: ``demo/<lang>.jsonl`` (cross-lingual records) and
    ``heldout/<lang>.jsonl`` (prompts and reference answers, matched to ``heldout/en.jsonl`` by id).
    A text is looked up by its record id first, then by its exact English wording."""

    name = "reference"
    uses_cache = False

    def __init__(self, root: str | Path | None = None, **_ignored):
        super().__init__()
        self.root = Path(root) if root else DATA_DIR
        self._index: dict[str, tuple[dict, dict]] = {}

    def languages(self) -> list[str]:
        found = {p.stem for p in (self.root / "demo").glob("*.jsonl")}
        found |= {p.stem for p in (self.root / "heldout").glob("*.jsonl")}
        return sorted(found - {"en"})

    def check(self, src: str, tgt: str) -> None:
        src_l, tgt_l = get_language(src), get_language(tgt)
        if src_l.code != "en":
            raise UnsupportedLanguageError("the reference backend translates from English only")
        if tgt_l.code not in self.languages():
            have = ", ".join(self.languages()) or "none yet"
            raise UnsupportedLanguageError(
                f"there are no bundled {tgt_l.name} reference translations (bundled: {have}); "
                f"translate {tgt_l.name} with M2M100 or NLLB-200 instead")

    def index(self, tgt: str) -> tuple[dict, dict]:
        """``(by_id, by_text)``: id → {English text → translation}, and English text → translation."""
        if tgt in self._index:
            return self._index[tgt]
        by_id: dict[str, dict[str, str]] = {}
        by_text: dict[str, str] = {}

        def add(rid, en, tr):
            if isinstance(en, str) and isinstance(tr, str) and en and tr:
                by_id.setdefault(str(rid), {})[en] = tr
                by_text.setdefault(en, tr)

        demo = self.root / "demo" / f"{tgt}.jsonl"
        if demo.exists():
            for r in read_records(demo):
                add(r.get("id"), r.get("instruction_en"), r.get("instruction"))
                add(r.get("id"), r.get("response_en"), r.get("response"))
        held, held_en = self.root / "heldout" / f"{tgt}.jsonl", self.root / "heldout" / "en.jsonl"
        if held.exists() and held_en.exists():
            english = {r.get("id"): r for r in read_records(held_en)}
            for r in read_records(held):
                en = english.get(r.get("id"), {})
                add(r.get("id"), en.get("prompt"), r.get("prompt"))
                add(r.get("id"), en.get("reference"), r.get("reference"))
        self._index[tgt] = (by_id, by_text)
        return by_id, by_text

    def translate(self, texts, src, tgt, *, ids=None, cache=None, progress=None):
        self.check(src, tgt)
        tgt = get_language(tgt).code
        by_id, by_text = self.index(tgt)
        ids = ids or [None] * len(texts)
        out, missing = [], []
        for rid, text in zip(ids, texts):
            found = by_id.get(str(rid), {}).get(text) if rid is not None else None
            found = found if found is not None else by_text.get(text)
            if found is None:
                missing.append((rid, text))
            out.append(found)
        if missing:
            rid, text = missing[0]
            short = text if len(text) <= 80 else text[:77] + "..."
            raise MissingReferenceError(
                f"no bundled {get_language(tgt).name} reference translation for {short!r}"
                + (f" (id {rid})" if rid is not None else "")
                + (f" and {len(missing) - 1} more text(s)" if len(missing) > 1 else "")
                + "; the reference translator covers only the bundled demo and held-out texts "
                  "— translate other data with M2M100 or NLLB-200")
        self.stats.segments += len(texts)
        if progress:
            progress(len(texts), len(texts))
        return out


# -- the backend table ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    name: str
    title: str
    default_model: str | None
    build: Callable[..., Translator]
    known_models: tuple[str, ...] = field(default=())


def _seq2seq(name: str, codes: _Codes):
    def build(model: str | None = None, **kw) -> Seq2SeqTranslator:
        return Seq2SeqTranslator(name, codes, model or BACKENDS[name].default_model, **kw)

    return build


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in [
        Backend("m2m100", "M2M100 (Fan et al., 2020) — the paper's translator", "facebook/m2m100_1.2B",
                _seq2seq("m2m100", _Codes("m2m100", "__{}__")),
                ("facebook/m2m100_1.2B", "facebook/m2m100_418M")),
        Backend("nllb", "NLLB-200 (NLLB Team, 2022)", "facebook/nllb-200-distilled-600M",
                _seq2seq("nllb", _Codes("nllb", "{}")),
                ("facebook/nllb-200-distilled-600M", "facebook/nllb-200-distilled-1.3B", "facebook/nllb-200-1.3B",
                 "facebook/nllb-200-3.3B")),
        Backend("reference", "hand-written translations bundled with CLO Studio (demo and held-out sets only)",
                None, lambda model=None, **kw: ReferenceTranslator(**{k: v for k, v in kw.items() if k == "root"})),
    ]
}


def _resolve_mt_model(backend: str, model: str) -> Path | str:
    """A local folder or the id of a model in the Hugging Face cache; ``m2m100_418M`` also finds
    ``facebook/m2m100_418M``. Nothing is downloaded; pickle-only checkpoints are refused."""
    from clo.models.resolve import refuse_pickle_only

    name = str(model).strip()
    known = BACKENDS[backend].known_models
    if name.lower() in ("", "default"):
        name = BACKENDS[backend].default_model
    path = Path(name).expanduser()
    if not path.exists() and "/" not in name:
        name = {m.split("/")[-1].lower(): m for m in known}.get(name.lower(), name)
        path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(f"{path.resolve()} exists but has no config.json: not a transformers model folder")
        refuse_pickle_only(path)
        return path
    looked = [f"local path {path.resolve()} (does not exist)"]
    if "/" in name and not name.startswith((".", "/", "~")):
        from huggingface_hub import constants, snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            snapshot = Path(snapshot_download(name, local_files_only=True))
        except (LocalEntryNotFoundError, OSError, ValueError):
            looked.append(f"Hugging Face cache {constants.HF_HUB_CACHE} (not downloaded)")
        else:
            if (snapshot / "config.json").exists():
                refuse_pickle_only(snapshot)
                return name
            looked.append(f"Hugging Face cache {snapshot} (no config.json)")
    raise ModelNotFoundError(
        f"{backend} translation model {name!r} is not available offline. Looked in: " + "; ".join(looked) + ". "
        f"Known {backend} checkpoints: {', '.join(known)}. Nothing is downloaded at run time: put the model in a "
        "local folder or the Hugging Face cache first (e.g. `huggingface-cli download "
        f"{BACKENDS[backend].default_model}` on a connected machine) and pass --model.")


def load_translator(name: str, model: str | None = None, **options) -> Translator:
    """Build the backend ``name`` (see :data:`BACKENDS`). Nothing heavy is loaded yet; options: ``device``,
    ``dtype``, ``batch_size``, ``num_beams``, ``max_new_tokens``, ``max_chars`` (model backends)."""
    try:
        backend = BACKENDS[str(name).strip().lower()]
    except KeyError:
        raise TranslationError(f"unknown translator {name!r}; choose one of: {', '.join(BACKENDS)}") from None
    if backend.default_model is None and model:
        raise TranslationError(f"the {backend.name} translator takes no --model")
    return backend.build(model, **options)


# -- entry points ---------------------------------------------------------------------------------------------


def _translator(translator: str | Translator, model: str | None, options: dict) -> Translator:
    if not isinstance(translator, Translator):
        return load_translator(translator, model, **options)
    if model is not None or options:
        raise TranslationError("pass model and options to load_translator(), not with an already built translator")
    return translator


def translate_texts(texts: list[str], lang: str, translator: str | Translator = "m2m100", *, model: str | None = None,
                    src: str = "en", ids: list[str] | None = None, cache=None, progress: Progress | None = None,
                    **options) -> list[str]:
    """Translate ``texts`` from ``src`` into ``lang``. ``cache``: None = the default cache, False = none, or a
    path / :class:`TranslationCache`. Languages are checked before any model or cache is touched."""
    tr = _translator(translator, model, options)
    if get_language(lang).code == get_language(src).code:
        raise TranslationError(f"source and target language are both {get_language(src).name}")
    tr.check(src, lang)
    if not texts:
        return []
    return tr.translate(list(texts), src, lang, ids=ids, cache=open_cache(cache) if tr.uses_cache else None,
                        progress=progress)


def translate_records(sft_records: list[dict], lang: str, translator: str | Translator = "m2m100",
                      model: str | None = None, cache=None, progress: Progress | None = None,
                      **options) -> list[dict]:
    """English SFT records → cross-lingual records ``{id, lang, instruction_en, response_en, instruction,
    response, translator}`` (plus ``source`` where the input has one), in input order."""
    tr = _translator(translator, model, options)
    code = get_language(lang).code
    if code == "en":
        raise TranslationError("the target language is English, the source language; pick another (--lang)")
    tr.check("en", code)  # before reading anything else: an uncovered language fails here
    validate_records(sft_records, SFT_FIELDS, "input records")
    texts, ids = [], []
    for r in sft_records:
        texts += [r["instruction"], r["response"]]
        ids += [r["id"], r["id"]]
    out = translate_texts(texts, code, tr, ids=ids, cache=cache, progress=progress) if texts else []
    rows = []
    for i, r in enumerate(sft_records):
        row = {"id": r["id"], "lang": code, "instruction_en": r["instruction"], "response_en": r["response"],
               "instruction": out[2 * i], "response": out[2 * i + 1], "translator": tr.label}
        if r.get("source"):
            row["source"] = r["source"]
        rows.append(row)
    return rows

