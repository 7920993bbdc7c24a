"""The Kubeflow pipeline under kfp.local: compiled-YAML staleness and the failing gates."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.e2e.conftest import Project, write_params


def test_committed_pipeline_yaml_is_what_the_code_compiles() -> None:
    from pipelines.compile import is_current

    assert is_current(), "stale pipeline YAML: run `python -m pipelines.compile`"


def test_staleness_check_fails_on_a_changed_pipeline(tmp_path, monkeypatch) -> None:
    import shutil

    from pipelines import compile as compile_module

    stale = tmp_path / "pipeline.yaml"
    shutil.copy(compile_module.compiled_pipeline_path(), stale)
    stale.write_text(stale.read_text().replace("4 evaluate vs champion", "4 evaluate"))
    monkeypatch.setattr(compile_module, "compiled_pipeline_path", lambda: stale)
    assert compile_module.main(["--check"]) == 1


@pytest.fixture(scope="module")
def champion_project(project: Project) -> Project:
    """The shared copy with a champion (trained here if no earlier test did)."""
    if project.alias("champion") is None:
        project.dvc("repro")
    assert project.alias("champion") is not None
    return project


def _versions(project: Project) -> int:
    return len(project.registry().search_model_versions("name='fraud-detector'"))


def test_bad_data_stops_the_run_with_the_validation_message(champion_project: Project) -> None:
    project = champion_project
    champion, versions = project.alias("champion"), _versions(project)
    validated = project.root / "data" / "validated" / "transactions.parquet"
    good = validated.read_bytes()
    frame = pd.read_parquet(validated)
    frame.loc[frame.index[:3], "tx_amount"] = -5.0
    frame.to_parquet(validated, index=False)
    try:
        result = project.python("-m", "pipelines.run_local", check=False)
    finally:
        validated.write_bytes(good)
    assert result.returncode == 1
    assert "GATE data validation: FAIL" in result.stdout
    assert "tx_amount: must be >= 0" in result.stdout
    assert "pipeline stopped:" in result.stdout and "validate-data" in result.stdout
    assert project.alias("champion") == champion and _versions(project) == versions
    summary = json.loads((project.root / "run" / "pipeline-summary.json").read_text())
    assert summary["status"] == "failed" and "validate-data" in summary["error"]
    assert [(g["gate"], g["verdict"]) for g in summary["gates"]] == [("data validation", "FAIL")]


def test_unreachable_registry_fails_the_run_and_leaves_the_champion(
    champion_project: Project, unused_tcp_port: int
) -> None:
    project = champion_project
    champion, versions = project.alias("champion"), _versions(project)
    env = dict(project.env, MLFLOW_TRACKING_URI=f"http://127.0.0.1:{unused_tcp_port}")
    result = Project(project.root)
    result.env = env
    outcome = result.python("-m", "pipelines.run_local", check=False)
    assert outcome.returncode == 1
    assert f"127.0.0.1:{unused_tcp_port}" in outcome.stdout
    assert "evaluate-model" in outcome.stdout
    assert project.alias("champion") == champion and _versions(project) == versions


@pytest.fixture
def unused_tcp_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_pipeline_is_quiet_by_default_logs_everything_and_verbose_shows_it(
    champion_project: Project,
) -> None:
    project = champion_project
    log = project.root / "run" / "logs" / "pipeline.log"
    quiet = project.python("-m", "pipelines.run_local")
    shown = quiet.stdout.splitlines()
    # Steps, gates, the summary table and where the log is: a screen, not hundreds of lines.
    assert len(shown) < 40, quiet.stdout
    for expected in ("GATE data validation: PASS", "GATE registration:", "test window "):
        assert any(line.startswith(expected) for line in shown), (expected, quiet.stdout)
    assert "  … pipeline step train-model" in shown
    assert shown[-1] == f"full log: {log}"
    params_text = (project.root / "params.yaml").read_text()
    assert "n_customers" not in quiet.stdout  # kfp.local's echo of params.yaml stays in the log
    logged = log.read_text()
    assert "n_customers" in logged and "GATE registration:" in logged
    assert "average_precision" in logged  # the summary table is in the log too
    assert len(logged.splitlines()) > 3 * len(shown)
    summary = json.loads((project.root / "run" / "pipeline-summary.json").read_text())
    assert summary["status"] == "succeeded" and summary["log"] == str(log)
    assert [g["gate"] for g in summary["gates"]] == [
        "data validation",
        "registration",
        "champion comparison",
    ]
    assert summary["decision"]["run_id"] in quiet.stdout

    verbose = Project(project.root)
    verbose.env = dict(project.env, FRAUD_VERBOSE="1")
    loud = verbose.python("-m", "pipelines.run_local")
    assert "n_customers" in loud.stdout and params_text.splitlines()[0] in loud.stdout
    assert len(loud.stdout.splitlines()) > 3 * len(shown)
    assert "GATE registration:" in loud.stdout and f"full log: {log}" in loud.stdout


def test_make_train_is_quiet_and_says_where_the_logs_are(champion_project: Project) -> None:
    project = champion_project
    train_log = project.root / "run" / "logs" / "train.log"
    # A changed param reruns the train stage only.
    write_params(project.root, {"train": {"xgboost": {"n_estimators": 30}}})
    result = project.python("-m", "pipelines.repro")
    shown = result.stdout.splitlines()
    assert len(shown) < 40, result.stdout
    assert "  … DVC stage train" in shown and "  … pipeline step train-model" in shown
    assert any(line.startswith("GATE registration:") for line in shown), result.stdout
    assert any(line.startswith("test window ") for line in shown), result.stdout
    pipeline_log = project.root / "run" / "logs" / "pipeline.log"
    assert f"pipeline log: {pipeline_log} (kfp.local's whole output)" in shown
    assert shown[-1] == f"full log: {train_log}"
    assert "n_customers" not in result.stdout and "n_customers" in pipeline_log.read_text()
    assert "Running stage 'train'" in train_log.read_text()

    again = project.python("-m", "pipelines.repro")
    assert again.stdout.splitlines() == [
        "pipeline: nothing changed, DVC reused every stage",
        f"full log: {train_log}",
    ]
    assert "Data and pipelines are up to date" in train_log.read_text()


def test_retrain_on_new_days_runs_the_gates_and_twice_without_new_data_is_a_no_op(
    champion_project: Project,
) -> None:
    project = champion_project
    versions = _versions(project)
    first = project.python("-m", "pipelines.retrain", "--days", "3")
    assert "new data: 3 days of live traffic" in first.stdout
    assert "GATE data validation: PASS" in first.stdout
    assert "champion challenge:" in first.stdout
    assert "n_customers" not in first.stdout  # quiet: kfp.local's echo is in the logs
    summary = json.loads((project.root / "run" / "retrain-summary.json").read_text())
    retrain_log = project.root / "run" / "logs" / "retrain.log"
    assert summary["log"] == str(retrain_log) and f"full log: {retrain_log}" in first.stdout
    assert "Running stage 'train'" in retrain_log.read_text()
    assert "n_customers" in Path(summary["pipeline_log"]).read_text()
    assert summary["schema"] == "fraud-mlops.retrain/1" and summary["retrained"] is True
    assert summary["new_data"] == "new data: 3 days of live traffic (drift: none)"
    assert any("average_precision" in line for line in summary["pipeline_summary"])
    assert [g["gate"] for g in summary["gates"]][:2] == ["data validation", "registration"]
    assert summary["champion_after"] == project.alias("champion")
    assert summary["candidate_after"] == project.alias("candidate")
    assert len(list((project.root / "data" / "live").glob("*.parquet"))) == 1
    # the day's transactions and the label events the simulator emits for them
    assert (project.root / "data" / "live.dvc").read_text().count("nfiles: 2") == 1
    after_first = _versions(project)
    assert after_first in (versions, versions + 1)
    for _ in range(2):
        again = project.python("-m", "pipelines.retrain", "--days", "0")
        assert "nothing changed, nothing retrained" in again.stdout, again.stdout
        summary = json.loads((project.root / "run" / "retrain-summary.json").read_text())
        assert summary["retrained"] is False and summary["gates"] == []
    assert _versions(project) == after_first
