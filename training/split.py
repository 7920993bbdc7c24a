"""Time-aware train / validation / test split, anchored at the end of the data.

Fraud labels arrive late (chargebacks), so a model trained today has only seen labels up to
``gap_days`` ago. The split mirrors that: the test window is the last ``test_days``, a gap
of ``gap_days`` precedes it, and the training window of ``train_days`` precedes the gap,
its last ``validation_days`` held out to choose decision thresholds. The first
``burn_in_days`` (whose rolling features are incomplete) are never used. Never random.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from data.schema import TX_DATETIME
from fraudops.config import TrainParams


class SplitError(ValueError):
    """The data cannot be split as ``params.train`` asks (too short, missing column)."""


@dataclass(frozen=True)
class SplitWindows:
    """Half-open day windows ``[start, end)`` of each part of the split (naive UTC days)."""

    data_start: pd.Timestamp
    data_end: pd.Timestamp
    train_start: pd.Timestamp
    validation_start: pd.Timestamp
    gap_start: pd.Timestamp
    test_start: pd.Timestamp

    @property
    def train_end(self) -> pd.Timestamp:
        """End of the rows the model is fitted on (the validation window starts here)."""
        return self.validation_start

    def as_dict(self) -> dict[str, str]:
        """Inclusive first/last day of each window, for logging and the model card."""
        day = pd.Timedelta(days=1)

        def span(start: pd.Timestamp, end: pd.Timestamp) -> str:
            return f"{start.date()}..{(end - day).date()}"

        return {
            "train": span(self.train_start, self.validation_start),
            "validation": span(self.validation_start, self.gap_start),
            "gap": span(self.gap_start, self.test_start)
            if self.test_start > self.gap_start
            else "",
            "test": span(self.test_start, self.data_end),
        }


@dataclass(frozen=True)
class TimeSplit:
    """Rows of each window; ``train`` excludes the validation days."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    windows: SplitWindows


def days_needed(params: TrainParams) -> int:
    """Calendar days of data the split needs (burn-in + train + gap + test)."""
    return params.burn_in_days + params.train_days + params.gap_days + params.test_days


def split_windows(
    first_tx: pd.Timestamp, last_tx: pd.Timestamp, params: TrainParams
) -> SplitWindows:
    """Window boundaries for data spanning ``first_tx``..``last_tx``, anchored at the end."""
    if params.validation_days >= params.train_days:
        raise SplitError(
            f"train.validation_days: must be < train.train_days (the validation days are the "
            f"end of the training window), got {params.validation_days} >= {params.train_days}"
        )
    day = pd.Timedelta(days=1)
    data_start = pd.Timestamp(first_tx).normalize()
    data_end = pd.Timestamp(last_tx).normalize() + day
    available = (data_end - data_start).days
    needed = days_needed(params)
    if available < needed:
        raise SplitError(
            f"{TX_DATETIME}: data too short for the time split: need {needed} days "
            f"(burn_in {params.burn_in_days} + train {params.train_days} + gap "
            f"{params.gap_days} + test {params.test_days}), got {available} days "
            f"({data_start.date()}..{(data_end - day).date()})"
        )
    test_start = data_end - params.test_days * day
    gap_start = test_start - params.gap_days * day
    return SplitWindows(
        data_start=data_start,
        data_end=data_end,
        train_start=gap_start - params.train_days * day,
        validation_start=gap_start - params.validation_days * day,
        gap_start=gap_start,
        test_start=test_start,
    )


def split_by_time(df: pd.DataFrame, params: TrainParams) -> TimeSplit:
    """Split a training set by ``tx_datetime`` into train / validation / test windows."""
    if TX_DATETIME not in df.columns:
        raise SplitError(f"{TX_DATETIME}: column missing from the training set")
    if df.empty:
        raise SplitError(f"{TX_DATETIME}: the training set has no rows")
    when = pd.to_datetime(df[TX_DATETIME])
    windows = split_windows(when.min(), when.max(), params)

    def rows(start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        return df.loc[(when >= start) & (when < end)].reset_index(drop=True)

    return TimeSplit(
        train=rows(windows.train_start, windows.validation_start),
        validation=rows(windows.validation_start, windows.gap_start),
        test=rows(windows.test_start, windows.data_end),
        windows=windows,
    )
