"""The feature definition: contract names, no leakage, one code path for batch and one row."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from data.schema import TRANSACTION_COLUMNS
from features.definitions import (
    CUSTOMER_FEATURES,
    EVENT_TIMESTAMP,
    FEATURE_NAMES,
    FLAG_COLUMNS,
    TERMINAL_FEATURES,
    assemble_features,
    build_training_set,
    compute_entity_features,
    velocity_features,
)
from fraudops.config import FeaturizeParams
from tests.features.conftest import random_transactions, transactions_from

DELAY_7 = FeaturizeParams(label_delay_days=7)
AGGREGATES = list(CUSTOMER_FEATURES + TERMINAL_FEATURES)
OUTPUT = list(FEATURE_NAMES + FLAG_COLUMNS)


def training_set(transactions: pd.DataFrame, params: FeaturizeParams = DELAY_7) -> pd.DataFrame:
    customer, terminal = compute_entity_features(transactions, params)
    return build_training_set(transactions, customer, terminal)


def reference_features(transactions: pd.DataFrame, delay_days: int) -> pd.DataFrame:
    """The written semantics, one transaction at a time with plain loops (slow, obvious)."""
    day = pd.Timedelta(days=1)
    delay = pd.Timedelta(days=delay_days)
    rows = []
    for tx in transactions.itertuples():
        t = tx.tx_datetime
        row: dict[str, float] = {}
        mine = transactions[
            (transactions.customer_id == tx.customer_id) & (transactions.tx_datetime < t)
        ]
        for name, length in (("10m", pd.Timedelta(minutes=10)), ("1h", pd.Timedelta(hours=1))):
            recent = mine[mine.tx_datetime >= t - length]
            row[f"customer_tx_count_{name}"] = float(len(recent))
            row[f"customer_amount_{name}"] = float(recent.tx_amount.sum())
        for w in (1, 7, 30):
            if mine.empty:
                row[f"customer_tx_count_{w}d"], row[f"customer_mean_amount_{w}d"] = 0.0, np.nan
                continue
            s = mine.tx_datetime.max()
            window = mine[mine.tx_datetime > s - w * day]
            row[f"customer_tx_count_{w}d"] = float(len(window))
            row[f"customer_mean_amount_{w}d"] = window.tx_amount.mean()
        at_terminal = transactions[
            (transactions.terminal_id == tx.terminal_id) & (transactions.tx_datetime < t)
        ]
        for w in (1, 7, 30):
            if at_terminal.empty:
                row[f"terminal_tx_count_{w}d"], row[f"terminal_risk_{w}d"] = 0.0, np.nan
                continue
            s = at_terminal.tx_datetime.max()
            row[f"terminal_tx_count_{w}d"] = float((at_terminal.tx_datetime > s - w * day).sum())
            known = at_terminal[
                (at_terminal.tx_datetime > s - delay - w * day)
                & (at_terminal.tx_datetime <= s - delay)
            ]
            row[f"terminal_risk_{w}d"] = known.tx_fraud.mean() if len(known) else np.nan
        row["unknown_customer"] = mine.empty
        row["unknown_terminal"] = at_terminal.empty
        rows.append(row)
    return pd.DataFrame(rows, index=transactions.index)


def test_feature_names_are_the_contract_in_model_order() -> None:
    assert FEATURE_NAMES == (
        "tx_amount",
        "tx_during_weekend",
        "tx_during_night",
        "customer_amount_ratio_30d",
        "customer_tx_count_10m",
        "customer_tx_count_1h",
        "customer_amount_10m",
        "customer_amount_1h",
        "customer_tx_count_1d",
        "customer_tx_count_7d",
        "customer_tx_count_30d",
        "customer_mean_amount_1d",
        "customer_mean_amount_7d",
        "customer_mean_amount_30d",
        "terminal_tx_count_1d",
        "terminal_tx_count_7d",
        "terminal_tx_count_30d",
        "terminal_risk_1d",
        "terminal_risk_7d",
        "terminal_risk_30d",
    )
    assert FLAG_COLUMNS == ("unknown_customer", "unknown_terminal")


def test_terminal_risk_sees_a_fraud_only_once_its_label_has_arrived() -> None:
    # Terminal 100: fraud 10 days before the request. Terminal 200: fraud 2 days before.
    history = transactions_from(
        [
            (0.5, 1, 100, 50.0, 1),
            (9.5, 2, 100, 50.0, 0),
            (1.5, 3, 200, 50.0, 0),
            (8.5, 4, 200, 50.0, 1),
            (9.5, 5, 200, 50.0, 0),
            (10.5, 6, 100, 50.0, 0),  # request on terminal 100
            (10.5, 7, 200, 50.0, 0),  # request on terminal 200
        ]
    )
    result = training_set(history)
    old_fraud, recent_fraud = result.iloc[5], result.iloc[6]

    # 10 days ago, label known after 7: in the 7- and 30-day risk (its only labelled tx).
    assert old_fraud["terminal_risk_7d"] == 1.0
    assert old_fraud["terminal_risk_30d"] == 1.0
    assert np.isnan(old_fraud["terminal_risk_1d"])  # nothing labelled 8..9 days back
    # 2 days ago: the label is not known yet; only the genuine day-1.5 transaction counts.
    assert recent_fraud["terminal_risk_7d"] == 0.0
    assert recent_fraud["terminal_risk_30d"] == 0.0
    # ...but the transaction itself is visible as volume (day 8.5 and 9.5: no label needed).
    assert recent_fraud["terminal_tx_count_7d"] == 2.0

    # With no label delay the same 2-day-old fraud does raise the risk: the delay hides it.
    no_delay = training_set(history, FeaturizeParams(label_delay_days=0)).iloc[6]
    assert no_delay["terminal_risk_7d"] == 0.5


def test_customer_aggregates_use_only_strictly_earlier_transactions() -> None:
    history = transactions_from(
        [
            (0.0, 1, 10, 10.0, 0),
            (5.0, 1, 11, 20.0, 0),
            (5.0 + 1 / 24, 1, 12, 1000.0, 0),  # the request: a big amount an hour later
            (6.0, 1, 13, 30.0, 0),
        ]
    )
    result = training_set(history)
    request = result.iloc[2]
    assert request["customer_tx_count_30d"] == 2.0  # not 3: its own transaction is not counted
    assert request["customer_mean_amount_30d"] == 15.0  # 1000 never enters its own mean
    assert request["customer_tx_count_1d"] == 1.0
    assert request["customer_mean_amount_1d"] == 20.0
    assert request["customer_amount_ratio_30d"] == pytest.approx(1000.0 / 15.0)
    # The next transaction sees the request (as of the request's time: all three within 30d).
    assert result.iloc[3]["customer_tx_count_30d"] == 3.0
    assert result.iloc[3]["customer_mean_amount_30d"] == pytest.approx(1030.0 / 3)

    # Its own amount and label never change its aggregates.
    changed = history.copy()
    changed.loc[2, ["tx_amount", "tx_fraud"]] = [5.0, 1]
    again = training_set(changed).iloc[2]
    assert again[AGGREGATES].equals(request[AGGREGATES])


def test_transactions_at_the_same_instant_do_not_see_each_other() -> None:
    history = transactions_from(
        [(0.0, 1, 10, 10.0, 0), (1.0, 1, 11, 20.0, 0), (1.0, 1, 12, 40.0, 0), (1.5, 1, 13, 5.0, 0)]
    )
    result = training_set(history)
    assert list(result["customer_tx_count_7d"]) == [0.0, 1.0, 1.0, 3.0]
    assert result.iloc[3]["customer_mean_amount_7d"] == pytest.approx(70.0 / 3)
    customer, _ = compute_entity_features(history, DELAY_7)
    assert not customer.duplicated(["customer_id", EVENT_TIMESTAMP]).any()


def test_first_transaction_is_unknown_with_zero_counts_and_missing_means() -> None:
    result = training_set(transactions_from([(0.2, 1, 10, 80.0, 1)])).iloc[0]
    assert bool(result["unknown_customer"]) and bool(result["unknown_terminal"])
    counts = [c for c in AGGREGATES if "_count_" in c]
    assert (result[counts] == 0.0).all()
    missing = [c for c in AGGREGATES if "_count_" not in c] + ["customer_amount_ratio_30d"]
    assert result[missing].isna().all()
    assert result["tx_amount"] == 80.0


def test_offline_rows_become_visible_one_microsecond_after_their_transaction() -> None:
    history = transactions_from([(0.0, 1, 10, 10.0, 0), (2.0, 1, 10, 10.0, 0)])
    customer, terminal = compute_entity_features(history, DELAY_7)
    expected = history["tx_datetime"] + pd.Timedelta(microseconds=1)
    assert list(customer[EVENT_TIMESTAMP]) == list(expected)
    assert list(terminal[EVENT_TIMESTAMP]) == list(expected)
    assert list(customer.columns) == ["customer_id", EVENT_TIMESTAMP, *CUSTOMER_FEATURES]
    assert list(terminal.columns) == ["terminal_id", EVENT_TIMESTAMP, *TERMINAL_FEATURES]


@pytest.mark.parametrize("delay", [0, 7])
def test_vectorised_features_equal_the_reference_loops(delay: int) -> None:
    history = random_transactions(400, n_customers=12, n_terminals=8, days=50, seed=delay)
    expected = reference_features(history, delay)
    result = training_set(history, FeaturizeParams(label_delay_days=delay))
    pd.testing.assert_frame_equal(
        result[expected.columns].astype(float), expected.astype(float), check_exact=False
    )
    assert result["unknown_customer"].sum() == 12  # each customer's first transaction
    assert result[AGGREGATES].notna().any().all()  # every feature is exercised


def test_features_never_change_when_the_future_changes(small_history: pd.DataFrame) -> None:
    history = small_history
    cut = history["tx_datetime"].quantile(0.6)
    full = training_set(history)

    # Transactions after the cut (amounts, labels, their very existence) are invisible.
    past_only = training_set(history[history["tx_datetime"] < cut])
    pd.testing.assert_frame_equal(full.loc[past_only.index], past_only)

    # Labels that would arrive after the cut are invisible to every transaction up to it.
    relabelled = history.copy()
    late = relabelled["tx_datetime"] > cut - pd.Timedelta(days=DELAY_7.label_delay_days)
    relabelled.loc[late, "tx_fraud"] = 1 - relabelled.loc[late, "tx_fraud"]
    up_to_cut = history["tx_datetime"] <= cut
    changed = training_set(relabelled)
    pd.testing.assert_frame_equal(changed.loc[up_to_cut, OUTPUT], full.loc[up_to_cut, OUTPUT])
    assert not changed["terminal_risk_30d"].equals(full["terminal_risk_30d"])  # labels do matter


def test_one_request_and_the_batch_share_one_code_path(small_history: pd.DataFrame) -> None:
    customer, terminal = compute_entity_features(small_history, DELAY_7)
    batch = build_training_set(small_history, customer, terminal)
    some = [0, 1, 250, 500, len(small_history) - 1]
    for i in some:
        request = small_history.iloc[[i]]
        (row,) = batch.iloc[[i]].itertuples(index=False)
        t = request["tx_datetime"].iloc[0]
        # The serving path: the entity's latest row visible at t, else an all-NaN row.
        c = customer[(customer.customer_id == row.customer_id) & (customer[EVENT_TIMESTAMP] <= t)]
        k = terminal[(terminal.terminal_id == row.terminal_id) & (terminal[EVENT_TIMESTAMP] <= t)]
        c_row = c.tail(1) if len(c) else pd.DataFrame([{n: np.nan for n in CUSTOMER_FEATURES}])
        k_row = k.tail(1) if len(k) else pd.DataFrame([{n: np.nan for n in TERMINAL_FEATURES}])
        # Velocity from the customer's own transactions, as the live state holds them.
        mine = small_history[small_history.customer_id == row.customer_id]
        velocity = velocity_features(
            mine["customer_id"].to_numpy(),
            mine["tx_datetime"].to_numpy("datetime64[ns]").view(np.int64),
            mine["tx_amount"].to_numpy(),
            np.asarray([row.customer_id]),
            np.asarray([t.value]),
        )
        one = assemble_features(request, c_row, k_row, velocity)
        pd.testing.assert_frame_equal(one, batch.iloc[[i]][OUTPUT])


def test_assemble_features_flags_unknown_entities_and_reads_utc_time() -> None:
    requests = pd.DataFrame(
        {
            # Friday 2026-01-02 23:30 in New York is Saturday 04:30 UTC: weekend and night.
            "tx_datetime": pd.to_datetime(["2026-01-02 23:30"]).tz_localize("America/New_York"),
            "tx_amount": [120.0],
        },
        index=[42],
    )
    customer_rows = pd.DataFrame([{n: np.nan for n in CUSTOMER_FEATURES}])
    terminal_rows = pd.DataFrame(
        [
            {
                **{n: 3 for n in TERMINAL_FEATURES if "count" in n},
                **{n: np.nan for n in TERMINAL_FEATURES if "risk" in n},
            }
        ]
    )
    out = assemble_features(requests, customer_rows, terminal_rows)
    assert list(out.columns) == OUTPUT
    assert list(out.index) == [42]
    row = out.loc[42]
    assert row["tx_during_weekend"] == 1.0 and row["tx_during_night"] == 1.0
    assert bool(row["unknown_customer"]) and not bool(row["unknown_terminal"])
    assert row["customer_tx_count_30d"] == 0.0 and np.isnan(row["customer_mean_amount_30d"])
    assert np.isnan(row["customer_amount_ratio_30d"])
    assert row["terminal_tx_count_7d"] == 3.0 and np.isnan(row["terminal_risk_7d"])
    assert (out[list(FEATURE_NAMES)].dtypes == np.float64).all()


def test_a_zero_mean_gives_a_missing_ratio_not_infinity() -> None:
    history = transactions_from([(0.0, 1, 10, 0.0, 0), (1.0, 1, 10, 25.0, 0)])
    assert np.isnan(training_set(history).iloc[1]["customer_amount_ratio_30d"])


def test_a_ratio_beyond_float32_is_missing_as_the_model_could_not_read_it() -> None:
    # A mean of sub-cent amounts makes the ratio finite in float64 but infinite in float32.
    history = transactions_from([(0.0, 1, 10, 1e-200, 0), (1.0, 1, 10, 25.0, 0)])
    ratio = training_set(history)["customer_amount_ratio_30d"]
    assert np.isnan(ratio.iloc[1])
    ordinary = transactions_from([(0.0, 1, 10, 10.0, 0), (1.0, 1, 10, 25.0, 0)])
    assert training_set(ordinary)["customer_amount_ratio_30d"].iloc[1] == pytest.approx(2.5)


def test_bad_inputs_name_the_column_or_key() -> None:
    history = transactions_from([(0.0, 1, 10, 10.0, 0)])
    with pytest.raises(ValueError, match="tx_fraud: required column missing from transactions"):
        compute_entity_features(history.drop(columns="tx_fraud"), DELAY_7)
    with pytest.raises(ValueError, match=r"featurize.windows_days: must be \[1, 7, 30\]"):
        compute_entity_features(history, FeaturizeParams(windows_days=(1, 14)))
    with pytest.raises(ValueError, match="customer_rows: must have one row per request"):
        assemble_features(history, pd.DataFrame(columns=list(CUSTOMER_FEATURES)), history)
    nan_customer = pd.DataFrame([{n: np.nan for n in CUSTOMER_FEATURES}])
    with pytest.raises(ValueError, match="terminal_tx_count_7d: required column missing"):
        assemble_features(history, nan_customer, pd.DataFrame([{"terminal_tx_count_1d": 1}]))
    assert set(TRANSACTION_COLUMNS) <= set(training_set(history).columns)


def test_a_large_history_featurizes_in_seconds() -> None:
    history = random_transactions(200_000, n_customers=2000, n_terminals=4000, days=90, seed=5)
    started = time.perf_counter()
    result = training_set(history)
    elapsed = time.perf_counter() - started
    assert len(result) == len(history)
    # ~1 s on a laptop core; the bound only catches an accidental quadratic step.
    assert elapsed < 30, f"200k transactions took {elapsed:.1f}s"


def test_velocity_counts_a_burst_up_to_but_not_including_the_transaction() -> None:
    minute = 1 / 1440
    # A card-testing burst: five small payments a minute apart, then one 2 hours later.
    burst = [(1.0 + i * minute, 1, 10 + i, 1.0 + i, 1) for i in range(5)]
    history = transactions_from([(0.5, 1, 9, 50.0, 0), *burst, (1.0 + 120 * minute, 1, 20, 9.0, 0)])
    result = training_set(history)
    assert list(result["customer_tx_count_10m"]) == [0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 0.0]
    assert list(result["customer_amount_10m"]) == [0.0, 0.0, 1.0, 3.0, 6.0, 10.0, 0.0]
    # The payment two hours later sees none of the burst in its last hour (request time).
    assert result.iloc[-1]["customer_tx_count_1h"] == 0.0
    assert result.iloc[-1]["customer_tx_count_1d"] == 6.0  # the row of the last burst payment


@pytest.mark.parametrize("seed", range(5))
def test_one_entity_shortcut_equals_the_many_entity_search_bit_for_bit(seed: int) -> None:
    """The live path's histories are one entity's: its timeline and velocity search the
    times alone. The same entity among others (the batch path's composite search) gives
    identical floats -- placed first, so its running sums start from the same zero."""
    from features.definitions import _customer_columns, _terminal_columns
    from features.timeline import EntityTimeline

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    # Whole-minute instants over 40 days: ties (one row per instant) and window edges occur.
    time_ns = rng.integers(0, 40 * 1440, n).astype(np.int64) * 60 * 10**9
    amount, fraud = rng.gamma(2.0, 40.0, n), (rng.random(n) < 0.2).astype(np.float64)
    other = rng.integers(0, 40 * 1440, 30).astype(np.int64) * 60 * 10**9
    values = {"n": np.ones(n), "amount": amount, "fraud": fraud}
    alone = EntityTimeline(np.zeros(n, np.int64), time_ns, values)
    mixed = EntityTimeline(
        np.r_[np.full(n, 7), np.full(30, 9)].astype(np.int64),
        np.r_[time_ns, other],
        {k: np.r_[v, np.ones(30) if k == "n" else rng.random(30)] for k, v in values.items()},
    )
    mine = mixed.entity == 7
    for one_entity, many in (
        (_customer_columns(alone), _customer_columns(mixed)),
        (_terminal_columns(alone, 7), _terminal_columns(mixed, 7)),
    ):
        for name, column in one_entity.items():
            np.testing.assert_array_equal(column, many[name][mine], err_msg=name)
    queries = np.sort(rng.integers(0, 41 * 1440, 20)).astype(np.int64) * 60 * 10**9
    one = velocity_features(np.zeros(n), time_ns, amount, np.zeros(20), queries)
    many = velocity_features(
        np.r_[np.full(n, 7), np.full(30, 9)],
        np.r_[time_ns, other],
        np.r_[amount, rng.gamma(2.0, 40.0, 30)],
        np.full(20, 7),
        queries,
    )
    for name, column in one.items():
        np.testing.assert_array_equal(column, many[name], err_msg=name)
