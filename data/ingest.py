"""Bring your own data: read a CSV or Parquet of transactions into the schema.

Column names are matched case-insensitively, so the Fraud-Detection-Handbook's upper-case
export (TRANSACTION_ID, TX_DATETIME, ... with extra columns such as TX_TIME_SECONDS)
reads as is. Values are coerced to the schema dtypes; a value that will not parse stops
ingestion with one line naming the column and an example. Range and business rules are
the validation stage's job (``data.validate``), not this module's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from data.files import live_batches
from data.schema import TRANSACTION_COLUMNS, TRANSACTION_DTYPES, TX_DATETIME
from data.validate import DataValidationError

CSV_SUFFIXES = (".csv", ".csv.gz", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")


def _read_table(path: Path) -> pd.DataFrame:
    name = path.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return pd.read_parquet(path)
    if name.endswith(CSV_SUFFIXES):
        # Everything as text first: parsing happens per column below, with clear errors.
        return pd.read_csv(path, dtype=str, keep_default_na=True)
    raise DataValidationError(
        f"{path}: unsupported file type (expected one of "
        f"{', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)})"
    )


def _select_columns(raw: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Map columns case-insensitively onto the schema; ignore extras."""
    by_lower: dict[str, str] = {}
    for column in raw.columns:
        key = str(column).strip().lower()
        if key in by_lower and key in TRANSACTION_COLUMNS:
            raise DataValidationError(
                f"{key}: column appears twice ({by_lower[key]!r} and {column!r}) in {path}"
            )
        by_lower.setdefault(key, column)
    for column in TRANSACTION_COLUMNS:
        if column not in by_lower:
            raise DataValidationError(
                f"{column}: required column is missing in {path} "
                f"(have: {', '.join(map(str, raw.columns))})"
            )
    return pd.DataFrame({c: raw[by_lower[c]].to_numpy() for c in TRANSACTION_COLUMNS})


def _unparsable(
    column: str, original: pd.Series, bad: np.ndarray, expected: str
) -> DataValidationError:
    first = int(np.flatnonzero(bad)[0])
    return DataValidationError(
        f"{column}: must be {expected}, got {original.iloc[first]!r} "
        f"({int(bad.sum())} rows, e.g. row {first})"
    )


def _parse_datetime(column: str, values: pd.Series) -> pd.Series:
    parsed = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    bad = (parsed.isna() & values.notna()).to_numpy()
    if bad.any():
        raise _unparsable(column, values, bad, "a date-time")
    # The schema stores naive UTC.
    return parsed.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]")


def _parse_number(column: str, values: pd.Series, dtype: str) -> pd.Series:
    if values.dtype == bool:
        values = values.astype(np.int8)
    parsed = pd.to_numeric(values, errors="coerce")
    bad = (parsed.isna() & values.notna()).to_numpy()
    if bad.any():
        raise _unparsable(column, values, bad, "a number")
    if dtype == "float64":
        return parsed.astype("float64")  # NaN stays: validation reports nulls by transaction
    null = parsed.isna().to_numpy()
    if null.any():
        # An integer dtype cannot hold a missing value, so it is reported here, by row.
        raise DataValidationError(
            f"{column}: must not be null, got {int(null.sum())} empty values "
            f"(e.g. row {int(np.flatnonzero(null)[0])})"
        )
    as_float = parsed.astype("float64")
    info = np.iinfo(dtype)
    bad = (
        (as_float != np.floor(as_float)) | (as_float < info.min) | (as_float > info.max)
    ).to_numpy()
    if bad.any():
        raise _unparsable(column, values, bad, f"an integer that fits {dtype}")
    return parsed.astype(dtype)


def coerce_transactions(raw: pd.DataFrame, source: str = "input") -> pd.DataFrame:
    """Select the schema columns (case-insensitive names) and coerce them to the dtypes."""
    selected = _select_columns(raw, Path(source))
    out = {}
    for column, dtype in TRANSACTION_DTYPES.items():
        if column == TX_DATETIME:
            out[column] = _parse_datetime(column, selected[column])
        else:
            out[column] = _parse_number(column, selected[column], dtype)
    return pd.DataFrame(out)[list(TRANSACTION_COLUMNS)]


def read_transactions(path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet file of transactions into the schema's columns and dtypes.

    A directory (such as ``data/live``) means every Parquet batch in it, oldest first.
    Raises :class:`~data.validate.DataValidationError` naming a missing column or a value
    that does not parse; ``FileNotFoundError`` if ``path`` does not exist or holds nothing.
    """
    path = Path(path)
    if path.is_dir():
        batches = live_batches(path)
        if not batches:
            raise FileNotFoundError(f"{path}: no Parquet batches in this folder")
        return pd.concat([read_transactions(batch) for batch in batches], ignore_index=True)
    if not path.exists():
        raise FileNotFoundError(f"{path}: transactions file not found")
    return coerce_transactions(_read_table(path), str(path))
