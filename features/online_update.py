"""Online rows that move with traffic: serve each transaction its row, then fold it in.

For a batch of validated transactions, under the state's lock for their entities:

1. event times are checked against the clock (the server's, or in replay the newest
   transaction the state has seen): too far ahead, or older than the state's horizon,
   is an :class:`EventTimeRejected` naming the field, the value and the tolerance;
2. each transaction gets the row the offline definition gives it -- the entity's latest
   row with ``event_timestamp <= tx_datetime``. In order, on a store that keeps the row's
   stamp to the microsecond (Redis), that is the row Feast's online store holds; otherwise
   (Feast's SQLite store keeps whole seconds; a duplicate ``transaction_id``; a
   transaction at or before the entity's newest one; a second one of the entity in the
   batch) it is computed from the entity's retained transactions, the one row it needs
   (:mod:`features.live_rows`: the windows of ``features.definitions``, row by row);
3. new transactions join their entities' histories; each touched entity's latest row is
   computed the same way and written to the feature views through the Feast provider's
   ``online_write_batch`` (:mod:`features.online_rows`);
4. the state commits last: a crash before it leaves the transactions unapplied, and the
   client's retry recomputes exactly the rows already written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import pandas as pd

from data.schema import CUSTOMER_ID, TERMINAL_ID, TRANSACTION_ID, TX_AMOUNT, TX_DATETIME
from features.definitions import (
    CUSTOMER_VIEW,
    TERMINAL_VIEW,
    VELOCITY_FEATURES,
)
from features.live_rows import (
    customer_row_at,
    customer_velocity_at,
    last_instant_before,
    terminal_row_at,
)
from features.online_rows import OnlineRows, stamp_us
from features.online_state import (
    DAY_US,
    EntityHistory,
    LiveState,
    LiveTransaction,
    StateSession,
)

EventClock = Literal["server", "replay"]


@dataclass(frozen=True)
class LiveRequests:
    """A batch of validated transactions as plain columns, in request order."""

    transaction_id: list[int]
    customer_id: list[int]
    terminal_id: list[int]
    amount: list[float]
    #: µs since the epoch, naive UTC: the microsecond instants of the offline definition
    time_us: list[int]

    @classmethod
    def of(cls, transactions: Sequence[object]) -> LiveRequests:
        """From validated transactions (attributes named as in ``data.schema``)."""
        return cls(
            [int(getattr(t, TRANSACTION_ID)) for t in transactions],
            [int(getattr(t, CUSTOMER_ID)) for t in transactions],
            [int(getattr(t, TERMINAL_ID)) for t in transactions],
            [float(getattr(t, TX_AMOUNT)) for t in transactions],
            [stamp_us(getattr(t, TX_DATETIME)) for t in transactions],
        )


class EventTimeRejected(ValueError):
    """A transaction time the state cannot take: too far ahead, or beyond the horizon."""

    def __init__(self, index: int, got: str, rule: str) -> None:
        self.field = f"instances[{index}].{TX_DATETIME}"
        self.got = got
        self.rule = rule
        super().__init__(f"{self.field}: {rule}, got {got!r}")


@dataclass(frozen=True)
class EventTimePolicy:
    """How far a transaction time may stray from the clock."""

    #: ``server``: the wall clock; ``replay``: the newest transaction the state has seen
    clock: EventClock
    #: seconds a transaction may be dated ahead of the clock (clock skew, not the future)
    future_tolerance_seconds: float
    #: days a transaction may be older than the clock: the longest window plus the label delay
    horizon_days: int


@dataclass(frozen=True)
class UpdateOutcome:
    """What one batch did to the state."""

    applied: int
    duplicates: int
    late: int


def _iso(time_us: int) -> str:
    return pd.Timestamp(int(time_us) * 1000).isoformat()


def check_event_times(
    times_us: np.ndarray, watermark_us: int | None, policy: EventTimePolicy, now_us: int
) -> None:
    """Raise :class:`EventTimeRejected` for the first time outside the policy's bounds."""
    clock_us = now_us if policy.clock == "server" else watermark_us
    if clock_us is None:  # replay with an empty state: nothing to compare with yet
        return
    ahead_us = int(policy.future_tolerance_seconds * 1e6)
    behind_us = policy.horizon_days * DAY_US
    name = "server clock" if policy.clock == "server" else "replay clock"
    for i, t in enumerate(times_us.tolist()):
        if policy.clock == "replay" and clock_us < t <= clock_us + ahead_us:
            clock_us = t  # the replay clock moves with the accepted traffic, batch included
        if t > clock_us + ahead_us:
            raise EventTimeRejected(
                i,
                _iso(t),
                f"must not be more than {policy.future_tolerance_seconds:g} s ahead of "
                f"the {name} {_iso(clock_us)}",
            )
        if t < clock_us - behind_us:
            raise EventTimeRejected(
                i,
                _iso(t),
                f"must not be more than {policy.horizon_days} days (longest window + label "
                f"delay) before the {name} {_iso(clock_us)}",
            )


