"""The serving connection's history cache is exact: what it hands out is what a fresh read gives.

Two states on one file stand for two processes (a second replica, the label consumer); a
third, opened afresh for every check, is the truth (its first read goes to the database).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.online_state import DAY_US, LabelEvent, LiveTransaction
from features.online_state_sqlite import SqliteLiveState

CUSTOMERS = TERMINALS = range(3)
HORIZON_DAYS = 1  # keeps two days: the drawn instants span six, so updates prune


class Rollback(Exception):
    """Raised inside an update to abandon it."""


def _state(path: Path) -> SqliteLiveState:
    return SqliteLiveState(path, "cache_test", HORIZON_DAYS)


def _histories(state: SqliteLiveState) -> dict:
    """Every entity's history, as the state's session hands it out."""
    with state.session(list(CUSTOMERS), list(TERMINALS)) as session:
        customers = session.customer_histories(list(CUSTOMERS))
        terminals = session.terminal_histories(list(TERMINALS))
    return {"customers": customers, "terminals": terminals}


def _update(state: SqliteLiveState, batch: list[LiveTransaction], rollback: bool) -> None:
    """One serving pass: read the touched histories, append, maybe abandon."""
    customers = [t.customer_id for t in batch]
    terminals = [t.terminal_id for t in batch]
    with state.session(customers, terminals) as session:
        session.customer_histories(customers)
        session.terminal_histories(terminals)
        session.watermark_us()
        session.append(batch)
        if rollback:
            raise Rollback


transactions = st.builds(
    LiveTransaction,
    transaction_id=st.integers(0, 40),  # repeats: a replayed transaction is ignored
    time_us=st.integers(0, 12).map(lambda half_days: half_days * DAY_US // 2),  # ties too
    customer_id=st.sampled_from(CUSTOMERS),
    terminal_id=st.sampled_from(TERMINALS),
    amount=st.floats(0, 1_000, allow_nan=False),
)
steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("append"),
            st.sampled_from("AB"),
            st.lists(transactions, min_size=1, max_size=5, unique_by=lambda t: t.transaction_id),
            st.booleans(),
        ),
        st.tuples(
            st.just("label"),
            st.sampled_from("AB"),
            st.lists(st.tuples(st.integers(0, 40), st.sampled_from(TERMINALS)), max_size=3),
            st.just(False),
        ),
    ),
    max_size=12,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=steps)
def test_cached_reads_equal_fresh_reads_through_appends_labels_prunes_and_rollbacks(
    tmp_path_factory: pytest.TempPathFactory, steps
) -> None:
    path = tmp_path_factory.mktemp("cache") / "live_state.db"
    serving, other = _state(path), _state(path)
    for kind, by, payload, rollback in steps:
        state = serving if by == "A" else other
        if kind == "append":
            try:
                _update(state, payload, rollback)
            except Rollback:
                pass  # abandoned on purpose: nothing of it may show
        else:
            state.apply_labels([LabelEvent(tx, terminal, 1) for tx, terminal in payload])
        assert _histories(serving) == _histories(_state(path))
    serving.close()
    other.close()


def _history_reads(connection: sqlite3.Connection) -> list[str]:
    reads: list[str] = []
    connection.set_trace_callback(lambda sql: reads.append(sql) if "live_tx t" in sql else None)
    return reads


def test_a_busy_entity_is_read_from_the_database_once(tmp_path: Path) -> None:
    state = _state(tmp_path / "live_state.db")
    _update(state, [LiveTransaction(1, 0, 0, 0, 10.0)], rollback=False)
    reads = _history_reads(state._connection())
    for tx in range(2, 6):
        _update(state, [LiveTransaction(tx, tx * 10**6, 0, 0, 10.0)], rollback=False)
    assert reads == []  # every pass after the first found both histories cached
    assert _histories(state)["customers"][0].transaction_ids == [1, 2, 3, 4, 5]


def test_another_connections_commit_empties_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "live_state.db"
    serving, replica = _state(path), _state(path)
    _update(serving, [LiveTransaction(1, 0, 0, 0, 10.0)], rollback=False)
    _update(replica, [LiveTransaction(2, 10**6, 0, 0, 20.0)], rollback=False)
    reads = _history_reads(serving._connection())
    assert _histories(serving)["customers"][0].transaction_ids == [1, 2]
    assert reads  # re-read, not served from the stale copy


def test_an_abandoned_update_leaves_the_cache_as_it_was(tmp_path: Path) -> None:
    state = _state(tmp_path / "live_state.db")
    _update(state, [LiveTransaction(1, 0, 0, 0, 10.0)], rollback=False)
    with pytest.raises(Rollback):
        _update(state, [LiveTransaction(2, 10**6, 0, 0, 20.0)], rollback=True)
    assert _histories(state)["terminals"][0].transaction_ids == [1]
