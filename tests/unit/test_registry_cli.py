"""The thin CLIs: ``training.run``, ``training.promote``, ``training.rollback``.

Most cases call the CLIs' ``main`` in-process (a fresh interpreter importing MLflow costs
seconds); one case per behaviour that depends on the process runs ``python -m``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.model.mlflow_store import fresh_sqlite_store, migrated_store_template
from tests.model.synthetic import SMALL_TRAIN, WEAK_XGBOOST, small_params, write_training_set
from training.promote import main as promote_main
from training.register import current_version
from training.rollback import main as rollback_main
from training.run import main as run_main
from training.run import run_training
from training.show import main as show_main

MODEL = "fraud-detector"


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty MLflow database that each test copies into its own tmp_path."""
    return migrated_store_template(tmp_path_factory.mktemp("mlflow-template"))


def cli(module: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )


@pytest.fixture
def project(tmp_path: Path, mlflow_template: Path) -> dict[str, str]:
    """A project root with the synthetic training set, small params and its own registry."""
    write_training_set(tmp_path / "data" / "features" / "training_set.parquet")
    params = small_params().model_dump(mode="json", by_alias=True)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return {
        "FRAUD_PROJECT_ROOT": str(tmp_path),
        "FRAUD_PARAMS": str(tmp_path / "params.yaml"),
        "MLFLOW_TRACKING_URI": fresh_sqlite_store(mlflow_template, tmp_path),
    }


@pytest.fixture
def cli_env(project: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The project's environment for CLIs called in-process (each ``python -m`` costs seconds)."""
    for key, value in project.items():
        monkeypatch.setenv(key, value)


def test_run_cli_trains_registers_promotes_and_writes_dvc_outputs(project: dict[str, str]) -> None:
    result = cli("training.run", env=project)
    assert result.returncode == 0, result.stderr
    assert "average_precision" in result.stdout and "baseline" in result.stdout
    assert "champion challenge: WIN — first model: there was no champion" in result.stdout
    assert "registry: fraud-detector@champion = v1, @candidate = v1" in result.stdout
    root = Path(project["FRAUD_PROJECT_ROOT"])
    metrics = json.loads((root / "artifacts" / "metrics.json").read_text())
    assert metrics["promoted"] is True
    assert (root / "artifacts" / "plots" / "pr_curve.csv").exists()
    assert current_version("champion", MODEL, project["MLFLOW_TRACKING_URI"]) == "1"


def test_run_cli_without_training_set_fails_in_one_line(
    tmp_path: Path, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.parquet"
    assert run_main(["--training-set", str(missing)]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {missing}: training set not found (run `python -m features.featurize` first)"
    ]


def test_run_cli_too_short_data_fails_in_one_line(
    project: dict[str, str], cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    params = yaml.safe_load(Path(project["FRAUD_PARAMS"]).read_text())
    params["train"]["train_days"] = SMALL_TRAIN["train_days"] + 5
    Path(project["FRAUD_PARAMS"]).write_text(yaml.safe_dump(params))
    assert run_main([]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: tx_datetime: data too short for the time split: need 28 days")
    assert "got 23 days" in line


def test_promote_and_rollback_clis(
    project: dict[str, str], cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = project["MLFLOW_TRACKING_URI"]
    training_set = (
        Path(project["FRAUD_PROJECT_ROOT"]) / "data" / "features" / "training_set.parquet"
    )
    artifacts = Path(project["FRAUD_PROJECT_ROOT"]) / "artifacts"
    run_training(small_params(), training_set, artifacts, tracking_uri=uri)  # v1 champion
    run_training(
        small_params(train=WEAK_XGBOOST), training_set, artifacts, tracking_uri=uri
    )  # v2 loses
    capsys.readouterr()

    assert promote_main(["--version", "2"]) == 0
    assert f"{MODEL}@champion: version 1 -> version 2 (promote by" in capsys.readouterr().out
    assert current_version("champion", MODEL, uri) == "2"

    assert rollback_main([]) == 0
    assert f"{MODEL}@champion: version 2 -> version 1 (rollback by" in capsys.readouterr().out
    assert current_version("champion", MODEL, uri) == "1"

    assert rollback_main([]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {MODEL}@champion is version 1, which has no previous champion to roll back to"
    ]
    assert promote_main(["--version", "9"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {MODEL} version 9: not found in {uri}"
    ]

    assert show_main([]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith(f"{MODEL}@champion = version 1 (run ")
    assert "@candidate = version 2" in shown and "rollback v2 -> v1" in shown

    # and as a real process: `python -m training.rollback` with nothing to roll back to
    again = cli("training.rollback", env=project)
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        f"error: {MODEL}@champion is version 1, which has no previous champion to roll back to"
    ]


def test_show_cli_without_champion_fails_in_one_line(
    cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert show_main([]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(
        f"error: models:/{MODEL}@champion: no such alias in the registry at sqlite:"
    )


def test_rollback_cli_with_registry_down_names_the_uri(
    cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    down = "http://127.0.0.1:9"  # discard port: nothing listens
    assert rollback_main(["--tracking-uri", down]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: MLflow registry at {down} is unreachable")
