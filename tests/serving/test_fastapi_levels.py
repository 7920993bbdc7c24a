"""Levels 1 and 2 over real HTTP: contract, OpenAPI, alias hot-swap, registry faults."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import pytest

from serving.prediction_log import read_prediction_log
from serving.sandbox import register_bundle, set_alias, train_bundle

from .conftest import MODEL, Server, Stack, World


@pytest.mark.parametrize("level", ["level1", "level2"])
def test_level_scores_raw_transactions(stack: Stack, world: World, level: str) -> None:
    server: Server = getattr(stack, level)
    transaction = world.transaction(transaction_id=31, tx_amount=500.0)
    answer = server.predict({"instances": [transaction]}, headers={"x-request-id": f"{level}-31"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-request-id"] == f"{level}-31"
    prediction = answer.json()["predictions"][0]
    # Same features, same model: L1/L2 agree with the L4 chain to the last digit.
    chain = stack.transformer.predict({"instances": [transaction]}).json()["predictions"][0]
    assert prediction["fraud_probability"] == pytest.approx(chain["fraud_probability"], abs=1e-6)
    assert prediction["decision"] == chain["decision"]
    assert prediction["model_version"] == "1" and prediction["request_id"] == f"{level}-31"
    log = read_prediction_log(server.prediction_log)
    assert log.query("request_id == @level + '-31'").served_by.tolist() == [level]


@pytest.mark.parametrize("level", ["level1", "level2"])
def test_level_publishes_openapi_health_and_metrics(stack: Stack, level: str) -> None:
    server: Server = getattr(stack, level)
    schema = server.client.get("/openapi.json").json()
    operation = schema["paths"][f"/v1/models/{MODEL}:predict"]["post"]
    body_schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body_schema["$ref"].endswith("PredictRequest")
    transaction = schema["components"]["schemas"]["Transaction"]
    assert transaction["additionalProperties"] is False
    assert transaction["properties"]["tx_amount"]["maximum"] == 1_000_000.0
    assert server.client.get("/healthz").json() == {"status": "alive"}
    assert server.client.get("/readyz").json()["ready"] is True
    assert "fraud_model_info" in server.metrics()


def test_level1_serves_the_baked_bundle_without_a_registry(stack: Stack, world: World) -> None:
    status = stack.level1.client.get("/readyz").json()
    assert status["source"] == str(world.model_dir)
    assert "registry" not in status and status["model_version"] == "1"
    assert stack.level1.client.post("/reload").status_code in (404, 405)


def _hammer(
    server: Server, world: World, stop: threading.Event, seen: dict, failures: list
) -> None:
    transaction = world.transaction(tx_amount=333.0)
    while not stop.is_set():
        answer = server.predict({"instances": [transaction]})
        if answer.status_code != 200:
            failures.append(answer.status_code)
            continue
        seen[threading.get_ident()].append(answer.json()["model_version"])


def test_level2_hot_swaps_the_alias_under_load_without_a_failure(
    stack: Stack, world: World
) -> None:
    challenger = train_bundle(world.transactions, n_estimators=8, seed=7)
    version = register_bundle(challenger, world.l2_tracking_uri, world.root / "mlartifacts")
    stop, seen, failures = threading.Event(), defaultdict(list), []
    threads = [
        threading.Thread(target=_hammer, args=(stack.level2, world, stop, seen, failures))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        set_alias(world.l2_tracking_uri, version)
        # The new model is prepared by a worker process: seconds on a busy machine.
        reload = stack.level2.client.post("/reload", timeout=300).json()
        assert reload["model_version"] == version
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    for versions in seen.values():
        # Each client saw the old model, then only the new one: a clean, atomic swap.
        assert versions[0] == "1" and versions[-1] == version
        switch = versions.index(version)
        assert set(versions[switch:]) == {version}
    assert sum(len(v) for v in seen.values()) > 20
    # Rollback = move the alias back; the poller (every 1 s) picks it up with no /reload.
    set_alias(world.l2_tracking_uri, "1")
    deadline = time.monotonic() + 180
    while (
        stack.level2.client.get("/readyz").json()["model_version"] != "1"
        and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    assert stack.level2.client.get("/readyz").json()["model_version"] == "1"
    assert 'fraud_model_info{alias="champion",model_version="1"} 1.0' in stack.level2.metrics()


def test_level2_keeps_serving_when_the_registry_goes_away(stack: Stack, world: World) -> None:
    original = world.l2_db.read_bytes()
    try:
        world.l2_db.write_bytes(b"this is not a database" * 512)
        reload = stack.level2.client.post("/reload")
        assert reload.status_code == 503
        assert reload.json()["registry"] == "unreachable" and reload.json()["model_version"] == "1"
        answer = stack.level2.predict({"instances": [world.transaction()]})
        assert answer.status_code == 200 and answer.json()["model_version"] == "1"
        ready = stack.level2.client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["registry"] == "unreachable"
        assert "fraud_registry_up 0.0" in stack.level2.metrics()
        assert "still serving version 1" in stack.level2.log_text()
    finally:
        world.l2_db.write_bytes(original)
    assert stack.level2.client.post("/reload").json()["registry"] == "ok"
