"""The project's Feast feature store: build it, register the definitions, materialise, look up.

``features/feature_repo/feature_store.yaml`` describes the infrastructure (SQLite online
store on one machine). The online store is chosen by argument or environment:

* ``FRAUD_ONLINE_STORE`` -- ``sqlite`` (default) or ``redis``;
* ``FRAUD_REDIS_URL`` -- ``host:port`` of Redis (required for ``redis``);
* ``FRAUD_FEAST_PROJECT`` -- overrides the yaml's ``project`` (Redis keys and SQLite tables
  are namespaced by it, so several projects can share one Redis).

They are read through :class:`fraudops.settings.FeatureStoreSettings`, when a store is built.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Literal

import numpy as np
import pandas as pd
import yaml
from feast import Entity, FeatureService, FeatureStore, FeatureView, RepoConfig
from feast.data_source import DataSource

from data.schema import CUSTOMER_ID, TERMINAL_ID
from features.definitions import (
    CUSTOMER_FEATURES,
    CUSTOMER_VIEW,
    EVENT_TIMESTAMP,
    FEATURE_SERVICE,
    TERMINAL_FEATURES,
    TERMINAL_VIEW,
)
from fraudops.paths import paths
from fraudops.settings import FeatureStoreSettings

OnlineStore = Literal["sqlite", "redis"]

#: The variables' names, for the messages (FeatureStoreSettings reads them).
ONLINE_STORE_ENV = "FRAUD_ONLINE_STORE"
REDIS_URL_ENV = "FRAUD_REDIS_URL"

# Materialisation starts before any transaction can exist.
_BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


def _online_store_block(online: str, redis_url: str | None) -> dict[str, str] | None:
    """The ``online_store`` block replacing the yaml's, or None to keep it (SQLite)."""
    if online == "sqlite":
        return None
    if online == "redis":
        url = redis_url
        if not url:
            raise ValueError(
                f"{REDIS_URL_ENV}: required for the redis online store, e.g. 127.0.0.1:6379"
            )
        return {"type": "redis", "connection_string": url}
    raise ValueError(f"{ONLINE_STORE_ENV}: must be 'sqlite' or 'redis', got {online!r}")


def feature_store(
    repo_path: Path | str | None = None,
    online: OnlineStore | None = None,
    redis_url: str | None = None,
    project: str | None = None,
) -> FeatureStore:
    """The Feast store of the feature repo (default ``paths().feature_repo``).

    ``online``, ``redis_url`` and ``project`` default to ``FRAUD_ONLINE_STORE`` (else
    sqlite), ``FRAUD_REDIS_URL`` and ``FRAUD_FEAST_PROJECT`` (else the yaml's project).
    """
    repo = Path(repo_path).resolve() if repo_path else paths().feature_repo
    config_file = repo / "feature_store.yaml"
    if not config_file.exists():
        raise FileNotFoundError(f"{config_file}: Feast feature_store.yaml not found")
    # Same reading as Feast's own loader: ${VARS} in the yaml are substituted.
    raw = yaml.safe_load(os.path.expandvars(config_file.read_text()))
    settings = FeatureStoreSettings()
    block = _online_store_block(online or settings.online_store, redis_url or settings.redis_url)
    if block is not None:
        raw["online_store"] = block
    raw["project"] = project or settings.feast_project or raw["project"]
    config = RepoConfig(**raw)
    # Relative registry, online-store and source paths resolve against the repo, not the cwd.
    config.repo_path = repo
    return FeatureStore(repo_path=str(repo), config=config)


def _repo_modules() -> list[ModuleType]:
    # The repo's modules are also loaded by Feast as top-level modules: only when asked for.
    from features.feature_repo import entities, feature_services, feature_views, sources

    return [entities, sources, feature_views, feature_services]


def repo_objects() -> list[Entity | DataSource | FeatureView | FeatureService]:
    """Every Feast object defined in the feature repo (what ``feast apply`` would collect)."""
    found: list[Entity | DataSource | FeatureView | FeatureService] = []
    for module in _repo_modules():
        for value in vars(module).values():
            is_feast = isinstance(value, (Entity, DataSource, FeatureView, FeatureService))
            if is_feast and not any(value is seen for seen in found):
                found.append(value)
    return found


def apply_definitions(store: FeatureStore) -> None:
    """Register the repo's entities, sources, feature views and service; create online tables."""
    store.apply(repo_objects())


def _utc(moment: datetime | pd.Timestamp) -> datetime:
    stamp = pd.Timestamp(moment)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    # Rows are stamped in whole microseconds, so flooring ``end`` keeps "<= end" exact.
    return stamp.floor("us").to_pydatetime()


