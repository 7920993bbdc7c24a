"""The rows recent transactions were scored with, kept so their explanation explains that score.

An explanation answers "why did this transaction get this decision?". The honest input is
the feature row the model scored, not a row recomputed later: by then a late payment of
the same customer, a label or a materialisation may have moved the online state, and the
recomputed row would explain a score nobody was given. The transformer keeps the last
``capacity`` scored rows (LRU) by the whole transaction -- id, time, customer, terminal,
amount: a transaction re-sent with another amount is another transaction -- and an
``:explain`` whose transactions were all scored here sends those rows to the explainer
without touching the online state. Anything else (never scored here, evicted, scored by
another replica) is served its rows as a prediction would be, writing nothing.

This is also the cheap path: a dictionary read instead of a state pass (issue #15).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from data.schema import CUSTOMER_ID, TERMINAL_ID, TRANSACTION_ID, TX_AMOUNT, TX_DATETIME
from serving.feature_batch import FeatureBatch

#: what identifies a scored transaction: all it was scored on
TransactionKey = tuple[Any, ...]


def transaction_key(transaction: dict[str, Any]) -> TransactionKey:
    """The key of a transaction as :func:`serving.schema.transaction_json` gives it."""
    return tuple(
        transaction[column]
        for column in (TRANSACTION_ID, TX_DATETIME, CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT)
    )


class ServedRows:
    """``remember`` a scored batch's rows; ``recall`` them for the same transactions."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        # key -> (feature row, unknown customer, unknown terminal)
        self._rows: OrderedDict[TransactionKey, tuple[np.ndarray, bool, bool]] = OrderedDict()
        self._lock = threading.Lock()  # the event loop writes; a test or thread may read

    def __len__(self) -> int:
        return len(self._rows)

    def remember(self, batch: FeatureBatch) -> None:
        """Keep each transaction's scored row (a later score of the same one replaces it)."""
        if self.capacity <= 0:
            return
        with self._lock:
            for i, transaction in enumerate(batch.transactions):
                key = transaction_key(transaction)
                self._rows[key] = (
                    batch.values[i].copy(),  # not a view: the batch's array is not kept alive
                    bool(batch.unknown_customer[i]),
                    bool(batch.unknown_terminal[i]),
                )
                self._rows.move_to_end(key)
            while len(self._rows) > self.capacity:
                self._rows.popitem(last=False)

    def recall(self, transactions: list[dict[str, Any]]) -> FeatureBatch | None:
        """The batch these transactions were scored with, or None unless every one was."""
        with self._lock:
            found = [self._rows.get(transaction_key(t)) for t in transactions]
        if not found or any(row is None for row in found):
            return None
        rows = [row for row in found if row is not None]  # all of them (checked above)
        return FeatureBatch(
            transactions,
            np.vstack([row[0] for row in rows]),
            np.array([row[1] for row in rows], dtype=bool),
            np.array([row[2] for row in rows], dtype=bool),
        )
