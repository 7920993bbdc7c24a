"""Levels 3-5 over real HTTP: predictor, transformer -> predictor chain, explainer."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.definitions import FEATURE_NAMES, build_training_set, compute_entity_features
from fraudops.config import FeaturizeParams
from serving.compiled_forest import flatten_trees, probe_rows
from serving.metrics import counts_by_label

from .conftest import MAX_BATCH, MODEL, Stack, World


def expected_features(world: World, transaction: dict) -> np.ndarray:
    """The offline definition's row for ``transaction`` after the world's history.

    That is what serving must give it: the online rows move with traffic, so the store's
    row read after the request already counts the request itself.
    """
    request = pd.DataFrame([transaction]).assign(
        transaction_id=-1,  # its own id may repeat a history id (it only names the request)
        tx_datetime=lambda f: pd.to_datetime(f.tx_datetime),
        tx_fraud=0,
        tx_fraud_scenario=0,
    )
    frame = pd.concat([world.transactions, request], ignore_index=True)
    frame = frame.astype(world.transactions.dtypes.to_dict()).sort_values(
        "tx_datetime", kind="stable"
    )
    customer, terminal = compute_entity_features(frame, FeaturizeParams())
    training_set = build_training_set(frame, customer, terminal)
    row = training_set[training_set.transaction_id == -1]
    return row[list(FEATURE_NAMES)].to_numpy(np.float32)


# -- L3: the predictor alone -------------------------------------------------------------------


def test_predictor_scores_feature_rows_like_the_bundle(stack: Stack, world: World) -> None:
    row = expected_features(world, world.transaction(tx_amount=480.0))
    answer = stack.predictor.predict(
        {
            "instances": [[None if math.isnan(v) else float(v) for v in row[0]]],
            "feature_names": list(FEATURE_NAMES),
        }
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    prediction = body["predictions"][0]
    assert prediction["fraud_probability"] == pytest.approx(
        float(world.bundle.predict_proba(row)[0]), abs=1e-6
    )
    assert (
        prediction["decision"]
        == world.bundle.thresholds.decide(np.array([prediction["fraud_probability"]]))[0]
    )
    assert prediction["model_version"] == world.bundle.model_version == body["model_version"]
    assert prediction["request_id"]
    assert body["thresholds"] == {
        "review": world.bundle.thresholds.review,
        "decline": world.bundle.thresholds.decline,
    }


def wait_for_compiled_trees(stack: Stack, timeout_s: float = 120.0) -> str:
    deadline = time.monotonic() + timeout_s
    while "fraud_compiled_trees 1.0" not in (metrics := stack.predictor.metrics()):
        assert time.monotonic() < deadline, "predictor never reported fraud_compiled_trees 1"
        time.sleep(0.2)
    return metrics


def test_predictor_compiled_trees_score_edge_rows_like_xgboost(stack: Stack, world: World) -> None:
    wait_for_compiled_trees(stack)
    booster = world.bundle.booster
    rows = probe_rows(flatten_trees(booster), min_rows=64, seed=11)[:64]
    for batch in np.array_split(rows, len(rows) // MAX_BATCH):
        answer = stack.predictor.predict(
            {
                "instances": [[None if math.isnan(v) else float(v) for v in row] for row in batch],
                "feature_names": list(FEATURE_NAMES),
            }
        )
        assert answer.status_code == 200, answer.text
        got = [p["fraud_probability"] for p in answer.json()["predictions"]]
        np.testing.assert_allclose(got, booster.inplace_predict(batch), rtol=0, atol=1e-6)


def test_predictor_accepts_rows_keyed_by_feature_name(stack: Stack, world: World) -> None:
    row = expected_features(world, world.transaction())[0]
    named = {name: (None if math.isnan(v) else float(v)) for name, v in zip(FEATURE_NAMES, row)}
    listed = [named[name] for name in FEATURE_NAMES]
    by_name = stack.predictor.predict({"instances": [named]}).json()["predictions"][0]
    by_position = stack.predictor.predict({"instances": [listed]}).json()["predictions"][0]
    assert by_name["fraud_probability"] == by_position["fraud_probability"]


def test_predictor_refuses_rows_in_another_feature_order(stack: Stack) -> None:
    shuffled = list(reversed(FEATURE_NAMES))
    answer = stack.predictor.predict(
        {"instances": [[0.0] * len(FEATURE_NAMES)], "feature_names": shuffled}
    )
    assert answer.status_code == 422
    assert "feature_names" in answer.json()["error"]


def test_predictor_speaks_kserve_v2(stack: Stack, world: World) -> None:
    row = np.nan_to_num(expected_features(world, world.transaction(tx_amount=300.0)), nan=0.0)
    answer = stack.predictor.client.post(
        f"/v2/models/{MODEL}/infer",
        json={
            "inputs": [
                {
                    "name": "features",
                    "shape": [1, len(FEATURE_NAMES)],
                    "datatype": "FP32",
                    "data": row[0].tolist(),
                }
            ]
        },
    )
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    assert outputs["fraud_probability"]["data"][0] == pytest.approx(
        float(world.bundle.predict_proba(row)[0]), abs=1e-6
    )
    assert outputs["decision"]["data"][0] in {"APPROVE", "REVIEW", "DECLINE"}
    assert answer.json()["model_version"] == world.bundle.model_version


def test_predictor_readiness_and_metrics(stack: Stack) -> None:
    assert stack.predictor.client.get(f"/v1/models/{MODEL}").status_code == 200
    assert stack.predictor.client.get("/v2/health/ready").status_code == 200
    stack.predictor.predict({"instances": [[1.0] * len(FEATURE_NAMES)]})
    metrics = stack.predictor.metrics()
    for name in (
        "request_predict_seconds_count",
        "fraud_score_count",
        "fraud_decisions_total",
        "fraud_predictions_total",
        "fraud_predict_latency_seconds_count",
    ):
        assert name in metrics
    assert 'fraud_model_info{alias="champion",model_version="1"} 1.0' in metrics


def test_predictor_without_registry_is_live_but_not_ready(stack: Stack) -> None:
    server = stack.predictor_no_registry
    assert server.client.get("/").status_code == 200
    assert server.client.get(f"/v1/models/{MODEL}").status_code == 503
    assert server.client.get("/v2/health/ready").status_code == 503
    assert server.predict({"instances": [[0.0] * len(FEATURE_NAMES)]}).status_code == 503
    log = server.log_text()
    assert "model not loaded from models:/fraud-detector@champion" in log
    assert "unreachable" in log and "not ready" in log


# -- L4: transformer -> predictor --------------------------------------------------------------


def test_chain_scores_raw_transactions_with_training_features(stack: Stack, world: World) -> None:
    transaction = world.transaction(transaction_id=77, tx_amount=615.0)
    answer = stack.transformer.predict(
        {"instances": [transaction]}, headers={"x-request-id": "trace-77"}
    )
    assert answer.status_code == 200, answer.text
    prediction = answer.json()["predictions"][0]
    expected = float(world.bundle.predict_proba(expected_features(world, transaction))[0])
    assert prediction["fraud_probability"] == pytest.approx(expected, abs=1e-6)
    assert prediction["decision"] == world.bundle.thresholds.decide(np.array([expected]))[0]
    assert prediction == {
        **prediction,
        "request_id": "trace-77",
        "transaction_id": 77,
        "model_version": "1",
        "unknown_customer": False,
        "unknown_terminal": False,
    }


def test_chain_logs_every_scored_transaction(stack: Stack, world: World) -> None:
    transactions = [world.transaction(transaction_id=900 + i, tx_amount=10.0 + i) for i in range(3)]
    answer = stack.transformer.predict(
        {"instances": transactions}, headers={"x-request-id": "logged-batch"}
    )
    assert answer.status_code == 200
    batch = stack.transformer.logged("request_id == 'logged-batch'", rows=3)
    batch = batch.sort_values("transaction_id")
    assert batch.transaction_id.tolist() == [900, 901, 902]
    assert batch.served_by.unique().tolist() == ["transformer"]
    row = expected_features(world, transactions[0])[0]
    logged = batch.iloc[0][list(FEATURE_NAMES)].to_numpy(float)
    assert np.allclose(logged, row, equal_nan=True, rtol=1e-6)


def test_unknown_entities_get_defaults_and_a_flag(stack: Stack, world: World) -> None:
    transaction = world.transaction(customer_id=987_654_321, terminal_id=123_456_789)
    answer = stack.transformer.predict({"instances": [transaction]})
    assert answer.status_code == 200
    prediction = answer.json()["predictions"][0]
    assert prediction["unknown_customer"] and prediction["unknown_terminal"]
    assert 0.0 <= prediction["fraud_probability"] <= 1.0
    row = stack.transformer.logged("customer_id == 987654321").iloc[-1]
    # Counts default to 0, means/ratio/risks stay missing (never a silent zero).
    assert row["customer_tx_count_30d"] == 0 and math.isnan(row["customer_mean_amount_30d"])
    assert math.isnan(row["terminal_risk_30d"]) and math.isnan(row["customer_amount_ratio_30d"])
    assert 'fraud_unknown_entities_total{entity="customer"}' in stack.transformer.metrics()


def test_transformer_metrics_count_decisions_and_errors(stack: Stack, world: World) -> None:
    stack.transformer.predict({"instances": [world.transaction()]})
    stack.transformer.predict({"instances": []})
    metrics = stack.transformer.metrics()
    assert "request_preprocess_seconds_count" in metrics
    assert "fraud_decisions_total{decision=" in metrics
    assert 'fraud_request_errors_total{status="422"}' in metrics


# -- L5: explanations --------------------------------------------------------------------------


def test_explanation_adds_up_to_the_score(stack: Stack, world: World) -> None:
    transaction = world.transaction(
        transaction_id=555,
        tx_amount=720.0,
        tx_datetime=(world.last_time + pd.Timedelta(hours=3)).replace(hour=2).isoformat(),
    )
    explained = stack.transformer.explain(
        {"instances": [transaction]}, headers={"x-request-id": "why-555"}
    )
    scored = stack.transformer.predict({"instances": [transaction]})
    assert explained.status_code == 200, explained.text
    explanation = explained.json()["explanations"][0]
    margin = explanation["base_value"] + sum(explanation["contributions"].values())
    assert margin == pytest.approx(explanation["margin"], abs=1e-4)
    assert 1 / (1 + math.exp(-margin)) == pytest.approx(explanation["fraud_probability"], abs=1e-5)
    assert explanation["fraud_probability"] == pytest.approx(
        scored.json()["predictions"][0]["fraud_probability"], abs=1e-6
    )
    assert explanation["transaction_id"] == 555 and explanation["request_id"] == "why-555"
    assert set(explanation["contributions"]) == set(FEATURE_NAMES)


_WORDS = {
    "tx_amount": "amount",
    "customer_amount_ratio_30d": "30-day average",
    "tx_during_night": ("night", "daytime"),
    "tx_during_weekend": ("weekend", "weekday"),
    "customer_": "customer",
    "terminal_": "terminal",
}


def test_reasons_name_their_feature_and_direction(stack: Stack, world: World) -> None:
    transaction = world.transaction(tx_amount=950.0)
    reasons = stack.transformer.explain({"instances": [transaction]}).json()["explanations"][0][
        "reasons"
    ]
    assert 1 <= len(reasons) <= 5
    sizes = [abs(r["contribution"]) for r in reasons]
    assert sizes == sorted(sizes, reverse=True)
    for reason in reasons:
        words = next(w for key, w in _WORDS.items() if reason["feature"].startswith(key))
        words = (words,) if isinstance(words, str) else words
        assert any(w in reason["text"] for w in words), reason
        assert reason["text"].endswith(
            "(raises risk)" if reason["contribution"] > 0 else "(lowers risk)"
        )
    amount = next(r for r in reasons if r["feature"] == "tx_amount")
    assert amount["value"] == 950.0 and "950.00" in amount["text"]
    ratio = [
        r for r in reasons if r["feature"] == "customer_amount_ratio_30d" and r["value"] is not None
    ]
    for r in ratio:
        assert f"{r['value']:.1f}× this customer's 30-day average" in r["text"]


def _audit_records(folder: Path, request_id: str, timeout_s: float = 30.0) -> list[dict]:
    """The audit records of ``request_id``, once there: the explainer writes them from a
    thread, moments after it answers (poll, bounded)."""
    import json

    deadline = time.monotonic() + timeout_s
    while True:
        records = [
            json.loads(line)
            for path in sorted(folder.glob("audit-*.jsonl"))
            for line in path.read_text().splitlines()
        ]
        mine = [r for r in records if r["request_id"] == request_id]
        if mine or time.monotonic() > deadline:
            return mine
        time.sleep(0.05)


def test_every_explanation_is_audited(stack: Stack, world: World) -> None:
    answer = stack.transformer.explain(
        {"instances": [world.transaction(transaction_id=4242)]},
        headers={"x-request-id": "audit-me"},
    )
    assert answer.status_code == 200, answer.text
    explanation = answer.json()["explanations"][0]
    mine = _audit_records(world.root / "audit", "audit-me")
    assert len(mine) == 1
    record = mine[0]
    assert record["transaction_id"] == 4242 and record["model_version"] == "1"
    assert (
        record["decision"] in {"APPROVE", "REVIEW", "DECLINE"}
        and record["reasons"]
        and record["explained_at"]
    )
    # The record says what the answer said, by the same model.
    assert record["decision"] == explanation["decision"]
    assert record["fraud_probability"] == explanation["fraud_probability"]
    assert record["reasons"] == explanation["reasons"]
    assert set(record) == {
        "request_id",
        "model_version",
        "decision",
        "fraud_probability",
        "base_value",
        "reasons",
        "transaction_id",
        "explained_at",
    }


def test_an_explanation_explains_the_score_the_transaction_was_given(
    stack: Stack, world: World
) -> None:
    # A new customer's first payment is scored; then a payment of theirs dated before it
    # arrives late. A row recomputed now would count the late one (a known customer): the
    # explanation must explain the score given, on the rows it was scored with.
    when = world.last_time + pd.Timedelta(hours=5)
    entities = {"customer_id": 700_000_001, "terminal_id": 700_000_002}
    first = world.transaction(
        transaction_id=7_100_001, tx_amount=310.0, tx_datetime=when.isoformat(), **entities
    )
    late = world.transaction(
        transaction_id=7_100_002,
        tx_amount=4_000.0,
        tx_datetime=(when - pd.Timedelta(minutes=30)).isoformat(),
        **entities,
    )
    scored = stack.transformer.predict({"instances": [first]})
    assert scored.status_code == 200, scored.text
    assert stack.transformer.predict({"instances": [late]}).status_code == 200

    before = _explanations(stack.transformer.metrics())
    explained = stack.transformer.explain({"instances": [first]})
    assert explained.status_code == 200, explained.text
    explanation = explained.json()["explanations"][0]
    given = scored.json()["predictions"][0]
    assert given["unknown_customer"] and explanation["unknown_customer"]
    assert explanation["fraud_probability"] == pytest.approx(given["fraud_probability"], abs=1e-6)

    # The same payment under an id never scored is served the rows a prediction gets now.
    recomputed = stack.transformer.explain(
        {"instances": [{**first, "transaction_id": 7_100_003}]}
    ).json()["explanations"][0]
    assert recomputed["unknown_customer"] is False
    assert recomputed["fraud_probability"] != pytest.approx(given["fraud_probability"], abs=1e-6)
    # Operators see which rows explanations used (the bench checks its path with it too).
    after = _explanations(stack.transformer.metrics())
    assert after["scored"] - before.get("scored", 0.0) == 1.0
    assert after["recomputed"] - before.get("recomputed", 0.0) == 1.0


def _explanations(exposition: str) -> dict[str, float]:
    return counts_by_label(exposition, "fraud_explanations", "rows")
