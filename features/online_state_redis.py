"""The live online state in Redis: per-entity sorted sets and label hashes, per-entity locks.

Keys live under ``fraud_live:<project>`` (``:c:<customer>`` / ``:t:<terminal>`` sorted sets of
``transaction|amount`` scored by time, ``:l:<terminal>`` label hashes, ``:tx:<id>`` applied
marks, ``:watermark``). The Lua scripts touch keys they are not given (fine on one Redis or
a replicated primary; Redis Cluster would need hash tags per entity).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence

from features.online_state import (
    EntityHistory,
    LabelEvent,
    LiveTransaction,
    StateSession,
    retention_us,
)

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
_MARK_APPLIED_LUA = """
local prefix, ttl_ms = ARGV[1], ARGV[2]
for i = 3, #ARGV, 2 do
  redis.call('SET', prefix .. ':tx:' .. ARGV[i], ARGV[i+1], 'PX', ttl_ms)
end
return (#ARGV - 2) / 2
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
    #: Applied-id marks per script call when seeding.
    SEED_CHUNK = 5000

    def __init__(self, client, project: str, horizon_days: int) -> None:
        self.client = client
        self.prefix = f"fraud_live:{project}"
        self.horizon_days = horizon_days
        self._append = client.register_script(_APPEND_LUA)
        self._unlock = client.register_script(_UNLOCK_LUA)
        self._mark_applied = client.register_script(_MARK_APPLIED_LUA)

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
        # A thousand keys per UNLINK (freed in the background): a command per key took
        # longer than loading the state again.
        batch: list[bytes] = []
        for key in self.client.scan_iter(match=f"{self.prefix}:*", count=1000):
            batch.append(key)
            if len(batch) == 1000:
                self.client.unlink(*batch)
                batch.clear()
        if batch:
            self.client.unlink(*batch)

    def seed(self, transactions: Iterable[LiveTransaction], labels: Iterable[LabelEvent]) -> int:
        """Replace the whole state with ``transactions`` and ``labels`` (the versioned data).

        Grouped by entity: one ZADD per customer and terminal, and the applied-id marks set
        by a script thousands at a time -- a command per transaction made loading the
        deployment's 700k transactions take two minutes.
        """
        self.clear()
        customers: dict[int, dict[str, int]] = defaultdict(dict)
        terminals: dict[int, dict[str, int]] = defaultdict(dict)
        marks: list[object] = []
        newest = None
        for t in transactions:
            member = f"{t.transaction_id}|{t.amount!r}"
            customers[t.customer_id][member] = t.time_us
            terminals[t.terminal_id][member] = t.time_us
            marks += [t.transaction_id, t.time_us]
            newest = t.time_us if newest is None else max(newest, t.time_us)
        ttl_ms = retention_us(self.horizon_days) // 1000
        pipe = self.client.pipeline(transaction=False)
        for start in range(0, len(marks), 2 * self.SEED_CHUNK):
            self._mark_applied(
                args=[self.prefix, ttl_ms, *marks[start : start + 2 * self.SEED_CHUNK]], client=pipe
            )
        for kind, entities in (("c", customers), ("t", terminals)):
            for entity, members in entities.items():
                pipe.zadd(f"{self.prefix}:{kind}:{entity}", members)
        for e in labels:
            pipe.hset(f"{self.prefix}:l:{e.terminal_id}", str(e.transaction_id), e.fraud)
        if newest is not None:
            pipe.set(f"{self.prefix}:watermark", newest)
        pipe.execute()
        return len(marks) // 2


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
        args: list[object] = [self.state.prefix, retention_us(self.state.horizon_days)]
        for t in self.pending:
            args += [t.transaction_id, t.time_us, t.customer_id, t.terminal_id, repr(t.amount)]
        self.state._append(keys=[], args=args)


def redis_client(connection_string: str):
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
