"""Online rows that move with traffic: serve each transaction its row, then fold it in.

For a batch of validated transactions, under the state's lock for their entities:

1. event times are checked against the clock (the server's, or in replay the newest
   transaction the state has seen): too far ahead, or older than the state's horizon,
   is an :class:`EventTimeRejected` naming the field, the value and the tolerance;
2. each transaction gets the row the offline definition gives it -- the entity's latest
   row with ``event_timestamp <= tx_datetime``. In order (the common case) that is the row
   Feast's online store holds; for a duplicate ``transaction_id``, a transaction at or
   before the entity's newest one (late, or at the same instant) or a second one of the
   entity in the batch, it is computed from the entity's retained transactions;
3. new transactions join their entities' histories; each touched entity's latest row is
   recomputed with ``features.definitions`` and written through
   ``FeatureStore.write_to_online_store`` (the feature views stay the source of truth);
4. the state commits last: a crash before it leaves the transactions unapplied, and the
   client's retry recomputes exactly the rows already written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import pandas as pd

from data.schema import CUSTOMER_ID, TERMINAL_ID, TRANSACTION_ID, TX_AMOUNT, TX_DATETIME
from features.definitions import (
    CUSTOMER_FEATURES,
    CUSTOMER_TX_COUNT,
    CUSTOMER_VIEW,
    EVENT_TIMESTAMP,
    TERMINAL_FEATURES,
    TERMINAL_TX_COUNT,
    TERMINAL_VIEW,
    VELOCITY_FEATURES,
    latest_customer_row,
    latest_terminal_row,
    velocity_features,
)
from features.online_state import DAY_US, EntityHistory, LiveState, LiveTransaction

EventClock = Literal["server", "replay"]

#: ``(customer_ids, terminal_ids) -> (customer_rows, terminal_rows, customer_ts, terminal_ts)``:
#: the online rows (NaN rows for unknown ids) and their event timestamps in µs (-1 = none).
RowReader = Callable[
    [list[int], list[int]], tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]
]


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


def _to_us(moments: pd.Series) -> np.ndarray:
    # Same flooring as the offline definition: microsecond instants.
    return moments.to_numpy("datetime64[ns]").view(np.int64) // 1000


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


def _nan_row(columns: tuple[str, ...]) -> dict[str, float]:
    return dict.fromkeys(columns, np.nan)


def customer_row_as_of(history: EntityHistory, time_us: int) -> dict[str, float]:
    """The customer's row a transaction at ``time_us`` sees (NaN row: unknown customer)."""
    times, amounts, _ = history.before(time_us)
    return latest_customer_row(times, amounts) if len(times) else _nan_row(CUSTOMER_FEATURES)


def terminal_row_as_of(history: EntityHistory, time_us: int, delay_days: int) -> dict[str, float]:
    """The terminal's row a transaction at ``time_us`` sees (NaN row: unknown terminal)."""
    times, amounts, frauds = history.before(time_us)
    if not len(times):
        return _nan_row(TERMINAL_FEATURES)
    return latest_terminal_row(times, amounts, frauds, delay_days)


def customer_velocity(history: EntityHistory, time_us: int) -> dict[str, float]:
    """The velocity features of a transaction at ``time_us`` from its customer's history."""
    times, amounts, _ = history.arrays()
    columns = velocity_features(
        np.zeros(len(times), np.int64),
        times * 1000,
        amounts,
        np.zeros(1, np.int64),
        np.asarray([time_us * 1000], np.int64),
    )
    return {name: float(values[0]) for name, values in columns.items()}


