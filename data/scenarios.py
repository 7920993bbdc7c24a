"""Fraud scenarios and drifts injected into a day of base traffic, and the label events.

The handbook's three fraud scenarios (see :mod:`data.simulate`) label a day's genuine
payments; the card-testing scenarios (4: night-time tests on stolen cards, 5: bursts of
small payments within minutes) add fraudulent payments of their own; the drift knobs say
how far each live-traffic drift moves the data. :func:`label_events` turns labelled
transactions into the chargeback feed. Random draws come from the generators the caller
passes in, so the simulator decides which random stream each scenario uses.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from data.schema import TERMINAL_ID, TRANSACTION_ID, TX_DATETIME, TX_FRAUD

SECONDS_PER_DAY: Final = 86_400

#: Scenario 1: any amount above this is fraud.
FRAUD_AMOUNT_THRESHOLD: Final = 220.0
#: Scenario 2: terminals compromised per day, and for how many days.
COMPROMISED_TERMINALS_PER_DAY: Final = 2
TERMINAL_COMPROMISE_DAYS: Final = 28
#: Scenario 3: customers compromised per day, for how many days, share of their
#: transactions taken over, and the fraudster's amount multiplier.
COMPROMISED_CUSTOMERS_PER_DAY: Final = 3
CUSTOMER_COMPROMISE_DAYS: Final = 14
CUSTOMER_COMPROMISE_SHARE: Final = 1 / 3
CUSTOMER_COMPROMISE_MULTIPLIER: Final = 5.0

#: Night hours for the drift scenarios: [0h, 6h), the same cut as the tx_during_night feature.
NIGHT_END_S: Final = 6 * 3600
#: Drift knobs at drift_strength = 1 (each scales linearly with the strength).
AMOUNT_SHIFT_PER_STRENGTH: Final = 0.5
NIGHT_SHIFT_SHARE_PER_STRENGTH: Final = 0.3
UNSEEN_TERMINAL_SHARE_PER_STRENGTH: Final = 0.15
#: Scenario 4 (card testing): victims per day as a share of customers, tests per victim,
#: and the small amounts fraudsters use to check a stolen card works.
CARD_TESTING_VICTIM_SHARE_PER_STRENGTH: Final = 0.004
CARD_TESTING_TX_PER_VICTIM: Final = (2, 8)
CARD_TESTING_AMOUNT: Final = (0.5, 5.0)
#: Card-testing bursts: victims per day as a share of customers, payments per burst, the
#: burst's length, and the small amounts a fraudster tries before the big one.
CARD_TESTING_BURST_VICTIM_SHARE_PER_STRENGTH: Final = 0.004
CARD_TESTING_BURST_TX: Final = (5, 15)
CARD_TESTING_BURST_SECONDS: Final = 600
CARD_TESTING_BURST_AMOUNT: Final = (0.5, 5.0)


# --------------------------------------------------------------------------- one day's traffic


@dataclass
class DayTraffic:
    """One day's payments as parallel arrays (seconds into the day, ids, amount, labels)."""

    seconds: np.ndarray
    customer_id: np.ndarray
    terminal_id: np.ndarray
    amount: np.ndarray
    fraud: np.ndarray
    scenario: np.ndarray

    def subset(self, mask_or_order: np.ndarray) -> DayTraffic:
        """The same day restricted to (or reordered by) a mask or index array."""
        return DayTraffic(*(getattr(self, f)[mask_or_order] for f in DAY_FIELDS))


DAY_FIELDS: Final = ("seconds", "customer_id", "terminal_id", "amount", "fraud", "scenario")


# --------------------------------------------------------------------------- compromises


@dataclass(frozen=True)
class Compromises:
    """Terminals (scenario 2) and customers (scenario 3) drawn on each day."""

    first_day: int
    terminals: list[np.ndarray]
    customers: list[np.ndarray]

    def active(self, day: int) -> tuple[np.ndarray, np.ndarray]:
        """Terminals and customers compromised on ``day`` (drawn within their window)."""

        def window(draws: list[np.ndarray], length: int) -> np.ndarray:
            lo = max(self.first_day, day - length + 1) - self.first_day
            hi = day - self.first_day + 1
            return np.unique(np.concatenate(draws[lo:hi])) if hi > lo else np.empty(0, np.int64)

        return (
            window(self.terminals, TERMINAL_COMPROMISE_DAYS),
            window(self.customers, CUSTOMER_COMPROMISE_DAYS),
        )


