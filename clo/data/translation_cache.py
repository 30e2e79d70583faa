"""The translation cache: SQLite, one row per (translator, model, source lang, target lang, text), shared by
threads and processes, so that a text is translated once per key across runs (docs/design.md, "Data flow").
"""
from __future__ import annotations

import hashlib
import logging
import random
import sqlite3
import time
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

from clo.core.files import move_aside
from clo.core.paths import clo_home

__all__ = ["TranslationCache", "TranslationError", "default_cache_path", "open_cache"]

log = logging.getLogger(__name__)
_CHECKED: set[str] = set()  # cache files found whole by this process (checked once per process)


class TranslationError(ValueError):
    """A translation that cannot start or finish; the message says why and what to do. (Declared here, at the
    lowest layer of translation, so that the cache can raise it; :mod:`clo.data.translate` exports it.)"""



def default_cache_path() -> Path:
    return clo_home() / "translations.sqlite"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS translations (
    key        TEXT PRIMARY KEY,   -- sha256 of translator, model, src, tgt, source
    translator TEXT NOT NULL,
    model      TEXT NOT NULL,
    src        TEXT NOT NULL,
    tgt        TEXT NOT NULL,
    source     TEXT NOT NULL,
    target     TEXT NOT NULL,
    created    REAL NOT NULL
)
"""


class TranslationCache:
    """SQLite cache of segment translations, shared by threads and processes.

    WAL mode lets readers run beside one writer; writers take turns through the busy timeout, and a write that
    still finds the database locked is retried with back-off. ``INSERT OR IGNORE`` makes two processes that
    translate the same text at once harmless: the first answer stays.
    """

    def __init__(self, path: str | Path | None = None, timeout: float = 30.0, retries: int = 8):
        self.path = Path(path).expanduser() if path else default_cache_path()
        self.timeout = timeout
        self.retries = retries
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._retry(self._check)
        self._retry(self._create)

    @staticmethod
    def key(translator: str, model: str, src: str, tgt: str, text: str) -> str:
        return hashlib.sha256("\x1f".join((translator, model, src, tgt, text)).encode("utf-8")).hexdigest()

    @contextmanager
    def _connect(self):
        try:
            con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        except sqlite3.Error as e:
            raise TranslationError(f"cannot open the translation cache {self.path}: {e}") from e
        try:
            con.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            yield con
        except sqlite3.DatabaseError as e:
            if isinstance(e, sqlite3.OperationalError) and _is_locked(e):
                raise
            raise TranslationError(
                f"the translation cache {self.path} is unusable ({e}); delete the file to start a fresh cache"
            ) from e
        finally:
            con.close()

    def _retry(self, fn):
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except sqlite3.OperationalError as e:
                if not _is_locked(e):
                    raise TranslationError(f"the translation cache {self.path} failed: {e}") from e
                if attempt == self.retries:
                    raise TranslationError(f"the translation cache {self.path} stayed locked: {e}") from e
                time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))

    def _check(self) -> None:
        """Once per process and file: is it a whole SQLite database (``PRAGMA quick_check``) with a readable
        table? A file that is not — overwritten, cut short, the wrong kind of file — is moved aside with a warning
        naming it, and a fresh cache starts: its translations are made again by the translator, never read from
        a damaged file."""
        key = str(self.path.resolve())
        if key in _CHECKED or not self.path.exists():
            return
        problem = None
        try:
            con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            try:
                found = [r[0] for r in con.execute("PRAGMA quick_check").fetchall()]
                if found != ["ok"]:
                    problem = "; ".join(str(f) for f in found[:3])
                else:
                    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                    if "translations" in tables:
                        con.execute("SELECT key, target FROM translations LIMIT 1").fetchall()
            finally:
                con.close()
        except sqlite3.OperationalError as e:
            if _is_locked(e):
                raise  # another process is writing: retried
            problem = str(e)
        except sqlite3.DatabaseError as e:
            problem = str(e)
        if problem:
            self._move_aside(problem)
        _CHECKED.add(key)

    def _move_aside(self, problem: str) -> None:
        try:
            aside = move_aside(self.path, companions=("-wal", "-shm", "-journal"))
        except OSError as e:
            raise TranslationError(f"the translation cache {self.path} is damaged ({problem}) and cannot be moved "
                                   f"aside ({e.strerror or e}); delete it to start a fresh cache") from e
        if aside is None:
            return  # another process moved it first
        log.warning("the translation cache %s is damaged (%s); moved it to %s and starting a fresh cache (its "
                    "texts are translated again)", self.path, problem, aside)

    def _create(self) -> None:
        with self._connect() as con:
            if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                con.execute("PRAGMA journal_mode = WAL")  # persistent: set once per file
            con.execute(_SCHEMA)

    def get_many(self, translator: str, model: str, src: str, tgt: str, texts: Iterable[str]) -> dict[str, str]:
        """Cached translations of ``texts`` (those not cached are absent)."""
        keys = {self.key(translator, model, src, tgt, t): t for t in texts}
        found: dict[str, str] = {}

        def read():
            with self._connect() as con:
                items = list(keys)
                for i in range(0, len(items), 500):
                    chunk = items[i:i + 500]
                    q = f"SELECT key, target FROM translations WHERE key IN ({','.join('?' * len(chunk))})"
                    for k, target in con.execute(q, chunk):
                        found[keys[k]] = target

        self._retry(read)
        return found

    def put_many(self, translator: str, model: str, src: str, tgt: str, pairs: Iterable[tuple[str, str]]) -> None:
        """Store ``(source, target)`` pairs in one transaction; a text already cached keeps its translation."""
        now = time.time()
        rows = [(self.key(translator, model, src, tgt, s), translator, model, src, tgt, s, t, now) for s, t in pairs]
        if not rows:
            return

        def write():
            with self._connect() as con:
                con.execute("BEGIN IMMEDIATE")
                try:
                    con.executemany("INSERT OR IGNORE INTO translations VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise

        self._retry(write)

    def count(self, translator: str | None = None) -> int:
        def read():
            with self._connect() as con:
                if translator is None:
                    return con.execute("SELECT COUNT(*) FROM translations").fetchone()[0]
                return con.execute("SELECT COUNT(*) FROM translations WHERE translator = ?",
                                   (translator,)).fetchone()[0]

        return self._retry(read)


def _is_locked(e: Exception) -> bool:
    msg = str(e).lower()
    return "locked" in msg or "busy" in msg


def open_cache(cache) -> TranslationCache | None:
    """``None`` → the default cache, ``False`` → no cache, a path → that file, a cache → itself."""
    if cache is False:
        return None
    if isinstance(cache, TranslationCache):
        return cache
    return TranslationCache(cache)


