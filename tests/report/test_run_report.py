"""The run report: gathered from the real sources, rendered offline, opened in Chromium."""

from __future__ import annotations

import json
import struct
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from mlflow import MlflowClient

from serving.explain import AuditRecord
from serving.prediction_log import PredictionLogWriter
from tests.model.mlflow_store import fresh_sqlite_store
from tests.report.browser import HeadlessChromium
from tests.report.conftest import MODEL, Project
from tutorial import report, report_charts, report_facts, report_gather, report_render
from tutorial.report_facts import Missing, Reason

SECTION_HEADINGS = [
    "Data",
    "Champion vs candidate",
    "Drift",
    "What the champion looks at (global SHAP)",
    "Example explanation",
    "Canary verdict",
    "Lineage",
]
#: Every section's id, heading and visible text, as the browser rendered them.
SECTIONS_JS = """JSON.stringify(Array.from(document.querySelectorAll('main > section')).map(s => ({
  id: s.id, heading: s.querySelector('h2').innerText, text: s.innerText})))"""
CHARTS_JS = """JSON.stringify({
  curves: Array.from(document.querySelectorAll('svg.pr-curve polyline'))
    .map(p => ({version: p.dataset.version, width: p.getBBox().width,
                height: p.getBBox().height})),
  bars: Array.from(document.querySelectorAll('svg.contributions rect'))
    .map(r => r.getBoundingClientRect().width),
  legend: Array.from(document.querySelectorAll('svg.pr-curve text'))
    .map(t => t.textContent).filter(t => t.includes('(AP ')),
  badges: Array.from(document.querySelectorAll('nav .card[data-version]'))
    .map(c => ({version: c.dataset.version, text: c.innerText})),
  compared: Array.from(document.querySelectorAll('table.comparison')).map(t => ({
    headers: Array.from(t.querySelectorAll('th')).map(h => h.innerText),
    ap: Array.from(t.querySelectorAll('tbody tr'))
      .filter(r => r.cells[0].innerText.startsWith('PR-AUC'))
      .map(r => Array.from(r.cells).map(c => c.innerText))})),
  shap_images: Array.from(document.querySelectorAll('#global-shap img'))
    .map(i => i.naturalWidth),
  drift_link: document.querySelector('#drift a') && document.querySelector('#drift a').href,
  resources: performance.getEntriesByType('resource').map(e => e.name),
  scripts: document.scripts.length})"""


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG"
    return struct.unpack(">II", header[16:24])


def logged_metric(project: Project, version: str, key: str) -> float:
    run_id = project.versions[version].run_id
    return MlflowClient(project.tracking_uri).get_run(run_id).data.metrics[f"test_{key}"]


@pytest.fixture
def project_env(project: Project, monkeypatch: pytest.MonkeyPatch) -> Project:
    """The project's environment for an in-process CLI call."""
    for key, value in project.env().items():
        monkeypatch.setenv(key, value)
    return project


