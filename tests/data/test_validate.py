"""Validation: each kind of bad data is rejected with one line naming column, rule, example."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.validate import DataValidationError, main, validate_transactions
from fraudops.config import ValidateParams
from fraudops.paths import Paths

DEFAULTS = ValidateParams()
ROW = 17  # simulated transaction_id == row position, so messages name transaction_id 17


def _set(column: str, value: object, rows: tuple[int, ...] = (ROW,)) -> Callable:
    def mutate(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[list(rows), column] = value
        return df

    return mutate


def _swap_times(df: pd.DataFrame) -> pd.DataFrame:
    times = df["tx_datetime"].to_numpy().copy()
    times[ROW], times[ROW + 500] = times[ROW + 500], times[ROW]
    df["tx_datetime"] = times
    return df


BAD_DATA = {
    "missing column": (
        lambda df: df.drop(columns="tx_amount"),
        DEFAULTS,
        "tx_amount: required column is missing",
    ),
    "wrong dtype": (
        lambda df: df.astype({"customer_id": "float64"}),
        DEFAULTS,
        "customer_id: must have dtype int64, got float64",
    ),
    "timezone-aware datetime": (
        lambda df: df.assign(tx_datetime=df["tx_datetime"].dt.tz_localize("UTC")),
        DEFAULTS,
        "tx_datetime: must have dtype datetime64[ns], got datetime64[ns, UTC]",
    ),
    "null amount": (
        _set("tx_amount", np.nan),
        DEFAULTS,
        "tx_amount: must not be null, got null (1 rows, e.g. transaction_id 17)",
    ),
    "null datetime": (
        _set("tx_datetime", pd.NaT),
        DEFAULTS,
        "tx_datetime: must not be null, got null (1 rows, e.g. transaction_id 17)",
    ),
    "negative amount": (
        _set("tx_amount", -5.0, (ROW, ROW + 3, ROW + 40)),
        DEFAULTS,
        "tx_amount: must be >= 0, got -5.0 (3 rows, e.g. transaction_id 17)",
    ),
    "absurd amount": (
        _set("tx_amount", 5e9),
        DEFAULTS,
        "tx_amount: must be <= 1000000, got 5000000000.0 (1 rows, e.g. transaction_id 17)",
    ),
    "negative customer id": (
        _set("customer_id", -1),
        DEFAULTS,
        "customer_id: must be >= 0, got -1 (1 rows, e.g. transaction_id 17)",
    ),
    "tx_fraud not 0/1": (
        _set("tx_fraud", 2),
        DEFAULTS,
        "tx_fraud: must be one of (0, 1), got 2 (1 rows, e.g. transaction_id 17)",
    ),
    "unknown scenario": (
        _set("tx_fraud_scenario", 9),
        DEFAULTS,
        "tx_fraud_scenario: must be one of (0, 1, 2, 3, 4, 5), got 9",
    ),
    "fraud without scenario": (
        lambda df: _set("tx_fraud_scenario", 0)(_set("tx_fraud", 1)(df)),
        DEFAULTS,
        "tx_fraud_scenario: must be 0 exactly when tx_fraud is 0, got 0 (1 rows, e.g. transaction_id 17)",
    ),
    "duplicate id": (
        _set("transaction_id", ROW, (ROW + 1,)),
        DEFAULTS,
        "transaction_id: must be unique, got 17 (1 rows, e.g. transaction_id 17)",
    ),
    "out of time order": (
        _swap_times,
        DEFAULTS,
        "tx_datetime: must be sorted ascending, got ",
    ),
    "too few rows": (
        lambda df: df,
        ValidateParams(min_rows=1_000_000),
        "rows: must be >= 1000000 (validate.min_rows), got ",
    ),
    "fraud rate too high": (
        lambda df: df,
        ValidateParams(max_fraud_rate=0.001),
        "tx_fraud: fraud rate must be between 0.0005 and 0.001",
    ),
    "fraud rate too low": (
        lambda df: df.assign(tx_fraud=np.int8(0), tx_fraud_scenario=np.int8(0)),
        DEFAULTS,
        "tx_fraud: fraud rate must be between 0.0005 and 0.2 (validate.min_fraud_rate/max_fraud_rate), got 0 (0 of",
    ),
}


def test_valid_transactions_pass_with_a_summary(small_transactions: pd.DataFrame) -> None:
    report = validate_transactions(small_transactions, DEFAULTS)
    assert report.rows == len(small_transactions)
    assert report.days == 30
    assert report.customers == small_transactions["customer_id"].nunique()
    assert report.fraud_rate == pytest.approx(small_transactions["tx_fraud"].mean(), abs=1e-6)
    assert sum(report.scenario_counts.values()) == report.rows
    assert report.scenario_counts["0"] == (small_transactions["tx_fraud"] == 0).sum()


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_data_is_rejected_with_one_readable_line(
    small_transactions: pd.DataFrame, case: str
) -> None:
    mutate, params, message = BAD_DATA[case]
    bad = mutate(small_transactions.copy())
    with pytest.raises(DataValidationError) as raised:
        validate_transactions(bad, params)
    text = str(raised.value)
    assert text.startswith(message), text
    assert "\n" not in text


def test_time_order_message_names_both_times(small_transactions: pd.DataFrame) -> None:
    with pytest.raises(DataValidationError, match=r"after .* \(2 rows, e.g. transaction_id 18\)"):
        validate_transactions(_swap_times(small_transactions.copy()), DEFAULTS)


# --------------------------------------------------------------------------- the stage CLI


def _run_cli(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FRAUD_PROJECT_ROOT": str(root)}
    env.pop("FRAUD_PARAMS", None)
    return subprocess.run(
        [sys.executable, "-m", "data.validate"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_writes_validated_data_and_report(
    project: Paths, small_transactions: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    project.raw_transactions.parent.mkdir(parents=True)
    small_transactions.to_parquet(project.raw_transactions, index=False)
    assert main([]) == 0
    assert "valid: " in capsys.readouterr().out
    pd.testing.assert_frame_equal(
        pd.read_parquet(project.validated_transactions), small_transactions
    )
    report = json.loads(project.validation_report.read_text())
    assert report["rows"] == len(small_transactions)
    assert report["frauds"] == int(small_transactions["tx_fraud"].sum())
    assert set(report) >= {"days", "customers", "terminals", "fraud_rate", "scenario_counts"}


def test_cli_bad_data_exits_1_and_leaves_previous_output(
    project: Paths, small_transactions: pd.DataFrame
) -> None:
    # A previous good run left validated data behind.
    project.raw_transactions.parent.mkdir(parents=True)
    small_transactions.to_parquet(project.raw_transactions, index=False)
    assert main([]) == 0
    before = project.validated_transactions.read_bytes()
    report_before = project.validation_report.read_text()

    bad = small_transactions.copy()
    bad.loc[[ROW, ROW + 1], "tx_amount"] = -5.0
    bad.to_parquet(project.raw_transactions, index=False)
    result = _run_cli(project.root)

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "tx_amount: must be >= 0, got -5.0 (2 rows, e.g. transaction_id 17)" in lines[0]
    assert project.validated_transactions.read_bytes() == before
    assert project.validation_report.read_text() == report_before
    assert sorted(p.name for p in project.validated_transactions.parent.iterdir()) == [
        "report.json",
        "transactions.parquet",
    ]


def test_cli_without_raw_data_exits_1_and_writes_nothing(
    project: Paths, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([]) == 1
    err = capsys.readouterr().err.strip()
    assert "raw transactions not found" in err and "\n" not in err
    assert not project.validated_transactions.parent.exists()
