"""Online rows move with traffic: served vectors equal the offline definition, on SQLite and Redis.

Each engine gets its own tiny Feast repo (materialised, live state seeded) and the serving
lookup of the transformer and L1/L2 (:class:`serving.lookup.OnlineFeatureLookup`), so these
tests run the real update path -- Feast writes, state engine, locks -- without HTTP.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data.schema import TRANSACTION_COLUMNS, TRANSACTION_ID, TX_DATETIME
from features.definitions import (
    CUSTOMER_VIEW,
    FEATURE_NAMES,
    build_training_set,
    compute_entity_features,
)
from features.online_rows import stamp_us
from fraudops.config import FeaturizeParams
from serving.errors import InvalidRequest, OnlineStoreUnavailable
from serving.lookup import OnlineFeatureLookup
from serving.sandbox import build_feature_repo, synthetic_transactions
from serving.schema import validate_transactions
from serving.settings import ServingSettings

REDIS = "127.0.0.1:6379"
N_CUSTOMERS, N_TERMINALS = 12, 10


@dataclass
class LiveWorld:
    """A materialised repo, the lookup serving it, and every transaction it has seen."""

    settings: ServingSettings
    lookup: OnlineFeatureLookup
    history: pd.DataFrame
    sent: list[dict] = field(default_factory=list)
    next_id: int = 1_000_000
    clock: pd.Timestamp = field(default_factory=lambda: pd.Timestamp("2026-01-01"))

    def new_lookup(self) -> OnlineFeatureLookup:
        """Another server on the same store (a restart, or a second replica)."""
        return OnlineFeatureLookup(self.settings)

    def score(self, instances: list[dict], lookup: OnlineFeatureLookup | None = None) -> np.ndarray:
        batch = (lookup or self.lookup).features(
            validate_transactions({"instances": instances}, 256)
        )
        for tx in instances:
            if tx["transaction_id"] not in {s["transaction_id"] for s in self.sent}:
                self.sent.append(tx)
        return batch.values

    def offline(self) -> pd.DataFrame:
        """The offline definition over the history plus every transaction sent so far."""
        live = pd.DataFrame(self.sent)
        live[TX_DATETIME] = pd.to_datetime(live[TX_DATETIME])
        live["tx_fraud"] = 0
        live["tx_fraud_scenario"] = 0
        frame = pd.concat([self.history, live[list(TRANSACTION_COLUMNS)]], ignore_index=True)
        frame = frame.astype(self.history.dtypes.to_dict())
        frame = frame.sort_values(TX_DATETIME, kind="stable").reset_index(drop=True)
        customer, terminal = compute_entity_features(frame, FeaturizeParams())
        return build_training_set(frame, customer, terminal).set_index(TRANSACTION_ID)

    def transaction(self, customer: int, terminal: int, seconds: float, amount: float) -> dict:
        self.clock = self.clock + pd.Timedelta(seconds=seconds)
        self.next_id += 1
        return {
            "transaction_id": self.next_id,
            "tx_datetime": self.clock.isoformat(),
            "customer_id": customer,
            "terminal_id": terminal,
            "tx_amount": amount,
        }


def assert_equal_vectors(served: np.ndarray, expected: np.ndarray, what: str) -> None:
    same = np.isclose(served, expected, rtol=1e-6, atol=0) | (np.isnan(served) & np.isnan(expected))
    if not same.all():
        row = int(np.flatnonzero(~same.all(axis=1))[0])
        bad = {
            FEATURE_NAMES[j]: (served[row, j], expected[row, j]) for j in np.flatnonzero(~same[row])
        }
        raise AssertionError(f"{what}: row {row} served != offline (served, offline): {bad}")


def _world(root: Path, engine: str) -> Iterator[LiveWorld]:
    history = synthetic_transactions(
        n=900, n_customers=N_CUSTOMERS, n_terminals=N_TERMINALS, days=40, seed=3
    )
    project = f"fraud_live_test_{uuid.uuid4().hex[:8]}"
    redis_url = REDIS if engine == "redis" else None
    repo = build_feature_repo(root, history, online=engine, redis_url=redis_url, project=project)
    settings = ServingSettings(
        feast_repo=repo,
        online_store=engine,
        redis_url=redis_url,
        feast_project=project,
        event_clock="replay",
        prediction_log_dir=root / "predictions",
    )
    world = LiveWorld(settings, OnlineFeatureLookup(settings), history)
    world.clock = history[TX_DATETIME].max()
    yield world
    if engine == "redis":
        client = redis.Redis.from_url(f"redis://{REDIS}")
        for pattern in (f"fraud_live:{project}:*", f"*{project}*"):
            for key in client.scan_iter(match=pattern, count=1000):
                client.delete(key)


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def live(request, tmp_path_factory) -> Iterator[LiveWorld]:
    yield from _world(tmp_path_factory.mktemp(f"live-{request.param}"), request.param)


#: One step of a replay: customer, terminal, seconds after the previous one, amount,
#: and whether it re-sends an earlier transaction (a client retry) instead.
steps = st.lists(
    st.tuples(
        st.integers(0, N_CUSTOMERS + 1),  # ids beyond the history: new entities
        st.integers(0, N_TERMINALS + 1),
        st.sampled_from([0, 0, 1, 45, 600, 3_600, 20_000, 86_400 + 7]),
        st.floats(0, 400, allow_nan=False).map(lambda a: round(a, 2)),
        st.booleans(),
    ),
    min_size=1,
    max_size=10,
)


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=steps, batch_size=st.integers(1, 4))
def test_replay_serves_the_offline_vector_for_every_transaction(live: LiveWorld, steps, batch_size):
    instances = []
    for customer, terminal, gap, amount, retry in steps:
        if retry and live.sent:  # a client retry: one of the last few transactions again
            instances.append(live.sent[-1 - len(instances) % min(5, len(live.sent))])
        else:
            instances.append(live.transaction(customer, terminal, gap, amount))
    served = [
        live.score(instances[i : i + batch_size]) for i in range(0, len(instances), batch_size)
    ]
    offline = live.offline()
    expected = offline.loc[[tx["transaction_id"] for tx in instances], list(FEATURE_NAMES)]
    assert_equal_vectors(np.vstack(served), expected.to_numpy(np.float64), f"replay of {instances}")


def test_read_your_writes_across_a_restart(live: LiveWorld) -> None:
    first = live.transaction(1, 2, 60, 10.0)
    second = live.transaction(1, 2, 60, 30.0)
    live.score([first])
    # A fresh lookup (a restarted server, a second replica) continues from the store.
    served = live.score([second], lookup=live.new_lookup())
    count_1d = served[0, FEATURE_NAMES.index("customer_tx_count_1d")]
    expected = live.offline().loc[second["transaction_id"], "customer_tx_count_1d"]
    assert count_1d == expected and count_1d >= 1


def test_concurrent_transactions_of_one_customer_both_count(live: LiveWorld) -> None:
    a = live.transaction(4, 5, 120, 11.0)
    b = live.transaction(4, 6, 0, 12.0)  # the same instant: neither sees the other
    after = live.transaction(4, 7, 60, 13.0)
    lookups = [live.new_lookup(), live.new_lookup()]
    errors: list[BaseException] = []

    def send(tx: dict, lookup: OnlineFeatureLookup) -> None:
        try:
            live.score([tx], lookup=lookup)
        except Exception as exc:  # noqa: BLE001 -- reported by the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=pair) for pair in zip((a, b), lookups)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    served = live.score([after])
    offline = live.offline()
    count = FEATURE_NAMES.index("customer_tx_count_1d")
    # The offline count includes both concurrent ones; a lost update would be one short.
    assert served[0, count] == offline.loc[after["transaction_id"], "customer_tx_count_1d"]
    assert served[0, count] >= 2


def test_a_retried_transaction_counts_once(live: LiveWorld) -> None:
    tx = live.transaction(7, 3, 300, 20.0)
    first = live.score([tx])
    again = live.score([tx])
    assert_equal_vectors(again, first, "retry")  # the retry is served what the first was
    nxt = live.transaction(7, 3, 60, 21.0)
    served = live.score([nxt])
    expected = live.offline().loc[[nxt["transaction_id"]], list(FEATURE_NAMES)]
    assert_equal_vectors(served, expected.to_numpy(np.float64), "after retry")


def test_a_late_transaction_is_served_exactly_and_counted_for_later_ones(
    live: LiveWorld,
) -> None:
    on_time = live.transaction(9, 8, 3_600, 50.0)
    live.score([on_time])
    late = live.transaction(9, 8, -1_800, 60.0)  # half an hour before the last one
    live.clock = pd.Timestamp(on_time["tx_datetime"])
    served_late = live.score([late])
    later = live.transaction(9, 8, 600, 70.0)
    served_later = live.score([later])
    offline = live.offline()
    assert_equal_vectors(
        served_late, offline.loc[[late["transaction_id"]], list(FEATURE_NAMES)].to_numpy(), "late"
    )
    assert_equal_vectors(
        served_later,
        offline.loc[[later["transaction_id"]], list(FEATURE_NAMES)].to_numpy(),
        "after the late one",
    )


@pytest.mark.parametrize(
    ("offset", "rule"),
    [
        (pd.Timedelta(days=30), "ahead of the replay clock"),
        (pd.Timedelta(days=-38), "days (longest window + label delay) before"),
    ],
)
def test_event_times_beyond_the_tolerance_are_a_422_naming_the_field(
    live: LiveWorld, offset: pd.Timedelta, rule: str
) -> None:
    tx = live.transaction(2, 2, 0, 5.0)
    tx["tx_datetime"] = (pd.Timestamp(tx["tx_datetime"]) + offset).isoformat()
    with pytest.raises(InvalidRequest) as raised:
        live.lookup.features(validate_transactions({"instances": [tx]}, 256))
    assert raised.value.status == 422
    assert "instances[0].tx_datetime" in raised.value.message
    assert rule in raised.value.message
    assert raised.value.details[0]["got"].startswith(tx["tx_datetime"][:10])


@pytest.mark.parametrize("live_updates", [True, False])
def test_the_server_clock_refuses_a_future_date_with_live_updates_on_or_off(
    live: LiveWorld, live_updates: bool
) -> None:
    """Production checks against the server clock, which needs no state: with the updates off
    a transaction dated a year ahead is refused all the same, and one dated now is scored."""
    settings = live.settings.model_copy(
        update={"event_clock": "server", "live_updates": live_updates}
    )
    lookup = OnlineFeatureLookup(settings)
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    tx = live.transaction(3, 3, 0, 7.0)
    tx["tx_datetime"] = (now + pd.Timedelta(days=365)).isoformat()
    with pytest.raises(InvalidRequest) as raised:
        lookup.features(validate_transactions({"instances": [tx]}, 256))
    assert raised.value.status == 422
    assert raised.value.details[0]["field"] == "instances[0].tx_datetime"
    assert "ahead of the server clock" in raised.value.message
    if not live_updates:  # with updates on, "now" is months after the history: out of order
        tx["tx_datetime"] = now.isoformat()
        assert lookup.features(validate_transactions({"instances": [tx]}, 256)).values.shape[0] == 1


def _send_together(live: LiveWorld, requests: list[list[dict]]) -> list:
    """Requests in one pass (:meth:`OnlineFeatureLookup.serve_many`, then applied), as the
    transformer's coalescer sends concurrent ones; the answers, recorded as sent."""
    served = live.lookup.serve_many(
        [validate_transactions({"instances": r}, 256) for r in requests]
    )
    served.apply()
    answers = served.answers
    for request, answer in zip(requests, answers, strict=True):
        if not isinstance(answer, Exception):
            for tx in request:
                if tx["transaction_id"] not in {s["transaction_id"] for s in live.sent}:
                    live.sent.append(tx)
    return answers


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=steps, sizes=st.lists(st.integers(1, 3), min_size=1, max_size=6))
def test_requests_in_one_pass_are_served_as_one_by_one(live: LiveWorld, steps, sizes) -> None:
    instances = []
    for customer, terminal, gap, amount, retry in steps:
        if retry and live.sent:
            instances.append(live.sent[-1 - len(instances) % min(5, len(live.sent))])
        else:
            instances.append(live.transaction(customer, terminal, gap, amount))
    requests, start = [], 0
    for size in sizes * len(instances):
        if start >= len(instances):
            break
        requests.append(instances[start : start + size])
        start += size
    answers = _send_together(live, requests)
    offline = live.offline()
    for request, answer in zip(requests, answers, strict=True):
        expected = offline.loc[[tx["transaction_id"] for tx in request], list(FEATURE_NAMES)]
        assert_equal_vectors(answer.values, expected.to_numpy(np.float64), f"pass of {requests}")


