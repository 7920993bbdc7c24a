"""Monitoring results as Prometheus metrics: a textfile locally, the Pushgateway on a cluster.

The names are a contract with the alert rules (``monitoring/alerts/``) and the dashboard:
``fraud_drift_detected{model_version}``, ``fraud_drift_share``, ``fraud_feature_psi{feature}``
from the drift job; ``fraud_performance_drop_detected{model_version}`` and
``fraud_matured_average_precision{model_version}`` from the performance job.

prometheus_client (the library the model servers export with) builds each job's metrics in
a registry of its own -- never the process-wide default one, so a job run twice in one
process does not collide with itself -- and writes / pushes them; httpx carries the push.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
from prometheus_client import (
    CollectorRegistry,
    Gauge,
    generate_latest,
    push_to_gateway,
    write_to_textfile,
)

from fraudops.settings import MonitoringSettings

#: ``(labels, value)`` pairs of one gauge; a None or non-finite value is left out.
Samples = Sequence[tuple[dict[str, str], float | None]]


class MetricsPushError(RuntimeError):
    """The Pushgateway refused or could not be reached; the message names the URL."""


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(float(value))


def add_gauge(
    registry: CollectorRegistry,
    name: str,
    documentation: str,
    samples: Samples,
    labelnames: tuple[str, ...] = (),
) -> None:
    """Register gauge ``name`` with its finite samples (a missing value is no sample, not NaN).

    An unlabelled gauge without a finite value is not registered at all: prometheus_client
    would export it as 0, which reads as a measurement.
    """
    kept = [(labels, float(value)) for labels, value in samples if _finite(value)]
    if not labelnames:
        if kept:
            Gauge(name, documentation, registry=registry).set(kept[0][1])
        return
    gauge = Gauge(name, documentation, labelnames, registry=registry)
    for labels, value in kept:
        gauge.labels(**labels).set(value)


def drift_gauges(summary: dict) -> CollectorRegistry:
    """The drift job's metrics from its JSON summary."""
    version = str(summary["model"].get("version"))
    stats = summary["statistics"]
    registry = CollectorRegistry()
    add_gauge(
        registry,
        "fraud_drift_detected",
        "1 when the latest drift job found drift",
        [({"model_version": version}, float(summary["drift_detected"]))],
        ("model_version",),
    )
    add_gauge(
        registry,
        "fraud_drift_share",
        "Share of the model's features whose distribution drifted",
        [({}, stats["data_drift"]["drifted_share"])],
    )
    add_gauge(
        registry,
        "fraud_feature_psi",
        "PSI of a top-importance feature, current window vs reference",
        [({"feature": f}, e.get("psi")) for f, e in stats["psi"]["features"].items()],
        ("feature",),
    )
    add_gauge(
        registry,
        "fraud_feature_missing_share_increase",
        "Missing-value share of a feature, current minus reference",
        [({"feature": f}, e.get("increase")) for f, e in stats["missing_values"]["fields"].items()],
        ("feature",),
    )
    add_gauge(
        registry,
        "fraud_prediction_drift_score",
        "Score-distribution drift statistic vs reference",
        [({"model_version": version}, stats["prediction"]["score"].get("score"))],
        ("model_version",),
    )
    add_gauge(
        registry,
        "fraud_drift_last_run_timestamp_seconds",
        "When the drift job last finished",
        [({}, time.time())],
    )
    return registry


def performance_gauges(summary: dict) -> CollectorRegistry:
    """The delayed-label performance job's metrics from its JSON summary."""
    version = str(summary["model"].get("version"))
    latest = summary["statistics"].get("latest_window") or {}
    registry = CollectorRegistry()
    add_gauge(
        registry,
        "fraud_performance_drop_detected",
        "1 when matured labels show the champion's average precision dropped",
        [({"model_version": version}, float(summary["drift_detected"]))],
        ("model_version",),
    )
    add_gauge(
        registry,
        "fraud_matured_average_precision",
        "Average precision on the latest judged window of matured labels",
        [({"model_version": version}, latest.get("average_precision"))],
        ("model_version",),
    )
    add_gauge(
        registry,
        "fraud_performance_last_run_timestamp_seconds",
        "When the job last finished",
        [({}, time.time())],
    )
    return registry


def exposition(registry: CollectorRegistry) -> str:
    """The Prometheus text format (0.0.4) of ``registry``, ending with a newline."""
    return generate_latest(registry).decode("utf-8")


def write_textfile(registry: CollectorRegistry, path: Path) -> Path:
    """Write the metrics for node-exporter's textfile collector (atomically: no half file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)
    return path


def pushgateway_url() -> str | None:
    """``FRAUD_PUSHGATEWAY_URL`` or None (local runs write only the textfile)."""
    return MonitoringSettings().pushgateway_url or None


def _httpx_handler(
    url: str, method: str, timeout: float | None, headers: list[tuple[str, str]], data: bytes
) -> Callable[[], None]:
    """A ``push_to_gateway`` handler on httpx whose errors name the Pushgateway URL."""

    def handle() -> None:
        try:
            response = httpx.request(
                method, url, content=data, headers=dict(headers), timeout=timeout
            )
        except httpx.HTTPError as exc:
            raise MetricsPushError(f"Pushgateway {url}: unreachable ({exc})") from None
        if response.status_code >= 300:
            raise MetricsPushError(
                f"Pushgateway {url}: HTTP {response.status_code} {response.text.strip()[:200]}"
            )

    return handle


def push(registry: CollectorRegistry, url: str, job: str, timeout: float = 10.0) -> None:
    """Replace the ``job`` group on the Pushgateway at ``url`` with these metrics (PUT)."""
    push_to_gateway(url, job=job, registry=registry, timeout=timeout, handler=_httpx_handler)
