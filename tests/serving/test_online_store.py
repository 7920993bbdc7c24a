"""The Redis online store path (real Redis on 127.0.0.1:6379) and Redis going down."""

from __future__ import annotations

import time

import pytest

from .conftest import Stack, World


def test_redis_and_sqlite_stores_give_the_same_answer(stack: Stack, world: World) -> None:
    transactions = [
        world.transaction(transaction_id=1, tx_amount=25.0),
        world.transaction(transaction_id=2, tx_amount=640.0),
        world.transaction(transaction_id=3, customer_id=555_555_555),
    ]
    redis_answer = stack.transformer_redis.predict({"instances": transactions})
    sqlite_answer = stack.transformer.predict({"instances": transactions})
    assert redis_answer.status_code == 200, redis_answer.text
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
