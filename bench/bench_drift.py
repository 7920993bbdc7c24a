"""Benchmark: the drift job on a 200k-record prediction log (target <= 60 s end to end).

The whole job as ``make drift`` runs it -- champion and reference from a (temporary SQLite)
MLflow registry, the prediction log read and windowed, Evidently's drift/PSI/missing/
prediction metrics, the HTML report, the JSON summary and both logged to MLflow, the
Prometheus textfile -- timed per phase. Features are random but shaped like the real ones
(amounts, 0/1 flags, counts, NaN-bearing means and risks); the timing depends on sizes and
types, not on the values. Writes only to a temporary directory.
``python bench/bench_drift.py [rows]`` prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost

from features.definitions import FEATURE_NAMES
from fraudops.bundle import (
    BUNDLE_ARTIFACT_PATH,
    MODEL_NAME,
    REFERENCE_ARTIFACT_PATH,
    REFERENCE_FILE,
    SCORE_COLUMN,
    ModelBundle,
    Thresholds,
    load_reference_sample,
    load_registered_bundle,
    save_bundle,
)
from fraudops.config import load_params
from fraudops.registry import mlflow_client
from monitoring.drift import DriftJobConfig, detect_drift, run_drift_job
from monitoring.window import champion_scores, load_prediction_window
from serving.prediction_log import PredictionLogWriter, PredictionRecord

TARGET_SECONDS = 60.0
DEFAULT_ROWS = 200_000
REFERENCE_ROWS = 5_000


def synthetic_features(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """``n`` rows of FEATURE_NAMES with realistic types and missing values."""

    rng = np.random.default_rng(seed)
    when = pd.Timestamp("2026-06-01") + pd.to_timedelta(rng.integers(0, 7 * 86_400, n), unit="s")
    amount = rng.gamma(2.0, 30.0 * (1 + shift), n).round(2)
    frame = pd.DataFrame({"tx_datetime": when.sort_values()})
    for name in FEATURE_NAMES:
        if name == "tx_amount":
            frame[name] = amount
        elif name.startswith("tx_during"):
            frame[name] = (rng.random(n) < 0.15).astype(float)
        elif "count" in name:
            frame[name] = rng.poisson(3.0, n).astype(float)
        elif "risk" in name:
            values = np.where(rng.random(n) < 0.03, rng.random(n), 0.0)
            values[rng.random(n) < 0.05] = np.nan
            frame[name] = values
        else:
            values = rng.gamma(2.0, 25.0, n)
            values[rng.random(n) < 0.01] = np.nan
            frame[name] = values
    return frame


def _register_champion(uri: str, root: Path, reference: pd.DataFrame) -> None:
    """A 50-tree booster on the synthetic features, registered as fraud-detector@champion."""
    rng = np.random.default_rng(1)
    X = np.ascontiguousarray(reference[list(FEATURE_NAMES)].to_numpy(np.float32))
    y = (rng.random(len(X)) < 0.02 + 0.2 * (reference["tx_amount"].to_numpy() > 150)).astype(int)
    booster = xgboost.train(
        {"objective": "binary:logistic", "max_depth": 4, "nthread": 2},
        xgboost.DMatrix(X, label=y, feature_names=list(FEATURE_NAMES)),
        num_boost_round=50,
    )
    bundle = ModelBundle(booster, tuple(FEATURE_NAMES), Thresholds(review=0.1, decline=0.6))
    reference[SCORE_COLUMN] = bundle.predict_proba(X)

    client, _ = mlflow_client(uri, check=False)
    experiment = client.create_experiment("bench", artifact_location=(root / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    save_bundle(bundle, root / "bundle")
    client.log_artifacts(run_id, str(root / "bundle"), BUNDLE_ARTIFACT_PATH)
    reference.to_parquet(root / REFERENCE_FILE, index=False)
    client.log_artifact(run_id, str(root / REFERENCE_FILE), REFERENCE_ARTIFACT_PATH)
    client.set_terminated(run_id)
    client.create_registered_model(MODEL_NAME)
    version = client.create_model_version(
        MODEL_NAME, source=f"runs:/{run_id}/{BUNDLE_ARTIFACT_PATH}", run_id=run_id
    )
    client.set_registered_model_alias(MODEL_NAME, "champion", version.version)


def _write_log(directory: Path, current: pd.DataFrame, scores: np.ndarray, version: str) -> None:

    features = current[list(FEATURE_NAMES)].to_numpy(np.float64)
    records = [
        PredictionRecord(
            request_id=f"r{i}",
            transaction_id=i,
            tx_datetime=stamp.isoformat(),
            customer_id=i % 5000,
            terminal_id=i % 10000,
            tx_amount=float(features[i, 0]),
            model_version=version,
            fraud_probability=float(scores[i]),
            decision="APPROVE",
            latency_ms=2.0,
            features={
                name: None if np.isnan(v) else float(v)
                for name, v in zip(FEATURE_NAMES, features[i])
            },
        )
        for i, stamp in enumerate(current["tx_datetime"])
    ]
    PredictionLogWriter(directory).write(records)


def bench_drift(rows: int = DEFAULT_ROWS) -> dict[str, float | int | bool | str]:
    """Seconds of each drift-job phase on a ``rows``-record prediction log."""

    params = load_params()  # before FRAUD_PROJECT_ROOT points at the temporary root
    saved = {
        k: os.environ.get(k) for k in ("FRAUD_PROJECT_ROOT", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    }
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        root = Path(tmp)
        os.environ["FRAUD_PROJECT_ROOT"] = str(root)
        os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
        try:
            uri = f"sqlite:///{root / 'mlflow.db'}"
            reference = synthetic_features(REFERENCE_ROWS, seed=0)
            _register_champion(uri, root, reference)
            bundle = load_registered_bundle("champion", tracking_uri=uri)
            current = synthetic_features(rows, seed=1, shift=0.1)
            X = np.ascontiguousarray(current[list(FEATURE_NAMES)].to_numpy(np.float32))
            _write_log(root / "predictions", current, bundle.predict_proba(X), bundle.model_version)

            timings: dict[str, float] = {}
            started = time.perf_counter()
            window, _ = load_prediction_window(root / "predictions", None, None, 7)
            timings["read_log_s"] = time.perf_counter() - started
            started = time.perf_counter()
            scored = champion_scores(window, bundle)
            detect_drift(load_reference_sample(tracking_uri=uri), scored, bundle, params.drift)
            timings["analyse_s"] = time.perf_counter() - started

            started = time.perf_counter()
            config = DriftJobConfig(
                source=root / "predictions", out_dir=root / "reports", tracking_uri=uri
            )
            summary, _ = run_drift_job(config, params)
            total = time.perf_counter() - started
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    result: dict[str, float | int | bool | str] = {
        "name": "drift",
        "rows": rows,
        "rows_analysed": summary["window"]["rows_analysed"],
        **{k: round(v, 2) for k, v in timings.items()},
        "job_total_s": round(total, 2),
        "target_seconds": TARGET_SECONDS,
        "ratio_to_target": round(total / TARGET_SECONDS, 3),
        "passed": total <= TARGET_SECONDS,
    }
    return result


if __name__ == "__main__":
    print(json.dumps(bench_drift(int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_ROWS)))
