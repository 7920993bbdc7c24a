"""Label events (chargebacks, confirmed frauds) into the terminal-risk state: a resumable consumer.

Labels arrive ``label_delay_days`` after their transaction. A consumer records each one in
the live online state (:mod:`features.online_state`); the next row of the terminal then
counts it, exactly as the offline definition does. Labels are a *set* (transaction ->
fraud), so applying an event twice changes nothing: replays after a crash never double
count.

Two sources, one consumer logic:

* **file / table** (one machine, the default): label-event Parquet files
  (``data/live/labels/*.parquet``, written by the simulator) read in name order. The
  offset (file, row) is committed in the same state transaction as the labels, so a crash
  leaves either both or neither: a restart resumes exactly after the last commit.
* **Redis Streams** (production): ``N`` partition streams ``fraud_labels:<project>:<p>``,
  ``p = terminal_id mod N``, one consumer group. Consumer ``i`` of ``k`` owns partitions
  ``i, i + k, ...``; a terminal's events all land in one partition, read by one consumer,
  in order. Entries are acknowledged (``XACK``) after their labels are recorded; a consumer
  restarted under its name first re-reads its pending entries (id ``0``), then new ones.

On Kafka the same design is a topic with ``N`` partitions keyed by ``terminal_id`` and one
consumer group: the group assigns partitions to consumers (per-partition order holds),
offsets are committed after the labels are recorded (at least once), and the set semantics
make redelivery harmless. Adding consumers rebalances partitions, never splits a terminal.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from data.schema import TERMINAL_ID, TRANSACTION_ID, TX_FRAUD
from features.definitions import state_horizon_days
from features.live_state_engine import open_live_state
from features.online_state import LabelEvent, LiveState
from features.store import feature_store
from fraudops.config import load_params
from fraudops.paths import paths

#: Consumer group of the label stream (one group: each entry is handled by one consumer).
GROUP = "label-consumers"
#: Events applied per state transaction.
BATCH = 1000


def events_from_frame(frame: pd.DataFrame) -> list[LabelEvent]:
    """Label events from a table with ``transaction_id``, ``terminal_id``, ``tx_fraud``."""
    return [
        LabelEvent(int(tx), int(terminal), int(fraud))
        for tx, terminal, fraud in zip(
            frame[TRANSACTION_ID].tolist(), frame[TERMINAL_ID].tolist(), frame[TX_FRAUD].tolist()
        )
    ]


def partition_of(terminal_id: int, partitions: int) -> int:
    """The stream partition of a terminal: all its events in one ordered partition."""
    return int(terminal_id) % partitions


def stream_key(project: str, partition: int) -> str:
    """The Redis stream of one partition."""
    return f"fraud_labels:{project}:{partition}"


# --------------------------------------------------------------------------- file source


class FileLabelConsumer:
    """Reads label-event Parquet files in name order; offsets committed with the labels."""

    def __init__(self, state: LiveState, directory: Path, name: str = "file-labels") -> None:
        self.state = state
        self.directory = Path(directory)
        self.name = name

    def _offset(self) -> tuple[str, int]:
        committed = self.state.checkpoint(self.name)
        if committed is None:
            return "", 0
        file, _, row = committed.rpartition(":")
        return file, int(row)

    def drain(self, batch: int = BATCH) -> int:
        """Apply every event after the committed offset; the number applied."""
        done_file, done_row = self._offset()
        applied = 0
        for path in sorted(self.directory.glob("*.parquet")):
            if path.name < done_file:
                continue
            start = done_row if path.name == done_file else 0
            events = events_from_frame(pd.read_parquet(path))
            for first in range(start, len(events), batch):
                chunk = events[first : first + batch]
                end = first + len(chunk)
                self.state.apply_labels(chunk, (self.name, f"{path.name}:{end}"))
                applied += len(chunk)
        return applied


# --------------------------------------------------------------------------- Redis Streams


def publish(client, project: str, events: Sequence[LabelEvent], partitions: int) -> int:
    """Append events to their partition streams (the producer side: issuer feed, demo)."""
    pipe = client.pipeline(transaction=False)
    for e in events:
        fields = {"tx": e.transaction_id, "terminal": e.terminal_id, "fraud": e.fraud}
        pipe.xadd(stream_key(project, partition_of(e.terminal_id, partitions)), fields)
    pipe.execute()
    return len(events)


@dataclass
class RedisLabelConsumer:
    """Consumer ``index`` of ``consumers`` over ``partitions`` Redis streams of labels."""

    client: object
    state: LiveState
    project: str
    partitions: int
    index: int = 0
    consumers: int = 1

    @property
    def name(self) -> str:
        """The consumer's name in the group: stable, so a restart finds its pending entries."""
        return f"labels-{self.index}-of-{self.consumers}"

    def owned(self) -> list[str]:
        """The partition streams this consumer reads."""
        return [
            stream_key(self.project, p)
            for p in range(self.partitions)
            if p % self.consumers == self.index
        ]

    def _ensure_groups(self) -> None:
        import redis

        for key in self.owned():
            try:
                self.client.xgroup_create(key, GROUP, id="0", mkstream=True)
            except redis.exceptions.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):  # the group exists: nothing to create
                    raise

    def _read(self, start: str, batch: int) -> list[tuple[str, list]]:
        streams = dict.fromkeys(self.owned(), start)
        return self.client.xreadgroup(GROUP, self.name, streams, count=batch) or []

    def poll(self, batch: int = BATCH) -> int:
        """Apply one batch -- this consumer's pending entries first -- and ack it; count."""
        self._ensure_groups()
        replies = self._read("0", batch)
        if not any(entries for _, entries in replies):
            replies = self._read(">", batch)
        events, acks = [], {}
        for key, entries in replies:
            for entry_id, fields in entries:
                events.append(
                    LabelEvent(int(fields[b"tx"]), int(fields[b"terminal"]), int(fields[b"fraud"]))
                )
                acks.setdefault(key, []).append(entry_id)
        if not events:
            return 0
        self.state.apply_labels(events, None)
        for key, ids in acks.items():
            self.client.xack(key, GROUP, *ids)
        return len(events)

    def drain(self, batch: int = BATCH) -> int:
        """Poll until the owned partitions have nothing left; the number applied."""
        total = 0
        while applied := self.poll(batch):
            total += applied
        return total