def draw_compromises(
    day_rngs: Iterable[np.random.Generator], n_terminals: int, n_customers: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The terminals and customers compromised on each day, one generator per day."""
    terminals, customers = [], []
    for rng in day_rngs:
        n_t = min(COMPROMISED_TERMINALS_PER_DAY, n_terminals)
        n_c = min(COMPROMISED_CUSTOMERS_PER_DAY, n_customers)
        terminals.append(rng.choice(n_terminals, size=n_t, replace=False).astype(np.int64))
        customers.append(rng.choice(n_customers, size=n_c, replace=False).astype(np.int64))
    return terminals, customers


# --------------------------------------------------------------------------- fraud scenarios


def add_frauds(
    traffic: DayTraffic,
    takeover_draw: np.ndarray,
    compromised_terminals: np.ndarray,
    compromised_customers: np.ndarray,
) -> None:
    """Label the three handbook scenarios in place (later scenarios override earlier)."""
    s1 = traffic.amount > FRAUD_AMOUNT_THRESHOLD
    traffic.fraud[s1], traffic.scenario[s1] = 1, 1
    s2 = np.isin(traffic.terminal_id, compromised_terminals)
    traffic.fraud[s2], traffic.scenario[s2] = 1, 2
    s3 = np.isin(traffic.customer_id, compromised_customers) & (
        takeover_draw < CUSTOMER_COMPROMISE_SHARE
    )
    traffic.amount[s3] = np.round(traffic.amount[s3] * CUSTOMER_COMPROMISE_MULTIPLIER, 2)
    traffic.fraud[s3], traffic.scenario[s3] = 1, 3


def card_testing(
    rng: np.random.Generator, strength: float, n_customers: int, n_terminals: int
) -> DayTraffic:
    """Scenario 4: small night-time payments on stolen cards at terminals all over the grid.

    The victims are ordinary customers and the amounts are below their usual spend, so
    neither the amount rule nor the compromised-terminal/customer history catches it.
    """
    expected_victims = CARD_TESTING_VICTIM_SHARE_PER_STRENGTH * strength * n_customers
    n_victims = min(int(rng.poisson(expected_victims)), n_customers)
    victims = rng.choice(n_customers, size=n_victims, replace=False).astype(np.int64)
    lo, hi = CARD_TESTING_TX_PER_VICTIM
    cust = np.repeat(victims, rng.integers(lo, hi + 1, n_victims))
    n = cust.size
    return DayTraffic(
        seconds=rng.integers(1, NIGHT_END_S, n).astype(np.int64),
        customer_id=cust,
        terminal_id=rng.integers(0, n_terminals, n).astype(np.int64),
        amount=np.round(rng.uniform(*CARD_TESTING_AMOUNT, n), 2),
        fraud=np.ones(n, np.int8),
        scenario=np.full(n, 4, np.int8),
    )


def card_testing_bursts(
    rng: np.random.Generator,
    strength: float,
    terminal_offsets: np.ndarray,
    available_terminals: np.ndarray,
) -> DayTraffic:
    """Scenario 5: a stolen card is tested with a burst of small payments within minutes.

    Each amount alone looks harmless (below the customer's usual spend, at terminals in
    their area); only how many payments the card made in the last minutes gives it away --
    a velocity feature, and only when the online state moves with every payment.
    ``terminal_offsets`` / ``available_terminals`` say which terminals each customer may
    use (see :func:`data.simulate.terminals_within_radius`).
    """
    n_customers = len(terminal_offsets) - 1
    expected = CARD_TESTING_BURST_VICTIM_SHARE_PER_STRENGTH * strength * n_customers
    n_victims = min(int(rng.poisson(expected)), n_customers)
    reachable = np.flatnonzero(np.diff(terminal_offsets) > 0)
    victims = rng.choice(reachable, size=min(n_victims, len(reachable)), replace=False)
    lo, hi = CARD_TESTING_BURST_TX
    per_victim = rng.integers(lo, hi + 1, len(victims))
    cust = np.repeat(victims.astype(np.int64), per_victim)
    start = np.repeat(
        rng.integers(1, SECONDS_PER_DAY - CARD_TESTING_BURST_SECONDS, len(victims)), per_victim
    )
    seconds = start + rng.integers(0, CARD_TESTING_BURST_SECONDS, cust.size)
    n_available = np.diff(terminal_offsets)[cust]
    pick = (rng.random(cust.size) * n_available).astype(np.int64)
    return DayTraffic(
        seconds=seconds.astype(np.int64),
        customer_id=cust,
        terminal_id=available_terminals[terminal_offsets[cust] + pick],
        amount=np.round(rng.uniform(*CARD_TESTING_BURST_AMOUNT, cust.size), 2),
        fraud=np.ones(cust.size, np.int8),
        scenario=np.full(cust.size, 5, np.int8),
    )


# --------------------------------------------------------------------------- label events

#: Columns of a label event: which transaction (and terminal), when it happened, when the
#: chargeback / confirmed fraud became known, and the label.
LABEL_EVENT_COLUMNS: Final = (
    TRANSACTION_ID,
    TERMINAL_ID,
    TX_DATETIME,
    "label_datetime",
    TX_FRAUD,
)


def label_events(transactions: pd.DataFrame, label_delay_days: int) -> pd.DataFrame:
    """The chargebacks of ``transactions``: one event per fraud, ``label_delay_days`` later.

    Genuine transactions send no event (no chargeback means genuine), as in a card
    issuer's feed; events are in arrival order.
    """
    frauds = transactions.loc[transactions[TX_FRAUD] == 1]
    events = pd.DataFrame(
        {
            TRANSACTION_ID: frauds[TRANSACTION_ID].to_numpy(np.int64),
            TERMINAL_ID: frauds[TERMINAL_ID].to_numpy(np.int64),
            TX_DATETIME: frauds[TX_DATETIME].to_numpy(),
            "label_datetime": (
                frauds[TX_DATETIME] + pd.Timedelta(days=label_delay_days)
            ).to_numpy(),
            TX_FRAUD: np.ones(len(frauds), np.int8),
        }
    )
    return events.sort_values("label_datetime", kind="stable").reset_index(drop=True)
