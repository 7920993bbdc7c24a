"""WAL checkpoints off the request path (features.sqlite_wal), on real SQLite files."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from features.sqlite_wal import BACKSTOP_PAGES, WalCheckpointer, set_autocheckpoint


def _writer(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    set_autocheckpoint(connection, BACKSTOP_PAGES)
    connection.execute("CREATE TABLE IF NOT EXISTS tx (id INTEGER PRIMARY KEY, note TEXT)")
    return connection


def _write_pages(connection: sqlite3.Connection, first: int, n: int) -> None:
    for i in range(first, first + n):  # a commit each, as live updates do
        connection.execute("INSERT INTO tx VALUES (?, ?)", (i, "x" * 3000))


def test_a_raised_threshold_leaves_the_wal_to_the_checkpointer(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    writer = _writer(path)
    _write_pages(writer, 0, 1500)  # past SQLite's default 1,000-page automatic checkpoint
    # In WAL mode only a checkpoint writes the database file: no commit has checkpointed.
    assert path.stat().st_size < 100 * 4096
    checkpointer = WalCheckpointer([path, tmp_path / "not-yet.db"])
    ((busy, log, copied),) = checkpointer.checkpoint_once().values()
    assert busy == 0 and log >= 1500 and copied == log
    assert path.stat().st_size > 1500 * 3000
    writer.close()


def test_the_thread_checkpoints_while_a_writer_commits_then_stops(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    writer = _writer(path)
    _write_pages(writer, 0, 300)
    assert path.stat().st_size < 100 * 4096
    checkpointer = WalCheckpointer([path], interval_seconds=0.05)
    checkpointer.start()
    deadline = time.monotonic() + 30
    next_id = 300
    while path.stat().st_size < 300 * 3000 and time.monotonic() < deadline:
        _write_pages(writer, next_id, 1)  # the writer keeps committing meanwhile
        next_id += 1
        time.sleep(0.01)
    checkpointer.stop()
    assert path.stat().st_size >= 300 * 3000, "the thread never checkpointed the WAL"
    assert checkpointer.failures == 0 and checkpointer._thread is None
    assert writer.execute("SELECT COUNT(*) FROM tx").fetchone()[0] == next_id
    writer.close()
