"""clo.core.files: the one atomic write and the one "move a damaged file aside" that every cache and run uses."""
from __future__ import annotations

import pytest

from clo.core.files import atomic_path, atomic_write_text, move_aside


def test_an_atomic_write_replaces_the_file_whole_or_leaves_it_as_it_was(tmp_path):
    path = tmp_path / "sub" / "status.json"
    atomic_write_text(path, "old")  # makes the folder
    assert path.read_text() == "old"
    with pytest.raises(OSError, match="disk full"), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise OSError("disk full")
    assert path.read_text() == "old"
    assert [p.name for p in path.parent.iterdir()] == ["status.json"]  # no temporary file left behind
    with atomic_path(path) as tmp:
        assert tmp.parent == path.parent and tmp.name.startswith(".status.json.")
        tmp.write_bytes(b"new")
    assert path.read_text() == "new" and [p.name for p in path.parent.iterdir()] == ["status.json"]


def test_move_aside_keeps_the_damaged_file_and_its_companions_under_a_new_name(tmp_path):
    db = tmp_path / "cache.sqlite"
    db.write_text("damaged")
    (tmp_path / "cache.sqlite-wal").write_text("wal")
    aside = move_aside(db, companions=("-wal", "-shm"))
    assert aside.name.startswith("cache.sqlite.broken-") and aside.read_text() == "damaged"
    assert aside.with_name(aside.name + "-wal").read_text() == "wal"
    assert not db.exists() and not (tmp_path / "cache.sqlite-wal").exists()
    assert move_aside(db) is None  # already gone: another process moved it first

    folder = tmp_path / "model"
    folder.mkdir()
    assert move_aside(folder, "model.unreadable") == tmp_path / "model.unreadable"
    assert (tmp_path / "model.unreadable").is_dir()