def test_a_refused_event_time_fails_only_its_request(live: LiveWorld) -> None:
    before = live.transaction(3, 4, 60, 15.0)
    bad = live.transaction(3, 4, 0, 16.0)
    bad["tx_datetime"] = (pd.Timestamp(bad["tx_datetime"]) + pd.Timedelta(days=30)).isoformat()
    after = live.transaction(3, 4, 60, 17.0)
    answers = _send_together(live, [[before], [bad], [after]])
    assert isinstance(answers[1], InvalidRequest) and answers[1].status == 422
    offline = live.offline()  # without the refused one: it must not have been counted
    for tx, answer in ((before, answers[0]), (after, answers[2])):
        expected = offline.loc[[tx["transaction_id"]], list(FEATURE_NAMES)]
        assert_equal_vectors(answer.values, expected.to_numpy(np.float64), "beside a refused one")


def test_an_explanation_reads_the_state_without_moving_it(live: LiveWorld) -> None:
    tx = live.transaction(5, 6, 90, 25.0)
    explained = live.lookup.features(validate_transactions({"instances": [tx]}, 256), False)
    scored = live.score([tx])  # counted now, once: the explanation did not apply it
    assert_equal_vectors(explained.values, scored, "explained vs scored")
    nxt = live.transaction(5, 6, 60, 26.0)
    served = live.score([nxt])
    expected = live.offline().loc[[nxt["transaction_id"]], list(FEATURE_NAMES)]
    assert_equal_vectors(served, expected.to_numpy(np.float64), "after an explanation")