# --------------------------------------------------------------------------- CLI


def _state(online: str | None) -> LiveState:

    horizon = state_horizon_days(load_params().featurize.label_delay_days)
    return open_live_state(feature_store(online=online), horizon)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    """``python -m features.label_events consume``: apply label events to the online state."""

    parser = argparse.ArgumentParser(prog="python -m features.label_events", description=__doc__)
    parser.add_argument("command", choices=("consume",))
    parser.add_argument(
        "--source",
        type=Path,
        help="folder of label-event Parquet files (default: data/live/labels); "
        "with --redis-streams the label streams are read instead",
    )
    parser.add_argument("--redis-streams", action="store_true", help="read the Redis streams")
    parser.add_argument("--partitions", type=int, default=8, help="label stream partitions")
    parser.add_argument("--index", type=int, default=0, help="this consumer's index")
    parser.add_argument("--consumers", type=int, default=1, help="consumers in the group")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        if args.redis_streams:
            state = _state("redis")
            consumer = RedisLabelConsumer(
                state.client,  # type: ignore[attr-defined]
                state,
                state.prefix.split(":", 1)[1],  # type: ignore[attr-defined]
                args.partitions,
                args.index,
                args.consumers,
            )
        else:
            consumer = FileLabelConsumer(_state(None), args.source or paths().live_labels_dir)
        applied = consumer.drain()
    except (OSError, ValueError) as exc:
        print(f"label consumer failed: {exc}", file=sys.stderr)
        return 1
    print(
        f"label events: {applied} applied to the terminal-risk state "
        f"({time.perf_counter() - started:.1f}s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
