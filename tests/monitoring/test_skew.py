"""The skew job: logged vectors vs the offline definition, shares, reports and the gauge."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from data.schema import TRANSACTION_COLUMNS
from features.definitions import FEATURE_NAMES
from fraudops.config import FeaturizeParams
from monitoring.outputs import EXIT_DRIFT, EXIT_OK
from monitoring.skew import compare_served, equal_values, run_skew_job
from monitoring.window import transaction_features
from serving.prediction_log import PredictionLogWriter, PredictionRecord
from serving.sandbox import synthetic_transactions


def _log(directory: Path, featured: pd.DataFrame, changes: dict[int, tuple[str, float]]) -> None:
    """Log each transaction with its offline vector, except ``changes`` {row: (feature, value)}."""
    records = []
    for i, row in enumerate(featured.itertuples(index=False)):
        values = {name: getattr(row, name) for name in FEATURE_NAMES}
        if i in changes:
            name, value = changes[i]
            values[name] = value
        records.append(
            PredictionRecord(
                request_id=f"r{i}",
                transaction_id=int(row.transaction_id),
                tx_datetime=pd.Timestamp(row.tx_datetime).isoformat(),
                customer_id=int(row.customer_id),
                terminal_id=int(row.terminal_id),
                tx_amount=float(row.tx_amount),
                model_version="1",
                fraud_probability=0.1,
                decision="APPROVE",
                latency_ms=1.0,
                features={
                    k: (None if isinstance(v, float) and math.isnan(v) else float(v))
                    for k, v in values.items()
                },
            )
        )
    PredictionLogWriter(directory).write(records)


def _world(n: int = 600) -> tuple[pd.DataFrame, pd.DataFrame]:
    transactions = synthetic_transactions(n=n, n_customers=30, n_terminals=20, days=20, seed=5)
    live = transactions.tail(200)
    featured = transaction_features(live, FeaturizeParams(), history=transactions)
    return transactions[list(TRANSACTION_COLUMNS)], featured


def test_equal_values_is_relative_and_nan_aware():
    served = np.array([1.0, 1.0 + 1e-7, 1.0 + 1e-5, np.nan, np.nan])
    offline = np.array([1.0, 1.0, 1.0, np.nan, 2.0])
    assert equal_values(served, offline).tolist() == [True, True, False, True, False]


def test_vectors_that_match_the_definition_are_all_equal(tmp_path: Path):
    transactions, featured = _world()
    _log(tmp_path / "log", featured, {})
    summary = run_skew_job(tmp_path / "log", out_dir=tmp_path / "out", transactions=transactions)
    stats = summary["statistics"]
    assert stats["transactions"] == 200
    assert stats["equal_share"] == 1.0
    assert summary["drift_detected"] is False


def test_differences_are_counted_per_transaction_and_per_feature(tmp_path: Path):
    transactions, featured = _world()
    changes = {
        3: ("customer_tx_count_1d", 99.0),
        7: ("terminal_risk_1d", 0.5),
        9: ("customer_tx_count_1d", 77.0),
    }
    _log(tmp_path / "log", featured, changes)
    summary = run_skew_job(tmp_path / "log", out_dir=tmp_path / "out", transactions=transactions)
    stats = summary["statistics"]
    assert stats["mismatched"] == 3
    assert math.isclose(stats["mismatch_share"], 3 / 200)
    assert math.isclose(stats["feature_mismatch_share"]["customer_tx_count_1d"], 2 / 200)
    assert math.isclose(stats["feature_mismatch_share"]["terminal_risk_1d"], 1 / 200)
    assert stats["feature_mismatch_share"]["tx_amount"] == 0.0
    # 1.5 % > the 1 % budget: skew, and everything a follow-up needs is written.
    assert summary["drift_detected"] is True and summary["signals"] == ["skew"]
    written = json.loads(Path(summary["artifacts"]["summary"]).read_text())
    assert written["statistics"]["mismatched"] == 3
    page = Path(summary["artifacts"]["html"]).read_text()
    assert "customer_tx_count_1d served 99 offline" in page
    gauges = Path(summary["artifacts"]["metrics"]).read_text()
    assert "fraud_feature_skew_share 0.015\n" in gauges
    assert 'fraud_feature_skew_feature_share{feature="terminal_risk_1d"} 0.005' in gauges


def test_cli_exit_codes_follow_the_budget(tmp_path: Path, monkeypatch):
    transactions, featured = _world()
    _log(tmp_path / "log", featured, {0: ("customer_mean_amount_7d", 1e9)})
    monkeypatch.setattr("monitoring.skew.versioned_transactions", lambda: transactions)
    from monitoring.skew import main

    base = ["--source", str(tmp_path / "log"), "--out-dir", str(tmp_path / "out")]
    assert main(base) == EXIT_OK  # 1 of 200 = 0.5 % <= 1 %
    assert main([*base, "--max-mismatch-share", "0.001"]) == EXIT_DRIFT


def test_transactions_outside_the_versioned_data_are_reported_not_compared(tmp_path: Path):
    transactions, featured = _world()
    result = compare_served(
        featured.assign(transaction_id=featured["transaction_id"] + 10**9),
        transactions,
        FeaturizeParams(),
    )
    assert result.transactions == 0 and result.unmatched == 200