def materialize(store: FeatureStore, end: datetime | pd.Timestamp) -> None:
    """Load the online store so each entity holds its latest row with event_timestamp <= end.

    That is exactly the row a transaction at ``end`` gets from the offline point-in-time
    join (naive ``end`` = UTC).
    """
    # Feast's file offline store selects [start, end] inclusive at both ends.
    store.materialize(start_date=_BEGINNING, end_date=_utc(end))


def _service_refs(store: FeatureStore) -> dict[str, list[str]]:
    """``view:feature`` references per feature view, as the feature service lists them."""
    service = store.get_feature_service(FEATURE_SERVICE)
    return {
        projection.name: [f"{projection.name_to_use()}:{f.name}" for f in projection.features]
        for projection in service.feature_view_projections
    }


def _online_rows(
    store: FeatureStore, refs: list[str], key: str, ids: Sequence[int], columns: tuple[str, ...]
) -> pd.DataFrame:
    ids = [int(i) for i in np.asarray(ids, dtype=np.int64)]
    rows = pd.DataFrame({key: np.asarray(ids, dtype=np.int64)})
    if ids:
        found = store.get_online_features(
            features=refs, entity_rows=[{key: i} for i in ids]
        ).to_dict()
    else:
        found = {}
    for column in columns:
        # An unseen id comes back as None: a NaN row, which assemble_features flags as unknown.
        rows[column] = pd.Series(found.get(column, [None] * len(ids)), dtype="object").astype(
            np.float64
        )
    return rows


def online_entity_features(
    store: FeatureStore, customer_ids: Sequence[int], terminal_ids: Sequence[int]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Online rows ``(customer_rows, terminal_rows)``, aligned with the given ids.

    Columns: the join key and the view's features (float); an unknown id gives a NaN row,
    never an error. Features are those the ``fraud_detector_v1`` service lists.
    """
    refs = _service_refs(store)
    return (
        _online_rows(store, refs[CUSTOMER_VIEW], CUSTOMER_ID, customer_ids, CUSTOMER_FEATURES),
        _online_rows(store, refs[TERMINAL_VIEW], TERMINAL_ID, terminal_ids, TERMINAL_FEATURES),
    )


def historical_features(store: FeatureStore, entity_df: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time rows from Feast's ``get_historical_features`` for ``fraud_detector_v1``.

    ``entity_df`` needs ``customer_id``, ``terminal_id`` and ``event_timestamp`` (the request
    time; naive = UTC). Returns those columns plus the customer and terminal features
    (float, NaN where no row is visible yet), in ``entity_df``'s order and index.
    """
    keys = [CUSTOMER_ID, TERMINAL_ID, EVENT_TIMESTAMP]
    missing = [c for c in keys if c not in entity_df.columns]
    if missing:
        raise ValueError(f"{missing[0]}: required column missing from entity_df")
    result = entity_df.loc[:, keys].reset_index(drop=True)
    result[EVENT_TIMESTAMP] = pd.to_datetime(result[EVENT_TIMESTAMP], utc=True)
    refs = _service_refs(store)
    # One query per feature view of the service: Feast's file offline store drops an entity
    # row from the whole result when one view has rows for that entity but none visible
    # yet (e.g. a known customer at a terminal's first transaction); per view, a dropped
    # row is exactly "no row visible" and comes back as NaN from the merge below.
    for view, key, columns in (
        (CUSTOMER_VIEW, CUSTOMER_ID, CUSTOMER_FEATURES),
        (TERMINAL_VIEW, TERMINAL_ID, TERMINAL_FEATURES),
    ):
        # Feast also collapses requests with equal key and time: ask once per distinct pair.
        asked = result[[key, EVENT_TIMESTAMP]].drop_duplicates().reset_index(drop=True)
        found = store.get_historical_features(entity_df=asked, features=refs[view]).to_df()
        found[EVENT_TIMESTAMP] = pd.to_datetime(found[EVENT_TIMESTAMP], utc=True)
        found = found.loc[:, [key, EVENT_TIMESTAMP, *columns]]
        result = result.merge(found, on=[key, EVENT_TIMESTAMP], how="left", validate="m:1")
    features = list(CUSTOMER_FEATURES + TERMINAL_FEATURES)
    result[features] = result[features].astype(np.float64)
    result[EVENT_TIMESTAMP] = result[EVENT_TIMESTAMP].dt.tz_localize(None)
    result.index = entity_df.index
    return result
