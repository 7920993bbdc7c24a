"""The Redis online store path (real Redis on 127.0.0.1:6379) and Redis going down."""

from __future__ import annotations

import time

import pandas as pd
import pytest
import redis

from .conftest import REDIS, Stack, World


def test_redis_and_sqlite_stores_give_the_same_answer(stack: Stack, world: World) -> None:
    transactions = [
        world.transaction(transaction_id=1, tx_amount=25.0),
        world.transaction(transaction_id=2, tx_amount=640.0),
        world.transaction(transaction_id=3, customer_id=555_555_555),
    ]
    redis_answer = stack.transformer_redis.predict({"instances": transactions})
    sqlite_answer = stack.transformer.predict({"instances": transactions})
    assert redis_answer.status_code == 200, redis_answer.text
    assert sqlite_answer.status_code == 200, sqlite_answer.text
    for from_redis, from_sqlite in zip(
        redis_answer.json()["predictions"], sqlite_answer.json()["predictions"]
    ):
        assert from_redis["fraud_probability"] == pytest.approx(
            from_sqlite["fraud_probability"], abs=1e-7
        )
        assert from_redis["unknown_customer"] == from_sqlite["unknown_customer"]
    assert redis_answer.json()["predictions"][2]["unknown_customer"] is True


def test_redis_down_is_a_clear_503_and_no_score(stack: Stack, world: World) -> None:
    body = {"instances": [world.transaction()]}
    assert stack.transformer_redis.predict(body).status_code == 200
    stack.redis_proxy.stop()
    try:
        answer = stack.transformer_redis.predict(body)
        assert answer.status_code == 503
        error = answer.json()["error"]
        assert "redis" in error.lower() and "no score" in error
        assert "predictions" not in answer.json()
        assert 'fraud_request_errors_total{status="503"}' in stack.transformer_redis.metrics()
    finally:
        stack.redis_proxy.start()
    deadline = time.monotonic() + 10
    while stack.transformer_redis.predict(body).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stack.transformer_redis.predict(body).status_code == 200


def test_redis_down_leaves_no_partial_update_and_the_retry_counts_once(
    stack: Stack, world: World
) -> None:
    client = redis.Redis(*REDIS)
    tx = world.transaction(
        transaction_id=77_000_001,
        tx_datetime=(world.last_time + pd.Timedelta(hours=2)).isoformat(),
    )
    history = f"fraud_live:{world.redis_project}:c:{tx['customer_id']}"
    applied = f"fraud_live:{world.redis_project}:tx:{tx['transaction_id']}"
    before = client.zcard(history)
    stack.redis_proxy.stop()
    try:
        assert stack.transformer_redis.predict({"instances": [tx]}).status_code == 503
        assert client.exists(applied) == 0
        assert client.zcard(history) == before
    finally:
        stack.redis_proxy.start()
    deadline = time.monotonic() + 10
    while (
        stack.transformer_redis.predict({"instances": [tx]}).status_code != 200
        and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    # Retried until it went through, and once more: the transaction is in the state once.
    assert stack.transformer_redis.predict({"instances": [tx]}).status_code == 200
    assert client.exists(applied) == 1
    assert client.zcard(history) == before + 1
