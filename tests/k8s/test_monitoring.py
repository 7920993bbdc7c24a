"""The alert rules and the dashboard: one source each, generated manifests, promtool tests."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from deploy.render_monitoring import MonitoringFiles, main, stale_files, write_all
from fraudops.config import project_root

FILES = MonitoringFiles(project_root())
PROMTOOL = shutil.which("promtool")


@pytest.fixture
def _promtool() -> str:
    """promtool's path; a missing one fails the test with the line that installs it."""
    if PROMTOOL is None:
        pytest.fail(
            "promtool is not on PATH: make tools (apt-get install -y prometheus)", pytrace=False
        )
    return PROMTOOL


needs_promtool = pytest.mark.usefixtures("_promtool")

#: Metric names of the serving contract (serving/) and the drift job.
CONTRACT_METRICS = {
    "fraud_score",
    "fraud_decisions_total",
    "fraud_predictions_total",
    "fraud_request_errors_total",
    "fraud_predict_latency_seconds",
    "fraud_model_info",
    "fraud_unknown_entities_total",
    "fraud_drift_detected",
    "fraud_drift_share",
    "fraud_feature_psi",
    "fraud_feature_skew_share",
    "request_preprocess_seconds",
    "request_predict_seconds",
    "request_postprocess_seconds",
    "request_explain_seconds",
}
PROMQL_WORDS = {
    "sum",
    "by",
    "rate",
    "increase",
    "histogram_quantile",
    "max",
    "le",
    "or",
    "absent_over_time",
    "status",
    "model_version",
    "alias",
    "decision",
    "entity",
    "feature",
    "label_values",
}
ALERTS = {
    "FraudNoPredictions",
    "FraudHighErrorRate",
    "FraudPredictLatencyP95",
    "FraudDriftDetected",
    "FraudFeatureSkew",
}


