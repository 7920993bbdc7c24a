"""``dvc repro`` end to end on a small world: registry state after each kind of change."""

from __future__ import annotations

import json

from tests.e2e.conftest import Project, write_params


def test_first_repro_trains_registers_and_crowns_a_champion(project: Project) -> None:
    result = project.dvc("repro")
    assert "GATE data validation: PASS" in result.stdout
    assert "GATE registration: PASS" in result.stdout
    assert project.alias("champion") == "1"
    assert project.alias("candidate") == "1"
    metrics = json.loads((project.root / "artifacts" / "metrics.json").read_text())
    assert metrics["gate_passed"] is True and metrics["promoted"] is True
    assert 0.0 < metrics["candidate"]["average_precision"] <= 1.0
    for plot in ("pr_curve.csv", "roc_curve.csv", "net_benefit.csv"):
        assert (project.root / "artifacts" / "plots" / plot).stat().st_size > 0
    version = project.registry().get_model_version("fraud-detector", "1")
    assert version.tags["data_hash"] not in ("", "unknown")
    assert len(version.tags["git_commit"]) == 40


def test_second_repro_is_a_no_op(project: Project) -> None:
    result = project.dvc("repro")
    assert "Data and pipelines are up to date" in result.stdout
    assert len(project.registry().search_model_versions("name='fraud-detector'")) == 1


def test_a_worse_candidate_is_registered_but_not_promoted(project: Project) -> None:
    # A stump ensemble: still past the (small-world) gate, clearly worse than the champion.
    write_params(project.root, {"train": {"xgboost": {"n_estimators": 3, "max_depth": 1}}})
    result = project.dvc("repro")
    # Only the stage that reads the changed params runs again.
    assert "Stage 'featurize' didn't change, skipping" in result.stdout
    assert "Running stage 'train'" in result.stdout
    assert "GATE champion comparison: LOSE" in result.stdout
    assert project.alias("champion") == "1"
    metrics = json.loads((project.root / "artifacts" / "metrics.json").read_text())
    assert metrics["promoted"] is False
    if metrics["gate_passed"]:
        assert project.alias("candidate") == "2"


def test_promote_then_rollback_restores_the_previous_champion(project: Project) -> None:
    versions = project.registry().search_model_versions("name='fraud-detector'")
    if len(versions) < 2:  # the stump did not pass the gate: train a second model that does
        write_params(project.root, {"train": {"xgboost": {"n_estimators": 20, "max_depth": 3}}})
        project.dvc("repro")
    newest = max(
        int(v.version) for v in project.registry().search_model_versions("name='fraud-detector'")
    )
    promoted = project.python("-m", "training.promote", "--version", str(newest))
    assert f"-> version {newest}" in promoted.stdout
    assert project.alias("champion") == str(newest)
    rolled = project.python("-m", "training.rollback")
    assert "-> version 1" in rolled.stdout
    assert project.alias("champion") == "1"
