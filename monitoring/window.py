"""The current window the monitoring jobs judge: prediction-log records or raw transactions.

Two sources give the same frame (``tx_datetime``, the model's features, ``fraud_probability``,
``decision``, ``model_version``):

* the prediction log the model servers write (``serving.prediction_log``): features and
  scores as served;
* any CSV/Parquet of transactions: their features are computed with the ONE feature
  definition (``features.definitions``) on top of the history they follow, and the champion
  bundle scores them -- exactly what serving would have done.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from data.ingest import read_transactions
from data.schema import TRANSACTION_ID, TX_DATETIME
from features.definitions import build_training_set, compute_entity_features
from fraudops.bundle import SCORE_COLUMN, ModelBundle
from fraudops.config import FeaturizeParams
from serving.prediction_log import SHIPPED_SUFFIX, is_log_file, read_prediction_log
from training.evaluate import bundle_scores

DECISION_COLUMN = "decision"
MODEL_VERSION_COLUMN = "model_version"
TRANSACTION_SUFFIXES = (".parquet", ".pq", ".csv", ".csv.gz", ".txt")


class MonitoringInputError(ValueError):
    """The current window cannot be built (no records, a missing column, a bad time range)."""


@dataclass(frozen=True)
class TimeWindow:
    """A half-open time range ``[start, end)`` of transaction times (naive UTC)."""

    start: pd.Timestamp
    end: pd.Timestamp

    def as_dict(self) -> dict[str, str]:
        """ISO strings for JSON summaries."""
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}

    def __str__(self) -> str:
        return f"[{self.start:%Y-%m-%d %H:%M}, {self.end:%Y-%m-%d %H:%M})"


def _naive(value: datetime | str | pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo is not None else stamp


#: Quantile of transaction times taken as "the bulk of the log" when choosing a window end.
BULK_QUANTILE = 0.99
#: A transaction dated more than this after it was served (``logged_at``) is a bad clock.
SERVED_CLOCK_SKEW = pd.Timedelta(days=1)


def bulk_newest(
    times: pd.Series, window_days: int, served_at: pd.Series | None = None
) -> pd.Timestamp:
    """The newest transaction time of the bulk of the log, blind to a handful of outliers.

    A record dated after the moment it was served (``served_at``, plus a day of clock
    skew) is ignored -- no one pays in the future; so is one more than a window beyond the
    bulk (the 99th percentile), e.g. a ``2099-01-01`` typo among real traffic. Replayed
    traffic keeps its own clock: its transaction times are all in the served past.
    """
    kept = times.dropna()
    if served_at is not None:
        served = pd.to_datetime(served_at, utc=True, format="ISO8601", errors="coerce")
        served = served.dt.tz_localize(None).reindex(kept.index)
        kept = kept[served.isna() | (kept <= served + SERVED_CLOCK_SKEW)]
    if kept.empty:
        raise MonitoringInputError("tx_datetime: no records to take the window end from")
    bulk = pd.Timestamp(kept.quantile(BULK_QUANTILE))
    return pd.Timestamp(kept[kept <= bulk + pd.Timedelta(days=window_days)].max())


def resolve_window(
    times: pd.Series,
    start: datetime | str | None,
    end: datetime | str | None,
    window_days: int,
    served_at: pd.Series | None = None,
) -> TimeWindow:
    """The window to judge: the explicit bounds, else the last ``window_days`` whole days.

    Without ``end`` the window ends at midnight after the newest record of the bulk of the
    log (:func:`bulk_newest`; simulated traffic has its own clock, so "now" is the newest
    transaction, not the wall clock); without ``start`` it starts ``window_days`` before
    ``end``.
    """
    if end is not None:
        stop = _naive(end)
    else:
        if times.empty:
            raise MonitoringInputError("tx_datetime: no records to take the window end from")
        stop = bulk_newest(times, window_days, served_at).normalize() + pd.Timedelta(days=1)
    begin = _naive(start) if start is not None else stop - pd.Timedelta(days=window_days)
    if begin >= stop:
        raise MonitoringInputError(
            f"window: start must be before end, got start={begin.isoformat()} end={stop.isoformat()}"
        )
    return TimeWindow(begin, stop)


def in_window(frame: pd.DataFrame, window: TimeWindow) -> pd.DataFrame:
    """Rows whose ``tx_datetime`` lies in ``window`` (index reset)."""
    times = frame[TX_DATETIME]
    mask = (times >= window.start) & (times < window.end)
    return frame.loc[mask].reset_index(drop=True)


def bounded_sample(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """``frame`` itself, or a seeded uniform sample of ``max_rows`` rows in time order."""
    if len(frame) <= max_rows:
        return frame
    return (
        frame.sample(n=max_rows, random_state=seed).sort_values(TX_DATETIME).reset_index(drop=True)
    )


def require_features(frame: pd.DataFrame, feature_names: tuple[str, ...], what: str) -> None:
    """Raise naming the first model feature ``frame`` lacks."""
    missing = [name for name in feature_names if name not in frame.columns]
    if missing:
        raise MonitoringInputError(
            f"{missing[0]}: model feature missing from {what} ({len(missing)} missing: "
            f"{', '.join(missing[:5])})"
        )


def champion_scores(frame: pd.DataFrame, bundle: ModelBundle) -> pd.DataFrame:
    """Scores and decisions as the champion gives them.

    Rows the champion served keep their logged score (what production really returned);
    rows another version served (before a promotion) are re-scored by the champion from
    their logged features, so the window's score distribution belongs to one model.
    """

    scored = frame.copy()
    served_by_champion = np.zeros(len(scored), dtype=bool)
    if SCORE_COLUMN in scored.columns and MODEL_VERSION_COLUMN in scored.columns:
        served_by_champion = (
            scored[MODEL_VERSION_COLUMN].astype(str).to_numpy() == str(bundle.model_version)
        ) & scored[SCORE_COLUMN].notna().to_numpy()
    if not served_by_champion.all():
        rescore = scored.loc[~served_by_champion]
        probabilities = bundle_scores(bundle, rescore)
        if SCORE_COLUMN not in scored.columns:
            scored[SCORE_COLUMN] = np.nan
        scored.loc[~served_by_champion, SCORE_COLUMN] = probabilities
    scored[SCORE_COLUMN] = scored[SCORE_COLUMN].astype(float)
    scored[DECISION_COLUMN] = bundle.thresholds.decide(scored[SCORE_COLUMN].to_numpy())
    return scored


def is_uri(source: str | Path) -> bool:
    """``s3://bucket/prefix`` and the like (an object store), not a local path."""
    return "://" in str(source)


