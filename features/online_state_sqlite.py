"""The live online state in SQLite: one file next to Feast's SQLite online store.

One connection per thread; every update runs in ``BEGIN IMMEDIATE`` (the database's write
lock), which serialises updates across threads and processes on one machine. Table names
carry the Feast project, like Feast's own SQLite tables. Each connection keeps the histories
it read in a cache that is exact or empty (:mod:`features.cached_histories`).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from features.cached_histories import CUSTOMER, TERMINAL, CachedHistories, CommittedUpdate
from features.online_state import (
    EntityHistory,
    LabelEvent,
    LiveTransaction,
    StateSession,
    retention_us,
)
from features.sqlite_wal import DEFAULT_PAGES, set_autocheckpoint


class SqliteLiveState:
    """The state in a SQLite file; one connection per thread, updates ``BEGIN IMMEDIATE``.

    ``autocheckpoint_pages``: the WAL's automatic-checkpoint threshold on these connections
    (raised by a server that checkpoints from a thread, :mod:`features.sqlite_wal`).
    """

    def __init__(
        self,
        path: Path,
        project: str,
        horizon_days: int,
        autocheckpoint_pages: int = DEFAULT_PAGES,
    ) -> None:
        self.path = Path(path)
        self.horizon_days = horizon_days
        self.autocheckpoint_pages = autocheckpoint_pages
        # Table names carry the Feast project, like Feast's own SQLite tables do.
        self.prefix = "".join(c if c.isalnum() else "_" for c in project)
        self._local = threading.local()

    def describe(self) -> str:
        """Where the state lives."""
        return f"sqlite {self.path}"

    def _cache(self) -> CachedHistories:
        """This thread's connection's cache (:mod:`features.cached_histories`)."""
        cache = getattr(self._local, "cache", None)
        if cache is None:
            cache = self._local.cache = CachedHistories()
        return cache

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: transactions are opened explicitly (BEGIN IMMEDIATE).
            connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            set_autocheckpoint(connection, self.autocheckpoint_pages)
            self._create(connection)
            self._local.connection = connection
        return connection

    def _create(self, connection: sqlite3.Connection) -> None:
        p = self.prefix
        connection.executescript(
            f"""
            CREATE TABLE IF NOT EXISTS {p}_live_tx (
                transaction_id INTEGER PRIMARY KEY, time_us INTEGER NOT NULL,
                customer_id INTEGER NOT NULL, terminal_id INTEGER NOT NULL, amount REAL NOT NULL);
            CREATE INDEX IF NOT EXISTS {p}_live_tx_customer ON {p}_live_tx (customer_id, time_us);
            CREATE INDEX IF NOT EXISTS {p}_live_tx_terminal ON {p}_live_tx (terminal_id, time_us);
            CREATE INDEX IF NOT EXISTS {p}_live_tx_time ON {p}_live_tx (time_us);
            CREATE TABLE IF NOT EXISTS {p}_live_label (
                transaction_id INTEGER PRIMARY KEY, terminal_id INTEGER NOT NULL,
                fraud INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS {p}_live_meta (name TEXT PRIMARY KEY, value TEXT);
            """
        )

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")  # the database's write lock: one writer at a time
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    @contextlib.contextmanager
    def session(
        self, customer_ids: Sequence[int], terminal_ids: Sequence[int]
    ) -> Iterator[StateSession]:
        """A serialised update: nothing else writes the state until it commits.

        The cache is checked once the write lock is held (no other commit can come between
        the check and the commit), and takes the update in only after the commit succeeded.
        """
        cache = self._cache()
        with self._write() as connection:
            cache.check(int(connection.execute("PRAGMA data_version").fetchone()[0]))
            session = _SqliteSession(connection, self.prefix, self.horizon_days, cache)
            yield session
        cache.commit(session.committed)

    def apply_labels(
        self, events: Sequence[LabelEvent], checkpoint: tuple[str, str] | None = None
    ) -> None:
        """Record labels (a set, so a replayed event changes nothing) and the consumer's offset.

        Both in one transaction: a crash leaves either the batch and its offset, or neither.
        """
        self._cache().clear()  # labels change terminal histories; re-read them
        with self._write() as connection:
            connection.executemany(
                f"INSERT INTO {self.prefix}_live_label VALUES (?, ?, ?) "
                "ON CONFLICT(transaction_id) DO UPDATE SET fraud = excluded.fraud",
                [(e.transaction_id, e.terminal_id, e.fraud) for e in events],
            )
            if checkpoint is not None:
                connection.execute(
                    f"INSERT OR REPLACE INTO {self.prefix}_live_meta VALUES (?, ?)", checkpoint
                )

    def checkpoint(self, name: str) -> str | None:
        """A consumer's committed offset, or None."""
        row = (
            self._connection()
            .execute(f"SELECT value FROM {self.prefix}_live_meta WHERE name = ?", (name,))
            .fetchone()
        )
        return None if row is None else str(row[0])

    def seed(self, transactions: Iterable[LiveTransaction], labels: Iterable[LabelEvent]) -> int:
        """Replace the whole state with ``transactions`` and ``labels`` (the versioned data)."""
        p = self.prefix
        rows = [
            (t.transaction_id, t.time_us, t.customer_id, t.terminal_id, t.amount)
            for t in transactions
        ]
        self._cache().clear()
        with self._write() as connection:
            for table in ("live_tx", "live_label", "live_meta"):
                connection.execute(f"DELETE FROM {p}_{table}")
            connection.executemany(f"INSERT INTO {p}_live_tx VALUES (?, ?, ?, ?, ?)", rows)
            connection.executemany(
                f"INSERT OR REPLACE INTO {p}_live_label VALUES (?, ?, ?)",
                [(e.transaction_id, e.terminal_id, e.fraud) for e in labels],
            )
        return len(rows)

    def labels(self) -> dict[int, int]:
        """Every recorded label, transaction -> fraud (status and tests)."""
        rows = self._connection().execute(
            f"SELECT transaction_id, fraud FROM {self.prefix}_live_label"
        )
        return {int(tx): int(fraud) for tx, fraud in rows}

    def close(self) -> None:
        """Close this thread's connection."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
            self._local.cache = None


class _SqliteSession:
    def __init__(
        self, connection: sqlite3.Connection, prefix: str, horizon_days: int, cache: CachedHistories
    ) -> None:
        self.connection = connection
        self.p = prefix
        self.horizon_days = horizon_days
        self.cache = cache
        #: what this update changes, for the cache once it has committed
        self.committed = CommittedUpdate()

    def _histories(self, column: str, ids: Sequence[int], labels: bool) -> dict[int, EntityHistory]:
        """Each entity's history: the cache's copy, or read (and then cached).

        After this session's own append, reads go to the database only: they see writes
        not yet committed, which the cache must not hold (it takes them in at the commit).
        """
        if self.committed.appended:
            return self._read_histories(column, sorted({int(i) for i in ids}), labels)
        found: dict[int, EntityHistory] = {}
        missing: list[int] = []
        for entity in sorted({int(i) for i in ids}):
            cached = self.cache.get(column, entity)
            if cached is None:
                missing.append(entity)
            else:
                found[entity] = cached
        if missing:
            read = self._read_histories(column, missing, labels)
            for entity, history in read.items():
                self.cache.put(column, entity, history)
            found |= read
        return found

    def _read_histories(
        self, column: str, wanted: list[int], labels: bool
    ) -> dict[int, EntityHistory]:
        found = {i: EntityHistory() for i in wanted}
        if not wanted:
            return found
        marks = ",".join("?" * len(wanted))
        fraud = (
            f"COALESCE((SELECT fraud FROM {self.p}_live_label l "
            "WHERE l.transaction_id = t.transaction_id), 0)"
            if labels
            else "0"
        )
        rows = self.connection.execute(
            f"SELECT {column}, transaction_id, time_us, amount, {fraud} FROM {self.p}_live_tx t "
            f"WHERE {column} IN ({marks}) ORDER BY {column}, time_us, transaction_id",
            wanted,
        )
        for entity, transaction_id, time_us, amount, is_fraud in rows:
            history = found[entity]
            history.transaction_ids.append(transaction_id)
            history.time_us.append(time_us)
            history.amount.append(amount)
            history.fraud.append(is_fraud)
        return found

    def customer_histories(self, ids: Sequence[int]) -> dict[int, EntityHistory]:
        return self._histories(CUSTOMER, ids, labels=False)

    def terminal_histories(self, ids: Sequence[int]) -> dict[int, EntityHistory]:
        return self._histories(TERMINAL, ids, labels=True)

    def applied(self, transaction_ids: Sequence[int]) -> set[int]:
        wanted = list({int(i) for i in transaction_ids})
        marks = ",".join("?" * len(wanted))
        rows = self.connection.execute(
            f"SELECT transaction_id FROM {self.p}_live_tx WHERE transaction_id IN ({marks})",
            wanted,
        )
        return {row[0] for row in rows}

    def watermark_us(self) -> int | None:
        # The state's newest instant as it stood when the session began (the cache's copy
        # moves only when an update commits).
        if self.cache.watermark is None:
            row = self.connection.execute(f"SELECT MAX(time_us) FROM {self.p}_live_tx").fetchone()
            self.cache.watermark = (row[0],)
        return self.cache.watermark[0]

    def append(self, transactions: Sequence[LiveTransaction]) -> None:
        if not transactions:
            return
        watermark = self.watermark_us()
        before = self.connection.total_changes
        self.connection.executemany(
            f"INSERT OR IGNORE INTO {self.p}_live_tx VALUES (?, ?, ?, ?, ?)",
            [
                (t.transaction_id, t.time_us, t.customer_id, t.terminal_id, t.amount)
                for t in transactions
            ],
        )
        committed = self.committed
        committed.appended.extend(transactions)
        committed.all_inserted &= self.connection.total_changes - before == len(transactions)
        # A label may have come before its transaction (a replayed feed): the terminal's
        # history then carries it, as a read would.
        tx_ids = [t.transaction_id for t in transactions]
        committed.labels |= dict(
            self.connection.execute(
                f"SELECT transaction_id, fraud FROM {self.p}_live_label "
                f"WHERE transaction_id IN ({','.join('?' * len(tx_ids))})",
                tx_ids,
            ).fetchall()
        )
        newest = max(t.time_us for t in transactions)
        cutoff = max(newest, watermark or newest) - retention_us(self.horizon_days)
        # Pruning only the touched entities keeps each update small; seeding prunes the rest.
        for column, ids in (
            ("customer_id", {t.customer_id for t in transactions}),
            ("terminal_id", {t.terminal_id for t in transactions}),
        ):
            marks = ",".join("?" * len(ids))
            pruned = self.connection.execute(
                f"DELETE FROM {self.p}_live_tx WHERE {column} IN ({marks}) AND time_us < ? "
                "RETURNING transaction_id, customer_id, terminal_id",
                [*ids, cutoff],
            )
            committed.pruned.extend(pruned.fetchall())
