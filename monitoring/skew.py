"""Training/serving skew on live traffic: served vectors vs the offline definition.

``python -m monitoring.skew`` (``make skew``) reads the prediction log, recomputes every
logged transaction's feature vector with ``features.definitions`` from the versioned data
(validated transactions plus the live batches), and compares them feature by feature:
equal within a relative tolerance of 1e-6, NaN equal to NaN. It reports the share of
transactions with any difference and the per-feature mismatch share, writes HTML + JSON
like the drift job, and publishes ``fraud_feature_skew_share`` (an alert fires above 1 %).
Exit 0: within the budget, 3: skew above it, 2: error.
"""

from __future__ import annotations

import argparse
import html
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry

from data.files import live_batches
from data.schema import TRANSACTION_COLUMNS, TRANSACTION_ID, TX_DATETIME
from features.definitions import FEATURE_NAMES
from fraudops.config import FeaturizeParams, load_params
from fraudops.paths import paths
from monitoring.outputs import build_summary, default_prediction_log_dir, exit_code, fail, publish
from monitoring.prometheus import add_gauge, push, pushgateway_url, write_textfile
from monitoring.window import MonitoringInputError, read_log, transaction_features

#: Two values are equal when they differ by at most this share of the offline value.
RELATIVE_TOLERANCE = 1e-6
#: Above this share of transactions with any difference, the job reports skew (exit 3).
DEFAULT_MAX_MISMATCH_SHARE = 0.01
#: Mismatching transactions listed in the report, for a human to follow up.
EXAMPLES = 20


@dataclass
class SkewResult:
    """Per transaction whether any feature differed, and the per-feature mismatch shares."""

    transactions: int
    unmatched: int
    mismatched: int
    feature_mismatch_share: dict[str, float]
    examples: pd.DataFrame

    @property
    def mismatch_share(self) -> float:
        """Share of compared transactions with at least one differing feature."""
        return self.mismatched / self.transactions if self.transactions else 0.0


def equal_values(served: np.ndarray, offline: np.ndarray) -> np.ndarray:
    """Element-wise equality: relative tolerance 1e-6, NaN equal to NaN."""
    close = np.isclose(served, offline, rtol=RELATIVE_TOLERANCE, atol=0.0)
    return close | (np.isnan(served) & np.isnan(offline))


def versioned_transactions(root: Path | None = None) -> pd.DataFrame:
    """The validated transactions plus every live batch (what the served traffic came from)."""

    where = paths(root)
    sources = [where.validated_transactions, *live_batches(where.live_dir)]
    present = [p for p in sources if p.exists()]
    if not present:
        raise MonitoringInputError(
            f"{where.validated_transactions}: no versioned transactions (run `make data`)"
        )
    frames = [pd.read_parquet(p, columns=list(TRANSACTION_COLUMNS)) for p in present]
    combined = pd.concat(frames, ignore_index=True).drop_duplicates(TRANSACTION_ID)
    return combined.sort_values(TX_DATETIME, kind="stable").reset_index(drop=True)


