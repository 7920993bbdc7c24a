"""Level 4 (and the front of level 5): the KServe transformer in front of the predictor.

``python -m serving.transformer --predictor_host HOST:PORT [--explainer_host HOST:PORT]``

preprocess validates the raw transactions with the one request model; predict reads the
customer and terminal aggregates from the Feast online store (SQLite, or Redis by
configuration) -- with live updates, concurrent requests in one pass of
:class:`serving.coalesce.UpdateCoalescer` --, assembles the features with the training
code, and sends the rows -- with their feature names, so the predictor checks the order
-- to the predictor. postprocess: map each probability to a decision with the thresholds
the predictor's model carries, answer, log. ``:explain`` goes the same way to the explainer
(KServe's transformer -> explainer route) with the rows the transaction was scored with
(:mod:`serving.served_rows`), or -- never scored here -- the rows a prediction would be
served, read without moving the online state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import kserve
import orjson
from pydantic import BaseModel

from features.definitions import FEATURE_NAMES
from fraudops.bundle import Thresholds
from serving import metrics
from serving.coalesce import UpdateCoalescer
from serving.errors import InvalidRequest, NotConfigured, UpstreamUnavailable, upstream_error
from serving.feature_batch import FeatureBatch
from serving.kserve_runtime import parse_server_args, serve, server_parser
from serving.lookup import OnlineFeatureLookup
from serving.prediction_log import BackgroundLogWriter
from serving.predictor import require_json_content
from serving.schema import transaction_json, validate_transactions
from serving.scoring import (
    REQUEST_ID_HEADER,
    decide,
    prediction_bodies,
    record_outcome,
    request_id_from,
)
from serving.served_rows import ServedRows
from serving.settings import ServingSettings, load_settings
from serving.upstream import UpstreamBatcher

logger = logging.getLogger("serving.transformer")


@dataclass(frozen=True)
class Validated:
    """What preprocess hands on: the request's validated transactions."""

    transactions: list[BaseModel]
    request_id: str
    started: float


@dataclass(frozen=True)
class TransformedRequest:
    """What preprocess hands on: the batch (for postprocess) and the upstream body."""

    batch: FeatureBatch
    request_id: str
    started: float

    def upstream_body(self, with_context: bool) -> dict[str, Any]:
        """Rows in FEATURE_NAMES order with their names; the explainer also gets the context."""
        body: dict[str, Any] = {
            "instances": self.batch.feature_rows(),
            "feature_names": list(FEATURE_NAMES),
        }
        if with_context:
            body["transactions"] = [
                {**t, "unknown_customer": bool(c), "unknown_terminal": bool(u)}
                for t, c, u in zip(
                    self.batch.transactions,
                    self.batch.unknown_customer,
                    self.batch.unknown_terminal,
                )
            ]
        return body


@dataclass(frozen=True)
class UpstreamAnswer:
    """The predictor's or explainer's answer, still paired with the request it answers."""

    request: TransformedRequest
    body: dict[str, Any]
    explained: bool


