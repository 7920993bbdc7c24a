"""The live state behind the online rows: each entity's recent transactions and known labels.

A customer's or terminal's next online row is computed from its transactions of the last
``state_horizon_days`` (longest window + label delay) -- kept here, in the online store's
own engine, never in process memory, so a restarted server or a second replica continues
exactly where the first left off:

* SQLite (one machine): tables in ``live_state.db`` next to Feast's ``online_store.db``;
  ``BEGIN IMMEDIATE`` serialises every update across threads and processes.
* Redis (production): per-entity sorted sets and label hashes under ``fraud_live:<project>``;
  a short per-entity lock (``SET NX PX``) serialises the updates of one entity.

Both keep twice the horizon behind the newest transaction: a late event accepted up to one
horizon back still finds the history its own windows need.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from data.schema import CUSTOMER_ID, TERMINAL_ID, TRANSACTION_ID, TX_AMOUNT, TX_DATETIME, TX_FRAUD

#: Microseconds per day (state times are int64 microseconds since the epoch, naive UTC).
DAY_US = 86_400 * 10**6


@dataclass(frozen=True)
class LiveTransaction:
    """One accepted transaction as the state keeps it."""

    transaction_id: int
    time_us: int
    customer_id: int
    terminal_id: int
    amount: float


@dataclass(frozen=True)
class LabelEvent:
    """A chargeback / confirmed fraud (``fraud=1``) or a cleared dispute (``fraud=0``)."""

    transaction_id: int
    terminal_id: int
    fraud: int


@dataclass
class EntityHistory:
    """One entity's retained transactions, oldest first (``fraud``: labels known, else 0)."""

    transaction_ids: list[int] = field(default_factory=list)
    time_us: list[int] = field(default_factory=list)
    amount: list[float] = field(default_factory=list)
    fraud: list[int] = field(default_factory=list)

    def last_time_us(self) -> int | None:
        """The newest transaction instant, or None for no history."""
        return self.time_us[-1] if self.time_us else None

    def before(self, time_us: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(time_us, amount, fraud)`` arrays of the transactions strictly before ``time_us``."""
        n = int(np.searchsorted(np.asarray(self.time_us, np.int64), time_us, side="left"))
        return (
            np.asarray(self.time_us[:n], np.int64),
            np.asarray(self.amount[:n], np.float64),
            np.asarray(self.fraud[:n], np.float64),
        )

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(time_us, amount, fraud)`` of every retained transaction."""
        return (
            np.asarray(self.time_us, np.int64),
            np.asarray(self.amount, np.float64),
            np.asarray(self.fraud, np.float64),
        )

    def insert(self, tx: LiveTransaction, fraud: int = 0) -> None:
        """Add ``tx`` in time order (after any transaction at the same instant)."""
        at = int(np.searchsorted(np.asarray(self.time_us, np.int64), tx.time_us, side="right"))
        self.transaction_ids.insert(at, tx.transaction_id)
        self.time_us.insert(at, tx.time_us)
        self.amount.insert(at, tx.amount)
        self.fraud.insert(at, fraud)


class StateSession(Protocol):
    """What one serialised update sees: histories, applied ids, watermark; then appends."""

    def customer_histories(self, ids: Sequence[int]) -> dict[int, EntityHistory]: ...

    def terminal_histories(self, ids: Sequence[int]) -> dict[int, EntityHistory]: ...

    def applied(self, transaction_ids: Sequence[int]) -> set[int]: ...

    def watermark_us(self) -> int | None: ...

    def append(self, transactions: Sequence[LiveTransaction]) -> None: ...


class LiveState(Protocol):
    """A state engine (SQLite or Redis)."""

    def session(
        self, customer_ids: Sequence[int], terminal_ids: Sequence[int]
    ) -> contextlib.AbstractContextManager[StateSession]: ...

    def apply_labels(
        self, events: Sequence[LabelEvent], checkpoint: tuple[str, str] | None
    ) -> None: ...

    def checkpoint(self, name: str) -> str | None: ...

    def seed(
        self, transactions: Iterable[LiveTransaction], labels: Iterable[LabelEvent]
    ) -> int: ...

    def describe(self) -> str: ...

    def labels(self) -> dict[int, int]: ...


def _retention_us(horizon_days: int) -> int:
    return 2 * horizon_days * DAY_US


# --------------------------------------------------------------------------- SQLite


class SqliteLiveState:
    """The state in a SQLite file; one connection per thread, updates ``BEGIN IMMEDIATE``."""

    def __init__(self, path: Path, project: str, horizon_days: int) -> None:
        self.path = Path(path)
        self.horizon_days = horizon_days
        # Table names carry the Feast project, like Feast's own SQLite tables do.
        self.prefix = "".join(c if c.isalnum() else "_" for c in project)
        self._local = threading.local()

    def describe(self) -> str:
        """Where the state lives."""
        return f"sqlite {self.path}"

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: transactions are opened explicitly (BEGIN IMMEDIATE).
            connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
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
        """A serialised update: nothing else writes the state until it commits."""
        with self._write() as connection:
            yield _SqliteSession(connection, self.prefix, self.horizon_days)

    def apply_labels(
        self, events: Sequence[LabelEvent], checkpoint: tuple[str, str] | None = None
    ) -> None:
        """Record labels (a set, so a replayed event changes nothing) and the consumer's offset.

        Both in one transaction: a crash leaves either the batch and its offset, or neither.
        """
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


class _SqliteSession:
    def __init__(self, connection: sqlite3.Connection, prefix: str, horizon_days: int) -> None:
        self.connection = connection
        self.p = prefix
        self.horizon_days = horizon_days
        self._watermark: int | None = None
        self._watermark_read = False

    def _histories(self, column: str, ids: Sequence[int], labels: bool) -> dict[int, EntityHistory]:
        wanted = sorted({int(i) for i in ids})
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
        return self._histories("customer_id", ids, labels=False)

    def terminal_histories(self, ids: Sequence[int]) -> dict[int, EntityHistory]:
        return self._histories("terminal_id", ids, labels=True)

    def applied(self, transaction_ids: Sequence[int]) -> set[int]:
        wanted = list({int(i) for i in transaction_ids})
        marks = ",".join("?" * len(wanted))
        rows = self.connection.execute(
            f"SELECT transaction_id FROM {self.p}_live_tx WHERE transaction_id IN ({marks})",
            wanted,
        )
        return {row[0] for row in rows}

    def watermark_us(self) -> int | None:
        if not self._watermark_read:
            row = self.connection.execute(f"SELECT MAX(time_us) FROM {self.p}_live_tx").fetchone()
            self._watermark, self._watermark_read = row[0], True
        return self._watermark

    def append(self, transactions: Sequence[LiveTransaction]) -> None:
        if not transactions:
            return
        self.connection.executemany(
            f"INSERT OR IGNORE INTO {self.p}_live_tx VALUES (?, ?, ?, ?, ?)",
            [
                (t.transaction_id, t.time_us, t.customer_id, t.terminal_id, t.amount)
                for t in transactions
            ],
        )
        newest = max(t.time_us for t in transactions)
        cutoff = max(newest, self.watermark_us() or newest) - _retention_us(self.horizon_days)
        # Pruning only the touched entities keeps each update small; seeding prunes the rest.
        for column, ids in (
            ("customer_id", {t.customer_id for t in transactions}),
            ("terminal_id", {t.terminal_id for t in transactions}),
        ):
            marks = ",".join("?" * len(ids))
            self.connection.execute(
                f"DELETE FROM {self.p}_live_tx WHERE {column} IN ({marks}) AND time_us < ?",
                [*ids, cutoff],
            )


# --------------------------------------------------------------------------- Redis

# Appends atomically: skips an already-applied transaction (idempotency), adds it to both
# entities' sorted sets, prunes what fell out of retention, moves the watermark forward.
_APPEND_LUA = """
local prefix, retention = ARGV[1], tonumber(ARGV[2])
-- applied-id marks expire (wall clock) once their transaction left retention anyway
local ttl_ms = math.floor(retention / 1000)
local added = 0
local wm = tonumber(redis.call('GET', prefix .. ':watermark') or '-1')
for i = 3, #ARGV, 5 do
  local tx, t, c, term, amount = ARGV[i], tonumber(ARGV[i+1]), ARGV[i+2], ARGV[i+3], ARGV[i+4]
  if redis.call('SET', prefix .. ':tx:' .. tx, t, 'NX', 'PX', ttl_ms) then
    local member = tx .. '|' .. amount
    redis.call('ZADD', prefix .. ':c:' .. c, t, member)
    redis.call('ZADD', prefix .. ':t:' .. term, t, member)
    if t > wm then wm = t end
    local cutoff = wm - retention
    redis.call('ZREMRANGEBYSCORE', prefix .. ':c:' .. c, '-inf', '(' .. cutoff)
    redis.call('ZREMRANGEBYSCORE', prefix .. ':t:' .. term, '-inf', '(' .. cutoff)
    added = added + 1
  end
end
if wm >= 0 then redis.call('SET', prefix .. ':watermark', string.format('%d', wm)) end
return added
"""
_UNLOCK_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisLiveState:
    """The state in Redis, under ``fraud_live:<project>``; per-entity locks serialise updates."""

    #: A lock outlives a crashed holder by at most this long.
    LOCK_MS = 5000
    #: Wait between attempts to take a held lock.
    LOCK_RETRY_S = 0.0005

    def __init__(self, client, project: str, horizon_days: int) -> None:
        self.client = client
        self.prefix = f"fraud_live:{project}"
        self.horizon_days = horizon_days
        self._append = client.register_script(_APPEND_LUA)
        self._unlock = client.register_script(_UNLOCK_LUA)

    def describe(self) -> str:
        """Where the state lives."""
        kwargs = self.client.connection_pool.connection_kwargs
        return f"redis {kwargs.get('host')}:{kwargs.get('port')} ({self.prefix})"

    def _lock_keys(self, customer_ids: Sequence[int], terminal_ids: Sequence[int]) -> list[str]:
        # Sorted: every updater takes locks in one global order, so two never deadlock.
        keys = {f"{self.prefix}:lock:c:{int(i)}" for i in customer_ids}
        keys |= {f"{self.prefix}:lock:t:{int(i)}" for i in terminal_ids}
        return sorted(keys)

    def _acquire(self, keys: list[str], token: str) -> None:
        deadline = time.monotonic() + self.LOCK_MS / 1000
        held: list[str] = []
        for key in keys:
            while not self.client.set(key, token, nx=True, px=self.LOCK_MS):
                if time.monotonic() > deadline:
                    self._release(held, token)
                    raise TimeoutError(f"{key}: entity lock still held after {self.LOCK_MS} ms")
                time.sleep(self.LOCK_RETRY_S)
            held.append(key)

    def _release(self, keys: list[str], token: str) -> None:
        for key in keys:
            self._unlock(keys=[key], args=[token])

    @contextlib.contextmanager
    def session(
        self, customer_ids: Sequence[int], terminal_ids: Sequence[int]
    ) -> Iterator[StateSession]:
        """A serialised update of these entities: their locks are held until it ends."""
        keys = self._lock_keys(customer_ids, terminal_ids)
        token = uuid.uuid4().hex
        self._acquire(keys, token)
        try:
            session = _RedisSession(self, customer_ids, terminal_ids)
            yield session
            session.commit()
        finally:
            self._release(keys, token)

    def apply_labels(
        self, events: Sequence[LabelEvent], checkpoint: tuple[str, str] | None = None
    ) -> None:
        """Record labels (HSET: a replayed event changes nothing) and an optional offset."""
        pipe = self.client.pipeline(transaction=True)
        for e in events:
            pipe.hset(f"{self.prefix}:l:{e.terminal_id}", str(e.transaction_id), e.fraud)
        if checkpoint is not None:
            pipe.hset(f"{self.prefix}:checkpoints", checkpoint[0], checkpoint[1])
        pipe.execute()

    def checkpoint(self, name: str) -> str | None:
        """A consumer's committed offset, or None."""
        value = self.client.hget(f"{self.prefix}:checkpoints", name)
        return None if value is None else value.decode()

    def labels(self) -> dict[int, int]:
        """Every recorded label, transaction -> fraud (status and tests)."""
        found: dict[int, int] = {}
        for key in self.client.scan_iter(match=f"{self.prefix}:l:*", count=1000):
            for tx, fraud in self.client.hgetall(key).items():
                found[int(tx)] = int(fraud)
        return found

    def clear(self) -> None:
        """Delete every key of this state (seeding starts from nothing; tests clean up)."""
        for key in self.client.scan_iter(match=f"{self.prefix}:*", count=1000):
            self.client.delete(key)

    def seed(self, transactions: Iterable[LiveTransaction], labels: Iterable[LabelEvent]) -> int:
        """Replace the whole state with ``transactions`` and ``labels`` (the versioned data)."""
        self.clear()
        count, newest = 0, None
        ttl_ms = _retention_us(self.horizon_days) // 1000
        pipe = self.client.pipeline(transaction=False)
        for t in transactions:
            member = f"{t.transaction_id}|{t.amount!r}"
            pipe.set(f"{self.prefix}:tx:{t.transaction_id}", t.time_us, px=ttl_ms)
            pipe.zadd(f"{self.prefix}:c:{t.customer_id}", {member: t.time_us})
            pipe.zadd(f"{self.prefix}:t:{t.terminal_id}", {member: t.time_us})
            newest = t.time_us if newest is None else max(newest, t.time_us)
            count += 1
            if count % 5000 == 0:
                pipe.execute()
        for e in labels:
            pipe.hset(f"{self.prefix}:l:{e.terminal_id}", str(e.transaction_id), e.fraud)
        if newest is not None:
            pipe.set(f"{self.prefix}:watermark", newest)
        pipe.execute()
        return count


class _RedisSession:
    def __init__(
        self, state: RedisLiveState, customer_ids: Sequence[int], terminal_ids: Sequence[int]
    ) -> None:
        self.state = state
        self.pending: list[LiveTransaction] = []
        p = state.prefix
        self.customer_ids = sorted({int(i) for i in customer_ids})
        self.terminal_ids = sorted({int(i) for i in terminal_ids})
        # One round trip reads everything the update can need.
        pipe = state.client.pipeline(transaction=False)
        pipe.get(f"{p}:watermark")
        for i in self.customer_ids:
            pipe.zrange(f"{p}:c:{i}", 0, -1, withscores=True)
        for i in self.terminal_ids:
            pipe.zrange(f"{p}:t:{i}", 0, -1, withscores=True)
            pipe.hgetall(f"{p}:l:{i}")
        replies = pipe.execute()
        self._watermark = None if replies[0] is None else int(replies[0])
        n_c = len(self.customer_ids)
        self._customers = {
            i: self._history(replies[1 + k], {}) for k, i in enumerate(self.customer_ids)
        }
        self._terminals = {
            i: self._history(replies[1 + n_c + 2 * k], replies[2 + n_c + 2 * k])
            for k, i in enumerate(self.terminal_ids)
        }

    @staticmethod
    def _history(members: list[tuple[bytes, float]], labels: dict[bytes, bytes]) -> EntityHistory:
        history = EntityHistory()
        parsed = []
        for member, score in members:
            tx, amount = member.decode().split("|")
            parsed.append((int(score), int(tx), float(amount)))
        for time_us, tx, amount in sorted(parsed):
            history.transaction_ids.append(tx)
            history.time_us.append(time_us)
            history.amount.append(amount)
            history.fraud.append(int(labels.get(str(tx).encode(), b"0")))
        return history

    def customer_histories(self, ids: Sequence[int]) -> dict[int, EntityHistory]:
        return {int(i): self._customers[int(i)] for i in ids}

    def terminal_histories(self, ids: Sequence[int]) -> dict[int, EntityHistory]:
        return {int(i): self._terminals[int(i)] for i in ids}

    def applied(self, transaction_ids: Sequence[int]) -> set[int]:
        wanted = sorted({int(i) for i in transaction_ids})
        p = self.state.prefix
        found = self.state.client.exists(*[f"{p}:tx:{i}" for i in wanted]) if wanted else 0
        if not found:
            return set()
        pipe = self.state.client.pipeline(transaction=False)
        for i in wanted:
            pipe.exists(f"{p}:tx:{i}")
        return {i for i, hit in zip(wanted, pipe.execute(), strict=True) if hit}

    def watermark_us(self) -> int | None:
        return self._watermark

    def append(self, transactions: Sequence[LiveTransaction]) -> None:
        self.pending.extend(transactions)

    def commit(self) -> None:
        if not self.pending:
            return
        args: list[object] = [self.state.prefix, _retention_us(self.state.horizon_days)]
        for t in self.pending:
            args += [t.transaction_id, t.time_us, t.customer_id, t.terminal_id, repr(t.amount)]
        self.state._append(keys=[], args=args)


# --------------------------------------------------------------------------- seeding and opening


def seed_from_transactions(state: LiveState, transactions, horizon_days: int) -> int:
    """Rebuild the state from labelled transactions (the versioned data); rows kept.

    Keeps what the live path would have retained after replaying them: the transactions of
    the last two horizons, and the fraud labels among them.
    """
    if transactions.empty:
        return state.seed([], [])
    time_us = transactions[TX_DATETIME].to_numpy("datetime64[ns]").view(np.int64) // 1000
    kept = time_us >= time_us.max() - _retention_us(horizon_days)
    recent = transactions.loc[kept]
    columns = zip(
        recent[TRANSACTION_ID].tolist(),
        time_us[kept].tolist(),
        recent[CUSTOMER_ID].tolist(),
        recent[TERMINAL_ID].tolist(),
        recent[TX_AMOUNT].tolist(),
        recent[TX_FRAUD].tolist(),
    )
    rows = list(columns)
    return state.seed(
        (LiveTransaction(tx, t, c, term, float(a)) for tx, t, c, term, a, _ in rows),
        (LabelEvent(tx, term, 1) for tx, _, _, term, _, fraud in rows if fraud),
    )


# --------------------------------------------------------------------------- opening


def _redis_client(connection_string: str):
    """A redis-py client from Feast's ``host:port[,key=value...]`` connection string.

    Timeouts are short and there is one retry without backoff: a request waiting seconds
    for a dead Redis helps nobody -- the caller gets a 503 at once and retries.
    """
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    address, *options = [part.strip() for part in connection_string.split(",") if part.strip()]
    host, _, port = address.partition(":")
    settings = dict(option.split("=", 1) for option in options)
    return redis.Redis(
        host=host or "127.0.0.1",
        port=int(port or 6379),
        socket_connect_timeout=float(settings.get("socket_connect_timeout", 2)),
        socket_timeout=float(settings.get("socket_timeout", 2)),
        retry=Retry(NoBackoff(), 1),
    )


def open_live_state(store, horizon_days: int) -> LiveState:
    """The state engine that goes with a Feast store: its SQLite folder, or its Redis."""
    config = store.config
    online = config.online_store
    if online.type == "redis":
        return RedisLiveState(_redis_client(online.connection_string), config.project, horizon_days)
    online_path = Path(online.path)
    if not online_path.is_absolute():
        online_path = Path(config.repo_path) / online_path
    return SqliteLiveState(online_path.with_name("live_state.db"), config.project, horizon_days)
