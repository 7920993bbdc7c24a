"""Raw transactions -> the model's feature vectors, online: the code L1, L2 and L4 share.

Customer and terminal aggregates come from the Feast online store through its provider
(:class:`features.online_rows.OnlineRows`: one read per entity kind per request);
request-time features and the unknown-entity defaults come from
``features.definitions.feature_values`` -- the very function training's
``assemble_features`` ends in, so serving cannot drift from training by re-implementing a
feature. Nothing here builds a DataFrame: for one transaction pandas' per-call overhead
was most of the cost.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from pydantic import BaseModel

from features.definitions import (
    CUSTOMER_VIEW,
    TERMINAL_VIEW,
    feature_values,
    state_horizon_days,
)
from features.live_state_engine import open_live_state, sqlite_online_path
from features.online_rows import FeatureRepoIncomplete, OnlineRows, stamp_us
from features.online_update import (
    EventTimePolicy,
    EventTimeRejected,
    LiveRequests,
    OnlineFeatureUpdater,
    ServedPass,
    check_event_times,
)
from features.sqlite_wal import BACKSTOP_PAGES, DEFAULT_PAGES, WalCheckpointer, set_autocheckpoint
from features.store import feature_store
from serving import metrics
from serving.errors import InvalidRequest, OnlineStoreUnavailable, ServingError
from serving.feature_batch import FeatureBatch
from serving.schema import transaction_json
from serving.settings import ServingSettings

logger = logging.getLogger("serving.lookup")


def _store_errors() -> tuple[type[BaseException], ...]:
    """Exceptions meaning "the online store cannot be read" (not a bug in the request).

    Feast's own errors are here too: a feature repo never applied or materialised (no
    registry, no feature service) is missing infrastructure, not a bad request.
    """
    import redis.exceptions
    from feast.errors import FeastError

    return (redis.exceptions.RedisError, sqlite3.Error, OSError, FeastError, FeatureRepoIncomplete)


#: Seconds to connect to / hear from Redis before the request becomes a 503.
REDIS_TIMEOUT_SECONDS = 2


def _with_timeouts(redis_url: str | None) -> str | None:
    """``host:port`` plus socket timeouts (Feast passes ``key=value`` parts to redis-py)."""
    if not redis_url:
        return redis_url
    for key in ("socket_connect_timeout", "socket_timeout"):
        if f"{key}=" not in redis_url:
            redis_url += f",{key}={REDIS_TIMEOUT_SECONDS}"
    return redis_url


def _fail_fast_redis(store) -> None:
    """One immediate retry instead of redis-py's backoff (~12 s before "Redis is down").

    A request waiting seconds for a dead Redis helps nobody: answer 503 at once and let
    the caller retry. Feast builds the client itself, so it is adjusted after the fact.
    """
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    online = store._get_provider().online_store
    client = online._get_client(store.config.online_store)
    client.set_retry(Retry(NoBackoff(), 1))


def _fast_sqlite_commits(store) -> None:
    """WAL journal and ``synchronous=NORMAL`` for Feast's SQLite online store connection.

    Live updates commit on every request; with the default rollback journal each commit
    waits for an fsync (tens of ms on a busy disk). WAL also lets the other servers read
    while one writes. A power cut may lose the last commits -- as with the live state,
    which uses the same settings; the served answers themselves are in the prediction log.
    """
    online = store._get_provider().online_store
    connection = online._get_conn(store.config)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    # Several servers write one file: wait for a writer's lock instead of failing at 5 s.
    connection.execute("PRAGMA busy_timeout=30000")
    # Checkpoints come from the lookup's WalCheckpointer thread, not from a request's commit.
    set_autocheckpoint(connection, BACKSTOP_PAGES)


def _refused(exc: EventTimeRejected) -> InvalidRequest:
    """The 422 of a transaction dated outside the event-time policy (field, value, rule)."""
    return InvalidRequest(str(exc), [{"field": exc.field, "rule": exc.rule, "got": exc.got}])


class OnlineFeatureLookup:
    """The Feast online store of the settings, opened once and queried per request."""

    def __init__(self, settings: ServingSettings) -> None:
        self.settings = settings
        self._rows: OnlineRows | None = None
        self._updater: OnlineFeatureUpdater | None = None  # set when live_updates is on
        self._checkpointer: WalCheckpointer | None = None  # SQLite with live updates
        self._lock = threading.Lock()

    def describe(self) -> str:
        """Where features come from, for log lines and error messages."""
        if self.settings.online_store == "redis":
            return f"Feast online store redis at {self.settings.redis_url}"
        return f"Feast online store sqlite of {self.settings.feast_repo_path()}"

    def _open_rows(self) -> OnlineRows:
        with self._lock:
            if self._rows is None:
                store = feature_store(
                    self.settings.feast_repo_path(),
                    online=self.settings.online_store,
                    redis_url=_with_timeouts(self.settings.redis_url),
                    project=self.settings.feast_project,
                )
                if self.settings.online_store == "redis":
                    _fail_fast_redis(store)
                elif self.settings.live_updates:
                    _fast_sqlite_commits(store)
                rows = OnlineRows(store)
                if self.settings.live_updates:
                    self._updater = self._live_updater(rows)
                self._rows = rows
        return self._rows

    @functools.cached_property
    def _event_time_policy(self) -> EventTimePolicy:
        # Once per process: label_delay() reads params.yaml when the setting is unset.
        return EventTimePolicy(
            clock=self.settings.event_clock,
            future_tolerance_seconds=(
                self.settings.future_tolerance_seconds
                if self.settings.event_clock == "server"
                else self.settings.replay_future_tolerance_seconds
            ),
            horizon_days=state_horizon_days(self.settings.label_delay()),
        )

    def _live_updater(self, rows: OnlineRows) -> OnlineFeatureUpdater:
        policy = self._event_time_policy
        sqlite = self.settings.online_store == "sqlite"
        state = open_live_state(
            rows.store, policy.horizon_days, BACKSTOP_PAGES if sqlite else DEFAULT_PAGES
        )
        if sqlite:  # both files' checkpoints off the request path (features.sqlite_wal)
            self._checkpointer = WalCheckpointer(
                [sqlite_online_path(rows.config), state.path]  # type: ignore[attr-defined]
            )
            self._checkpointer.start()
        return OnlineFeatureUpdater(rows, state, self.settings.label_delay(), policy)

    def close(self) -> None:
        """Stop the WAL checkpointer, if one runs (the store's connections close with the
        process)."""
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None

    def _check_against_server_clock(self, requests: LiveRequests) -> None:
        """With live updates off there is no state to corrupt, but a transaction dated
        beyond the tolerance is still refused where it enters (the server clock needs no
        state; the replay clock is the state's, so without it nothing is compared)."""
        if self.settings.event_clock != "server":
            return
        try:
            check_event_times(
                np.asarray(requests.time_us, np.int64),
                None,
                self._event_time_policy,
                stamp_us(datetime.now(UTC)),
            )
        except EventTimeRejected as exc:
            raise _refused(exc) from None

    def open(self) -> None:
        """Resolve the feature service and read one row, so the first request is not slow."""
        try:
            self.entity_rows([0], [0])
        except OnlineStoreUnavailable as exc:
            logger.warning("%s not readable yet: %s", self.describe(), exc.message)

    def entity_rows(
        self, customer_ids: list[int], terminal_ids: list[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Customer and terminal rows (view column order, NaN rows for unknown ids), or a 503."""
        try:
            rows = self._open_rows()
            return (
                rows.read(CUSTOMER_VIEW, customer_ids)[0],
                rows.read(TERMINAL_VIEW, terminal_ids)[0],
            )
        except _store_errors() as exc:
            raise self._unavailable(exc) from None

    def _serve_live(self, requests: LiveRequests) -> ServedPass:
        """Each transaction's exact rows and velocity; the update left to apply."""
        try:
            self._open_rows()  # opens the updater with it (live_updates is on)
            updater = self._updater
            if updater is None:  # _open_rows opens it whenever live updates are on
                raise RuntimeError("live updates are on but the online-state updater is not open")
            return updater.serve(requests)
        except EventTimeRejected as exc:
            raise _refused(exc) from None
        except (*_store_errors(), TimeoutError) as exc:  # type: ignore[misc]  # a runtime tuple
            raise self._unavailable(exc) from None

    def _apply(self, served: ServedPass) -> None:
        """Write a served pass's update (a 503 if the store fails meanwhile)."""
        try:
            outcome = served.apply()
        except (*_store_errors(), TimeoutError) as exc:  # type: ignore[misc]  # a runtime tuple
            raise self._unavailable(exc) from None
        metrics.observe_online_update(outcome.applied, outcome.duplicates, outcome.late)

    def _unavailable(self, exc: BaseException) -> OnlineStoreUnavailable:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return OnlineStoreUnavailable(
            f"{self.describe()} is unavailable: {detail}; no features, so no score"
        )

    def features(self, transactions: list[BaseModel], apply: bool = True) -> FeatureBatch:
        """Look up the entities and assemble the model's features for each transaction.

        With live updates on, the transactions also move their entities' online rows before
        the answer leaves (read-your-writes for the caller's next request). ``apply=False``
        serves the same rows and writes nothing (an explanation does not change the state).
        """
        served = self._served([transactions])
        if apply:
            served.apply()
        else:
            served.discard()
        return served.answers[0]  # type: ignore[return-value]  # _served fails, or serves all

    def serve_many(self, requests: list[list[BaseModel]]) -> ServedRequests:
        """:meth:`features` of several requests, as if sent one after the other, in one pass;
        their update is written by :meth:`ServedRequests.apply`.

        One state session, one read and one write per feature view and one commit for all
        of them (group commit): what concurrent requests cost together is then little more
        than one of them. A request the state refuses (an event time out of bounds) must
        not fail the others: then each is served and applied on its own, in order. Each
        request gets its batch, or the error that is its answer.
        """
        try:
            return self._served(requests)
        except InvalidRequest as exc:
            if len(requests) == 1:
                return ServedRequests([exc])
            # one request's event time: serve them one by one to find whose
        except ServingError as exc:  # the store is down: the same answer for each
            return ServedRequests([exc] * len(requests))
        answers: list[FeatureBatch | ServingError] = []
        for transactions in requests:
            try:
                answers.append(self.features(transactions))
            except ServingError as exc:
                answers.append(exc)
        return ServedRequests(answers)

    def _served(self, requests: list[list[BaseModel]]) -> ServedRequests:
        """The feature batches of ``requests``, looked up as one batch, the update pending."""
        transactions = [t for request in requests for t in request]
        live = LiveRequests.of(transactions)
        velocity = None  # without the live state, request-time velocity is not known: missing
        pending = None
        if self.settings.live_updates:
            pending = self._serve_live(live)
            (customer_rows, terminal_rows), velocity = pending.rows, pending.velocity
        else:
            self._check_against_server_clock(live)
            customer_rows, terminal_rows = self.entity_rows(live.customer_id, live.terminal_id)
        try:
            values, unknown_customer, unknown_terminal = feature_values(
                np.asarray(live.time_us, np.int64) * 1000,
                np.asarray(live.amount, np.float64),
                customer_rows,
                terminal_rows,
                velocity,
            )
            batches: list[FeatureBatch | ServingError] = []
            start = 0
            for request in requests:
                end = start + len(request)
                batches.append(
                    FeatureBatch(
                        [transaction_json(t) for t in request],
                        values[start:end],
                        unknown_customer[start:end],
                        unknown_terminal[start:end],
                    )
                )
                start = end
        except BaseException:
            if pending is not None:
                pending.discard()
            raise
        return ServedRequests(batches, pending, self._apply)


@dataclass
class ServedRequests:
    """Requests served their features in one pass, the pass's live update not yet written.

    Exactly one of :meth:`apply` and :meth:`discard` ends it (both do nothing without live
    updates). A caller may send the batches on first -- an answer must still not leave
    before :meth:`apply` has returned (read-your-writes).
    """

    answers: list[FeatureBatch | ServingError]
    pending: ServedPass | None = None
    writer: Callable[[ServedPass], None] | None = None

    def apply(self) -> None:
        """Write and commit the pass's update; a :class:`ServingError` (503) if it fails."""
        if self.pending is not None and self.writer is not None:
            pending, self.pending = self.pending, None
            self.writer(pending)

    def discard(self) -> None:
        """End the pass writing nothing."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.discard()
