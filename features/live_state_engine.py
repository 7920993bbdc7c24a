"""Which live-state engine goes with a Feast store: SQLite beside its file, or its Redis.

Apart from :mod:`features.online_state` (the records and the protocol the engines share), so
that the engines can import those records without a cycle.
"""

from __future__ import annotations

from pathlib import Path

from features.online_state import LiveState
from features.online_state_redis import RedisLiveState, redis_client
from features.online_state_sqlite import SqliteLiveState
from features.sqlite_wal import DEFAULT_PAGES


def sqlite_online_path(config) -> Path:
    """The file of a Feast SQLite online store (its path is relative to the repo's)."""
    online_path = Path(config.online_store.path)
    if not online_path.is_absolute():
        online_path = Path(config.repo_path) / online_path
    return online_path


def open_live_state(
    store, horizon_days: int, autocheckpoint_pages: int = DEFAULT_PAGES
) -> LiveState:
    """The state engine that goes with a Feast store: its SQLite folder, or its Redis.

    ``autocheckpoint_pages`` applies to SQLite (see :mod:`features.sqlite_wal`).
    """
    config = store.config
    online = config.online_store
    if online.type == "redis":
        return RedisLiveState(redis_client(online.connection_string), config.project, horizon_days)
    return SqliteLiveState(
        sqlite_online_path(config).with_name("live_state.db"),
        config.project,
        horizon_days,
        autocheckpoint_pages,
    )
