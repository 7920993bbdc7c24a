"""The simulator: handbook scenarios, determinism, drift scenarios and live traffic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data.scenarios import (
    CUSTOMER_COMPROMISE_DAYS,
    FRAUD_AMOUNT_THRESHOLD,
    NIGHT_END_S,
    TERMINAL_COMPROMISE_DAYS,
)
from data.schema import TRANSACTION_COLUMNS, TRANSACTION_DTYPES
from data.simulate import (
    compromised_on,
    generate_customer_profiles,
    generate_terminal_profiles,
    simulate_next_days,
    simulate_transactions,
)
from fraudops.config import SimulateParams

# Small enough for milliseconds, big enough that every scenario shows up (2 compromised
# terminals a day among 2000 keeps the fraud rate at a few percent).
SMALL = SimulateParams(seed=7, n_customers=500, n_terminals=2000, n_days=40, radius=5.0)
LIVE_DAYS = 7


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    return simulate_transactions(SMALL)


@pytest.fixture(scope="module")
def live(history: pd.DataFrame) -> pd.DataFrame:
    return simulate_next_days(history, LIVE_DAYS, SMALL, drift="none")


def day_index(df: pd.DataFrame, params: SimulateParams = SMALL) -> np.ndarray:
    return (df["tx_datetime"].dt.normalize() - pd.Timestamp(params.start_date)).dt.days.to_numpy()


def night_share(df: pd.DataFrame) -> float:
    return float((df["tx_datetime"].dt.hour < NIGHT_END_S // 3600).mean())


# --------------------------------------------------------------------------- basics


def test_same_seed_same_frame_other_seed_other_frame(history: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(simulate_transactions(SMALL), history)
    other = simulate_transactions(SMALL.model_copy(update={"seed": 8}))
    assert not other.equals(history)


def test_progress_bar_does_not_change_the_data(history: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(simulate_transactions(SMALL, progress=True), history)


def test_schema_columns_dtypes_order_and_ids(history: pd.DataFrame) -> None:
    assert tuple(history.columns) == TRANSACTION_COLUMNS
    assert {c: str(t) for c, t in history.dtypes.items()} == TRANSACTION_DTYPES
    assert history["tx_datetime"].is_monotonic_increasing
    np.testing.assert_array_equal(history["transaction_id"], np.arange(len(history)))
    days = day_index(history)
    assert days.min() == 0 and days.max() == SMALL.n_days - 1
    assert (history["tx_amount"] >= 0).all()
    assert history["customer_id"].between(0, SMALL.n_customers - 1).all()
    assert history["terminal_id"].between(0, SMALL.n_terminals - 1).all()


def test_volume_matches_the_poisson_rates(history: pd.DataFrame) -> None:
    # mean_nb_tx_per_day ~ U(0, 4): about 2 a day per customer, ~3% of times fall outside
    # the day and a few customers have no terminal in reach.
    per_customer_day = len(history) / (SMALL.n_customers * SMALL.n_days)
    assert 1.6 < per_customer_day < 2.1


def test_customers_only_use_terminals_within_the_radius(history: pd.DataFrame) -> None:
    customers = generate_customer_profiles(SMALL.n_customers, SMALL.seed).set_index("customer_id")
    terminals = generate_terminal_profiles(SMALL.n_terminals, SMALL.seed).set_index("terminal_id")
    c = customers.loc[history["customer_id"]]
    t = terminals.loc[history["terminal_id"]]
    distance = np.hypot(
        c["x_customer"].to_numpy() - t["x_terminal"].to_numpy(),
        c["y_customer"].to_numpy() - t["y_terminal"].to_numpy(),
    )
    assert distance.max() < SMALL.radius


# --------------------------------------------------------------------------- fraud scenarios


def test_scenario_ids_agree_with_the_fraud_label(history: pd.DataFrame) -> None:
    assert set(history["tx_fraud_scenario"].unique()) == {0, 1, 2, 3}
    np.testing.assert_array_equal(history["tx_fraud"], history["tx_fraud_scenario"] > 0)


def test_scenario_1_every_amount_over_220_is_fraud(history: pd.DataFrame) -> None:
    big = history["tx_amount"] > FRAUD_AMOUNT_THRESHOLD
    assert big.sum() > 0
    assert (history.loc[big, "tx_fraud"] == 1).all()
    s1 = history["tx_fraud_scenario"] == 1
    assert (history.loc[s1, "tx_amount"] > FRAUD_AMOUNT_THRESHOLD).all()
    # Scenario 1 is every big amount that a later scenario did not claim.
    assert (s1 == (big & ~history["tx_fraud_scenario"].isin([2, 3]))).all()


def test_scenario_2_is_exactly_the_terminals_compromised_in_the_last_28_days(
    history: pd.DataFrame,
) -> None:
    days = day_index(history)
    on_compromised = np.zeros(len(history), dtype=bool)
    for day in range(SMALL.n_days):
        terminals, _ = compromised_on(SMALL, day)
        assert len(terminals) <= 2 * min(day + 1, TERMINAL_COMPROMISE_DAYS)
        today = days == day
        on_compromised[today] = history.loc[today, "terminal_id"].isin(terminals).to_numpy()
    s2 = (history["tx_fraud_scenario"] == 2).to_numpy()
    assert s2.sum() > 0
    # Every scenario-2 fraud is on a compromised terminal, and every transaction on one is
    # fraud (scenario 3 may claim a few of them last).
    assert on_compromised[s2].all()
    assert history.loc[on_compromised, "tx_fraud"].eq(1).all()
    assert history.loc[on_compromised, "tx_fraud_scenario"].isin([2, 3]).all()


def test_scenario_2_compromise_expires_after_28_days() -> None:
    drawn_day_0, _ = compromised_on(SMALL, 0)
    still, _ = compromised_on(SMALL, TERMINAL_COMPROMISE_DAYS - 1)
    expired, _ = compromised_on(SMALL, TERMINAL_COMPROMISE_DAYS + 40)
    assert set(drawn_day_0) <= set(still)
    # 28 daily draws of 2: at most 56 terminals at once.
    assert len(expired) <= 2 * TERMINAL_COMPROMISE_DAYS


def test_scenario_3_a_third_of_compromised_customers_payments_times_5(
    history: pd.DataFrame,
) -> None:
    days = day_index(history)
    on_compromised = np.zeros(len(history), dtype=bool)
    for day in range(SMALL.n_days):
        _, customers = compromised_on(SMALL, day)
        assert len(customers) <= 3 * CUSTOMER_COMPROMISE_DAYS
        today = days == day
        on_compromised[today] = history.loc[today, "customer_id"].isin(customers).to_numpy()
    s3 = (history["tx_fraud_scenario"] == 3).to_numpy()
    assert s3.sum() > 100
    assert on_compromised[s3].all()
    share = s3.sum() / on_compromised.sum()
    assert 0.28 < share < 0.39  # a third, binomially
    # The fraudster's amounts are about 5x the customer's usual spend.
    mean_amount = (
        generate_customer_profiles(SMALL.n_customers, SMALL.seed)
        .set_index("customer_id")
        .loc[history["customer_id"], "mean_amount"]
        .to_numpy()
    )
    ratio = history["tx_amount"].to_numpy() / mean_amount
    genuine = (history["tx_fraud"] == 0).to_numpy()
    assert 4.0 < np.median(ratio[s3]) < 6.0
    assert 0.8 < np.median(ratio[genuine]) < 1.2


def test_default_world_fraud_rate_near_the_handbook() -> None:
    # The handbook's world (5000 customers, 10000 terminals) reports ~0.8% fraud.
    df = simulate_transactions(SimulateParams(n_days=60))
    assert 0.004 < df["tx_fraud"].mean() < 0.012
    counts = df["tx_fraud_scenario"].value_counts()
    assert counts[2] > counts[1] and counts[3] > counts[1]


# --------------------------------------------------------------------------- live traffic


def test_next_days_continue_ids_and_dates(history: pd.DataFrame, live: pd.DataFrame) -> None:
    assert tuple(live.columns) == TRANSACTION_COLUMNS
    assert live["transaction_id"].iloc[0] == history["transaction_id"].max() + 1
    np.testing.assert_array_equal(np.diff(live["transaction_id"]), 1)
    assert live["tx_datetime"].is_monotonic_increasing
    days = day_index(live)
    assert days.min() == SMALL.n_days and days.max() == SMALL.n_days + LIVE_DAYS - 1


def test_next_days_deterministic_and_equal_to_a_longer_simulation(
    history: pd.DataFrame, live: pd.DataFrame
) -> None:
    pd.testing.assert_frame_equal(simulate_next_days(history, LIVE_DAYS, SMALL, "none"), live)
    longer = simulate_transactions(SMALL.model_copy(update={"n_days": SMALL.n_days + LIVE_DAYS}))
    tail = longer.iloc[len(history) :].reset_index(drop=True)
    pd.testing.assert_frame_equal(tail, live)


def test_next_days_keep_terminals_compromised_before_them(live: pd.DataFrame) -> None:
    first_live_day = live[day_index(live) == SMALL.n_days]
    # Drawn before the live window and not yet expired on its first day.
    earlier, _ = compromised_on(SMALL, SMALL.n_days - 1)
    today, _ = compromised_on(SMALL, SMALL.n_days)
    carried = first_live_day["terminal_id"].isin(np.intersect1d(earlier, today))
    assert carried.sum() > 0
    assert first_live_day.loc[carried, "tx_fraud"].eq(1).all()


def test_next_days_default_drift_comes_from_params(history: pd.DataFrame) -> None:
    drifting = SMALL.model_copy(update={"drift": "night_shift"})
    by_params = simulate_next_days(history, LIVE_DAYS, drifting)
    explicit = simulate_next_days(history, LIVE_DAYS, SMALL, "night_shift")
    pd.testing.assert_frame_equal(by_params, explicit)


def test_next_days_rejects_nothing_to_continue(history: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="n_days: must be >= 1"):
        simulate_next_days(history, 0, SMALL)
    with pytest.raises(ValueError, match="existing"):
        simulate_next_days(history.iloc[:0], 3, SMALL)


# --------------------------------------------------------------------------- drift scenarios


@pytest.mark.parametrize(
    "drift", ["amount_shift", "new_fraud_pattern", "night_shift", "missing_values"]
)
def test_zero_strength_drift_is_no_drift(
    history: pd.DataFrame, live: pd.DataFrame, drift: str
) -> None:
    params = SMALL.model_copy(update={"drift_strength": 0.0})
    pd.testing.assert_frame_equal(simulate_next_days(history, LIVE_DAYS, params, drift), live)


def test_amount_shift_scales_genuine_amounts_only(
    history: pd.DataFrame, live: pd.DataFrame
) -> None:
    shifted = simulate_next_days(history, LIVE_DAYS, SMALL, "amount_shift")
    assert len(shifted) == len(live)
    pd.testing.assert_series_equal(shifted["tx_fraud_scenario"], live["tx_fraud_scenario"])
    genuine = live["tx_fraud"] == 0
    np.testing.assert_allclose(
        shifted.loc[genuine, "tx_amount"], live.loc[genuine, "tx_amount"] * 1.5, atol=0.006
    )
    pd.testing.assert_series_equal(
        shifted.loc[~genuine, "tx_amount"], live.loc[~genuine, "tx_amount"]
    )


def test_night_shift_moves_transactions_to_night(history: pd.DataFrame, live: pd.DataFrame) -> None:
    shifted = simulate_next_days(history, LIVE_DAYS, SMALL, "night_shift")
    assert len(shifted) == len(live)
    assert night_share(shifted) > night_share(live) + 0.2
    assert shifted["tx_datetime"].is_monotonic_increasing


def test_missing_values_brings_terminals_never_seen_before(
    history: pd.DataFrame, live: pd.DataFrame
) -> None:
    drifted = simulate_next_days(history, LIVE_DAYS, SMALL, "missing_values")
    known = max(SMALL.n_terminals - 1, int(history["terminal_id"].max()))
    unseen = drifted["terminal_id"] > known
    assert 0.12 < unseen.mean() < 0.18  # ~15% at strength 1
    assert (live["terminal_id"] <= known).all()
    stronger = SMALL.model_copy(update={"drift_strength": 2.0})
    assert (
        simulate_next_days(history, LIVE_DAYS, stronger, "missing_values")["terminal_id"] > known
    ).mean() > 0.25
    # The raw data stays schema-valid: ids are plain non-negative int64.
    assert str(drifted["terminal_id"].dtype) == "int64"


def test_new_fraud_pattern_adds_night_card_testing(
    history: pd.DataFrame, live: pd.DataFrame
) -> None:
    drifted = simulate_next_days(history, LIVE_DAYS, SMALL, "new_fraud_pattern")
    s4 = drifted[drifted["tx_fraud_scenario"] == 4]
    assert len(s4) > 0
    assert (s4["tx_fraud"] == 1).all()
    assert (s4["tx_datetime"].dt.hour < 6).all()
    assert (s4["tx_amount"] <= 5.0).all()
    assert drifted["tx_fraud"].mean() > live["tx_fraud"].mean()
    # Card testing is on top of the usual traffic, which is unchanged.
    rest = drifted[drifted["tx_fraud_scenario"] != 4].drop(columns="transaction_id")
    pd.testing.assert_frame_equal(rest.reset_index(drop=True), live.drop(columns="transaction_id"))
    np.testing.assert_array_equal(np.diff(drifted["transaction_id"]), 1)
