"""``python -m monitoring.lineage``: request id / version / alias -> run -> commit -> data."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from monitoring import lineage
from serving.prediction_log import read_prediction_log
from tests.report.conftest import CANDIDATE_EVERY, Project


def run_lineage(project: Project, capsys: pytest.CaptureFixture[str], *args: str):
    """Call the CLI in-process against the project; (exit code, stdout, stderr)."""
    code = lineage.main(
        [*args, "--tracking-uri", project.tracking_uri, "--log-dir", str(project.prediction_log)]
    )
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_version_facts(out: str, project: Project, version: str) -> None:
    facts = project.versions[version]
    assert f"version {version} " in out
    for value in (facts.run_id, facts.git_commit, facts.data_hash, facts.params_hash):
        assert value in out, f"{value} missing for version {version}:\n{out}"
    other = project.versions["1" if version == "2" else "2"]
    assert other.git_commit not in out and other.data_hash not in out


def test_request_served_by_the_candidate_traces_to_version_2(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    request_id = f"req-{CANDIDATE_EVERY - 1}"
    log = read_prediction_log(project.prediction_log)
    [logged] = log[log["request_id"] == request_id].to_dict("records")
    assert logged["model_version"] == "2"

    code, out, err = run_lineage(project, capsys, "--request-id", request_id)
    assert code == 0, err
    assert f"request  {request_id}: transaction {logged['transaction_id']}" in out
    assert_version_facts(out, project, "2")
    # params as logged with the run: the weak booster's two stumps
    assert "train.xgboost.n_estimators = 2" in out
    history = out.split("@champion promotion history")[1].splitlines()[1:]
    assert [line.split()[1] for line in history] == ["promote", "promote", "rollback"]
    assert "v1 -> v2  by alice: manual: try the stumps in production" in history[1]
    assert "v2 -> v1  by oncall: fraud losses up after the promotion" in history[2]


def test_request_served_by_the_champion_traces_to_version_1(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_lineage(project, capsys, "--request-id", "req-0")
    assert code == 0, err
    assert_version_facts(out, project, "1")
    assert "train.xgboost.n_estimators = 20" in out


def test_version_and_alias(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_lineage(project, capsys, "--version", "1", "--no-params")
    assert code == 0
    assert_version_facts(out, project, "1")
    assert "@champion" in out.splitlines()[0] and "train.seed" not in out

    code, out, _ = run_lineage(project, capsys, "--alias", "candidate")
    assert code == 0
    assert_version_facts(out, project, "2")


def test_unknown_version_and_alias_exit_1_with_one_line(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_lineage(project, capsys, "--version", "99")
    assert code == 1 and out == ""
    assert (
        err.strip()
        == f"error: fraud-detector version 99: not in the registry at {project.tracking_uri}"
    )

    code, _, err = run_lineage(project, capsys, "--alias", "staging")
    assert code == 1
    assert err.strip().startswith("error: fraud-detector@staging: no such alias")


def test_unknown_request_id_exits_1_with_one_readable_line(project: Project) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "monitoring.lineage", "--request-id", "req-does-not-exist"],
        env={**os.environ, **project.env()},
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    records = len(read_prediction_log(project.prediction_log))
    assert line == (
        f"error: request id req-does-not-exist: not found in the prediction log at "
        f"{project.prediction_log} ({records:,} records)"
    )


def test_exactly_one_selector_is_required() -> None:
    with pytest.raises(SystemExit) as exit_info:
        lineage.main(["--version", "1", "--alias", "champion"])
    assert exit_info.value.code == 2  # argparse: mutually exclusive
