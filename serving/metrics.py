"""The model's Prometheus metrics (names from the serving contract) and an error counter.

KServe servers already export ``request_{preprocess,predict,postprocess,explain}_seconds``;
these add what the model itself says: the score distribution, decisions by outcome,
predictions per model version, the served version, unknown entities, and 4xx/5xx answers.
The collectors live in the process-wide default registry, as KServe's own do.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

#: Probability buckets: dense near 0 (most traffic) and around typical thresholds.
SCORE_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99, 1.0)
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

FRAUD_SCORE = Histogram(
    "fraud_score", "Fraud probability of scored transactions", buckets=SCORE_BUCKETS
)
FRAUD_DECISIONS = Counter("fraud_decisions_total", "Decisions by outcome", ["decision"])
FRAUD_PREDICTIONS = Counter(
    "fraud_predictions_total", "Scored transactions by model version", ["model_version"]
)
FRAUD_REQUEST_ERRORS = Counter(
    "fraud_request_errors_total", "Requests answered with a 4xx/5xx, by status code", ["status"]
)
FRAUD_PREDICT_LATENCY = Histogram(
    "fraud_predict_latency_seconds",
    "Time to score one request (feature lookup + model), seconds",
    buckets=LATENCY_BUCKETS,
)
FRAUD_MODEL_INFO = Gauge(
    "fraud_model_info", "The model version being served (value 1)", ["model_version", "alias"]
)
FRAUD_UNKNOWN_ENTITIES = Counter(
    "fraud_unknown_entities_total",
    "Transactions whose customer or terminal had no feature row (defaults used)",
    ["entity"],
)
FRAUD_COMPILED_TREES = Gauge(
    "fraud_compiled_trees",
    "1 when the served model scores small batches with its compiled trees, else 0",
)
FRAUD_REGISTRY_UP = Gauge(
    "fraud_registry_up",
    "0 while the model registry cannot be reached after a model was loaded, else 1",
)


@functools.cache
def _decision_counter(decision: str):
    # labels() looks the child up under a lock on every call: once per decision is enough.
    return FRAUD_DECISIONS.labels(decision=decision)


@functools.cache
def _version_counter(model_version: str):
    return FRAUD_PREDICTIONS.labels(model_version=model_version)


def observe_scores(probabilities: np.ndarray, decisions: Iterable[str], model_version: str) -> None:
    """Record the scores and decisions of one request."""
    for p in np.asarray(probabilities, dtype=float).tolist():
        FRAUD_SCORE.observe(p)
    count = 0
    for decision in decisions:
        _decision_counter(str(decision)).inc()
        count += 1
    _version_counter(model_version).inc(count)


def observe_unknown(unknown_customer: np.ndarray, unknown_terminal: np.ndarray) -> None:
    """Count transactions served with default (unknown-entity) features."""
    customers, terminals = int(np.sum(unknown_customer)), int(np.sum(unknown_terminal))
    if customers:
        FRAUD_UNKNOWN_ENTITIES.labels(entity="customer").inc(customers)
    if terminals:
        FRAUD_UNKNOWN_ENTITIES.labels(entity="terminal").inc(terminals)


_served: list[tuple[str, str]] = []


def set_model_info(model_version: str, alias: str) -> None:
    """Expose the served version; the previous one's series is dropped."""
    while _served:
        FRAUD_MODEL_INFO.remove(*_served.pop())
    FRAUD_MODEL_INFO.labels(model_version=model_version, alias=alias).set(1)
    _served.append((model_version, alias))


class ErrorCountingMiddleware:
    """ASGI middleware counting every 4xx/5xx answer by status (whatever produced it)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counting_send(message) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                FRAUD_REQUEST_ERRORS.labels(status=str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counting_send)
