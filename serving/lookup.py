"""Raw transactions -> the model's feature vectors, online: the code L1, L2 and L4 share.

Customer and terminal aggregates come from the Feast online store
(``features.store.online_entity_features``); request-time features and the unknown-entity
defaults come from ``features.definitions.assemble_features`` -- the very function training
uses, so serving cannot drift from training by re-implementing a feature.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from data.schema import CUSTOMER_ID, TERMINAL_ID
from features.definitions import (
    CUSTOMER_FEATURES,
    CUSTOMER_VIEW,
    FEATURE_NAMES,
    FEATURE_SERVICE,
    TERMINAL_FEATURES,
    TERMINAL_VIEW,
    UNKNOWN_CUSTOMER,
    UNKNOWN_TERMINAL,
    assemble_features,
    state_horizon_days,
)
from features.live_state_engine import open_live_state
from features.online_update import EventTimePolicy, EventTimeRejected, OnlineFeatureUpdater
from features.store import feature_store
from serving import metrics
from serving.errors import InvalidRequest, OnlineStoreUnavailable
from serving.schema import transaction_json, transactions_frame
from serving.settings import ServingSettings

logger = logging.getLogger("serving.lookup")


@dataclass(frozen=True)
class FeatureBatch:
    """Validated transactions with their assembled features, row for row.

    The frame from ``assemble_features`` is turned into arrays once (in the lookup thread),
    so the answer, the upstream body and the prediction log reuse them without pandas.
    """

    transactions: list[dict[str, Any]]
    values: np.ndarray  # float64, (n, len(FEATURE_NAMES)), FEATURE_NAMES order, NaN = missing
    unknown_customer: np.ndarray  # bool per transaction
    unknown_terminal: np.ndarray

    @classmethod
    def from_frame(cls, transactions: list[dict[str, Any]], features: pd.DataFrame) -> FeatureBatch:
        """From ``assemble_features`` output (FEATURE_NAMES + unknown flags)."""
        return cls(
            transactions,
            # Column by column: selecting 16 columns at once costs pandas ~0.3 ms per request.
            np.column_stack([features[name].to_numpy(np.float64) for name in FEATURE_NAMES]),
            features[UNKNOWN_CUSTOMER].to_numpy(bool),
            features[UNKNOWN_TERMINAL].to_numpy(bool),
        )

    def matrix(self, feature_names: tuple[str, ...] = FEATURE_NAMES) -> np.ndarray:
        """C-contiguous float32 rows in ``feature_names`` order (the model's input order)."""
        if tuple(feature_names) == FEATURE_NAMES:
            return np.ascontiguousarray(self.values, dtype=np.float32)
        missing = [name for name in feature_names if name not in FEATURE_NAMES]
        if missing:
            raise ValueError(
                f"{missing[0]}: the model needs a feature the transformer does not build"
            )
        columns = [FEATURE_NAMES.index(name) for name in feature_names]
        return np.ascontiguousarray(self.values[:, columns], dtype=np.float32)

    def feature_rows(self) -> list[list[float | None]]:
        """Rows in FEATURE_NAMES order as JSON lists, ``None`` where a value is missing."""
        return [[None if math.isnan(v) else v for v in row] for row in self.values.tolist()]


class FeatureRepoIncomplete(RuntimeError):
    """The applied feature repo lacks a view the model needs (re-apply the definitions)."""


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


class _ServiceReader:
    """Reads the feature service's views straight from Feast's online store provider.

    ``FeatureStore.get_online_features`` re-reads the registry protos, type-checks and
    builds a request context on every call (~4 ms for one transaction here); the provider's
    ``online_read`` -- the interface every Feast online store implements -- takes ~0.05 ms.
    The views and their features are resolved once, from the same ``fraud_detector_v1``
    service ``features.store.online_entity_features`` uses; the tests check both agree.
    """

    def __init__(self, store) -> None:

        self.store = store
        self.provider = store._get_provider()
        service = store.get_feature_service(FEATURE_SERVICE)
        self.views = {}
        for projection in service.feature_view_projections:
            view = store.get_feature_view(projection.name)
            self.views[projection.name] = (view, [f.name for f in projection.features])
        for required in (CUSTOMER_VIEW, TERMINAL_VIEW):
            if required not in self.views:
                raise FeatureRepoIncomplete(
                    f"feature service {FEATURE_SERVICE}: view {required} missing"
                )
        self.customer_view, self.terminal_view = CUSTOMER_VIEW, TERMINAL_VIEW

    def _rows(
        self, view_name: str, key: str, ids: list[int], columns: tuple[str, ...]
    ) -> tuple[pd.DataFrame, np.ndarray]:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        view, names = self.views[view_name]
        keys = [EntityKey(join_keys=[key], entity_values=[Value(int64_val=i)]) for i in ids]
        found = self.provider.online_read(self.store.config, view, keys, names) if ids else []
        values = np.full((len(ids), len(columns)), np.nan)
        stamps = np.full(len(ids), -1, np.int64)  # the row's event_timestamp in µs; -1 = none
        for i, (stamp, row) in enumerate(found):
            if not row:
                continue  # unseen id: a NaN row, which assemble_features flags as unknown
            if stamp is not None:
                stamps[i] = pd.Timestamp(stamp).value // 1000
            for j, column in enumerate(columns):
                value = row.get(column)
                kind = value.WhichOneof("val") if value is not None else None
                if kind is not None:
                    values[i, j] = float(getattr(value, kind))
        # One frame from columns (no insert afterwards: each pandas call costs ~50 µs here).
        frame = pd.DataFrame(
            {key: np.asarray(ids, dtype=np.int64), **dict(zip(columns, values.T, strict=True))}
        )
        return frame, stamps

    def read_stamped(
        self, customer_ids: list[int], terminal_ids: list[int]
    ) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
        """:meth:`read` plus each row's event timestamp in µs (-1 for unknown ids)."""

        customer, customer_ts = self._rows(
            self.customer_view, CUSTOMER_ID, customer_ids, CUSTOMER_FEATURES
        )
        terminal, terminal_ts = self._rows(
            self.terminal_view, TERMINAL_ID, terminal_ids, TERMINAL_FEATURES
        )
        return customer, terminal, customer_ts, terminal_ts

    def read(
        self, customer_ids: list[int], terminal_ids: list[int]
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``(customer_rows, terminal_rows)`` aligned with the ids, NaN rows for unknown ids."""
        customer, terminal, _, _ = self.read_stamped(customer_ids, terminal_ids)
        return customer, terminal


class OnlineFeatureLookup:
    """The Feast online store of the settings, opened once and queried per request."""

    def __init__(self, settings: ServingSettings) -> None:
        self.settings = settings
        self._reader: _ServiceReader | None = None
        self._updater: OnlineFeatureUpdater | None = None  # set when live_updates is on
        self._lock = threading.Lock()

    def describe(self) -> str:
        """Where features come from, for log lines and error messages."""
        if self.settings.online_store == "redis":
            return f"Feast online store redis at {self.settings.redis_url}"
        return f"Feast online store sqlite of {self.settings.feast_repo_path()}"

    def _open_reader(self) -> _ServiceReader:

        with self._lock:
            if self._reader is None:
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
                reader = _ServiceReader(store)
                if self.settings.live_updates:
                    self._updater = self._live_updater(store)
                self._reader = reader
        return self._reader

    def _live_updater(self, store):

        delay = self.settings.label_delay()
        horizon = state_horizon_days(delay)
        policy = EventTimePolicy(
            clock=self.settings.event_clock,
            future_tolerance_seconds=(
                self.settings.future_tolerance_seconds
                if self.settings.event_clock == "server"
                else self.settings.replay_future_tolerance_seconds
            ),
            horizon_days=horizon,
        )
        return OnlineFeatureUpdater(store, open_live_state(store, horizon), delay, policy)

    def open(self) -> None:
        """Resolve the feature service and read one row, so the first request is not slow."""
        try:
            self._open_reader().read([0], [0])
        except _store_errors() as exc:
            logger.warning("%s not readable yet: %s", self.describe(), exc)

    def entity_rows(self, customer_ids: list[int], terminal_ids: list[int]):
        """``(customer_rows, terminal_rows)`` from the online store, or a 503 error."""
        try:
            return self._open_reader().read(customer_ids, terminal_ids)
        except _store_errors() as exc:
            raise self._unavailable(exc) from None

    def _served_and_applied(
        self, requests: pd.DataFrame
    ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
        """Each transaction's exact rows and velocity, then the transactions folded in."""

        try:
            reader = self._open_reader()  # opens the updater with it (live_updates is on)
            updater = self._updater
            if updater is None:  # _open_reader opens it whenever live updates are on
                raise RuntimeError("live updates are on but the online-state updater is not open")
            customer_rows, terminal_rows, velocity, outcome = updater.serve_and_apply(
                requests, reader.read_stamped
            )
        except EventTimeRejected as exc:
            raise InvalidRequest(
                str(exc), [{"field": exc.field, "rule": exc.rule, "got": exc.got}]
            ) from None
        except (*_store_errors(), TimeoutError) as exc:  # type: ignore[misc]  # a runtime tuple
            raise self._unavailable(exc) from None
        metrics.observe_online_update(outcome.applied, outcome.duplicates, outcome.late)
        return customer_rows, terminal_rows, velocity

    def _unavailable(self, exc: BaseException) -> OnlineStoreUnavailable:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return OnlineStoreUnavailable(
            f"{self.describe()} is unavailable: {detail}; no features, so no score"
        )

    def features(self, transactions: list[BaseModel]) -> FeatureBatch:
        """Look up the entities and assemble the model's features for each transaction.

        With live updates on, the transactions also move their entities' online rows before
        the answer leaves (read-your-writes for the caller's next request).
        """

        requests = transactions_frame(transactions)
        velocity = None  # without the live state, request-time velocity is not known: missing
        if self.settings.live_updates:
            customer_rows, terminal_rows, velocity = self._served_and_applied(requests)
        else:
            customer_rows, terminal_rows = self.entity_rows(
                requests[CUSTOMER_ID].tolist(), requests[TERMINAL_ID].tolist()
            )
        features = assemble_features(requests, customer_rows, terminal_rows, velocity)
        return FeatureBatch.from_frame([transaction_json(t) for t in transactions], features)