def customer_row_before(history: EntityHistory, time_us: int) -> list[float] | float:
    """The customer's row a transaction at ``time_us`` sees: the row after its last instant
    before it (NaN: none). A row only depends on the transactions up to its instant, so a
    history that already holds the transaction (or later ones) gives the offline row."""
    instant = last_instant_before(history.time_us, time_us)
    if instant is None:
        return np.nan
    return customer_row_at(history.time_us, history.amount, instant)


def terminal_row_before(
    history: EntityHistory, time_us: int, delay_days: int
) -> list[float] | float:
    """The terminal's row a transaction at ``time_us`` sees (labels known; NaN: none)."""
    instant = last_instant_before(history.time_us, time_us)
    if instant is None:
        return np.nan
    return terminal_row_at(history.time_us, history.fraud, instant, delay_days)


class OnlineFeatureUpdater:
    """Serves each transaction its exact row and moves the online rows with the traffic."""

    def __init__(
        self,
        rows: OnlineRows,
        state: LiveState,
        label_delay_days: int,
        policy: EventTimePolicy,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.rows = rows
        self.state = state
        self.label_delay_days = label_delay_days
        self.policy = policy
        self.clock = clock

    def _now_us(self) -> int:
        return stamp_us(self.clock())

    def _stored_rows(
        self, view: str, histories: dict[int, EntityHistory], ids: list[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Feast's rows and stamps for ``ids`` (:meth:`OnlineRows.read`), where one can be
        served: a store keeping stamps to the µs (Redis) is read for every entity. Feast's
        SQLite store keeps whole seconds, which cannot tell the row after an entity's newest
        transaction from one after an earlier transaction of that second: there only the
        entities the state retains nothing of are read, the others' rows are computed from
        their histories (a row not read: NaN values, stamp -1)."""
        if self.rows.stamp_precision_us == 1:
            return self.rows.read(view, ids)
        wanted = [i for i, entity in enumerate(ids) if not histories[entity].time_us]
        values, stamps = self.rows.read(view, [ids[i] for i in wanted])
        if len(wanted) == len(ids):
            return values, stamps
        all_values = np.full((len(ids), values.shape[1]), np.nan)
        all_stamps = np.full(len(ids), -1, np.int64)
        all_values[wanted], all_stamps[wanted] = values, stamps
        return all_values, all_stamps

    def serve(self, requests: LiveRequests) -> ServedPass:
        """Each transaction's rows and velocity, the state's session left open for
        :meth:`ServedPass.apply` (or :meth:`ServedPass.discard`).

        Serving first and writing after lets a caller send the served rows on (to the
        predictor) while the update is written: the update is no longer on the answer's
        critical path, and read-your-writes still holds if the answer waits for ``apply``.
        """
        customer_ids, terminal_ids = requests.customer_id, requests.terminal_id
        times_us = np.asarray(requests.time_us, np.int64)
        opened = self.state.session(customer_ids, terminal_ids)
        session = opened.__enter__()
        try:
            check_event_times(times_us, session.watermark_us(), self.policy, self._now_us())
            batch = _Batch(
                session.customer_histories(customer_ids),
                session.terminal_histories(terminal_ids),
                session.applied(requests.transaction_id),
                self.label_delay_days,
                self.rows.stamp_precision_us,
            )
            customer_rows, customer_ts = self._stored_rows(
                CUSTOMER_VIEW, batch.customers, customer_ids
            )
            terminal_rows, terminal_ts = self._stored_rows(
                TERMINAL_VIEW, batch.terminals, terminal_ids
            )
            velocity = {name: np.zeros(len(times_us)) for name in VELOCITY_FEATURES}
            batch.serve(
                requests,
                (customer_rows, terminal_rows),
                (customer_ts, terminal_ts),
                velocity,
            )
        except BaseException as exc:
            opened.__exit__(type(exc), exc, exc.__traceback__)  # roll back, release
            raise
        stored = (
            dict(zip(customer_ids, customer_ts.tolist())),
            dict(zip(terminal_ids, terminal_ts.tolist())),
        )
        return ServedPass(
            self.rows, opened, session, batch, stored, (customer_rows, terminal_rows), velocity
        )


class _Discarded(Exception):
    """Ends a session without its writes (an explanation's pass)."""


class ServedPass:
    """A batch served its rows, its update not yet written: the state's session is open
    (its entities locked) until :meth:`apply` or :meth:`discard` -- exactly one of them."""

    def __init__(
        self,
        rows: OnlineRows,
        opened: AbstractContextManager[StateSession],
        session: StateSession,
        batch: _Batch,
        stored: tuple[dict[int, int], dict[int, int]],
        served_rows: tuple[np.ndarray, np.ndarray],
        velocity: dict[str, np.ndarray],
    ) -> None:
        self._online = rows
        self._opened = opened
        self._session = session
        self._batch = batch
        self._stored = stored
        #: ``(customer_rows, terminal_rows)`` served, row for row
        self.rows = served_rows
        self.velocity = velocity

    def apply(self) -> UpdateOutcome:
        """Write each touched entity's latest row to the feature views, then commit the
        state (last: a crash before it leaves the transactions unapplied)."""
        batch = self._batch
        try:
            if batch.new:
                for view, latest, histories, stored in (
                    (CUSTOMER_VIEW, batch.latest_customer_rows(), batch.customers, self._stored[0]),
                    (TERMINAL_VIEW, batch.latest_terminal_rows(), batch.terminals, self._stored[1]),
                ):
                    stamps = [_row_stamp(histories[i], stored.get(i, -1)) for i in latest]
                    self._online.write(view, list(latest), list(latest.values()), stamps)
                self._session.append(batch.new)
        except BaseException as exc:
            self._opened.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._opened.__exit__(None, None, None)
        return batch.outcome()

    def discard(self) -> UpdateOutcome:
        """End the session writing nothing (the outcome counts nothing)."""
        discarded = _Discarded()
        self._opened.__exit__(_Discarded, discarded, None)
        return UpdateOutcome(0, 0, 0)


class _Batch:
    """One request's pass over its transactions, in order, against the entities' histories."""

    def __init__(
        self,
        customers: dict[int, EntityHistory],
        terminals: dict[int, EntityHistory],
        applied: set[int],
        label_delay_days: int,
        stamp_precision_us: int = 1,
    ) -> None:
        self.customers, self.terminals = customers, terminals
        self.applied = applied
        self.delay = label_delay_days
        self.precision_us = stamp_precision_us
        self.new: list[LiveTransaction] = []
        #: entities a new transaction of the batch moved, in first-touch order
        self.touched_c: dict[int, None] = {}
        self.touched_t: dict[int, None] = {}
        self.duplicates = self.late = 0

    def outcome(self) -> UpdateOutcome:
        """What the pass did to the state."""
        return UpdateOutcome(len(self.new), self.duplicates, self.late)

    def latest_customer_rows(self) -> dict[int, list[float]]:
        """Each moved customer's row after its newest transaction, for the online store."""
        histories = self.customers
        return {
            c: customer_row_at(histories[c].time_us, histories[c].amount, histories[c].time_us[-1])
            for c in self.touched_c
        }

    def latest_terminal_rows(self) -> dict[int, list[float]]:
        """Each moved terminal's row after its newest transaction (labels known)."""
        histories = self.terminals
        return {
            t: terminal_row_at(
                histories[t].time_us, histories[t].fraud, histories[t].time_us[-1], self.delay
            )
            for t in self.touched_t
        }

    def serve(
        self,
        requests: LiveRequests,
        rows: tuple[np.ndarray, np.ndarray],
        stamps: tuple[np.ndarray, np.ndarray],
        velocity: dict[str, np.ndarray],
    ) -> None:
        """Fix the rows Feast cannot give and fill ``velocity`` (in place); collect the new.

        A row Feast cannot give is computed on the entity's history with the transaction
        in it: the row before the transaction is what it is served. The rows the online
        store gets are computed once per entity, when the pass is applied.
        """
        customer_rows, terminal_rows = rows
        customer_ts, terminal_ts = stamps
        columns = zip(
            requests.transaction_id,
            requests.customer_id,
            requests.terminal_id,
            requests.amount,
            requests.time_us,
        )
        for i, (tx_id, customer, terminal, amount, t) in enumerate(columns):
            c_history, t_history = self.customers[customer], self.terminals[terminal]
            c_last, t_last = c_history.last_time_us(), t_history.last_time_us()
            c_fits = _feast_row_fits(
                customer in self.touched_c, c_last, int(customer_ts[i]), t, self.precision_us
            )
            t_fits = _feast_row_fits(
                terminal in self.touched_t, t_last, int(terminal_ts[i]), t, self.precision_us
            )
            for name, value in customer_velocity_at(c_history.time_us, c_history.amount, t).items():
                velocity[name][i] = value
            new = tx_id not in self.applied
            if new:
                if (c_last is not None and t < c_last) or (t_last is not None and t < t_last):
                    self.late += 1
                tx = LiveTransaction(tx_id, t, customer, terminal, amount)
                c_history.insert(tx)
                t_history.insert(tx)
                self.applied.add(tx_id)
                self.new.append(tx)
                self.touched_c[customer] = self.touched_t[terminal] = None
            else:
                self.duplicates += 1
            if not c_fits:
                customer_rows[i] = customer_row_before(c_history, t)
            if not t_fits:
                terminal_rows[i] = terminal_row_before(t_history, t, self.delay)


def _feast_row_fits(
    touched: bool, last_us: int | None, row_us: int, time_us: int, precision_us: int = 1
) -> bool:
    """Whether the row Feast holds is the one a transaction at ``time_us`` must see: the
    row after the entity's newest retained transaction, and after nothing later.

    A row is stamped 1 µs after its last transaction, so it fits when its stamp is past the
    entity's newest transaction (a store materialised short of the state, or restored from
    elsewhere, is not) and at most the transaction's instant (a retry after a crash between
    the row's write and the state's commit finds a row that already holds the transaction).
    An entity touched earlier in the batch has moved on. A row not read has no stamp (-1).
    The store keeps stamps to ``precision_us`` (floored): Feast's SQLite store is only read
    for entities without history (:meth:`OnlineFeatureUpdater._stored_rows`), and there a
    row fits when its whole second lies before the transaction.
    """
    if touched:
        return False
    if last_us is None:  # nothing retained: Feast's row (or none) is all there is, if before
        return row_us + precision_us - 1 <= time_us
    return last_us < row_us <= time_us


def _row_stamp(history: EntityHistory, stored_us: int) -> int:
    """The row's ``event_timestamp`` in µs: just after its last transaction, as offline.

    A row rewritten at the same instant (a late transaction, a second one at that instant)
    gets 1 µs more than the stored one: Feast's Redis store skips a write that is not newer.
    """
    natural = int(history.last_time_us()) + 1  # type: ignore[arg-type]
    return natural if natural > stored_us else stored_us + 1
