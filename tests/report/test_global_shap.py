"""Issue #14: the run report shows each model's logged global SHAP, or says it was not logged."""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import replace
from pathlib import Path

import mlflow.artifacts
from mlflow import MlflowClient

from tests.model.mlflow_store import fresh_sqlite_store
from tests.report.conftest import MODEL, Project
from training.explain_global import EXPLANATIONS_ARTIFACT_PATH, IMPORTANCE_FILE
from tutorial import report_gather, report_render, report_shap
from tutorial.report_facts import Missing, RunReport

NOT_RUN = Missing("not needed here", "make nothing")


def logged_importance(project: Project, version: str) -> dict:
    """The ``mean_abs_shap.json`` the version's training run logged."""
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(
            run_id=project.versions[version].run_id,
            artifact_path=f"{EXPLANATIONS_ARTIFACT_PATH}/{IMPORTANCE_FILE}",
            dst_path=tmp,
            tracking_uri=project.tracking_uri,
        )
        return json.loads(Path(local).read_text())


def page_with(registry, global_shap, out: Path) -> str:
    """The rendered page with only the registry and the global SHAP section filled."""
    empty = dict.fromkeys(("data", "pr_curves", "drift", "explanation", "canary"), NOT_RUN)
    gathered = RunReport(
        "2026-01-01T00:00:00+00:00", registry=registry, global_shap=global_shap, **empty
    )
    return report_render.render_report(gathered, out)


def section(page: str) -> str:
    [body] = re.findall(r'<section id="global-shap">(.*?)</section>', page, re.DOTALL)
    return body


def model_block(body: str, version: str) -> str:
    """One model's block: up to the next model's block or the section's end."""
    start = rf'<div class="global-shap" data-version="{version}">'
    [block] = re.findall(start + r'(.*?)</div>\s*(?:<div class="global-shap"|$)', body, re.DOTALL)
    return block


def test_section_lists_the_champions_features_in_the_logged_order(
    project: Project, tmp_path: Path
) -> None:
    registry = report_gather.gather_registry(MODEL, project.tracking_uri)
    models = report_shap.gather_global_shap(registry)
    assert [(m.role, m.version, m.run_id) for m in models] == [
        ("champion", "1", project.versions["1"].run_id),
        ("candidate", "2", project.versions["2"].run_id),
    ]
    logged = logged_importance(project, "1")
    champion = models[0].shap
    assert champion.units == "log-odds" == logged["units"]
    assert champion.summary_png.startswith(b"\x89PNG")
    assert [name for name, _ in champion.dependence_png] == [
        e["feature"] for e in logged["mean_abs_shap"][:3]
    ]

    body = section(page_with(registry, models, tmp_path / "run-report.html"))
    assert f"champion v1 (run <code>{project.versions['1'].run_id}</code>)" in body
    assert f"candidate v2 (run <code>{project.versions['2'].run_id}</code>)" in body
    block = model_block(body, "1")
    expected = [(e["feature"], f"{e['mean_abs_shap']:.4f}") for e in logged["mean_abs_shap"]]
    rows = re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td></tr>", block)
    assert rows == expected
    bars = re.findall(r'class="importance" data-feature="([^"]+)"', block)
    assert bars == [feature for feature, _ in expected]
    assert "log-odds" in block and "not logged for this run" not in body
    assert block.count('src="data:image/png;base64,') == 1 + 3  # beeswarm + dependence


def test_a_run_without_explanations_says_not_logged(
    project: Project, tmp_path: Path, mlflow_template: Path
) -> None:
    uri = fresh_sqlite_store(mlflow_template, tmp_path)
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.create_experiment("older", artifact_location=tmp_path.as_uri())
    old_run = client.create_run(experiment).info.run_id  # an older run: no explanations/

    registry = report_gather.gather_registry(MODEL, project.tracking_uri)
    older = replace(
        registry,
        tracking_uri=uri,
        champion=replace(registry.champion, run_id=old_run),
        candidate=None,
        run_ids={"1": old_run},
    )
    [model] = report_shap.gather_global_shap(older)
    assert isinstance(model.shap, Missing) and model.shap.what == report_shap.NOT_LOGGED
    assert old_run in model.shap.detail

    body = section(page_with(older, (model,), tmp_path / "run-report.html"))
    assert "What the champion looks at (global SHAP)" in body
    assert "not logged for this run" in body and old_run in body
    assert "<svg" not in body and "<img" not in body


def test_no_registry_is_not_run_yet() -> None:
    missing = report_shap.gather_global_shap(Missing("no registry", "make train"))
    assert isinstance(missing, Missing) and missing.command == "make train"