def test_an_explained_batch_sees_its_own_earlier_transactions(live: LiveWorld) -> None:
    # Nothing is written after an explanation, so the pass skips the entities' latest rows:
    # the second payment of the same customer and terminal must still see the first.
    first = live.transaction(7, 8, 90, 30.0)
    second = live.transaction(7, 8, 45, 31.0)
    third = live.transaction(9, 8, 20, 32.0)
    batch = validate_transactions({"instances": [first, second, third]}, 256)
    explained = live.lookup.features(batch, False)
    scored = live.score([first, second, third])
    assert_equal_vectors(explained.values, scored, "explained batch vs scored batch")
    expected = live.offline().loc[[t["transaction_id"] for t in (first, second, third)]]
    assert_equal_vectors(
        explained.values, expected[list(FEATURE_NAMES)].to_numpy(np.float64), "vs offline"
    )


@pytest.mark.parametrize("in_loop", [False, True])
def test_concurrent_requests_through_the_coalescer_each_get_their_own_rows(
    live: LiveWorld, in_loop: bool
) -> None:
    from serving.coalesce import UpdateCoalescer  # the transformer's async front of the lookup

    requests = [[live.transaction(i % 4, (i * 3) % 5, 30, 10.0 + i)] for i in range(12)]

    async def send_all() -> list:
        coalescer = UpdateCoalescer(live.lookup, max_transactions=5, in_loop=in_loop)
        validated = [validate_transactions({"instances": r}, 256) for r in requests]
        return await asyncio.gather(*(coalescer.features(v) for v in validated))

    batches = asyncio.run(send_all())
    for request in requests:
        live.sent.extend(request)
    offline = live.offline()
    for request, batch in zip(requests, batches, strict=True):
        expected = offline.loc[[request[0]["transaction_id"]], list(FEATURE_NAMES)]
        assert batch.transactions[0]["transaction_id"] == request[0]["transaction_id"]
        assert_equal_vectors(batch.values, expected.to_numpy(np.float64), "through the coalescer")


