"""The transformer's memory of scored rows: what an explanation of a scored transaction uses."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from features.definitions import FEATURE_NAMES
from serving.feature_batch import FeatureBatch
from serving.served_rows import ServedRows


def _transaction(transaction_id: int, amount: float = 10.0) -> dict:
    return {
        "transaction_id": transaction_id,
        "tx_datetime": "2026-04-01T10:00:00",
        "customer_id": transaction_id % 7,
        "terminal_id": transaction_id % 11,
        "tx_amount": amount,
    }


def _batch(ids: list[int], amount: float = 10.0) -> FeatureBatch:
    values = np.array([[i + k / 100 for k in range(len(FEATURE_NAMES))] for i in ids], float)
    values[:, 3] = np.nan  # a missing feature stays missing
    return FeatureBatch(
        [_transaction(i, amount) for i in ids],
        values,
        np.array([i % 2 == 0 for i in ids]),
        np.array([i % 3 == 0 for i in ids]),
    )


@given(
    st.lists(st.integers(0, 10_000), min_size=1, max_size=30, unique=True),
    st.data(),
)
def test_recalled_rows_are_the_rows_scored_in_the_asked_order(ids: list[int], data) -> None:
    rows = ServedRows(capacity=1_000)
    rows.remember(_batch(ids))
    asked = data.draw(st.permutations(ids))
    recalled = rows.recall([_transaction(i) for i in asked])
    expected = _batch(list(asked))
    assert recalled is not None
    np.testing.assert_array_equal(recalled.values, expected.values)  # NaN where NaN
    assert recalled.unknown_customer.tolist() == expected.unknown_customer.tolist()
    assert recalled.unknown_terminal.tolist() == expected.unknown_terminal.tolist()
    assert recalled.transactions == expected.transactions


def test_a_batch_with_one_unscored_transaction_is_not_recalled() -> None:
    rows = ServedRows(capacity=10)
    rows.remember(_batch([1, 2]))
    assert rows.recall([_transaction(1), _transaction(3)]) is None
    assert rows.recall([]) is None


def test_the_same_id_with_another_amount_is_another_transaction() -> None:
    rows = ServedRows(capacity=10)
    rows.remember(_batch([1], amount=10.0))
    assert rows.recall([_transaction(1, amount=10.5)]) is None
    assert rows.recall([_transaction(1, amount=10.0)]) is not None


def test_the_least_recently_scored_rows_are_forgotten_first() -> None:
    rows = ServedRows(capacity=3)
    rows.remember(_batch([1, 2, 3]))
    rows.remember(_batch([1]))  # scored again: the most recent now
    rows.remember(_batch([4]))
    assert len(rows) == 3
    assert rows.recall([_transaction(2)]) is None
    assert all(rows.recall([_transaction(i)]) is not None for i in (1, 3, 4))


def test_a_rescored_transaction_keeps_its_latest_rows_and_a_copy_of_them() -> None:
    rows = ServedRows(capacity=10)
    first = _batch([5])
    rows.remember(first)
    first.values[0, 0] = -1.0  # the scored batch's array changing later changes nothing kept
    again = _batch([5])
    again.values[0, 1] = 42.0
    rows.remember(again)
    recalled = rows.recall([_transaction(5)])
    assert recalled is not None
    assert recalled.values[0, 0] == 5.0 and recalled.values[0, 1] == 42.0


def test_capacity_zero_keeps_nothing() -> None:
    rows = ServedRows(capacity=0)
    rows.remember(_batch([1, 2]))
    assert len(rows) == 0 and rows.recall([_transaction(1)]) is None