def _fetch_log(uri: str, directory: Path) -> Path:
    """Copy the prediction-log files under ``uri`` (S3, GCS, file://) into ``directory``.

    What the cluster's shipper writes (``date=YYYY-MM-DD/<time>-<uuid>.log.gz``, any depth)
    and server files copied as they are; the reader stays one function over a local folder.
    """
    from pyarrow import fs

    try:
        filesystem, root = fs.FileSystem.from_uri(uri.rstrip("/"))
        selector = fs.FileSelector(root, allow_not_found=True, recursive=True)
        listing = filesystem.get_file_info(selector)
    except (OSError, ValueError) as exc:
        raise MonitoringInputError(f"{uri}: cannot list the prediction log ({exc})") from None
    for info in listing:
        if info.is_file and is_log_file(info.base_name):
            name = info.base_name
            if name.endswith(SHIPPED_SUFFIX):
                # Flattened, the folders kept in the name: two days' objects never collide.
                name = info.path[len(root) :].strip("/").replace("/", "__")
            # compression=None: the bytes as stored (pyarrow would un-gzip a .gz on the way).
            with filesystem.open_input_stream(info.path, compression=None) as remote:
                (directory / name).write_bytes(remote.read())
    return directory


def read_log(log_dir: Path | str) -> pd.DataFrame:
    """Every prediction-log record under ``log_dir`` (features as columns); never empty.

    ``log_dir`` is a local folder or an object-store URI (``s3://bucket/prediction-log/``).
    """

    if is_uri(log_dir):
        with tempfile.TemporaryDirectory(prefix="prediction-log-") as tmp:
            records = read_prediction_log(_fetch_log(str(log_dir), Path(tmp)))
    else:
        if not Path(log_dir).is_dir():
            raise MonitoringInputError(f"{log_dir}: prediction log directory not found")
        records = read_prediction_log(Path(log_dir))
    # tx_amount is both a record field and a feature: keep one column (the same values).
    records = records.loc[:, ~records.columns.duplicated(keep="last")]
    if records.empty:
        raise MonitoringInputError(f"{log_dir}: the prediction log has no records")
    return records