class OnlineFeatureUpdater:
    """Serves each transaction its exact row and moves the online rows with the traffic."""

    def __init__(
        self,
        store,
        state: LiveState,
        label_delay_days: int,
        policy: EventTimePolicy,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.state = state
        self.label_delay_days = label_delay_days
        self.policy = policy
        self.clock = clock

    def _now_us(self) -> int:
        now = self.clock()
        if now.tzinfo is not None:
            now = now.astimezone(UTC).replace(tzinfo=None)
        return int(pd.Timestamp(now).value // 1000)

    def serve_and_apply(
        self, requests: pd.DataFrame, read_rows: RowReader
    ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray], UpdateOutcome]:
        """Rows and velocity for ``requests`` (aligned); then the online store includes them."""
        customer_ids = requests[CUSTOMER_ID].astype(np.int64).tolist()
        terminal_ids = requests[TERMINAL_ID].astype(np.int64).tolist()
        times_us = _to_us(requests[TX_DATETIME])
        with self.state.session(customer_ids, terminal_ids) as session:
            check_event_times(times_us, session.watermark_us(), self.policy, self._now_us())
            customers = session.customer_histories(customer_ids)
            terminals = session.terminal_histories(terminal_ids)
            applied = session.applied(requests[TRANSACTION_ID].tolist())
            customer_rows, terminal_rows, customer_ts, terminal_ts = read_rows(
                customer_ids, terminal_ids
            )
            velocity = {name: np.zeros(len(requests)) for name in VELOCITY_FEATURES}
            # Plain arrays while fixing rows one by one: a pandas .loc write costs ~100x more.
            customer_values = customer_rows[list(CUSTOMER_FEATURES)].to_numpy(np.float64)
            terminal_values = terminal_rows[list(TERMINAL_FEATURES)].to_numpy(np.float64)
            new, outcome = self._serve(
                requests,
                times_us,
                (customers, terminals),
                applied,
                (customer_values, terminal_values),
                (customer_ts, terminal_ts),
                velocity,
            )
            customer_rows[list(CUSTOMER_FEATURES)] = customer_values
            terminal_rows[list(TERMINAL_FEATURES)] = terminal_values
            if new:
                touched_c = {t.customer_id: customers[t.customer_id] for t in new}
                touched_t = {t.terminal_id: terminals[t.terminal_id] for t in new}
                self._write_rows(
                    touched_c, touched_t, customer_ids, terminal_ids, customer_ts, terminal_ts
                )
                session.append(new)
        return customer_rows, terminal_rows, velocity, outcome

    def _serve(
        self,
        requests: pd.DataFrame,
        times_us: np.ndarray,
        histories: tuple[dict[int, EntityHistory], dict[int, EntityHistory]],
        applied: set[int],
        rows: tuple[np.ndarray, np.ndarray],
        stamps: tuple[np.ndarray, np.ndarray],
        velocity: dict[str, np.ndarray],
    ) -> tuple[list[LiveTransaction], UpdateOutcome]:
        """Fix the rows Feast cannot give and fill ``velocity`` (in place); what to append."""
        customers, terminals = histories
        customer_rows, terminal_rows = rows
        customer_ts, terminal_ts = stamps
        new: list[LiveTransaction] = []
        touched_c: set[int] = set()
        touched_t: set[int] = set()
        duplicates = late = 0
        columns = zip(
            requests[TRANSACTION_ID].tolist(),
            requests[CUSTOMER_ID].tolist(),
            requests[TERMINAL_ID].tolist(),
            requests[TX_AMOUNT].tolist(),
        )
        for i, (tx_id, customer, terminal, amount) in enumerate(columns):
            t = int(times_us[i])
            c_history, t_history = customers[customer], terminals[terminal]
            c_last, t_last = c_history.last_time_us(), t_history.last_time_us()
            if not _feast_row_fits(customer in touched_c, c_last, int(customer_ts[i]), t):
                row = customer_row_as_of(c_history, t)
                customer_rows[i] = [row[c] for c in CUSTOMER_FEATURES]
            if not _feast_row_fits(terminal in touched_t, t_last, int(terminal_ts[i]), t):
                row = terminal_row_as_of(t_history, t, self.label_delay_days)
                terminal_rows[i] = [row[c] for c in TERMINAL_FEATURES]
            for name, values in customer_velocity(c_history, t).items():
                velocity[name][i] = values
            if tx_id in applied:
                duplicates += 1
                continue
            if (c_last is not None and t < c_last) or (t_last is not None and t < t_last):
                late += 1
            tx = LiveTransaction(int(tx_id), t, int(customer), int(terminal), float(amount))
            c_history.insert(tx)
            t_history.insert(tx)
            touched_c.add(customer)
            touched_t.add(terminal)
            applied.add(tx_id)
            new.append(tx)
        return new, UpdateOutcome(len(new), duplicates, late)

    def _write_rows(
        self,
        customers: dict[int, EntityHistory],
        terminals: dict[int, EntityHistory],
        customer_ids: Sequence[int],
        terminal_ids: Sequence[int],
        customer_ts: np.ndarray,
        terminal_ts: np.ndarray,
    ) -> None:
        """Each touched entity's latest row into Feast's online store."""
        stored_c = dict(zip(customer_ids, customer_ts.tolist()))
        stored_t = dict(zip(terminal_ids, terminal_ts.tolist()))
        delay = self.label_delay_days
        self.store.write_to_online_store(
            CUSTOMER_VIEW,
            _rows_frame(
                CUSTOMER_ID,
                {i: latest_customer_row(*h.arrays()[:2]) for i, h in customers.items()},
                {i: _row_stamp(h, stored_c.get(i, -1)) for i, h in customers.items()},
                CUSTOMER_TX_COUNT,
            ),
        )
        self.store.write_to_online_store(
            TERMINAL_VIEW,
            _rows_frame(
                TERMINAL_ID,
                {i: latest_terminal_row(*h.arrays(), delay) for i, h in terminals.items()},
                {i: _row_stamp(h, stored_t.get(i, -1)) for i, h in terminals.items()},
                TERMINAL_TX_COUNT,
            ),
        )


def _feast_row_fits(touched: bool, last_us: int | None, stamp_us: int, time_us: int) -> bool:
    """Whether the row Feast holds is the one a transaction at ``time_us`` must see.

    It is when it already includes the entity's newest transaction (its stamp is past it --
    a store materialised short of the state, or restored from elsewhere, is not) and the
    transaction comes after that one; an entity touched earlier in the batch has moved on.
    """
    if touched:
        return False
    if last_us is None:  # nothing retained: Feast's row (or none) is all there is
        return True
    return stamp_us > last_us and time_us > last_us


def _row_stamp(history: EntityHistory, stored_us: int) -> int:
    """The row's ``event_timestamp`` in µs: just after its last transaction, as offline.

    A row rewritten at the same instant (a late transaction, a second one at that instant)
    gets 1 µs more than the stored one: Feast's Redis store skips a write that is not newer.
    """
    natural = int(history.last_time_us()) + 1  # type: ignore[arg-type]
    return natural if natural > stored_us else stored_us + 1


def _rows_frame(
    key: str,
    rows: dict[int, dict[str, float]],
    stamps: dict[int, int],
    counts: tuple[str, ...],
) -> pd.DataFrame:
    ids = list(rows)
    columns: dict[str, np.ndarray] = {
        key: np.asarray(ids, np.int64),
        EVENT_TIMESTAMP: np.asarray([stamps[i] for i in ids], np.int64).astype("datetime64[us]"),
    }
    for column in next(iter(rows.values())):
        values = np.asarray([rows[i][column] for i in ids], np.float64)
        columns[column] = values.astype(np.int64) if column in counts else values
    return pd.DataFrame(columns)  # one construction: inserting column by column costs ~10x
