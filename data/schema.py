"""The ONE transaction schema.

Every other module (simulator, ingestion, batch validation, the serving request models, the
drift job) imports the column names, dtypes and field rules from here, so a renamed or
re-typed column is a one-line change that every consumer sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

TRANSACTION_ID: Final = "transaction_id"
TX_DATETIME: Final = "tx_datetime"
CUSTOMER_ID: Final = "customer_id"
TERMINAL_ID: Final = "terminal_id"
TX_AMOUNT: Final = "tx_amount"
TX_FRAUD: Final = "tx_fraud"
TX_FRAUD_SCENARIO: Final = "tx_fraud_scenario"

#: What a client sends to score one transaction (the serving request schema).
REQUEST_COLUMNS: Final[tuple[str, ...]] = (
    TRANSACTION_ID,
    TX_DATETIME,
    CUSTOMER_ID,
    TERMINAL_ID,
    TX_AMOUNT,
)
#: Labels: known only later (chargebacks), never sent at request time.
LABEL_COLUMNS: Final[tuple[str, ...]] = (TX_FRAUD, TX_FRAUD_SCENARIO)
#: A labelled transaction as stored in ``data/raw`` and ``data/validated``.
TRANSACTION_COLUMNS: Final[tuple[str, ...]] = REQUEST_COLUMNS + LABEL_COLUMNS

#: pandas dtypes of a stored transaction table (datetimes are naive UTC).
TRANSACTION_DTYPES: Final[dict[str, str]] = {
    TRANSACTION_ID: "int64",
    TX_DATETIME: "datetime64[ns]",
    CUSTOMER_ID: "int64",
    TERMINAL_ID: "int64",
    TX_AMOUNT: "float64",
    TX_FRAUD: "int8",
    TX_FRAUD_SCENARIO: "int8",
}

#: Fraud scenarios of the generative process (0 = genuine).
FRAUD_SCENARIOS: Final[dict[int, str]] = {
    0: "genuine",
    1: "amount over 220",
    2: "compromised terminal (28 days)",
    3: "compromised customer (14 days, a third of amounts x5)",
    4: "new pattern (drift scenario)",
    5: "card testing: a burst of small payments on a stolen card within minutes",
}


@dataclass(frozen=True)
class FieldRule:
    """The value rule for one column; shared by batch validation and request validation."""

    column: str
    nullable: bool = False
    min_value: float | None = None
    max_value: float | None = None
    allowed: tuple[int, ...] | None = None


#: Upper bound on a single amount: beyond it a value is a data error, not a big purchase.
MAX_TX_AMOUNT: Final = 1_000_000.0

FIELD_RULES: Final[dict[str, FieldRule]] = {
    TRANSACTION_ID: FieldRule(TRANSACTION_ID, min_value=0),
    TX_DATETIME: FieldRule(TX_DATETIME),
    CUSTOMER_ID: FieldRule(CUSTOMER_ID, min_value=0),
    TERMINAL_ID: FieldRule(TERMINAL_ID, min_value=0),
    TX_AMOUNT: FieldRule(TX_AMOUNT, min_value=0.0, max_value=MAX_TX_AMOUNT),
    TX_FRAUD: FieldRule(TX_FRAUD, allowed=(0, 1)),
    TX_FRAUD_SCENARIO: FieldRule(TX_FRAUD_SCENARIO, allowed=tuple(FRAUD_SCENARIOS)),
}
