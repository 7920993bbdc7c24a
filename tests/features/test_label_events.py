"""The label consumer: file offsets and Redis Streams, crash-resumable, partitioned, same state."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis

from data.scenarios import label_events
from features.label_events import FileLabelConsumer, RedisLabelConsumer, events_from_frame, publish
from features.online_state import LabelEvent
from features.online_state_redis import RedisLiveState
from features.online_state_sqlite import SqliteLiveState

REDIS = ("127.0.0.1", 6379)
PARTITIONS = 6


def _events(n: int = 2_500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    transactions = pd.DataFrame(
        {
            "transaction_id": np.arange(n, dtype=np.int64),
            "tx_datetime": pd.Timestamp("2026-03-01") + pd.to_timedelta(np.arange(n), unit="min"),
            "terminal_id": rng.integers(0, 40, n).astype(np.int64),
            "tx_fraud": (rng.random(n) < 0.5).astype(np.int8),
        }
    )
    return label_events(transactions, label_delay_days=7)


@pytest.fixture
def redis_states() -> Iterator[tuple[redis.Redis, str, list[RedisLiveState]]]:
    client = redis.Redis(*REDIS)
    project = f"labels_test_{uuid.uuid4().hex[:8]}"
    yield client, project, []
    for pattern in (f"fraud_live:{project}*", f"fraud_labels:{project}*"):
        for key in client.scan_iter(match=pattern, count=1000):
            client.delete(key)


def test_the_simulator_emits_one_event_per_fraud_after_the_delay():
    events = _events(200)
    assert (events["tx_fraud"] == 1).all()
    delay = events["label_datetime"] - events["tx_datetime"]
    assert (delay == pd.Timedelta(days=7)).all()
    assert events["label_datetime"].is_monotonic_increasing


def test_file_consumer_killed_mid_batch_resumes_with_the_same_state(tmp_path: Path):
    events = _events()
    folder = tmp_path / "labels"
    folder.mkdir()
    half = len(events) // 2
    events.iloc[:half].to_parquet(folder / "20260301.parquet", index=False)
    events.iloc[half:].to_parquet(folder / "20260302.parquet", index=False)

    reference = SqliteLiveState(tmp_path / "ref.db", "p", 37)
    assert FileLabelConsumer(reference, folder).drain(batch=300) == len(events)

    state = SqliteLiveState(tmp_path / "crash.db", "p", 37)
    original = state.apply_labels
    calls = {"n": 0}

    def crash_on_the_third_batch(batch, checkpoint=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed mid-batch")
        original(batch, checkpoint)

    state.apply_labels = crash_on_the_third_batch  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        FileLabelConsumer(state, folder).drain(batch=300)
    assert 0 < len(state.labels()) < len(events)  # two batches committed, the third not
    state.apply_labels = original  # type: ignore[method-assign]
    resumed = FileLabelConsumer(state, folder).drain(batch=300)
    assert resumed == len(events) - 600  # exactly what was not committed
    assert state.labels() == reference.labels()
    assert FileLabelConsumer(state, folder).drain() == 0  # nothing twice


def test_redis_consumer_killed_mid_batch_resumes_from_its_pending_entries(redis_states):
    client, project, _ = redis_states
    events = events_from_frame(_events())
    publish(client, project, events, PARTITIONS)
    state = RedisLiveState(client, project, 37)
    consumer = RedisLabelConsumer(client, state, project, PARTITIONS)
    original = state.apply_labels

    def crash(batch, checkpoint=None):
        raise KeyboardInterrupt("killed after reading, before recording and acking")

    consumer.poll(batch=50)
    state.apply_labels = crash  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        consumer.poll(batch=50)
    pending = sum(
        client.xpending(f"fraud_labels:{project}:{p}", "label-consumers")["pending"]
        for p in range(PARTITIONS)
    )
    assert pending > 0  # read but never acknowledged
    state.apply_labels = original  # type: ignore[method-assign]
    restarted = RedisLabelConsumer(client, state, project, PARTITIONS)  # same name
    restarted.drain(batch=50)
    assert state.labels() == {e.transaction_id: e.fraud for e in events}
    assert all(
        client.xpending(f"fraud_labels:{project}:{p}", "label-consumers")["pending"] == 0
        for p in range(PARTITIONS)
    )


def test_n_partitioned_consumers_give_the_state_of_one(redis_states):
    client, project, _ = redis_states
    # A later event of a terminal overrides an earlier one (a cleared dispute): order matters.
    events = events_from_frame(_events()) + [
        LabelEvent(e.transaction_id, e.terminal_id, 0) for e in events_from_frame(_events())[:50]
    ]
    single_project, split_project = f"{project}_one", f"{project}_three"
    results = []
    for name, consumers in ((single_project, 1), (split_project, 3)):
        publish(client, name, events, PARTITIONS)
        state = RedisLiveState(client, name, 37)
        workers = [
            RedisLabelConsumer(client, state, name, PARTITIONS, index, consumers)
            for index in range(consumers)
        ]
        threads = [threading.Thread(target=w.drain, kwargs={"batch": 97}) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        results.append(state.labels())
    one, three = results
    assert one == three
    assert sum(one.values()) == len(events) - 2 * 50  # the 50 cleared ones are 0