def read_transactions_source(source: str) -> pd.DataFrame:
    """Labelled transactions from a Parquet file or an object-store URI (``s3://...``)."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(source, columns=list(TRANSACTION_COLUMNS))
    except (OSError, ValueError) as exc:
        raise MonitoringInputError(f"{source}: cannot read the transactions ({exc})") from None
    frame = table.to_pandas().drop_duplicates(TRANSACTION_ID)
    return frame.sort_values(TX_DATETIME, kind="stable").reset_index(drop=True)


def compare_served(
    records: pd.DataFrame, transactions: pd.DataFrame, params: FeaturizeParams
) -> SkewResult:
    """Compare each logged vector with the offline definition for the same transaction."""
    missing = [name for name in FEATURE_NAMES if name not in records.columns]
    if missing:
        raise MonitoringInputError(f"{missing[0]}: feature missing from the prediction log")
    known = records[TRANSACTION_ID].isin(transactions[TRANSACTION_ID])
    logged = records.loc[known].reset_index(drop=True)
    if logged.empty:
        return SkewResult(0, int((~known).sum()), 0, dict.fromkeys(FEATURE_NAMES, 0.0), logged)
    # Everything up to the newest logged transaction feeds the windows; nothing after it can.
    until = logged[TX_DATETIME].max()
    offline = transaction_features(transactions[transactions[TX_DATETIME] <= until], params)
    offline = offline.set_index(TRANSACTION_ID).loc[logged[TRANSACTION_ID], list(FEATURE_NAMES)]
    served = logged[list(FEATURE_NAMES)].to_numpy(np.float64)
    expected = offline.to_numpy(np.float64)
    same = equal_values(served, expected)
    differs = ~same.all(axis=1)
    examples = logged.loc[differs, [TRANSACTION_ID, TX_DATETIME]].head(EXAMPLES).copy()
    if not examples.empty:
        rows = np.flatnonzero(differs)[:EXAMPLES]
        examples["features"] = [
            ", ".join(
                f"{FEATURE_NAMES[j]} served {served[r, j]:.6g} offline {expected[r, j]:.6g}"
                for j in np.flatnonzero(~same[r])
            )
            for r in rows
        ]
    return SkewResult(
        transactions=len(logged),
        unmatched=int((~known).sum()),
        mismatched=int(differs.sum()),
        feature_mismatch_share={
            name: float((~same[:, j]).mean()) for j, name in enumerate(FEATURE_NAMES)
        },
        examples=examples,
    )


def skew_gauges(summary: dict) -> CollectorRegistry:
    """The skew job's metrics from its JSON summary."""
    stats = summary["statistics"]
    registry = CollectorRegistry()
    add_gauge(
        registry,
        "fraud_feature_skew_share",
        "Share of logged transactions whose served vector differs from the offline one",
        [({}, stats["mismatch_share"])],
    )
    add_gauge(
        registry,
        "fraud_feature_skew_feature_share",
        "Share of logged transactions whose served value of a feature differs from offline",
        [
            ({"feature": feature}, share)
            for feature, share in stats["feature_mismatch_share"].items()
        ],
        labelnames=("feature",),
    )
    add_gauge(
        registry,
        "fraud_skew_last_run_timestamp_seconds",
        "When the skew job last finished",
        [({}, time.time())],
    )
    return registry


def _html(summary: dict, examples: pd.DataFrame) -> str:
    stats, window = summary["statistics"], summary["window"]
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{share:.4%}</td></tr>"
        for name, share in stats["feature_mismatch_share"].items()
    )
    listed = "".join(
        f"<tr><td>{int(r[TRANSACTION_ID])}</td><td>{html.escape(str(r[TX_DATETIME]))}</td>"
        f"<td>{html.escape(r['features'])}</td></tr>"
        for _, r in examples.iterrows()
    )
    verdict = "SKEW" if summary["drift_detected"] else "no skew"
    return (
        "<!doctype html><meta charset='utf-8'><title>Feature skew</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 10px;"
        "text-align:left}</style>"
        f"<h1>Training/serving skew: {verdict}</h1>"
        f"<p>window [{html.escape(str(window['start']))}, {html.escape(str(window['end']))}); "
        f"{stats['transactions']:,} logged transactions compared, "
        f"{stats['unmatched']:,} not in the versioned data; "
        f"<b>{stats['equal_share']:.4%} equal</b> (relative tolerance "
        f"{stats['relative_tolerance']:g}, NaN = NaN); budget: at most "
        f"{stats['max_mismatch_share']:.2%} with a difference.</p>"
        f"<h2>Mismatch share per feature</h2><table><tr><th>feature</th><th>share</th></tr>"
        f"{rows}</table>"
        f"<h2>First mismatching transactions</h2><table><tr><th>transaction</th>"
        f"<th>time</th><th>differences</th></tr>{listed}</table>"
    )