def rules() -> list[dict]:
    return [
        rule
        for group in yaml.safe_load(FILES.rules.read_text())["groups"]
        for rule in group["rules"]
    ]


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (histogram suffixes folded into the metric)."""
    without_strings = re.sub(r'"[^"]*"', "", expr)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_strings)
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_ranges)) - PROMQL_WORDS
    return {re.sub(r"_(bucket|sum|count)$", "", word) for word in words if "_" in word}


def test_committed_manifests_are_generated_from_the_sources():
    assert stale_files(FILES) == [], "run: python -m deploy.render_monitoring"


def test_a_changed_source_makes_the_generated_file_stale(tmp_path: Path):
    for path in (FILES.rules, FILES.dashboard, FILES.prometheus_rule, FILES.dashboard_configmap):
        target = tmp_path / path.relative_to(FILES.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    copy = MonitoringFiles(tmp_path)
    assert stale_files(copy) == []
    copy.rules.write_text(copy.rules.read_text().replace("> 0.05", "> 0.10"))
    assert stale_files(copy) == [copy.prometheus_rule]
    assert main(["--check", "--root", str(tmp_path)]) == 1
    assert write_all(copy) == [copy.prometheus_rule]
    assert "> 0.10" in copy.prometheus_rule.read_text()
    assert main(["--check", "--root", str(tmp_path)]) == 0


def test_prometheus_rule_carries_exactly_the_rule_file_groups():
    manifest = yaml.safe_load(FILES.prometheus_rule.read_text())
    assert manifest["kind"] == "PrometheusRule"
    assert manifest["spec"]["groups"] == yaml.safe_load(FILES.rules.read_text())["groups"]


def test_dashboard_configmap_carries_the_dashboard_json():
    manifest = yaml.safe_load(FILES.dashboard_configmap.read_text())
    assert json.loads(manifest["data"]["fraud-detector.json"]) == json.loads(
        FILES.dashboard.read_text()
    )


def test_the_five_alerts_say_who_is_paged_and_link_a_runbook():
    by_name = {rule["alert"]: rule for rule in rules()}
    assert set(by_name) == ALERTS
    assert by_name["FraudNoPredictions"]["labels"]["severity"] == "critical"
    assert by_name["FraudHighErrorRate"]["labels"]["severity"] == "critical"
    assert by_name["FraudPredictLatencyP95"]["labels"]["severity"] == "warning"
    assert by_name["FraudDriftDetected"]["labels"]["severity"] == "warning"
    assert by_name["FraudFeatureSkew"]["labels"]["severity"] == "warning"
    assert "> 0.01" in by_name["FraudFeatureSkew"]["expr"]
    assert "> 0.05" in by_name["FraudHighErrorRate"]["expr"]
    assert "> 0.5" in by_name["FraudPredictLatencyP95"]["expr"]
    runbook = (FILES.rules.parent / "RUNBOOK.md").read_text()
    anchors = {heading.lower() for heading in re.findall(r"^## (\w+)$", runbook, re.MULTILINE)}
    for rule in by_name.values():
        assert rule["labels"]["team"] and rule["labels"]["owner"]
        anchor = rule["annotations"]["runbook_url"].rsplit("#", 1)[1]
        assert anchor in anchors, f"RUNBOOK.md has no section for {rule['alert']}"


def test_rules_and_dashboard_use_only_contract_metrics():
    used = set().union(*(metric_names(rule["expr"]) for rule in rules()))
    dashboard = json.loads(FILES.dashboard.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    used |= set().union(*(metric_names(expr) for expr in exprs))
    assert used, "no metric found: the parser is broken"
    assert used <= CONTRACT_METRICS, f"not in the serving contract: {used - CONTRACT_METRICS}"


def test_metric_name_parser_sees_an_unknown_metric():
    assert metric_names('sum(rate(fraud_bogus_total{status=~"5.."}[5m]))') == {"fraud_bogus_total"}


def test_dashboard_shows_what_the_on_call_needs():
    dashboard = json.loads(FILES.dashboard.read_text())
    text = json.dumps(dashboard["panels"])
    for metric in (
        "fraud_predict_latency_seconds_bucket",
        "fraud_predictions_total",
        "fraud_request_errors_total",
        "fraud_score_bucket",
        "fraud_decisions_total",
        "fraud_drift_detected",
        "fraud_model_info",
    ):
        assert metric in text, f"no panel shows {metric}"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


@needs_promtool
def test_promtool_accepts_the_rule_file():
    done = subprocess.run(
        [PROMTOOL, "check", "rules", str(FILES.rules)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 rules found" in done.stdout


@needs_promtool
def test_promtool_unit_tests_pass():
    tests = FILES.rules.parent / "fraud-rules.test.yaml"
    done = subprocess.run(
        [PROMTOOL, "test", "rules", str(tests)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_promtool_unit_tests_catch_a_wrong_threshold(tmp_path: Path):
    shutil.copy(FILES.rules.parent / "fraud-rules.test.yaml", tmp_path)
    broken = FILES.rules.read_text().replace("> 0.05", "> 0.5")
    (tmp_path / "fraud-rules.yaml").write_text(broken)
    done = subprocess.run(
        [PROMTOOL, "test", "rules", str(tmp_path / "fraud-rules.test.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "FraudHighErrorRate" in done.stdout + done.stderr


@needs_promtool
def test_promtool_unit_tests_catch_a_wrong_skew_budget(tmp_path: Path):
    shutil.copy(FILES.rules.parent / "fraud-rules.test.yaml", tmp_path)
    broken = FILES.rules.read_text().replace(
        "fraud_feature_skew_share) > 0.01", "fraud_feature_skew_share) > 0.05"
    )
    (tmp_path / "fraud-rules.yaml").write_text(broken)
    done = subprocess.run(
        [PROMTOOL, "test", "rules", str(tmp_path / "fraud-rules.test.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "FraudFeatureSkew" in done.stdout + done.stderr
