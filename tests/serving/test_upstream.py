"""The transformer's batcher (serving.upstream): requests ready together share one
predictor call, against the session's real predictor on loopback."""

from __future__ import annotations

import asyncio

import aiohttp
import numpy as np
import pytest

from features.definitions import FEATURE_NAMES
from serving.errors import ServingError
from serving.feature_batch import FeatureBatch
from serving.upstream import UpstreamBatcher, split_answer

from .conftest import MODEL, Stack, free_port


def _batches(sizes: list[int], seed: int = 0) -> list[FeatureBatch]:
    """Feature rows of plausible magnitudes (the predictor scores any finite rows)."""
    rng = np.random.default_rng(seed)
    batches = []
    for size in sizes:
        values = rng.gamma(2.0, 20.0, (size, len(FEATURE_NAMES)))
        values[rng.random(values.shape) < 0.1] = np.nan  # missing values travel as null
        batches.append(
            FeatureBatch(
                [{"transaction_id": i} for i in range(size)],
                values,
                np.zeros(size, bool),
                np.zeros(size, bool),
            )
        )
    return batches


def _sender(session: aiohttp.ClientSession, port: int, calls: list[int]):
    async def send(batch: FeatureBatch, request_id: str) -> dict:
        calls.append(len(batch.transactions))
        body = {"instances": batch.feature_rows(), "feature_names": list(FEATURE_NAMES)}
        url = f"http://127.0.0.1:{port}/v1/models/{MODEL}:predict"
        async with session.post(url, json=body, headers={"x-request-id": request_id}) as answer:
            answer.raise_for_status()
            return await answer.json()

    return send


def test_requests_ready_together_share_a_call_and_get_their_own_answers(stack: Stack) -> None:
    sizes = [1, 2, 1, 3, 1]
    batches = _batches(sizes)

    async def send_together_then_alone() -> tuple[list, list, list[int], list[int]]:
        together_calls: list[int] = []
        alone_calls: list[int] = []
        async with aiohttp.ClientSession() as session:
            batcher = UpstreamBatcher(_sender(session, stack.predictor.port, together_calls), 5)
            together = await asyncio.gather(
                *(batcher.send(b, f"together-{i}") for i, b in enumerate(batches))
            )
            batcher = UpstreamBatcher(_sender(session, stack.predictor.port, alone_calls), 5)
            alone = [await batcher.send(b, f"alone-{i}") for i, b in enumerate(batches)]
        return together, alone, together_calls, alone_calls

    together, alone, together_calls, alone_calls = asyncio.run(send_together_then_alone())
    assert together_calls == [4, 4]  # [1, 2, 1] then [3, 1]: calls of at most 5 rows, unsplit
    assert alone_calls == sizes
    for size, shared, single in zip(sizes, together, alone, strict=True):
        assert len(shared["predictions"]) == size
        assert shared["model_version"] == single["model_version"]
        assert shared["thresholds"] == single["thresholds"]
        probabilities = [p["fraud_probability"] for p in shared["predictions"]]
        expected = [p["fraud_probability"] for p in single["predictions"]]
        assert probabilities == pytest.approx(expected, rel=1e-6)


def test_a_failed_call_is_the_answer_of_each_of_its_requests() -> None:
    closed = free_port()  # nothing listens there

    async def send_to_nowhere() -> list:
        async with aiohttp.ClientSession() as session:
            batcher = UpstreamBatcher(_sender(session, closed, []))
            return await asyncio.gather(
                *(batcher.send(b, f"r{i}") for i, b in enumerate(_batches([1, 1, 2]))),
                return_exceptions=True,
            )

    answers = asyncio.run(send_to_nowhere())
    assert all(isinstance(a, aiohttp.ClientConnectionError) for a in answers), answers


def test_an_answer_with_the_wrong_number_of_predictions_is_a_502() -> None:
    body = {"predictions": [{"fraud_probability": 0.1}] * 3, "model_version": "1"}
    assert [len(a["predictions"]) for a in split_answer(body, [1, 2])] == [1, 2]
    with pytest.raises(ServingError) as refused:
        split_answer(body, [2, 2])
    assert refused.value.status == 502 and "3 predictions for 4 rows" in refused.value.message
