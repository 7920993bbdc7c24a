"""The prediction log: one JSON line per scored transaction, read back by the drift job.

Locally it is a folder of daily JSON-lines files (rotated by size too); on a cluster the
transformer's log shipper (Vector, ``k8s/components/transformer``) writes the same records
to the object store, gzipped, as ``<prefix>date=YYYY-MM-DD/<unix time>-<uuid>.log.gz``. The
record layout lives only here: ``PredictionRecord`` is what servers write and
``read_prediction_log`` what monitoring reads, from either form.
"""

from __future__ import annotations

import atexit
import gzip
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pandas as pd

from data.schema import CUSTOMER_ID, TERMINAL_ID, TRANSACTION_ID, TX_AMOUNT, TX_DATETIME

logger = logging.getLogger("serving.prediction_log")

#: Rotate a day's file once it passes this size, so no single file grows without bound.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
#: The servers' own files: ``predictions-YYYYMMDD[-N].jsonl``.
LOG_FILE_PREFIX, LOG_FILE_SUFFIX = "predictions-", ".jsonl"
#: The shipper's objects (Vector's aws_s3 sink, gzip): the same records, one per line.
SHIPPED_SUFFIX = ".log.gz"
#: Fields every record has: a line without them is not a prediction record.
REQUIRED_FIELDS = (TRANSACTION_ID, TX_DATETIME, CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT)


def is_log_file(name: str) -> bool:
    """A server's daily file or a shipped object, by its name."""
    server_file = name.startswith(LOG_FILE_PREFIX) and name.endswith(LOG_FILE_SUFFIX)
    return server_file or name.endswith(SHIPPED_SUFFIX)


def prediction_log_files(directory: Path) -> list[Path]:
    """The servers' daily files in ``directory`` and shipped objects at any depth below it."""
    directory = Path(directory)
    files = set(directory.glob(f"{LOG_FILE_PREFIX}*{LOG_FILE_SUFFIX}"))
    files |= set(directory.rglob(f"*{SHIPPED_SUFFIX}"))  # date=YYYY-MM-DD/ folders
    return sorted(files)


def _records(path: Path) -> list[dict]:
    """The records of one file (gzipped when shipped); a line that is not one is named."""
    opener = gzip.open if path.name.endswith(".gz") else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path} line {number}: not a JSON record ({exc})") from None
            missing = [
                name for name in REQUIRED_FIELDS if not isinstance(row, dict) or name not in row
            ]
            if missing:
                raise ValueError(
                    f"{path} line {number}: {missing[0]}: required in a prediction record, "
                    "missing (is this file a prediction log?)"
                )
            rows.append(row)
    return rows


@dataclass(frozen=True)
class PredictionRecord:
    """One scored transaction, as every server logs it."""

    request_id: str
    transaction_id: int
    tx_datetime: str
    customer_id: int
    terminal_id: int
    tx_amount: float
    model_version: str
    fraud_probability: float
    decision: str
    latency_ms: float
    features: dict[str, float | None] = field(default_factory=dict)
    unknown_customer: bool = False
    unknown_terminal: bool = False
    served_by: str = ""
    logged_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())


class PredictionLogWriter:
    """Appends records to ``<dir>/predictions-YYYYMMDD[-N].jsonl``; safe across threads.

    Each write is one ``write()`` of whole lines on a file opened in append mode, so several
    processes (the canary's two model servers) can share a folder without interleaving.
    ``prefix`` names the files; the explanation audit log reuses this writer with ``audit``
    and its own dataclass records.
    """

    def __init__(
        self, directory: Path, max_bytes: int = DEFAULT_MAX_BYTES, prefix: str = "predictions"
    ) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.prefix = prefix
        self._lock = threading.Lock()
        self._day: str | None = None
        self._path: Path | None = None  # the file being appended to, found once per day/part

    def _current_file(self, day: str) -> Path:
        part = 0
        while True:
            suffix = f"-{part}" if part else ""
            path = self.directory / f"{self.prefix}-{day}{suffix}.jsonl"
            if not path.exists() or path.stat().st_size < self.max_bytes:
                return path
            part += 1

    def _target(self) -> Path:
        day = datetime.now(UTC).strftime("%Y%m%d")
        if self._path is None or day != self._day:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._day, self._path = day, self._current_file(day)
        return self._path

    def _append(self, payload: bytes) -> None:
        # O_APPEND makes each write land whole at the end, even with other writers.
        fd = os.open(self._target(), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, payload)
            full = os.fstat(fd).st_size >= self.max_bytes
        finally:
            os.close(fd)
        if full:
            self._path = None  # the next write looks for the next part

    def write(self, records: Sequence[object]) -> None:
        """Append ``records`` (dataclass instances) as JSON lines (no-op for an empty list).

        Per request this is one open/write/fstat/close: the file is looked up once per day
        (and again after it reaches ``max_bytes``), not on every write.
        """
        if not records:
            return
        # vars(), not asdict(): the fields as they are, without asdict's deep copy. orjson,
        # not json: encoding was a twentieth of the transformer's CPU at 1,000 requests/s.
        # A NaN feature becomes null (missing), as pandas reads it back.
        payload = b"".join(
            orjson.dumps(vars(r), default=str, option=orjson.OPT_APPEND_NEWLINE) for r in records
        )
        with self._lock:
            try:
                self._append(payload)
            except FileNotFoundError:  # the folder was removed (log shipping, cleanup)
                self._path = None
                self._append(payload)


