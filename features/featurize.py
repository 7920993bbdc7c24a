"""The featurize stage: Feast offline sources, the point-in-time training set, the online store.

``python -m features.featurize`` reads ``paths().validated_transactions`` and writes
``paths().customer_features`` and ``paths().terminal_features`` (the Feast offline sources)
and ``paths().training_set``; then it registers the feature repo and materialises the online
store up to the last transaction, so serving sees what the next transaction would see.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
from redis.exceptions import RedisError

from data.files import write_parquet_atomic
from features.definitions import (
    EVENT_TIMESTAMP,
    UNKNOWN_CUSTOMER,
    UNKNOWN_TERMINAL,
    build_training_set,
    compute_entity_features,
    state_horizon_days,
)
from features.live_state_engine import open_live_state
from features.online_state import seed_from_transactions
from fraudops.config import ConfigError, load_params
from fraudops.paths import paths


@dataclass(frozen=True)
class FeaturizeReport:
    """What the stage wrote and how long it took."""

    transactions: int
    customer_rows: int
    terminal_rows: int
    unknown_customer_rows: int
    unknown_terminal_rows: int
    online_store: str
    materialized_until: str
    live_state_transactions: int
    offline_seconds: float
    online_seconds: float

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict."""
        return asdict(self)


def write_offline(root: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Compute and write the offline sources and the training set; return the three tables."""
    where = paths(root)
    if not where.validated_transactions.exists():
        raise FileNotFoundError(
            f"{where.validated_transactions}: validated transactions not found "
            "(run `python -m data.validate`)"
        )
    params = load_params().featurize
    transactions = pd.read_parquet(where.validated_transactions)
    customer, terminal = compute_entity_features(transactions, params)
    training_set = build_training_set(transactions, customer, terminal)
    write_parquet_atomic(customer, where.customer_features)
    write_parquet_atomic(terminal, where.terminal_features)
    write_parquet_atomic(training_set, where.training_set)
    return customer, terminal, training_set


def live_state_horizon_days() -> int:
    """Days the live state keeps: the longest window plus ``params.yaml``'s label delay."""
    return state_horizon_days(load_params().featurize.label_delay_days)


def live_state_of(store):
    """The store's live state, over :func:`live_state_horizon_days`."""
    return open_live_state(store, live_state_horizon_days())


def seed_live_state(store, transactions: pd.DataFrame) -> int:
    """Rebuild the live online state (recent transactions, labels) from the versioned data.

    Materialisation and the state then agree: serving continues from the last transaction.
    """
    horizon = live_state_horizon_days()
    return seed_from_transactions(open_live_state(store, horizon), transactions, horizon)


def load_online(
    store, customer: pd.DataFrame, terminal: pd.DataFrame, transactions: pd.DataFrame
) -> tuple[pd.Timestamp, int]:
    """Load the online side from the versioned data: register, materialise, seed the state.

    The one way an online store is loaded -- by this stage, and by a deployment against
    its Redis (``make rehearse``). All three belong together: rows materialised without the
    live state they continue from give every transaction an empty history (wrong velocity,
    and a Feast row the transformer cannot tell is stale). Returns the materialisation end
    and the number of transactions the live state holds.
    """
    # Feast is imported here so that computing the training set alone never pays for it.
    from features.store import apply_definitions, materialize

    apply_definitions(store)
    # Up to the last row: every entity then holds the row its next transaction would see.
    last_row = max(customer[EVENT_TIMESTAMP].max(), terminal[EVENT_TIMESTAMP].max())
    materialize(store, last_row)
    return pd.Timestamp(last_row), seed_live_state(store, transactions)


def run(root: Path | None = None, online: str | None = None) -> FeaturizeReport:
    """The stage: offline sources + training set, then the online store (:func:`load_online`)."""
    # Feast is imported here so that computing the training set alone never pays for it.
    from features.store import feature_store

    started = time.perf_counter()
    customer, terminal, training_set = write_offline(root)
    offline_done = time.perf_counter()

    store = feature_store(paths(root).feature_repo, online=online)  # type: ignore[arg-type]
    last_row, live = load_online(store, customer, terminal, training_set)
    return FeaturizeReport(
        transactions=len(training_set),
        customer_rows=len(customer),
        terminal_rows=len(terminal),
        unknown_customer_rows=int(training_set[UNKNOWN_CUSTOMER].sum()),
        unknown_terminal_rows=int(training_set[UNKNOWN_TERMINAL].sum()),
        online_store=store.config.online_store.type,
        materialized_until=last_row.isoformat(),
        live_state_transactions=live,
        offline_seconds=round(offline_done - started, 2),
        online_seconds=round(time.perf_counter() - offline_done, 2),
    )


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m features.featurize``; exit 1 with one line on stderr on bad input."""
    parser = argparse.ArgumentParser(
        prog="python -m features.featurize", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--online",
        choices=("sqlite", "redis"),
        default=None,
        help="online store (default: $FRAUD_ONLINE_STORE, else sqlite)",
    )
    args = parser.parse_args(argv)
    try:
        report = run(online=args.online)
    except (ValueError, ConfigError, FileNotFoundError, RedisError) as exc:
        print(f"featurize failed: {exc}", file=sys.stderr)
        return 1
    print(
        f"features: {report.transactions} transactions -> {report.customer_rows} customer rows, "
        f"{report.terminal_rows} terminal rows ({report.offline_seconds}s); "
        f"{report.online_store} online store materialised until {report.materialized_until} "
        f"({report.online_seconds}s); live state seeded with "
        f"{report.live_state_transactions} recent transactions"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
