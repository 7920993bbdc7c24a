"""Monitoring results as Prometheus metrics: a textfile locally, the Pushgateway on a cluster.

The names are a contract with the alert rules (``monitoring/alerts/``) and the dashboard:
``fraud_drift_detected{model_version}``, ``fraud_drift_share``, ``fraud_feature_psi{feature}``
from the drift job; ``fraud_performance_drop_detected{model_version}`` and
``fraud_matured_average_precision{model_version}`` from the performance job.
Written in the text exposition format by hand: the monitor image needs no client library.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from data.files import atomic_path
from fraudops.settings import MonitoringSettings


class MetricsPushError(RuntimeError):
    """The Pushgateway refused or could not be reached; the message names the URL."""


@dataclass
class Gauge:
    """One gauge family: a name, its help text and ``(labels, value)`` samples."""

    name: str
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float | None, **labels: str) -> Gauge:
        """Add a sample (a missing or non-finite value is left out, not written as NaN)."""
        if value is not None and math.isfinite(float(value)):
            self.samples.append((labels, float(value)))
        return self


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def exposition(gauges: list[Gauge]) -> str:
    """The Prometheus text format (0.0.4) for ``gauges``, ending with a newline."""
    lines: list[str] = []
    for gauge in gauges:
        lines.append(f"# HELP {gauge.name} {gauge.help}")
        lines.append(f"# TYPE {gauge.name} gauge")
        for labels, value in gauge.samples:
            rendered = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            lines.append(
                f"{gauge.name}{{{rendered}}} {value:.10g}"
                if rendered
                else f"{gauge.name} {value:.10g}"
            )
    return "\n".join(lines) + "\n"


def drift_gauges(summary: dict) -> list[Gauge]:
    """The drift job's metrics from its JSON summary."""
    version = str(summary["model"].get("version"))
    stats = summary["statistics"]
    psi = Gauge("fraud_feature_psi", "PSI of a top-importance feature, current window vs reference")
    for feature, entry in stats["psi"]["features"].items():
        psi.add(entry.get("psi"), feature=feature)
    missing = Gauge(
        "fraud_feature_missing_share_increase",
        "Missing-value share of a feature, current minus reference",
    )
    for feature, entry in stats["missing_values"]["fields"].items():
        missing.add(entry.get("increase"), feature=feature)
    score = stats["prediction"]["score"]
    return [
        Gauge("fraud_drift_detected", "1 when the latest drift job found drift").add(
            float(summary["drift_detected"]), model_version=version
        ),
        Gauge("fraud_drift_share", "Share of the model's features whose distribution drifted").add(
            stats["data_drift"]["drifted_share"]
        ),
        psi,
        missing,
        Gauge(
            "fraud_prediction_drift_score", "Score-distribution drift statistic vs reference"
        ).add(score.get("score"), model_version=version),
        Gauge("fraud_drift_last_run_timestamp_seconds", "When the drift job last finished").add(
            time.time()
        ),
    ]


def performance_gauges(summary: dict) -> list[Gauge]:
    """The delayed-label performance job's metrics from its JSON summary."""
    version = str(summary["model"].get("version"))
    latest = summary["statistics"].get("latest_window") or {}
    return [
        Gauge(
            "fraud_performance_drop_detected",
            "1 when matured labels show the champion's average precision dropped",
        ).add(float(summary["drift_detected"]), model_version=version),
        Gauge(
            "fraud_matured_average_precision",
            "Average precision on the latest judged window of matured labels",
        ).add(latest.get("average_precision"), model_version=version),
        Gauge("fraud_performance_last_run_timestamp_seconds", "When the job last finished").add(
            time.time()
        ),
    ]


def write_textfile(text: str, path: Path) -> Path:
    """Write the metrics for node-exporter's textfile collector (atomically: no half file)."""
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(text)
    return Path(path)


def pushgateway_url() -> str | None:
    """``FRAUD_PUSHGATEWAY_URL`` or None (local runs write only the textfile)."""
    return MonitoringSettings().pushgateway_url or None


def push(text: str, url: str, job: str, timeout: float = 10.0) -> None:
    """Replace the ``job`` group on the Pushgateway at ``url`` with these metrics."""
    import httpx

    target = f"{url.rstrip('/')}/metrics/job/{job}"
    try:
        response = httpx.put(
            target,
            content=text.encode(),
            headers={"Content-Type": "text/plain; version=0.0.4"},
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        raise MetricsPushError(f"Pushgateway {target}: unreachable ({exc})") from None
    if response.status_code >= 300:
        raise MetricsPushError(
            f"Pushgateway {target}: HTTP {response.status_code} {response.text.strip()[:200]}"
        )
