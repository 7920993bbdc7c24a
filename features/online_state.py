"""The live state behind the online rows: each entity's recent transactions and known labels.

A customer's or terminal's next online row is computed from its transactions of the last
``state_horizon_days`` (longest window + label delay) -- kept here, in the online store's
own engine, so a restarted server or a second replica continues exactly where the first
left off (a process holds at most an exact read cache of it, :mod:`features.cached_histories`):

* SQLite (one machine, :mod:`features.online_state_sqlite`): tables in ``live_state.db``
  next to Feast's ``online_store.db``; ``BEGIN IMMEDIATE`` serialises every update across
  threads and processes.
* Redis (production, :mod:`features.online_state_redis`): per-entity sorted sets and label
  hashes under ``fraud_live:<project>``; a short per-entity lock (``SET NX PX``) serialises
  the updates of one entity.

This module holds what both engines share: the records, the protocols, seeding, opening.

Both keep twice the horizon behind the newest transaction: a late event accepted up to one
horizon back still finds the history its own windows need.
"""

from __future__ import annotations

import contextlib
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
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

    def insert(self, tx: LiveTransaction, fraud: int = 0) -> None:
        """Add ``tx`` in time order (after any transaction at the same instant)."""
        at = bisect_right(self.time_us, tx.time_us)  # on the list itself: no array per insert
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


def retention_us(horizon_days: int) -> int:
    """How long the state keeps a transaction: two horizons (late events need one more)."""
    return 2 * horizon_days * DAY_US


# --------------------------------------------------------------------------- seeding


def seed_from_transactions(state: LiveState, transactions, horizon_days: int) -> int:
    """Rebuild the state from labelled transactions (the versioned data); rows kept.

    Keeps what the live path would have retained after replaying them: the transactions of
    the last two horizons, and the fraud labels among them.
    """
    if transactions.empty:
        return state.seed([], [])
    time_us = transactions[TX_DATETIME].to_numpy("datetime64[ns]").view(np.int64) // 1000
    kept = time_us >= time_us.max() - retention_us(horizon_days)
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
