"""The drift and skew jobs read the prediction log as the cluster's shipper writes it.

The transformer's sidecar (Vector, k8s/components/transformer/prediction-log-shipper.yaml)
writes the transformer's records as gzipped newline-delimited JSON objects named
``<prefix>date=YYYY-MM-DD/<unix time>-<uuid>.log.gz``; ``data/vector-prediction-log.ndjson``
holds such records as Vector's JSON codec writes them (compact, keys sorted).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from data.schema import TRANSACTION_ID
from monitoring.window import read_log
from serving.prediction_log import read_prediction_log

SHIPPED_RECORDS = Path(__file__).parent / "data" / "vector-prediction-log.ndjson"


def _ship(lines: bytes, store: Path, day: str, name: str) -> Path:
    """One object as Vector's aws_s3 sink names and compresses it."""
    folder = store / "prediction-log" / f"date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.log.gz"
    path.write_bytes(gzip.compress(lines))
    return path


def test_the_shipped_objects_are_read_from_the_store(tmp_path: Path):
    lines = SHIPPED_RECORDS.read_bytes().splitlines(keepends=True)
    _ship(
        b"".join(lines[:2]),
        tmp_path,
        "2026-11-30",
        "1796050800-0b7c9e1a-5d1c-4c1e-9a55-3f0c6d1b2a77",
    )
    _ship(lines[2], tmp_path, "2026-12-01", "1796137200-7e2d4f60-1b8a-4f0d-8c3e-2a9b5c6d7e8f")
    frame = read_log((tmp_path / "prediction-log").as_uri() + "/")
    assert frame[TRANSACTION_ID].tolist() == [1200001, 1200002, 1200003]
    assert frame["model_version"].tolist() == ["4", "4", "4"]
    # Features become columns; a null travels as a missing value.
    assert frame["customer_tx_count_1h"].notna().all() and frame["terminal_risk_30d"].isna().all()


def test_a_local_copy_of_the_store_reads_the_same(tmp_path: Path):
    _ship(SHIPPED_RECORDS.read_bytes(), tmp_path, "2026-11-30", "1796050800-0b7c9e1a")
    local = read_prediction_log(tmp_path / "prediction-log")
    assert local[TRANSACTION_ID].tolist() == [1200001, 1200002, 1200003]


def test_a_request_log_event_is_not_taken_for_a_prediction(tmp_path: Path):
    """KServe's request logger writes feature rows without a transaction: named, refused."""
    event = {"instances": [[1.0, 2.0]], "ce-type": "org.kubeflow.serving.inference.request"}
    _ship(json.dumps(event).encode() + b"\n", tmp_path, "2026-11-30", "1796050800-a")
    with pytest.raises(ValueError, match=r"line 1: transaction_id: required in a prediction"):
        read_log((tmp_path / "prediction-log").as_uri())
