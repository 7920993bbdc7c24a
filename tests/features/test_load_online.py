"""``python -m features.load_online``: a deployment's online store loaded once from the
versioned tables (object-store URIs), then left to the traffic; bad input is one line."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import redis
import yaml

from data.schema import TX_DATETIME
from features.live_state_engine import open_live_state
from features.load_online import live_state_watermark, main
from features.online_state import LiveTransaction
from features.store import feature_store
from fraudops.paths import paths
from serving.sandbox import synthetic_transactions, write_offline_sources

REDIS = "127.0.0.1:6379"


def _stamp_us(moment) -> int:
    return int(pd.Timestamp(moment).value // 1000)


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[dict]:
    """Versioned tables behind file:// URIs and a cluster-like Feast config (Redis)."""
    history = synthetic_transactions(n=600, n_customers=8, n_terminals=6, days=40, seed=5)
    write_offline_sources(tmp_path / "versioned", history)
    layout = paths(tmp_path / "versioned")
    layout.validated_transactions.parent.mkdir(parents=True)
    history.to_parquet(layout.validated_transactions)
    project = f"fraud_load_online_{uuid.uuid4().hex[:8]}"
    config = tmp_path / "etc-feast" / "feature_store.yaml"
    config.parent.mkdir()
    config.write_text(
        yaml.safe_dump(
            {
                "project": project,
                "registry": str(tmp_path / "registry.db"),  # s3:// on a cluster
                "provider": "local",
                "offline_store": {"type": "file"},
                "online_store": {"type": "redis", "connection_string": REDIS},
                "entity_key_serialization_version": 3,
            }
        )
    )
    args = [
        "--config", str(config),
        "--transactions", layout.validated_transactions.as_uri(),
        "--customer-features", layout.customer_features.as_uri(),
        "--terminal-features", layout.terminal_features.as_uri(),
    ]  # fmt: skip
    store_dir = tmp_path / "reader"
    store_dir.mkdir()
    (store_dir / "feature_store.yaml").write_text(config.read_text())
    yield {"args": args, "history": history, "store": feature_store(store_dir), "config": config}
    client = redis.Redis.from_url(f"redis://{REDIS}")
    for key in client.scan_iter(match=f"*{project}*", count=1000):
        client.delete(key)


def test_a_fresh_store_is_loaded_then_left_to_the_traffic(deployment, capsys) -> None:
    history, store = deployment["history"], deployment["store"]
    assert live_state_watermark(store) is None

    assert main(deployment["args"]) == 0
    out = capsys.readouterr().out
    assert "online store redis loaded" in out and "live state seeded with" in out
    assert live_state_watermark(store) == _stamp_us(history[TX_DATETIME].max())
    rows = store.get_online_features(
        features=["customer_spending:customer_tx_count_30d"],
        entity_rows=[{"customer_id": int(history["customer_id"].iloc[-1])}],
    ).to_dict()
    assert rows["customer_tx_count_30d"][0] is not None  # materialised

    # The traffic moves the state past the versioned data...
    later = _stamp_us(history[TX_DATETIME].max() + pd.Timedelta(hours=1))
    state = open_live_state(store, 37)
    with state.session([1], [1]) as session:
        session.append([LiveTransaction(99_000_001, later, 1, 1, 12.5)])
    # ...so a second sync of the Job leaves it alone,
    assert main(deployment["args"]) == 0
    assert "already live" in capsys.readouterr().out
    assert live_state_watermark(store) == later
    # and --reload puts it back to the versioned data.
    assert main([*deployment["args"], "--reload"]) == 0
    assert live_state_watermark(store) == _stamp_us(history[TX_DATETIME].max())


def test_an_unreadable_table_is_one_line_naming_it(deployment, capsys, tmp_path: Path) -> None:
    args = list(deployment["args"])
    missing = (tmp_path / "nowhere.parquet").as_uri()
    args[args.index("--transactions") + 1] = missing
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and missing in err[0] and "cannot read the versioned table" in err[0]
    assert live_state_watermark(deployment["store"]) is None  # nothing half-loaded


def test_a_config_that_would_load_into_scratch_is_refused(deployment, capsys) -> None:
    config = deployment["config"]
    text = yaml.safe_load(config.read_text())
    text["online_store"] = {"type": "sqlite", "path": "data/online_store.db"}
    config.write_text(yaml.safe_dump(text))
    assert main(deployment["args"]) == 1
    assert "online_store.path 'data/online_store.db' is relative" in capsys.readouterr().err
