"""Files written safely and read defensively (docs/reliability.md): atomic replacement, moving a damaged file
aside, the free-space check before a large write, and a reader for JSON/YAML mappings that says what is wrong
instead of raising.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

__all__ = ["atomic_path", "atomic_write_text", "move_aside", "check_free_space", "read_run_file"]


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Write ``path`` atomically: yields a fresh temporary file beside it (``.<name>.<random>``, same folder, so
    the same file system) for the caller to write; when the block ends normally the file is flushed to disk and
    replaces ``path`` in one rename, so a reader sees the old file or the whole new one, never a torn one. When
    the block raises, ``path`` is left as it was and the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """``text`` (UTF-8) as the whole of ``path``, replaced atomically (:func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def move_aside(path: str | Path, name: str | None = None, companions: tuple[str, ...] = ()) -> Path | None:
    """Move a damaged file or folder out of the way, kept for inspection and never read again: to ``name`` in the
    same folder, by default ``<name>.broken-<time>-<ns>`` (unique). ``companions``: suffixes of files that belong
    to it (SQLite's ``-wal``), moved beside it when they exist. Returns where it went; None when ``path`` is
    already gone (another process moved it first). Raises ``OSError`` when it cannot be moved; the caller says
    what that means, and what the move means (with a warning naming both paths)."""
    path = Path(path)
    aside = path.with_name(name or f"{path.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**9:09d}")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return None
    for extra in companions:
        side = path.with_name(path.name + extra)
        try:
            os.replace(side, aside.with_name(aside.name + extra))
        except FileNotFoundError:
            pass
    return aside


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MB"


def check_free_space(path: str | Path, need: int, what: str) -> None:
    """Refuse early, before anything is written, when the file system of ``path`` (its nearest existing folder)
    has less than ``need`` bytes free: ``OSError(ENOSPC)`` naming ``path``, ``what`` needs the space, and how much
    there is."""
    folder = Path(path).expanduser().absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # cannot be measured: the write itself will tell
    if free < need:
        raise OSError(errno.ENOSPC, f"not enough free space for {what}: it needs about {_mb(need)} and "
                                    f"{_mb(free)} is free", str(path))


def read_run_file(path: Path) -> tuple[dict | None, str | None]:
    """A run's JSON or YAML file (by its suffix) as a mapping: ``(data, None)``; ``(None, None)`` when it does
    not exist; ``(None, why)`` when it cannot be used: unreadable (a folder, no permission), not UTF-8, empty or
    half-written, malformed, or not a mapping. Never raises."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as e:
        return None, f"{path.name} cannot be read ({e.strerror or e})"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, f"{path.name} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})"
    if not text.strip():
        return None, f"{path.name} is empty (half-written?)"
    try:
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except json.JSONDecodeError as e:
        return None, f"{path.name} is not valid JSON (line {e.lineno}: {e.msg}; half-written?)"
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        return None, f"{path.name} is not valid YAML" + (f" (line {mark.line + 1})" if mark is not None else "")
    except (ValueError, RecursionError) as e:
        return None, f"{path.name} cannot be parsed ({type(e).__name__})"
    if not isinstance(data, dict):
        return None, f"{path.name} holds a {type(data).__name__}, not a mapping"
    return data, None