def load_prediction_window(
    log_dir: Path | str,
    start: datetime | str | None,
    end: datetime | str | None,
    window_days: int,
) -> tuple[pd.DataFrame, TimeWindow]:
    """Prediction-log records of the window (features as columns) and the window itself."""
    records = read_log(log_dir)
    served_at = records["logged_at"] if "logged_at" in records.columns else None
    window = resolve_window(records[TX_DATETIME], start, end, window_days, served_at)
    return in_window(records, window), window


def transaction_features(
    transactions: pd.DataFrame,
    params: FeaturizeParams,
    history: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The model features of ``transactions``, computed after ``history`` (if any).

    Aggregates need the transactions before the window (a customer's 30-day mean does not
    start at the window's first day), so ``history`` is prepended, the ONE feature
    definition runs over both, and only the window's rows come back.
    """

    window_ids = set(transactions[TRANSACTION_ID].tolist())
    combined = transactions
    if history is not None and not history.empty:
        earlier = history[~history[TRANSACTION_ID].isin(window_ids)]
        combined = pd.concat([earlier, transactions], ignore_index=True)
    combined = combined.sort_values(TX_DATETIME, kind="stable").reset_index(drop=True)
    customer_rows, terminal_rows = compute_entity_features(combined, params)
    featured = build_training_set(combined, customer_rows, terminal_rows)
    return featured[featured[TRANSACTION_ID].isin(window_ids)].reset_index(drop=True)


def load_transaction_window(
    path: Path,
    bundle: ModelBundle,
    params: FeaturizeParams,
    start: datetime | str | None,
    end: datetime | str | None,
    window_days: int,
    history_path: Path | None = None,
) -> tuple[pd.DataFrame, TimeWindow]:
    """A CSV/Parquet of transactions, featurised and scored by ``bundle``, for the window."""

    path = Path(path)
    if not path.exists():
        raise MonitoringInputError(f"{path}: transactions file not found")
    transactions = read_transactions(path)
    if transactions.empty:
        raise MonitoringInputError(f"{path}: the transactions file has no rows")
    window = resolve_window(transactions[TX_DATETIME], start, end, window_days)
    history = None
    if history_path is not None and Path(history_path).exists():
        history = read_transactions(Path(history_path))
    # Everything before the window end feeds the aggregates; only the window is judged.
    before_end = transactions[transactions[TX_DATETIME] < window.end]
    featured = transaction_features(before_end, params, history)
    current = in_window(featured, window)
    if current.empty:
        return current, window
    scored = champion_scores(current, bundle)
    scored[MODEL_VERSION_COLUMN] = str(bundle.model_version)
    return scored, window


def is_transactions_file(path: Path | str) -> bool:
    """A path that names a CSV/Parquet file (rather than a prediction-log directory)."""
    if is_uri(path):
        return str(path).lower().endswith(TRANSACTION_SUFFIXES)
    return Path(path).is_file() or Path(path).name.lower().endswith(TRANSACTION_SUFFIXES)