class BackgroundLogWriter(PredictionLogWriter):
    """A :class:`PredictionLogWriter` whose ``write`` only queues: a thread writes the lines.

    A server answering on one event loop should not serialise records and make four file
    system calls before it answers. ``write`` hands the records to a queue (microseconds);
    a daemon thread takes everything queued, every ``flush_interval_s``, and appends it in
    one ``write()`` -- one system call for many requests. Records keep their order. What is
    queued when the process exits normally is written then (``atexit``); ``flush()``
    writes it now (tests, shutdown hooks).
    """

    def __init__(
        self,
        directory: Path,
        max_bytes: int = DEFAULT_MAX_BYTES,
        prefix: str = "predictions",
        flush_interval_s: float = 0.05,
    ) -> None:
        super().__init__(directory, max_bytes, prefix)
        self.flush_interval_s = flush_interval_s
        self._queue: queue.SimpleQueue[Sequence[object]] = queue.SimpleQueue()
        self._pending = threading.Event()
        self._flush_lock = threading.Lock()  # one drainer at a time keeps the order
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()

    def write(self, records: Sequence[object]) -> None:
        """Queue ``records`` for the writer thread (started on first use)."""
        if not records:
            return
        self._queue.put(records)
        self._pending.set()
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._thread_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name=f"{self.prefix}-log", daemon=True)
                thread.start()
                self._thread = thread
                atexit.register(self.flush)

    def _run(self) -> None:
        while True:
            self._pending.wait()  # blocks without the GIL until there is work
            time.sleep(self.flush_interval_s)  # let a few requests' records gather
            # Cleared before draining: a write from now on sets it again, nothing waits.
            self._pending.clear()
            self.flush()

    def flush(self) -> None:
        """Write everything queued so far, now, in this thread."""
        with self._flush_lock:
            records: list = []
            while True:
                try:
                    records += self._queue.get_nowait()
                except queue.Empty:
                    break
            if not records:
                return
            try:
                PredictionLogWriter.write(self, records)
            except (OSError, ValueError, TypeError) as exc:
                # The request was answered long ago: say what was lost, keep the thread alive.
                logger.error("%d %s records not written: %s", len(records), self.prefix, exc)


def read_prediction_log(
    directory: Path,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pd.DataFrame:
    """Read every record under ``directory`` into a frame, one column per feature.

    The servers' daily files and the shipper's gzipped objects (:func:`prediction_log_files`)
    alike. ``start``/``end`` filter on the transaction time (``tx_datetime``, [start, end)).
    Feature values become columns named as in the feature definition; a missing one is NaN.
    """
    rows: list[dict] = []
    for path in prediction_log_files(directory):
        rows.extend(_records(path))
    if not rows:
        return pd.DataFrame(columns=list(PredictionRecord.__dataclass_fields__))
    frame = pd.json_normalize(rows, sep=".")
    frame.columns = [c.removeprefix("features.") for c in frame.columns]
    # A feature named like a record field (tx_amount) holds the same value: keep one column.
    frame = frame.loc[:, ~frame.columns.duplicated()]
    frame[TX_DATETIME] = pd.to_datetime(frame[TX_DATETIME], format="ISO8601")
    if getattr(frame[TX_DATETIME].dt, "tz", None) is not None:
        frame[TX_DATETIME] = frame[TX_DATETIME].dt.tz_convert("UTC").dt.tz_localize(None)
    for column in (TRANSACTION_ID, CUSTOMER_ID, TERMINAL_ID):
        frame[column] = frame[column].astype("int64")
    frame[TX_AMOUNT] = frame[TX_AMOUNT].astype("float64")
    if start is not None:
        frame = frame[frame[TX_DATETIME] >= pd.Timestamp(start)]
    if end is not None:
        frame = frame[frame[TX_DATETIME] < pd.Timestamp(end)]
    return frame.sort_values(TX_DATETIME, kind="stable").reset_index(drop=True)
