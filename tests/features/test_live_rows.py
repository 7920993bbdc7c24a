"""The live path's one-row definitions give the rows of the offline definition."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from data.schema import CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT, TX_DATETIME, TX_FRAUD
from features.definitions import (
    CUSTOMER_FEATURES,
    TERMINAL_FEATURES,
    VELOCITY_FEATURES,
    compute_entity_features,
    velocity_features,
)
from features.live_rows import (
    customer_row_at,
    customer_velocity_at,
    last_instant_before,
    terminal_row_at,
)
from features.online_state import DAY_US
from fraudops.config import FeaturizeParams

MINUTE_US = 60 * 10**6

# Instants on a minute grid over 40 days: ties, window edges (exactly 1, 7 or 30 days
# apart) and the label delay's edge all occur; amounts with cents, labels 0/1.
histories = st.lists(
    st.tuples(
        st.integers(0, 40 * 1440).map(lambda m: m * MINUTE_US),
        st.integers(1, 500_000).map(lambda c: c / 100),
        st.integers(0, 1),
    ),
    min_size=1,
    max_size=80,
).map(sorted)


def _same(live: list[float], reference: np.ndarray) -> bool:
    live_row = np.asarray(live, np.float64)
    both_nan = np.isnan(live_row) & np.isnan(reference)
    return bool((np.isclose(live_row, reference, rtol=1e-12, atol=1e-9) | both_nan).all())


def _offline_rows(history, delay_days: int) -> tuple[list[int], np.ndarray, np.ndarray]:
    """The offline tables of one customer and one terminal: (instants, customer, terminal)."""
    transactions = pd.DataFrame(
        {
            TX_DATETIME: pd.to_datetime([t for t, _, _ in history], unit="us"),
            CUSTOMER_ID: 1,
            TERMINAL_ID: 2,
            TX_AMOUNT: [a for _, a, _ in history],
            TX_FRAUD: [f for _, _, f in history],
        }
    )
    customer, terminal = compute_entity_features(
        transactions, FeaturizeParams(label_delay_days=delay_days)
    )
    instants = sorted({t for t, _, _ in history})  # one row per distinct instant, in order
    return (
        instants,
        customer[list(CUSTOMER_FEATURES)].to_numpy(np.float64),
        terminal[list(TERMINAL_FEATURES)].to_numpy(np.float64),
    )


@settings(max_examples=150, deadline=None)
@given(history=histories, delay_days=st.integers(0, 10))
def test_every_row_equals_the_offline_definition(history, delay_days: int) -> None:
    time_us = [t for t, _, _ in history]
    amount = [a for _, a, _ in history]
    fraud = [f for _, _, f in history]
    instants, customer, terminal = _offline_rows(history, delay_days)
    assert len(instants) == len(customer) == len(terminal)
    for k, instant in enumerate(instants):
        assert _same(customer_row_at(time_us, amount, instant), customer[k]), (k, instant)
        assert _same(terminal_row_at(time_us, fraud, instant, delay_days), terminal[k]), k


@settings(max_examples=150, deadline=None)
@given(history=histories, probes=st.lists(st.integers(0, 41 * 1440), min_size=1, max_size=10))
def test_velocity_and_the_row_a_transaction_sees_equal_the_reference(history, probes) -> None:
    time_us = [t for t, _, _ in history]
    amount = [a for _, a, _ in history]
    instants = sorted(set(time_us))
    for minute in probes:
        when = minute * MINUTE_US
        # The row a transaction at `when` sees: the last instant strictly before it.
        earlier = [t for t in instants if t < when]
        assert last_instant_before(time_us, when) == (earlier[-1] if earlier else None)
        reference = velocity_features(
            np.zeros(len(time_us)),
            np.asarray(time_us) * 1000,
            np.asarray(amount),
            np.zeros(1),
            np.asarray([when * 1000]),
        )
        live = customer_velocity_at(time_us, amount, when)
        assert set(live) == set(VELOCITY_FEATURES)
        for name in VELOCITY_FEATURES:
            assert np.isclose(live[name], reference[name][0], rtol=1e-12, atol=1e-9), name


def test_a_window_holds_its_upper_edge_and_not_its_lower_one() -> None:
    # Transactions exactly 1 and 7 days before the row's instant: (s - w, s] keeps neither
    # the 1-day one in the 1-day window nor the 7-day one in the 7-day window.
    s = 30 * DAY_US
    time_us = [s - 7 * DAY_US, s - DAY_US, s]
    amount = [70.0, 10.0, 20.0]
    row = customer_row_at(time_us, amount, s)
    assert row[:3] == [1.0, 2.0, 3.0]  # counts over 1, 7, 30 days
    assert row[3:] == [20.0, 15.0, 100.0 / 3]
