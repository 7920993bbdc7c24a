"""Job 2 runs the pipeline on Kubeflow when an endpoint is configured; job 4 builds as `make rehearse`."""

from __future__ import annotations

import yaml

from fraudops.config import project_root

WORKFLOW = project_root() / ".github" / "workflows" / "ml-pipeline.yml"


def _steps(job: str) -> list[dict]:
    return yaml.safe_load(WORKFLOW.read_text())["jobs"][job]["steps"]


def _runs(job: str) -> dict[str, str]:
    return {step.get("run", ""): step.get("if", "") for step in _steps(job) if "run" in step}


def test_job2_submits_to_kubeflow_when_configured_else_runs_kfp_local():
    runs = _runs("train")
    submit = next(run for run in runs if "python -m pipelines.submit --wait" in run)
    assert runs[submit] == "vars.KFP_HOST != ''"
    assert runs["make train"] == "vars.KFP_HOST == ''"
    # The cluster reads the data version dvc.lock names, from the DVC remote (and so does
    # the online store's load Job, whatever ran the pipeline).
    urls = next(run for run in runs if "deploy.dvc_urls" in run)
    assert runs[urls] == ""
    for flag in ("--transactions", "--customer-features", "--terminal-features"):
        assert flag in submit


def test_job2_reports_the_gate_whatever_ran_the_pipeline():
    gate = next(step for step in _steps("train") if step.get("id") == "gate")
    assert "if" not in gate and "deploy.champion --previous-version" in gate["run"]


def test_job4_builds_every_image_the_way_the_rehearsal_does():
    runs = _runs("build-images")
    assert any(run.startswith(".venv/bin/python -m deploy.images --push") for run in runs)
    outputs = yaml.safe_load(WORKFLOW.read_text())["jobs"]["build-images"]["outputs"]
    assert set(outputs) == {"predictor", "transformer", "explainer"}
    assert all("steps.images.outputs" in value for value in outputs.values())


def test_job5_releases_the_data_version_the_online_store_loads_from():
    workflow = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    outputs = workflow["train"]["outputs"]
    for name in ("transactions", "customer_features", "terminal_features"):
        assert outputs[name] == f"${{{{ steps.data.outputs.{name} }}}}"
    runs = _runs("gitops")
    patch = next(run for run in runs if "--overlay k8s/infra/feast" in run)
    assert patch.count("--data-url") == 3
    push = next(run for run in runs if "deploy.gitops_push" in run)
    assert "--path k8s/infra/feast" in push