def run_skew_job(
    log_dir: Path | str,
    start: str | None = None,
    end: str | None = None,
    out_dir: Path | None = None,
    max_mismatch_share: float = DEFAULT_MAX_MISMATCH_SHARE,
    transactions: pd.DataFrame | None = None,
) -> dict:
    """Compare, publish HTML + JSON + Prometheus textfile; the summary."""
    params = load_params().featurize
    records = read_log(log_dir)
    if start is not None:
        records = records[records[TX_DATETIME] >= pd.Timestamp(start)]
    if end is not None:
        records = records[records[TX_DATETIME] < pd.Timestamp(end)]
    if records.empty:
        raise MonitoringInputError(
            f"{log_dir}: no prediction-log record in [{start or '-inf'}, {end or '+inf'}) "
            "(--start/--end pick the window)"
        )
    data = versioned_transactions() if transactions is None else transactions
    result = compare_served(records.reset_index(drop=True), data, params)
    if result.transactions == 0:
        raise MonitoringInputError(
            f"{log_dir}: none of the {len(records):,} logged transactions is in the versioned "
            "data (validated + data/live): nothing to compare"
        )
    statistics = {
        "transactions": result.transactions,
        "unmatched": result.unmatched,
        "mismatched": result.mismatched,
        "mismatch_share": result.mismatch_share,
        "equal_share": 1.0 - result.mismatch_share,
        "max_mismatch_share": max_mismatch_share,
        "relative_tolerance": RELATIVE_TOLERANCE,
        "feature_mismatch_share": result.feature_mismatch_share,
        "examples": result.examples.astype({TX_DATETIME: str}).to_dict(orient="records"),
    }
    skewed = [name for name, share in result.feature_mismatch_share.items() if share > 0]
    summary = build_summary(
        job="skew",
        detected=result.mismatch_share > max_mismatch_share,
        model={"name": None, "alias": None, "version": None, "run_id": None},
        window={
            "start": str(records[TX_DATETIME].min()),
            "end": str(records[TX_DATETIME].max()),
            "source": str(log_dir),
            "source_kind": "prediction_log",
            "rows": len(records),
        },
        signals=["skew"] if result.mismatch_share > max_mismatch_share else [],
        drifted_features=skewed,
        statistics=statistics,
    )
    summary = publish(
        summary,
        lambda path: Path(path).write_text(_html(summary, result.examples)),
        out_dir or paths().reports_dir / "skew",
        metrics={},
        experiment=None,
    )
    registry = skew_gauges(summary)
    write_textfile(registry, Path(summary["artifacts"]["metrics"]))
    gateway = pushgateway_url()
    if gateway:
        push(registry, gateway, job="fraud-skew")
    return summary


def console_summary(summary: dict) -> str:
    """One screen: the equal share, the budget, the features that differ."""
    stats = summary["statistics"]
    verdict = "SKEW" if summary["drift_detected"] else "ok"
    lines = [
        (
            f"skew: {stats['equal_share']:.3%} of {stats['transactions']:,} served vectors equal the "
            f"offline definition ({stats['mismatch_share']:.3%} differ; budget "
            f"{stats['max_mismatch_share']:.2%}) -> {verdict}"
        ),
    ]
    for name, share in stats["feature_mismatch_share"].items():
        if share > 0:
            lines.append(f"  {name:<28} {share:.3%} differ")
    lines.append(f"report {summary['artifacts']['html']}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m monitoring.skew", description=__doc__)
    parser.add_argument(
        "--source", help="prediction-log directory or s3:// URI (default: run/predictions)"
    )
    parser.add_argument("--start", help="first transaction time judged (ISO, inclusive)")
    parser.add_argument("--end", help="end of the window (ISO, exclusive)")
    parser.add_argument(
        "--transactions",
        help="labelled transactions the traffic came from: a Parquet file or s3:// URI "
        "(default: data/validated + data/live, the DVC-versioned data)",
    )
    parser.add_argument("--out-dir", type=Path, help="report directory (default: reports/skew)")
    parser.add_argument(
        "--max-mismatch-share",
        type=float,
        default=DEFAULT_MAX_MISMATCH_SHARE,
        help="skew when more transactions than this share differ (default 0.01)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: exit 0 within budget, 3 skew, 2 error (one line on stderr)."""

    args = _parser().parse_args(argv)
    try:
        summary = run_skew_job(
            args.source or default_prediction_log_dir(),
            args.start,
            args.end,
            args.out_dir,
            args.max_mismatch_share,
            read_transactions_source(args.transactions) if args.transactions else None,
        )
    except Exception as exc:  # noqa: BLE001 -- the CLI contract: one line and exit 2, no traceback
        return fail("skew job", exc)
    print(console_summary(summary))
    return exit_code(summary)


if __name__ == "__main__":
    sys.exit(main())
