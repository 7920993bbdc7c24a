"""The workflows' shape: the seven jobs, triggers, least privilege, pinned actions, thin steps."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from deploy.workflow_policy import (
    load_workflow,
    make_targets,
    python_modules,
    run_commands,
    workflow_violations,
)
from fraudops.config import project_root
from tests.workflows.conftest import FIXTURES, WORKFLOWS

ALL = sorted(WORKFLOWS.glob("*.yml"))
PIPELINE = load_workflow(WORKFLOWS / "ml-pipeline.yml")
JOBS = PIPELINE["jobs"]
SEVEN = ["preflight", "data", "train", "export-model-uri", "build-images", "gitops", "verify"]
DEPLOYMENT_JOBS = ["export-model-uri", "build-images", "gitops", "verify"]


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_workflow_keeps_the_project_rules(path: Path):
    assert workflow_violations(path) == []


def test_broken_workflow_breaks_the_project_rules():
    problems = "\n".join(workflow_violations(FIXTURES / "broken-workflow.yml"))
    for expected in (
        "must be pinned to a full commit SHA",
        "workflow: needs an explicit permissions",
        "needs a concurrency",
        "write-all is too broad",
        "API_TOKEN looks like a credential",
        "run must call a make target or python -m",
        "no ${{ }} in run",
        "no kubectl apply",
    ):
        assert expected in problems, f"{expected!r} not reported:\n{problems}"


def test_pipeline_has_the_seven_jobs_in_order():
    assert list(JOBS) == SEVEN
    needs = {
        job: set(
            [JOBS[job].get("needs")]
            if isinstance(JOBS[job].get("needs"), str)
            else JOBS[job].get("needs") or []
        )
        for job in JOBS
    }
    assert needs == {
        "preflight": set(),
        "data": {"preflight"},
        "train": {"data"},
        # 3 and 4 run in parallel, both right after the gate.
        "export-model-uri": {"train"},
        "build-images": {"train"},
        "gitops": {"train", "export-model-uri", "build-images"},
        "verify": {"train", "gitops"},
    }


def test_pipeline_triggers():
    on = PIPELINE["on"]
    assert set(on["push"]["paths"]) == {"data/**.dvc", "dvc.lock", "params.yaml"}
    assert on["repository_dispatch"]["types"] == ["drift-detected"]
    assert "workflow_dispatch" in on


def test_two_retrainings_never_race():
    assert PIPELINE["concurrency"] == {"group": "ml-pipeline", "cancel-in-progress": False}


def test_preflight_fails_fast():
    assert JOBS["preflight"]["timeout-minutes"] <= 5
    assert any(
        "deploy.preflight" in c for c in [s.get("run", "") for s in JOBS["preflight"]["steps"]]
    )


def test_a_losing_candidate_skips_deployment_and_stays_green():
    gate = JOBS["train"]["outputs"]["promoted"]
    assert "steps.gate.outputs.promoted" in gate
    for job in DEPLOYMENT_JOBS:
        condition = JOBS[job]["if"]
        assert "needs.train.outputs.promoted == 'true'" in condition, job
    # Skipped jobs are not failures: nothing after the gate runs unconditionally.
    assert all("if" in JOBS[job] for job in DEPLOYMENT_JOBS)


def test_least_privilege_per_job():
    writers = {
        (workflow.name, job_id, scope)
        for workflow in ALL
        for job_id, job in load_workflow(workflow)["jobs"].items()
        for scope, level in job["permissions"].items()
        if level == "write"
    }
    assert writers == {
        ("ml-pipeline.yml", "build-images", "packages"),
        ("ml-pipeline.yml", "gitops", "contents"),
        ("ml-pipeline.yml", "verify", "contents"),
        ("drift.yml", "drift", "contents"),
    }
    for workflow in ALL:
        assert load_workflow(workflow)["permissions"] == {}, workflow.name


def test_gitops_pushes_and_never_applies():
    text = "\n".join(" ".join(s.get("run", "").split()) for s in JOBS["gitops"]["steps"])
    assert "deploy.gitops_patch --overlay" in text and "--model-uri" in text and "--image" in text
    assert "deploy.gitops_push --push --github-output commit" in text
    assert not [c for path in ALL for c in run_commands(path) if "kubectl" in c]


def test_verify_checks_sync_health_smoke_and_rolls_back_on_failure():
    steps = JOBS["verify"]["steps"]
    runs = [s.get("run", "") for s in steps]
    assert any("deploy.argocd" in r for r in runs)
    assert any("deploy.smoke" in r for r in runs)
    rollbacks = [s for s in steps if s.get("if") == "failure()"]
    assert {s["run"].split()[0] + " " + s["run"].split()[1] for s in rollbacks} == {
        "make rollback",
        ".venv/bin/python -m",
    }
    assert any("gitops_push --push revert" in s["run"] for s in rollbacks)


def test_drift_runs_weekly_and_dispatches_drift_detected():
    drift = load_workflow(WORKFLOWS / "drift.yml")
    assert drift["on"]["schedule"] == [{"cron": "0 6 * * 1"}]
    assert "workflow_dispatch" in drift["on"]
    commands = run_commands(WORKFLOWS / "drift.yml")
    # The skew job runs after the drift job, on the DVC-versioned data it recomputes from.
    assert commands == ["make setup", "make drift", ".venv/bin/python -m dvc pull -q", "make skew"]
    (step,) = [s for s in drift["jobs"]["drift"]["steps"] if s.get("run") == "make drift"]
    assert step["env"]["GITHUB_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"  # GitHub trigger mode


def test_ci_runs_every_check_the_issue_lists():
    commands = "\n".join(run_commands(WORKFLOWS / "ci.yml"))
    for check in (
        "make lint",
        "make test",
        "deploy.manifests",
        "deploy.render_monitoring --check",
        "pipelines.compile --check",
        "uv lock --check",
        "deploy.lint hadolint",
        "deploy.lint actionlint",
    ):
        assert check in commands, check


def _makefile_targets() -> set[str]:
    text = (project_root() / "Makefile").read_text()
    return set(re.findall(r"^([a-zA-Z0-9_-]+):", text, re.MULTILINE))


def test_workflows_call_only_existing_make_targets():
    called = {t for path in ALL for c in run_commands(path) for t in make_targets(c)}
    missing = called - _makefile_targets()
    assert not missing, f"workflows call make targets the Makefile lacks: {sorted(missing)}"


def test_workflows_call_only_existing_python_modules():
    called = {m for path in ALL for c in run_commands(path) for m in python_modules(c)}
    assert "deploy.gitops_patch" in called
    third_party = {"dvc", "uv"}
    missing = {m for m in called - third_party if importlib.util.find_spec(m) is None}
    assert not missing, f"workflows call modules that do not exist: {sorted(missing)}"
