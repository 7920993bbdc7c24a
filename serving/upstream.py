"""Concurrent requests' rows go to the predictor in one call (the transformer's batcher).

KServe offers a batcher for this (``spec.predictor.batcher``): a sidecar that holds
requests up to a latency bound and sends them on together. The transformer needs no
bound: requests whose rows are ready in the same event-loop turn -- the requests of one
state pass (:mod:`serving.coalesce`), or any that arrived together -- are sent in one
call, and a request alone goes at once. Each upstream call costs the predictor a request's
parsing, checks and metrics and the transformer a client request: under load, where
passes hold several requests, that is most of the predictor's CPU per transaction
(issue #15).

A request is never split. A call holds at most ``max_rows`` rows -- by default the number
the predictor scores inline with its compiled trees -- and each request gets its own
slice of the answer, the model version and thresholds being the call's. An upstream
error is the answer of every request in the call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from serving.compiled_forest import COMPILED_MAX_ROWS
from serving.errors import upstream_error
from serving.feature_batch import FeatureBatch

#: ``send(batch, request_id)``: one upstream call, its decoded answer
Send = Callable[[FeatureBatch, str], Awaitable[dict[str, Any]]]


@dataclass
class _Queued:
    batch: FeatureBatch
    request_id: str
    answer: asyncio.Future = field(repr=False)


def calls_of(queued: list[_Queued], max_rows: int) -> list[list[_Queued]]:
    """Consecutive requests grouped into calls of at most ``max_rows`` rows (one larger
    request goes alone)."""
    calls: list[list[_Queued]] = []
    rows = 0
    for item in queued:
        n = len(item.batch.transactions)
        if not calls or rows + n > max_rows:
            calls.append([])
            rows = 0
        calls[-1].append(item)
        rows += n
    return calls


def split_answer(body: dict[str, Any], sizes: list[int]) -> list[dict[str, Any]]:
    """One call's answer as each request's: its predictions, the call's other fields."""
    predictions = body.get("predictions")
    if not isinstance(predictions, list) or len(predictions) != sum(sizes):
        got = len(predictions) if isinstance(predictions, list) else type(predictions).__name__
        raise upstream_error(
            "predictor", 502, f"unexpected answer ({got} predictions for {sum(sizes)} rows)"
        )
    answers, start = [], 0
    for size in sizes:
        answers.append({**body, "predictions": predictions[start : start + size]})
        start += size
    return answers


class UpstreamBatcher:
    """``await batcher.send(batch, request_id)``: the predictor's answer for these rows."""

    def __init__(self, send: Send, max_rows: int = COMPILED_MAX_ROWS) -> None:
        self._send = send
        self.max_rows = max_rows
        self._queued: list[_Queued] = []
        self._flush_scheduled = False
        self._calls: set[asyncio.Task] = set()  # running calls (the loop keeps weak refs)

    async def send(self, batch: FeatureBatch, request_id: str) -> dict[str, Any]:
        """This request's answer, from a call it may share with requests ready with it."""
        loop = asyncio.get_running_loop()
        queued = _Queued(batch, request_id, loop.create_future())
        self._queued.append(queued)
        if not self._flush_scheduled:
            # One loop turn: every request made ready in this turn (a pass's) joins the call.
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await queued.answer

    def _flush(self) -> None:
        self._flush_scheduled = False
        queued, self._queued = self._queued, []
        for call in calls_of(queued, self.max_rows):
            task = asyncio.ensure_future(self._call(call))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    async def _call(self, call: list[_Queued]) -> None:
        answers: list[Any]
        try:
            if len(call) == 1:
                answers = [await self._send(call[0].batch, call[0].request_id)]
            else:
                merged = FeatureBatch.concat([q.batch for q in call])
                body = await self._send(merged, ",".join(q.request_id for q in call))
                answers = split_answer(body, [len(q.batch.transactions) for q in call])
        except Exception as exc:  # noqa: BLE001 -- the call's failure is each request's answer
            answers = [exc] * len(call)
        for queued, answer in zip(call, answers, strict=True):
            if queued.answer.done():  # the request went away (cancelled)
                continue
            if isinstance(answer, BaseException):
                queued.answer.set_exception(answer)
            else:
                queued.answer.set_result(answer)
