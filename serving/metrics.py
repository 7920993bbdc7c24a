"""The model's Prometheus metrics (names from the serving contract) and an error counter.

KServe servers already export ``request_{preprocess,predict,postprocess,explain}_seconds``;
these add what the model itself says: the score distribution, decisions by outcome,
predictions per model version, the served version, unknown entities, and 4xx/5xx answers.
The collectors live in the process-wide default registry, as KServe's own do.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Iterator, Sequence

import numpy as np
from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

#: Probability buckets: dense near 0 (most traffic) and around typical thresholds.
SCORE_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99, 1.0)
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

FRAUD_REQUEST_ERRORS = Counter(
    "fraud_request_errors_total", "Requests answered with a 4xx/5xx, by status code", ["status"]
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
FRAUD_ONLINE_UPDATES = Counter(
    "fraud_online_updates_total",
    "Transactions folded into the online state, by outcome (applied, duplicate, late)",
    ["outcome"],
)
FRAUD_EXPLANATIONS = Counter(
    "fraud_explanations_total",
    "Explanations sent through the transformer, by the rows explained: scored (the rows the "
    "transactions were scored with) or recomputed (never scored here, or no longer kept)",
    ["rows"],
)
FRAUD_REGISTRY_UP = Gauge(
    "fraud_registry_up",
    "0 while the model registry cannot be reached after a model was loaded, else 1",
)


class _Buckets:
    """A histogram's counts per bucket (not yet cumulative) and sum."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0

    def add(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (Prometheus's "le").
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        cumulative = list(itertools.accumulate(self.counts))
        labels = [floatToGoString(b) for b in self.bounds] + ["+Inf"]
        return HistogramMetricFamily(
            name, documentation, buckets=list(zip(labels, cumulative)), sum_value=self.sum
        )


class ScoringTally:
    """The per-request model metrics as plain numbers, made into metric families at scrape.

    prometheus_client's Histogram and Counter take a lock and several calls per update; a
    request that scores one transaction made five such updates, which cost the predictor
    more than walking its 300 trees once the request found that code cold in the cache.
    Here a request takes one lock and bumps a few list and dict slots; Prometheus's scrape
    builds the families (:meth:`collect`, called by the registry).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scores = _Buckets(SCORE_BUCKETS)
        self._latency = _Buckets(LATENCY_BUCKETS)
        self._decisions: dict[str, int] = {}
        self._versions: dict[str, int] = {}

    def record(
        self,
        probabilities: Sequence[float],
        decisions: Sequence[str],
        model_version: str,
        latency_s: float,
    ) -> None:
        """One scored request: its probabilities, decisions, model version and latency."""
        with self._lock:  # scoring may run in worker threads (the L1/L2 apps)
            for p in probabilities:
                self._scores.add(p)
            for decision in decisions:
                self._decisions[decision] = self._decisions.get(decision, 0) + 1
            self._versions[model_version] = self._versions.get(model_version, 0) + len(decisions)
            self._latency.add(latency_s)

    def record_latency(self, latency_s: float) -> None:
        """One request's latency alone (the explainer: it explains, it does not score)."""
        with self._lock:
            self._latency.add(latency_s)

    def collect(self) -> Iterator[Metric]:
        """The families Prometheus scrapes (``fraud_score``, ``fraud_decisions_total``,
        ``fraud_predictions_total``, ``fraud_predict_latency_seconds``)."""
        with self._lock:
            yield self._scores.family("fraud_score", "Fraud probability of scored transactions")
            decisions = CounterMetricFamily(
                "fraud_decisions", "Decisions by outcome", labels=["decision"]
            )
            for decision, count in sorted(self._decisions.items()):
                decisions.add_metric([decision], count)
            yield decisions
            versions = CounterMetricFamily(
                "fraud_predictions",
                "Scored transactions by model version",
                labels=["model_version"],
            )
            for version, count in sorted(self._versions.items()):
                versions.add_metric([version], count)
            yield versions
            yield self._latency.family(
                "fraud_predict_latency_seconds",
                "Time to score one request (feature lookup + model), seconds",
            )


#: This process's tally, in the default registry beside KServe's own collectors.
TALLY = ScoringTally()
REGISTRY.register(TALLY)


def observe_scores(
    probabilities: Sequence[float], decisions: Sequence[str], model_version: str, latency_s: float
) -> None:
    """Record one scored request (plain floats and strings: ``ndarray.tolist()``)."""
    TALLY.record(probabilities, decisions, model_version, latency_s)


def observe_latency(latency_s: float) -> None:
    """Record the latency of a request that scored nothing (an explanation)."""
    TALLY.record_latency(latency_s)


def observe_unknown(unknown_customer: np.ndarray, unknown_terminal: np.ndarray) -> None:
    """Count transactions served with default (unknown-entity) features."""
    customers, terminals = int(np.sum(unknown_customer)), int(np.sum(unknown_terminal))
    if customers:
        FRAUD_UNKNOWN_ENTITIES.labels(entity="customer").inc(customers)
    if terminals:
        FRAUD_UNKNOWN_ENTITIES.labels(entity="terminal").inc(terminals)


_served: list[tuple[str, str]] = []


def observe_online_update(applied: int, duplicates: int, late: int) -> None:
    """Count a batch's live-update outcomes (late ones are applied too, and counted apart)."""
    if applied:
        FRAUD_ONLINE_UPDATES.labels(outcome="applied").inc(applied)
    if duplicates:
        FRAUD_ONLINE_UPDATES.labels(outcome="duplicate").inc(duplicates)
    if late:
        FRAUD_ONLINE_UPDATES.labels(outcome="late").inc(late)


def observe_explanation(scored_rows: bool) -> None:
    """Count an explanation by the rows it explained (kept from the score, or recomputed)."""
    FRAUD_EXPLANATIONS.labels(rows="scored" if scored_rows else "recomputed").inc()


def counts_by_label(exposition: str, counter: str, label: str) -> dict[str, float]:
    """A counter's values by one label, read from a ``/metrics`` exposition (for clients:
    the bench, tests, an operator's script)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        sample.labels[label]: sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == f"{counter}_total"
    }


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
