"""Issue #16: the report compares champion and candidate on one window, and says what is stale.

The fixture trains a champion on the early days of the history and two later candidates on
all of it, so the champion's own test window ends five days before the candidates'. The
report must then score both on the current window for every "candidate vs champion" figure
(badges, comparison table, PR curve) and keep each model's own-window figures apart. A canary
verdict and a drift run about older models than the current ones must say they are stale.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from data.files import write_json_atomic, write_parquet_atomic
from data.schema import TX_DATETIME
from fraudops.bundle import load_run_bundle
from fraudops.config import Params
from fraudops.paths import Paths, paths
from tests.model.mlflow_store import fresh_sqlite_store
from tests.model.synthetic import N_DAYS, START, small_params, synthetic_training_set
from tests.report.conftest import MODEL
from training.evaluate import evaluate_bundle
from training.run import holdout_window, run_training
from tutorial import report_facts, report_gather, report_render

#: The candidates see this many more days than the champion did.
LATER_DAYS = 5


@dataclass(frozen=True)
class LaterCandidate:
    """A registry with champion v1 (early window), old candidate v2, @candidate v3 (later)."""

    root: Path
    layout: Paths
    tracking_uri: str
    params: Params
    run_ids: dict[str, str]


@pytest.fixture(scope="module")
def later_candidate(
    tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path
) -> LaterCandidate:
    """Champion v1 trained before the candidates' data existed; @candidate is v3."""
    root = tmp_path_factory.mktemp("later-candidate")
    layout = paths(root)
    params = small_params()
    history = synthetic_training_set(seed=5, n_days=N_DAYS + LATER_DAYS)
    early = history[history[TX_DATETIME] < START + pd.Timedelta(days=N_DAYS)]
    uri = fresh_sqlite_store(mlflow_template, root)
    run_ids = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FRAUD_PROJECT_ROOT", str(root))
        patch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        patch.delenv("FRAUD_PUSHGATEWAY_URL", raising=False)
        for version, frame in (("1", early), ("2", history), ("3", history)):
            write_parquet_atomic(frame, layout.training_set)
            summary = run_training(
                params,
                training_set=layout.training_set,
                artifacts_dir=layout.artifacts,
                work_dir=root / "work" / version,
                tracking_uri=uri,
            )
            assert summary.candidate_version == version
            run_ids[version] = summary.run_id
    client = MlflowClient(uri, registry_uri=uri)
    # Where the story leaves them, whichever won: v1 serves, v3 waits, v2 is history.
    client.set_registered_model_alias(MODEL, "champion", "1")
    client.set_registered_model_alias(MODEL, "candidate", "3")
    return LaterCandidate(root, layout, uri, params, run_ids)


def gathered_report(project: LaterCandidate, canary: Path, drift: Path) -> report_facts.RunReport:
    absent = project.root / "absent"
    return report_gather.gather_report(
        model_name=MODEL,
        tracking_uri=project.tracking_uri,
        params=project.params,
        validation_report=absent / "report.json",
        training_set=project.layout.training_set,
        drift_summary=drift,
        canary_verdict=canary,
        audit_dir=absent / "audit",
        prediction_log_dir=absent / "predictions",
    )


def section(page: str, section_id: str) -> str:
    return re.search(rf'<section id="{section_id}">.*?</section>', page, re.DOTALL).group(0)


def table_rows(table_html: str) -> dict[str, list[str]]:
    """``{first cell: [other cells]}`` of an HTML table's body (tags inside cells dropped)."""
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", table_html.split("<tbody>", 1)[1], re.DOTALL):
        cells = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td>(.*?)</td>", row, re.DOTALL)]
        rows[cells[0]] = cells[1:]
    return rows


@pytest.fixture(scope="module")
def page_and_facts(later_candidate: LaterCandidate, tmp_path_factory: pytest.TempPathFactory):
    """The rendered page with a canary verdict about v2 and a drift run about v2."""
    project = later_candidate
    out = tmp_path_factory.mktemp("later-report")
    canary = out / "canary_verdict.json"
    write_json_atomic(
        {
            "verdict": {"action": "promote", "reasons": ["latency_p99: within limits"]},
            "champion": {"arm": "champion", "model_version": "1", "requests": 80},
            "candidate": {"arm": "candidate", "model_version": "2", "requests": 20},
            "applied": "nothing",
        },
        canary,
    )
    drift = out / "drift_summary.json"
    write_json_atomic(
        {
            "drift_detected": False,
            "model": {"version": "2"},
            "window": {"start": "2026-01-20", "end": "2026-01-21", "rows": 100},
        },
        drift,
    )
    gathered = gathered_report(project, canary, drift)
    return report_render.render_report(gathered, out / "run-report.html"), gathered


