"""The time split: anchored at the end of the data, gap before test, never random."""

from __future__ import annotations

import pandas as pd
import pytest

from data.schema import TX_DATETIME
from fraudops.config import TrainParams
from training.split import SplitError, days_needed, split_by_time


def daily_frame(n_days: int, per_day: int = 3, start: str = "2026-01-01") -> pd.DataFrame:
    """``per_day`` transactions a day at 00:00, 12:00, 23:59:59 (window edges included)."""
    days = pd.date_range(start, periods=n_days, freq="D")
    offsets = [
        pd.Timedelta(0),
        pd.Timedelta(hours=12),
        pd.Timedelta(hours=23, minutes=59, seconds=59),
    ]
    when = [day + offsets[i % 3] for day in days for i in range(per_day)]
    return pd.DataFrame({TX_DATETIME: when, "row": range(len(when))})


DEFAULTS = TrainParams()  # burn-in 30, train 69 (validation 14), gap 7, test 14


def test_default_windows_fit_the_default_simulation_length() -> None:
    assert days_needed(DEFAULTS) == 120


def test_windows_are_anchored_at_the_end_of_the_data() -> None:
    split = split_by_time(daily_frame(130), DEFAULTS)
    w = split.windows.as_dict()
    # data: 2026-01-01 .. 2026-05-10 (130 days)
    assert w["test"] == "2026-04-27..2026-05-10"
    assert w["gap"] == "2026-04-20..2026-04-26"
    assert w["validation"] == "2026-04-06..2026-04-19"
    assert w["train"] == "2026-02-10..2026-04-05"  # 69 days before the gap
    assert len(split.test) == 14 * 3
    assert len(split.validation) == 14 * 3
    assert len(split.train) == (69 - 14) * 3


def test_parts_are_ordered_in_time_with_the_gap_and_burn_in_excluded() -> None:
    frame = daily_frame(120)
    split = split_by_time(frame, DEFAULTS)
    assert split.train[TX_DATETIME].max() < split.validation[TX_DATETIME].min()
    gap = (split.test[TX_DATETIME].min() - split.validation[TX_DATETIME].max()).days
    assert gap >= DEFAULTS.gap_days
    burn_in_end = frame[TX_DATETIME].min() + pd.Timedelta(days=DEFAULTS.burn_in_days)
    assert split.train[TX_DATETIME].min() >= burn_in_end
    used = len(split.train) + len(split.validation) + len(split.test)
    assert used == len(frame) - (DEFAULTS.burn_in_days + DEFAULTS.gap_days) * 3


def test_split_ignores_row_order() -> None:
    frame = daily_frame(120)
    shuffled = frame.sample(frac=1.0, random_state=1)
    a, b = split_by_time(frame, DEFAULTS), split_by_time(shuffled, DEFAULTS)
    assert set(a.test["row"]) == set(b.test["row"])
    assert set(a.train["row"]) == set(b.train["row"])


def test_too_short_data_names_days_needed_and_available() -> None:
    with pytest.raises(
        SplitError, match=r"need 120 days .* got 119 days \(2026-01-01\.\.2026-04-29\)"
    ):
        split_by_time(daily_frame(119), DEFAULTS)


def test_validation_must_fit_inside_the_training_window() -> None:
    with pytest.raises(SplitError, match="train.validation_days"):
        split_by_time(
            daily_frame(120), TrainParams(train_days=14, validation_days=14, burn_in_days=0)
        )


def test_missing_datetime_column_is_named() -> None:
    with pytest.raises(SplitError, match=TX_DATETIME):
        split_by_time(pd.DataFrame({"x": [1]}), DEFAULTS)
