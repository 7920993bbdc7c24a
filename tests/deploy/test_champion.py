"""Jobs 2 and 3: the gate outcome and the champion's storage location, from a real registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.champion import AliasTarget, main, outputs, promoted, resolve_alias

NAME = "fraud-detector"


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Iterator[tuple[object, str]]:
    """A SQLite MLflow registry with versions 1 (@champion) and 2 (@candidate), and its URI."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('registry') / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(NAME)
    for version in (1, 2):
        client.create_model_version(
            NAME, source=f"s3://fraud-mlops/mlflow/1/run{version}/artifacts/model"
        )
    client.set_registered_model_alias(NAME, "champion", "1")
    client.set_registered_model_alias(NAME, "candidate", "2")
    yield client, uri


def test_resolves_the_champion_and_its_storage_location(registry):
    client, _ = registry
    champion = resolve_alias(client, NAME, "champion")
    assert champion == AliasTarget(
        NAME, "champion", "1", "", "s3://fraud-mlops/mlflow/1/run1/artifacts/model"
    )
    assert champion.model_uri == "models:/fraud-detector/1"


def test_missing_alias_or_model_is_none(registry):
    client, _ = registry
    assert resolve_alias(client, NAME, "challenger") is None
    assert resolve_alias(client, "no-such-model", "champion") is None


def test_gate_outcome():
    champion = AliasTarget(NAME, "champion", "2", "r", "s3://x")
    assert promoted(champion, "1")  # the alias moved: the candidate won
    assert not promoted(champion, "2")  # it stayed: the candidate lost, deployment is skipped
    assert promoted(champion, "")  # the first champion ever
    assert not promoted(None, "")
    assert outputs(None, "1") == {
        "promoted": "false",
        "version": "",
        "model_uri": "",
        "storage_uri": "",
        "run_id": "",
    }


def test_cli_writes_the_step_outputs(registry, tmp_path: Path, monkeypatch, capsys):
    output = tmp_path / "github_output"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry[1])
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    assert main(["--previous-version", "1", "--github-output"]) == 0
    assert "promoted: false" in capsys.readouterr().out
    lines = dict(line.split("=", 1) for line in output.read_text().splitlines())
    assert lines["promoted"] == "false" and lines["version"] == "1"
    assert lines["storage_uri"] == "s3://fraud-mlops/mlflow/1/run1/artifacts/model"


def test_cli_require_fails_without_the_alias(registry, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry[1])
    assert main(["--alias", "challenger", "--require"]) == 1
    assert "no such alias" in capsys.readouterr().out
