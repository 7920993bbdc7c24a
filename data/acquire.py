"""The acquire stage: write the raw transactions, simulated or brought by you.

``python -m data.acquire [--source PATH]`` writes ``paths().raw_transactions`` from the
simulator (``params.data.source: simulate``) or from a CSV/Parquet file (a path in
``params.data.source``; ``--source`` overrides it).

``python -m data.acquire next-days --days N [--drift SCENARIO] [--out PATH]`` writes the
next N days of live traffic after the current raw data (same customers and terminals),
optionally with a drift scenario, for the drift and retraining loops.

Every write is atomic: a failure leaves the previous file as it was.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import get_args

import pandas as pd

from data.files import read_history, write_parquet_atomic
from data.ingest import read_transactions
from data.scenarios import label_events
from data.schema import TERMINAL_ID, TRANSACTION_ID, TX_DATETIME, TX_FRAUD
from data.simulate import simulate_next_days, simulate_transactions
from data.validate import DataValidationError
from fraudops.config import (
    ConfigError,
    DriftScenario,
    Params,
    load_params,
    params_path,
    project_root,
)
from fraudops.paths import paths

SIMULATE_SOURCE = "simulate"


def resolve_source(source: str) -> Path | None:
    """``None`` for the simulator, else the file path (relative paths from the project root)."""
    if source.strip().lower() == SIMULATE_SOURCE:
        return None
    path = Path(source).expanduser()
    return path if path.is_absolute() else project_root() / path


def acquire_transactions(
    params: Params, source: str | None = None, *, progress: bool = False
) -> pd.DataFrame:
    """The raw transactions: simulated, or read from ``source`` / ``params.data.source``."""
    path = resolve_source(source or params.data.source)
    if path is None:
        return simulate_transactions(params.simulate, progress=progress)
    return read_transactions(path)


_SOURCE_LINE = re.compile(
    r"^(data:\n(?:[ \t]+.*\n|[ \t]*#.*\n|\n)*?[ \t]+source:[ \t]*)(\S.*)$", re.MULTILINE
)


def set_source(params_file: Path, source: str) -> None:
    """Point ``data.source`` in ``params.yaml`` at ``source`` (comments kept), so DVC sees it.

    ``make data SOURCE=file`` uses this: the acquire stage reads ``data.source``, so changing
    it makes ``dvc repro`` re-acquire, and the choice is recorded in git with the params.
    """
    path = resolve_source(source)
    if path is not None and not path.exists():
        raise FileNotFoundError(f"data.source: {path} does not exist")
    text = params_file.read_text()
    value = source if path is None else str(path)
    updated, count = _SOURCE_LINE.subn(lambda m: m.group(1) + json.dumps(value), text, count=1)
    if count != 1:
        raise ValueError(f"{params_file}: no `source:` key under `data:` to update")
    params_file.write_text(updated)


def _describe(df: pd.DataFrame) -> str:
    if df.empty:
        return "0 transactions"
    days = df[TX_DATETIME].dt.normalize().nunique()
    return (
        f"{len(df)} transactions over {days} days "
        f"({df[TX_DATETIME].min():%Y-%m-%d} to {df[TX_DATETIME].max():%Y-%m-%d}), "
        f"fraud rate {df[TX_FRAUD].mean():.3%}"
    )


def _batch_name(df: pd.DataFrame) -> str:
    """``YYYYMMDD-YYYYMMDD.parquet``: live batches sort by date, so history reads in order."""
    return f"{df[TX_DATETIME].min():%Y%m%d}-{df[TX_DATETIME].max():%Y%m%d}.parquet"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data.acquire", description="Write the raw transactions (or live traffic)."
    )
    parser.add_argument(
        "--source",
        help="CSV/Parquet file to ingest, or 'simulate' (default: params.yaml data.source)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    sub = parser.add_subparsers(dest="command")
    use = sub.add_parser("set-source", help="set params.yaml data.source (a file, or 'simulate')")
    use.add_argument("source", help="CSV/Parquet path, or 'simulate'")
    nxt = sub.add_parser("next-days", help="simulate the next N days after the raw data")
    nxt.add_argument("--days", type=int, required=True, help="number of days to simulate")
    nxt.add_argument(
        "--drift",
        choices=get_args(DriftScenario),
        help="drift scenario (default: params.yaml simulate.drift)",
    )
    nxt.add_argument(
        "--after",
        type=Path,
        help="continue after this transactions file (default: raw + live history)",
    )
    nxt.add_argument(
        "--out",
        type=Path,
        help="output parquet (default: data/live/<first day>-<last day>.parquet)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; bad input exits 1 with one line on stderr."""
    args = _parser().parse_args(argv)
    progress = not args.no_progress
    try:
        params = load_params()
        where = paths()
        if args.command == "set-source":
            set_source(params_path(), args.source)
            print(f"params.yaml data.source = {args.source}")
            return 0
        if args.command == "next-days":
            # Only what continuing needs: the last time, the largest ids.
            needed = [TRANSACTION_ID, TX_DATETIME, TERMINAL_ID]
            if args.after:
                existing = read_transactions(args.after)[needed]
            else:
                existing = read_history(where.raw_transactions, where.live_dir, needed)
            df = simulate_next_days(
                existing, args.days, params.simulate, args.drift, progress=progress
            )
            out = write_parquet_atomic(df, args.out or where.live_dir / _batch_name(df))
            # Their chargebacks, as the label stream will deliver them (replayed by the demo).
            labels = label_events(df, params.featurize.label_delay_days)
            write_parquet_atomic(labels, where.live_labels_dir / out.name)
        else:
            df = acquire_transactions(params, args.source, progress=progress)
            out = write_parquet_atomic(df, where.raw_transactions)
    except (DataValidationError, ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"acquire failed: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {_describe(df)} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