def test_every_candidate_vs_champion_figure_comes_from_one_window(
    later_candidate: LaterCandidate, page_and_facts
) -> None:
    project = later_candidate
    page, gathered = page_and_facts
    registry = gathered.registry
    champion, candidate = registry.champion, registry.candidate
    assert (champion.version, candidate.version) == ("1", "3")
    # The premise: each was trained, and logged its test metrics, on a different window.
    assert champion.test_window != candidate.test_window

    test = holdout_window(project.layout.training_set, project.params)
    window = f"{test[TX_DATETIME].min():%Y-%m-%d}..{test[TX_DATETIME].max():%Y-%m-%d}"
    one_window = {
        version: evaluate_bundle(
            load_run_bundle(project.run_ids[version], project.tracking_uri),
            test,
            project.params.evaluate,
        )
        for version in ("1", "3")
    }
    own_ap = report_render.fmt_metric("average_precision", champion.metrics["average_precision"])
    same_ap = report_render.fmt_metric("average_precision", one_window["1"]["average_precision"])
    assert own_ap != same_ap, "the two windows must give the champion different figures"

    models = section(page, "models")
    compared, own = models.split("Each model on its own test window", 1)
    nav = re.search(r"<nav>.*?</nav>", page, re.DOTALL).group(0)

    # The comparison window is named once, and the champion's own window not at all there.
    assert gathered.pr_curves.window == window
    assert compared.count(window) == 1 and champion.test_window not in compared

    comparison = re.search(r'<table class="metrics comparison">.*?</table>', compared, re.DOTALL)
    rows = table_rows(comparison.group(0))
    for key, label in report_render.METRICS:
        expected = [report_render.fmt_metric(key, one_window[v].get(key)) for v in ("1", "3")]
        assert rows[label][:2] == expected, (key, rows[label], expected)

    for version in ("1", "3"):
        ap = report_render.fmt_metric("average_precision", one_window[version]["average_precision"])
        assert re.search(rf'data-version="{version}"><b>@\w+</b>v{version} · AP {ap}<', nav)
        assert re.search(rf"v{version} \(AP {ap}\)</text>", compared), f"legend of v{version}"
    # The champion's own-window AP appears only in the table that says so.
    assert own_ap not in nav + compared and own_ap in own
    assert "not compare the models" in own

    # Which model and which run: both named in the section.
    for version in ("1", "3"):
        assert project.run_ids[version] in compared


def test_sections_about_an_older_model_say_they_are_stale(
    later_candidate: LaterCandidate, page_and_facts
) -> None:
    project = later_candidate
    page, _ = page_and_facts
    canary = section(page, "canary")
    assert "STALE" in canary
    assert "about candidate v2" in canary and "current @candidate v3" in canary
    assert project.run_ids["2"] in canary and project.run_ids["1"] in canary
    drift = section(page, "drift")
    assert "STALE" in drift and "judged champion v2" in drift and "@champion is v1" in drift
    assert "STALE" not in section(page, "models")


def test_a_verdict_about_the_current_candidate_is_not_stale(
    later_candidate: LaterCandidate, tmp_path: Path
) -> None:
    canary = tmp_path / "canary_verdict.json"
    write_json_atomic(
        {
            "verdict": {"action": "rollback", "reasons": ["errors_5xx: 3 > 0"]},
            "champion": {"arm": "champion", "model_version": "1"},
            "candidate": {"arm": "candidate", "model_version": "3"},
        },
        canary,
    )
    gathered = gathered_report(later_candidate, canary, tmp_path / "no-drift.json")
    page = report_render.render_report(gathered, tmp_path / "run-report.html")
    canary_html = section(page, "canary")
    assert "STALE" not in canary_html
    assert later_candidate.run_ids["3"] in canary_html
