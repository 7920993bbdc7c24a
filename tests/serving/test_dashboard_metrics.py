"""The Grafana dashboard and the alert rules query metrics the servers really export.

Scraped live: every server of level 5 (and L2) after real traffic, plus the drift job's
exposition. A panel or alert on a misspelled metric would stay empty forever in Grafana and
never fire in Prometheus; this is where that fails instead.
"""

from __future__ import annotations

import json
import re

from monitoring.prometheus import drift_gauges, exposition
from monitoring.skew import skew_gauges
from tests.k8s.test_monitoring import FILES, metric_names, rules
from tests.serving.conftest import Stack

TRANSACTION = {
    "transaction_id": 77,
    "tx_datetime": "2026-02-15T03:12:00",  # just after the test world's history
    "customer_id": 1,
    "terminal_id": 2,
    "tx_amount": 480.0,
}


def skew_job_exposition() -> str:
    """What the skew job publishes, from a minimal summary of its shape."""
    summary = {"statistics": {"mismatch_share": 0.0, "feature_mismatch_share": {"tx_amount": 0.0}}}
    return exposition(skew_gauges(summary))


def exported_families(exposition_text: str) -> set[str]:
    """Metric family names in a Prometheus text exposition (histogram suffixes folded)."""
    names = set(re.findall(r"^# TYPE (\S+) ", exposition_text, re.MULTILINE))
    samples = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", exposition_text, re.MULTILINE))
    folded = {re.sub(r"_(bucket|sum|count|total|created)$", "", n) for n in names | samples}
    return names | samples | folded


def dashboard_and_rule_metrics() -> set[str]:
    dashboard = json.loads(FILES.dashboard.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    exprs += [rule["expr"] for rule in rules()]
    return set().union(*(metric_names(expr) for expr in exprs))


def drift_job_exposition() -> str:
    """What the drift job publishes, for a summary shaped like the job's real one."""
    summary = {
        "model": {"version": "1"},
        "drift_detected": True,
        "statistics": {
            "psi": {"features": {"tx_amount": {"psi": 0.31}}},
            "missing_values": {"fields": {"terminal_risk_7d": {"increase": 0.14}}},
            "prediction": {"score": {"score": 0.2}},
            "data_drift": {"drifted_share": 0.25},
        },
    }
    return exposition(drift_gauges(summary))


def test_every_queried_metric_is_exported_by_a_live_server_or_a_monitoring_job(
    stack: Stack,
) -> None:
    assert stack.transformer.predict({"instances": [TRANSACTION]}).status_code == 200
    assert stack.transformer.explain({"instances": [TRANSACTION]}).status_code == 200
    assert stack.transformer.predict({"instances": [{"tx_amount": -1}]}).status_code == 422
    live = "\n".join(
        server.metrics()
        for server in (stack.transformer, stack.predictor, stack.explainer, stack.level2)
    )
    exported = exported_families(live) | exported_families(drift_job_exposition())
    exported |= exported_families(skew_job_exposition())
    used = dashboard_and_rule_metrics()
    assert "fraud_predictions_total" in used and "fraud_drift_detected" in used
    missing = sorted(name for name in used if name not in exported)
    assert not missing, f"queried but exported by no server: {missing}"


def test_the_check_catches_a_metric_no_server_exports() -> None:
    assert "fraud_not_a_metric" not in exported_families("# TYPE fraud_score histogram\n")
    assert metric_names("rate(fraud_not_a_metric_total[5m])") == {"fraud_not_a_metric_total"}
