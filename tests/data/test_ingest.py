"""Bring your own data: handbook-style CSV, Parquet, extra columns, clear errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from data.ingest import read_transactions
from data.schema import TRANSACTION_COLUMNS, TRANSACTION_DTYPES
from data.validate import DataValidationError

# What the Fraud-Detection-Handbook's export looks like: upper-case names, an unnamed
# index column and its extra time columns.
HANDBOOK_CSV = """\
,TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_TIME_SECONDS,TX_TIME_DAYS,TX_FRAUD,TX_FRAUD_SCENARIO
0,0,2018-04-01 00:00:31,596,3156,57.16,31,0,0,0
1,1,2018-04-01 00:02:10,4961,3412,81.51,130,0,0,0
2,2,2018-04-01 00:07:56,2,1365,146.00,476,0,1,2
3,3,2018-04-01 00:09:29,4128,8737,64.49,569,0,0,0
"""


def _write(tmp_path: Path, text: str, name: str = "transactions.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _dtypes(df: pd.DataFrame) -> dict[str, str]:
    return {c: str(t) for c, t in df.dtypes.items()}


def test_handbook_csv_reads_into_the_schema(tmp_path: Path) -> None:
    df = read_transactions(_write(tmp_path, HANDBOOK_CSV))
    assert tuple(df.columns) == TRANSACTION_COLUMNS  # TX_TIME_* and the index are ignored
    assert _dtypes(df) == TRANSACTION_DTYPES
    assert df["tx_datetime"].iloc[2] == pd.Timestamp("2018-04-01 00:07:56")
    assert df["tx_amount"].tolist() == [57.16, 81.51, 146.0, 64.49]
    assert df["tx_fraud_scenario"].tolist() == [0, 0, 2, 0]


def test_parquet_round_trip_with_extra_columns(
    tmp_path: Path, small_transactions: pd.DataFrame
) -> None:
    path = tmp_path / "mine.parquet"
    mixed_case = small_transactions.rename(columns={"tx_amount": "Tx_Amount"})
    mixed_case.assign(merchant_category="grocery").to_parquet(path, index=False)
    pd.testing.assert_frame_equal(read_transactions(path), small_transactions)


def test_timezone_aware_times_become_naive_utc(tmp_path: Path) -> None:
    text = HANDBOOK_CSV.replace("2018-04-01 00:00:31", "2018-04-01T02:00:31+02:00")
    df = read_transactions(_write(tmp_path, text))
    assert df["tx_datetime"].iloc[0] == pd.Timestamp("2018-04-01 00:00:31")
    assert str(df["tx_datetime"].dtype) == "datetime64[ns]"


def test_missing_column_is_named(tmp_path: Path) -> None:
    text = HANDBOOK_CSV.replace("TERMINAL_ID", "TERMINAL")
    with pytest.raises(DataValidationError, match=r"^terminal_id: required column is missing"):
        read_transactions(_write(tmp_path, text))


@pytest.mark.parametrize(
    ("original", "replacement", "message"),
    [
        ("57.16", "twelve", "tx_amount: must be a number, got 'twelve' (1 rows, e.g. row 0)"),
        ("2018-04-01 00:02:10", "yesterday", "tx_datetime: must be a date-time, got 'yesterday'"),
        (",4961,", ",4961.5,", "customer_id: must be an integer that fits int64, got '4961.5'"),
        (",4961,", ",,", "customer_id: must not be null, got 1 empty values (e.g. row 1)"),
        (
            "146.00,476,0,1,2",
            "146.00,476,0,1,300",
            "tx_fraud_scenario: must be an integer that fits int8, got '300'",
        ),
    ],
)
def test_unparsable_values_are_named(
    tmp_path: Path, original: str, replacement: str, message: str
) -> None:
    text = HANDBOOK_CSV.replace(original, replacement, 1)
    assert text != HANDBOOK_CSV
    with pytest.raises(DataValidationError) as raised:
        read_transactions(_write(tmp_path, text))
    assert str(raised.value).startswith(message), str(raised.value)


def test_duplicate_column_names_after_case_folding(tmp_path: Path) -> None:
    text = HANDBOOK_CSV.replace("TX_TIME_DAYS", "tx_amount")
    with pytest.raises(DataValidationError, match="tx_amount: column appears twice"):
        read_transactions(_write(tmp_path, text))


def test_unsupported_file_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="unsupported file type"):
        read_transactions(_write(tmp_path, HANDBOOK_CSV, "transactions.xlsx"))
    with pytest.raises(FileNotFoundError, match="not found"):
        read_transactions(tmp_path / "nope.csv")


def test_a_folder_reads_every_batch_in_date_order(tmp_path: Path) -> None:
    from data.schema import TRANSACTION_DTYPES

    live = tmp_path / "live"
    live.mkdir()
    for name, first_id in (("20260202-20260202.parquet", 3), ("20260201-20260201.parquet", 0)):
        frame = pd.DataFrame(
            {
                "transaction_id": range(first_id, first_id + 3),
                "tx_datetime": pd.date_range(name[:8], periods=3, freq="h"),
                "customer_id": 1,
                "terminal_id": 2,
                "tx_amount": 10.0,
                "tx_fraud": 0,
                "tx_fraud_scenario": 0,
            }
        ).astype(TRANSACTION_DTYPES)
        frame.to_parquet(live / name, index=False)
    assert read_transactions(live)["transaction_id"].tolist() == list(range(6))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no Parquet batches"):
        read_transactions(empty)
