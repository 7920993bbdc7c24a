"""The ONE feature definition: names, order and computation, shared by training and serving.

Semantics ("as of the entity's last transaction", identical offline and online): after each
transaction the customer's and the terminal's aggregates *including* that transaction are one
row of the Feast offline source, stamped ``event_timestamp = tx_datetime + 1 microsecond``.
A point-in-time join for a transaction at ``t`` therefore picks the row of the entity's
previous transaction, so every feature at ``t`` uses only transactions strictly before ``t``;
online, Feast materialisation holds the latest row per entity, which is exactly the row the
next transaction would see offline.

Windows of a row written at ``s`` (the entity's transaction time):

* counts and mean amounts: the entity's transactions in ``(s - w, s]``;
* terminal risk: fraud share among the terminal's transactions in
  ``(s - delay - w, s - delay]`` -- labels (chargebacks) arrive ``delay`` days after the
  transaction, so these are exactly the labels known at ``s``; a request at ``t > s`` sees
  only labels known by ``t - delay``.

Unknown entity (first transaction offline, unseen id online): counts are 0, means, ratio and
risks NaN (XGBoost's native "missing"), and ``unknown_customer`` / ``unknown_terminal`` say so.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd

from data.schema import (
    CUSTOMER_ID,
    TERMINAL_ID,
    TRANSACTION_COLUMNS,
    TX_AMOUNT,
    TX_DATETIME,
    TX_FRAUD,
)
from features.timeline import EntityTimeline, prepend
from fraudops.config import FeaturizeParams

#: Look-back windows (days) the feature names are built from; ``featurize.windows_days`` must match.
WINDOWS_DAYS: Final[tuple[int, ...]] = (1, 7, 30)
#: The customer's usual spend the request amount is compared with.
RATIO_WINDOW_DAYS: Final = 30
#: A transaction before this hour (UTC) counts as a night transaction.
NIGHT_END_HOUR: Final = 6
#: The largest value the model can read: XGBoost scores float32.
FLOAT32_MAX: Final = float(np.finfo(np.float32).max)

#: Timestamp column of the Feast offline sources (rows valid from this instant on).
EVENT_TIMESTAMP: Final = "event_timestamp"
#: A row becomes visible just after its own transaction, never to that transaction itself.
ROW_VISIBILITY_DELAY: Final = pd.Timedelta(microseconds=1)

#: Velocity windows (name suffix, length): counted at request time, up to the transaction.
VELOCITY_WINDOWS: Final[tuple[tuple[str, pd.Timedelta], ...]] = (
    ("10m", pd.Timedelta(minutes=10)),
    ("1h", pd.Timedelta(hours=1)),
)
VELOCITY_TX_COUNT: Final = tuple(f"customer_tx_count_{name}" for name, _ in VELOCITY_WINDOWS)
VELOCITY_AMOUNT: Final = tuple(f"customer_amount_{name}" for name, _ in VELOCITY_WINDOWS)
#: The customer's transactions and spend in ``[t - w, t)`` before a transaction at ``t``.
VELOCITY_FEATURES: Final[tuple[str, ...]] = VELOCITY_TX_COUNT + VELOCITY_AMOUNT

CUSTOMER_TX_COUNT: Final = tuple(f"customer_tx_count_{w}d" for w in WINDOWS_DAYS)
CUSTOMER_MEAN_AMOUNT: Final = tuple(f"customer_mean_amount_{w}d" for w in WINDOWS_DAYS)
TERMINAL_TX_COUNT: Final = tuple(f"terminal_tx_count_{w}d" for w in WINDOWS_DAYS)
TERMINAL_RISK: Final = tuple(f"terminal_risk_{w}d" for w in WINDOWS_DAYS)
CUSTOMER_AMOUNT_RATIO: Final = f"customer_amount_ratio_{RATIO_WINDOW_DAYS}d"

#: Computed from the request itself (plus the customer's mean for the ratio).
REQUEST_FEATURES: Final[tuple[str, ...]] = (
    TX_AMOUNT,
    "tx_during_weekend",
    "tx_during_night",
    CUSTOMER_AMOUNT_RATIO,
)
#: Feast feature view ``customer_spending`` (entity ``customer``).
CUSTOMER_FEATURES: Final[tuple[str, ...]] = CUSTOMER_TX_COUNT + CUSTOMER_MEAN_AMOUNT
#: Feast feature view ``terminal_risk`` (entity ``terminal``).
TERMINAL_FEATURES: Final[tuple[str, ...]] = TERMINAL_TX_COUNT + TERMINAL_RISK
#: The model's input columns, in model order.
FEATURE_NAMES: Final[tuple[str, ...]] = (
    REQUEST_FEATURES + VELOCITY_FEATURES + CUSTOMER_FEATURES + TERMINAL_FEATURES
)

UNKNOWN_CUSTOMER: Final = "unknown_customer"
UNKNOWN_TERMINAL: Final = "unknown_terminal"
#: Not model features: they say a lookup found no row (the aggregates are defaults).
FLAG_COLUMNS: Final[tuple[str, ...]] = (UNKNOWN_CUSTOMER, UNKNOWN_TERMINAL)

# Feast object names (the feature repo and features.store both use these).
CUSTOMER_ENTITY: Final = "customer"
TERMINAL_ENTITY: Final = "terminal"
CUSTOMER_VIEW: Final = "customer_spending"
TERMINAL_VIEW: Final = "terminal_risk"
FEATURE_SERVICE: Final = "fraud_detector_v1"


def _require_columns(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{missing[0]}: required column missing from {what} "
            f"({len(missing)} missing; has {', '.join(map(str, frame.columns)) or 'no columns'})"
        )


def _check_windows(params: FeaturizeParams) -> None:
    if tuple(params.windows_days) != WINDOWS_DAYS:
        raise ValueError(
            f"featurize.windows_days: must be {list(WINDOWS_DAYS)} -- FEATURE_NAMES and the Feast "
            f"feature views are named after these windows; got {list(params.windows_days)}"
        )


def _naive_utc(values: pd.Series) -> pd.Series:
    """Datetimes as naive UTC (the schema's convention); tz-aware input is converted."""
    if values.dtype.kind == "M" and not isinstance(values.dtype, pd.DatetimeTZDtype):
        return values
    return pd.to_datetime(values, utc=True).dt.tz_localize(None)


def _time_ns(when: pd.Series) -> np.ndarray:
    """Transaction instants as int64 nanoseconds, floored to whole microseconds.

    Feast and the online stores keep microseconds, so a row's visibility instant must not
    depend on sub-microsecond digits they would drop.
    """
    return _naive_utc(when).dt.floor("us").to_numpy("datetime64[ns]").view("int64")


def _customer_columns(timeline: EntityTimeline) -> dict[str, np.ndarray]:
    """CUSTOMER_FEATURES per timeline row: counts and mean amounts over ``(s - w, s]``."""
    columns: dict[str, np.ndarray] = {}
    for w, count_name, mean_name in zip(WINDOWS_DAYS, CUSTOMER_TX_COUNT, CUSTOMER_MEAN_AMOUNT):
        count = timeline.window_sum("n", 0, w)  # >= 1: the row's own transaction is inside
        columns[count_name] = count.astype(np.int64)
        columns[mean_name] = timeline.window_sum("amount", 0, w) / count
    return columns


def _terminal_columns(timeline: EntityTimeline, delay: int) -> dict[str, np.ndarray]:
    """TERMINAL_FEATURES per timeline row: counts, and fraud share of the labels known at s."""
    columns: dict[str, np.ndarray] = {}
    for w, count_name in zip(WINDOWS_DAYS, TERMINAL_TX_COUNT):
        columns[count_name] = timeline.window_sum("n", 0, w).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        for w, risk_name in zip(WINDOWS_DAYS, TERMINAL_RISK):
            labelled = timeline.window_sum("n", delay, w)
            frauds = timeline.window_sum("fraud", delay, w)
            # No labelled transaction in the window: the risk is unknown, not zero.
            columns[risk_name] = np.where(labelled > 0, frauds / labelled, np.nan)
    return columns


def compute_entity_features(
    transactions: pd.DataFrame, params: FeaturizeParams
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Customer and terminal offline-source tables, one row per entity and transaction instant.

    Columns: ``customer_id`` (resp. ``terminal_id``), ``event_timestamp`` and
    ``CUSTOMER_FEATURES`` (resp. ``TERMINAL_FEATURES``); see the module docstring for the
    windows. Vectorised: ~1M transactions take seconds.
    """
    _check_windows(params)
    _require_columns(
        transactions, (TX_DATETIME, CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT, TX_FRAUD), "transactions"
    )
    time_ns = _time_ns(transactions[TX_DATETIME])
    amount = transactions[TX_AMOUNT].to_numpy()
    customer = EntityTimeline(
        transactions[CUSTOMER_ID].to_numpy(np.int64),
        time_ns,
        {"n": np.ones(len(amount)), "amount": amount},
    )
    terminal = EntityTimeline(
        transactions[TERMINAL_ID].to_numpy(np.int64),
        time_ns,
        {"n": np.ones(len(amount)), "amount": amount, "fraud": transactions[TX_FRAUD].to_numpy()},
    )
    customer_table = {
        CUSTOMER_ID: customer.entity,
        EVENT_TIMESTAMP: customer.event_timestamps(ROW_VISIBILITY_DELAY.to_timedelta64()),
        **_customer_columns(customer),
    }
    terminal_table = {
        TERMINAL_ID: terminal.entity,
        EVENT_TIMESTAMP: terminal.event_timestamps(ROW_VISIBILITY_DELAY.to_timedelta64()),
        **_terminal_columns(terminal, params.label_delay_days),
    }
    return (
        pd.DataFrame(customer_table)[[CUSTOMER_ID, EVENT_TIMESTAMP, *CUSTOMER_FEATURES]],
        pd.DataFrame(terminal_table)[[TERMINAL_ID, EVENT_TIMESTAMP, *TERMINAL_FEATURES]],
    )


def state_horizon_days(label_delay_days: int) -> int:
    """How far back a row's windows reach: the longest window plus the label delay."""
    return max(WINDOWS_DAYS) + label_delay_days


def _one_customer_velocity(
    history_time_ns: np.ndarray, history_amount: np.ndarray, time_ns: np.ndarray
) -> dict[str, np.ndarray]:
    """:func:`velocity_features` when the history and the requests are one customer's: the
    same running sums and bounds, searched on the times alone."""
    order = np.argsort(history_time_ns, kind="stable")  # lexsort's order for one entity
    h_time = history_time_ns[order]
    amount_sum = prepend(0.0, np.cumsum(np.asarray(history_amount, np.float64)[order]))
    time_ns = np.asarray(time_ns, np.int64)
    end = np.searchsorted(h_time, time_ns, "left")
    columns: dict[str, np.ndarray] = {}
    for (_, length), count_name, amount_name in zip(
        VELOCITY_WINDOWS, VELOCITY_TX_COUNT, VELOCITY_AMOUNT
    ):
        start = np.searchsorted(h_time, time_ns - length.value, "left")
        columns[count_name] = (end - start).astype(np.float64)
        columns[amount_name] = amount_sum[end] - amount_sum[start]
    return columns


def velocity_features(
    history_entity: np.ndarray,
    history_time_ns: np.ndarray,
    history_amount: np.ndarray,
    entity: np.ndarray,
    time_ns: np.ndarray,
) -> dict[str, np.ndarray]:
    """VELOCITY_FEATURES of transactions ``(entity, time_ns)`` over a transaction history.

    Per transaction at ``t``: the count and the amount of its customer's history
    transactions in ``[t - w, t)`` -- strictly before it, so one at the same instant is not
    counted (as for the daily windows). Training passes all transactions as both the
    history and the requests; serving passes the customer's retained transactions and the
    request. Vectorised: a binary search per bound on (customer, time rank) keys.
    """
    history_time_ns = np.asarray(history_time_ns, np.int64)
    entity = np.asarray(entity, np.int64)
    history_entity = np.asarray(history_entity, np.int64)
    if len(entity) and (entity == entity[0]).all() and (history_entity == entity[0]).all():
        return _one_customer_velocity(history_time_ns, history_amount, time_ns)
    order = np.lexsort((history_time_ns, history_entity))
    h_entity, h_time = np.asarray(history_entity, np.int64)[order], history_time_ns[order]
    amount_sum = prepend(0.0, np.cumsum(np.asarray(history_amount, np.float64)[order]))
    entities = np.unique(h_entity)
    times = np.unique(h_time)
    stride = np.int64(len(times) + 1)
    keys = np.searchsorted(entities, h_entity) * stride + np.searchsorted(times, h_time)
    code = np.minimum(np.searchsorted(entities, entity), max(len(entities) - 1, 0))
    known = (entities[code] == entity) if len(entities) else np.zeros(len(entity), bool)

    def first_at_or_after(instant_ns: np.ndarray) -> np.ndarray:
        # Rows of the same customer with time >= instant start here (times strictly before
        # the instant have a smaller rank than searchsorted(..., "left")).
        return np.searchsorted(keys, code * stride + np.searchsorted(times, instant_ns), "left")

    time_ns = np.asarray(time_ns, np.int64)
    end = first_at_or_after(time_ns)
    columns: dict[str, np.ndarray] = {}
    for (_, length), count_name, amount_name in zip(
        VELOCITY_WINDOWS, VELOCITY_TX_COUNT, VELOCITY_AMOUNT
    ):
        start = first_at_or_after(time_ns - length.value)
        columns[count_name] = np.where(known, end - start, 0).astype(np.float64)
        columns[amount_name] = np.where(known, amount_sum[end] - amount_sum[start], 0.0)
    return columns


def _entity_block(rows: pd.DataFrame, columns: tuple[str, ...], n: int, what: str) -> np.ndarray:
    """Looked-up aggregates as a float matrix in ``columns`` order (NaN row: unknown entity)."""
    if len(rows) != n:
        raise ValueError(f"{what}: must have one row per request ({n}), got {len(rows)}")
    _require_columns(rows, columns, what)
    try:
        # Column by column: cheaper for one row than selecting a sub-frame, same for millions.
        return np.column_stack([rows[c].to_numpy(np.float64) for c in columns])
    except (TypeError, ValueError):  # None or numeric text (from some store): parse them
        return rows[list(columns)].apply(pd.to_numeric).to_numpy(np.float64)


#: Where each group of features sits in a FEATURE_NAMES row.
_VELOCITY_AT = FEATURE_NAMES.index(VELOCITY_FEATURES[0])
_CUSTOMER_AT = FEATURE_NAMES.index(CUSTOMER_FEATURES[0])
_TERMINAL_AT = FEATURE_NAMES.index(TERMINAL_FEATURES[0])


def feature_values(
    time_ns: np.ndarray,
    amount: np.ndarray,
    customer: np.ndarray,
    terminal: np.ndarray,
    velocity: dict[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """THE feature vectors: ``(values, unknown_customer, unknown_terminal)``.

    ``values`` is float64 ``(n, len(FEATURE_NAMES))`` in model order. Inputs, row for row:
    ``time_ns`` the naive-UTC transaction instants (int64 ns), ``amount`` the request
    amounts, ``customer`` / ``terminal`` the looked-up rows in CUSTOMER_FEATURES /
    TERMINAL_FEATURES order (a NaN row = unknown entity: counts 0, the rest missing) and
    ``velocity`` the :func:`velocity_features` (None: not known, so missing). Training
    (:func:`assemble_features`) and the serving lookup (one row, no frame) both end here.
    """
    values = np.empty((len(amount), len(FEATURE_NAMES)))
    customer_block = values[:, _CUSTOMER_AT : _CUSTOMER_AT + len(CUSTOMER_FEATURES)]
    customer_block[:] = customer
    terminal_block = values[:, _TERMINAL_AT : _TERMINAL_AT + len(TERMINAL_FEATURES)]
    terminal_block[:] = terminal
    unknown = []
    for block, n_counts in (
        (customer_block, len(CUSTOMER_TX_COUNT)),
        (terminal_block, len(TERMINAL_TX_COUNT)),
    ):
        # A known entity's row always counts its own transaction: no count means no row.
        missing = np.isnan(block[:, :n_counts]).all(axis=1)
        block[missing, :n_counts] = 0.0
        unknown.append(missing)
    days, day_ns = np.divmod(np.asarray(time_ns, np.int64), 86_400 * 10**9)
    weekday, hour = (days + 3) % 7, day_ns // (3_600 * 10**9)  # 1970-01-01 was a Thursday (3)
    amount = np.asarray(amount, np.float64)
    mean = customer_block[:, CUSTOMER_FEATURES.index(f"customer_mean_amount_{RATIO_WINDOW_DAYS}d")]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = amount / mean
    # A zero mean (only zero amounts so far) gives no usable ratio: missing, not infinite.
    # Nor does a mean of sub-cent amounts: the model reads float32, and a ratio beyond its
    # range would be infinite there (and refused by the predictor's input check).
    ratio[~(np.abs(ratio) <= FLOAT32_MAX)] = np.nan
    request = {
        TX_AMOUNT: amount,
        "tx_during_weekend": (weekday >= 5).astype(np.float64),
        "tx_during_night": (hour < NIGHT_END_HOUR).astype(np.float64),
        CUSTOMER_AMOUNT_RATIO: ratio,
    }
    for j, name in enumerate(REQUEST_FEATURES):
        values[:, j] = request[name]
    for j, name in enumerate(VELOCITY_FEATURES):
        values[:, _VELOCITY_AT + j] = np.nan if velocity is None else velocity[name]
    return values, unknown[0], unknown[1]


def assemble_features(
    requests: pd.DataFrame,
    customer_rows: pd.DataFrame,
    terminal_rows: pd.DataFrame,
    velocity: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """THE feature vector: FEATURE_NAMES (float, model order) + unknown_customer/unknown_terminal.

    ``requests`` needs ``tx_datetime`` (naive = UTC) and ``tx_amount``; ``customer_rows`` and
    ``terminal_rows`` hold the looked-up aggregates aligned row by row with ``requests``
    (a row of NaN = unknown entity); ``velocity`` the :func:`velocity_features` of the
    requests (None: not known, so missing). The frame form of :func:`feature_values`; the
    result keeps ``requests``' index.
    """
    _require_columns(requests, (TX_DATETIME, TX_AMOUNT), "requests")
    n = len(requests)
    values, unknown_customer, unknown_terminal = feature_values(
        _naive_utc(requests[TX_DATETIME]).to_numpy("datetime64[ns]").view(np.int64),
        pd.to_numeric(requests[TX_AMOUNT]).to_numpy(np.float64),
        _entity_block(customer_rows, CUSTOMER_FEATURES, n, "customer_rows"),
        _entity_block(terminal_rows, TERMINAL_FEATURES, n, "terminal_rows"),
        velocity,
    )
    return pd.DataFrame(
        {
            **{name: values[:, j] for j, name in enumerate(FEATURE_NAMES)},
            UNKNOWN_CUSTOMER: unknown_customer,
            UNKNOWN_TERMINAL: unknown_terminal,
        },
        index=requests.index,
    )


def _as_of(
    requests: pd.DataFrame, entity_rows: pd.DataFrame, key: str, columns: tuple[str, ...]
) -> pd.DataFrame:
    """Per request (in order): the entity's latest row with event_timestamp <= tx_datetime."""
    _require_columns(entity_rows, (key, EVENT_TIMESTAMP) + columns, f"{key} feature table")
    left = pd.DataFrame(
        {
            "_position": np.arange(len(requests)),
            key: requests[key].to_numpy(np.int64),
            TX_DATETIME: _naive_utc(requests[TX_DATETIME]).to_numpy("datetime64[ns]"),
        }
    ).sort_values(TX_DATETIME, kind="stable")
    right = entity_rows.loc[:, [key, EVENT_TIMESTAMP, *columns]].copy()
    right[key] = right[key].astype(np.int64)
    right[EVENT_TIMESTAMP] = _naive_utc(right[EVENT_TIMESTAMP]).astype("datetime64[ns]")
    right = right.sort_values(EVENT_TIMESTAMP, kind="stable")
    # backward + exact matches = "event_timestamp <= t", the rule of Feast's point-in-time join.
    joined = pd.merge_asof(
        left, right, left_on=TX_DATETIME, right_on=EVENT_TIMESTAMP, by=key, direction="backward"
    )
    return joined.sort_values("_position").loc[:, list(columns)].reset_index(drop=True)


def build_training_set(
    transactions: pd.DataFrame, customer_features: pd.DataFrame, terminal_features: pd.DataFrame
) -> pd.DataFrame:
    """Point-in-time training set: transaction columns (labels included) + FEATURE_NAMES + flags.

    Each transaction gets the latest customer / terminal row with ``event_timestamp <=
    tx_datetime`` (the same rule as Feast's ``get_historical_features``), then
    :func:`assemble_features`. Rows keep the order and index of ``transactions``.
    """
    _require_columns(transactions, TRANSACTION_COLUMNS, "transactions")
    customer_rows = _as_of(transactions, customer_features, CUSTOMER_ID, CUSTOMER_FEATURES)
    terminal_rows = _as_of(transactions, terminal_features, TERMINAL_ID, TERMINAL_FEATURES)
    time_ns = _time_ns(transactions[TX_DATETIME])
    customers = transactions[CUSTOMER_ID].to_numpy(np.int64)
    velocity = velocity_features(
        customers, time_ns, transactions[TX_AMOUNT].to_numpy(), customers, time_ns
    )
    features = assemble_features(transactions, customer_rows, terminal_rows, velocity)
    training_set = transactions.loc[:, list(TRANSACTION_COLUMNS)].copy()
    for column in features.columns:
        if column not in TRANSACTION_COLUMNS:  # tx_amount is both a column and a feature
            training_set[column] = features[column].to_numpy()
    return training_set
