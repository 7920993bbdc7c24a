"""The shared output contract: strict JSON, Prometheus text format, the A/B CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from monitoring import ab
from monitoring.outputs import MAX_TOP_LEVEL_KEYS, SUMMARY_KEYS, build_summary, dumps, json_ready
from monitoring.prometheus import add_gauge, drift_gauges, exposition
from serving.prediction_log import PredictionLogWriter, PredictionRecord


def summary() -> dict:
    return build_summary(
        job="drift",
        detected=True,
        model={"name": "fraud-detector", "alias": "champion", "version": "7", "run_id": "r"},
        window={"start": "2026-06-01T00:00:00", "end": "2026-06-08T00:00:00"},
        signals=["psi"],
        drifted_features=["tx_amount"],
        statistics={
            "data_drift": {"drifted_share": 0.125, "features": {}},
            "psi": {
                "features": {
                    "tx_amount": {"psi": np.float64(0.31)},
                    "terminal_risk_1d": {"psi": None},
                }
            },
            "missing_values": {"fields": {"tx_amount": {"increase": 0.0}}},
            "prediction": {"score": {"score": float("nan")}},
        },
    )


def test_summaries_are_strict_json_within_the_dispatch_limit() -> None:
    document = summary()
    assert tuple(document) == SUMMARY_KEYS and len(document) <= MAX_TOP_LEVEL_KEYS
    assert document["statistics"]["prediction"]["score"]["score"] is None  # NaN is not JSON
    assert isinstance(document["statistics"]["psi"]["features"]["tx_amount"]["psi"], float)
    assert json.loads(dumps(document)) == document
    assert json_ready({"a": np.int64(3), "b": np.bool_(True), "c": [math.inf]}) == {
        "a": 3,
        "b": True,
        "c": [None],
    }


def test_drift_metrics_use_the_contract_names_in_text_format() -> None:
    text = exposition(drift_gauges(summary()))
    lines = text.splitlines()
    assert text.endswith("\n")
    assert 'fraud_drift_detected{model_version="7"} 1.0' in lines
    assert "fraud_drift_share 0.125" in lines
    assert 'fraud_feature_psi{feature="tx_amount"} 0.31' in lines
    # NaN (no score) is no sample, not a NaN sample
    assert not any(line.startswith("fraud_prediction_drift_score{") for line in lines)
    # a feature without a PSI gets no sample rather than NaN
    assert not any(
        line.startswith('fraud_feature_psi{feature="terminal_risk_1d"}') for line in lines
    )
    assert "# TYPE fraud_drift_detected gauge" in lines
    assert "# TYPE fraud_feature_psi gauge" in lines


def test_label_values_are_escaped() -> None:
    registry = CollectorRegistry()
    add_gauge(registry, "g", "help", [({"feature": 'we"ird\\name'}, 1.0)], ("feature",))
    text = exposition(registry)
    assert 'g{feature="we\\"ird\\\\name"} 1.0' in text
    (family,) = text_string_to_metric_families(text)
    assert family.samples[0].labels == {"feature": 'we"ird\\name'}


def test_an_unlabelled_gauge_without_a_value_is_left_out_not_exported_as_zero() -> None:
    registry = CollectorRegistry()
    add_gauge(registry, "kept", "help", [({}, 0.5)])
    add_gauge(registry, "missing", "help", [({}, None)])
    add_gauge(registry, "not_finite", "help", [({}, math.nan)])
    families = {f.name: f for f in text_string_to_metric_families(exposition(registry))}
    assert set(families) == {"kept"}
    assert families["kept"].samples[0].value == 0.5


def test_the_ab_cli_refuses_to_conclude_before_the_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 400
    when = pd.Timestamp("2026-06-01") + pd.to_timedelta(np.arange(n) * 600, unit="s")
    fraud = (rng.random(n) < 0.2).astype(int)
    records = [
        PredictionRecord(
            request_id=f"r{i}",
            transaction_id=i,
            tx_datetime=when[i].isoformat(),
            customer_id=i % 50,
            terminal_id=i % 70,
            tx_amount=50.0,
            model_version="1" if i % 2 else "2",
            fraud_probability=0.5,
            decision="REVIEW" if fraud[i] and rng.random() < 0.7 else "APPROVE",
            latency_ms=1.0,
        )
        for i in range(n)
    ]
    PredictionLogWriter(tmp_path / "log").write(records)
    labels = pd.DataFrame(
        {
            "transaction_id": np.arange(n),
            "tx_datetime": when,
            "customer_id": np.arange(n) % 50,
            "terminal_id": np.arange(n) % 70,
            "tx_amount": 50.0,
            "tx_fraud": fraud.astype("int8"),
            "tx_fraud_scenario": fraud.astype("int8"),
        }
    )
    labels.to_parquet(tmp_path / "labels.parquet", index=False)
    monkeypatch.setenv("FRAUD_PARAMS", str(Path(__file__).resolve().parents[2] / "params.yaml"))
    args = [
        "--predictions",
        str(tmp_path / "log"),
        "--labels",
        str(tmp_path / "labels.parquet"),
        "--as-of",
        "2026-07-01",
    ]
    assert ab.main([*args, "--json"]) == 0
    analysis = json.loads(capsys.readouterr().out)
    assert analysis["control"] == "1" and analysis["treatment"] == "2"
    assert analysis["n_control"] + analysis["n_treatment"] == int(fraud.sum())
    assert not analysis["enough_data"] and analysis["result"] is None
    assert ab.main(args) == 0
    assert "keep the test running" in capsys.readouterr().out
    assert ab.main([*args[:2], "--labels", str(tmp_path / "none.parquet")]) == 2
    assert capsys.readouterr().err.startswith("A/B analysis failed:")
