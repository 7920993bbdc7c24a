"""The thin CLIs: ``training.run``, ``training.promote``, ``training.rollback``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.model.synthetic import SMALL_TRAIN, WEAK_XGBOOST, small_params, write_training_set
from training.register import current_version
from training.run import run_training

MODEL = "fraud-detector"


def cli(module: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )


@pytest.fixture
def project(tmp_path: Path) -> dict[str, str]:
    """A project root with the synthetic training set, small params and its own registry."""
    write_training_set(tmp_path / "data" / "features" / "training_set.parquet")
    params = small_params().model_dump(mode="json", by_alias=True)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return {
        "FRAUD_PROJECT_ROOT": str(tmp_path),
        "FRAUD_PARAMS": str(tmp_path / "params.yaml"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }


def test_run_cli_trains_registers_promotes_and_writes_dvc_outputs(project: dict[str, str]) -> None:
    result = cli("training.run", env=project)
    assert result.returncode == 0, result.stderr
    assert "average_precision" in result.stdout and "baseline" in result.stdout
    assert "promotion: PROMOTED to @champion — first model" in result.stdout
    root = Path(project["FRAUD_PROJECT_ROOT"])
    metrics = json.loads((root / "artifacts" / "metrics.json").read_text())
    assert metrics["promoted"] is True
    assert (root / "artifacts" / "plots" / "pr_curve.csv").exists()
    assert current_version("champion", MODEL, project["MLFLOW_TRACKING_URI"]) == "1"


def test_run_cli_without_training_set_fails_in_one_line(tmp_path: Path, project: dict[str, str]) -> None:
    missing = tmp_path / "nowhere.parquet"
    result = cli("training.run", "--training-set", str(missing), env=project)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {missing}: training set not found (run `python -m features.featurize` first)"
    ]


def test_run_cli_too_short_data_fails_in_one_line(project: dict[str, str]) -> None:
    params = yaml.safe_load(Path(project["FRAUD_PARAMS"]).read_text())
    params["train"]["train_days"] = SMALL_TRAIN["train_days"] + 5
    Path(project["FRAUD_PARAMS"]).write_text(yaml.safe_dump(params))
    result = cli("training.run", env=project)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: tx_datetime: data too short for the time split: need 28 days")
    assert "got 23 days" in line


def test_promote_and_rollback_clis(project: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    uri = project["MLFLOW_TRACKING_URI"]
    monkeypatch.setenv("FRAUD_PROJECT_ROOT", project["FRAUD_PROJECT_ROOT"])
    training_set = Path(project["FRAUD_PROJECT_ROOT"]) / "data" / "features" / "training_set.parquet"
    artifacts = Path(project["FRAUD_PROJECT_ROOT"]) / "artifacts"
    run_training(small_params(), training_set, artifacts, tracking_uri=uri)  # v1 champion
    run_training(small_params(train=WEAK_XGBOOST), training_set, artifacts, tracking_uri=uri)  # v2 loses

    promoted = cli("training.promote", "--version", "2", env=project)
    assert promoted.returncode == 0, promoted.stderr
    assert f"{MODEL}@champion: version 1 -> version 2 (promote by" in promoted.stdout
    assert current_version("champion", MODEL, uri) == "2"

    rolled = cli("training.rollback", env=project)
    assert rolled.returncode == 0, rolled.stderr
    assert f"{MODEL}@champion: version 2 -> version 1 (rollback by" in rolled.stdout
    assert current_version("champion", MODEL, uri) == "1"

    again = cli("training.rollback", env=project)
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        f"error: {MODEL}@champion is version 1, which has no previous champion to roll back to"
    ]
    unknown = cli("training.promote", "--version", "9", env=project)
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines()[-1].startswith(f"error: {MODEL} version 9: not found")


def test_rollback_cli_with_registry_down_names_the_uri(project: dict[str, str]) -> None:
    down = "http://127.0.0.1:9"  # discard port: nothing listens
    result = cli("training.rollback", "--tracking-uri", down, env=project)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: MLflow registry at {down} is unreachable")
