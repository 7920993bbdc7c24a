"""Fixtures for the feature tier: handcrafted and small random histories, a throw-away project.

Nothing here uses the simulator: the feature code is tested on histories whose every
transaction the test controls.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.schema import TRANSACTION_DTYPES
from fraudops.config import PROJECT_ROOT
from fraudops.paths import Paths, paths

#: Day 0 of every handcrafted history (a Thursday).
DAY0 = pd.Timestamp("2026-01-01")

#: (day offset, customer_id, terminal_id, tx_amount, tx_fraud)
TxSpec = tuple[float, int, int, float, int]


def transactions_from(rows: Sequence[TxSpec]) -> pd.DataFrame:
    """A transaction table (schema dtypes) from ``(day, customer, terminal, amount, fraud)``."""
    frame = pd.DataFrame(
        {
            "transaction_id": np.arange(len(rows)),
            "tx_datetime": [DAY0 + pd.Timedelta(days=r[0]) for r in rows],
            "customer_id": [r[1] for r in rows],
            "terminal_id": [r[2] for r in rows],
            "tx_amount": [r[3] for r in rows],
            "tx_fraud": [r[4] for r in rows],
            "tx_fraud_scenario": [r[4] for r in rows],
        }
    )
    return frame.astype(TRANSACTION_DTYPES)


def random_transactions(
    n: int, n_customers: int, n_terminals: int, days: int, seed: int, fraud_rate: float = 0.1
) -> pd.DataFrame:
    """A random history in time order (second resolution, gamma amounts)."""
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.integers(0, days * 86_400, n))
    fraud = (rng.random(n) < fraud_rate).astype(np.int8)
    frame = pd.DataFrame(
        {
            "transaction_id": np.arange(n),
            "tx_datetime": DAY0 + pd.to_timedelta(seconds, unit="s"),
            "customer_id": rng.integers(0, n_customers, n),
            "terminal_id": rng.integers(0, n_terminals, n),
            "tx_amount": rng.gamma(2.0, 30.0, n).round(2),
            "tx_fraud": fraud,
            "tx_fraud_scenario": fraud,
        }
    )
    return frame.astype(TRANSACTION_DTYPES)


@pytest.fixture
def make_transactions() -> Callable[[Sequence[TxSpec]], pd.DataFrame]:
    """Factory: handcrafted transactions from ``(day, customer, terminal, amount, fraud)``."""
    return transactions_from


@pytest.fixture(scope="session")
def small_history() -> pd.DataFrame:
    """~800 random transactions, 25 customers, 20 terminals, 45 days; copy before mutating."""
    return random_transactions(800, n_customers=25, n_terminals=20, days=45, seed=11)


@pytest.fixture
def feature_project(tmp_path: Path) -> Paths:
    """A project root under ``tmp_path`` holding a copy of the Feast feature repo (no state)."""
    where = paths(tmp_path / "project")
    shutil.copytree(
        paths(PROJECT_ROOT).feature_repo,
        where.feature_repo,
        ignore=shutil.ignore_patterns("data", "__pycache__"),
    )
    return where


@pytest.fixture
def feast_project_name() -> str:
    """A Feast project name no other test run uses (Redis keys are namespaced by it)."""
    return f"fraud_test_{uuid.uuid4().hex[:12]}"
