"""Transaction simulator: the Fraud-Detection-Handbook's generative process, vectorised.

Written from the process described in chapter 3 of the Fraud-Detection-Handbook
(https://fraud-detection-handbook.github.io/): customers and terminals live on a 100x100
grid; a customer pays at terminals within ``radius``; each day a customer makes a Poisson
number of payments around noon, with amounts drawn around their own mean. Three fraud
scenarios are added on top:

1. every amount over 220 is fraud;
2. each day 2 random terminals are compromised for the next 28 days: all their
   transactions are fraud;
3. each day 3 random customers are compromised for the next 14 days: a third of their
   transactions are fraud and have their amount multiplied by 5.

Unlike the handbook's per-customer Python loops, each day is generated with numpy for all
customers at once, and every day draws from its own random stream keyed by
``(seed, day)``. So a day's traffic depends only on the seed, the profiles and the day
index: ``simulate_next_days`` continues a simulated history exactly as a longer
simulation would have, and live traffic is reproducible.

Drift scenarios (for *live* traffic, see ``params.yaml``) are applied on top of the same
base traffic from a separate random stream, so with and without drift the underlying
payments are the same and a drift changes only what it says it changes.

This module generates the base traffic and runs the days; the fraud scenarios, the drift
knobs and the label events live in :mod:`data.scenarios`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from data.scenarios import (
    AMOUNT_SHIFT_PER_STRENGTH,
    DAY_FIELDS,
    NIGHT_END_S,
    NIGHT_SHIFT_SHARE_PER_STRENGTH,
    SECONDS_PER_DAY,
    TERMINAL_COMPROMISE_DAYS,
    UNSEEN_TERMINAL_SHARE_PER_STRENGTH,
    Compromises,
    DayTraffic,
    add_frauds,
    card_testing,
    card_testing_bursts,
    draw_compromises,
)
from data.schema import (
    CUSTOMER_ID,
    TERMINAL_ID,
    TRANSACTION_COLUMNS,
    TRANSACTION_DTYPES,
    TRANSACTION_ID,
    TX_AMOUNT,
    TX_DATETIME,
    TX_FRAUD,
    TX_FRAUD_SCENARIO,
)
from fraudops.config import DriftScenario, SimulateParams

GRID_SIZE: Final = 100.0

#: Time of day: normal around noon; draws outside the day are dropped (as the handbook does).
TIME_OF_DAY_MEAN_S: Final = SECONDS_PER_DAY / 2
TIME_OF_DAY_STD_S: Final = 20_000.0

# Independent random streams: changing one part of the process never reshuffles another.
_STREAM_CUSTOMERS: Final = 1
_STREAM_TERMINALS: Final = 2
_STREAM_TRAFFIC: Final = 3
_STREAM_COMPROMISE: Final = 4
_STREAM_DRIFT: Final = 5
# Day indices may be negative (live traffic for data that predates start_date);
# SeedSequence wants non-negative entropy.
_DAY_KEY_OFFSET: Final = 1 << 31


def _rng(seed: int, stream: int, day: int | None = None) -> np.random.Generator:
    """A generator for one (seed, stream[, day]) key."""
    key = [seed & 0xFFFF_FFFF_FFFF_FFFF, stream]
    if day is not None:
        key.append(day + _DAY_KEY_OFFSET)
    return np.random.default_rng(np.random.SeedSequence(key))


# --------------------------------------------------------------------------- profiles


def generate_customer_profiles(n_customers: int, seed: int) -> pd.DataFrame:
    """Customer profiles: location, amount habits (mean, std = mean/2) and daily tx rate."""
    rng = _rng(seed, _STREAM_CUSTOMERS)
    mean_amount = rng.uniform(5.0, 100.0, n_customers)
    return pd.DataFrame(
        {
            CUSTOMER_ID: np.arange(n_customers, dtype=np.int64),
            "x_customer": rng.uniform(0.0, GRID_SIZE, n_customers),
            "y_customer": rng.uniform(0.0, GRID_SIZE, n_customers),
            "mean_amount": mean_amount,
            "std_amount": mean_amount / 2.0,
            "mean_nb_tx_per_day": rng.uniform(0.0, 4.0, n_customers),
        }
    )


def generate_terminal_profiles(n_terminals: int, seed: int) -> pd.DataFrame:
    """Terminal profiles: a location on the grid."""
    rng = _rng(seed, _STREAM_TERMINALS)
    return pd.DataFrame(
        {
            TERMINAL_ID: np.arange(n_terminals, dtype=np.int64),
            "x_terminal": rng.uniform(0.0, GRID_SIZE, n_terminals),
            "y_terminal": rng.uniform(0.0, GRID_SIZE, n_terminals),
        }
    )


def terminals_within_radius(
    customers: pd.DataFrame, terminals: pd.DataFrame, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Each customer's usable terminals (distance < radius) in CSR form.

    Returns ``(offsets, terminal_ids)``: customer ``c`` may use
    ``terminal_ids[offsets[c]:offsets[c + 1]]``. Computed in blocks of customers so the
    distance matrix never exceeds a few million cells.
    """
    cxy = customers[["x_customer", "y_customer"]].to_numpy()
    txy = terminals[["x_terminal", "y_terminal"]].to_numpy()
    terminal_ids = terminals[TERMINAL_ID].to_numpy()
    block = max(1, 4_000_000 // max(len(txy), 1))
    ids_per_block: list[np.ndarray] = []
    counts = np.zeros(len(cxy), dtype=np.int64)
    for start in range(0, len(cxy), block):
        d2 = ((cxy[start : start + block, None, :] - txy[None, :, :]) ** 2).sum(axis=2)
        rows, cols = np.nonzero(d2 < radius * radius)  # row-major: grouped by customer
        counts[start : start + block] = np.bincount(rows, minlength=len(d2))
        ids_per_block.append(terminal_ids[cols])
    offsets = np.concatenate([[0], np.cumsum(counts)])
    flat = np.concatenate(ids_per_block) if ids_per_block else np.empty(0, np.int64)
    return offsets, flat.astype(np.int64)


@dataclass(frozen=True)
class SimulationWorld:
    """Everything fixed by the seed: profiles and who can pay where."""

    customers: pd.DataFrame
    terminals: pd.DataFrame
    terminal_offsets: np.ndarray
    available_terminals: np.ndarray

    @property
    def n_customers(self) -> int:
        """Number of customer profiles."""
        return len(self.customers)

    @property
    def n_terminals(self) -> int:
        """Number of known terminal profiles (ids 0..n-1)."""
        return len(self.terminals)


def build_world(params: SimulateParams) -> SimulationWorld:
    """Customer and terminal profiles for ``params.seed`` and the terminals each may use."""
    customers = generate_customer_profiles(params.n_customers, params.seed)
    terminals = generate_terminal_profiles(params.n_terminals, params.seed)
    offsets, flat = terminals_within_radius(customers, terminals, params.radius)
    return SimulationWorld(customers, terminals, offsets, flat)


# --------------------------------------------------------------------------- compromises


def _draw_compromises(
    seed: int, days: range, n_terminals: int, n_customers: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Scenarios 2 and 3's draws for ``days``, each day from its own compromise stream."""
    day_rngs = (_rng(seed, _STREAM_COMPROMISE, day) for day in days)
    return draw_compromises(day_rngs, n_terminals, n_customers)


def compromised_on(
    params: SimulateParams, day: int, origin_day: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Terminal and customer ids compromised on day index ``day`` (day 0 = start_date).

    Compromises are drawn from ``origin_day`` on (the first simulated day); the handbook's
    world starts clean, so the first month ramps up.
    """
    first = max(origin_day, day - TERMINAL_COMPROMISE_DAYS + 1)
    t, c = _draw_compromises(
        params.seed, range(first, day + 1), params.n_terminals, params.n_customers
    )
    return Compromises(first, t, c).active(day)


# --------------------------------------------------------------------------- one day


def _genuine_traffic(world: SimulationWorld, seed: int, day: int) -> tuple[DayTraffic, np.ndarray]:
    """One day of genuine payments for all customers, plus the scenario-3 uniform draws."""
    rng = _rng(seed, _STREAM_TRAFFIC, day)
    customers = world.customers
    n_available = np.diff(world.terminal_offsets)
    counts = rng.poisson(customers["mean_nb_tx_per_day"].to_numpy())
    # A customer with no terminal in reach cannot pay anywhere (the handbook drops them too).
    counts[n_available == 0] = 0
    cust = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    n = cust.size
    # int() truncates toward zero like the handbook's int(np.random.normal(...)).
    seconds = rng.normal(TIME_OF_DAY_MEAN_S, TIME_OF_DAY_STD_S, n).astype(np.int64)
    mean = customers["mean_amount"].to_numpy()[cust]
    amount = rng.normal(mean, customers["std_amount"].to_numpy()[cust])
    negative = amount < 0
    amount[negative] = rng.uniform(0.0, 2.0 * mean[negative])
    pick = (rng.random(n) * n_available[cust]).astype(np.int64)
    terminal = world.available_terminals[world.terminal_offsets[cust] + pick]
    takeover_draw = rng.random(n)  # scenario 3: drawn for every payment so streams stay aligned
    traffic = DayTraffic(
        seconds=seconds,
        customer_id=cust,
        terminal_id=terminal,
        amount=np.round(amount, 2),
        fraud=np.zeros(n, np.int8),
        scenario=np.zeros(n, np.int8),
    )
    in_day = (seconds > 0) & (seconds < SECONDS_PER_DAY)
    return traffic.subset(in_day), takeover_draw[in_day]


def _simulate_day(
    world: SimulationWorld,
    seed: int,
    day: int,
    compromises: Compromises,
    drift: DriftScenario,
    strength: float,
    first_unseen_terminal_id: int,
) -> DayTraffic:
    traffic, takeover_draw = _genuine_traffic(world, seed, day)
    drift_rng = _rng(seed, _STREAM_DRIFT, day)
    n = traffic.seconds.size
    if drift == "night_shift":
        moved = drift_rng.random(n) < min(1.0, NIGHT_SHIFT_SHARE_PER_STRENGTH * strength)
        traffic.seconds[moved] = drift_rng.integers(1, NIGHT_END_S, int(moved.sum()))
    elif drift == "missing_values":
        # New terminals get ids above every known one: downstream they have no history.
        unseen = drift_rng.random(n) < min(1.0, UNSEEN_TERMINAL_SHARE_PER_STRENGTH * strength)
        traffic.terminal_id[unseen] = first_unseen_terminal_id + drift_rng.integers(
            0, world.n_terminals, int(unseen.sum())
        )
    compromised_terminals, compromised_customers = compromises.active(day)
    add_frauds(traffic, takeover_draw, compromised_terminals, compromised_customers)
    if drift == "amount_shift":
        genuine = traffic.fraud == 0
        factor = 1.0 + AMOUNT_SHIFT_PER_STRENGTH * strength
        traffic.amount[genuine] = np.round(traffic.amount[genuine] * factor, 2)
    elif drift in ("new_fraud_pattern", "card_testing"):
        if drift == "new_fraud_pattern":
            testing = card_testing(drift_rng, strength, world.n_customers, world.n_terminals)
        else:
            testing = card_testing_bursts(
                drift_rng, strength, world.terminal_offsets, world.available_terminals
            )
        traffic = DayTraffic(
            *(np.concatenate([getattr(traffic, f), getattr(testing, f)]) for f in DAY_FIELDS)
        )
    return traffic.subset(np.argsort(traffic.seconds, kind="stable"))


# --------------------------------------------------------------------------- public API


def _simulate_days(
    params: SimulateParams,
    first_day: int,
    n_days: int,
    first_transaction_id: int,
    drift: DriftScenario,
    first_unseen_terminal_id: int | None = None,
    origin_day: int = 0,
    progress: bool = False,
) -> pd.DataFrame:
    world = build_world(params)
    draw_from = max(origin_day, first_day - TERMINAL_COMPROMISE_DAYS + 1)
    t, c = _draw_compromises(
        params.seed, range(draw_from, first_day + n_days), world.n_terminals, world.n_customers
    )
    compromises = Compromises(draw_from, t, c)
    unseen_from = (
        world.n_terminals if first_unseen_terminal_id is None else first_unseen_terminal_id
    )
    days: list[tuple[int, DayTraffic]] = []
    for day in tqdm(
        range(first_day, first_day + n_days), desc="simulating", unit="day", disable=not progress
    ):
        traffic = _simulate_day(
            world, params.seed, day, compromises, drift, params.drift_strength, unseen_from
        )
        days.append((day, traffic))
    return _to_frame(days, params, first_transaction_id)


def _to_frame(
    days: list[tuple[int, DayTraffic]], params: SimulateParams, first_transaction_id: int
) -> pd.DataFrame:
    start_ns = pd.Timestamp(params.start_date).value
    seconds = np.concatenate(
        [t.seconds + day * SECONDS_PER_DAY for day, t in days] or [np.empty(0, np.int64)]
    )

    def column(field: str, dtype: str) -> np.ndarray:
        parts = [getattr(t, field) for _, t in days]
        return np.concatenate(parts).astype(dtype) if parts else np.empty(0, dtype)

    n = seconds.size
    frame = pd.DataFrame(
        {
            TRANSACTION_ID: np.arange(
                first_transaction_id, first_transaction_id + n, dtype=np.int64
            ),
            TX_DATETIME: (start_ns + seconds * 1_000_000_000).astype("datetime64[ns]"),
            CUSTOMER_ID: column("customer_id", "int64"),
            TERMINAL_ID: column("terminal_id", "int64"),
            TX_AMOUNT: column("amount", "float64"),
            TX_FRAUD: column("fraud", "int8"),
            TX_FRAUD_SCENARIO: column("scenario", "int8"),
        }
    )
    return frame[list(TRANSACTION_COLUMNS)].astype(TRANSACTION_DTYPES)


def simulate_transactions(
    params: SimulateParams, *, progress: bool = False, drift: DriftScenario = "none"
) -> pd.DataFrame:
    """Simulate ``params.n_days`` days of labelled transactions from ``params.start_date``.

    Returns the schema's columns and dtypes, sorted by ``tx_datetime`` with
    ``transaction_id`` 0..n-1 in time order; the same params give an identical frame.
    ``params.drift`` is for live traffic (see :func:`simulate_next_days`) and is not
    applied here; pass ``drift`` to build a drifted history on purpose.
    """
    return _simulate_days(
        params,
        first_day=0,
        n_days=params.n_days,
        first_transaction_id=0,
        drift=drift,
        progress=progress,
    )


def simulate_next_days(
    existing: pd.DataFrame,
    n_days: int,
    params: SimulateParams,
    drift: DriftScenario | None = None,
    *,
    progress: bool = False,
) -> pd.DataFrame:
    """Live traffic: the ``n_days`` days right after the last day of ``existing``.

    Same customers and terminals (from ``params.seed``); transaction ids continue after
    ``existing``'s largest. Terminals and customers compromised before the first new day
    stay compromised for the rest of their window, so when ``existing`` was simulated with
    the same params and no drift, the result equals those days of a longer simulation.
    ``drift`` defaults to ``params.drift`` (scaled by ``params.drift_strength``).
    """
    if n_days < 1:
        raise ValueError(f"n_days: must be >= 1, got {n_days}")
    if existing.empty:
        raise ValueError("existing: needs at least one transaction to continue after")
    last_day = pd.Timestamp(existing[TX_DATETIME].max()).normalize()
    first_day = (last_day - pd.Timestamp(params.start_date)).days + 1
    known_terminals = int(existing[TERMINAL_ID].max()) + 1
    return _simulate_days(
        params,
        first_day=first_day,
        n_days=n_days,
        first_transaction_id=int(existing[TRANSACTION_ID].max()) + 1,
        drift=params.drift if drift is None else drift,
        first_unseen_terminal_id=max(params.n_terminals, known_terminals),
        # Data that predates start_date (your own) starts its compromises with the live days.
        origin_day=min(0, first_day),
        progress=progress,
    )
