"""A small synthetic training set with known fraud mechanics, and params sized for it.

Shared by the model-behaviour and registry tests: the frame has the transaction columns of
``data.schema`` plus ``FEATURE_NAMES`` and labels, like the featurize stage's output, but is
generated directly so the tests do not depend on the simulator or the feature code.

Fraud mechanics (all monotone in amount and amount ratio, with interactions a linear model
cannot express): amounts above 220 are mostly fraud; a spend far above the customer's
30-day mean is a little suspicious, and very much so at night; compromised terminals (high
recent risk) leak fraud on weekdays.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data.schema import (
    CUSTOMER_ID,
    TERMINAL_ID,
    TRANSACTION_ID,
    TX_AMOUNT,
    TX_DATETIME,
    TX_FRAUD,
    TX_FRAUD_SCENARIO,
)
from features.definitions import FEATURE_NAMES
from fraudops.config import Params

START = pd.Timestamp("2026-01-01")
#: Split windows for the synthetic history: 2 + 14 + 2 + 5 = 23 days.
SMALL_TRAIN = {
    "seed": 7,
    "burn_in_days": 2,
    "train_days": 14,
    "validation_days": 4,
    "gap_days": 2,
    "test_days": 5,
    "reference_sample_size": 500,
    # One thread: on a busy 2-core machine two OpenMP threads make a tiny fit ~100x slower.
    "xgboost": {"n_estimators": 20, "max_depth": 3, "learning_rate": 0.3, "nthread": 1},
}
N_DAYS = 23


def small_params(train: dict | None = None, register: dict | None = None) -> Params:
    """Params for the synthetic history; the gate is open unless ``register`` says otherwise."""
    return Params.model_validate(
        {
            "train": {**SMALL_TRAIN, **(train or {})},
            "evaluate": {"fpr_budget": 0.05, "top_k_per_day": 10, "review_cost": 5.0},
            "register": {"min_net_benefit": -1e12, "min_f1": 0.0, **(register or {})},
        }
    )


def synthetic_training_set(
    seed: int = 0, n_customers: int = 300, n_terminals: int = 600, n_days: int = N_DAYS
) -> pd.DataFrame:
    """Transactions + FEATURE_NAMES + labels, ~1.5 transactions per customer per day."""
    rng = np.random.default_rng(seed)
    n = int(n_customers * n_days * 1.5)
    customer = rng.integers(0, n_customers, n)
    terminal = rng.integers(0, n_terminals, n)
    when = START + pd.to_timedelta(np.sort(rng.uniform(0, n_days * 86400, n)), unit="s")
    when = pd.Series(when).dt.floor("s")

    customer_mean = rng.uniform(10, 100, n_customers)[customer]
    amount = customer_mean * rng.lognormal(0.0, 0.4, n)
    spike = rng.random(n) < 0.04  # a stolen card's big spend
    amount = np.where(spike, amount * rng.uniform(3, 8, n), amount)
    mean_30d = customer_mean * rng.lognormal(0.0, 0.1, n)
    mean_30d[rng.random(n) < 0.03] = np.nan  # unknown customers
    ratio = amount / mean_30d

    compromised = rng.random(n_terminals) < 0.08
    risk_7d = np.where(
        compromised, rng.uniform(0.3, 0.9, n_terminals), rng.uniform(0, 0.05, n_terminals)
    )[terminal]
    risk_7d[rng.random(n) < 0.03] = np.nan
    night = (when.dt.hour < 6).to_numpy().astype(float)
    weekend = (when.dt.weekday >= 5).to_numpy().astype(float)

    unusual = np.nan_to_num(ratio) > 3
    logit = (
        -6.0
        + 7.0 * (amount > 220)
        + 1.0 * unusual
        + 6.0 * unusual * night
        + 5.0 * (np.nan_to_num(risk_7d) > 0.3) * (weekend == 0)
    )
    fraud = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int8")

    frame = pd.DataFrame(
        {
            TRANSACTION_ID: np.arange(n, dtype="int64"),
            TX_DATETIME: when.to_numpy(),
            CUSTOMER_ID: customer.astype("int64"),
            TERMINAL_ID: terminal.astype("int64"),
            TX_AMOUNT: amount.round(2),
            TX_FRAUD: fraud,
            TX_FRAUD_SCENARIO: fraud.astype("int8"),
        }
    )

    def noise(scale: float) -> np.ndarray:
        return rng.lognormal(0.0, scale, n)

    features = {
        "tx_amount": frame[TX_AMOUNT].to_numpy(),
        "tx_during_weekend": weekend,
        "tx_during_night": night,
        "customer_amount_ratio_30d": ratio,
        "customer_tx_count_1d": rng.poisson(1.5, n).astype(float),
        "customer_tx_count_7d": rng.poisson(10, n).astype(float),
        "customer_tx_count_30d": rng.poisson(45, n).astype(float),
        "customer_tx_count_10m": rng.poisson(0.02, n).astype(float),
        "customer_tx_count_1h": rng.poisson(0.08, n).astype(float),
        "customer_amount_10m": rng.poisson(0.02, n) * mean_30d,
        "customer_amount_1h": rng.poisson(0.08, n) * mean_30d,
        "customer_mean_amount_1d": mean_30d * noise(0.3),
        "customer_mean_amount_7d": mean_30d * noise(0.2),
        "customer_mean_amount_30d": mean_30d,
        "terminal_tx_count_1d": rng.poisson(1, n).astype(float),
        "terminal_tx_count_7d": rng.poisson(7, n).astype(float),
        "terminal_tx_count_30d": rng.poisson(30, n).astype(float),
        "terminal_risk_1d": np.clip(risk_7d * noise(0.5), 0, 1),
        "terminal_risk_7d": risk_7d,
        "terminal_risk_30d": np.clip(risk_7d * noise(0.2), 0, 1),
    }
    missing = set(FEATURE_NAMES) - set(features)
    assert not missing, f"synthetic training set lacks features {sorted(missing)}"
    for name in FEATURE_NAMES:
        frame[name] = features[name]
    return frame


#: A deliberately weak booster (two stumps): loses champion-challenger to the default.
WEAK_XGBOOST = {"xgboost": {"n_estimators": 2, "max_depth": 1, "learning_rate": 0.3, "nthread": 1}}


def write_training_set(path, seed: int = 0):
    """Write the synthetic training set as parquet (what the featurize stage would write)."""
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    synthetic_training_set(seed=seed).to_parquet(path, index=False)
    return path
