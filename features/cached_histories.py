"""A serving process's copy of the live state's recent histories, exact or empty.

Each state pass reads its entities' retained transactions; on a busy server the same
customers and terminals come back pass after pass, and re-reading and re-building their
histories was the largest single cost of the pass (a fifth of the transformer's CPU at
1,000 transactions/s). The state stays the truth -- in SQLite, where a restarted server or
a second process finds it -- and this is a read cache of it that is never stale:

* it belongs to one connection and is checked at the start of every serialised update
  against SQLite's ``PRAGMA data_version``, which moves whenever *another* connection (a
  second replica, the label consumer, a seeding job) has committed: then it is emptied;
* the connection's own commits are folded in by :meth:`CachedHistories.commit` -- the
  appended transactions (labels included) and the rows pruned -- only once the commit has
  succeeded; a rolled-back update leaves it as it was, since sessions hand out copies;
* anything else the connection writes (labels, a seed) empties it.

So a cached history is always the one a fresh read would return, order included.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from dataclasses import dataclass, field

from features.online_state import EntityHistory, LiveTransaction

#: Entities kept per connection (least recently used go first): ~10 MB at 200 transactions
#: an entity; a serving process's working set of active customers and terminals.
CACHED_ENTITIES = 50_000

#: The two kinds of history, by the state's column that keys them.
CUSTOMER, TERMINAL = "customer_id", "terminal_id"


def copy_history(history: EntityHistory) -> EntityHistory:
    """A history a pass may change without touching the cached one."""
    return EntityHistory(
        list(history.transaction_ids),
        list(history.time_us),
        list(history.amount),
        list(history.fraud),
    )


@dataclass
class CommittedUpdate:
    """What one committed update changed: transactions added (with any label they already
    had) and transactions pruned, ``(transaction_id, customer_id, terminal_id)``."""

    appended: list[LiveTransaction] = field(default_factory=list)
    labels: dict[int, int] = field(default_factory=dict)
    pruned: list[tuple[int, int, int]] = field(default_factory=list)
    #: False when the insert skipped a transaction the state already held (then the
    #: histories it touches are dropped rather than guessed)
    all_inserted: bool = True


class CachedHistories:
    """Histories keyed by ``(column, entity)``, least recently used evicted first."""

    def __init__(self, capacity: int = CACHED_ENTITIES) -> None:
        self.capacity = capacity
        self.version: int | None = None
        self._histories: OrderedDict[tuple[str, int], EntityHistory] = OrderedDict()
        #: the newest transaction instant, when known (None inside: an empty state)
        self.watermark: tuple[int | None] | None = None

    def __len__(self) -> int:
        return len(self._histories)

    def check(self, data_version: int) -> None:
        """Empty the cache if another connection committed since it was filled."""
        if data_version != self.version:
            self.clear()
            self.version = data_version

    def clear(self) -> None:
        """Forget everything (the connection wrote something this cache does not follow)."""
        self._histories.clear()
        self.watermark = None

    def get(self, column: str, entity: int) -> EntityHistory | None:
        """A copy of the cached history, or None."""
        history = self._histories.get((column, entity))
        if history is None:
            return None
        self._histories.move_to_end((column, entity))
        return copy_history(history)

    def put(self, column: str, entity: int, history: EntityHistory) -> None:
        """Keep a copy of a history just read from the state."""
        if self.capacity <= 0:
            return
        self._histories[(column, entity)] = copy_history(history)
        self._histories.move_to_end((column, entity))
        while len(self._histories) > self.capacity:
            self._histories.popitem(last=False)

    def commit(self, update: CommittedUpdate) -> None:
        """Fold in what this connection's update committed, as a re-read would show it."""
        for tx in update.appended:
            for column, entity, fraud in (
                (CUSTOMER, tx.customer_id, 0),  # customer histories carry no labels
                (TERMINAL, tx.terminal_id, update.labels.get(tx.transaction_id, 0)),
            ):
                history = self._histories.get((column, entity))
                if history is None:
                    continue
                if not update.all_inserted:
                    del self._histories[(column, entity)]
                    continue
                _insert_in_order(history, tx, fraud)
        for tx_id, customer, terminal in update.pruned:
            for key in ((CUSTOMER, customer), (TERMINAL, terminal)):
                history = self._histories.get(key)
                if history is not None and tx_id in history.transaction_ids:
                    _remove(history, history.transaction_ids.index(tx_id))
        if self.watermark is not None and update.appended:
            known = self.watermark[0]
            newest = max(tx.time_us for tx in update.appended)
            self.watermark = (newest if known is None else max(known, newest),)


def _insert_in_order(history: EntityHistory, tx: LiveTransaction, fraud: int) -> None:
    """Insert where the state's read orders it: by instant, then transaction id."""
    at = bisect.bisect_left(history.time_us, tx.time_us)
    while (
        at < len(history.time_us)
        and history.time_us[at] == tx.time_us
        and history.transaction_ids[at] < tx.transaction_id
    ):
        at += 1
    history.transaction_ids.insert(at, tx.transaction_id)
    history.time_us.insert(at, tx.time_us)
    history.amount.insert(at, tx.amount)
    history.fraud.insert(at, fraud)


def _remove(history: EntityHistory, at: int) -> None:
    for column in (history.transaction_ids, history.time_us, history.amount, history.fraud):
        del column[at]