@pytest.mark.parametrize("in_loop", [False, True])
def test_rows_are_served_before_the_update_is_written_and_the_answer_can_wait_for_it(
    live: LiveWorld, in_loop: bool
) -> None:
    """The transformer sends the rows upstream while the pass writes (serving.coalesce)."""
    from serving.coalesce import UpdateCoalescer

    first, second = live.transaction(7, 8, 60, 11.0), live.transaction(7, 8, 60, 12.0)

    async def serve_first() -> tuple[np.ndarray, bool]:
        coalescer = UpdateCoalescer(live.lookup, in_loop=in_loop)
        batch, applied = await coalescer.served(validate_transactions({"instances": [first]}, 256))
        written_before_served = applied.done()
        await applied
        return batch.values, written_before_served

    served, written_before_served = asyncio.run(serve_first())
    assert not written_before_served
    live.sent.append(first)
    offline = live.offline()
    expected = offline.loc[[first["transaction_id"]], list(FEATURE_NAMES)].to_numpy(np.float64)
    assert_equal_vectors(served, expected, "served before the write")
    after = live.score([second])  # sent once the first's answer could leave: it sees it
    expected = live.offline().loc[[second["transaction_id"]], list(FEATURE_NAMES)]
    assert_equal_vectors(after, expected.to_numpy(np.float64), "after the overlapped write")