class FraudTransformer(kserve.Model):
    """Raw transaction -> features -> predictor -> decision (and -> explainer on ``:explain``)."""

    def __init__(
        self,
        name: str,
        settings: ServingSettings,
        lookup: OnlineFeatureLookup,
        predictor_host: str,
        explainer_host: str | None,
    ) -> None:
        super().__init__(name)
        self.settings = settings
        self.lookup = lookup
        # SQLite passes are local CPU work: on the loop (see serving.coalesce); Redis' in a thread.
        self.coalescer = UpdateCoalescer(
            lookup, settings.max_batch_size, in_loop=settings.online_store == "sqlite"
        )
        self.predictor_host = predictor_host
        self.explainer_host = explainer_host
        # The log is written by a thread of its own: the answer does not wait for the disk.
        self.writer = BackgroundLogWriter(settings.prediction_log_path())
        self._session: aiohttp.ClientSession | None = None
        # Requests ready together (a state pass's) reach the predictor in one call.
        self.batcher = UpstreamBatcher(self._predict_rows)
        # What each recent transaction was scored with: its explanation explains that score.
        self.served_rows = ServedRows(settings.explain_rows_kept)

    def load(self) -> bool:
        """Open the online store (and warm it); readiness means requests can be served."""
        self.lookup.open()
        self.ready = True
        return self.ready

    @property
    def session(self) -> aiohttp.ClientSession:
        # Created lazily inside the server's event loop; keep-alive to predictor/explainer.
        # aiohttp (a KServe dependency) costs ~0.3 ms less per call than httpx here.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64),
                timeout=aiohttp.ClientTimeout(total=self.settings.upstream_timeout_seconds),
                json_serialize=lambda body: orjson.dumps(body).decode(),
            )
        return self._session

    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> Validated:
        """Validate: the request's transactions (features are looked up by predict/explain,
        which know whether the transactions move the online state)."""
        from kserve.protocol.infer_type import InferRequest

        if isinstance(payload, InferRequest):
            raise InvalidRequest(
                "the transformer takes raw transactions on the v1 protocol "
                f'(POST /v1/models/{self.name}:predict with {{"instances": [...]}})'
            )
        started = time.perf_counter()
        require_json_content(headers)
        transactions = validate_transactions(payload, self.settings.max_batch_size)
        return Validated(transactions, request_id_from(headers), started)

    async def _post(
        self, component: str, host: str, verb: str, request: TransformedRequest
    ) -> dict[str, Any]:
        url = f"http://{host}/v1/models/{self.name}:{verb}"
        body = request.upstream_body(with_context=verb == "explain")
        try:
            async with self.session.post(
                url, json=body, headers={REQUEST_ID_HEADER: request.request_id}
            ) as response:
                raw = await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise UpstreamUnavailable(
                f"{component} at {host} unreachable: {type(exc).__name__} {exc}".rstrip()
            ) from None
        try:
            answer = orjson.loads(raw)
        except orjson.JSONDecodeError:
            answer = {"error": raw[:500].decode(errors="replace")}
        if status >= 400:
            message = answer.get("error", answer) if isinstance(answer, dict) else answer
            raise upstream_error(f"{component} at {host}", status, str(message)[:500])
        return answer

    async def _predict_rows(self, batch: FeatureBatch, request_id: str) -> dict[str, Any]:
        request = TransformedRequest(batch, request_id, 0.0)
        return await self._post("predictor", self.predictor_host, "predict", request)

    async def predict(
        self, payload: Validated, headers=None, response_headers=None
    ) -> UpstreamAnswer:
        """Look up (and, with live updates, apply) the transactions; send the rows to the
        predictor (``--predictor_host``). Concurrent requests share one state pass.

        The rows go to the predictor (in one call with the other requests of the pass,
        :mod:`serving.upstream`) while the pass writes its update; the answer waits for
        both (read-your-writes), and a failed write fails the request (503).
        """
        batch, applied = await self.coalescer.served(payload.transactions)
        request = TransformedRequest(batch, payload.request_id, payload.started)
        upstream = asyncio.ensure_future(self.batcher.send(batch, payload.request_id))
        try:
            await applied
        except BaseException:
            upstream.cancel()
            raise
        return UpstreamAnswer(request, await upstream, explained=False)

    async def explain(self, payload: Validated, headers=None) -> UpstreamAnswer:
        """Send the rows and their context to the explainer (``--explainer_host``).

        The rows are the ones the transactions were scored with, when every one of them was
        scored here recently (:mod:`serving.served_rows`); otherwise the ones a prediction
        of them would be served. Either way an explanation does not move the online state:
        explaining a transaction is not another payment of its customer.
        """
        if not self.explainer_host:
            raise NotConfigured(
                "explanations need an explainer: start the transformer with --explainer_host "
                "(make level5)"
            )
        batch = self.served_rows.recall([transaction_json(t) for t in payload.transactions])
        metrics.observe_explanation(scored_rows=batch is not None)
        if batch is None and self.coalescer.in_loop:  # SQLite: local work, no thread hop
            batch = self.lookup.features(payload.transactions, False)
        elif batch is None:  # Redis: blocking network I/O, off the event loop
            batch = await asyncio.to_thread(self.lookup.features, payload.transactions, False)
        request = TransformedRequest(batch, payload.request_id, payload.started)
        body = await self._post("explainer", self.explainer_host, "explain", request)
        return UpstreamAnswer(request, body, explained=True)

    async def postprocess(
        self, result: UpstreamAnswer, headers=None, response_headers=None
    ) -> dict[str, Any]:
        """Decisions from the predictor model's thresholds; answer, metrics, prediction log."""
        request, body = result.request, result.body
        if result.explained:
            return body
        try:
            probabilities = [p["fraud_probability"] for p in body["predictions"]]
            thresholds = Thresholds(**body["thresholds"])
            version = str(body["model_version"])
        except (KeyError, TypeError, ValueError) as exc:
            raise upstream_error("predictor", 502, f"unexpected answer ({exc})") from None
        scores = decide(probabilities, thresholds, version)
        self.served_rows.remember(request.batch)
        record_outcome(
            request.batch, scores, request.request_id, request.started, self.writer, "transformer"
        )
        return {
            "predictions": prediction_bodies(request.batch, scores, request.request_id),
            "model_version": version,
            "request_id": request.request_id,
        }


def main(argv: list[str] | None = None) -> None:
    """Start the transformer (the L4/L5 entry point on port 8080)."""

    settings = load_settings()
    parser = server_parser(__doc__.splitlines()[0], 8080)
    args = parse_server_args(parser, argv, settings)
    if not args.predictor_host:
        parser.error("--predictor_host HOST:PORT is required (where the predictor listens)")
    lookup = OnlineFeatureLookup(settings)
    transformer = FraudTransformer(
        args.model_name, settings, lookup, args.predictor_host, args.explainer_host
    )
    transformer.load()
    logger.info(
        "features from %s; predictor %s; explainer %s",
        lookup.describe(),
        args.predictor_host,
        args.explainer_host or "none",
    )
    serve(transformer, args)


if __name__ == "__main__":
    main()
