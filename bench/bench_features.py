"""Wall time of the featurize stage on a random 1M-transaction history.

``python bench/bench_features.py [n_transactions]`` prints one JSON line; it writes only
to a temporary directory (the offline sources, a Feast registry and SQLite online store).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from data.schema import TRANSACTION_DTYPES
from features.definitions import EVENT_TIMESTAMP, build_training_set, compute_entity_features
from features.store import apply_definitions, feature_store, materialize
from fraudops.config import FeaturizeParams
from fraudops.paths import paths


def random_transactions(
    n: int, n_customers: int = 5000, n_terminals: int = 10000, days: int = 120, seed: int = 0
) -> pd.DataFrame:
    """A schema-conformant random history (uniform times, gamma amounts, ~1% fraud)."""
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.integers(0, days * 86_400, n))
    fraud = (rng.random(n) < 0.01).astype(np.int8)
    frame = pd.DataFrame(
        {
            "transaction_id": np.arange(n),
            "tx_datetime": pd.Timestamp("2026-01-01") + pd.to_timedelta(seconds, unit="s"),
            "customer_id": rng.integers(0, n_customers, n),
            "terminal_id": rng.integers(0, n_terminals, n),
            "tx_amount": rng.gamma(2.0, 30.0, n).round(2),
            "tx_fraud": fraud,
            "tx_fraud_scenario": fraud,
        }
    )
    return frame.astype(TRANSACTION_DTYPES)


def bench_featurize(n: int = 1_000_000, with_feast: bool = True) -> dict[str, float | int]:
    """Seconds per step of the featurize stage on ``n`` random transactions."""
    transactions = random_transactions(n)
    timings: dict[str, float | int] = {"transactions": n}

    started = time.perf_counter()
    customer, terminal = compute_entity_features(transactions, FeaturizeParams())
    timings["compute_entity_features_s"] = time.perf_counter() - started

    started = time.perf_counter()
    training_set = build_training_set(transactions, customer, terminal)
    timings["build_training_set_s"] = time.perf_counter() - started
    timings["training_rows"] = len(training_set)

    if with_feast:
        root = Path(tempfile.mkdtemp(prefix="bench-features-"))
        try:
            where = paths(root)
            shutil.copytree(
                paths().feature_repo,
                where.feature_repo,
                ignore=shutil.ignore_patterns("data", "__pycache__"),
            )
            where.features_dir.mkdir(parents=True)
            customer.to_parquet(where.customer_features, index=False)
            terminal.to_parquet(where.terminal_features, index=False)
            store = feature_store(where.feature_repo, online="sqlite")
            started = time.perf_counter()
            apply_definitions(store)
            materialize(
                store, max(customer[EVENT_TIMESTAMP].max(), terminal[EVENT_TIMESTAMP].max())
            )
            timings["apply_and_materialize_s"] = time.perf_counter() - started
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in timings.items()}


if __name__ == "__main__":
    print(json.dumps(bench_featurize(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)))