def test_report_renders_every_section_with_real_numbers_in_chromium(
    project_env: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = project_env
    out = project.root / "reports" / "run-report.html"
    assert report.main(["--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "not run yet" not in printed

    with HeadlessChromium(tmp_path / "profile") as browser:
        page = browser.page()
        # The console check must be able to fail: a page that logs an error is caught.
        page.navigate("data:text/html,<script>console.error('boom')</script>")
        assert any("boom" in error for error in page.console_errors())

        page.navigate(out.as_uri())
        sections = json.loads(page.evaluate(SECTIONS_JS))
        charts = json.loads(page.evaluate(CHARTS_JS))
        errors = page.console_errors()
        screenshot = page.screenshot(tmp_path / "run-report.png")

    assert errors == []
    assert [s["heading"] for s in sections] == SECTION_HEADINGS
    text = {s["id"]: s["text"] for s in sections}
    for section_id, body in text.items():
        assert "not run yet" not in body, f"{section_id}: {body[:300]}"

    # Self-contained: no script, and nothing fetched besides the page itself.
    assert charts["scripts"] == 0 and charts["resources"] == []

    data = json.loads(project.layout.validation_report.read_text())
    assert f"{data['rows']:,}" in text["data"] and f"{data['frauds']:,}" in text["data"]

    for version in ("1", "2"):
        ap = logged_metric(project, version, "average_precision")
        assert f"{ap:.4f}" in text["models"]
        net = logged_metric(project, version, "net_benefit")
        assert f"${net:,.0f}" in text["models"]
    assert {c["version"] for c in charts["curves"]} == {"1", "2"}
    assert_badges_and_table_agree_with_the_curve(charts)
    assert all(c["width"] > 100 and c["height"] > 20 for c in charts["curves"]), charts["curves"]

    drift = project.drift_summary
    verdict = "DRIFT DETECTED" if drift["drift_detected"] else "no drift"
    assert verdict in text["drift"]
    assert str(drift["window"]["start"]) in text["drift"]
    assert f"{drift['window']['rows']:,}" in text["drift"]
    linked = Path(unquote(urlparse(charts["drift_link"]).path))
    assert linked.name == "drift_report.html" and linked.exists()

    assert "computed by v" in text["explanation"] and "prediction log" in text["explanation"]
    assert any(d in text["explanation"] for d in ("REVIEW", "DECLINE"))
    assert len(charts["bars"]) == 5 and all(width >= 1 for width in charts["bars"])

    # Global SHAP: both models' bars, the beeswarm and dependence plots inlined and decoded.
    assert (
        "log-odds" in text["global-shap"]
        and len(charts["shap_images"]) == 2 * 4
        and all(width > 100 for width in charts["shap_images"])
    ), (text["global-shap"][:300], charts["shap_images"])

    canary = project.canary_verdict
    assert canary["verdict"]["action"].upper() in text["canary"]
    assert f"{canary['candidate']['requests']:,}" in text["canary"]

    for facts in project.versions.values():
        for value in (facts.run_id, facts.git_commit, facts.data_hash, facts.params_hash):
            assert value in text["lineage"]
    assert "alice" in text["lineage"] and "fraud losses up after the promotion" in text["lineage"]

    width, height = png_size(screenshot)
    assert width == 1200 and height > 2000, (width, height)


def assert_badges_and_table_agree_with_the_curve(charts: dict) -> None:
    """Each model's AP in the badges, the comparison table and the PR legend is one figure."""
    legend = {}
    for text in charts["legend"]:  # "champion v1 (AP 0.7281)"
        label, ap = text.rsplit(" (AP ", 1)
        legend[label.split(" v")[-1]] = ap.rstrip(")")
    assert set(legend) == {"1", "2"}, charts["legend"]
    badges = {b["version"]: b["text"].rsplit("AP ", 1)[-1].strip() for b in charts["badges"]}
    assert badges == legend, (charts["badges"], charts["legend"])
    [table] = charts["compared"]
    [ap_row] = table["ap"]
    columns = [h.split(" v")[-1] for h in table["headers"][1:3]]
    assert dict(zip(columns, ap_row[1:3])) == legend, (table, charts["legend"])


def test_missing_sources_render_as_not_run_yet(tmp_path: Path, mlflow_template: Path) -> None:
    nowhere = tmp_path / "absent"
    gathered = report_gather.gather_report(
        model_name=MODEL,
        tracking_uri=fresh_sqlite_store(mlflow_template, tmp_path),
        params=None,  # never needed: there is no model to score
        validation_report=nowhere / "report.json",
        training_set=nowhere / "training_set.parquet",
        drift_summary=nowhere / "drift_summary.json",
        canary_verdict=nowhere / "canary_verdict.json",
        audit_dir=nowhere / "audit",
        prediction_log_dir=nowhere / "predictions",
    )
    assert report.missing_sections(gathered) == [
        "data",
        "registry",
        "pr_curves",
        "drift",
        "explanation",
        "canary",
        "global_shap",
    ]
    page = report_render.render_report(gathered, tmp_path / "run-report.html")
    for command in ("make data", "make train", "make drift", "make level5", "make canary"):
        assert f"<code>{command}</code>" in page
    # one note per section (lineage repeats the registry's)
    assert page.count("not run yet") == len(SECTION_HEADINGS)
    assert "<svg" not in page  # no chart without data


def test_explanation_prefers_the_newest_flagged_audit_record(tmp_path: Path) -> None:
    def record(request_id: str, decision: str, probability: float) -> AuditRecord:
        reasons = [
            {"feature": "tx_amount", "value": 412.0, "contribution": 2.5, "text": "amount is 412"},
            {"feature": "tx_during_night", "value": 0.0, "contribution": -0.4, "text": "daytime"},
        ]
        return AuditRecord(request_id, "3", decision, probability, -4.0, reasons, 77)

    writer = PredictionLogWriter(tmp_path / "audit", prefix="audit")
    writer.write([record("r-1", "APPROVE", 0.01), record("r-2", "DECLINE", 0.93)])
    writer.write([record("r-3", "APPROVE", 0.02)])
    explanation = report_gather.gather_explanation(tmp_path / "audit", tmp_path / "none", {}, None)
    assert explanation.request_id == "r-2" and explanation.decision == "DECLINE"
    assert explanation.fraud_probability == 0.93 and explanation.model_version == "3"
    assert [r.contribution for r in explanation.reasons] == [2.5, -0.4]
    assert explanation.source.startswith("audit log ")


def test_explanation_is_missing_without_audit_log_or_champion(tmp_path: Path) -> None:
    explanation = report_gather.gather_explanation(
        tmp_path / "audit", tmp_path / "predictions", {}, None
    )
    assert isinstance(explanation, Missing) and explanation.command == "make level5"


def test_drift_facts_come_from_the_summary(project: Project) -> None:
    path = project.root / "reports" / "drift" / "drift_summary.json"
    drift = report_gather.gather_drift(path)
    summary = project.drift_summary
    assert drift.drift_detected == summary["drift_detected"]
    assert list(drift.signals) == summary["signals"]
    assert drift.rows == summary["window"]["rows"]
    assert drift.drifted_count == summary["statistics"]["data_drift"]["drifted_count"]
    assert drift.html_exists and Path(drift.html_path).name == "drift_report.html"


def test_canary_verdict_falls_back_to_the_registry_tags(project: Project) -> None:
    registry = report_gather.gather_registry(MODEL, project.tracking_uri)
    canary = report_gather.gather_canary(project.root / "no-such-verdict.json", registry)
    assert canary.action == project.canary_verdict["verdict"]["action"]
    assert canary.candidate_version == "2"
    assert canary.source == f"registry tags of {MODEL} version 2"
    assert canary.reasons == tuple(project.canary_verdict["verdict"]["reasons"])


def test_pr_curves_score_both_models_on_the_same_window(project: Project) -> None:
    registry = report_gather.gather_registry(MODEL, project.tracking_uri)
    bundles = report_gather.load_bundles(registry)
    curves = report_gather.gather_pr_curves(
        registry, bundles, project.layout.training_set, project.params
    )
    by_version = {c.version: c for c in curves.curves}
    assert set(by_version) == {"1", "2"}
    assert by_version["1"].label == "champion v1" and by_version["2"].label == "candidate v2"
    # The 20-tree champion beats the two stumps on the window both were scored on.
    assert by_version["1"].average_precision > by_version["2"].average_precision
    assert curves.n_fraud > 0 and curves.n_transactions > curves.n_fraud
    for curve in curves.curves:
        assert all(0 <= v <= 1 for v in curve.recall + curve.precision)


def test_charts_are_well_formed_svg() -> None:
    curve = report_facts.PRCurve("champion v1", "1", (0.0, 0.5, 1.0), (1.0, 0.8, 0.1), 0.7)
    svg = ET.fromstring(report_charts.pr_curve_svg([curve]))
    ns = "{http://www.w3.org/2000/svg}"
    [line] = svg.iter(f"{ns}polyline")
    assert len(line.get("points").split()) == 3
    reasons = [
        Reason("tx_amount", 412.0, 2.5, "amount is 412 (raises risk)"),
        Reason("tx_during_night", None, -0.4, "daytime <lowers> & safe"),
    ]
    bars = ET.fromstring(report_charts.contribution_svg(reasons))
    classes = [rect.get("class") for rect in bars.iter(f"{ns}rect")]
    assert classes == ["raises", "lowers"]
    assert "daytime <lowers> & safe" in [t.text for t in bars.iter(f"{ns}title")]


def test_report_is_written_atomically(tmp_path: Path) -> None:
    out = tmp_path / "reports" / "run-report.html"
    report_render.write_report("<html>first</html>", out)
    report_render.write_report("<html>second</html>", out)
    assert out.read_text() == "<html>second</html>"
    assert [p.name for p in out.parent.iterdir()] == ["run-report.html"]
