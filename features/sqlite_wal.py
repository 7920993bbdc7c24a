"""WAL checkpoints off the request path, for the SQLite files live updates commit to.

With live updates on, every state pass commits to two SQLite files in WAL mode (Feast's
``online_store.db`` and ``live_state.db``). SQLite's automatic checkpoint runs inside the
commit that takes the WAL past 1,000 pages: it syncs the WAL, copies its pages into the
database and syncs that -- 5 to 30 ms on this machine's disk, paid by whichever request
crossed the line. At 50 requests/s that was about one request in a hundred: the p99 of
the chain with updates on (issue #12).

So a serving process raises the automatic threshold on its own connections to a backstop
(:data:`BACKSTOP_PAGES`, reached only if the thread below stops keeping up) and a
:class:`WalCheckpointer` thread checkpoints each file every second in ``PASSIVE`` mode:
it never waits for, nor blocks, a writer or a reader, and Python's sqlite3 releases the
GIL while SQLite works, so the event loop keeps serving during the syncs.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger("features.sqlite_wal")

#: SQLite's own default automatic-checkpoint threshold, in WAL pages.
DEFAULT_PAGES = 1000
#: The threshold on request-path connections while a :class:`WalCheckpointer` runs (~40 MB
#: of 4 KiB pages): far above what a second of traffic writes, so only a stalled
#: checkpointer lets a request pay for a checkpoint again.
BACKSTOP_PAGES = 10_000


def set_autocheckpoint(connection: sqlite3.Connection, pages: int) -> None:
    """The connection's automatic-checkpoint threshold in WAL pages (SQLite's default 1000)."""
    connection.execute(f"PRAGMA wal_autocheckpoint={int(pages)}")


class WalCheckpointer:
    """Checkpoints SQLite WAL files from a daemon thread, every ``interval_seconds``."""

    def __init__(self, paths: Sequence[Path], interval_seconds: float = 1.0) -> None:
        self.paths = [Path(p) for p in paths]
        self.interval_seconds = interval_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connections: dict[Path, sqlite3.Connection] = {}
        #: checkpoints that found the file busy or failed (for logs and tests)
        self.failures = 0

    def start(self) -> None:
        """Start the thread (once; a second call does nothing)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="wal-checkpointer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread after its current checkpoint and close its connections."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def checkpoint_once(self) -> dict[Path, tuple[int, int, int]]:
        """One ``PASSIVE`` checkpoint of each file: ``(busy, wal_pages, checkpointed_pages)``."""
        done: dict[Path, tuple[int, int, int]] = {}
        for path in self.paths:
            if not path.exists():  # not created yet: nothing to checkpoint
                continue
            connection = self._connections.get(path)
            if connection is None:
                connection = sqlite3.connect(path, timeout=1, check_same_thread=False)
                self._connections[path] = connection
            busy, log, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            done[path] = (int(busy), int(log), int(copied))
        return done

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval_seconds):
                try:
                    self.checkpoint_once()
                except sqlite3.Error as exc:
                    # The backstop threshold still bounds the WAL; say so and try again.
                    self.failures += 1
                    logger.warning(
                        "WAL checkpoint failed (retrying in %.1f s): %s", self.interval_seconds, exc
                    )
        finally:
            for connection in self._connections.values():
                connection.close()
            self._connections.clear()
