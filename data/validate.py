"""The validation stage: bad data stops the pipeline with one line naming column and rule.

``python -m data.validate`` reads ``paths().raw_transactions``; when every check passes it
writes ``paths().validated_transactions`` and a JSON summary (``paths().validation_report``);
otherwise it exits 1 with the first failure on stderr and writes nothing, so the previous
validated data is left as it was.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from data.files import read_history, write_json_atomic, write_parquet_atomic
from data.schema import (
    CUSTOMER_ID,
    FIELD_RULES,
    FRAUD_SCENARIOS,
    TERMINAL_ID,
    TRANSACTION_COLUMNS,
    TRANSACTION_DTYPES,
    TRANSACTION_ID,
    TX_DATETIME,
    TX_FRAUD,
    TX_FRAUD_SCENARIO,
    FieldRule,
)
from fraudops.config import ConfigError, ValidateParams, load_params
from fraudops.paths import paths


class DataValidationError(ValueError):
    """Data breaks a rule; the message is one line naming the column, the rule and an example."""


@dataclass(frozen=True)
class ValidationReport:
    """What passed validation: the summary written next to the validated data."""

    rows: int
    days: int
    first_tx_datetime: str
    last_tx_datetime: str
    customers: int
    terminals: int
    frauds: int
    fraud_rate: float
    scenario_counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict (scenario ids as string keys)."""
        return asdict(self)


def _bound(value: float) -> str:
    """Render a rule's bound the way a person writes it (0, not 0.0; 1000000, not 1e+06)."""
    return str(int(value)) if float(value).is_integer() else str(value)


def _failure(df: pd.DataFrame, column: str, rule: str, bad: pd.Series) -> DataValidationError:
    """An error for the rows flagged in ``bad``, showing the first one as the example."""
    first = int(np.flatnonzero(bad.to_numpy())[0])
    value = df[column].iloc[first]
    example = _example_row(df, first)
    got = (
        "null" if pd.isna(value) else str(value.item() if isinstance(value, np.generic) else value)
    )
    return DataValidationError(
        f"{column}: {rule}, got {got} ({int(bad.sum())} rows, e.g. {example})"
    )


def _example_row(df: pd.DataFrame, position: int) -> str:
    """Name a row by its transaction_id when that column is usable, else by position."""
    ids = df.get(TRANSACTION_ID)
    if ids is not None and pd.api.types.is_integer_dtype(ids.dtype):
        return f"transaction_id {int(ids.iloc[position])}"
    return f"row {position}"


def check_schema(df: pd.DataFrame) -> None:
    """Every schema column is present with the schema's dtype."""
    missing = [c for c in TRANSACTION_COLUMNS if c not in df.columns]
    if missing:
        raise DataValidationError(
            f"{missing[0]}: required column is missing (have: {', '.join(map(str, df.columns))})"
        )
    for column, expected in TRANSACTION_DTYPES.items():
        actual = df[column].dtype
        if actual != np.dtype(expected):
            raise DataValidationError(f"{column}: must have dtype {expected}, got {actual}")


def check_field_rules(df: pd.DataFrame, rules: dict[str, FieldRule] = FIELD_RULES) -> None:
    """Nulls, numeric ranges and allowed values from ``data.schema.FIELD_RULES``."""
    for column, rule in rules.items():
        values = df[column]
        null = values.isna()
        if not rule.nullable and null.any():
            raise _failure(df, column, "must not be null", null)
        if rule.min_value is not None:
            bad = values < rule.min_value
            if bad.any():
                raise _failure(df, column, f"must be >= {_bound(rule.min_value)}", bad)
        if rule.max_value is not None:
            bad = values > rule.max_value
            if bad.any():
                raise _failure(df, column, f"must be <= {_bound(rule.max_value)}", bad)
        if rule.allowed is not None:
            bad = ~values.isin(rule.allowed)
            if bad.any():
                allowed = ", ".join(map(str, rule.allowed))
                raise _failure(df, column, f"must be one of ({allowed})", bad)


def check_labels_consistent(df: pd.DataFrame) -> None:
    """A fraud has a scenario and a genuine transaction has none (scenario 0)."""
    bad = (df[TX_FRAUD] == 1) != (df[TX_FRAUD_SCENARIO] != 0)
    if bad.any():
        raise _failure(df, TX_FRAUD_SCENARIO, "must be 0 exactly when tx_fraud is 0", bad)


