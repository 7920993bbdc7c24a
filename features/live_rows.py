"""One entity's feature row at one instant, from its retained transactions: the live path.

:mod:`features.definitions` computes every row of every entity at once (vectorised running
sums over millions of transactions: training, materialisation). A live state pass needs
one or two rows of one entity -- the row a transaction is served (the entity's last instant
before it) and the entity's newest row (what the online store gets) -- over a history of
tens to hundreds of transactions. There numpy's per-call overhead was the cost: ~40 array
calls per entity and pass, most of the transformer's state pass (issue #15). Here a row is
a few binary searches (:mod:`bisect`) and sums over the history's own lists.

Same windows, same rules as :func:`features.definitions.compute_entity_features` (the
reference: ``tests/features/test_live_rows.py`` holds the two to the same rows with
hypothesis); the sums are added in another order, so the floats agree to rounding, not bit
for bit (the training-serving check allows a relative 1e-6).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from typing import Final

from features.definitions import (
    CUSTOMER_FEATURES,
    CUSTOMER_MEAN_AMOUNT,
    CUSTOMER_TX_COUNT,
    TERMINAL_FEATURES,
    TERMINAL_RISK,
    TERMINAL_TX_COUNT,
    VELOCITY_AMOUNT,
    VELOCITY_TX_COUNT,
    VELOCITY_WINDOWS,
    WINDOWS_DAYS,
)
from features.online_state import DAY_US

#: The velocity windows in microseconds (whole microseconds: 10 minutes, 1 hour).
_VELOCITY_US: Final = tuple(length.value // 1_000 for _, length in VELOCITY_WINDOWS)


def _window(time_us: Sequence[int], end: int, upper_us: int, days: int) -> tuple[int, int]:
    """Positions ``[start, stop)`` of the transactions in ``(upper - days, upper]``."""
    stop = bisect_right(time_us, upper_us, 0, end)
    return bisect_right(time_us, upper_us - days * DAY_US, 0, stop), stop


def customer_row_at(
    time_us: Sequence[int], amount: Sequence[float], instant_us: int
) -> list[float]:
    """CUSTOMER_FEATURES after the customer's transactions up to ``instant_us`` (sorted
    ``time_us``): per window ``(s - w, s]`` the count and the mean amount."""
    end = bisect_right(time_us, instant_us)
    row: dict[str, float] = {}
    for days, count_name, mean_name in zip(WINDOWS_DAYS, CUSTOMER_TX_COUNT, CUSTOMER_MEAN_AMOUNT):
        start, stop = _window(time_us, end, instant_us, days)
        n = stop - start
        row[count_name] = float(n)
        row[mean_name] = sum(amount[start:stop]) / n if n else math.nan
    return [row[name] for name in CUSTOMER_FEATURES]


def terminal_row_at(
    time_us: Sequence[int],
    fraud: Sequence[float],
    instant_us: int,
    delay_days: int,
) -> list[float]:
    """TERMINAL_FEATURES after the terminal's transactions up to ``instant_us``: counts over
    ``(s - w, s]``, and the fraud share of those in ``(s - delay - w, s - delay]`` (labels
    known by then; NaN when there are none)."""
    end = bisect_right(time_us, instant_us)
    row: dict[str, float] = {}
    for days, count_name, risk_name in zip(WINDOWS_DAYS, TERMINAL_TX_COUNT, TERMINAL_RISK):
        start, stop = _window(time_us, end, instant_us, days)
        row[count_name] = float(stop - start)
        # Labels known at s: those of transactions at least the delay before it.
        start, stop = _window(time_us, end, instant_us - delay_days * DAY_US, days)
        labelled = stop - start
        row[risk_name] = sum(fraud[start:stop]) / labelled if labelled else math.nan
    return [row[name] for name in TERMINAL_FEATURES]


def last_instant_before(time_us: Sequence[int], when_us: int) -> int | None:
    """The newest instant strictly before ``when_us`` (the row a transaction then sees)."""
    k = bisect_left(time_us, when_us)
    return time_us[k - 1] if k else None


def customer_velocity_at(
    time_us: Sequence[int], amount: Sequence[float], when_us: int
) -> dict[str, float]:
    """VELOCITY_FEATURES of a transaction at ``when_us``: the customer's transactions and
    spend in ``[t - w, t)`` (one at the same instant is not counted)."""
    stop = bisect_left(time_us, when_us)
    columns: dict[str, float] = {}
    for length_us, count_name, amount_name in zip(_VELOCITY_US, VELOCITY_TX_COUNT, VELOCITY_AMOUNT):
        start = bisect_left(time_us, when_us - length_us, 0, stop)
        columns[count_name] = float(stop - start)
        columns[amount_name] = float(sum(amount[start:stop]))
    return columns