def test_a_write_that_fails_after_serving_is_a_503_and_applies_nothing(
    live: LiveWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving.coalesce import UpdateCoalescer

    tx = live.transaction(8, 9, 60, 13.0)
    validated = validate_transactions({"instances": [tx]}, 256)
    rows = live.lookup._open_rows()

    def store_fails(*args, **kwargs) -> None:  # the online store dies between read and write
        raise sqlite3.OperationalError("disk I/O error")

    async def serve_while_the_store_fails() -> BaseException | None:
        coalescer = UpdateCoalescer(live.lookup, in_loop=True)
        _, applied = await coalescer.served(validated)
        monkeypatch.setattr(rows, "write", store_fails)
        try:
            await applied
        except OnlineStoreUnavailable as exc:
            return exc
        return None

    error = asyncio.run(serve_while_the_store_fails())
    monkeypatch.undo()
    assert isinstance(error, OnlineStoreUnavailable) and error.status == 503
    state = live.lookup._updater.state  # type: ignore[union-attr]
    with state.session([8], [9]) as session:  # rolled back: not applied, lock released
        assert session.applied([tx["transaction_id"]]) == set()
    served = live.score([tx])  # the client's retry counts it, once
    expected = live.offline().loc[[tx["transaction_id"]], list(FEATURE_NAMES)]
    assert_equal_vectors(served, expected.to_numpy(np.float64), "the retry after a failed write")


@pytest.mark.parametrize("customer, terminal", [(9, 8), (990, 991)], ids=["known", "new"])
def test_a_retry_after_a_crash_between_the_rows_and_the_state_is_served_exactly(
    live: LiveWorld, monkeypatch: pytest.MonkeyPatch, customer: int, terminal: int
) -> None:
    """The pass writes Feast's rows, then dies before the state commits: Feast now holds
    rows that already include the transaction. Its retry must still be served the rows
    before it (not Feast's), and count once -- for entities with a history, and for new
    ones whose only row is the one the crashed pass wrote."""
    if customer < N_CUSTOMERS:
        live.score([live.transaction(customer, terminal, 60, 11.0)])
    tx = live.transaction(customer, terminal, 3_600, 17.0)
    state = live.lookup._updater.state  # type: ignore[union-attr]
    opened = state.session

    def crashing_session(*args, **kwargs):
        context = opened(*args, **kwargs)
        session = context.__enter__()

        def crash(transactions) -> None:
            raise sqlite3.OperationalError("the process died before the state's commit")

        session.append = crash  # type: ignore[method-assign]

        class Crashing:
            def __enter__(self):
                return session

            def __exit__(self, *exc):
                return context.__exit__(*exc)

        return Crashing()

    monkeypatch.setattr(state, "session", crashing_session)
    with pytest.raises(OnlineStoreUnavailable):
        live.score([tx])
    monkeypatch.undo()
    rows = live.lookup._open_rows()
    _, stamps = rows.read(CUSTOMER_VIEW, [customer])
    assert stamps[0] >= stamp_us(pd.Timestamp(tx["tx_datetime"]).to_pydatetime())  # ahead
    served = live.score([tx])  # the client's retry
    expected = live.offline().loc[[tx["transaction_id"]], list(FEATURE_NAMES)]
    assert_equal_vectors(served, expected.to_numpy(np.float64), "the retry after the crash")
    nxt = live.transaction(customer, terminal, 60, 5.0)
    served_next = live.score([nxt])
    expected_next = live.offline().loc[[nxt["transaction_id"]], list(FEATURE_NAMES)]
    assert_equal_vectors(served_next, expected_next.to_numpy(np.float64), "counted once")


def test_sqlite_wal_checkpoints_run_in_a_thread_not_in_a_request(tmp_path: Path) -> None:
    from features.sqlite_wal import BACKSTOP_PAGES

    world = next(_world(tmp_path, "sqlite"))
    world.score([world.transaction(1, 1, 60, 9.0)])
    rows = world.lookup._open_rows()
    feast = rows.store._get_provider().online_store._get_conn(rows.config)
    state = world.lookup._updater.state  # type: ignore[union-attr]
    for connection in (feast, state._connection()):
        assert connection.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == BACKSTOP_PAGES
    checkpointer = world.lookup._checkpointer
    assert checkpointer is not None and checkpointer._thread is not None
    assert {p.name for p in checkpointer.paths} == {"online_store.db", "live_state.db"}
    world.lookup.close()
    assert checkpointer._thread is None