def check_unique_ids(df: pd.DataFrame) -> None:
    """``transaction_id`` identifies one transaction."""
    duplicated = df[TRANSACTION_ID].duplicated(keep="first")
    if duplicated.any():
        raise _failure(df, TRANSACTION_ID, "must be unique", duplicated)


def check_time_order(df: pd.DataFrame) -> None:
    """Rows are sorted by ``tx_datetime`` (everything downstream relies on time order)."""
    times = df[TX_DATETIME]
    # A row earlier than the row before it: each misplaced row shows up at its border.
    earlier = times < times.shift(1)
    if earlier.any():
        first = int(np.flatnonzero(earlier.to_numpy())[0])
        raise DataValidationError(
            f"{TX_DATETIME}: must be sorted ascending, got {times.iloc[first]} after "
            f"{times.iloc[first - 1]} ({int(earlier.sum())} rows, e.g. "
            f"{_example_row(df, first)})"
        )


def check_volume(df: pd.DataFrame, params: ValidateParams) -> None:
    """Enough rows to train on (``validate.min_rows``)."""
    if len(df) < params.min_rows:
        raise DataValidationError(
            f"rows: must be >= {params.min_rows} (validate.min_rows), got {len(df)}"
        )


def check_fraud_rate(df: pd.DataFrame, params: ValidateParams) -> None:
    """The fraud rate lies in ``[validate.min_fraud_rate, validate.max_fraud_rate]``."""
    rate = float(df[TX_FRAUD].mean()) if len(df) else 0.0
    if not params.min_fraud_rate <= rate <= params.max_fraud_rate:
        raise DataValidationError(
            f"{TX_FRAUD}: fraud rate must be between {params.min_fraud_rate} and "
            f"{params.max_fraud_rate} (validate.min_fraud_rate/max_fraud_rate), got "
            f"{rate:.4g} ({int(df[TX_FRAUD].sum())} of {len(df)} rows)"
        )


def summarize(df: pd.DataFrame) -> ValidationReport:
    """Rows, days, customers, terminals, fraud rate and per-scenario counts of ``df``."""
    times = df[TX_DATETIME]
    counts = df[TX_FRAUD_SCENARIO].value_counts()
    return ValidationReport(
        rows=len(df),
        days=int(times.dt.normalize().nunique()),
        first_tx_datetime=str(times.min()) if len(df) else "",
        last_tx_datetime=str(times.max()) if len(df) else "",
        customers=int(df[CUSTOMER_ID].nunique()),
        terminals=int(df[TERMINAL_ID].nunique()),
        frauds=int(df[TX_FRAUD].sum()),
        fraud_rate=round(float(df[TX_FRAUD].mean()), 6) if len(df) else 0.0,
        scenario_counts={str(s): int(counts.get(s, 0)) for s in FRAUD_SCENARIOS},
    )


def validate_transactions(df: pd.DataFrame, params: ValidateParams) -> ValidationReport:
    """Run every check in order (schema first) and return the summary.

    Raises :class:`DataValidationError` with the first failure: schema (columns, dtypes),
    nulls, ranges and allowed values, label consistency, unique ids, time order, volume,
    fraud rate.
    """
    check_schema(df)
    check_field_rules(df)
    check_labels_consistent(df)
    check_unique_ids(df)
    check_time_order(df)
    check_volume(df, params)
    check_fraud_rate(df, params)
    return summarize(df)


def run(root: Path | None = None) -> ValidationReport:
    """The stage: validate raw + live transactions, then write validated data and report."""
    where = paths(root)
    if not where.raw_transactions.exists():
        raise FileNotFoundError(
            f"{where.raw_transactions}: raw transactions not found (run `python -m data.acquire`)"
        )
    params = load_params().validate_
    # Read as stored, no coercion: a wrong dtype in raw data is a finding, not a fix-up.
    df = read_history(where.raw_transactions, where.live_dir)
    report = validate_transactions(df, params)
    write_parquet_atomic(df, where.validated_transactions)
    write_json_atomic(report.to_dict(), where.validation_report)
    return report


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m data.validate``; exit 1 with one line on stderr on bad data."""
    parser = argparse.ArgumentParser(
        prog="python -m data.validate", description=__doc__.splitlines()[0]
    )
    parser.parse_args(argv)
    try:
        report = run()
    except (DataValidationError, ConfigError, FileNotFoundError) as exc:
        print(f"validation failed: {exc}", file=sys.stderr)
        return 1
    print(
        f"valid: {report.rows} transactions over {report.days} days, "
        f"{report.customers} customers, {report.terminals} terminals, "
        f"fraud rate {report.fraud_rate:.4%}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
